"""Header-line TSV files (Freebase dumps such as ``aircraft_model.tsv.gz``) as ``freebase`` rows.

Hypertable's own Freebase example loads such a file into a table created as
``CREATE TABLE freebase (name, category, property)`` (``../shared/data/README.md``);
the cells are formed the same way here:

* the first line names the columns, separated by tabs; it must have an ``id``
  column;
* each later line is one row, its **row key the ``id`` field**;
* ``name:`` holds the ``name`` field (no cell when it is empty);
* ``category:`` holds the category: the file name up to its first dot
  (``aircraft_model`` for ``aircraft_model.tsv.gz``), or ``--category``;
* ``property:<column>`` holds each other non-empty field, the qualifier being
  the column's header name (``property:maiden_flight``);
* fields beyond the header's columns are ignored (counted in
  :attr:`TsvStats.extra_fields`), as upstream's loader ignores them; a line
  with no ``id`` value is skipped and counted as malformed.

Cells carry no timestamp (the broker assigns one; ``Replicas`` stamps them
client-side).  Values are the fields' bytes as read (``surrogateescape``).
:func:`looks_like_header` is the content test ``htcluster load`` uses to tell
such a file from an Apache log.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..errors import ConfigError
from ..types import Cell, ColumnFamilySpec, Key, KeyFlag, Schema
from .weblog import LogStats

__all__ = ["FAMILIES", "TABLE", "TsvRecord", "TsvStats", "category_of", "iter_records", "looks_like_header",
           "parse_header", "schema"]

#: The table upstream's Freebase example loads into.
TABLE = "freebase"
#: Its column families, in schema order.
FAMILIES = ("name", "category", "property")
#: A header column name: what Freebase dumps use (letters, digits, ``_``, ``-``, ``.``, ``:``).
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")


@dataclass
class TsvStats(LogStats):
    """:class:`~htcluster.cli.weblog.LogStats` of a TSV read (the header line not counted).

    :ivar extra_fields: rows that had more fields than the header names (the extra ones were ignored).
    """

    extra_fields: int = 0


@dataclass(frozen=True)
class TsvRecord:
    """One data line: its row key and its cells (see the module docstring).

    :ivar row: the ``id`` field.
    :ivar fields: ``(column, value)`` of the non-empty fields other than ``id``.
    :ivar category: the ``category:`` value.
    """

    row: str
    fields: tuple[tuple[str, str], ...]
    category: str

    def cells(self) -> list[Cell]:
        """Return the row's cells: ``name``, ``category``, then one ``property:<column>`` per field.

        :returns: :class:`~htcluster.types.Cell` values without timestamps.
        """
        def cell(family: str, qualifier: str, value: str) -> Cell:
            return Cell(Key(self.row, family, qualifier, None, None, KeyFlag.INSERT),
                        value.encode("utf-8", "surrogateescape"))

        out = [cell("name", "", value) for column, value in self.fields if column == "name"]
        out.append(cell("category", "", self.category))
        out.extend(cell("property", column, value) for column, value in self.fields if column != "name")
        return out


def looks_like_header(line: str) -> bool:
    """Tell whether ``line`` is a TSV header: two or more tab-separated column names.

    :param line: the first line of an input, with or without its line ending.
    :returns: ``True`` for e.g. ``"name\\tid\\taircraft_type"``; ``False`` for an Apache log line.
    """
    names = line.rstrip("\r\n").split("\t")
    return len(names) >= 2 and all(_COLUMN.fullmatch(n) for n in names)


def parse_header(line: str) -> list[str]:
    """Return the column names of a header line.

    :param line: the first line of the file.
    :returns: the names, in order.
    :raises ConfigError: it is not a header of tab-separated names, it has no
        ``id`` column, or a name repeats.
    """
    names = line.rstrip("\r\n").split("\t")
    if not looks_like_header(line):
        raise ConfigError(f"the first line is not a TSV header of tab-separated column names: {line[:80]!r}")
    if "id" not in names:
        raise ConfigError(f"the TSV header has no 'id' column (the row key); its columns: {', '.join(names[:10])}"
                          + (", ..." if len(names) > 10 else ""))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"the TSV header names {', '.join(repeated)} more than once")
    return names


def category_of(path: str) -> str:
    """Return the category of a file: its name up to the first dot (``aircraft_model``).

    :param path: the ``--input`` path.
    :returns: the category.
    :raises ConfigError: the input is stdin (``'-'``) or the name starts with a dot.
    """
    if path == "-":
        raise ConfigError("a TSV read from stdin has no file name to take its category from; give --category")
    category = Path(path).name.split(".", 1)[0]
    if not category:
        raise ConfigError(f"cannot take a category from the file name {path!r}; give --category")
    return category


def iter_records(lines: Iterable[str], category: str, stats: Optional[TsvStats] = None) -> Iterator[TsvRecord]:
    """Parse a header-line TSV lazily into :class:`TsvRecord` values.

    :param lines: the file's lines, the header first (e.g. from :func:`~htcluster.cli.logfile.open_log`).
    :param category: the ``category:`` value of every row.
    :param stats: updated as lines are read (the header is not counted).
    :returns: an iterator of records; nothing for an empty input.
    :raises ConfigError: the first line is not a usable header (:func:`parse_header`).
    """
    stats = stats if stats is not None else TsvStats()
    source = iter(lines)
    header = next(source, None)
    if header is None:
        return
    names = parse_header(header)
    id_at = names.index("id")
    for number, line in enumerate(source, start=2):
        stats.lines += 1
        values = line.rstrip("\r\n").split("\t")
        if len(values) > len(names):
            stats.extra_fields += 1
        row = values[id_at] if id_at < len(values) else ""
        if not row:
            stats.malformed += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"line {number}: no 'id' value (the row key)")
            continue
        fields = tuple((name, value) for name, value in zip(names, values) if value and name != "id")
        yield TsvRecord(row, fields, category)


def schema() -> Schema:
    """Return the Thrift :class:`~htcluster.types.Schema` of ``freebase (name, category, property)``.

    :returns: a Schema with the three :data:`FAMILIES`, all in access group ``default``.
    """
    return Schema(column_families={name: ColumnFamilySpec(name=name, access_group="default")
                                   for name in FAMILIES})
