"""Run code written for the upstream ``hypertable`` Python client on htcluster, unmodified.

:func:`install_as_hypertable` puts htcluster's modules into ``sys.modules``
under upstream's names (as PyMySQL's ``install_as_MySQLdb()`` does for
MySQLdb), so that, after one call at start-up::

    import htcluster.compat
    htcluster.compat.install_as_hypertable()

    from hypertable.thriftclient import ThriftClient       # htcluster.compat.thriftclient
    from hyperthrift.gen.ttypes import Cell, Key, ClientException, ScanSpec, MutateSpec
    from hyperthrift.gen2.ttypes import HqlResult

resolve to htcluster's classes: the very objects of :mod:`htcluster.types`,
so ``except ClientException`` in upstream code catches what htcluster's
routing layers raise, and a ``Cell`` built by it can be given to ``Replicas``.

=================================  ========================================
upstream module                    is
=================================  ========================================
``hypertable.thriftclient``        :mod:`htcluster.compat.thriftclient`
``hyperthrift.gen.ttypes``         the generated types (``htcluster._thrift.ttypes``)
``hyperthrift.gen.ClientService``  the generated ``ClientService``
``hyperthrift.gen.constants``      the generated constants
``hyperthrift.gen2.HqlService``    the generated ``HqlService``
``hyperthrift.gen2.ttypes``        the same types module (upstream split the HQL
                                   results into it; here there is one module)
``hyperthrift.gen2.constants``     the generated constants
=================================  ========================================

The upstream package layout (``hyperthrift/gen``, ``hyperthrift/gen2``)
is the one :ref:`calling-methods` records.

:func:`install_as_flask_hypertable` does the same for an app written for
Flask-Hypertable 0.3.0: ``from flask_hypertable import FlaskPooledHypertable``
then gives :class:`htcluster.flask_ext.FlaskPooledHypertable` (and the
``hypertable``/``hyperthrift`` modules that Flask-Hypertable depended on are
installed too), so such an app runs without even its import line changed.
"""
from __future__ import annotations

import sys
import types
from typing import Optional

from .._thrift import ClientService, HqlService, constants, ttypes
from . import thriftclient
from .thriftclient import ThriftClient

__all__ = ["FLASK_MODULES", "MODULES", "ThriftClient", "install_as_flask_hypertable", "install_as_hypertable",
           "uninstall_as_hypertable"]

#: Upstream module name -> the htcluster module it becomes (packages are made on the fly).
MODULES: dict[str, types.ModuleType] = {
    "hypertable.thriftclient": thriftclient,
    "hyperthrift.gen.ttypes": ttypes,
    "hyperthrift.gen.ClientService": ClientService,
    "hyperthrift.gen.constants": constants,
    "hyperthrift.gen2.HqlService": HqlService,
    "hyperthrift.gen2.ttypes": ttypes,
    "hyperthrift.gen2.constants": constants,
}

_installed: dict[str, Optional[types.ModuleType]] = {}  # name -> what sys.modules held before


def _package(name: str) -> types.ModuleType:
    package = types.ModuleType(name, f"htcluster's stand-in for upstream's {name!r} package "
                                     "(htcluster.compat.install_as_hypertable)")
    package.__path__ = []  # a package: its submodules are found in sys.modules
    package.__package__ = name
    return package


#: Flask-Hypertable's module names -> the htcluster module each becomes (needs Flask).
FLASK_MODULES = ("flask_hypertable", "flask_hypertable.flask_hypertable")


def install_as_hypertable() -> None:
    """Register htcluster's modules as ``hypertable``, ``hyperthrift.gen`` and ``hyperthrift.gen2``.

    Idempotent.  Names already in ``sys.modules`` (a real upstream client
    imported earlier) are replaced; :func:`uninstall_as_hypertable` puts them back.
    """
    _install(MODULES)


def install_as_flask_hypertable() -> None:
    """Register :mod:`htcluster.flask_ext` as ``flask_hypertable`` (and call :func:`install_as_hypertable`).

    ``flask_hypertable`` and ``flask_hypertable.flask_hypertable`` both give
    ``FlaskHypertable`` and ``FlaskPooledHypertable``.  Idempotent; undone by
    :func:`uninstall_as_hypertable`.

    :raises ImportError: Flask is not installed.
    """
    from .. import flask_ext

    install_as_hypertable()
    _install({name: flask_ext for name in FLASK_MODULES}, packages=False)


def _install(modules: dict[str, types.ModuleType], packages: bool = True) -> None:
    """Put ``modules`` into ``sys.modules`` with (when ``packages``) stand-in packages for their parents."""
    wanted: dict[str, types.ModuleType] = {}
    for name, module in modules.items():
        if not packages:
            wanted[name] = module
            continue
        parts = name.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent not in wanted:
                current = sys.modules.get(parent)
                ours = _installed.get(parent, ...) is not ... and current is not None
                wanted[parent] = current if ours else _package(parent)  # type: ignore[assignment]
        wanted[name] = module
    for name, module in wanted.items():
        if name not in _installed:
            _installed[name] = sys.modules.get(name)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent in wanted and packages:
            setattr(wanted[parent], child, module)


def uninstall_as_hypertable() -> None:
    """Undo :func:`install_as_hypertable`: restore (or remove) every module name it registered."""
    for name, previous in reversed(list(_installed.items())):
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    _installed.clear()
