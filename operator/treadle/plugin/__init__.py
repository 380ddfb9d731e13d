"""`kubectl treadle`: the kubectl plugin for operating Treadle's resources.

Installed as the `kubectl-treadle` executable, so kubectl finds it on PATH.  It talks to the API
server only (never to Redis), with the user's kubeconfig and RBAC: what it changes goes through
annotations the operator acts on, so every change is recorded on the object.
"""
