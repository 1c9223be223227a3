"""Set cover for ``Shards.multicast``: a smallest set of hosts that together serve every key.

Keys and hosts come in as bit masks (bit i set when the host serves key i).
Up to :data:`EXACT_COVER_LIMIT` candidate hosts the search is exhaustive (a
true minimum); above it, the greedy set cover, at most ``ln(keys) + 1`` times
the minimum.  Among equal choices, the better :data:`Rank` wins.  Pure.
"""
from __future__ import annotations

import itertools
from typing import Iterable

__all__ = ["EXACT_COVER_LIMIT", "Rank", "greedy_cover", "smallest_cover"]

#: Up to this many candidate hosts, the cover is searched exhaustively (at most 2**limit subsets).
EXACT_COVER_LIMIT = 12

#: How a host ranks in a cover: live first, then more idle connections, then a random tie-breaker.
Rank = tuple[bool, int, float]


def smallest_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict[str, Rank]) -> list[str]:
    """Exhaustive search: the first size with a cover, best total rank among those."""
    for size in range(1, len(candidates) + 1):
        covers = [combo for combo in itertools.combinations(candidates, size)
                  if _union(masks, combo) == full]
        if covers:
            best = max(covers, key=lambda combo: sorted((rank[h] for h in combo), reverse=True))
            return list(best)
    raise AssertionError("every key has a host, so all candidates cover")  # pragma: no cover


def greedy_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict[str, Rank]) -> list[str]:
    """Greedy set cover: repeatedly take the host serving most uncovered keys, best rank on ties."""
    chosen: list[str] = []
    uncovered = full
    while uncovered:
        host = max(candidates, key=lambda h: (bin(masks[h] & uncovered).count("1"), rank[h]))
        chosen.append(host)
        uncovered &= ~masks[host]
    return chosen


def _union(masks: dict[str, int], hosts: Iterable[str]) -> int:
    bits = 0
    for h in hosts:
        bits |= masks[h]
    return bits
