"""A sum tree over a fixed number of slots: set a weight and draw a slot proportional to weight, both O(log n).

Parents are recomputed from their children on every update (not incremented as in a Fenwick
tree), so removing a huge weight leaves no rounding residue behind: tiny weights stay drawable.
Plain Python lists: element access is far cheaper than on numpy arrays for one-at-a-time updates.
"""

from __future__ import annotations


class SumTree:
    def __init__(self, n_slots: int):
        size = 1
        while size < max(1, n_slots):
            size *= 2
        self.size = size  # leaves; slot i lives at index size + i
        self._t = [0.0] * (2 * size)

    def __len__(self) -> int:
        return self.size

    def get(self, slot: int) -> float:
        return self._t[self.size + slot]

    def set(self, slot: int, weight: float) -> None:
        t = self._t
        j = self.size + slot
        t[j] = weight
        j >>= 1
        while j:
            t[j] = t[2 * j] + t[2 * j + 1]
            j >>= 1

    def total(self) -> float:
        return self._t[1]

    def find(self, u: float) -> int:
        """The slot whose cumulative weight interval holds u (0 <= u < total); never a zero-weight slot
        while total > 0, even when rounding puts u at the very end."""
        t = self._t
        size = self.size
        j = 1
        while j < size:
            left = 2 * j
            lw = t[left]
            if (u < lw and lw > 0.0) or t[left + 1] <= 0.0:
                j = left
            else:
                u -= lw
                j = left + 1
        return j - size
