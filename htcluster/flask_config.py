"""Old import path of :mod:`htcluster.flaskext.config` (the settings); import from there in new code."""
from __future__ import annotations

from .flaskext.config import *  # noqa: F401,F403
from .flaskext.config import __all__  # noqa: F401
