"""The public surface: every name in ``__all__`` imports, and ``__all__`` is sorted."""
from __future__ import annotations

import importlib

import pytest

import htcluster

MODULES = ["htcluster", "htcluster.errors", "htcluster.hosts", "htcluster.types", "htcluster.codes",
           "htcluster.policy", "htcluster.resource", "htcluster.pool", "htcluster.resources",
           "htcluster.shards", "htcluster.replicas", "htcluster.cluster", "htcluster.testing",
           "htcluster.flask_ext", "htcluster.status", "htcluster.transport", "htcluster.failover",
           "htcluster.logfile", "htcluster.cli_output", "htcluster.faults", "htcluster.logload",
           "htcluster.weblog", "htcluster.demo", "htcluster.flask_config", "htcluster.flask_routing",
           "htcluster.flask_stream", "htcluster.units", "htcluster.multiplex", "htcluster.broadcast",
           "htcluster.events", "htcluster.latency", "htcluster.otel", "htcluster.hql", "htcluster.compat",
           "htcluster.cli.tsv", "htcluster.cli.broker_run", "htcluster.cli.commands", "htcluster.cli.loading",
           "htcluster.cli.options", "htcluster.cli.output", "htcluster.cli.weblog", "htcluster.cli.logfile",
           "htcluster.cli.logload", "htcluster.cli.status", "htcluster.cli.demo", "htcluster._moved",
           "htcluster.flaskext.config", "htcluster.flaskext.binds", "htcluster.flaskext.routing",
           "htcluster.flaskext.encoding", "htcluster.flaskext.stream", "htcluster.flaskext.queries",
           "htcluster.flaskext.toolbar", "htcluster.flaskext.cli", "htcluster.compat.thriftclient",
           "htcluster.budget", "htcluster.hedge", "htcluster.probe", "htcluster.routing", "htcluster.classify"]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


def test_top_level_all_is_sorted_and_documented():
    assert htcluster.__all__ == sorted(htcluster.__all__, key=lambda n: (not n.isupper(), n))
    for name in htcluster.__all__:
        obj = getattr(htcluster, name)
        if callable(obj):
            assert obj.__doc__, f"htcluster.{name} has no docstring"
    assert htcluster.__version__


def test_logger_has_null_handler():
    import logging
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("htcluster").handlers)
