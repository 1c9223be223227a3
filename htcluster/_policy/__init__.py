"""Policy: values and pure functions, no I/O.  Host health, backoff, retry, retry budget, classification,
plans and balancers, set cover, placement, client timestamps, version collapsing, scan resumption."""
