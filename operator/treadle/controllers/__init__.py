"""The operator's imperative shell: the loops that carry out the core's decisions.

The workflow driver (results in, attempts and status out), the sync scheduler (slots, locks and
run pods), leadership and the liveness probe, and the operator's metrics.  Nothing here knows
kopf: the kopf adapters in treadle.handlers feed these objects, and treadle.handlers.runner
wires them together.
"""
