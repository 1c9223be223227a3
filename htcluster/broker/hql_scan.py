"""Moved to :mod:`htcluster.hql.scan`; this name stays for older imports."""
from __future__ import annotations

from ..hql.scan import *  # noqa: F403
from ..hql.scan import __all__  # noqa: F401
