"""The worker process: what runs inside worker pods (`treadle worker`).  It reads attempts from
its pool's stream, runs their actions (a command, an HTTP call, a Python callable), publishes
their results, starts and logs, and re-delivers the attempts of workers that went silent.

It has no Kubernetes client (its pods carry no service-account token) and knows nothing of the
operator's handlers and controllers: import contracts in pyproject.toml say so.  It reaches
Redis only through `treadle.services.queues` and `treadle.services.guards`."""
