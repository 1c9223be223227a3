"""No module uses another module's ``_private`` names (the layers talk through what they publish).

The check reads every module's syntax tree: a name that starts with one
underscore (not a dunder) may be imported from another module, or read as an
attribute (``obj._name``), only when the module itself defines that name (a
function, class, module variable, or an attribute it assigns, e.g.
``self._lock = ...``).  So ``pool._checkout()`` in ``hedge.py`` fails the test,
while ``self._lock`` in the class that creates it passes.

Allowed on purpose: the names the Thrift-generated client uses on its
``self`` (``_iprot``, ``_oprot``, ``_seqid``), set by the codec and
``Resource`` for that code; and a few standard-library names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Names of the Thrift-generated code: the client's attributes (set for it, read by it), the enum tables.
THRIFT = {"_iprot", "_oprot", "_seqid", "_VALUES_TO_NAMES", "_NAMES_TO_VALUES"}
#: Standard-library names that are private by spelling only.
STDLIB = {"_exit", "_getframe", "_replace", "_asdict", "_fields", "_make", "_field_defaults", "_current_frames"}
#: Tests that are about a private thing (a test of the private name itself).
ABOUT_PRIVATE: dict[str, set[str]] = {
    # the raw socket under upstream Thrift's TFramedTransport, for tests that cut or stall it mid-frame
    "tests/test_broker_fuzz.py": {"_TFramedTransport__trans"},
    "tests/test_broker_server.py": {"_TFramedTransport__trans"},
    # the broker's signal handling: the pipe a signal writes to, and the handler itself
    "tests/test_broker_shutdown.py": {"_TFramedTransport__trans", "_SignalPipe", "_on_signal"},
    # a fork while another thread holds the registry's and a window's locks: the child must not hang
    "tests/test_events.py": {"_registration_lock", "_lock"},
    # the grammar cache file: where it goes, and that an unsafe directory is never used
    "tests/test_hql_api.py": {"_cache_file"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """Every name the module defines: functions, classes, variables, attributes it assigns, parameters."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries
    return names


def violations(path: Path) -> list[str]:
    """Return ``'file:line: name'`` for each use of another module's private name in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    own = _defined(tree) | THRIFT | STDLIB
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _private(alias.name) and alias.name not in own - {alias.asname}:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {alias.name}")
                elif _private(alias.name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _private(node.attr):
            if node.attr not in own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    allowed = ABOUT_PRIVATE.get(str(path.relative_to(ROOT)), set())
    return [v for v in found if v.rsplit(" ", 1)[-1].lstrip(".") not in allowed]


def _sources() -> list[Path]:
    files = [p for p in (ROOT / "htcluster").rglob("*.py") if "_thrift" not in p.parts]
    files += sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    return sorted(files)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    assert violations(path) == []


def test_the_check_finds_a_private_use(tmp_path: Path) -> None:
    """The check itself can fail: a module reaching into a pool's private checkout is reported."""
    sample = ROOT / "tests" / "_sample_private_use.py"
    sample.write_text("from htcluster._pool.pool import _Waiter\n\n\ndef f(pool):\n    return pool._take(1.0)\n")
    try:
        found = violations(sample)
    finally:
        sample.unlink()
    assert found == ["tests/_sample_private_use.py:1: import _Waiter", "tests/_sample_private_use.py:5: ._take"]
