"""``python -m htcluster.broker``: the ``htcluster broker`` command (:mod:`.command`; see ``--help``).

Once :func:`~.command.main` returns (the store is closed, every mutator
flushed), the process exits without waiting for worker threads that may
still run a call cut off by a second signal: a second signal stops at once.
"""
from __future__ import annotations

import logging
import os
import sys

from .command import main

if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
