"""An encoder with a task head: the model ``xl finetune`` trains and ``xl eval`` runs.

Heads (the encoder is any XLM-R-family ``AutoModel``; token states pooled as the model's card says, mean by
default):

- ``sts``: no parameters; a siamese bi-encoder (Reimers & Gurevych 2019) scores a pair by the cosine of
  the pooled embeddings of its two texts, each encoded on its own.
- ``classification``: dropout and one linear layer on the pooled embedding of the text, or of the pair
  encoded together (``<s> text1 </s></s> text2 </s>``, as XLM-R is fine-tuned on XNLI).
- ``qa``: one linear layer from each token state to a start and an end logit (Devlin et al. 2019).

A saved model is a plain transformers directory (``config.json``, ``model.safetensors``, ``tokenizer.json``)
that ``xl embed`` and any transformers code load as the encoder, plus ``xl-head.safetensors`` (the head's
weights; none for ``sts``) and the head's description under ``"head"`` in ``xl-model.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xl.errors import ModelError, UsageError
from xl.io.atomic import temp_dir_beside
from xl.io.records import sha256_file
from xl.models.encoder import (
    _quiet_transformers,
    from_pretrained,
    load_tokenizer,
    pad_batch,
    pool,
    resolve_device,
    resolve_dtype,
    stdout_to_stderr,
)
from xl.models.registry import MODEL_MANIFEST, ModelRef

if TYPE_CHECKING:
    import torch

HEAD_FILE = "xl-head.safetensors"
#: The command-line task (``--task``) → the schema of its data and the name of its head.
TASK_SCHEMA = {"sts": "sts", "classify": "classification", "qa": "qa"}


def head_of(ref: ModelRef) -> dict[str, Any] | None:
    """The head description stored with a model (None for a plain encoder)."""
    head = ref.info.get("head")
    return head if isinstance(head, dict) else None


def check_head_fits(ref: ModelRef, task: str, labels: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The model's head when it fits ``task`` (and ``labels``); None for a model without one.

    Raises ModelError when the head was trained for another task or label set: continuing with it would
    silently mean something else (use ``--init`` to start a fresh head on that encoder).
    """
    head = head_of(ref)
    if head is None:
        return None
    if head.get("task") != task:
        raise ModelError(
            f"the model's head was trained for {head.get('task')}, not {task}",
            source=str(ref.path or ref.spec),
            hint=f"start a fresh {task} head on its encoder with --init {ref.spec}",
        )
    if labels is not None and head.get("labels") is not None and list(head["labels"]) != list(labels):
        raise ModelError(
            f"the model's head predicts the labels {head['labels']}, not {list(labels)}",
            source=str(ref.path or ref.spec),
            hint=f"start a fresh head on its encoder with --init {ref.spec}",
        )
    return head


def _dropout_overrides(dropout: float | None) -> dict[str, float]:
    if dropout is None:
        return {}
    if not 0.0 <= dropout < 1.0:
        raise UsageError(f"--dropout {dropout} is not in [0, 1)")
    return {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}


def load_encoder(ref: ModelRef, *, dtype: Any = None, dropout: float | None = None) -> Any:
    """The ``AutoModel`` of a model spec without its pooler (xl pools token states itself)."""
    import torch

    _quiet_transformers()
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"use_safetensors": True, "dtype": dtype or torch.float32, **_dropout_overrides(dropout)}
    with stdout_to_stderr():
        try:
            model = from_pretrained(AutoModel.from_pretrained, ref, add_pooling_layer=False, **kwargs)
        except (TypeError, ModelError):
            model = from_pretrained(AutoModel.from_pretrained, ref, **kwargs)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def make_task_model(
    encoder: Any, task: str, *, n_labels: int = 0, pooling: str = "mean", dropout: float = 0.1
) -> torch.nn.Module:
    """Wrap ``encoder`` with a fresh head for ``task`` (``sts``, ``classification`` or ``qa``)."""
    import torch

    hidden = int(encoder.config.hidden_size)

    class TaskModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.task = task
            self.pooling = pooling
            self.dropout = torch.nn.Dropout(dropout)
            if task == "classification":
                self.head: torch.nn.Module | None = torch.nn.Linear(hidden, n_labels)
            elif task == "qa":
                self.head = torch.nn.Linear(hidden, 2)
            elif task == "sts":
                self.head = None
            else:
                raise UsageError(f"unknown task {task!r}", hint="use sts, classify or qa")

        def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """Pooled (b, hidden) float32 embeddings."""
            return pool(self.states(input_ids, attention_mask), attention_mask, self.pooling)  # type: ignore[arg-type]

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """sts: pooled embeddings; classification: (b, labels) logits; qa: (b, t, 2) logits (float32)."""
            if self.task == "sts":
                return self.embed(input_ids, attention_mask)
            assert self.head is not None
            if self.task == "classification":
                pooled = self.embed(input_ids, attention_mask)
                return self.head(self.dropout(pooled).to(self.head.weight.dtype)).float()
            states = self.states(input_ids, attention_mask)
            return self.head(states.to(self.head.weight.dtype)).float()

    return TaskModel()


def pad_id_of(encoder: Any) -> int:
    pad = getattr(encoder.config, "pad_token_id", None)
    return int(pad) if pad is not None else 1


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


class TaskRunner:
    """A task model loaded for inference on one device and dtype, with its tokenizer and prefix."""

    def __init__(self, ref: ModelRef, task: str, *, device: str = "auto", dtype: str = "auto",
                 max_length: int | None = None) -> None:  # fmt: skip
        import torch

        self.ref = ref
        self.task = task
        self.device = resolve_device(device)
        self.dtype_name = resolve_dtype(dtype, self.device)
        head = head_of(ref)
        if task in ("classification", "qa"):
            if head is None:
                raise ModelError(
                    f"the model has no {task} head",
                    source=str(ref.path or ref.spec),
                    hint=f"fine-tune one first: xl finetune --task {'classify' if task == 'classification' else task}",
                )
            check_head_fits(ref, task)
        self.head = head or {}
        self.pooling = str(self.head.get("pooling") or ref.info.get("pooling") or "mean")
        self.labels = list(self.head.get("labels") or [])
        self.pair = bool(self.head.get("pair", False))
        self.prefix = ref.prefix
        default_length = 384 if task == "qa" else 512
        self.max_length = int(max_length or self.head.get("max_length") or default_length)
        encoder = load_encoder(ref, dtype=getattr(torch, self.dtype_name))
        limit = int(getattr(encoder.config, "max_position_embeddings", 514)) - 2
        self.max_length = min(self.max_length, limit) if limit > 0 else self.max_length
        self.model = make_task_model(encoder, task, n_labels=len(self.labels), pooling=self.pooling)
        if self.model.head is not None:
            load_head(self.model, Path(ref.path or "."))
        self.model.to(self.device).eval()
        self.pad_id = pad_id_of(encoder)
        with stdout_to_stderr():
            self.tokenizer = from_pretrained(load_tokenizer, ref)


def run_batches(
    model: torch.nn.Module,
    ids: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
    *,
    tokens_per_batch: int = 16384,
    max_rows: int = 256,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Run ``model`` over token id rows in length-sorted batches of about ``tokens_per_batch`` padded
    tokens; return one float32 array per row in input order (pooled embedding, logits, or (t, 2) logits
    cut to the row's length). Halves the batch on CUDA out-of-memory."""
    import torch

    from xl.core.batching import plan_batches

    out: list[np.ndarray | None] = [None] * len(ids)
    lengths = [len(row) for row in ids]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in plan_batches(lengths, max_tokens=tokens_per_batch, max_rows=max_rows):
                _run_one(model, ids, list(batch), pad_id, device, out)
                if progress is not None:
                    progress(len(batch))
    finally:
        model.train(was_training)
    return [row if row is not None else np.zeros(0, np.float32) for row in out]


def _run_one(model: Any, ids: Sequence[Sequence[int]], batch: list[int], pad_id: int, device: Any,
             out: list[np.ndarray | None]) -> None:  # fmt: skip
    import torch

    try:
        input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, device)
        result = model(input_ids, mask).float().cpu().numpy()
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(batch) == 1:
            raise ModelError(
                "CUDA out of memory on a single input", hint="lower --max-length or use --device cpu"
            ) from None
        half = len(batch) // 2
        _run_one(model, ids, batch[:half], pad_id, device, out)
        _run_one(model, ids, batch[half:], pad_id, device, out)
        return
    for row, i in enumerate(batch):
        value = result[row]
        out[i] = value[: len(ids[i])] if value.ndim == 2 else value
