"""``--shard auto``: the shard a launcher's environment gives (xl.embed.shard_from_env), launcher by launcher."""

from __future__ import annotations

import pytest

from xl.embed import parse_shard, shard_from_env, shard_range
from xl.errors import UsageError


def _slurm(task: int, low: int, high: int, **extra: str) -> dict[str, str]:
    env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high)}
    return env | extra


@pytest.mark.parametrize(
    ("env", "shard"),
    [
        (_slurm(0, 0, 3), (1, 4)),
        (_slurm(3, 0, 3), (4, 4)),
        (_slurm(1, 1, 8), (1, 8)),  # sbatch --array=1-8
        (_slurm(7, 5, 12), (3, 8)),  # an array that starts at 5
        (_slurm(20, 0, 30, SLURM_ARRAY_TASK_STEP="10"), (3, 4)),  # --array=0-30:10
        (_slurm(2, 1, 4, SLURM_ARRAY_TASK_COUNT="4"), (2, 4)),
        ({"RANK": "0", "WORLD_SIZE": "2"}, (1, 2)),
        ({"RANK": "5", "WORLD_SIZE": "6", "LOCAL_RANK": "1"}, (6, 6)),
        (_slurm(1, 0, 1) | {"RANK": "1", "WORLD_SIZE": "2"}, (2, 2)),  # both set and agreeing
    ],
)
def test_the_launcher_gives_k_of_n(env: dict[str, str], shard: tuple[int, int]) -> None:
    assert shard_from_env(env)[0] == shard
    assert parse_shard("auto", env) == shard


def test_every_task_of_an_array_together_covers_each_row_once() -> None:
    """The shards of all tasks of an array partition the rows, whatever the array's first index and step."""
    for low, high, step in [(0, 6, 1), (1, 7, 1), (5, 12, 1), (0, 30, 10), (3, 3, 1)]:
        rows: list[int] = []
        for task in range(low, high + 1, step):
            k, n = shard_from_env(_slurm(task, low, high, SLURM_ARRAY_TASK_STEP=str(step)))[0]
            start, stop = shard_range(101, k, n)
            rows.extend(range(start, stop))
        assert rows == list(range(101)), (low, high, step)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "no launcher"),
        ({"PATH": "/bin", "SLURM_JOB_ID": "9"}, "no launcher"),  # a Slurm job that is not an array
        ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX is not"),
        (_slurm(9, 0, 3), "not in 0-3"),
        (_slurm(5, 0, 30, SLURM_ARRAY_TASK_STEP="10"), "not in 0-30:10"),
        (_slurm(4, 1, 9, SLURM_ARRAY_TASK_COUNT="3"), "3 tasks, not the 9"),  # --array=1,4,9
        (_slurm(0, 0, "x"), "is not an integer"),  # type: ignore[arg-type]
        ({"RANK": "1"}, "RANK and WORLD_SIZE must both be set"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "not in 0..WORLD_SIZE-1"),
        (_slurm(0, 0, 1) | {"RANK": "1", "WORLD_SIZE": "2"}, "disagree (Slurm array says 1/2; torchrun says 2/2)"),
    ],
)
def test_a_missing_or_inconsistent_environment_is_refused(env: dict[str, str], needle: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_shard("auto", env)
    assert needle in str(raised.value), str(raised.value)
    if "no launcher" in needle:
        assert "SLURM_ARRAY_TASK_ID" in (raised.value.hint or "") and "RANK" in (raised.value.hint or "")


def test_an_explicit_shard_does_not_read_the_environment() -> None:
    assert parse_shard("2/5", {"RANK": "0", "WORLD_SIZE": "2"}) == (2, 5)
