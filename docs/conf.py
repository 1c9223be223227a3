"""Sphinx configuration of the htcluster documentation.

Build (warnings are errors, no network needed)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

Links to Python's and Flask's documentation (intersphinx) use inventories
stored in ``docs/_inventories/`` (``python.inv``, ``flask.inv``).  Without
them the links render as plain text and the build stays offline and clean:
Sphinx would otherwise fetch ``objects.inv`` over the network, and an
unreachable inventory is a warning, an error under ``-W``.  Fetch them once
on a machine with network access with ``python docs/fetch_inventories.py``,
or set ``HTCLUSTER_DOCS_ONLINE=1`` to let Sphinx fetch them itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

import htcluster  # noqa: E402  (after the path is set, so the tree's own copy documents itself)

project = "htcluster"
author = "the htcluster authors"
copyright = "2026, the htcluster authors"
release = htcluster.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build", "_inventories"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "Many Hypertable ThriftBrokers, one client", "fixed_sidebar": True}

# autodoc: the docstrings use reST field lists (:param:, :returns:, :raises:), so no napoleon.
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
    # Members are what a module defines: re-exports (``__all__`` of htcluster, htcluster.types) are
    # documented where they are defined, so every object has one target.
    "ignore-module-all": True,
}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autoclass_content = "both"
# Annotations name the generated Thrift structs and third-party classes; resolving them is not the point.
nitpicky = False

#: intersphinx targets; an inventory is used only if it is stored locally (see the module docstring).
_TARGETS = {
    "python": "https://docs.python.org/3",
    "flask": "https://flask.palletsprojects.com/en/stable",
}
_ONLINE = os.environ.get("HTCLUSTER_DOCS_ONLINE") == "1"
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
for _name, _url in _TARGETS.items():
    _inventory = DOCS / "_inventories" / f"{_name}.inv"
    if _inventory.exists():
        intersphinx_mapping[_name] = (_url, str(_inventory))
    elif _ONLINE:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_timeout = 10
