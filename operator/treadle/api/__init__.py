"""The resource shapes users write and read: typed models of Workflow and SyncJob.

The CRD YAML under crds/ is generated from these models (treadle.api.crds), so a field is
described once, here, and `kubectl explain` shows the same words.
"""

GROUP = "treadle.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

RETRY_ANNOTATION = f"{GROUP}/retry"
"""On a Workflow: a task name or "all" re-queues dead-lettered work; the operator removes it."""
RUN_NOW_ANNOTATION = f"{GROUP}/run-now"
"""On a SyncJob: any value starts a run now (locks apply); the operator removes it."""
RESET_FAILURES_ANNOTATION = f"{GROUP}/reset-failures"
"""On a SyncJob: any value resets its consecutive failures (a Degraded job schedules again)."""
BACKFILL_ANNOTATION = f"{GROUP}/backfill"
"""On a SyncJob: `{"from": ..., "to": ..., "parallel": N, "rerun": false}` runs every slot of
that range (or `cancel` stops the running backfill); the operator removes it."""
SYNCJOB_REQUESTS = (RUN_NOW_ANNOTATION, RESET_FAILURES_ANNOTATION, BACKFILL_ANNOTATION)
"""The annotations a SyncJob takes requests in: each is answered once, then removed."""
