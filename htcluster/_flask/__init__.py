"""The helpers of the Flask extension; the extension itself is :mod:`htcluster.flask_ext`.

==================  ===========================================================
module              holds
==================  ===========================================================
``config``          the ``HYPERTABLE_*`` keys: defaults, checks, :class:`Settings`
``binds``           ``HYPERTABLE_BINDS``: more named clusters, checked as the main one
``routing``         routing objects per strategy, checkouts (``Lease``), ``ht.namespace()``;
                    ``ClusterState``, the part of a cluster the Quart extension shares
``setup``           the steps of ``init_app`` and the state lookup, shared with Quart
``encoding``        cells, results and cell values as JSON; the app's JSON provider hook
``stream``          a scan streamed as one JSON array
``queries``         ``HYPERTABLE_RECORD_QUERIES`` and ``get_recorded_queries()``
``toolbar``         a Flask-DebugToolbar panel (needs ``flask-debugtoolbar``)
``commands``        the ``hypertable`` command group (``status``), for Flask's CLI and Quart's
``cli``             that group in Flask's CLI: ``flask hypertable status``
==================  ===========================================================

Nothing here imports :mod:`htcluster.flask_ext`; it imports these.  The
old modules ``htcluster._flask.config``, ``htcluster._flask.routing`` and
``htcluster._flask.stream`` re-export ``config``, ``routing`` and ``stream``.
"""
