"""Routing: the ``Router`` (runs plans: failover, retry budget, probes, hedging, fan-out) and the thin
routing classes ``Resources``, ``Replicas`` and ``Shards`` that build plans for it."""
