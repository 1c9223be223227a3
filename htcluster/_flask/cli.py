"""``flask hypertable status``: the health of every cluster of the app, and its counters.

The commands are written once, for Flask and Quart, in
:mod:`htcluster._flask.commands`; this is their group in Flask's CLI,
added to each app by :meth:`htcluster.flask_ext.Hypertable.init_app`.
"""
from __future__ import annotations

from flask import current_app
from flask.cli import AppGroup

from .commands import EXTENSION_KEY, format_stats, hypertable_group

__all__ = ["EXTENSION_KEY", "format_stats", "hypertable_cli"]

#: ``flask hypertable ...``.
hypertable_cli = hypertable_group(AppGroup, current_app)
