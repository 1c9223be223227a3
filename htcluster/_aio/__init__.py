"""The asyncio front end (``htcluster.aio``): the same engine, driven with ``await``."""
