"""A Flask-DebugToolbar panel listing the broker calls of the request (optional dependency).

Needs ``flask-debugtoolbar`` (``pip install htcluster[flask]`` does not
install it).  Add the panel to the toolbar's list and turn recording on::

    app.config["HYPERTABLE_RECORD_QUERIES"] = True
    app.config["DEBUG_TB_PANELS"] = [
        "flask_debugtoolbar.panels.timer.TimerDebugPanel",      # ... the panels you want
        "htcluster._flask.toolbar.HypertablePanel",
    ]

The panel shows :func:`htcluster._flask.queries.get_recorded_queries`:
method, HQL or arguments, host, duration in milliseconds, the app code that
made the call, and the error of a failed call.
"""
from __future__ import annotations

from flask import current_app
from flask_debugtoolbar.panels import DebugPanel
from markupsafe import Markup, escape

from .queries import get_recorded_queries

__all__ = ["HypertablePanel"]


class HypertablePanel(DebugPanel):
    """The "Hypertable" panel: one table row per broker call of the request."""

    name = "Hypertable"
    has_content = True

    def nav_title(self) -> str:
        return "Hypertable"

    def nav_subtitle(self) -> str:
        queries = get_recorded_queries()
        total = sum(q.duration for q in queries) * 1000.0
        return f"{len(queries)} calls in {total:.1f} ms"

    def title(self) -> str:
        return "Hypertable broker calls"

    def url(self) -> str:
        return ""

    def content(self) -> str:
        """Return the panel's HTML (every value escaped)."""
        if not current_app.config.get("HYPERTABLE_RECORD_QUERIES"):
            return str(Markup("<p>Set <code>HYPERTABLE_RECORD_QUERIES = True</code> to record "
                              "the broker calls of each request.</p>"))
        rows = []
        for q in get_recorded_queries():
            cells = (q.method, q.statement, q.host, q.namespace or "", f"{q.duration * 1000.0:.2f}",
                     q.bind or "", q.location, q.error or "")
            rows.append(Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(c)
                                                                      for c in cells)))
        head = "".join(f"<th>{escape(h)}</th>" for h in ("Method", "HQL / arguments", "Host", "Namespace",
                                                         "ms", "Bind", "Called from", "Error"))
        body = Markup("").join(rows) if rows else Markup('<tr><td colspan="8">no broker calls</td></tr>')
        return str(Markup('<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>').format(
            Markup(head), body))
