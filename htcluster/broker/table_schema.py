"""Table schemas of the stand-in broker: validation, family ids, JSON and XML.

A Thrift ``Schema`` given to ``table_create`` is checked and normalised the
way the broker does it (:ref:`hql`): a ``default`` access group is added,
families with no access group go into it, a family naming an unknown group is
BAD_SCHEMA, and family names come from ``ColumnFamilySpec.name``.  Family ids
are 1, 2, ... in schema order (access groups in order, then their families in
definition order; :ref:`broker-types`); cells are stored under these ids, which
survive renames of other families and are never reused.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional
from xml.sax.saxutils import escape, quoteattr

from .. import codes
from .._thrift.ttypes import AccessGroupOptions, AccessGroupSpec, ColumnFamilyOptions, ColumnFamilySpec, Schema
from ._errors import client_error

__all__ = ["COUNTER_MAX", "COUNTER_MIN", "Family", "TableSchema", "parse_counter"]

DEFAULT_GROUP = "default"
#: Family ids are one byte on the wire of a real RangeServer; 0 marks row deletes.
MAX_FAMILY_ID = 255
_NAME = re.compile(r"[^:\x00]+\Z")
#: A COUNTER write: ``=`` to reset, then a signed decimal integer.
_COUNTER = re.compile(rb"(=?)([+-]?[0-9]+)\Z")
#: Counters are signed 64-bit integers, as upstream's.
COUNTER_MIN, COUNTER_MAX = -(2**63), 2**63 - 1
_BLOOM_MODES = {"none", "disabled", "rows", "row", "rows+cols", "row+col", "rows-cols", "row-col",
                "rows_cols", "row_col"}
#: Option of ``ColumnFamilyOptions`` / ``AccessGroupOptions`` -> its XML tag, in XML order.
_CF_XML = (("max_versions", "MaxVersions"), ("ttl", "TTL"), ("time_order_desc", "TimeOrder"), ("counter", "Counter"))
_AG_XML = (("replication", "Replication"), ("blocksize", "BlockSize"), ("compressor", "Compressor"),
           ("bloom_filter", "BloomFilter"), ("in_memory", "InMemory"))
CF_OPTIONS = tuple(name for name, _ in _CF_XML)
AG_OPTIONS = tuple(name for name, _ in _AG_XML)


@dataclass
class Family:
    """One live column family; ``options`` holds only the options that are set."""

    name: str
    access_group: str
    id: int
    options: dict[str, Any] = field(default_factory=dict)
    value_index: bool = False
    qualifier_index: bool = False
    generation: int = 1

    @property
    def max_versions(self) -> int:
        """Versions kept per cell, 0 for unlimited."""
        return self.options.get("max_versions") or 0

    @property
    def ttl(self) -> int:
        """Seconds a cell stays visible, 0 for forever."""
        return self.options.get("ttl") or 0

    @property
    def time_order_desc(self) -> bool:
        """``TIME_ORDER DESC``: versions come oldest first."""
        return bool(self.options.get("time_order_desc"))

    @property
    def counter(self) -> bool:
        """``COUNTER``: writes add to the cell, reads return the sum (see :func:`parse_counter`)."""
        return bool(self.options.get("counter"))


def parse_counter(value: bytes) -> Optional[tuple[bool, int]]:
    """Read a write to a COUNTER family: ``b"5"``, ``b"+5"``, ``b"-5"`` add; ``b"=5"`` resets to 5.

    Hypertable's counter semantics: each write is a signed decimal delta, a
    leading ``=`` sets the counter instead, a read answers the sum as decimal
    text.  Counters are signed 64-bit integers.

    :param value: the cell value as written (ASCII).
    :returns: ``(reset, amount)``, or ``None`` when ``value`` is not of that form
        or ``amount`` is outside the signed 64-bit range.
    """
    match = _COUNTER.match(value)
    if match is None:
        return None
    amount = int(match.group(2))
    if not COUNTER_MIN <= amount <= COUNTER_MAX:
        return None
    return bool(match.group(1)), amount


@dataclass
class AccessGroup:
    """One access group; its options only matter for the schema's rendering."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    generation: int = 1


@dataclass
class TableSchema:
    """A validated table schema."""

    access_groups: list[AccessGroup]
    families: list[Family]  # by access group, then definition order: the id order of a new table
    generation: int = 1
    last_family_id: int = 0
    group_commit_interval: Optional[int] = None
    ag_defaults: dict[str, Any] = field(default_factory=dict)
    cf_defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.families}
        self.by_id = {f.id: f for f in self.families}
        self.counter_ids = frozenset(f.id for f in self.families if f.counter)

    # -------------------------------------------------------------- building

    @classmethod
    def from_thrift(cls, schema: Optional[Schema], previous: Optional["TableSchema"] = None) -> "TableSchema":
        """Validate a Thrift ``Schema`` and assign family ids.

        :param previous: the current schema when altering: families keeping
            their name keep their id, as does a family under a new name whose
            ``ColumnFamilySpec.id`` is that of a family no longer named (a
            rename); new ones get fresh ids.
        :raises ClientException: BAD_SCHEMA, naming what is wrong.
        """
        schema = schema or Schema()
        ag_defaults = _options(schema.access_group_defaults, AG_OPTIONS)
        cf_defaults = _options(schema.column_family_defaults, CF_OPTIONS)
        groups: dict[str, AccessGroup] = {}
        for key, spec in (schema.access_groups or {}).items():
            name = (spec.name if spec is not None and spec.name else key) or ""
            if not _NAME.match(name) or name in groups:
                raise client_error(codes.BAD_SCHEMA, f"bad or repeated access group name {name!r}")
            options = {**ag_defaults, **_options(spec.options if spec else None, AG_OPTIONS)}
            _check_ag_options(name, options)
            defaults = {**cf_defaults, **_options(spec.defaults if spec else None, CF_OPTIONS)}
            groups[name] = AccessGroup(name, options, defaults)
        if DEFAULT_GROUP not in groups:
            groups = {DEFAULT_GROUP: AccessGroup(DEFAULT_GROUP, dict(ag_defaults), dict(cf_defaults)), **groups}
        members: dict[str, list[ColumnFamilySpec]] = {name: [] for name in groups}
        seen: set[str] = set()
        for key, spec in (schema.column_families or {}).items():
            if spec is None or spec.deleted:
                continue
            if not spec.name or not _NAME.match(spec.name):
                raise client_error(codes.BAD_SCHEMA, f"column family under key {key!r} has a bad name {spec.name!r}; "
                                                     "set ColumnFamilySpec.name (no ':')")
            if spec.name in seen:
                raise client_error(codes.BAD_SCHEMA, f"column family {spec.name!r} is defined twice")
            seen.add(spec.name)
            group = spec.access_group or DEFAULT_GROUP
            if group not in groups:
                raise client_error(codes.BAD_SCHEMA, f"column family {spec.name!r} names access group {group!r}, "
                                                     "which the schema does not define")
            members[group].append(spec)
        old = previous.by_name if previous else {}
        # a family renamed by an alter keeps its id (and cells): matched by ColumnFamilySpec.id
        named = {spec.name for specs in members.values() for spec in specs}
        renamed = {fam.id: fam for fam in (previous.families if previous else ()) if fam.name not in named}
        last_id = previous.last_family_id if previous else 0
        generation = previous.generation + 1 if previous else 1
        families = []
        for group_name, specs in members.items():
            for spec in specs:
                options = {**groups[group_name].defaults, **_options(spec.options, CF_OPTIONS)}
                _check_cf_options(spec.name, options)
                if spec.name in old:
                    fid = old[spec.name].id
                elif spec.id is not None and spec.id in renamed:
                    fid = renamed.pop(spec.id).id
                else:
                    last_id += 1
                    fid = last_id
                families.append(Family(spec.name, group_name, fid, options, bool(spec.value_index),
                                       bool(spec.qualifier_index), generation))
        if last_id > MAX_FAMILY_ID:
            raise client_error(codes.BAD_SCHEMA, f"a table can have at most {MAX_FAMILY_ID} column families "
                                                 "over its lifetime")
        for group in groups.values():
            group.generation = generation
        return cls(list(groups.values()), families, generation, last_id, schema.group_commit_interval or None,
                   ag_defaults, cf_defaults)

    # ------------------------------------------------------------ conversion

    def to_json(self) -> str:
        """Return the schema as JSON, as stored in the ``tables`` table."""
        data = asdict(self)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "TableSchema":
        """Rebuild a schema from :meth:`to_json` output."""
        data = json.loads(text)
        data["access_groups"] = [AccessGroup(**g) for g in data["access_groups"]]
        data["families"] = [Family(**f) for f in data["families"]]
        return cls(**data)

    def to_thrift(self) -> Schema:
        """Return the Thrift ``Schema``, with only the fields that are set (:ref:`hql`)."""
        groups = {g.name: AccessGroupSpec(name=g.name, generation=g.generation,
                                          options=AccessGroupOptions(**g.options) if g.options else None,
                                          defaults=ColumnFamilyOptions(**g.defaults) if g.defaults else None)
                  for g in self.access_groups}
        families = {f.name: ColumnFamilySpec(name=f.name, access_group=f.access_group, deleted=False,
                                             generation=f.generation, id=f.id, value_index=f.value_index,
                                             qualifier_index=f.qualifier_index,
                                             options=ColumnFamilyOptions(**f.options) if f.options else None)
                    for f in self.families}
        return Schema(access_groups=groups, column_families=families, generation=self.generation,
                      group_commit_interval=self.group_commit_interval,
                      access_group_defaults=AccessGroupOptions(**self.ag_defaults) if self.ag_defaults else None,
                      column_family_defaults=ColumnFamilyOptions(**self.cf_defaults) if self.cf_defaults else None)

    def to_xml(self, with_ids: bool = False) -> str:
        """Render the schema as the broker's XML (:ref:`hql`, two spaces per level)."""
        out = ["<Schema>"]
        if with_ids:
            out.append(f"  <Generation>{self.generation}</Generation>")
        if self.group_commit_interval:
            out.append(f"  <GroupCommitInterval>{self.group_commit_interval}</GroupCommitInterval>")
        out += ["  <AccessGroupDefaults>", *_xml_options(self.ag_defaults, _AG_XML, "    "), "  </AccessGroupDefaults>",
                "  <ColumnFamilyDefaults>", *_xml_options(self.cf_defaults, _CF_XML, "    "),
                "  </ColumnFamilyDefaults>"]
        for group in self.access_groups:
            out.append(f"  <AccessGroup name={quoteattr(group.name)}>")
            if with_ids:
                out.append(f"    <Generation>{group.generation}</Generation>")
            out += ["    <Options>", *_xml_options(group.options, _AG_XML, "      "), "    </Options>",
                    "    <ColumnFamilyDefaults>", *_xml_options(group.defaults, _CF_XML, "      "),
                    "    </ColumnFamilyDefaults>"]
            for fam in (f for f in self.families if f.access_group == group.name):
                out.append(f'    <ColumnFamily id="{fam.id}">' if with_ids else "    <ColumnFamily>")
                if with_ids:
                    out.append(f"      <Generation>{fam.generation}</Generation>")
                out += [f"      <Name>{escape(fam.name)}</Name>",
                        f"      <AccessGroup>{escape(fam.access_group)}</AccessGroup>",
                        "      <Deleted>false</Deleted>", "      <Options>",
                        *_xml_options(fam.options, _CF_XML, "        "), "      </Options>"]
                if fam.value_index:
                    out.append("      <Index>true</Index>")
                if fam.qualifier_index:
                    out.append("      <QualifierIndex>true</QualifierIndex>")
                out.append("    </ColumnFamily>")
            out.append("  </AccessGroup>")
        out.append("</Schema>")
        return "\n".join(out) + "\n"


def _options(struct: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Return the options of a Thrift options struct that are set."""
    if struct is None:
        return {}
    return {name: getattr(struct, name) for name in names if getattr(struct, name, None) is not None}


def _check_cf_options(family: str, options: dict[str, Any]) -> None:
    for name in ("max_versions", "ttl"):
        if options.get(name, 0) < 0:
            raise client_error(codes.BAD_SCHEMA, f"column family {family!r}: {name} must not be negative")


def _check_ag_options(group: str, options: dict[str, Any]) -> None:
    bloom = options.get("bloom_filter")
    if bloom is not None and (bloom.split() or ["none"])[0] not in _BLOOM_MODES:
        raise client_error(codes.BAD_SCHEMA, f"access group {group!r}: unknown bloom filter mode {bloom!r}; "
                                             "use rows, rows+cols or none")


def _xml_options(options: dict[str, Any], names: tuple[tuple[str, str], ...], prefix: str) -> list[str]:
    lines = []
    for key, tag in names:
        if key not in options:
            continue
        value = options[key]
        if key == "time_order_desc":
            text = "desc" if value else "asc"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = escape(str(value))
        lines.append(f"{prefix}<{tag}>{text}</{tag}>")
    return lines
