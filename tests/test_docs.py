"""The documentation pages and CI stay in step with the code.

(A module no page of ``docs/api/`` names is documented on a page that
``docs/conf.py`` generates, so the API reference is complete by construction.)
"""
from __future__ import annotations

import pkgutil
import re
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ the API reference: public modules only

DOCS = ROOT / "docs"
#: What users import by path; everything else is internal (``_``-prefixed) or a package's implementation.
PUBLIC_MODULES = {"htcluster", "htcluster.types", "htcluster.errors", "htcluster.events", "htcluster.flask_ext",
                  "htcluster.quart_ext",
                  "htcluster.compat", "htcluster.otel", "htcluster.testing", "htcluster.faults", "htcluster.broker",
                  "htcluster.codes", "htcluster.hosts", "htcluster.hql", "htcluster.aio"}


def test_the_api_reference_documents_the_public_modules_and_no_internal_one() -> None:
    names = documented()
    assert sorted(n for n in names if any(part.startswith("_") for part in n.split("."))) == []
    assert sorted(PUBLIC_MODULES - names) == []


def _api_pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in API.glob("*.rst") if p.name != "other.rst"}


def test_every_public_name_of_htcluster_is_documented() -> None:
    import importlib

    found: list[object] = []
    for text in _api_pages().values():
        current = None
        for block in re.split(r"\n(?=\.\. )", text):
            head = block.splitlines()[0]
            option = dict(re.findall(r"^   :([\w-]+):(.*)$", block, re.M))
            if head.startswith(".. currentmodule:: "):
                current = head.split()[-1]
            elif head.startswith(".. automodule:: "):
                module = importlib.import_module(head.split()[-1])
                current = module.__name__
                members = option.get("members")
                if members is None:
                    continue
                wanted = [m.strip() for m in members.split(",") if m.strip()] or list(getattr(module, "__all__", []))
                excluded = {m.strip() for m in option.get("exclude-members", "").split(",")}
                found += [getattr(module, m) for m in wanted if m not in excluded]
            elif re.match(r"\.\. auto(class|function|data|exception):: ", head):
                target = head.split()[-1]
                module_name, _, name = target.rpartition(".") if "." in target else (current, "", target)
                found.append(getattr(importlib.import_module(module_name or "htcluster"), name))
    missing = [n for n in htcluster.__all__
               if not any(getattr(htcluster, n) is obj for obj in found)
               and not isinstance(getattr(htcluster, n), (int, str))]  # constants are documented in htcluster.hosts
    assert missing == []


# ------------------------------------------------------------------ the broker reference, generated from the IDL


def test_the_generated_reference_pages_match_the_idl(tmp_path: Path) -> None:
    import runpy

    gen = runpy.run_path(str(ROOT / "scripts" / "gen_docs.py"))
    written = list(gen["write"](tmp_path))
    assert sorted(p.name for p in written) == ["methods.rst", "types.rst"]
    for page in written:
        committed = DOCS / "reference" / page.name
        assert committed.read_text(encoding="utf-8") == page.read_text(encoding="utf-8"), (
            f"docs/reference/{page.name} is out of date: run `python scripts/gen_docs.py` and commit it")


def test_every_broker_method_has_a_label_and_an_entry() -> None:
    from htcluster._thrift import HqlService  # the generated client: one method per IDL method

    methods = {n for n in vars(HqlService.Iface) if not n.startswith("_")}
    for base in HqlService.Iface.__mro__[1:]:
        methods |= {n for n in vars(base) if not n.startswith("_")}
    text = (DOCS / "reference" / "methods.rst").read_text(encoding="utf-8")
    labels = set(re.findall(r"^\.\. _method-(\w+):$", text, re.M))
    assert len(methods) == 132
    assert sorted(methods - labels) == []


def test_the_pages_other_pages_link_to_have_their_labels() -> None:
    labels: set[str] = set()
    for page in DOCS.rglob("*.rst"):
        if "_build" not in page.parts:
            labels |= set(re.findall(r"^\.\. _([\w-]+):$", page.read_text(encoding="utf-8"), re.M))
    assert {"error-codes", "hql", "cell-flags", "flask-settings", "method-get_cells", "type-ScanSpec"} <= labels


def test_the_error_code_table_lists_every_code_with_its_number() -> None:
    from htcluster import codes

    text = (DOCS / "reference" / "errors.rst").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^   \* - ``([A-Z_]+)``\n     - (-?\d+)", text, re.M))
    constants = {n: v for n, v in vars(codes).items() if n.isupper() and type(v) is int}
    assert {n: int(v) for n, v in rows.items()} == constants


def test_the_flask_settings_table_lists_every_key() -> None:
    import importlib

    defaults = importlib.import_module("htcluster._flask.config").DEFAULTS
    text = (DOCS / "guide" / "flask.rst").read_text(encoding="utf-8")
    table = text[text.index(".. _flask-settings:"):]
    keys = set(re.findall(r"^   \* - ``(HYPERTABLE_\w+)``", table, re.M))
    assert sorted(set(defaults) - keys) == [] and sorted(keys - set(defaults)) == []


# ------------------------------------------------------------------ the site stands on its own


#: Pages whose author has yet to turn such references into links (each one is reported, not silenced for good).
NOT_YET: set[str] = set()


def test_no_page_sends_readers_to_a_file_they_do_not_have() -> None:
    """Users have the site, not the repository's neighbours: no ``protocol.md``, no ``../shared``, no README."""
    offending = []
    for page in sorted(DOCS.rglob("*")):
        if "_build" in page.parts or page.suffix not in (".rst", ".py", ".css", ".html", ".txt"):
            continue
        if str(page.relative_to(ROOT)) in NOT_YET:
            continue
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith(".. include::"):  # included text is on the site
                continue
            if re.search(r"protocol\.md|\.\./shared|README\.rst", line):
                offending.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offending == []


# ------------------------------------------------------------------ the examples users copy run as written


def _code_blocks(page: Path, language: str) -> list[str]:
    """The code blocks of ``language`` on ``page`` (``.. code-block:: language``), dedented."""
    import textwrap

    blocks = []
    text = page.read_text(encoding="utf-8")
    for match in re.finditer(rf"^\.\. code-block:: {language}\n\n((?:(?:    .*)?\n)+)", text, re.M):
        blocks.append(textwrap.dedent(match.group(1)).strip("\n"))
    return blocks


def test_every_hql_example_of_the_hql_page_parses() -> None:
    from htcluster import hql

    statements = []
    for block in _code_blocks(DOCS / "reference" / "hql.rst", "sql"):
        for line in block.splitlines():
            line = re.sub(r"\s+--.*$", "", line)
            if line.startswith(" ") and statements:
                statements[-1] += " " + line.strip()
            elif line.strip():
                statements.append(line.strip())
    assert len(statements) > 30
    for statement in statements:
        hql.parse(statement)  # raises ClientException(HQL_PARSE_ERROR) naming the statement's error


def test_the_landing_page_example_runs(capsys: Any) -> None:
    (example,) = [b for b in _code_blocks(DOCS / "index.rst", "python") if "LocalCluster" in b]
    exec(compile(example + "\nreplicas.close()\n", "docs/index.rst", "exec"), {})
    assert capsys.readouterr().out.strip() == "[('k', b'v')]"


def test_getting_started_first_calls_run_twice_in_a_row(broker: Any, capsys: Any) -> None:
    page = (DOCS / "getting-started.rst").read_text(encoding="utf-8")
    section = page[page.index("Your first calls"):]
    (example,) = re.findall(r"and talk to it from Python::\n\n((?:(?:    .*)?\n)+)", section)
    import textwrap

    code = textwrap.dedent(example).replace("localhost:15867", broker.address)
    for _ in range(2):
        namespace: dict[str, Any] = {}
        exec(compile(code, "docs/getting-started.rst", "exec"), namespace)
        namespace["pool"].close()
    assert capsys.readouterr().out.splitlines() == ["[('k1', b'v1')]"] * 2
