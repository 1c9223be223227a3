"""The documentation pages and CI stay in step with the code.

(A module no page of ``docs/api/`` names is documented on a page that
``docs/conf.py`` generates, so the API reference is complete by construction.)
"""
from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import htcluster

API = Path(__file__).resolve().parents[1] / "docs" / "api"


def documented() -> set[str]:
    names: set[str] = set()
    for page in API.glob("*.rst"):
        if page.name == "other.rst":  # generated
            continue
        names |= set(re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(encoding="utf-8"), re.M))
    return names


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
