"""Moved to :mod:`htcluster.hql.timestamps`; this name stays for older imports."""
from __future__ import annotations

from ..hql.timestamps import *
from ..hql.timestamps import __all__
