"""The Flask helpers' package: its public names, the old import paths, and no import circle."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ["config", "binds", "routing", "encoding", "stream", "queries", "toolbar", "cli"]
OLD_PATHS = {"htcluster._flask.config": "config", "htcluster._flask.routing": "routing",
             "htcluster._flask.stream": "stream"}


@pytest.mark.parametrize("name", [f"htcluster._flask.{m}" for m in HELPERS] + ["htcluster.compat",
                                                                              "htcluster.compat.thriftclient"])
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    assert module.__doc__ and module.__all__
    assert not [attr for attr in module.__all__ if not hasattr(module, attr)]


@pytest.mark.parametrize("old, new", OLD_PATHS.items())
def test_old_import_paths_give_the_same_objects(old, new):
    legacy, module = importlib.import_module(old), importlib.import_module(f"htcluster._flask.{new}")
    assert legacy.__all__ == module.__all__
    assert all(getattr(legacy, name) is getattr(module, name) for name in module.__all__)


def test_the_helpers_never_import_the_extension():
    """flask_ext imports flaskext; flaskext (routing included) never imports flask_ext back."""
    code = ("import sys; import " + ", ".join(f"htcluster._flask.{m}" for m in HELPERS) +
            "; print('htcluster.flask_ext' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    for helper in HELPERS:
        assert "flask_ext" not in (ROOT / "htcluster" / "_flask" / f"{helper}.py").read_text().replace(
            "htcluster.flask_ext", "")
