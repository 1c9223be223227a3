"""``quart hypertable status``: the Flask extension's command group in Quart's CLI.

The commands are written once, for Flask and Quart, in
:mod:`htcluster._flask.commands`; this is their group in Quart's CLI, added
to each app by :meth:`htcluster.quart_ext.Hypertable.init_app`.  Quart's
``AppGroup`` enters the app context only when asked (``with_appcontext=True``).
"""
from __future__ import annotations

import click
from quart import current_app
from quart.cli import AppGroup

from .._flask.commands import hypertable_group

__all__ = ["hypertable_cli"]

#: ``quart hypertable ...``.
hypertable_cli: click.Group = hypertable_group(AppGroup, current_app, with_appcontext=True)
