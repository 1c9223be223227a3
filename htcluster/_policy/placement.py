"""Placement: which shard a row belongs to, by rendezvous (highest random weight) hashing.

Every shard key gets a weight for every row, ``BLAKE2b(shard, row)``, and the
row belongs to the shard of highest weight (Thaler and Ravishankar's
rendezvous hashing).  Every process and machine agrees, and adding a shard
moves only the rows the new shard now wins, about ``1/n`` of them, all to it.

The weight hashes a canonical encoding of the *whole* shard key
(:func:`encode_shard_key`), never its ``str``: the ``str`` of a set depends
on the hash seed of the process, and a truncated one makes keys that share a
prefix weigh the same.  The encoding is defined for ``str``, ``bytes``,
``int`` and tuples of them (nested); other types have no encoding that every
process agrees on and are refused with :class:`~htcluster.errors.ConfigError`.

Placement decides where data lives: from the first release on, the encoding
and the weight below are part of the contract, and changing either moves rows
between shards (``docs/guide/consistency.rst``).

Use :class:`Placement` (encodings computed once) to locate rows;
:func:`rendezvous_weight` and :func:`row_bytes` are the parts it is made of.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Union

from ..errors import ConfigError

__all__ = ["PERSON", "Placement", "encode_shard_key", "rendezvous_weight", "row_bytes"]

#: The BLAKE2b personalisation of every weight (a domain separator: these digests mean nothing else).
PERSON = b"htcluster-hrw-1"
#: Bytes of each weight: a 64-bit digest.
_DIGEST_SIZE = 8
#: How deep tuples may nest in a shard key.
_MAX_DEPTH = 32
_ALLOWED = "str, bytes, int (not bool) and tuples of them"


def _length(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _refuse(key: object, why: str) -> ConfigError:
    return ConfigError(
        f"shard key {key!r} ({type(key).__name__}) cannot be placed: {why}. Shard keys must be {_ALLOWED}, "
        "whose encoding is the same in every process")


def _encode(key: object, out: list[bytes], depth: int, whole: object) -> None:
    """Append the encoding of ``key`` to ``out`` (type tag, length, payload; tuples recursively)."""
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
        out.extend((b"s", _length(len(data)), data))
    elif isinstance(key, bytes):
        out.extend((b"b", _length(len(key)), bytes(key)))
    elif isinstance(key, bool):
        raise _refuse(whole, "a bool is refused (True == 1 as a dict key, so it is most likely a mistake)")
    elif isinstance(key, int):
        value = int(key)
        data = value.to_bytes((value if value >= 0 else ~value).bit_length() // 8 + 1, "big", signed=True)
        out.extend((b"i", _length(len(data)), data))
    elif isinstance(key, tuple):
        if depth >= _MAX_DEPTH:
            raise _refuse(whole, f"tuples nest deeper than {_MAX_DEPTH} levels")
        out.extend((b"t", _length(len(key))))
        for item in key:
            _encode(item, out, depth + 1, whole)
    elif isinstance(key, (set, frozenset, dict)):
        raise _refuse(whole, f"the iteration order of a {type(key).__name__} changes with the hash seed")
    elif isinstance(key, float):
        raise _refuse(whole, "floats are refused (1.0 == 1, -0.0 == 0.0, and NaN is not equal to itself)")
    else:
        raise _refuse(whole, f"{type(key).__name__} has no defined encoding")


def encode_shard_key(key: object) -> bytes:
    """Return the canonical encoding of a whole shard key: stable across processes, injective.

    Each value is a one-byte type tag, an 8-byte big-endian length and the
    payload, so no encoding is a prefix of another and the encoding of a tuple
    (its length, then its items' encodings) decodes in one way only:

    * ``str``: ``b's'``, the UTF-8 bytes (lone surrogates kept, ``surrogatepass``);
    * ``bytes``: ``b'b'``, the bytes;
    * ``int``: ``b'i'``, the shortest two's-complement big-endian bytes;
    * ``tuple``: ``b't'``, the number of items, then each item's encoding.

    So ``'a'`` and ``b'a'``, ``(1, 2)`` and ``'12'``, ``('ab',)`` and
    ``('a', 'b')`` all differ; keys equal in Python encode equally (subclasses
    such as an ``IntEnum`` member encode as their value).

    :param key: a shard key: ``str``, ``bytes``, ``int`` (not ``bool``), or a
        tuple of these, nested at most 32 levels.
    :returns: the encoding (bytes).
    :raises ConfigError: the key or an item of it is another type (``set``,
        ``frozenset``, ``dict``, ``float``, ``bool``, ``None``, ``list``, any
        other object): no encoding of those is the same in every process or
        consistent with Python's equality; the message names the allowed types.
    """
    out: list[bytes] = []
    _encode(key, out, 0, key)
    return b"".join(out)


def row_bytes(row: Union[str, bytes]) -> bytes:
    """Return a row key as the bytes the weight hashes (Hypertable row keys are byte strings).

    :param row: a ``str`` (encoded as UTF-8) or bytes-like (``bytes``,
        ``bytearray``, ``memoryview``: taken as they are).
    :returns: the row's bytes.
    :raises TypeError: ``row`` is of another type (an ``int`` is not a row key).
    :raises UnicodeEncodeError: a ``str`` holding a lone surrogate (no UTF-8 form).
    """
    if isinstance(row, str):
        return row.encode("utf-8")
    if isinstance(row, bytes):
        return row
    if isinstance(row, (bytearray, memoryview)):
        return bytes(row)
    raise TypeError(f"a row key must be str or bytes, got {type(row).__name__}: {row!r}")


def _prefix(encoded_shard: bytes) -> Any:
    """Return a BLAKE2b state that has absorbed the length-prefixed shard encoding (copy it per row)."""
    state = hashlib.blake2b(digest_size=_DIGEST_SIZE, person=PERSON)
    state.update(_length(len(encoded_shard)))
    state.update(encoded_shard)
    return state


def rendezvous_weight(encoded_shard: bytes, row: bytes) -> int:
    """Return the weight of ``row`` for one shard: the same in every process and on every machine.

    The weight is the 64-bit BLAKE2b digest (personalisation :data:`PERSON`)
    of the shard encoding's length (8 bytes, big-endian), the whole encoding
    and the row's bytes; the length prefix makes every (shard, row) pair hash
    a distinct input.

    :param encoded_shard: the shard key's :func:`encode_shard_key`.
    :param row: the row key's bytes (:func:`row_bytes`).
    :returns: an int in ``[0, 2**64)``.
    """
    state = _prefix(encoded_shard)
    state.update(row)
    return int.from_bytes(state.digest(), "big")


@dataclass(frozen=True)
class Placement:
    """The shard keys rows are placed on, with their encodings computed once.

    :param keys: the shard keys (any iterable; see :func:`encode_shard_key`
        for the allowed types).  Kept sorted by encoding, so the order given
        does not matter: two placements of the same keys are equal.
    :raises ConfigError: a key of a type without a stable encoding, or two
        keys with the same encoding (equal keys).

    A value: share one between threads; build a new one when the keys change.

    Example::

        placement = Placement(["eu", "us", ("asia", 1)])
        placement.locate("row17")      # one of the three keys, the same everywhere
    """

    keys: tuple[Hashable, ...]
    #: The keys' encodings, in the order of :attr:`keys`.
    encodings: tuple[bytes, ...] = field(init=False, repr=False)
    _states: tuple[tuple[Any, bytes, Hashable], ...] = field(init=False, repr=False, compare=False)

    def __init__(self, keys: Iterable[Hashable]) -> None:
        pairs = sorted(((encode_shard_key(key), key) for key in keys), key=lambda pair: pair[0])
        for (a, first), (b, second) in zip(pairs, pairs[1:]):
            if a == b:
                raise ConfigError(f"shard keys {first!r} and {second!r} are equal: each shard key must be unique")
        object.__setattr__(self, "keys", tuple(key for _, key in pairs))
        object.__setattr__(self, "encodings", tuple(encoded for encoded, _ in pairs))
        object.__setattr__(self, "_states", tuple((_prefix(encoded), encoded, key) for encoded, key in pairs))

    def __len__(self) -> int:
        return len(self.keys)

    def locate(self, row: Union[str, bytes]) -> Hashable:
        """Return the shard key ``row`` belongs to: the one of highest :func:`rendezvous_weight`.

        Ties (a chance of about ``n**2 / 2**65``) go to the larger encoding.
        Costs one BLAKE2b of the row per shard key.

        :param row: a row key, ``str`` (UTF-8) or ``bytes`` (:func:`row_bytes`);
            ``'r'`` and ``b'r'`` are placed alike.
        :returns: one of :attr:`keys`.
        :raises LookupError: the placement has no keys.
        :raises TypeError: ``row`` is not a row key (see :func:`row_bytes`).
        """
        data = row_bytes(row)
        best: Any = None
        best_key: Hashable = None
        for prefix, encoded, key in self._states:
            state = prefix.copy()
            state.update(data)
            # 8-byte big-endian digests order as the ints of rendezvous_weight
            rank = (state.digest(), encoded)
            if best is None or rank > best:
                best, best_key = rank, key
        if best is None:
            raise LookupError("no shard keys to place rows on")
        return best_key
