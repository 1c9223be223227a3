"""The ``htcluster`` command and the main job it runs: Apache logs into LogDb.

Every command that talks to brokers takes ``--hosts`` (comma-separated
``host[:port]``; default ``$HYPERTABLE_HOSTS``, else ``localhost:15867``).
Failures reach the user as one line naming what to do, with a non-zero exit
code and no traceback.

Modules:

* ``commands`` -- ``broker``, ``cluster``, ``hql``, ``status``; ``loading`` --
  ``load`` and ``demo``; ``options`` -- the shared options (``--hosts``,
  ``--timeout``, ...) and the error wrapper; ``output`` -- error lines and
  hints, HQL result tables, the progress bar.  The ``broker`` command itself
  is :mod:`htcluster.broker.command` (also ``python -m htcluster.broker``).
* ``weblog`` (Apache lines -> LogDb rows, synthetic logs), ``tsv``
  (header-line TSV -> ``freebase`` rows), ``logfile`` (plain/gzip/stdin
  input), ``logload`` (batched writes through a Pool, Replicas or Shards),
  ``status`` (parallel ``status()`` pings and the health table, also used by
  ``flask hypertable status``), ``demo`` (the main job end to end).

The old paths (``htcluster.cli.weblog``, ``htcluster.cli.status``, ...) still import
the same modules (:mod:`htcluster._moved`).
"""
from __future__ import annotations

import click

from .. import __version__
from .commands import broker_command, cluster_command, hql_command, status_command
from .loading import demo_command, load_command
from .options import Group

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="htcluster")
def main() -> None:
    """Pools, sharding and replica failover over many Hypertable ThriftBrokers."""


for _command in (broker_command, cluster_command, demo_command, hql_command, load_command, status_command):
    main.add_command(_command)
del _command
