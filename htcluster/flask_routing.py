"""Old import path of :mod:`htcluster.flaskext.routing` (strategies, checkouts, bound namespaces).

Import from there in new code.
"""
from __future__ import annotations

from .flaskext.routing import *  # noqa: F401,F403
from .flaskext.routing import __all__  # noqa: F401
