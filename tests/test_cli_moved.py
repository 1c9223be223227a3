"""The modules that moved into htcluster.cli still import under their old names, as the same objects."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import htcluster
from htcluster._moved import MOVED

PACKAGE = Path(htcluster.__file__).parent


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new  # the real module's spec is untouched
    assert not (PACKAGE / f"{leaf}.py").exists()  # no stub file left behind


def test_old_paths_work_in_a_fresh_interpreter_first():
    """Imported before anything else (no module cached yet), by every import form users write."""
    code = ("from htcluster.status import check_hosts, down_message, format_status\n"
            "from htcluster.weblog import LogEntry\n"
            "import htcluster.logload, htcluster.cli.weblog, htcluster.cli.status\n"
            "from htcluster import cli_output, demo, logfile\n"
            "assert htcluster.logload.ensure_logdb.__module__ == 'htcluster.cli.logload'\n"
            "assert LogEntry is htcluster.cli.weblog.LogEntry\n"
            "assert check_hosts is htcluster.cli.status.check_hosts\n"
            "assert cli_output.explain.__module__ == 'htcluster.cli.output'\n"
            "import htcluster.flask_ext\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_entry_point_and_main_module_still_name_the_click_group():
    from htcluster.cli import main
    assert set(main.commands) == {"broker", "cluster", "demo", "hql", "load", "status"}
    assert importlib.import_module("htcluster.cli.status").__name__ == "htcluster.cli.status"  # not a command


def test_unknown_names_are_left_to_the_normal_finders():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("htcluster.no_such_module")
