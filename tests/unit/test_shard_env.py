"""``--shard auto``: the shard a launcher's environment gives (xl.embed.shard_from_env), launcher by launcher."""

from __future__ import annotations

import dataclasses

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


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Pretend ``count`` CUDA devices are visible."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


TORCHRUN_RANK_2 = {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4"}


@pytest.mark.parametrize(
    ("device", "env", "gpus", "resolved"),
    [
        ("auto", TORCHRUN_RANK_2, 4, "cuda:2"),  # each process of a node takes its own GPU
        ("cuda", TORCHRUN_RANK_2, 4, "cuda:2"),
        ("auto", TORCHRUN_RANK_2 | {"LOCAL_RANK": "5"}, 4, "cuda:1"),  # more processes than GPUs: shared in turn
        ("auto", TORCHRUN_RANK_2, 1, "cuda"),  # CUDA_VISIBLE_DEVICES already gave it one
        ("cuda:1", TORCHRUN_RANK_2, 4, "cuda:1"),  # an explicit index is the user's choice
        ("auto", {}, 4, "cuda"),  # no launcher
        ("auto", {"LOCAL_RANK": "2", "WORLD_SIZE": "1"}, 4, "cuda"),  # a one-process job
        ("auto", {"LOCAL_RANK": "x", "WORLD_SIZE": "4"}, 4, "cuda"),
        ("auto", TORCHRUN_RANK_2, 0, "cpu"),
        ("cpu", TORCHRUN_RANK_2, 4, "cpu"),
    ],
)
def test_torchrun_processes_each_take_their_own_gpu(
    device: str, env: dict[str, str], gpus: int, resolved: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xl.models.inference import resolve_device

    _gpus(monkeypatch, gpus)
    assert resolve_device(device, env) == resolved


def test_the_torchrun_device_is_read_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from xl.models.inference import resolve_device

    _gpus(monkeypatch, 2)
    for name, value in (TORCHRUN_RANK_2 | {"LOCAL_RANK": "1"}).items():
        monkeypatch.setenv(name, value)
    assert resolve_device("auto") == "cuda:1"
    with pytest.raises(UsageError, match="cuda:3"):
        resolve_device("cuda:3")


def test_finetune_under_torchrun_refuses_one_gpu_for_every_process() -> None:
    from xl.finetune import FinetuneOptions, check_options

    options = FinetuneOptions(task="sts", train="train.jsonl", output="run", device="cuda:1")
    check_options(options, world=1)  # one process: the user's GPU
    with pytest.raises(UsageError, match="every process on one GPU"):
        check_options(options, world=2)
    check_options(dataclasses.replace(options, device="cuda"), world=2)
