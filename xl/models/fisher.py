"""TaskEmb (Vu et al. 2020): a task embedding from the diagonal empirical Fisher information of a model fine-tuned
on that task.

For a sample of the task's training examples, the loss of each example *with its gold label* (the empirical
Fisher) is differentiated with respect to the encoder's parameters (not the task head's), one example at a
time; the Fisher diagonal is the mean of the squared gradients. Like Vu et al., who build task embeddings from
the Fisher of BERT's components rather than from one vector of all 100 M+ parameters, the diagonal is pooled
per component: each parameter matrix of the transformer layers becomes one value per output unit (the mean over
its inputs), each vector (bias, LayerNorm) is kept as it is, and the word embedding matrix (one row per
vocabulary piece, almost all untouched by a sample) is left out. The result is one non-negative vector per task
(about 75,000 values for the default model), in a fixed parameter order, so embeddings of models of one
architecture line up; ``xl tasksim similarity --method task2vec`` compares them (Achille et al. 2019).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xl.errors import InputError, ModelError, UsageError
from xl.io.atomic import absolute
from xl.models.registry import ModelRef

SKIPPED = ("word_embeddings",)


def _run_manifest(ref: ModelRef) -> dict[str, Any]:
    path = (ref.path or Path(".")) / "xl-finetune.json"
    if ref.path is None or not path.is_file():
        raise ModelError("TaskEmb needs a model fine-tuned by `xl finetune` (its xl-finetune.json names the task "
                         "and training data)", source=str(ref.path or ref.spec))  # fmt: skip
    manifest = json.loads(path.read_text())
    return manifest if isinstance(manifest, dict) else {}


def fisher_source(ref: ModelRef, data: str | None) -> tuple[str, str]:
    """(task, data path) of a fine-tuned run's Fisher: checks, before any model is loaded, that the run is a
    finished xl run and that its data (``data``, else the run's training file) is there."""
    run = _run_manifest(ref)
    task = str(run.get("task") or "")
    if task not in ("sts", "classify", "qa"):
        raise ModelError("the run's task is unknown", source=str(ref.path))
    path = data or str(run.get("options", {}).get("train") or "")
    if not path or (path != "-" and not Path(path).exists()):
        raise InputError("the task's training data is not there", source=path or str(ref.path),
                         hint="pass the data: NAME=RUN_DIR@DATA")  # fmt: skip
    return task, path


def task_fisher(
    ref: ModelRef,
    *,
    data: str | None = None,
    sample: int = 200,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
    include_head: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The pooled Fisher diagonal ``(k,)`` float32 of a fine-tuned model on ``sample`` examples of ``data``
    (default: the run's own training file), and a description (task, data, examples, parameter layout).

    Only the encoder's parameters count, as in Vu et al. (BERT's): task heads differ in size (2 or 3 labels, a
    span head, none for STS), and a vector of the shared encoder is what lines up across tasks.
    ``include_head`` appends the head's parameters (last, in ``layout``), for checks against closed forms."""
    import torch

    from xl.models.encoder import from_pretrained, load_tokenizer, resolve_device
    from xl.models.finetune import parse_task_input, read_once, task_loss, tokenize_task
    from xl.models.task_model import TASK_SCHEMA, head_of, load_encoder, load_head, make_task_model, pad_id_of
    from xl.tasks import seeded_subset

    task, path = fisher_source(ref, data)
    head = head_of(ref) or {}
    if sample < 1:
        raise UsageError("--sample must be at least 1")
    data_bytes, _ = read_once(path, "task")  # once: the data may be a FIFO or stdin
    labels = list(head.get("labels") or [])
    schema, all_records = parse_task_input(data_bytes, path if path != "-" else "<stdin>", task,
                                           labels=labels or None)  # fmt: skip
    if not all_records:
        raise InputError("no records in the task's data", source=path)
    records = seeded_subset(all_records, sample, seed)
    tokenizer = from_pretrained(load_tokenizer, ref)
    max_length = int(head.get("max_length") or (384 if task == "qa" else 128))
    examples = tokenize_task(task, schema, records, tokenizer, prefix=ref.prefix, max_length=max_length,
                             doc_stride=int(head.get("doc_stride", 128)), labels=labels)  # fmt: skip
    if task == "qa":  # one window per question: the first that holds the answer (else its first window)
        assert examples.features is not None
        first: dict[int, int] = {}
        for f, example in enumerate(examples.features.example):
            if example not in first or (examples.targets[first[example]] == (0, 0) and examples.targets[f] != (0, 0)):
                first[example] = f
        chosen = sorted(first.values())
    else:
        chosen = list(range(len(examples.inputs)))
    device_name = resolve_device(device)
    torch.manual_seed(seed)
    encoder = load_encoder(ref, dropout=0.0)
    model = make_task_model(
        encoder, TASK_SCHEMA[task], n_labels=len(labels), pooling=str(head.get("pooling") or "mean")
    )
    if model.head is not None:
        load_head(model, ref.path or Path("."))
    model.to(device_name).eval()  # dropout off: the Fisher of the model as it predicts
    params = [(name, p) for name, p in model.named_parameters()
              if not any(s in name for s in SKIPPED) and (include_head or not name.startswith("head."))]  # fmt: skip
    totals = [torch.zeros_like(p, dtype=torch.float32) for _, p in params]
    pad_id = pad_id_of(encoder)
    for index in chosen:
        model.zero_grad(set_to_none=True)
        loss = task_loss(model, task, examples, np.array([index]), pad_id, device_name, str(head.get("loss", "cosine")))
        loss.backward()
        for total, (_, p) in zip(totals, params, strict=True):
            if p.grad is not None:
                total += p.grad.detach().float() ** 2
        if progress is not None:
            progress(1)
    pooled: list[np.ndarray] = []
    layout: list[list[Any]] = []
    for total, (name, _) in zip(totals, params, strict=True):
        mean = (total / len(chosen)).cpu().numpy()
        vector = mean.reshape(mean.shape[0], -1).mean(axis=1) if mean.ndim >= 2 else mean
        pooled.append(vector.astype(np.float64))
        layout.append([name, int(vector.size)])
    embedding = np.concatenate(pooled).astype(np.float32)
    return embedding, {"task": task, "data": absolute(path), "examples": len(chosen), "layout": layout}
