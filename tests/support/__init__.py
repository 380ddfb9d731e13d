"""Helpers shared by the test tiers: the local cluster, kubectl, Redis and the operator."""
