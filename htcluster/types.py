"""The ThriftBroker wire types under their upstream names.

These are the classes generated from ``htcluster/hypertable.thrift`` (so they
encode exactly like upstream's ``hyperthrift.gen.ttypes``).  Import them from
here, never from ``htcluster._thrift``::

    from htcluster.types import Cell, Key, ScanSpec, RowInterval
"""
from __future__ import annotations

from ._thrift.ttypes import (
    AccessGroupOptions,
    AccessGroupSpec,
    Cell,
    CellInterval,
    ClientException,
    ColumnFamilyOptions,
    ColumnFamilySpec,
    ColumnPredicate,
    ColumnPredicateOperation,
    HqlResult,
    HqlResult2,
    HqlResultAsArrays,
    Key,
    KeyFlag,
    MutateSpec,
    MutatorFlag,
    NamespaceListing,
    Result,
    ResultAsArrays,
    ResultSerialized,
    RowInterval,
    ScanSpec,
    Schema,
    Status,
    StatusCode,
    TableSplit,
)

__all__ = [
    "AccessGroupOptions",
    "AccessGroupSpec",
    "Cell",
    "CellInterval",
    "ClientException",
    "ColumnFamilyOptions",
    "ColumnFamilySpec",
    "ColumnPredicate",
    "ColumnPredicateOperation",
    "HqlResult",
    "HqlResult2",
    "HqlResultAsArrays",
    "Key",
    "KeyFlag",
    "MutateSpec",
    "MutatorFlag",
    "NamespaceListing",
    "Result",
    "ResultAsArrays",
    "ResultSerialized",
    "RowInterval",
    "ScanSpec",
    "Schema",
    "Status",
    "StatusCode",
    "TableSplit",
]
