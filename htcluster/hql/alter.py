"""``ALTER TABLE`` actions and how they change a Thrift ``Schema`` (:ref:`hql`).

The broker answers ``ALTER TABLE`` by reading the table's ``Schema``
(``table_get_schema``), applying the actions here in order, and handing the
result to ``table_alter``, so every check ``table_alter`` makes applies to
HQL too.  The checks made here are HQL's own, answered HQL_BAD_COMMAND
(:ref:`error-codes`, "modify of an unknown column"): ADD of a family or access
group that exists, MODIFY / DROP / RENAME of one that does not, RENAME onto
a name in use, a MODIFY that turns COUNTER on or off.

* ``ADD (def, ...)``: new families (into ``default`` unless an ``ACCESS
  GROUP g (...)`` of the same clause takes them), new access groups, and
  ``INDEX cf`` / ``QUALIFIER INDEX cf`` on new or existing families.
* ``MODIFY (def, ...)``: a family's options are replaced by the ones given
  (an option left out falls back to the access group's defaults); an access
  group's options and defaults likewise; members listed must be its own.
* ``DROP (cf, ...)``: the families and their cells go.
* ``RENAME COLUMN FAMILY (old, new)``: the family keeps its id, so its cells
  stay (the Thrift ``ColumnFamilySpec.id`` carries it to ``table_alter``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from .. import codes
from .._thrift.ttypes import ColumnFamilySpec, Schema
from ._errors import client_error
from .schema import ColumnDef, Definition, GroupDef, IndexDef, build_schema, check_family_name

__all__ = ["AddDefinitions", "AlterAction", "DropFamilies", "ModifyDefinitions", "RenameFamily",
           "apply_alter"]


@dataclass(frozen=True)
class AddDefinitions:
    """``ADD (def, ...)``."""

    definitions: tuple[Definition, ...]


@dataclass(frozen=True)
class ModifyDefinitions:
    """``MODIFY (def, ...)``."""

    definitions: tuple[Definition, ...]


@dataclass(frozen=True)
class DropFamilies:
    """``DROP (cf, ...)``."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class RenameFamily:
    """``RENAME COLUMN FAMILY (old, new)``."""

    old: str
    new: str


AlterAction = Union[AddDefinitions, ModifyDefinitions, DropFamilies, RenameFamily]


def _bad(detail: str) -> Exception:
    return client_error(codes.HQL_BAD_COMMAND, detail)


def _existing(schema: Schema, name: str, table: str, verb: str) -> ColumnFamilySpec:
    family: Optional[ColumnFamilySpec] = (schema.column_families or {}).get(name)
    if family is None or family.deleted:
        raise _bad(f"cannot {verb} column family '{name}': table '{table}' has none of that name "
                   f"(it has {sorted(schema.column_families or {})})")
    return family


def _add(schema: Schema, table: str, definitions: Sequence[Definition]) -> None:
    families = schema.column_families
    groups = schema.access_groups
    indexes = [d for d in definitions if isinstance(d, IndexDef) and d.name in families]
    fresh = [d for d in definitions if d not in indexes]
    for item in fresh:
        if isinstance(item, ColumnDef) and item.name in families:
            raise _bad(f"cannot add column family '{item.name}': table '{table}' has one already")
        if isinstance(item, GroupDef) and item.name in groups:
            raise _bad(f"cannot add access group '{item.name}': table '{table}' has one already")
        if isinstance(item, GroupDef):
            taken = [m for m in item.members if m in families]
            if taken:
                raise _bad(f"access group '{item.name}' cannot take existing column families {taken}; "
                           "move a family by dropping and adding it")
    part = build_schema(fresh, [])
    for name, group in (part.access_groups or {}).items():
        if name not in groups:
            groups[name] = group
    families.update(part.column_families or {})
    for item in indexes:
        setattr(families[item.name], "qualifier_index" if item.qualifier else "value_index", True)


def _modify(schema: Schema, table: str, definitions: Sequence[Definition]) -> None:
    for item in definitions:
        if isinstance(item, GroupDef):
            group = schema.access_groups.get(item.name)
            if group is None:
                raise _bad(f"cannot modify access group '{item.name}': table '{table}' has none "
                           f"of that name (it has {sorted(schema.access_groups)})")
            strangers = [m for m in item.members
                         if _existing(schema, m, table, "modify").access_group != item.name]
            if strangers:
                raise _bad(f"column families {strangers} are not in access group '{item.name}'")
            built = build_schema([item], []).access_groups[item.name]
            group.options, group.defaults = built.options, built.defaults
            continue
        family = _existing(schema, item.name, table, "modify")
        if isinstance(item, IndexDef):
            setattr(family, "qualifier_index" if item.qualifier else "value_index", True)
            continue
        options = build_schema([item], []).column_families[item.name].options
        was = bool(family.options and family.options.counter)
        now = bool(options and options.counter)
        if was != now:
            raise _bad(f"MODIFY cannot turn COUNTER {'off' if was else 'on'} for column family "
                       f"'{item.name}': its cells would change meaning; add a new family instead")
        if now and (family.value_index or family.qualifier_index):
            raise _bad(f"COUNTER column '{item.name}' cannot have an index")
        family.options = options


def _drop(schema: Schema, table: str, names: Sequence[str]) -> None:
    for name in names:
        _existing(schema, name, table, "drop")
        del schema.column_families[name]


def _rename(schema: Schema, table: str, old: str, new: str) -> None:
    family = _existing(schema, old, table, "rename")
    if new in schema.column_families:
        raise _bad(f"cannot rename column family '{old}' to '{new}': table '{table}' has a '{new}'")
    check_family_name(new)
    del schema.column_families[old]
    family.name = new
    schema.column_families[new] = family


def apply_alter(schema: Schema, table: str, actions: Sequence[AlterAction]) -> Schema:
    """Return a copy of ``schema`` with ``actions`` applied in order (``schema`` is not changed).

    :param schema: the table's ``Schema`` as ``table_get_schema`` returns it (with family ids).
    :param table: the table's name, for messages.
    :param actions: the parsed actions of one ``ALTER TABLE``.
    :returns: the ``Schema`` to pass to ``table_alter``.
    :raises ClientException: HQL_BAD_COMMAND for the cases listed in this module's
        docstring, and the errors of :func:`.schema.build_schema` for bad definitions.
    """
    schema = copy.deepcopy(schema)
    schema.column_families = {name: cf for name, cf in (schema.column_families or {}).items()
                              if cf is not None and not cf.deleted}
    schema.access_groups = dict(schema.access_groups or {})
    for action in actions:
        if isinstance(action, AddDefinitions):
            _add(schema, table, action.definitions)
        elif isinstance(action, ModifyDefinitions):
            _modify(schema, table, action.definitions)
        elif isinstance(action, DropFamilies):
            _drop(schema, table, action.names)
        else:
            _rename(schema, table, action.old, action.new)
    return schema
