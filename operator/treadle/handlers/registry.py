"""The operator's own kopf registry, so that importing handlers never touches kopf's global one."""

import kopf

registry = kopf.OperatorRegistry()
