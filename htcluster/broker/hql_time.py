"""Moved to :mod:`htcluster.hql.timestamps`; this name stays for older imports."""
from __future__ import annotations

from ..hql.timestamps import *  # noqa: F403
from ..hql.timestamps import __all__  # noqa: F401
