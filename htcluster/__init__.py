"""htcluster: talk to many Hypertable ThriftBrokers at once.

(The public API is imported lazily while the modules are being written.)
"""
from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger("htcluster").addHandler(logging.NullHandler())
