"""The documentation site stays complete: every module of htcluster has a page in the API reference."""
from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import htcluster

API = Path(__file__).resolve().parents[1] / "docs" / "api"
#: Not documented on purpose: generated code and ``python -m`` entry points.
UNDOCUMENTED = {"htcluster._thrift", "htcluster.__main__", "htcluster.broker.__main__", "htcluster._moved"}


def documented() -> set[str]:
    names: set[str] = set()
    for page in API.glob("*.rst"):
        names |= set(re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(encoding="utf-8"), re.M))
    return names


def test_every_module_is_in_the_api_reference() -> None:
    modules = {m.name for m in pkgutil.walk_packages(htcluster.__path__, "htcluster.")} | {"htcluster"}
    wanted = {m for m in modules if not any(m == u or m.startswith(u + ".") for u in UNDOCUMENTED)}
    missing = sorted(wanted - documented())
    assert not missing, f"add these modules to a page of docs/api/: {missing}"


def test_the_api_reference_names_no_module_that_is_gone() -> None:
    modules = {m.name for m in pkgutil.walk_packages(htcluster.__path__, "htcluster.")} | {"htcluster"}
    assert sorted(documented() - modules) == []


ROOT = API.parents[1]
TEST_COMMAND = 'python -m pip install -e ".[flask,test]" && python -m pytest'


def test_ci_runs_exactly_the_readme_test_command_then_the_checks() -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert f"    {TEST_COMMAND}\n" in readme
    assert TEST_COMMAND in ci, "the README's test command must be a line of .ci/run, unchanged"
    after = "\n".join(ci[ci.index(TEST_COMMAND):])
    for check in ("python -m mypy", "python -m ruff check .", "python -m sphinx -W"):
        assert check in after, f".ci/run must run {check!r} after the tests"
