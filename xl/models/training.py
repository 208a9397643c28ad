"""The training loop of ``xl finetune`` (the run directory, its inputs and its manifest are ``xl.finetune``'s).

- **Data order**: epoch ``e`` visits the training examples in ``numpy.random.default_rng([seed, e])`` order;
  with ``group_by_length`` (the default) that order is cut into mega-batches of 50 batches whose examples
  are sorted by length before being cut into batches, and the batches are shuffled again (as Hugging Face's
  ``group_by_length``): little padding, still random batches.
- **Batches**: ``batch_size`` examples per micro-batch, ``grad_accum`` micro-batches per optimizer step.
  Under ``torchrun`` (DDP) each of the N processes takes a contiguous 1/N of every micro-batch and the
  losses are scaled so that the gradient equals the single-process one (sum over the batch / batch size).
- **Optimisation**: AdamW (weight decay on matrices only), linear warm-up then linear decay, gradient
  clipping, bf16/fp16 autocast with float32 master weights (fp16 adds a gradient scaler).
- **Head and loss** are the task object's (:mod:`xl.tasks.objects`); a loss over the whole batch (align's
  in-batch negatives) gathers the processes' shares with :func:`gather_rows`; the dev set is scored by
  :class:`xl.models.task_model.TaskInference` on the model being trained, the computation ``xl eval`` runs.
- **Checkpoints** (model, optimizer, scheduler, RNG) are built in a staging folder that the run directory
  publishes (:class:`xl.finetune.RunDirectory`); ``resume`` continues from the latest to the same result as an
  uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xl.errors import ModelError
from xl.models.registry import ModelRef
from xl.progress import Progress, no_progress

if TYPE_CHECKING:
    import torch

    from xl.finetune import FinetuneOptions, RunDirectory
    from xl.tasks.data import TaskData
    from xl.tasks.objects import TaskObject

Log = Callable[[str], None]
MEGA_BATCH = 50


@dataclass
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """``value`` of the main process, in every process."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def global_sum(self, value: torch.Tensor) -> float:
        """The sum of a scalar over all processes (for the log: the loss of the whole batch)."""
        if self.world == 1:
            return float(value)
        import torch.distributed as dist

        total = value.detach().float().clone()
        dist.all_reduce(total)
        return float(total)


def gather_rows(values: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The rows of every process of a torchrun job in rank order (the order of the global batch, which
    ``np.array_split`` cut into contiguous shares), and the offset of this process's rows: the negatives of an
    in-batch loss are then the global batch, as one process has them (LaBSE's cross-accelerator negatives, Feng et
    al. 2022). Without a process group (one process, the Fisher), the arguments and offset 0.

    ``values`` (n_r, d) float: gathered with the autograd-aware ``torch.distributed.nn.functional.all_gather``,
    so the gradient of every process's loss reaches the process that computed a row; ``keys`` (n_r, k) int64:
    gathered without a gradient. Shares may differ in size (a short last batch; none at all), so rows are padded
    to the largest share for the collective and cut back after it."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values, keys, 0
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=values.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([values.shape[0]], dtype=torch.long, device=values.device))
    counts = [int(size) for size in sizes]
    most = max(counts)
    padded = torch.cat([values, values.new_zeros((most - values.shape[0], *values.shape[1:]))])
    padded_keys = torch.cat([keys, keys.new_full((most - keys.shape[0], *keys.shape[1:]), -1)])
    with warnings.catch_warnings():  # deprecated in favour of a private module; the public one is what we use
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*all_gather is deprecated")
        gathered = all_gather(padded)
    key_parts = [torch.empty_like(padded_keys) for _ in range(world)]
    dist.all_gather(key_parts, padded_keys)
    return (torch.cat([part[:count] for part, count in zip(gathered, counts, strict=True)]),
            torch.cat([part[:count] for part, count in zip(key_parts, counts, strict=True)]),
            sum(counts[: dist.get_rank()]))  # fmt: skip


@dataclass
class RunState:
    """What a checkpoint stores besides tensors: where the run is and what it found so far."""

    step: int = 0
    micro: int = 0  # micro-batches done in total
    examples: int = 0
    best_step: int | None = None
    best_metric: float | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Prepared:
    """What the loop trains on: the task, its tokenized splits, and the model it starts from."""

    task: TaskObject
    schema: str
    train: TaskData
    dev: TaskData | None
    labels: list[Any]
    base_ref: ModelRef
    head: Mapping[str, Any] | None  # the head continued (--model of an xl finetune output), None: a fresh one
    tokenizer: Any
    max_length: int


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[np.ndarray]:
    """The micro-batches (index arrays) of one epoch, in order (see the module docstring)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[np.ndarray] = []
    mega = batch_size * MEGA_BATCH
    length_of = np.asarray(lengths)
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-length_of[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _untie(weights: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory: store a copy of each repeat."""
    seen: set[int] = set()
    out = {}
    for name, tensor in weights.items():
        pointer = tensor.data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


class Trainer:
    """The loop of one run: device, model, optimizer, steps, dev scoring and checkpoints."""

    def __init__(self, options: FinetuneOptions, dist: Dist, directory: RunDirectory, log: Log,
                 progress: Progress = no_progress) -> None:  # fmt: skip
        self.options = options
        self.dist = dist
        self.directory = directory
        self.log = log
        self.progress = progress

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        """Join the torchrun job (if any) and resolve the device and dtype."""
        import torch

        from xl.models.inference import resolve_device, resolve_dtype

        if self.dist.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if torch.cuda.is_available() and self.options.device != "cpu"
                                        else "gloo")  # fmt: skip
        device = resolve_device(self.options.device)  # under torchrun: this process's own GPU
        if self.dist.world > 1 and device.startswith("cuda:"):
            torch.cuda.set_device(device)  # NCCL's collectives run on the current device
        self.device = device
        self.dtype_name = resolve_dtype(self.options.dtype, device)
        self.autocast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.dtype_name)

    def build(self, prepared: Prepared, info: dict[str, Any]) -> None:
        """The model to train (the base encoder with the continued or a fresh head), and its description."""
        import torch

        from xl.models.inference import load_encoder, model_pooling, pad_id_of
        from xl.models.task_model import TaskInference, load_head, make_task_model

        o, task, ref = self.options, prepared.task, prepared.base_ref
        self.prepared = prepared
        pooling, normalize = model_pooling(ref)  # a continued head's, a sentence-transformers model's, or mean
        torch.manual_seed(o.seed)
        encoder = load_encoder(ref, dropout=o.dropout)
        model = make_task_model(encoder, task, n_labels=len(prepared.labels), pooling=pooling, normalize=normalize)
        if prepared.head is not None and model.head is not None:
            load_head(model, ref.path or Path("."))
        if o.freeze_embeddings:
            encoder.get_input_embeddings().weight.requires_grad_(False)
        self.model = model.to(self.device)
        self.tokenizer = prepared.tokenizer
        self.head_info = {"task": task.name, "pooling": pooling, "max_length": prepared.max_length,
                          "labels": prepared.labels or None, "pair": task.is_pair(prepared.schema),
                          "doc_stride": o.doc_stride, "loss": task.loss_name(o.loss)}  # fmt: skip
        if normalize:  # only then: the heads of runs without it stay as they were
            self.head_info["normalize"] = True
        self.info = {**info, "pooling": pooling}
        self.pad_id = pad_id_of(encoder.config)
        # The dev set is scored on the one inference stack, as `xl eval` scores the kept model.
        self.scorer = TaskInference(self.model, self.tokenizer, task, device=self.device, dtype_name=self.dtype_name,
                                    pad_id=self.pad_id, max_length=prepared.max_length, prefix=ref.prefix,
                                    head=self.head_info, autocast=self.autocast_dtype)  # fmt: skip

    def _optimizer(self, total_steps: int) -> tuple[Any, Any]:
        """AdamW (weight decay on matrices only) and the linear warm-up and decay schedule."""
        import torch

        o = self.options
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": o.weight_decay},
                  {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]  # fmt: skip
        try:  # the fused kernel (one pass per tensor, CPU and CUDA) is several times faster than the default loop
            optimizer = torch.optim.AdamW(groups, lr=o.lr, fused=True)
        except (RuntimeError, TypeError):
            optimizer = torch.optim.AdamW(groups, lr=o.lr)
        warmup_steps = int(o.warmup * total_steps)

        def schedule(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    # ------------------------------------------------------------------ the loop

    def train(self, resume_from: Mapping[str, Any] | None) -> RunState:
        """Train to the last step (from the checkpoint ``resume_from`` names, if any); the kept model is in
        ``DIR/best`` (a dev set) or still in memory (none)."""
        import torch

        o, train, dev = self.options, self.prepared.train, self.prepared.dev
        n_micro = math.ceil(len(train.inputs) / o.batch_size)
        steps_per_epoch = math.ceil(n_micro / o.grad_accum)
        total_steps = o.max_steps or max(1, math.ceil(steps_per_epoch * o.epochs))
        optimizer, scheduler = self._optimizer(total_steps)
        self.scaler = (torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16
                       and self.device.startswith("cuda") else None)  # fmt: skip
        state = RunState()
        final_saved = bool(resume_from and resume_from.get("final"))
        if resume_from and resume_from.get("step"):
            folder = self.directory.checkpoint(int(resume_from["step"]))
            state = self._load_checkpoint(folder, optimizer, scheduler, final=final_saved)
            self.log(f"resuming at step {state.step} of {total_steps}"
                     + ("; training is done, finishing the save" if final_saved else ""))  # fmt: skip
        self._log_start(total_steps)
        self.directory.truncate_log(state)
        if dev is not None and state.step == 0:
            self._evaluate(state)  # step 0, the starting model: the score to beat
        started = time.perf_counter() - state.seconds
        eval_steps = o.eval_steps or steps_per_epoch
        epoch = state.micro // n_micro
        self.loss_sum, self.loss_count = 0.0, 0
        # the loss the display shows: the mean of the last log_every steps (a step's alone is too noisy to read)
        recent: deque[float] = deque(maxlen=o.log_every)
        fault_step = int(os.environ.get("XL_FAULT_AFTER_STEP", "0") or 0)  # tests: die as if killed
        model = self._parallel()
        model.train()
        while state.step < total_steps:
            batches = epoch_batches(train.lengths, o.batch_size, o.seed, epoch, o.group_by_length)
            index_in_epoch = state.micro - epoch * n_micro
            while index_in_epoch < len(batches) and state.step < total_steps:
                group = batches[index_in_epoch : index_in_epoch + o.grad_accum]
                recent.append(self._step(model, group, state, optimizer, scheduler))
                index_in_epoch += len(group)
                state.micro += len(group)
                state.step += 1
                state.seconds = time.perf_counter() - started
                self.progress("train", state.step, total_steps, loss=sum(recent) / len(recent),
                              examples_per_s=state.examples / max(state.seconds, 1e-9))  # fmt: skip
                if state.step % o.log_every == 0 or state.step == total_steps:
                    self._log_step(state, total_steps, n_micro, scheduler)
                if dev is not None and state.step % eval_steps == 0 and state.step < total_steps:
                    self._evaluate(state)
                if o.save_steps and state.step % o.save_steps == 0 and state.step < total_steps:
                    self._save_checkpoint(state, optimizer, scheduler)
                if fault_step and state.step == fault_step:
                    os._exit(137)
            if index_in_epoch >= len(batches):
                epoch += 1
        # Training is done: the final weights and state go to disk before the (larger) save of the kept model,
        # so a save that fails leaves a run that --resume finishes without training again.
        if not final_saved:
            self._save_checkpoint(state, optimizer, scheduler, final=True)
        if dev is not None:
            self._evaluate(state)
        return state

    def _parallel(self) -> torch.nn.Module:
        if self.dist.world == 1:
            return self.model
        import torch
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(self.model, device_ids=[torch.device(self.device)]
                                       if self.device.startswith("cuda") else None)  # fmt: skip

    def _log_start(self, total_steps: int) -> None:
        o, train = self.options, self.prepared.train
        self.log(f"{o.task}: {len(train.records)} training examples{self.prepared.task.inputs_note(train)}"
                 f", {total_steps} steps of {o.batch_size * o.grad_accum}, {self.device} {self.dtype_name}"
                 + (f", {self.dist.world} processes" if self.dist.world > 1 else ""))  # fmt: skip
        if train.truncated:
            self.log(f"{train.truncated} training inputs truncated to {self.prepared.max_length} tokens")

    def _step(self, model: torch.nn.Module, group: list[np.ndarray], state: RunState, optimizer: Any,
              scheduler: Any) -> float:  # fmt: skip
        """One optimizer step over the micro-batches of ``group``; its loss (the mean over its micro-batches of
        the global batch's mean loss)."""
        import torch

        o, task, train, scaler = self.options, self.prepared.task, self.prepared.train, self.scaler
        loss_name = self.head_info["loss"]
        step_loss = 0.0
        for batch in group:
            share = np.array_split(batch, self.dist.world)[self.dist.rank]
            with torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):  # fmt: skip
                if len(share) == 0 and not task.gathers:  # a gathering loss needs every process, rows or none
                    loss_total = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
                else:
                    loss_total = task.loss(model, train, share, self.pad_id, self.device, loss_name)
            # Sum over this process's share / global batch size x processes (DDP averages), / accumulation:
            # the gradient is the mean over the global batch, whatever the number of processes.
            loss = loss_total * (self.dist.world / (len(batch) * len(group)))
            (scaler.scale(loss) if scaler is not None else loss).backward()
            batch_loss = self.dist.global_sum(loss_total.detach()) / len(batch)
            self.loss_sum += batch_loss
            self.loss_count += 1
            step_loss += batch_loss / len(group)
            state.examples += len(batch)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if o.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return step_loss

    def _log_step(self, state: RunState, total_steps: int, n_micro: int, scheduler: Any) -> None:
        if self.dist.main:
            row = {"step": state.step, "epoch": round(state.micro / n_micro, 4),
                   "loss": self.loss_sum / max(1, self.loss_count), "lr": scheduler.get_last_lr()[0],
                   "examples": state.examples, "seconds": round(state.seconds, 3)}  # fmt: skip
            self.directory.append_log(row)
            self.log(f"step {state.step}/{total_steps}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
                     f"{state.examples / max(state.seconds, 1e-9):.1f} ex/s")  # fmt: skip
        self.loss_sum, self.loss_count = 0.0, 0

    # ------------------------------------------------------------------ evaluation and saving

    def _evaluate(self, state: RunState) -> None:
        """Score the dev set (the task's selection metric) and keep the model in ``DIR/best`` when it is the best."""
        if self.dist.main:
            assert self.prepared.dev is not None
            self.scorer.report_rows(self.progress, "dev", step=state.step)
            metrics = self.prepared.task.dev_score(self.scorer.run, self.prepared.dev, self.prepared.labels)
            metric = metrics["selection_metric"]
            row = {"step": state.step, "dev": metrics}
            state.evaluations.append(row)
            self.directory.append_log(row)
            improved = state.best_metric is None or (metric is not None and metric > state.best_metric)
            where = "step 0 (the starting model)" if state.step == 0 else f"step {state.step}"
            shown = "n/a" if metric is None else f"{metric:.2f}"
            self.log(f"dev at {where}: {metrics['selection_name']} {shown}" + ("  (best so far)" if improved else ""))
            if improved:
                state.best_metric, state.best_step = metric, state.step
                best = self.directory.best
                with self.directory.writing(best, f"the model of step {state.step} (the best so far on the dev set)"):
                    self.save_model(best)
        self.dist.barrier()

    def save_model(self, directory: Path) -> None:
        from xl.models import task_model

        task_model.save_task_model(self.model, self.tokenizer, directory, self.info, self.head_info)

    def _save_checkpoint(self, state: RunState, optimizer: Any, scheduler: Any, *, final: bool = False) -> None:
        """Write ``checkpoints/step-N`` (published by the run directory). A ``final`` one (training done) holds the
        weights and state only, and replaces all earlier ones."""
        import torch
        from safetensors.torch import save_file

        if self.dist.main:
            with self.directory.new_checkpoint(state.step, final=final) as staging:
                weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
                save_file(_untie(weights), str(staging / "model.safetensors"))
                if os.environ.get("XL_FAULT_IN_CHECKPOINT"):  # tests: die half-way through writing a checkpoint
                    os._exit(137)
                if not final:
                    with (staging / "optimizer.pt").open("wb") as handle:  # a file object: errors keep their errno
                        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
                        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": torch.get_rng_state(), "cuda_rng": cuda_rng}, handle)  # fmt: skip
                (staging / "state.json").write_text(json.dumps(asdict(state)))
        self.dist.barrier()

    def _load_checkpoint(self, folder: Path, optimizer: Any, scheduler: Any, *, final: bool = False) -> RunState:
        import torch
        from safetensors.torch import load_file

        needed = ("model.safetensors", "state.json") + (() if final else ("optimizer.pt",))
        if not all((folder / name).is_file() for name in needed):
            raise ModelError("the latest checkpoint is incomplete", source=str(folder),
                             hint="rerun with --overwrite to start again")  # fmt: skip
        weights = load_file(str(folder / "model.safetensors"), device="cpu")
        try:
            self.model.load_state_dict(weights)
        except RuntimeError:
            raise ModelError("the checkpoint does not fit the model", source=str(folder)) from None
        if not final:  # a final checkpoint: no step is left, so no optimizer, schedule or RNG is needed
            saved = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"])
            if saved.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return RunState(**json.loads((folder / "state.json").read_text()))
