"""Services: the one place that talks to each outside system (Kubernetes, Redis, HTTP)."""
