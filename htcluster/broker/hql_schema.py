"""Moved to :mod:`htcluster.hql.schema`; this name stays for older imports."""
from __future__ import annotations

from ..hql.schema import *  # noqa: F403
from ..hql.schema import __all__  # noqa: F401
