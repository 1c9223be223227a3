"""A small JSON web service over the LogDb table, built on ``htcluster.flask_ext``.

One web request logged by Apache is one LogDb row (``htcluster.cli.weblog``): the
families ClientIpAddress, UserId, Request, ResponseCode, ObjectSize, Referer
and UserAgent, row key ``"<client> <epoch seconds> <8 digits>"``.

=========================================  ==========================================
``POST /requests``                         store one request (JSON object) -> 201
``GET /requests/<row>``                    one request -> 200, or 404
``GET /requests?client=IP&limit=N``        the requests of one client (or all), N <= 1000
``GET /requests/stream?client=IP``         every matching request, streamed as a JSON array
=========================================  ==========================================

Every error is JSON ``{"error": ..., "status": ...}``: 404 missing row or
route, 405, 413 body over 1 MiB, 422 invalid input (with ``problems`` and the
``fields`` they are in: the body, a family, ``time``, ``row``, ``client``,
``limit``), 503 when no broker answers (``NoHostAvailable``,
``BrokerUnavailable``, ``PoolTimeout``), 502 when the broker refuses a call,
500 for anything else.  The stream answers these before its first byte;
after it, a failure cuts the array short (no closing ``]``).  POSTed bodies
are checked with pydantic (:class:`RequestIn`).

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
from typing import Annotated, Any, Optional

import click
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from flask.cli import AppGroup
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException

from htcluster.cli.logload import call_writer, ensure_logdb, load
from htcluster.cli.weblog import TABLE, LogEntry, LogStats, iter_entries, open_log
from htcluster.errors import (BrokerUnavailable, ClientException, DeadlineExceeded, InvalidRequest, NoHostAvailable,
                              PoolTimeout)
from htcluster.flask_ext import Hypertable
from htcluster._flask.encoding import value_to_json
from htcluster.types import Cell, RowInterval, ScanSpec

#: The namespace LogDb lives in unless HYPERTABLE_NAMESPACE says otherwise.
NAMESPACE = "logdb"
#: Most rows one list request returns.
MAX_LIMIT = 1000
#: Latest request time accepted, in epoch seconds: cell timestamps are
#: nanoseconds in a signed 64-bit integer (protocol.md 5.3), so 2**63 - 1 ns.
MAX_EPOCH = (2 ** 63 - 1) // 1_000_000_000
#: Largest request body accepted (a bigger one is a JSON 413).
MAX_BODY_BYTES = 1024 * 1024


# ------------------------------------------------------------------ what a POST may hold

def text(value: str) -> str:
    """Accept text that UTF-8 can store: a lone surrogate (JSON ``"\\ud800"``) cannot be."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


def key_text(value: str) -> str:
    """Accept text that can be part of a row key: UTF-8, and no NUL or other control character."""
    text(value)
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters such as {bad!r}")
    return value


def client_text(value: str) -> str:
    """Accept a client address: a row key part without spaces, and not ``-``."""
    key_text(value)
    if " " in value or value == "-":
        raise ValueError("must be the client address, without spaces")
    return value


def number_text(value: Any) -> Any:
    """Take a JSON integer (``200``) for a numeric family as its text (``"200"``); leave the rest alone."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def status_code(value: str) -> str:
    if not (len(value) == 3 and value.isdigit()):
        raise ValueError(f"must be three digits such as 200, got {value!r}")
    return value


def byte_count(value: str) -> str:
    if value != "-" and not (value.isdigit() and value.isascii()):
        raise ValueError(f"must be a byte count or '-', got {value!r}")
    return value


Text = Annotated[str, Field(min_length=1, max_length=8192), AfterValidator(text)]
Client = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(client_text)]
Status = Annotated[str, BeforeValidator(number_text), AfterValidator(status_code)]
Size = Annotated[str, BeforeValidator(number_text), AfterValidator(byte_count)]


class RequestIn(BaseModel):
    """A POSTed request: the LogDb families (protocol-level values are text) and its ``time``.

    ``ClientIpAddress``, ``Request`` and ``ResponseCode`` are required; the
    other families default to ``"-"`` as in an Apache log; ``time`` (whole
    epoch seconds, 0..MAX_EPOCH) to now.  Unknown fields are refused.
    """

    model_config = ConfigDict(extra="forbid")

    ClientIpAddress: Client
    UserId: Text = "-"
    Request: Text
    ResponseCode: Status
    ObjectSize: Size = "-"
    Referer: Text = "-"
    UserAgent: Text = "-"
    time: int = Field(default_factory=lambda: int(time.time()), ge=0, le=MAX_EPOCH, strict=True)

ht = Hypertable()
bp = Blueprint("logdb", __name__)


class BadPayload(Exception):
    """The request is not valid: ``problems`` says what is wrong, ``fields`` where."""

    def __init__(self, problems: list[str], fields: Optional[list[str]] = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.fields = fields or []


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
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # a larger body is a JSON 413
    app.register_error_handler(BadPayload, lambda e: _error(422, str(e), problems=e.problems, fields=e.fields))
    for unavailable in (NoHostAvailable, BrokerUnavailable, PoolTimeout, DeadlineExceeded):
        app.register_error_handler(unavailable, lambda e: _error(503, f"no broker answered: {e}"))
    app.register_error_handler(InvalidRequest, lambda e: _error(422, f"the request cannot be sent: {e}"))
    app.register_error_handler(ClientException, lambda e: _error(502, f"the broker refused: {e.message}",
                                                                 code=e.code))
    app.register_error_handler(HTTPException, lambda e: _error(e.code or 500, e.description))
    app.register_error_handler(Exception, _internal_error)
    app.cli.add_command(logdb_cli)
    return app


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=message, status=status, **extra), status


def _internal_error(exc: Exception) -> tuple[Response, int]:
    """Any other exception: logged with its traceback, answered as JSON 500 (never Werkzeug's HTML page)."""
    if isinstance(exc, HTTPException):  # pragma: no cover - handled by its own handler
        return _error(exc.code or 500, exc.description or "")
    current_app.logger.exception("unhandled error in %s", request.path)
    return _error(500, f"internal error ({type(exc).__name__}); see the server log")


# ------------------------------------------------------------------ payloads

def parse_request(body: bytes) -> LogEntry:
    """Check a POSTed body and return it as a LogDb entry.

    The body is decoded here (not by Flask), so that input no JSON library
    should be asked to hold (nesting 100,000 levels deep, invalid UTF-8) is a
    422 naming ``body``; the object is then checked by :class:`RequestIn`,
    whose errors name each field.  The row key ends in 8 random digits
    instead of a log line number: two requests of one client in the same
    second collide with odds of 1 in 10**8.

    :param body: the raw request body.
    :returns: a :class:`~htcluster.cli.weblog.LogEntry` whose ``line_number`` is random.
    :raises BadPayload: listing every problem found, and the fields they are in.
    """
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadPayload([f"body: not UTF-8 ({exc.reason} at byte {exc.start})"], ["body"]) from None
    except RecursionError:
        raise BadPayload(["body: JSON nested too deeply"], ["body"]) from None
    except ValueError as exc:
        raise BadPayload([f"body: not JSON ({exc})"], ["body"]) from None
    if not isinstance(payload, dict):
        raise BadPayload([f"body: must be a JSON object, got {type(payload).__name__}"], ["body"])
    try:
        entry = RequestIn.model_validate(payload)
    except ValidationError as exc:
        problems, fields = [], []
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "body"
            message = {"missing": "is required", "extra_forbidden": "unknown field"}.get(
                error["type"], error["msg"].removeprefix("Value error, "))
            problems.append(f"{field}: {message}")
            fields.append(field)
        raise BadPayload(problems, list(dict.fromkeys(fields))) from None
    return LogEntry(entry.ClientIpAddress, entry.UserId, entry.time, entry.Request, entry.ResponseCode,
                    entry.ObjectSize, entry.Referer, entry.UserAgent, secrets.randbelow(10 ** 8))


def checked_key_part(name: str, value: Optional[str]) -> Optional[str]:
    """Return a row key or client taken from the URL, refusing what no stored row can have.

    :raises BadPayload: ``value`` holds a NUL, a control character or a lone surrogate (422 naming ``name``).
    """
    if value is not None:
        try:
            key_text(value)
        except ValueError as exc:
            raise BadPayload([f"{name}: {exc}"], [name]) from None
    return value


def row_to_json(row: str, cells: list[Cell]) -> dict[str, Any]:
    """Return one request as ``{"row", "time", <family>: value, ...}`` (newest version of each family).

    Values are encoded as ``jsonify`` encodes them in an app using the
    extension: UTF-8 text, else ``{"base64": ...}`` (htcluster._flask.encoding).
    """
    out: dict[str, Any] = {"row": row}
    for cell in cells:
        family = cell.key.column_family
        if family not in out:
            out[family] = value_to_json(cell.value)
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
    entry = parse_request(request.get_data())
    cells = entry.cells()  # timestamped by the client: a write retried on another replica rewrites them
    ht.namespace().set_cells(TABLE, cells)
    return jsonify(row_to_json(entry.row, cells)), 201


@bp.get("/requests/<path:row>")
def read_request(row: str) -> Response:
    """Return one request, or 404."""
    cells = ht.namespace().get_row(TABLE, checked_key_part("row", row))
    if not cells:
        abort(404, description=f"no request with row key {row!r}")
    return jsonify(row_to_json(row, cells))


@bp.get("/requests")
def list_requests() -> Response:
    """Return up to ``limit`` requests (default 100, at most 1000), of ``client`` if given."""
    text = request.args.get("limit", "100")
    limit = int(text) if text.isdigit() else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadPayload([f"limit: must be an integer in 1..{MAX_LIMIT}"], ["limit"])
    cells = ht.namespace().get_cells(TABLE, client_spec(checked_key_part("client", request.args.get("client")),
                                                        limit))
    rows: dict[str, list[Cell]] = {}
    for cell in cells:
        rows.setdefault(cell.key.row, []).append(cell)
    return jsonify(requests=[row_to_json(r, c) for r, c in rows.items()], count=len(rows))


@bp.get("/requests/stream")
def stream_requests() -> Response:
    """Stream every request (of ``client`` if given) as one JSON array, objects as ``GET /requests`` gives.

    The first row is read before the response starts, so no broker (503)
    or a refused scan (502, e.g. no LogDb table) is still a JSON error with
    its status.  A failure after the first byte cannot change the status
    any more: the body stops without its closing ``]`` (invalid JSON, and
    the chunked body lacks its last chunk), which the client must treat as
    an error; the server logs it.
    """
    spec = client_spec(checked_key_part("client", request.args.get("client")))
    return ht.stream(TABLE, spec, by_row=True, row_json=row_to_json)


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
