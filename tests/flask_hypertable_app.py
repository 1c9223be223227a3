# An app written for Flask-Hypertable 0.3.0, in the style of its README and
# usage guide (written for htcluster's tests; not Flask-Hypertable's code).
# tests/test_flask_dropin.py runs it twice: with its import line as it is
# (after htcluster.compat.install_as_flask_hypertable()), and with only the
# import line changed to htcluster.flask_ext.
import os

from flask import Flask, jsonify
from flask_hypertable import FlaskHypertable, FlaskPooledHypertable
from hyperthrift.gen.ttypes import Cell, ClientException, Key

app = Flask(__name__)
app.config["HYPERTABLE_HOST"] = os.environ.get("APP_HT_HOST", "localhost")
app.config["HYPERTABLE_PORT"] = int(os.environ.get("APP_HT_PORT", "38080"))
app.config["HYPERTABLE_TIMEOUT_MSECS"] = 10000
app.config["HYPERTABLE_POOL_SIZE"] = 2
app.config["HYPERTABLE_MAX_OVERFLOW"] = 1

if os.environ.get("APP_HT_POOLED", "1") == "1":
    ht = FlaskPooledHypertable(app)
else:
    ht = FlaskHypertable(app)

NAMESPACE = "fh_app"
TABLE = "foo"


def setup():
    """Create the namespace and the table; runs outside any app context."""
    with ht as client:
        if not client.namespace_exists(NAMESPACE):
            client.namespace_create(NAMESPACE)
        ns = client.namespace_open(NAMESPACE)
        if not client.table_exists(ns, TABLE):
            client.hql_query(ns, "CREATE TABLE %s (col, other)" % TABLE)
        client.close_namespace(ns)


@app.route("/put/<row>/<value>")
def put(row, value):
    client = ht.connection
    client.set_cell(client.mns[NAMESPACE], TABLE, Cell(Key(row, "col", None), value.encode("utf-8")))
    return "ok"


@app.route("/get/<row>")
def get(row):
    client = ht.connection
    value = client.get_cell(client.mns[NAMESPACE], TABLE, row, "col")
    return jsonify(row=row, value=value)


@app.route("/select")
def select():
    client = ht.connection
    res = client.hql_query(client.mns[NAMESPACE], "select col from %s" % TABLE)
    again = client.hql_query(client.mns[NAMESPACE], "select col from %s" % TABLE)
    return jsonify(rows=[(cell.key.row, cell.value) for cell in res.cells], same=len(again.cells) == len(res.cells))


@app.route("/result")
def result():
    client = ht.connection
    return jsonify(client.hql_query(client.mns[NAMESPACE], "select col from %s limit 1" % TABLE))


@app.route("/unmanaged/<row>")
def unmanaged(row):
    client = ht.connection
    ns = client.namespace_open(NAMESPACE)
    res = client.hql_query(ns, "select col from %s where row = '%s' revs 1" % (TABLE, row))
    client.close_namespace(ns)
    return jsonify([cell.value for cell in res.cells])


@app.route("/close-namespace")
def close_namespace():
    client = ht.connection
    client.mns[NAMESPACE]
    client.mns.close_namespace(NAMESPACE)
    client.mns.close_namespace(NAMESPACE)
    client.mns.close_namespace("never_opened")
    return "ok"


@app.route("/del-namespace")
def del_namespace():
    client = ht.connection
    del client.mns["never_opened"]
    return "ok"


@app.route("/missing")
def missing():
    client = ht.connection
    try:
        client.hql_query(client.mns[NAMESPACE], "select * from no_such_table")
    except ClientException as e:
        return jsonify(error=e.message, code=e.code), 404
    return "found?", 500


if __name__ == "__main__":
    setup()
    web = app.test_client()
    web.get("/put/script/from-main")
    print("get:", web.get("/get/script").get_json())
    with ht as client:
        print("with:", client.get_cell(client.mns[NAMESPACE], TABLE, "script", "col"))
    ht.close_app()
    print("closed")
