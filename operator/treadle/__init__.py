"""Treadle: a Kubernetes operator for DAG workflows and cron sync jobs."""

__version__ = "0.1.0"
