"""The resource shapes users write and read: typed models of Workflow and SyncJob.

The CRD YAML under crds/ is generated from these models (treadle.api.crds), so a field is
described once, here, and `kubectl explain` shows the same words.
"""

GROUP = "treadle.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
