"""Whole-pool bookkeeping by integer indices (no Ray, no torch, no per-id dicts or sets).

The AL driver holds the pool's ids once, as one sorted array of packed ids
(``pack_ids``: one byte a character, the same order as the str ids); a set of ids (the labeled set, a query's picks) is then a vector of positions in
it, found by binary search, and "the unlabeled pool" a boolean mask. At 10^6
ids of ~50 characters that costs milliseconds to a second, where Python sets and
sorted lists of str cost tens of seconds and gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from raydal.exceptions import QueryError
from raydal.query.candidates import pack_ids, unpack_ids

__all__ = ["member_mask", "pack_ids", "positions", "prev_probs_digest", "sorted_ids", "unpack_ids"]


def sorted_ids(ids: Iterable[str] | np.ndarray, what: str = "the pool") -> np.ndarray:
    """``ids`` as a str [N] array sorted ascending; QueryError naming a duplicate.

    Already-sorted input (shards written in id order) is checked in one pass and
    not copied; otherwise a stable sort (which merges sorted runs) orders it.
    """
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=str)
    if len(arr) > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        arr = arr[np.argsort(arr, kind="stable")]
        dup = np.flatnonzero(arr[1:] == arr[:-1])
        if len(dup):
            raise QueryError(
                f"{what} holds duplicate ids (e.g. {arr[dup[0]]!r}); ids must be unique: re-prepare the shards."
            )
    return arr


def positions(pool: np.ndarray, ids: Iterable[str] | np.ndarray) -> np.ndarray:
    """int64 [n]: where each of ``ids`` sits in the sorted ``pool`` [N], -1 where it is not in it.

    ``pool`` may be str or packed (``pack_ids``: the same order); ``ids`` are str.
    """
    ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=str)
    if pool.dtype.kind == "S":
        ids = pack_ids(ids)
    if not len(pool) or not len(ids):
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(pool, ids).astype(np.int64)
    found = pos < len(pool)
    found[found] = pool[pos[found]] == ids[found]
    pos[~found] = -1
    return pos


def member_mask(pool: np.ndarray, ids: Iterable[str] | np.ndarray) -> np.ndarray:
    """bool [N]: which rows of the sorted ``pool`` are among ``ids`` (ids outside the pool are ignored)."""
    mask = np.zeros(len(pool), dtype=bool)
    pos = positions(pool, ids)
    mask[pos[pos >= 0]] = True
    return mask


_last_digest: tuple | None = None  # (weakref to ids, weakref to probs, digest) of the last call


def prev_probs_digest(prev_probs: tuple[np.ndarray, np.ndarray]) -> bytes:
    """sha256 of a scoring pass's ``(ids [N], probs [N, C])``: what a cache key of pool scores hashes.

    The loop hands the very same arrays to ``plan_query`` and to ``query``: the last
    pair's digest is remembered (by identity, through weak references, so it never
    keeps 10^6 rows alive), and ids are hashed packed (1 byte a character).
    """
    import hashlib
    import weakref

    global _last_digest
    ids, probs = prev_probs
    if _last_digest is not None and _last_digest[0]() is ids and _last_digest[1]() is probs:
        return _last_digest[2]
    h = hashlib.sha256(memoryview(np.ascontiguousarray(pack_ids(np.asarray(ids)))).cast("B"))  # no copy
    h.update(memoryview(np.ascontiguousarray(probs, dtype=np.float32)).cast("B"))
    digest = h.digest()
    try:
        _last_digest = (weakref.ref(ids), weakref.ref(probs), digest)
    except TypeError:  # not weak-referenceable (a list): not remembered
        _last_digest = None
    return digest
