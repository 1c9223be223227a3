"""Typed broker methods for routed asyncio calls: generated from htcluster/hypertable.thrift by
scripts/gen_typed.py; do not edit.

``AsyncNamespaceCalls`` holds every broker method that runs in a namespace, without the
namespace id (the routing object opens the namespace on whichever connection the call
uses); ``AsyncBrokerCalls`` the methods that take none.  Each awaits the routing
object's call (``AsyncReplicas.call``, ``AsyncResources.unicast``, ``AsyncShards.unicast`` of a key),
so failover, hedging, stamping and deadlines apply as to ``await call("method", ...)``.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, cast

from .._thrift.ttypes import (Cell, HqlResult, HqlResult2, HqlResultAsArrays, Key, MutateSpec, NamespaceListing,
                              ScanSpec, Schema, Status, TableSplit)

__all__ = ["AsyncBrokerCalls", "AsyncNamespaceCalls"]


class AsyncNamespaceCalls:
    """The broker methods of one namespace, typed: ``await replicas.namespace("logs").get_cells(table, spec)``.

    :param call: the routing object's coroutine call, ``call(method, *args, namespace=...)``.
    :param name: the namespace name.
    """

    __slots__ = ("_call", "name")

    def __init__(self, call: Callable[..., Awaitable[Any]], name: str) -> None:
        self._call = call
        self.name = name

    def __repr__(self) -> str:
        return f"<AsyncNamespaceCalls {self.name!r}>"

    async def create_cell_unique(self, table_name: str, key: Key, value: str) -> str:
        """Call ``create_cell_unique`` (broker method ``create_cell_unique``)."""
        return cast("str", await self._call("create_cell_unique", table_name, key, value, namespace=self.name))

    async def drop_table(self, name: str, if_exists: bool = True) -> None:
        """Call ``drop_table`` (broker method ``drop_table``)."""
        await self._call("drop_table", name, if_exists, namespace=self.name)

    async def exists_table(self, name: str) -> bool:
        """Call ``exists_table`` (broker method ``exists_table``)."""
        return cast("bool", await self._call("exists_table", name, namespace=self.name))

    async def get_cell(self, table_name: str, row: str, column: str) -> bytes:
        """Call ``get_cell`` (broker method ``get_cell``)."""
        return cast("bytes", await self._call("get_cell", table_name, row, column, namespace=self.name))

    async def get_cells(self, table_name: str, scan_spec: ScanSpec) -> list[Cell]:
        """Call ``get_cells`` (broker method ``get_cells``)."""
        return cast("list[Cell]", await self._call("get_cells", table_name, scan_spec, namespace=self.name))

    async def get_cells_as_arrays(self, name: str, scan_spec: ScanSpec) -> list[list[str]]:
        """Call ``get_cells_as_arrays`` (broker method ``get_cells_as_arrays``)."""
        return cast("list[list[str]]", await self._call("get_cells_as_arrays", name, scan_spec, namespace=self.name))

    async def get_cells_serialized(self, name: str, scan_spec: ScanSpec) -> bytes:
        """Call ``get_cells_serialized`` (broker method ``get_cells_serialized``)."""
        return cast("bytes", await self._call("get_cells_serialized", name, scan_spec, namespace=self.name))

    async def get_listing(self) -> list[NamespaceListing]:
        """Call ``get_listing`` (broker method ``get_listing``)."""
        return cast("list[NamespaceListing]", await self._call("get_listing", namespace=self.name))

    async def get_row(self, table_name: str, row: str) -> list[Cell]:
        """Call ``get_row`` (broker method ``get_row``)."""
        return cast("list[Cell]", await self._call("get_row", table_name, row, namespace=self.name))

    async def get_row_as_arrays(self, name: str, row: str) -> list[list[str]]:
        """Call ``get_row_as_arrays`` (broker method ``get_row_as_arrays``)."""
        return cast("list[list[str]]", await self._call("get_row_as_arrays", name, row, namespace=self.name))

    async def get_row_serialized(self, table_name: str, row: str) -> bytes:
        """Call ``get_row_serialized`` (broker method ``get_row_serialized``)."""
        return cast("bytes", await self._call("get_row_serialized", table_name, row, namespace=self.name))

    async def get_schema(self, table_name: str) -> Schema:
        """Call ``get_schema`` (broker method ``get_schema``)."""
        return cast("Schema", await self._call("get_schema", table_name, namespace=self.name))

    async def get_schema_str(self, table_name: str) -> str:
        """Call ``get_schema_str`` (broker method ``get_schema_str``)."""
        return cast("str", await self._call("get_schema_str", table_name, namespace=self.name))

    async def get_schema_str_with_ids(self, table_name: str) -> str:
        """Call ``get_schema_str_with_ids`` (broker method ``get_schema_str_with_ids``)."""
        return cast("str", await self._call("get_schema_str_with_ids", table_name, namespace=self.name))

    async def get_table_id(self, table_name: str) -> str:
        """Call ``get_table_id`` (broker method ``get_table_id``)."""
        return cast("str", await self._call("get_table_id", table_name, namespace=self.name))

    async def get_table_splits(self, table_name: str) -> list[TableSplit]:
        """Call ``get_table_splits`` (broker method ``get_table_splits``)."""
        return cast("list[TableSplit]", await self._call("get_table_splits", table_name, namespace=self.name))

    async def get_tables(self) -> list[str]:
        """Call ``get_tables`` (broker method ``get_tables``)."""
        return cast("list[str]", await self._call("get_tables", namespace=self.name))

    async def hql_exec(self, command: str, noflush: bool = False, unbuffered: bool = False) -> HqlResult:
        """hql_query*(ns, command) is hql_exec*(ns, command, false, false) (broker method ``hql_exec``)."""
        return cast("HqlResult", await self._call("hql_exec", command, noflush, unbuffered, namespace=self.name))

    async def hql_exec2(self, command: str, noflush: bool = False, unbuffered: bool = False) -> HqlResult2:
        """Call ``hql_exec2`` (broker method ``hql_exec2``)."""
        return cast("HqlResult2", await self._call("hql_exec2", command, noflush, unbuffered, namespace=self.name))

    async def hql_exec_as_arrays(
            self, command: str, noflush: bool = False, unbuffered: bool = False,
    ) -> HqlResultAsArrays:
        """Call ``hql_exec_as_arrays`` (broker method ``hql_exec_as_arrays``)."""
        answer = await self._call("hql_exec_as_arrays", command, noflush, unbuffered, namespace=self.name)
        return cast("HqlResultAsArrays", answer)

    async def hql_query(self, command: str) -> HqlResult:
        """Call ``hql_query`` (broker method ``hql_query``)."""
        return cast("HqlResult", await self._call("hql_query", command, namespace=self.name))

    async def hql_query2(self, command: str) -> HqlResult2:
        """Call ``hql_query2`` (broker method ``hql_query2``)."""
        return cast("HqlResult2", await self._call("hql_query2", command, namespace=self.name))

    async def hql_query_as_arrays(self, command: str) -> HqlResultAsArrays:
        """Call ``hql_query_as_arrays`` (broker method ``hql_query_as_arrays``)."""
        return cast("HqlResultAsArrays", await self._call("hql_query_as_arrays", command, namespace=self.name))

    async def namespace_get_listing(self) -> list[NamespaceListing]:
        """Call ``namespace_get_listing`` (broker method ``namespace_get_listing``)."""
        return cast("list[NamespaceListing]", await self._call("namespace_get_listing", namespace=self.name))

    async def offer_cell(self, table_name: str, mutate_spec: MutateSpec, cell: Cell) -> None:
        """Call ``offer_cell`` (broker method ``offer_cell``)."""
        await self._call("offer_cell", table_name, mutate_spec, cell, namespace=self.name)

    async def offer_cell_as_array(self, table_name: str, mutate_spec: MutateSpec, cell: list[str]) -> None:
        """Call ``offer_cell_as_array`` (broker method ``offer_cell_as_array``)."""
        await self._call("offer_cell_as_array", table_name, mutate_spec, cell, namespace=self.name)

    async def offer_cells(self, table_name: str, mutate_spec: MutateSpec, cells: list[Cell]) -> None:
        """Call ``offer_cells`` (broker method ``offer_cells``)."""
        await self._call("offer_cells", table_name, mutate_spec, cells, namespace=self.name)

    async def offer_cells_as_arrays(self, table_name: str, mutate_spec: MutateSpec, cells: list[list[str]]) -> None:
        """Call ``offer_cells_as_arrays`` (broker method ``offer_cells_as_arrays``)."""
        await self._call("offer_cells_as_arrays", table_name, mutate_spec, cells, namespace=self.name)

    async def refresh_shared_mutator(self, table_name: str, mutate_spec: MutateSpec) -> None:
        """Call ``refresh_shared_mutator`` (broker method ``refresh_shared_mutator``)."""
        await self._call("refresh_shared_mutator", table_name, mutate_spec, namespace=self.name)

    async def refresh_table(self, table_name: str) -> None:
        """Call ``refresh_table`` (broker method ``refresh_table``)."""
        await self._call("refresh_table", table_name, namespace=self.name)

    async def rename_table(self, name: str, new_name: str) -> None:
        """Call ``rename_table`` (broker method ``rename_table``)."""
        await self._call("rename_table", name, new_name, namespace=self.name)

    async def set_cell(self, table_name: str, cell: Cell) -> None:
        """Call ``set_cell`` (broker method ``set_cell``)."""
        await self._call("set_cell", table_name, cell, namespace=self.name)

    async def set_cell_as_array(self, table_name: str, cell: list[str]) -> None:
        """Call ``set_cell_as_array`` (broker method ``set_cell_as_array``)."""
        await self._call("set_cell_as_array", table_name, cell, namespace=self.name)

    async def set_cells(self, table_name: str, cells: list[Cell]) -> None:
        """Call ``set_cells`` (broker method ``set_cells``)."""
        await self._call("set_cells", table_name, cells, namespace=self.name)

    async def set_cells_as_arrays(self, table_name: str, cells: list[list[str]]) -> None:
        """Call ``set_cells_as_arrays`` (broker method ``set_cells_as_arrays``)."""
        await self._call("set_cells_as_arrays", table_name, cells, namespace=self.name)

    async def set_cells_serialized(self, table_name: str, cells: bytes) -> None:
        """Call ``set_cells_serialized`` (broker method ``set_cells_serialized``)."""
        await self._call("set_cells_serialized", table_name, cells, namespace=self.name)

    async def shared_mutator_refresh(self, table_name: str, mutate_spec: MutateSpec) -> None:
        """Call ``shared_mutator_refresh`` (broker method ``shared_mutator_refresh``)."""
        await self._call("shared_mutator_refresh", table_name, mutate_spec, namespace=self.name)

    async def shared_mutator_set_cell(self, table_name: str, mutate_spec: MutateSpec, cell: Cell) -> None:
        """Call ``shared_mutator_set_cell`` (broker method ``shared_mutator_set_cell``)."""
        await self._call("shared_mutator_set_cell", table_name, mutate_spec, cell, namespace=self.name)

    async def shared_mutator_set_cell_as_array(
            self, table_name: str, mutate_spec: MutateSpec, cell: list[str],
    ) -> None:
        """Call ``shared_mutator_set_cell_as_array`` (broker method ``shared_mutator_set_cell_as_array``)."""
        await self._call("shared_mutator_set_cell_as_array", table_name, mutate_spec, cell, namespace=self.name)

    async def shared_mutator_set_cells(self, table_name: str, mutate_spec: MutateSpec, cells: list[Cell]) -> None:
        """Call ``shared_mutator_set_cells`` (broker method ``shared_mutator_set_cells``)."""
        await self._call("shared_mutator_set_cells", table_name, mutate_spec, cells, namespace=self.name)

    async def shared_mutator_set_cells_as_arrays(
            self, table_name: str, mutate_spec: MutateSpec, cells: list[list[str]],
    ) -> None:
        """Call ``shared_mutator_set_cells_as_arrays`` (broker method ``shared_mutator_set_cells_as_arrays``)."""
        await self._call("shared_mutator_set_cells_as_arrays", table_name, mutate_spec, cells, namespace=self.name)

    async def table_alter(self, table_name: str, schema: Schema) -> None:
        """Call ``table_alter`` (broker method ``table_alter``)."""
        await self._call("table_alter", table_name, schema, namespace=self.name)

    async def table_create(self, table_name: str, schema: Schema) -> None:
        """Call ``table_create`` (broker method ``table_create``)."""
        await self._call("table_create", table_name, schema, namespace=self.name)

    async def table_drop(self, name: str, if_exists: bool = True) -> None:
        """Call ``table_drop`` (broker method ``table_drop``)."""
        await self._call("table_drop", name, if_exists, namespace=self.name)

    async def table_exists(self, name: str) -> bool:
        """Call ``table_exists`` (broker method ``table_exists``)."""
        return cast("bool", await self._call("table_exists", name, namespace=self.name))

    async def table_get_id(self, table_name: str) -> str:
        """Call ``table_get_id`` (broker method ``table_get_id``)."""
        return cast("str", await self._call("table_get_id", table_name, namespace=self.name))

    async def table_get_schema(self, table_name: str) -> Schema:
        """Call ``table_get_schema`` (broker method ``table_get_schema``)."""
        return cast("Schema", await self._call("table_get_schema", table_name, namespace=self.name))

    async def table_get_schema_str(self, table_name: str) -> str:
        """Call ``table_get_schema_str`` (broker method ``table_get_schema_str``)."""
        return cast("str", await self._call("table_get_schema_str", table_name, namespace=self.name))

    async def table_get_schema_str_with_ids(self, table_name: str) -> str:
        """Call ``table_get_schema_str_with_ids`` (broker method ``table_get_schema_str_with_ids``)."""
        return cast("str", await self._call("table_get_schema_str_with_ids", table_name, namespace=self.name))

    async def table_get_splits(self, table_name: str) -> list[TableSplit]:
        """Call ``table_get_splits`` (broker method ``table_get_splits``)."""
        return cast("list[TableSplit]", await self._call("table_get_splits", table_name, namespace=self.name))

    async def table_rename(self, name: str, new_name: str) -> None:
        """Call ``table_rename`` (broker method ``table_rename``)."""
        await self._call("table_rename", name, new_name, namespace=self.name)


class AsyncBrokerCalls:
    """The broker methods that take no namespace, typed: ``await replicas.broker.status()``.

    :param call: the routing object's coroutine call, ``call(method, *args)``.
    """

    __slots__ = ("_call",)

    def __init__(self, call: Callable[..., Awaitable[Any]]) -> None:
        self._call = call

    async def create_namespace(self, ns: str) -> None:
        """Call ``create_namespace`` (broker method ``create_namespace``)."""
        await self._call("create_namespace", ns)

    async def drop_namespace(self, ns: str, if_exists: bool = True) -> None:
        """Call ``drop_namespace`` (broker method ``drop_namespace``)."""
        await self._call("drop_namespace", ns, if_exists)

    async def error_get_text(self, error_code: int) -> str:
        """Call ``error_get_text`` (broker method ``error_get_text``)."""
        return cast("str", await self._call("error_get_text", error_code))

    async def exists_namespace(self, ns: str) -> bool:
        """Call ``exists_namespace`` (broker method ``exists_namespace``)."""
        return cast("bool", await self._call("exists_namespace", ns))

    async def generate_guid(self) -> str:
        """Call ``generate_guid`` (broker method ``generate_guid``)."""
        return cast("str", await self._call("generate_guid"))

    async def namespace_create(self, ns: str) -> None:
        """Call ``namespace_create`` (broker method ``namespace_create``)."""
        await self._call("namespace_create", ns)

    async def namespace_drop(self, ns: str, if_exists: bool = True) -> None:
        """Call ``namespace_drop`` (broker method ``namespace_drop``)."""
        await self._call("namespace_drop", ns, if_exists)

    async def namespace_exists(self, ns: str) -> bool:
        """Call ``namespace_exists`` (broker method ``namespace_exists``)."""
        return cast("bool", await self._call("namespace_exists", ns))

    async def shutdown(self) -> None:
        """Call ``shutdown`` (broker method ``shutdown``)."""
        await self._call("shutdown")

    async def status(self) -> Status:
        """Call ``status`` (broker method ``status``)."""
        return cast("Status", await self._call("status"))
