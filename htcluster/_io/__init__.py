"""The connection layer: one blocking socket per broker connection (``Connection``), and ``Resource``,
the Thrift ``HqlService`` client over it, with its managed namespaces."""
