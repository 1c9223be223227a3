"""Release basics (issue 16, items 7/8): what a user meets first besides the code.

``ClientException`` names its code symbolically and lives, as tracebacks say,
at its public path; the package declares the Python versions and the platform
it supports; the pytest plugin's options are prefixed and loading it imports
nothing optional; the changelog has an "Unreleased" section and a version policy.
"""
from __future__ import annotations

import configparser
import pickle
import re
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path

import pytest

from htcluster import Replicas, Resource, codes
from htcluster.errors import ClientException

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ ClientException


def _raised(call) -> ClientException:
    with pytest.raises(ClientException) as info:
        call()
    return info.value


def test_client_exception_names_the_code(local_broker):
    with Resource(local_broker.address) as r:
        exc = _raised(lambda: r.namespace_open("no_such_namespace"))
    assert exc.code == codes.NAMESPACE_DOES_NOT_EXIST
    assert str(exc).startswith("NAMESPACE_DOES_NOT_EXIST (40): ")
    assert "no_such_namespace" in str(exc)
    assert repr(exc).startswith("ClientException(code=40, ")  # the generated repr is kept


def test_routed_client_exception_shows_a_public_path_in_tracebacks(local_broker):
    replicas = Replicas([local_broker.address])
    try:
        exc = _raised(lambda: replicas.call("get_row", "t", "r", namespace="no_such_namespace"))
    finally:
        replicas.close()
    text = "".join(traceback.format_exception(exc))
    assert "htcluster.errors.ClientException: NAMESPACE_DOES_NOT_EXIST (40): " in text
    assert "_thrift" not in text.splitlines()[-1] and "code=40" not in text


def test_client_exception_unknown_code_pickle_and_equality():
    exc = ClientException(code=123456789, message="odd")
    assert str(exc) == "UNREGISTERED_ERROR (123456789): odd"
    assert str(ClientException(message="no code")) == "ClientException: no code"
    assert pickle.loads(pickle.dumps(exc)) == exc
    assert codes.name(codes.TABLE_NOT_FOUND) == "TABLE_NOT_FOUND"
    assert all(getattr(codes, name) == code for code, name in codes.NAMES.items())


# ------------------------------------------------------------------ what the package declares


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def test_python_311_and_posix_are_declared():
    config = _setup_cfg()
    assert config["options"]["python_requires"].strip() == ">=3.11"
    classifiers = config["metadata"]["classifiers"].split("\n")
    versions = sorted(c.rsplit(":: ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c))
    assert versions == ["3.11", "3.12", "3.13"]
    assert "Operating System :: POSIX" in classifiers
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["mypy"]["python_version"] == "3.11"
    assert pyproject["tool"]["ruff"]["target-version"] == "py311"
    assert sys.version_info >= (3, 11)


def test_the_main_job_command_installs_no_extra():
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    assert "    python -m pip install -e . && python -m htcluster demo\n" in readme
    assert re.search(r'pip install -e "\.\[[a-z,]*test[a-z,]*\]" && python -m pytest', readme)


def test_changelog_has_unreleased_and_a_version_policy():
    text = (ROOT / "CHANGELOG.rst").read_text(encoding="utf-8")
    headings = re.findall(r"^(.+)\n[=-]{3,}$", text, re.M)
    assert {"Version policy", "Unreleased", "Added", "Changed"} <= set(headings)
    assert headings.index("Version policy") < headings.index("Unreleased")
    for words in ("Semantic Versioning", "Breaking", "Shards.locate", "3.11", "POSIX"):
        assert words in text, words


# ------------------------------------------------------------------ the pytest plugin

OPTIONAL = ("flask", "werkzeug", "opentelemetry", "pydantic", "hypothesis", "flask_debugtoolbar")


def test_loading_the_plugin_imports_nothing_optional(tmp_path):
    """The plugin loads in every project that installs htcluster: it imports only htcluster's requirements."""
    probe = ("import sys, htcluster.testing; "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_plugin_options_are_prefixed_and_the_broker_option_starts_nothing(tmp_path):
    """In a project of its own (no conftest), ``--htcluster-broker`` reaches ``broker_address``."""
    (tmp_path / "test_probe.py").write_text(
        "def test_address(broker_address, request):\n"
        "    assert broker_address == 'ht9.example:15867'\n"
        "    assert 'local_broker' not in request.fixturenames\n", encoding="utf-8")
    run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    helped = subprocess.run([*run, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "--htcluster-broker=HOST:PORT" in helped.stdout
    assert not re.search(r"^\s+--broker\b", helped.stdout, re.M)
    result = subprocess.run([*run, "--htcluster-broker", "ht9.example:15867"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
