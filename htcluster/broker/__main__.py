"""``python -m htcluster.broker``: run the stand-in ThriftBroker (see ``--help``).

Once :func:`~.server.main` returns (the store is closed, every mutator
flushed), the process exits without waiting for worker threads that may
still run a call cut off by a second signal: a second signal stops at once.
"""
from __future__ import annotations

import logging
import os
import sys

from .server import main

if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
