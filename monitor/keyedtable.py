"""Rows kept sorted by a 64-bit key, one numpy array per column: the join's tables (``monitor/join.py``).

A million waiting predictions are a few arrays, not a million objects: a
batch looks its keys up with one ``np.searchsorted``, removes rows with one
boolean mask and merges new rows in with one ``np.insert``.  Rows of one key
keep their arrival order (first in, first joined).

>>> import numpy as np
>>> table = SortedTable({"key": np.uint64, "time": np.float64})
>>> table.insert({"key": np.array([7, 3, 7], np.uint64), "time": np.array([1.0, 2.0, 3.0])})
>>> table.columns["key"].tolist(), table.columns["time"].tolist()
([3, 7, 7], [2.0, 1.0, 3.0])
>>> lo, hi = table.span(np.array([7, 5], np.uint64))
>>> (hi - lo).tolist()
[2, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Columns = dict[str, npt.NDArray[Any]]


class SortedTable:
    """Rows sorted by ``key``, one numpy array per column; rows of one key keep their arrival order."""

    def __init__(self, dtypes: dict[str, Any]) -> None:
        self.dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}
        self.columns: Columns = {name: np.zeros(0, dtype) for name, dtype in self.dtypes.items()}

    def __len__(self) -> int:
        return int(self.columns["key"].shape[0])

    def span(self, keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """For each key, the rows ``lo:hi`` that hold it."""
        column = self.columns["key"]
        return np.searchsorted(column, keys, "left"), np.searchsorted(column, keys, "right")

    def take(self, mask: npt.NDArray[np.bool_]) -> Columns:
        """Remove the rows where ``mask`` is true and return them."""
        taken = {name: array[mask] for name, array in self.columns.items()}
        self.columns = {name: array[~mask] for name, array in self.columns.items()}
        return taken

    def insert(self, rows: Columns) -> None:
        """Add rows (after the rows already there with the same key, in the order given)."""
        if not rows["key"].shape[0]:
            return
        order = np.argsort(rows["key"], kind="stable")
        at = np.searchsorted(self.columns["key"], rows["key"][order], "right")
        self.columns = {
            name: np.insert(array, at, rows[name][order].astype(array.dtype, copy=False)) for name, array in self.columns.items()
        }

    def state(self) -> dict[str, Columns]:
        return {"columns": dict(self.columns)}

    def restore(self, saved: dict[str, Any]) -> None:
        state = saved["columns"]
        if not isinstance(state, dict) or set(state) != set(self.dtypes):
            raise ValueError(f"join table columns {sorted(state)}, not {sorted(self.dtypes)}")
        lengths = {int(getattr(array, "shape", (-1,))[0]) for array in state.values()}
        if len(lengths) != 1 or any(not isinstance(a, np.ndarray) or a.dtype != self.dtypes[n] for n, a in state.items()):
            raise ValueError("join table columns differ in length or type")
        if np.any(np.diff(state["key"].astype(np.uint64)) < 0):
            raise ValueError("join table is not sorted by key")
        self.columns = dict(state)
