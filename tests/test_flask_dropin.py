"""A Flask-Hypertable 0.3.0 app runs unchanged but for its import line (or not even that).

``tests/flask_hypertable_app.py`` is written in Flask-Hypertable's style.  It
runs under two imports: its own line ``from flask_hypertable import ...``
after ``htcluster.compat.install_as_flask_hypertable()``, and with that line
changed to ``from htcluster.flask_ext import ...`` (the ``hyperthrift``
modules it also imports come from ``install_as_hypertable()``, standing in
for the upstream client Flask-Hypertable depended on).
"""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import htcluster.compat as compat
from htcluster import Pool

APP = Path(__file__).with_name("flask_hypertable_app.py")
ROOT = Path(__file__).resolve().parents[1]
OLD_IMPORT = "from flask_hypertable import FlaskHypertable, FlaskPooledHypertable"
NEW_IMPORT = "from htcluster.flask_ext import FlaskHypertable, FlaskPooledHypertable"
VARIANTS = ["old-import-line", "htcluster-import-line"]


def source(variant: str) -> str:
    text = APP.read_text()
    assert OLD_IMPORT in text
    return text if variant == "old-import-line" else text.replace(OLD_IMPORT, NEW_IMPORT)


def install(variant: str) -> None:
    if variant == "old-import-line":
        compat.install_as_flask_hypertable()
    else:
        compat.install_as_hypertable()


@pytest.fixture(params=[(v, pooled) for v in VARIANTS for pooled in (True, False)],
                ids=[f"{v}-{'pooled' if p else 'basic'}" for v in VARIANTS for p in (True, False)])
def legacy(request, broker_address, monkeypatch):
    """The app module, loaded as the variant says, against the session's broker."""
    variant, pooled = request.param
    host, port = broker_address.rsplit(":", 1)
    monkeypatch.setenv("APP_HT_HOST", host)
    monkeypatch.setenv("APP_HT_PORT", port)
    monkeypatch.setenv("APP_HT_POOLED", "1" if pooled else "0")
    install(variant)
    module = types.ModuleType("flask_hypertable_app")
    module.__file__ = str(APP)
    exec(compile(source(variant), str(APP), "exec"), module.__dict__)
    yield module
    module.ht.close_app()
    compat.uninstall_as_hypertable()


def test_the_app_runs(legacy):
    legacy.setup()  # `with ht as client:` outside any app context (raised RuntimeError before)
    web = legacy.app.test_client()
    assert web.get("/put/r1/v1").data == b"ok"
    assert web.get("/put/r2/caf\u00e9").data == b"ok"
    for _ in range(6):  # more requests than POOL_SIZE + MAX_OVERFLOW: nothing may leak
        assert web.get("/get/r1").get_json() == {"row": "r1", "value": "v1"}  # jsonify of bytes
    rows = web.get("/select").get_json()
    assert ["r1", "v1"] in rows["rows"] and ["r2", "caf\u00e9"] in rows["rows"] and rows["same"]
    result = web.get("/result").get_json()  # jsonify of an HqlResult
    assert result["cells"] and set(result["cells"][0]) == {"row", "column", "timestamp", "value"}
    assert web.get("/unmanaged/r1").get_json() == ["v1"]
    assert web.get("/close-namespace").data == b"ok"
    missing = web.get("/missing")
    assert missing.status_code == 404 and missing.get_json()["code"] > 0  # upstream's except ClientException
    with legacy.app.app_context():
        pool = legacy.ht.cluster
    assert isinstance(pool, Pool) and pool.in_use == 0
    legacy.ht.close_app()  # no app context (raised RuntimeError before)
    assert pool.idle == 0 and pool.in_use == 0
    assert web.get("/get/r1").get_json()["value"] == "v1"  # usable again after close_app()


def test_del_of_a_namespace_never_opened_is_a_no_op(legacy):
    """``del client.mns['x']`` raised KeyError for a name never opened; Flask-Hypertable ignored it."""
    legacy.app.config["PROPAGATE_EXCEPTIONS"] = True
    assert legacy.app.test_client().get("/del-namespace").data == b"ok"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_script_runs_outside_any_app_context(variant, broker_address, tmp_path):
    """``python app.py``: setup, a request, ``with ht``, ``close_app()`` at the end, exit."""
    host, port = broker_address.rsplit(":", 1)
    script = tmp_path / "app.py"
    script.write_text(source(variant))
    call = "install_as_flask_hypertable" if variant == "old-import-line" else "install_as_hypertable"
    runner = (f"import runpy, sys, htcluster.compat; htcluster.compat.{call}(); "
              "runpy.run_path(sys.argv[1], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", runner, str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**_env(), "APP_HT_HOST": host, "APP_HT_PORT": port})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "get: {'row': 'script', 'value': 'from-main'}" in done.stdout
    assert "with: b'from-main'" in done.stdout and "closed" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_close_app_is_registered_at_exit(broker_address):
    """An app that never calls close_app() still has its pool closed when the interpreter exits."""
    program = f"""
from flask import Flask
from htcluster.flask_ext import FlaskPooledHypertable
from htcluster import Pool

closing = Pool.close
def close(self):
    print("closing", self.host, "idle", self.idle, flush=True)
    closing(self)
    print("idle after", self.idle, flush=True)
Pool.close = close

app = Flask("exit")
host, port = {broker_address!r}.rsplit(":", 1)
app.config.update(HYPERTABLE_HOST=host, HYPERTABLE_PORT=int(port))
ht = FlaskPooledHypertable(app)
with app.app_context():
    assert ht.connection.status().code == 0
print("exiting", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.index("exiting") < done.stdout.index(f"closing {broker_address} idle 1")
    assert "idle after 0" in done.stdout


def _env() -> dict[str, str]:
    import os
    return {**os.environ, "PYTHONPATH": str(ROOT)}
