"""An encoder with a task head: the model ``xl finetune`` trains and ``xl eval`` runs.

The encoder is any XLM-R-family ``AutoModel``; token states are pooled as the model's card says (mean by
default). What the head is, what the forward pass returns and what the loss is belong to the task object
(:mod:`xl.tasks.objects`); this module builds, saves, loads and runs the model on the one inference stack
(:mod:`xl.models.inference`).

A saved model is a plain transformers directory (``config.json``, ``model.safetensors``, ``tokenizer.json``)
that ``xl embed`` and any transformers code load as the encoder, plus ``xl-head.safetensors`` (the head's
weights; none for ``sts``), the head's description under ``"head"`` in ``xl-model.json``, and
sentence-transformers' module files (:mod:`xl.models.st_format`), so that ``SentenceTransformer(DIR)`` pools,
normalises, prefixes and truncates as xl does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xl.errors import ModelError
from xl.io.atomic import temp_dir_beside
from xl.io.records import sha256_file
from xl.models.inference import (
    from_pretrained,
    head_of,
    load_config,
    load_encoder,
    load_tokenizer,
    model_pooling,
    pad_id_of,
    pool,
    resolve_device,
    resolve_dtype,
    resolve_max_length,
    run_batches,
    stdout_to_stderr,
)
from xl.models.registry import MODEL_MANIFEST, ModelRef
from xl.models.st_format import write_st_files
from xl.progress import Progress, counter, no_progress

if TYPE_CHECKING:
    import torch

    from xl.tasks.data import TaskData
    from xl.tasks.objects import TaskObject

HEAD_FILE = "xl-head.safetensors"


def check_head_fits(ref: ModelRef, task: TaskObject, labels: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The model's head when it fits ``task`` (and ``labels``); None for a model without one.

    Raises ModelError when the head was trained for another task or label set: continuing with it would
    silently mean something else (use ``--init`` to start a fresh head on that encoder).
    """
    head = head_of(ref)  # an old name of the task is mapped when the model's description is read
    if head is None:
        return None
    trained = head.get("task")
    if trained != task.name:
        raise ModelError(
            f"the model's head was trained for {trained}, not {task.name}",
            source=str(ref.path or ref.spec),
            hint=f"start a fresh {task.name} head on its encoder with --init {ref.spec}",
        )
    if labels is not None and head.get("labels") is not None and list(head["labels"]) != list(labels):
        raise ModelError(
            f"the model's head predicts the labels {head['labels']}, not {list(labels)}",
            source=str(ref.path or ref.spec),
            hint=f"start a fresh head on its encoder with --init {ref.spec}",
        )
    return head


def make_task_model(encoder: Any, task: TaskObject, *, n_labels: int = 0, pooling: str = "mean",
                    dropout: float = 0.1, normalize: bool = False) -> torch.nn.Module:  # fmt: skip
    """Wrap ``encoder`` with a fresh head for ``task`` (the head and the forward pass are the task's).
    ``normalize``: L2-normalise the pooled embeddings (a sentence-transformers model with a Normalize module)."""
    import torch

    class TaskModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.task = task
            self.pooling = pooling
            self.normalize = normalize
            self.dropout = torch.nn.Dropout(dropout)
            self.head = task.build_head(int(encoder.config.hidden_size), n_labels)

        def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """Pooled (b, hidden) float32 embeddings (unit length when ``normalize``)."""
            pooled = pool(self.states(input_ids, attention_mask), attention_mask, self.pooling)  # type: ignore[arg-type]
            return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.task.outputs(self, input_ids, attention_mask)

    return TaskModel()


# --------------------------------------------------------------------------------------------- saving


def save_task_model(
    model: torch.nn.Module, tokenizer: Any, directory: Path, info: dict[str, Any], head: dict[str, Any]
) -> None:
    """Write ``model`` as a transformers directory plus head into ``directory``, replacing it atomically.

    The new directory is built beside the old one and swapped in, so a crash leaves the old model or the
    new one, never a mixture.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    staging = temp_dir_beside(directory)
    try:
        encoder = model.encoder  # type: ignore[attr-defined]
        with stdout_to_stderr():
            encoder.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save(str(staging / "tokenizer.json"))
        if model.head is not None:  # type: ignore[attr-defined]
            state = {k: v.detach().float().cpu().contiguous() for k, v in model.head.state_dict().items()}  # type: ignore[attr-defined]
            save_file(state, str(staging / HEAD_FILE))
        full_info = {**info, "head": head, "weights_sha256": sha256_file(staging / "model.safetensors")}
        (staging / MODEL_MANIFEST).write_text(json.dumps(full_info, indent=2, ensure_ascii=False) + "\n")
        # sentence-transformers' module files: SentenceTransformer(DIR) then embeds as `xl embed --model DIR` does.
        write_st_files(staging, hidden=int(encoder.config.hidden_size), pooling=str(head.get("pooling", "mean")),
                       normalize=bool(head.get("normalize", False)), max_length=int(head["max_length"]),
                       prefix=str(info.get("prefix") or ""))  # fmt: skip
        umask = os.umask(0)
        os.umask(umask)
        for path in [staging, *staging.iterdir()]:  # mkdtemp makes it private; give it the usual permissions
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        old = None
        if directory.exists():
            old = temp_dir_beside(directory)
            directory.rename(old)
        staging.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_head(model: torch.nn.Module, directory: Path) -> None:
    """Load ``xl-head.safetensors`` into the head of ``model``; ModelError when it does not fit."""
    from safetensors.torch import load_file

    path = Path(directory) / HEAD_FILE
    if not path.is_file():
        raise ModelError("the model has a head description but no xl-head.safetensors", source=str(directory),
                         hint="the directory is incomplete; rerun the xl finetune that made it")  # fmt: skip
    state = load_file(str(path))
    try:
        model.head.load_state_dict(state)  # type: ignore[union-attr]
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"the head does not fit the model: {first}", source=str(path)) from None


# --------------------------------------------------------------------------------------------- inference


class TaskInference:
    """A task model ready to predict, on the one inference stack: ``xl eval`` loads one (:meth:`load`), and
    ``xl finetune`` wraps the model it trains (:meth:`__init__`) to score its dev set — one computation, so the
    dev score of a kept model is what ``xl eval`` reports on the same data, device and dtype.

    ``autocast``: a torch dtype to run under (finetune's bf16/fp16 autocast of float32 weights), or None.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, task: TaskObject, *, device: str, dtype_name: str,
                 pad_id: int, max_length: int, prefix: str, head: Mapping[str, Any] | None = None,
                 autocast: Any = None, layers: int | None = None) -> None:  # fmt: skip
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.device = device
        self.dtype_name = dtype_name
        self.pad_id = pad_id
        self.max_length = max_length
        self.prefix = prefix
        self.head = dict(head or {})
        self.labels = list(self.head.get("labels") or [])
        self.pair = bool(self.head.get("pair", False))
        self.doc_stride = int(self.head.get("doc_stride", 128))
        self.autocast = autocast
        self.layers = layers
        #: linear layers packed for oneDNN (:func:`xl.models.packed.pack_for_inference`; 0: none)
        self.packed_linears = 0
        self._report: tuple[Progress, str, dict[str, Any]] = (no_progress, "rows", {})

    @classmethod
    def load(cls, ref: ModelRef, task: TaskObject, *, device: str = "auto", dtype: str = "auto",
             max_length: int | None = None) -> TaskInference:  # fmt: skip
        """Load ``ref`` for ``task``: a task with a head needs a model trained for it (``xl finetune``); sts runs
        any encoder (a head, if any, is not used). ``max_length``: :func:`xl.models.inference.resolve_max_length`."""
        import torch

        head = head_of(ref)
        if task.has_head:
            if head is None:
                raise ModelError(f"the model has no {task.name} head", source=str(ref.path or ref.spec),
                                 hint=f"fine-tune one first: xl finetune --task {task.name}")  # fmt: skip
            check_head_fits(ref, task)
        head = head or {}
        device_name = resolve_device(device)
        dtype_name = resolve_dtype(dtype, device_name)
        config = load_config(ref)
        length = resolve_max_length(max_length, ref, task.default_max_length, config)
        pooling, normalize = model_pooling(ref)
        encoder = load_encoder(ref, dtype=getattr(torch, dtype_name))
        model = make_task_model(encoder, task, n_labels=len(head.get("labels") or []), pooling=pooling,
                                normalize=normalize)  # fmt: skip
        if task.has_head:
            load_head(model, Path(ref.path or "."))
        model.to(device_name).eval()
        # bf16 on the CPU: the encoder's linear layers packed for oneDNN, as for xl embed (a loaded model is
        # only run; finetune's scorer wraps the model it trains and is never packed)
        from xl.models.packed import pack_for_inference

        packed = pack_for_inference(encoder, device_name)
        with stdout_to_stderr():
            tokenizer = from_pretrained(load_tokenizer, ref)
        inference = cls(model, tokenizer, task, device=device_name, dtype_name=dtype_name, pad_id=pad_id_of(config),
                        max_length=length, prefix=ref.prefix, head={**head, "pooling": pooling},
                        layers=int(config.num_hidden_layers))  # fmt: skip
        inference.packed_linears = packed
        return inference

    @property
    def pooling(self) -> str:
        return str(getattr(self.model, "pooling", "mean"))

    @property
    def normalize(self) -> bool:
        return bool(getattr(self.model, "normalize", False))

    def tokenize(self, records: Sequence[Mapping[str, Any]], schema: str) -> TaskData:
        """The records as the model's inputs (no training targets)."""
        return self.task.tokenize(records, self.tokenizer, schema=schema, prefix=self.prefix,
                                  max_length=self.max_length, doc_stride=self.doc_stride, labels=self.labels,
                                  with_labels=False)  # fmt: skip

    def report_rows(self, progress: Progress, stage: str, **fields: Any) -> None:
        """From now on, report each :meth:`run` call's rows to ``progress`` as ``stage`` (rows done of the call's
        rows, with ``fields``; a row remembered by :meth:`remember_outputs` counts as done at once)."""
        self._report = (progress, stage, fields)

    def remember_outputs(self) -> None:
        """From now on, reuse the output of a token row that an earlier :meth:`run` call computed (``xl eval
        retrieval``: FLORES-200's English side is the same sentences for every language). Rows new to a call are
        computed together, as without it, so a first set's outputs are exactly what they would be alone."""
        self._memo = {}

    def run(self, rows: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The model's outputs on token id rows, one float32 array per row (:func:`run_batches`), in eval mode."""
        memo: dict[tuple[int, ...], np.ndarray] | None = getattr(self, "_memo", None)
        progress, stage, fields = self._report
        if memo is None:
            return self._run(rows, counter(progress, stage, len(rows), **fields))
        keys = [tuple(row) for row in rows]
        new = [i for i, key in enumerate(keys) if key not in memo]
        outputs: list[np.ndarray | None] = [memo.get(key) for key in keys]
        advance = counter(progress, stage, len(rows), len(rows) - len(new), **fields)
        for i, output in zip(new, self._run([rows[i] for i in new], advance), strict=True):
            outputs[i] = output
        for i in new:
            memo[keys[i]] = outputs[i]  # type: ignore[assignment]
        return outputs  # type: ignore[return-value]

    def _run(self, rows: Sequence[Sequence[int]], advance: Callable[[int], None]) -> list[np.ndarray]:
        import torch

        context = (torch.autocast(str(self.device).split(":")[0], dtype=self.autocast)
                   if self.autocast is not None else contextlib.nullcontext())  # fmt: skip
        was_training = self.model.training
        self.model.eval()
        try:
            with context:
                return run_batches(self.model, rows, self.pad_id, self.device, progress=advance)
        finally:
            self.model.train(was_training)

    def predict(self, data: TaskData) -> tuple[list[Any], dict[str, np.ndarray]]:
        return self.task.predict(self.run, data, self.labels)
