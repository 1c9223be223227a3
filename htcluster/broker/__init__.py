"""A local stand-in for the Hypertable ThriftBroker, backed by SQLite.

Use :class:`BrokerServer` to run one in-process (tests, demos), :func:`serve`
to run one until SIGTERM/SIGINT, or ``python -m htcluster.broker --port 15867
--data FILE`` from a shell.  Several brokers on one file behave like several
ThriftBrokers in front of one Hypertable cluster; what the stand-in does not
implement answers ``ClientException(NOT_IMPLEMENTED)``.

Modules: ``server`` (listener, store, signals), ``reactor`` + ``connection``
(the selector thread and the worker pool serving every connection),
``limits`` (what clients may use), ``wire`` (frames and protocol), ``guard``
(missing arguments), ``handler`` + ``cellops`` (the service), ``scan_plan`` +
``scan`` (ScanSpec semantics), ``cells`` (cell conversion), ``serialized``
(serialized-cells buffers), ``schema`` (table schemas), ``objects`` (scanners,
mutators, flusher), ``store`` + ``sqlitedb`` (SQLite), ``hql*`` (HQL).
"""
from __future__ import annotations

from .server import DEFAULT_HOST, DEFAULT_PORT, BrokerServer, main, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "BrokerServer", "main", "serve"]
