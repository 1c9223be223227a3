"""Moved to :mod:`htcluster.hql.schema`; this name stays for older imports."""
from __future__ import annotations

from ..hql.schema import *
from ..hql.schema import __all__
