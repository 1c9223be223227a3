# A client program in the style of the upstream Python client's example
# (hypertable/src/py/ThriftClient/client_test.py), written for this test:
# it imports only upstream's modules.  tests/test_compat.py runs it with
# htcluster.compat.install_as_hypertable() called first, and nothing else changed.
import sys
import time

from hypertable.thriftclient import *
from hyperthrift.gen.ttypes import *

host, port = sys.argv[1], int(sys.argv[2])

try:
  client = ThriftClient(host, port)
  if not client.namespace_exists("test"):
    client.namespace_create("test")
  namespace = client.namespace_open("test")
  client.hql_query(namespace, "drop table if exists thrift_test")
  client.hql_query(namespace, "create table thrift_test ( col )")

  print("HQL examples")
  res = client.hql_query(namespace, "show tables")
  print("tables:", ",".join(res.results))
  client.hql_query(namespace, "insert into thrift_test values ('k0', 'col', 'v0')")
  res = client.hql_query(namespace, "select * from thrift_test")
  print("hql:", [(c.key.row, c.value) for c in res.cells])

  print("mutator examples")
  mutator = client.mutator_open(namespace, "thrift_test", 0, 0)
  client.mutator_set_cell(mutator, Cell(Key("py-k1", "col", None), b"py-v1"))
  client.mutator_set_cells(mutator, [Cell(Key("py-k2", "col", None), b"py-v2")])
  client.mutator_flush(mutator)
  client.mutator_close(mutator)

  print("shared mutator examples")
  mutate_spec = MutateSpec("test_py", 1000, 0)
  client.shared_mutator_set_cell(namespace, "thrift_test", mutate_spec,
                                 Cell(Key("py-put-k1", "col", None), b"py-put-v1"))
  client.shared_mutator_refresh(namespace, "thrift_test", mutate_spec)
  client.shared_mutator_set_cells(namespace, "thrift_test", mutate_spec,
                                  [Cell(Key("py-put-k2", "col", None), b"py-put-v2")])
  client.shared_mutator_refresh(namespace, "thrift_test", mutate_spec)
  time.sleep(0.1)

  print("scanner examples")
  scanner = client.scanner_open(namespace, "thrift_test",
                                ScanSpec(None, None, None, 1))
  rows = []
  while True:
    cells = client.scanner_get_cells(scanner)
    if len(cells) == 0:
      break
    rows.extend((c.key.row, c.value.decode()) for c in cells)
  client.scanner_close(scanner)
  print("scan:", rows)

  print("get_cells example")
  cells = client.get_cells(namespace, "thrift_test",
                           ScanSpec(row_intervals=[RowInterval("py-k1", True, "py-k2", True)]))
  print("get_cells:", [c.key.row for c in cells])
  print("get_cell:", client.get_cell(namespace, "thrift_test", "py-put-k2", "col"))

  print("error example")
  try:
    client.hql_query(namespace, "select * from no_such_table")
  except ClientException as e:
    print("ClientException:", e.code, e.message)

  client.namespace_close(namespace)
  client.close()
  print("done")
except ClientException as e:
  print("unexpected ClientException:", e.code, e.message)
  sys.exit(1)
