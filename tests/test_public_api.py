"""The public surface: every name in ``__all__`` imports, and ``__all__`` is sorted."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import htcluster

def _modules() -> list[str]:
    """Every module of the package but the generated code and the ``python -m`` entry points."""
    found = ["htcluster"]
    for info in pkgutil.walk_packages(htcluster.__path__, "htcluster."):
        if not info.name.startswith("htcluster._thrift") and not info.name.endswith("__main__"):
            found.append(info.name)
    return sorted(found)


MODULES = _modules()


def test_the_layers_are_packages_of_their_own():
    """The layout shows the architecture: wire core, connection, pool, policy, call engine, routing."""
    for layer in ("_wire", "_io", "_pool", "_policy", "_call", "_routing", "_flask"):
        assert f"htcluster.{layer}" in MODULES
    for gone in ("htcluster._moved", "htcluster.cluster", "htcluster.flask_routing", "htcluster.flask_config",
                 "htcluster.flask_stream", "htcluster.stats", "htcluster.units", "htcluster.flaskext"):
        assert gone not in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None and name.rsplit(".", 1)[-1].startswith("_"):
        return  # an internal package's __init__ may export nothing
    assert exported is not None, f"{name} has no __all__"
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
