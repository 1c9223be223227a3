"""Old import path of :mod:`htcluster.flaskext.stream` (streamed JSON); import from there in new code."""
from __future__ import annotations

from .flaskext.stream import *  # noqa: F401,F403
from .flaskext.stream import __all__  # noqa: F401
