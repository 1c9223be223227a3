"""CREATE TABLE definitions to a Thrift ``Schema``, and back to HQL for SHOW CREATE TABLE.

Validation follows :ref:`hql`: a column family or access group defined
twice is HQL_BAD_COMMAND, an option given twice for one owner is
HQL_PARSE_ERROR.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence, Union

from .. import codes
from .._thrift.ttypes import (AccessGroupOptions, AccessGroupSpec, ColumnFamilyOptions,
                              ColumnFamilySpec, Schema)
from ._errors import client_error

__all__ = ["ColumnDef", "Definition", "GroupDef", "IndexDef", "SchemaOption",
           "build_schema", "check_family_name", "render_create_table"]

DEFAULT_GROUP = "default"
#: Largest REPLICATION (an i16 on the wire).
MAX_REPLICATION = 32767

#: ColumnFamilyOptions / AccessGroupOptions attribute -> HQL keyword.
CF_OPTIONS = {"max_versions": "MAX_VERSIONS", "ttl": "TTL", "time_order_desc": "TIME_ORDER",
              "counter": "COUNTER"}
AG_OPTIONS = {"in_memory": "IN_MEMORY", "blocksize": "BLOCKSIZE", "replication": "REPLICATION",
              "compressor": "COMPRESSOR", "bloom_filter": "BLOOMFILTER"}
_KEYWORDS = {**CF_OPTIONS, **AG_OPTIONS, "group_commit_interval": "GROUP_COMMIT_INTERVAL"}

_FAMILY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Words that start a definition, so a family of that name must be quoted.
_RESERVED = {"access", "index", "qualifier"}


class SchemaOption(NamedTuple):
    """One option as written; ``key`` is the Thrift attribute it sets."""

    key: str
    value: Union[int, bool, str]


@dataclass(frozen=True)
class ColumnDef:
    """``name option*``."""

    name: str
    options: list[SchemaOption] = field(default_factory=list)


@dataclass(frozen=True)
class GroupDef:
    """``ACCESS GROUP name (member, ...) option*``."""

    name: str
    members: list[str] = field(default_factory=list)
    options: list[SchemaOption] = field(default_factory=list)


@dataclass(frozen=True)
class IndexDef:
    """``INDEX name`` or, with ``qualifier``, ``QUALIFIER INDEX name``."""

    name: str
    qualifier: bool = False


Definition = Union[ColumnDef, GroupDef, IndexDef]


def _bad_command(detail: str) -> Exception:
    return client_error(codes.HQL_BAD_COMMAND, detail)


def _split_options(options: Sequence[SchemaOption], owner: str
                   ) -> tuple[Optional[ColumnFamilyOptions], Optional[AccessGroupOptions], Optional[int]]:
    """Sort options into (column family options, access group options, group commit interval)."""
    seen: set[str] = set()
    cf = ColumnFamilyOptions()
    ag = AccessGroupOptions()
    interval = None
    for key, value in options:
        if key in seen:
            raise client_error(codes.HQL_PARSE_ERROR, f"{_KEYWORDS[key]} is given twice for {owner}")
        seen.add(key)
        if key == "replication" and int(value) > MAX_REPLICATION:
            raise _bad_command(f"REPLICATION {value} for {owner} is above {MAX_REPLICATION}")
        if key == "group_commit_interval":
            interval = int(value)
        else:
            setattr(cf if key in CF_OPTIONS else ag, key, value)
    return (cf if seen & CF_OPTIONS.keys() else None,
            ag if seen & AG_OPTIONS.keys() else None, interval)


def check_family_name(name: str) -> None:
    """Refuse a column family name HQL does not allow (:ref:`hql`).

    :raises ClientException: HQL_BAD_COMMAND for an empty name, or one that starts
        with a letter and then has anything but letters, digits, ``_`` or ``-``.
    """
    if not _FAMILY_NAME.fullmatch(name) and (not name or name[0].isalpha()):
        raise _bad_command(f"bad column family name {name!r}: use a letter followed by "
                           "letters, digits, '_' or '-'")


def _family(families: dict[str, ColumnFamilySpec], name: str) -> ColumnFamilySpec:
    check_family_name(name)
    if name not in families:
        families[name] = ColumnFamilySpec(name=name, access_group="", deleted=False,
                                          value_index=False, qualifier_index=False)
    return families[name]


def build_schema(definitions: Sequence[Definition], table_options: Sequence[SchemaOption]) -> Schema:
    """Return the ``Schema`` that ``table_create`` takes for a CREATE TABLE.

    Families outside every ACCESS GROUP go to ``default``, which is added when needed.

    :raises ClientException: HQL_BAD_COMMAND for a family or group defined twice,
        a family in two groups, a bad family name, an index on a COUNTER family
        or a REPLICATION above 32767; HQL_PARSE_ERROR for an option given twice.
    """
    families: dict[str, ColumnFamilySpec] = {}
    groups: dict[str, AccessGroupSpec] = {}
    declared: set[str] = set()
    for item in definitions:
        if isinstance(item, ColumnDef):
            if item.name in declared:
                raise _bad_command(f"column family '{item.name}' is defined twice")
            declared.add(item.name)
            spec = _family(families, item.name)
            spec.options = _split_options(item.options, f"column '{item.name}'")[0]
        elif isinstance(item, GroupDef):
            if item.name in groups:
                raise _bad_command(f"access group '{item.name}' is defined twice")
            defaults, options, _ = _split_options(item.options, f"access group '{item.name}'")
            groups[item.name] = AccessGroupSpec(name=item.name, options=options, defaults=defaults)
            for member in item.members:
                spec = _family(families, member)
                if spec.access_group not in ("", item.name):
                    raise _bad_command(f"column '{member}' cannot join access group '{item.name}': "
                                       f"it already belongs to '{spec.access_group}'")
                spec.access_group = item.name
        else:
            spec = _family(families, item.name)
            attribute = "qualifier_index" if item.qualifier else "value_index"
            if getattr(spec, attribute):
                raise _bad_command(f"{'qualifier ' if item.qualifier else ''}index for column "
                                   f"family '{item.name}' is defined twice")
            setattr(spec, attribute, True)
    for spec in families.values():
        if (spec.value_index or spec.qualifier_index) and spec.options and spec.options.counter:
            raise _bad_command(f"COUNTER column '{spec.name}' cannot have an index")
        spec.access_group = spec.access_group or DEFAULT_GROUP
    if DEFAULT_GROUP not in groups and any(s.access_group == DEFAULT_GROUP for s in families.values()):
        groups = {DEFAULT_GROUP: AccessGroupSpec(name=DEFAULT_GROUP), **groups}
    cf_defaults, ag_defaults, interval = _split_options(table_options, "the table")
    return Schema(access_groups=groups, column_families=families, group_commit_interval=interval,
                  access_group_defaults=ag_defaults, column_family_defaults=cf_defaults)


# ------------------------------------------------------------------ SHOW CREATE TABLE

def _quote(name: str) -> str:
    if _IDENT.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return f"'{name}'" if '"' in name else f'"{name}"'


def _flag(keyword: str, value: bool) -> str:
    return f" {keyword}" if value else f" {keyword} false"


def _render_cf_options(options: Optional[ColumnFamilyOptions]) -> str:
    if options is None:
        return ""
    text = ""
    if options.max_versions is not None:
        text += f" MAX_VERSIONS {options.max_versions}"
    if options.ttl is not None:
        text += f" TTL {options.ttl}"
    if options.time_order_desc is not None:
        text += " TIME_ORDER " + ("DESC" if options.time_order_desc else "ASC")
    if options.counter is not None:
        text += _flag("COUNTER", options.counter)
    return text


def _render_ag_options(options: Optional[AccessGroupOptions]) -> str:
    if options is None:
        return ""
    text = ""
    if options.in_memory is not None:
        text += _flag("IN_MEMORY", options.in_memory)
    for key in ("blocksize", "replication"):
        if getattr(options, key) is not None:
            text += f" {AG_OPTIONS[key]} {getattr(options, key)}"
    for key in ("compressor", "bloom_filter"):
        if getattr(options, key) is not None:
            text += f' {AG_OPTIONS[key]} "{getattr(options, key)}"'
    return text


def render_create_table(name: str, schema: Schema) -> str:
    """Return the CREATE TABLE statement that rebuilds ``schema``, ending in ``";\\n"``.

    :param name: the table name as it should appear.
    :param schema: what ``table_get_schema`` returned; deleted families are left out.
    """
    families = [cf for cf in (schema.column_families or {}).values() if not cf.deleted]
    lines = [f"  {_quote(cf.name)}{_render_cf_options(cf.options)}" for cf in families]
    for group in (schema.access_groups or {}).values():
        members = ", ".join(_quote(cf.name) for cf in families if cf.access_group == group.name)
        lines.append(f"  ACCESS GROUP {_quote(group.name)} ({members})"
                     f"{_render_ag_options(group.options)}{_render_cf_options(group.defaults)}")
    lines += [f"  INDEX {_quote(cf.name)}" for cf in families if cf.value_index]
    lines += [f"  QUALIFIER INDEX {_quote(cf.name)}" for cf in families if cf.qualifier_index]
    table = ""
    if schema.group_commit_interval:
        table += f" GROUP_COMMIT_INTERVAL {schema.group_commit_interval}"
    table += _render_ag_options(schema.access_group_defaults)
    table += _render_cf_options(schema.column_family_defaults)
    return f"CREATE TABLE {_quote(name)} (\n" + ",\n".join(lines) + f"\n){table};\n"
