"""Token-budget batching of length-sorted inputs (as sentence-transformers' ``encode`` sorts by length).

Padding wastes compute: sorting a window of inputs by length and filling each batch up to a token budget
(rows × longest row) keeps padded tokens few while bounding memory per batch.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Split indices ``0..n-1`` into batches, longest first, each within both budgets.

    A batch holds at most ``max_rows`` rows and ``rows × longest ≤ max_tokens`` padded tokens (a single
    row longer than the budget still forms its own batch). Returns lists of indices into ``lengths``;
    every index appears exactly once.
    """
    if max_tokens < 1 or max_rows < 1:
        raise ValueError("max_tokens and max_rows must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        if current and (len(current) >= max_rows or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        if not current:
            longest = max(lengths[index], 1)
        current.append(index)
    if current:
        batches.append(current)
    return batches
