"""Old import paths of the modules that moved into :mod:`htcluster.cli`.

The CLI and the main job's web-log domain left the top of the package so that
``htcluster/`` shows the client library at a glance.  Code written against the
old paths (``import htcluster.weblog``, ``from htcluster.status import
check_hosts``) keeps working without a stub file per module: :class:`MovedFinder`,
put at the front of :data:`sys.meta_path` by :func:`install` (called when
this module is imported, which ``htcluster/__init__.py`` does), answers for the old names only, and
its loader puts the *new* module object under the old name in
:data:`sys.modules`.  ``htcluster.weblog is htcluster.cli.weblog`` is therefore
true: one module, one set of classes, one ``isinstance``.

Any other name is left to the normal finders (``find_spec`` returns ``None``).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Optional, Sequence

__all__ = ["MOVED", "MovedFinder", "install"]

#: Old module name -> the module it now is.  ``htcluster.cli`` kept its name (now a package).
MOVED: dict[str, str] = {
    "htcluster.cli_output": "htcluster.cli.output",
    "htcluster.demo": "htcluster.cli.demo",
    "htcluster.logfile": "htcluster.cli.logfile",
    "htcluster.logload": "htcluster.cli.logload",
    "htcluster.status": "htcluster.cli.status",
    "htcluster.weblog": "htcluster.cli.weblog",
}


class _AliasLoader(importlib.abc.Loader):
    """Load an old name by importing the new module and putting it in ``sys.modules`` in its place."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None  # a throwaway module; exec_module replaces it before anyone sees it

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name after this call
        # (importlib._bootstrap._load_unlocked), and never touches the real module's __spec__.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class MovedFinder(importlib.abc.MetaPathFinder):
    """A meta path finder answering only for the old names in :data:`MOVED`."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        """Return a spec aliasing ``fullname`` to its new module, or ``None`` for any other name.

        :param fullname: the dotted module name being imported.
        :param path: the parent package's ``__path__`` (unused).
        :param target: the module being reloaded, if any (unused).
        :returns: a :class:`~importlib.machinery.ModuleSpec`, or ``None``.
        """
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put one :class:`MovedFinder` at the front of :data:`sys.meta_path` (idempotent)."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())


install()
