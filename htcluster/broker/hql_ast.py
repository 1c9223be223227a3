"""Moved to :mod:`htcluster.hql.statements`; this name stays for older imports."""
from __future__ import annotations

from ..hql.statements import *  # noqa: F403
from ..hql.statements import __all__  # noqa: F401
