"""Apache access logs as LogDb rows: parse, read, and generate.

The LogDb table is the one Hypertable's own examples load Apache logs into
(``../shared/data/README.md``)::

    CREATE TABLE LogDb (ClientIpAddress, UserId, Request, ResponseCode,
                        ObjectSize, Referer, UserAgent)

One request becomes one row with one cell in each of the seven families.  The
values are the log's fields as written (``"-"`` stays ``"-"``; ``\\"`` inside
quoted fields becomes ``"``), as bytes, byte for byte (``surrogateescape``).

Row key (:func:`row_key`)::

    <client> SP <epoch seconds, 10 digits> SP <line number, 8 digits>

for example ``81.52.143.15 1201335683 00000001``.  The client address comes
first so that one client's requests sort together and are found by the prefix
``"81.52.143.15 "`` (``SELECT * FROM LogDb WHERE ROW =^ "81.52.143.15 "``; the
trailing space keeps ``1.2.3.4`` from matching ``1.2.3.45``); within a client
rows sort by time, and the input line number (1-based) keeps two requests of
the same client in the same second apart, so no request overwrites another.
Every cell carries the request time as its timestamp (nanoseconds, as on the
wire), so ``WHERE TIMESTAMP >= "..."`` selects by request time.

Input is the Apache "combined" format, optionally followed by a virtual-host
field (as in the shared sample log); the "common" format (no referer and user
agent) is accepted too, with ``"-"`` for both.  Lines that match neither are
counted in :class:`LogStats` and skipped.  Files are opened with
:func:`~htcluster.cli.logfile.open_log` (re-exported here).
"""
from __future__ import annotations

import calendar
import itertools
import random
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

from .logfile import LogText, open_log
from ..types import Cell, ColumnFamilySpec, Key, KeyFlag, Schema

__all__ = ["CREATE_TABLE", "FAMILIES", "GENERATED_LINES", "GENERATED_SEED", "TABLE", "LogEntry", "LogStats",
           "LogText", "MalformedLine", "generate_lines", "iter_entries", "open_log", "parse_line", "request_path",
           "row_key", "schema"]

#: The table name upstream's examples use.
TABLE = "LogDb"
#: Column families of LogDb, in schema order.
FAMILIES = ("ClientIpAddress", "UserId", "Request", "ResponseCode", "ObjectSize", "Referer", "UserAgent")
#: The HQL that creates LogDb (one statement, no trailing ';', :ref:`hql`).
CREATE_TABLE = f"CREATE TABLE {TABLE} ({', '.join(FAMILIES)})"

#: Width of the zero-padded fields of the row key.
EPOCH_DIGITS = 10
LINE_DIGITS = 8

# A quoted field, "unrolled" (runs of plain characters between escapes): the same language as
# "((?:[^"\\]|\\.)*)", but re keeps no backtracking state per character, so a 10 MB field costs
# memory proportional to the line instead of ~300 bytes per character.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_LINE = re.compile(
    r"(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    rf"{_QUOTED} (?P<status>\d{{3}}) (?P<size>\d+|-)"
    rf"(?: {_QUOTED} {_QUOTED})?"
    r'(?: (?:"(?P<vhost_q>[^"]*)"|(?P<vhost>\S+)))?\s*'
)
_TIME = re.compile(r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")
_MONTHS = {name: i for i, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_UNESCAPE = re.compile(r"\\(.)")


class MalformedLine(ValueError):
    """A line is not an Apache common/combined log line; the message says which part failed."""

    def __init__(self, message: str, line_number: int) -> None:
        super().__init__(f"line {line_number}: {message}")
        self.line_number = line_number


@dataclass(frozen=True)
class LogEntry:
    """One parsed request.

    :ivar epoch: request time in whole seconds since the epoch (UTC).
    :ivar line_number: 1-based position in the input, part of the row key.
    """

    client: str
    user_id: str
    epoch: int
    request: str
    status: str
    size: str
    referer: str
    user_agent: str
    line_number: int
    vhost: Optional[str] = None

    @property
    def path(self) -> str:
        """Return the request's path (see :func:`request_path`)."""
        return request_path(self.request)

    @property
    def row(self) -> str:
        """Return the LogDb row key of this request (see :func:`row_key`)."""
        return row_key(self.client, self.epoch, self.line_number)

    def values(self) -> dict[str, str]:
        """Return ``{family: value}`` for the seven LogDb families."""
        return {"ClientIpAddress": self.client, "UserId": self.user_id, "Request": self.request,
                "ResponseCode": self.status, "ObjectSize": self.size, "Referer": self.referer,
                "UserAgent": self.user_agent}

    def cells(self) -> list[Cell]:
        """Return the seven LogDb cells of this request, timestamped with the request time.

        :returns: one :class:`~htcluster.types.Cell` per family, in :data:`FAMILIES`
            order, ``key.timestamp`` = request time in nanoseconds (:ref:`cell-flags`).
        """
        row, ts = self.row, self.epoch * 1_000_000_000
        return [Cell(Key(row, family, "", ts, None, KeyFlag.INSERT), value.encode("utf-8", "surrogateescape"))
                for family, value in self.values().items()]


@dataclass
class LogStats:
    """Counters of one read: lines seen, lines skipped as malformed, first few errors."""

    lines: int = 0
    malformed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> int:
        """Return the number of lines that became entries."""
        return self.lines - self.malformed


def row_key(client: str, epoch: int, line_number: int) -> str:
    """Build the LogDb row key ``"<client> <epoch:010d> <line:08d>"``.

    :param client: client address as logged.
    :param epoch: request time, seconds since the epoch.
    :param line_number: 1-based line number in the input.
    :returns: the row key; wider numbers keep their digits (still unique).
    """
    return f"{client} {epoch:0{EPOCH_DIGITS}d} {line_number:0{LINE_DIGITS}d}"


def request_path(request: str) -> str:
    """Return the path of a request line: its second word, or the whole line if it has none.

    :param request: the request field, e.g. ``"GET /a HTTP/1.1"``.
    :returns: e.g. ``"/a"``.
    """
    parts = request.split(" ")
    return parts[1] if len(parts) >= 2 else request


def _epoch(text: str, line_number: int) -> int:
    match = _TIME.fullmatch(text)
    if match is None:
        raise MalformedLine(f"bad time {text!r}, expected dd/Mon/yyyy:HH:MM:SS +zzzz", line_number)
    day, mon, year, hh, mm, ss, sign, zh, zm = match.groups()
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        raise MalformedLine(f"bad month {mon!r} in time {text!r}", line_number)
    local = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss), 0, 0, 0))
    if not (1 <= int(day) <= 31 and int(hh) < 24 and int(mm) < 60 and int(ss) <= 60):
        raise MalformedLine(f"time out of range {text!r}", line_number)
    offset = (int(zh) * 3600 + int(zm) * 60) * (1 if sign == "+" else -1)
    return local - offset


def parse_line(line: str, line_number: int) -> LogEntry:
    """Parse one Apache common/combined log line (optionally with a trailing virtual host).

    :param line: the text, with or without its line ending.
    :param line_number: 1-based position in the input (goes into the row key).
    :returns: the :class:`LogEntry`.
    :raises MalformedLine: the line does not have the expected shape.
    """
    text = line.rstrip("\r\n")
    match = _LINE.fullmatch(text)
    if match is None:
        raise MalformedLine(f"not an Apache common/combined log line: {text[:80]!r}", line_number)
    client = match["client"]
    if not client.isascii() or not client.isprintable():
        raise MalformedLine(f"client address {client!r} is not printable ASCII", line_number)
    epoch = _epoch(match["time"], line_number)
    if epoch < 0:
        raise MalformedLine(f"time {match['time']!r} is before 1970", line_number)
    request, referer, agent = (_UNESCAPE.sub(r"\1", g) if g is not None else "-"
                               for g in match.group(5, 8, 9))
    return LogEntry(client, match["user"], epoch, request, match["status"], match["size"],
                    referer, agent, line_number, match["vhost_q"] or match["vhost"])


def iter_entries(lines: Iterable[str], stats: Optional[LogStats] = None) -> Iterator[LogEntry]:
    """Parse ``lines`` lazily, skipping (and counting) malformed ones.

    Blank lines count as malformed too: a log has none.

    :param lines: log lines, e.g. from :func:`open_log`.
    :param stats: updated as lines are read; keeps the first five errors.
    :returns: an iterator of :class:`LogEntry`.
    """
    stats = stats if stats is not None else LogStats()
    for number, line in enumerate(lines, start=1):
        stats.lines += 1
        try:
            yield parse_line(line, number)
        except MalformedLine as exc:
            stats.malformed += 1
            if len(stats.examples) < 5:
                stats.examples.append(str(exc))


def schema() -> Schema:
    """Return the Thrift :class:`~htcluster.types.Schema` of LogDb.

    :returns: a Schema with the seven :data:`FAMILIES`, all in access group ``default``.
    """
    return Schema(column_families={name: ColumnFamilySpec(name=name, access_group="default")
                                   for name in FAMILIES})


# ------------------------------------------------------------ synthetic logs

_PAGES = (  # (path, bytes, weight)
    ("/", 8120, 30), ("/index.html", 8120, 12), ("/products/", 11230, 10),
    ("/products/widget.html", 6402, 8), ("/products/gadget.html", 7311, 6),
    ("/blog/", 15422, 7), ("/blog/2024/03/release-notes.html", 21877, 5),
    ("/docs/install.html", 9410, 6), ("/docs/faq.html", 12876, 5), ("/about.html", 4518, 3),
    ("/contact.php", 3320, 2), ("/css/site.css", 18003, 20), ("/js/app.js", 48211, 18),
    ("/images/logo.png", 5230, 22), ("/images/banner.jpg", 142892, 9),
    ("/favicon.ico", 1150, 10), ("/download/setup-2.1.zip", 2411008, 3), ("/robots.txt", 54, 2),
)
_MISSING = ("/wp-login.php", "/phpmyadmin/index.php", "/old/index.html", "/apple-touch-icon.png",
            "/.env", "/images/spacer.gif")
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Mobile Safari/537.36",
    "curl/8.5.0",
)
_BOTS = ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)")
_SEARCH = ("https://www.google.com/search?q=widget+review", "https://duckduckgo.com/?q=gadget+manual",
           "https://news.ycombinator.com/item?id=39581234")
_MONTH_NAMES = tuple(_MONTHS)
#: Lines of a generated log, and the seed that makes it, when nothing else is asked for.
GENERATED_LINES = 5000
GENERATED_SEED = 2008


def _clf_time(epoch: int) -> str:
    year, month, day, hh, mm, ss, *_ = time.gmtime(epoch)
    return f"{day:02d}/{_MONTH_NAMES[month - 1]}/{year}:{hh:02d}:{mm:02d}:{ss:02d} +0000"


def generate_lines(count: int = GENERATED_LINES, seed: int = GENERATED_SEED, start: int = 1709251200,
                   vhost: str = "www.example.com") -> Iterator[str]:
    """Yield a realistic synthetic access log in combined format plus a virtual host.

    Clients follow a skewed popularity (a few heavy users, many one-off
    visitors, two crawlers); each browses the site following links (the
    referer is the previous page), with cache revalidations (304 and no
    body), partial downloads (206), probes for missing pages (404), a
    redirect (301) and rare server errors (500).  Times increase.

    :param count: number of lines.
    :param seed: the same seed gives the same log.
    :param start: time of the first request, seconds since the epoch (UTC).
    :param vhost: the virtual host written at the end of each line.
    :returns: an iterator of lines without line endings.
    """
    rng = random.Random(seed)
    n_clients = max(10, count // 12)
    clients = [f"{rng.choice((24, 66, 81, 88, 93, 151, 192, 203))}.{rng.randrange(256)}."
               f"{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(n_clients)]
    # cumulative weights once, not per line: choices() would re-add n_clients weights on every call
    # (the same floats in the same order, so a seed still gives the same log)
    client_cum = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(n_clients)))
    agents = {ip: rng.choice(_AGENTS) for ip in clients}
    agents.update(zip(clients[3:8:4], _BOTS))  # two busy crawlers
    last_page: dict[str, str] = {}
    paths = [p for p, _, _ in _PAGES]
    sizes = {p: s for p, s, _ in _PAGES}
    page_cum = list(itertools.accumulate(w for _, _, w in _PAGES))
    now = float(start)
    for _ in range(count):
        now += rng.expovariate(1 / 4.0)
        ip = rng.choices(clients, cum_weights=client_cum)[0]
        agent = agents[ip]
        bot = agent in _BOTS
        method, status = "GET", "200"
        if bot and rng.random() < 0.1:
            path = "/robots.txt"
        elif rng.random() < 0.03:
            path = rng.choice(_MISSING)
        elif rng.random() < 0.01:
            path = "/products"
        else:
            path = rng.choices(paths, cum_weights=page_cum)[0]
        size: Union[int, str] = sizes.get(path, 0)
        if path in _MISSING:
            status, size = "404", 209 + len(path)
        elif path == "/products":
            status, size = "301", 238
        elif rng.random() < 0.004:
            status, size = "500", 531
        elif path.startswith("/download/") and rng.random() < 0.4:
            status, size = "206", rng.randrange(4096, int(size))
        elif not bot and rng.random() < 0.16:
            status, size = "304", "-"
        if path.endswith((".html", "/")) and status == "200" and path != "/":
            size = int(size) + rng.randrange(-40, 41)
        if path == "/contact.php" and rng.random() < 0.5:
            method = "POST"
        elif rng.random() < 0.01:
            method, size = "HEAD", "-"
        previous = last_page.get(ip)
        if bot or previous is None:
            referer = rng.choice(_SEARCH) if not bot and rng.random() < 0.3 else "-"
        else:
            referer = f"http://{vhost}{previous}"
        if path.endswith((".html", "/", ".php")):
            last_page[ip] = path
        user = "alice" if ip == clients[0] and path.startswith("/docs/") else "-"
        protocol = "HTTP/1.0" if bot else "HTTP/1.1"
        yield (f'{ip} - {user} [{_clf_time(int(now))}] "{method} {path} {protocol}" {status} {size} '
               f'"{referer}" "{agent}" "{vhost}"')
