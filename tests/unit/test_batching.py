from __future__ import annotations

import random

import pytest

from xl.core.batching import plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_every_index_once_within_budgets(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 500))]
    batches = plan_batches(lengths, max_tokens=2048, max_rows=32)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 32
        assert len(batch) == 1 or len(batch) * longest <= 2048
        assert lengths[batch[0]] == longest  # longest first


def test_an_input_longer_than_the_budget_gets_its_own_batch() -> None:
    assert plan_batches([10, 5000, 10], max_tokens=100, max_rows=8) == [[1], [0, 2]]


def test_empty_and_invalid() -> None:
    assert plan_batches([], 10, 10) == []
    with pytest.raises(ValueError):
        plan_batches([1], 0, 10)
