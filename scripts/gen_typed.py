"""Generate the typed broker methods of routed calls, blocking and asyncio, from the IDL.

Reads ``htcluster/hypertable.thrift`` (with the IDL reader of
``scripts/gen_docs.py``) and writes two modules from one list of methods,
one per I/O flavour (:data:`FLAVOURS`):

* ``htcluster/_routing/typed.py``: ``NamespaceCalls``, every broker method
  whose first argument is a namespace id, typed, without that argument
  (``replicas.namespace("logs").get_cells("LogDb", spec) -> list[Cell]``), and
  ``BrokerCalls``, the methods that take no namespace (``status``,
  ``namespace_exists`` ...);
* ``htcluster/_aio/typed.py``: their asyncio twins ``AsyncNamespaceCalls``
  and ``AsyncBrokerCalls``, the same methods as coroutines (``await
  areplicas.namespace("logs").get_cells("LogDb", spec) -> list[Cell]``).

Methods that return or take per-connection ids (scanners, mutators, futures)
are left out: a routed call may land on any connection, so such ids mean
nothing there (use ``connection()`` for them).  ``scripts/gen_thrift.py``
runs this after the Thrift compiler; ``tests/test_typed.py`` checks that the
committed files are what this writes::

    python scripts/gen_typed.py            # rewrite both modules
    python scripts/gen_typed.py --check    # exit 1 if either differs
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_docs import Idl, Method, parse  # noqa: E402  (the IDL reader, next to this script)

ROOT = Path(__file__).resolve().parent.parent
IDL = ROOT / "htcluster" / "hypertable.thrift"
#: Per-connection ids: a routed call cannot use them.
CONNECTION_IDS = {"Future", "Scanner", "ScannerAsync", "Mutator", "MutatorAsync"}


@dataclass(frozen=True)
class Flavour:
    """What differs between the blocking and the asyncio module: names, ``async``/``await``, the docs."""

    target: Path
    prefix: str  # "Async" or ""
    routed: str  # the routing object's calls, for the module docstring
    example: str  # how a call reads, for the class docstrings
    asynchronous: bool

    @property
    def define(self) -> str:
        return "async def" if self.asynchronous else "def"

    @property
    def wait(self) -> str:
        return "await " if self.asynchronous else ""

    @property
    def call_type(self) -> str:
        return "Callable[..., Awaitable[Any]]" if self.asynchronous else "Callable[..., Any]"


#: The modules written, one per I/O flavour.
FLAVOURS = (
    Flavour(ROOT / "htcluster" / "_routing" / "typed.py", "",
            "``Replicas.call``, ``Resources.unicast``, ``Shards.unicast`` of a key", "", False),
    Flavour(ROOT / "htcluster" / "_aio" / "typed.py", "Async",
            "``AsyncReplicas.call``, ``AsyncResources.unicast``, ``AsyncShards.unicast`` of a key", "await ",
            True),
)
_BASE = {"string": "str", "binary": "bytes", "bool": "bool", "byte": "int", "i16": "int", "i32": "int",
         "i64": "int", "double": "float", "void": "None"}


def py_type(type_: str, idl: Idl) -> str:
    """The Python annotation of an IDL type (typedefs resolved, enums as int)."""
    container = re.match(r"^(list|set|map)<(.*)>$", type_)
    if container:
        kind, inner = container.groups()
        if kind == "map":
            depth = 0
            for i, char in enumerate(inner):
                depth += char == "<"
                depth -= char == ">"
                if char == "," and depth == 0:
                    return f"dict[{py_type(inner[:i].strip(), idl)}, {py_type(inner[i + 1:].strip(), idl)}]"
        return f"{'list' if kind == 'list' else 'set'}[{py_type(inner, idl)}]"
    if type_ in _BASE:
        return _BASE[type_]
    for typedef in idl.typedefs:
        if typedef.name == type_:
            return py_type(typedef.type, idl)
    if any(enum.name == type_ for enum in idl.enums):
        return "int"
    return type_


def _default(value: Optional[str], annotation: str) -> str:
    if value is None:
        return ""
    if annotation == "bool":
        return " = " + ("True" if value.lower() in ("1", "true") else "False")
    return f" = {value}"


def _uses_connection_ids(method: Method, idl: Idl) -> bool:
    ids = CONNECTION_IDS | {"Namespace"}  # a namespace id returned is per connection too
    return method.returns in ids or any(arg.type in CONNECTION_IDS for arg in method.args)


def _structs(annotation: str, idl: Idl) -> set[str]:
    names = {s.name for s in idl.structs}
    return {word for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", annotation) if word in names}


def _method(method: Method, idl: Idl, namespaced: bool, flavour: Flavour) -> tuple[list[str], set[str]]:
    args = method.args[1:] if namespaced else method.args
    params, used = [], set()
    for arg in args:
        annotation = py_type(arg.type, idl)
        used |= _structs(annotation, idl)
        params.append(f"{arg.name}: {annotation}{_default(arg.default, annotation)}")
    returns = py_type(method.returns, idl)
    used |= _structs(returns, idl)
    names = ", ".join(arg.name for arg in args)
    call_args = f'"{method.name}"' + (f", {names}" if names else "")
    if namespaced:
        call_args += ", namespace=self.name"
    summary = (method.doc.strip().splitlines() or [f"Call ``{method.name}``."])[0].strip().rstrip(".")
    signature = ", ".join(["self", *params])
    define, wait = flavour.define, flavour.wait
    lines = [f"    {define} {method.name}({signature}) -> {returns}:"]
    if len(lines[0]) > 116:
        lines = [f"    {define} {method.name}(", f"            {signature},", f"    ) -> {returns}:"]
        if len(lines[1]) > 120:
            lines = [f"    {define} {method.name}(self,"] + [f"            {p}," for p in params] \
                + [f"    ) -> {returns}:"]
    lines.append(f'        """{summary} (broker method ``{method.name}``)."""')
    if returns == "None":
        lines.append(f"        {wait}self._call({call_args})")
    else:
        line = f'        return cast("{returns}", {wait}self._call({call_args}))'
        if len(line) > 120:
            line = f'        answer = {wait}self._call({call_args})\n        return cast("{returns}", answer)'
        lines.append(line)
    return lines, used


def _import_lines(names: list[str]) -> list[str]:
    """``from .._thrift.ttypes import ...`` wrapped under 120 columns."""
    lines, line = [], "from .._thrift.ttypes import ("
    for name in names:
        piece = f"{name}, "
        if len(line) + len(piece) > 118:
            lines.append(line.rstrip())
            line = " " * len("from .._thrift.ttypes import (")
        line += piece
    lines.append(line.rstrip().rstrip(",") + ")")
    return lines


def render(idl: Idl, flavour: Flavour = FLAVOURS[0]) -> str:
    """The text of one typed module (``flavour``: blocking, the default, or asyncio)."""
    namespaced, plain, used = [], [], set()
    for method in sorted(idl.methods(), key=lambda m: m.name):
        if _uses_connection_ids(method, idl):
            continue
        first = method.args[0] if method.args else None
        takes_ns = first is not None and first.name == "ns" and py_type(first.type, idl) == "int" \
            and first.type == "Namespace"
        if takes_ns and method.name in ("namespace_close", "close_namespace"):
            continue
        lines, names = _method(method, idl, takes_ns, flavour)
        used |= names
        (namespaced if takes_ns else plain).append(lines)
    ns_class, broker_class = f"{flavour.prefix}NamespaceCalls", f"{flavour.prefix}BrokerCalls"
    example, kind = flavour.example, "asyncio " if flavour.asynchronous else ""
    each = "awaits" if flavour.asynchronous else "forwards to"
    head = [
        f'"""Typed broker methods for routed {kind}calls: generated from htcluster/hypertable.thrift by',
        "scripts/gen_typed.py; do not edit.",
        "",
        f"``{ns_class}`` holds every broker method that runs in a namespace, without the",
        "namespace id (the routing object opens the namespace on whichever connection the call",
        f"uses); ``{broker_class}`` the methods that take none.  Each {each} the routing",
        f"object's call ({flavour.routed}),",
        f"so failover, hedging, stamping and deadlines apply as to ``{example}call(\"method\", ...)``.",
        '"""',
        "from __future__ import annotations",
        "",
        f"from typing import Any, {'Awaitable, ' if flavour.asynchronous else ''}Callable, cast",
        "",
        *_import_lines(sorted(used)),
        "",
        f'__all__ = ["{broker_class}", "{ns_class}"]',
        "",
        "",
        f"class {ns_class}:",
        f'    """The broker methods of one namespace, typed: ``{example}replicas.namespace("logs")'
        '.get_cells(table, spec)``.',
        "",
        f"    :param call: the routing object's {'coroutine ' if flavour.asynchronous else ''}call, "
        "``call(method, *args, namespace=...)``.",
        "    :param name: the namespace name.",
        '    """',
        "",
        '    __slots__ = ("_call", "name")',
        "",
        f"    def __init__(self, call: {flavour.call_type}, name: str) -> None:",
        "        self._call = call",
        "        self.name = name",
        "",
        "    def __repr__(self) -> str:",
        f'        return f"<{ns_class} {{self.name!r}}>"',
    ]
    body = head[:]
    for lines in namespaced:
        body += [""] + lines
    body += [
        "",
        "",
        f"class {broker_class}:",
        f'    """The broker methods that take no namespace, typed: ``{example}replicas.broker.status()``.',
        "",
        f"    :param call: the routing object's {'coroutine ' if flavour.asynchronous else ''}call, "
        "``call(method, *args)``.",
        '    """',
        "",
        '    __slots__ = ("_call",)',
        "",
        f"    def __init__(self, call: {flavour.call_type}) -> None:",
        "        self._call = call",
    ]
    for lines in plain:
        body += [""] + lines
    return "\n".join(body) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    idl = parse(IDL.read_text())
    stale = 0
    for flavour in FLAVOURS:
        text, target = render(idl, flavour), flavour.target
        where = target.relative_to(ROOT)
        if "--check" in args:
            same = target.exists() and target.read_text() == text
            stale += not same
            print(f"{where} is {'up to date' if same else 'out of date: run scripts/gen_typed.py'}")
        else:
            target.write_text(text)
            print(f"wrote {where}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
