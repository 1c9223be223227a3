"""The call engine: ``Attempt`` (one call on one host: lease, exchange, classify, report, release),
``Pool`` (a connection pool that calls) and ``Loop`` (many attempts multiplexed on one ``poll``)."""
