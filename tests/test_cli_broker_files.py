"""``htcluster broker --files DIR``: LOAD DATA INFILE of the shared Freebase table through the console script."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

from htcluster import Resource
from htcluster.types import ScanSpec


def test_broker_files_option_loads_the_aircraft_table(tmp_path, shared_data):
    shutil.copy(shared_data / "aircraft_model.tsv.gz", tmp_path)
    port_file = tmp_path / "port"
    proc = subprocess.Popen(["htcluster", "broker", "--port", "0", "--port-file", str(port_file),
                             "--files", str(tmp_path)], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        port = int(port_file.read_text())
        with Resource(f"127.0.0.1:{port}", socket_timeout=60.0) as r:
            r.namespace_create("fb")
            ns = r.mns["fb"]
            r.hql_query(ns, "CREATE TABLE freebase (name, category, property)")
            r.hql_query(ns, "LOAD DATA INFILE ROW_KEY_COLUMN=id IGNORE_UNKNOWN_COLUMNS 'aircraft_model.tsv.gz' "
                            "INTO TABLE freebase")
            rows = {c.key.row for c in r.get_cells(ns, "freebase", ScanSpec(columns=["name"]))}
            assert len(rows) == 3684
            outside = r.hql_query  # a file outside --files is refused
            try:
                outside(ns, "LOAD DATA INFILE '/etc/passwd' INTO TABLE freebase")
            except Exception as exc:  # ClientException: INVALID_OPERATION
                assert "passwd" in str(exc) or "outside" in str(exc).lower()
            else:  # pragma: no cover - the defect this guards against
                raise AssertionError("a file outside --files was read")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
