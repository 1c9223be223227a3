"""The helpers of the Quart extension; the extension itself is :mod:`htcluster.quart_ext`.

==================  ===========================================================
module              holds
==================  ===========================================================
``routing``         the ``htcluster.aio`` classes per strategy, awaitable
                    checkouts (``AsyncLease``), calls and ``ht.namespace()``
``stream``          a scan streamed as one JSON array by an async generator
``queries``         ``HYPERTABLE_RECORD_QUERIES`` in Quart's app context
``cli``             ``quart hypertable status``: the shared command group in Quart's CLI
==================  ===========================================================

Everything that does not depend on the framework or on the I/O flavour is
shared with the Flask extension and lives in :mod:`htcluster._flask`: the
settings and their checks (``config``, ``binds``, ``hostsfile``), the table
of routing classes (``routing.build_cluster``), the cluster state without
I/O (``routing.ClusterState``), the JSON encoding (``encoding``), the pure
streaming parts (``stream.JsonArrayEncoder``, ``stream.RowGrouper``) and
the recorded query itself (``queries.recorded_query``) and the
``hypertable`` command group (``commands``).
"""
