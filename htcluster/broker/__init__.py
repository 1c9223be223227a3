"""A local stand-in for the Hypertable ThriftBroker, backed by SQLite.

Use :class:`BrokerServer` to run one in-process (tests, demos), :func:`serve`
to run one until SIGTERM/SIGINT, or ``htcluster broker --port 15867 --data
FILE`` (the same command as ``python -m htcluster.broker``: :mod:`.command`)
from a shell.  Several brokers on one file behave like several
ThriftBrokers in front of one Hypertable cluster; what the stand-in does not
implement answers ``ClientException(NOT_IMPLEMENTED)``.

Modules: ``command`` (the broker command), ``server`` (listener, store, signals), ``reactor`` + ``connection``
(the selector thread and the worker pool serving every connection),
``limits`` (what clients may use), ``wire`` + ``utf8`` (frames, protocol,
strings that must be UTF-8), ``guard`` (missing arguments), ``handler`` +
``cellops`` (the service), ``spec_compile`` + ``cell_filter`` (ScanSpec
semantics), ``cells`` (cell conversion), ``serialized`` (serialized-cells
buffers), ``table_schema`` (table schemas), ``objects`` (scanners, mutators,
flusher), ``store`` + ``sqlitedb`` (SQLite), ``storage`` + ``storage_client``
+ ``storage_wire`` (the storage process that serves a data file to its
brokers), ``hql_run`` (HQL).
"""
from __future__ import annotations

from .command import broker_command, main
from .server import DEFAULT_HOST, DEFAULT_PORT, BrokerServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "BrokerServer", "broker_command", "main", "serve"]
