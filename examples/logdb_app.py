"""A small JSON web service over the LogDb table, built on ``htcluster.flask_ext``.

One web request logged by Apache is one LogDb row (``htcluster.weblog``): the
families ClientIpAddress, UserId, Request, ResponseCode, ObjectSize, Referer
and UserAgent, row key ``"<client> <epoch seconds> <8 digits>"``.

=========================================  ==========================================
``POST /requests``                         store one request (JSON object) -> 201
``GET /requests/<row>``                    one request -> 200, or 404
``GET /requests?client=IP&limit=N``        the requests of one client (or all), N <= 1000
``GET /requests/stream?client=IP``         every matching request, streamed as a JSON array
=========================================  ==========================================

Errors are JSON ``{"error": ..., "status": ...}``: 404 missing row, 422 bad
payload, 503 when no broker answers (``NoHostAvailable``, ``BrokerUnavailable``,
``PoolTimeout``), 502 when the broker refuses a call.

Run it against a local cluster (see ``examples/README.rst``)::

    htcluster cluster --brokers 3              # prints: export HYPERTABLE_HOSTS=...
    export HYPERTABLE_HOSTS=127.0.0.1:...,...
    flask --app examples/logdb_app.py logdb init
    flask --app examples/logdb_app.py logdb load ../shared/data/access.log.gz
    flask --app examples/logdb_app.py run
"""
from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any, Optional

import click
from flask import Blueprint, Flask, Response, abort, jsonify, request
from flask.cli import AppGroup
from werkzeug.exceptions import HTTPException

from htcluster.errors import BrokerUnavailable, ClientException, NoHostAvailable, PoolTimeout
from htcluster.flask_ext import Hypertable
from htcluster.logload import call_writer, ensure_logdb, load
from htcluster.types import Cell, RowInterval, ScanSpec
from htcluster.weblog import FAMILIES, TABLE, LogEntry, LogStats, iter_entries, open_log

#: The namespace LogDb lives in unless HYPERTABLE_NAMESPACE says otherwise.
NAMESPACE = "logdb"
#: Most rows one list request returns.
MAX_LIMIT = 1000
#: Fields a POSTed request may have besides the families: its time (epoch seconds).
TIME_FIELD = "time"

ht = Hypertable()
bp = Blueprint("logdb", __name__)


class BadPayload(Exception):
    """The POSTed JSON is not a valid request; ``problems`` lists what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def environment_config(environ: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Return the ``HYPERTABLE_*`` environment variables, JSON-decoded where they are JSON.

    ``HYPERTABLE_HOSTS=ht1,ht2`` stays a string; ``HYPERTABLE_POOL_SIZE=8`` becomes 8.

    :param environ: the variables to read; default ``os.environ``.
    :returns: ``{key: value}`` for every variable whose name starts with ``HYPERTABLE_``.
    """
    config: dict[str, Any] = {}
    for key, value in (os.environ if environ is None else environ).items():
        if key.startswith("HYPERTABLE_"):
            try:
                config[key] = json.loads(value)
            except ValueError:
                config[key] = value
    return config


def create_app(config: Optional[dict[str, Any]] = None) -> Flask:
    """Build the app: defaults, then ``HYPERTABLE_*`` from the environment, then ``config``.

    :param config: settings that win over the environment (tests use it).
    :returns: the app, with the ``logdb`` and ``hypertable`` CLI groups.
    :raises ConfigError: a ``HYPERTABLE_*`` setting is invalid.
    """
    app = Flask(__name__)
    app.config["HYPERTABLE_NAMESPACE"] = NAMESPACE
    app.config.update(environment_config())
    app.config.update(config or {})
    ht.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(BadPayload, lambda e: _error(422, str(e), problems=e.problems))
    for unavailable in (NoHostAvailable, BrokerUnavailable, PoolTimeout):
        app.register_error_handler(unavailable, lambda e: _error(503, f"no broker answered: {e}"))
    app.register_error_handler(ClientException, lambda e: _error(502, f"the broker refused: {e.message}",
                                                                 code=e.code))
    app.register_error_handler(HTTPException, lambda e: _error(e.code or 500, e.description))
    app.cli.add_command(logdb_cli)
    return app


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=message, status=status, **extra), status


# ------------------------------------------------------------------ payloads

def parse_request(payload: Any) -> LogEntry:
    """Check a POSTed request and return it as a LogDb entry.

    ``ClientIpAddress`` (no spaces), ``Request`` and ``ResponseCode`` (three
    digits) are required; ``ObjectSize`` is a count or ``"-"``; the
    other families default to ``"-"``; ``time`` (epoch seconds) to now.  The
    row key ends in 8 random digits instead of a log line number: two requests
    of one client in the same second collide with odds of 1 in 10**8.

    :param payload: the decoded JSON body.
    :returns: a :class:`~htcluster.weblog.LogEntry` whose ``line_number`` is random.
    :raises BadPayload: listing every problem found.
    """
    if not isinstance(payload, dict):
        raise BadPayload(["the body must be a JSON object"])
    problems = [f"unknown field {k!r}" for k in payload if k not in FAMILIES and k != TIME_FIELD]
    values = {family: payload.get(family, "-") for family in FAMILIES}
    for family, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and family in ("ResponseCode", "ObjectSize"):
            values[family] = value = str(value)
        if not isinstance(value, str) or not value:
            problems.append(f"{family} must be a non-empty string, got {value!r}")
    client = values["ClientIpAddress"]
    if "ClientIpAddress" not in payload or (isinstance(client, str) and (" " in client or client == "-")):
        problems.append("ClientIpAddress is required, without spaces")
    if "Request" not in payload:
        problems.append("Request is required, e.g. 'GET / HTTP/1.1'")
    code = values["ResponseCode"]
    if "ResponseCode" not in payload:
        problems.append("ResponseCode is required: the HTTP status, three digits such as 200")
    elif isinstance(code, str) and not (len(code) == 3 and code.isdigit()):
        problems.append(f"ResponseCode must be three digits such as 200, got {code!r}")
    size = values["ObjectSize"]
    if isinstance(size, str) and size != "-" and not size.isdigit():
        problems.append(f"ObjectSize must be a byte count or '-', got {size!r}")
    epoch = payload.get(TIME_FIELD, int(time.time()))
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        problems.append(f"time must be whole seconds since 1970, got {epoch!r}")
    if problems:
        raise BadPayload(problems)
    return LogEntry(client, values["UserId"], epoch, values["Request"], code, size, values["Referer"],
                    values["UserAgent"], secrets.randbelow(10 ** 8))


def row_to_json(row: str, cells: list[Cell]) -> dict[str, Any]:
    """Return one request as ``{"row", "time", <family>: value, ...}`` (newest version of each family)."""
    out: dict[str, Any] = {"row": row}
    for cell in cells:
        family = cell.key.column_family
        if family not in out:
            out[family] = (cell.value or b"").decode("utf-8", "replace")
            out.setdefault("time", cell.key.timestamp // 1_000_000_000)
    return out


def client_spec(client: Optional[str], limit: int = 0) -> ScanSpec:
    """Return the scan of one client's rows (all rows when ``client`` is None), newest version only.

    The prefix ``"<client> "`` becomes the interval [prefix, prefix with its
    last byte + 1), as ``ROW =^`` does (protocol.md 6.3).
    """
    intervals = None
    if client:
        prefix = f"{client} "
        intervals = [RowInterval(start_row=prefix, start_inclusive=True,
                                 end_row=prefix[:-1] + chr(ord(prefix[-1]) + 1), end_inclusive=False)]
    return ScanSpec(row_intervals=intervals, versions=1, row_limit=limit)


# ------------------------------------------------------------------ endpoints

@bp.post("/requests")
def create_request() -> tuple[Response, int]:
    """Store one request; the JSON object's keys are the LogDb families (and ``time``)."""
    entry = parse_request(request.get_json(silent=True))
    cells = entry.cells()  # timestamped by the client: a write retried on another replica rewrites them
    ht.namespace().set_cells(TABLE, cells)
    return jsonify(row_to_json(entry.row, cells)), 201


@bp.get("/requests/<path:row>")
def read_request(row: str) -> Response:
    """Return one request, or 404."""
    cells = ht.namespace().get_row(TABLE, row)
    if not cells:
        abort(404, description=f"no request with row key {row!r}")
    return jsonify(row_to_json(row, cells))


@bp.get("/requests")
def list_requests() -> Response:
    """Return up to ``limit`` requests (default 100, at most 1000), of ``client`` if given."""
    text = request.args.get("limit", "100")
    limit = int(text) if text.isdigit() else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadPayload([f"limit must be an integer in 1..{MAX_LIMIT}"])
    cells = ht.namespace().get_cells(TABLE, client_spec(request.args.get("client"), limit))
    rows: dict[str, list[Cell]] = {}
    for cell in cells:
        rows.setdefault(cell.key.row, []).append(cell)
    return jsonify(requests=[row_to_json(r, c) for r, c in rows.items()], count=len(rows))


@bp.get("/requests/stream")
def stream_requests() -> Response:
    """Stream every request (of ``client`` if given) as one JSON array, objects as ``GET /requests`` gives."""
    return ht.stream(TABLE, client_spec(request.args.get("client")), by_row=True, row_json=row_to_json)


# ------------------------------------------------------------------ commands

@click.group("logdb", cls=AppGroup)
def logdb_cli() -> None:
    """Set up and fill the LogDb table."""


@logdb_cli.command("init")
def init_command() -> None:
    """Create the namespace and the LogDb table unless they exist."""
    namespace = ht.settings.namespace or NAMESPACE
    ensure_logdb(ht.call, namespace)
    click.echo(f"{namespace}/{TABLE} is ready")


@logdb_cli.command("load")
@click.argument("log", type=click.Path(dir_okay=False, allow_dash=True))
def load_command(log: str) -> None:
    """Load an Apache access log (plain or gzip) into LogDb."""
    namespace = ht.settings.namespace or NAMESPACE
    ensure_logdb(ht.call, namespace)
    stats = LogStats()
    with open_log(log) as lines:
        report = load(iter_entries(lines, stats), call_writer(ht.call, namespace), stats=stats)
    click.echo(f"{report.rows:,} requests ({report.cells:,} cells) in {report.seconds:.2f} s; "
               f"{report.malformed} malformed lines skipped")


if __name__ == "__main__":  # pragma: no cover - `python examples/logdb_app.py`
    create_app().run()
