"""The operator process: kopf handlers as thin adapters from Kubernetes events to the core.

A handler turns an event into a core call and the core's answer into one status patch; the
decisions themselves live in treadle.core.
"""
