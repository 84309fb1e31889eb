"""Event ids as 64-bit keys: what the join of predictions with later labels matches on.

A pending prediction must cost a fixed few bytes whatever the length of its
``event_id``, so the join keeps a 64-bit hash of the id, never the id.  The
hash is computed column-wise over a batch (the ids' UTF-8 bytes in a numpy
matrix, eight bytes a pass, a splitmix64 finaliser after each word and the
length mixed in last), so it is the same in every process and after every
restart (Python's ``hash`` of a string is salted per process, so it cannot be
saved in a checkpoint).

An integer id is its decimal string: ``5`` and ``"5"`` name the same event.

Collisions: two distinct ids of one model with the same key are one id to the
join.  With ``n`` ids of a model waiting at once, the chance that any two
collide is about ``n**2 / 2**65``: 2.7e-8 for a million pending predictions.
A collision makes a label join the wrong prediction (the one that arrived
first under that key; the other then leaves unlabeled when its TTL ends) or
count as a duplicate; it never raises and never loses a count.

>>> keys = event_keys(["e-1", "e-2", 5, "5"])
>>> keys.dtype, len(set(keys.tolist())), bool(keys[2] == keys[3])
(dtype('uint64'), 3, True)
>>> bool(event_keys(["e-1", "x" * 1000])[0] == keys[0])   # the same in any batch
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def event_keys(ids: Sequence[str | int]) -> npt.NDArray[np.uint64]:
    """The 64-bit key of each id (strings or integers), one numpy pass per eight bytes of the longest id.

    An id's key depends on its bytes alone, never on the other ids of the
    batch; ids longer than ``_SHORT`` bytes are hashed on their own, so one
    long id does not widen the whole batch's matrix.
    """
    if not ids:
        return np.zeros(0, np.uint64)
    raw = _encoded(ids)
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    keys = np.zeros(len(raw), dtype=np.uint64)
    short = lengths <= _SHORT
    if short.all():
        return _hash(raw, lengths)
    at = np.flatnonzero(short)
    keys[at] = _hash([raw[i] for i in at.tolist()], lengths[at])
    for i in np.flatnonzero(~short).tolist():
        keys[i] = _hash([raw[i]], lengths[i : i + 1])[0]
    return keys


_SHORT: Final = 64


def _encoded(ids: Sequence[str | int]) -> list[bytes]:
    r"""Each id's UTF-8 bytes (an integer's as its decimal text): one join, encode and split when all are strings.

    >>> _encoded(["a", "é"]), _encoded(["a", "b\x1fc"]), _encoded(["a", 7])
    ([b'a', b'\xc3\xa9'], [b'a', b'b\x1fc'], [b'a', b'7'])
    """
    try:
        text = "\x1f".join(ids)  # type: ignore[arg-type]  # an integer raises TypeError: handled below
    except TypeError:
        pass
    else:
        if text.count("\x1f") == len(ids) - 1:  # no id holds the separator
            return text.encode().split(b"\x1f")
    return [(i if type(i) is str else str(i)).encode() for i in ids]


def _hash(raw: list[bytes], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """Each id's words mixed in turn (only its own: an id's zero padding is never hashed), then its length."""
    if not raw:
        return np.zeros(0, np.uint64)
    words_of = (lengths + 7) // 8
    width = max(8, int(words_of.max()) * 8)
    packed = np.array(raw, dtype=f"S{width}")  # zero-padded on the right
    words = packed.view(np.uint8).reshape(len(raw), width).view("<u8")
    with np.errstate(over="ignore"):
        h = np.full(len(raw), _GOLDEN, dtype=np.uint64)
        for column in range(words.shape[1]):
            mixed = _mix(h ^ words[:, column] + _GOLDEN)
            h = np.where(column < words_of, mixed, h)
        return _mix(h ^ lengths.astype(np.uint64))
