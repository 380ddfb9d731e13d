"""The pure core: decisions as functions of spec, status, events and an injected clock.

Nothing here talks to Kubernetes, Redis or the network (an import-linter contract checks it).
"""
