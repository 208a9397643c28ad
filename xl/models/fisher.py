"""TaskEmb (Vu et al. 2020): a task embedding from the diagonal empirical Fisher information of a model fine-tuned
on that task.

For a sample of the task's training examples, the loss of each example *with its gold label* (the empirical
Fisher) is differentiated with respect to the encoder's parameters (not the task head's), one example at a
time (``TaskObject.fisher_losses``: align ranks each pair among a group of the sample, since a pair alone has no
negatives); the Fisher diagonal is the mean of the squared gradients. Like Vu et al., who build task embeddings from
the Fisher of BERT's components rather than from one vector of all 100 M+ parameters, the diagonal is pooled
per component: each parameter matrix of the transformer layers becomes one value per output unit (the mean over
its inputs), each vector (bias, LayerNorm) is kept as it is, and the word embedding matrix (one row per
vocabulary piece, almost all untouched by a sample) is left out. The result is one non-negative vector per task
(about 75,000 values for the default model), in a fixed parameter order, so embeddings of models of one
architecture line up; ``xl tasksim similarity --method task2vec`` compares them (Achille et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xl.models.inference import resolve_device
from xl.models.registry import ModelRef

if TYPE_CHECKING:
    from xl.tasks.data import TaskData
    from xl.tasks.objects import TaskObject

SKIPPED = ("word_embeddings",)


def fisher_diagonal(
    ref: ModelRef,
    task: TaskObject,
    examples: TaskData,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
    include_head: bool = False,
) -> tuple[np.ndarray, list[list[Any]]]:
    """The pooled Fisher diagonal ``(k,)`` float32 of the fine-tuned model ``ref`` over the inputs of ``examples``
    that ``task.fisher_examples`` picks (tokenized with their gold targets), and the parameter layout
    ``[[name, values], …]``.

    Only the encoder's parameters count, as in Vu et al. (BERT's): task heads differ in size (2 or 3 labels, a
    span head, none for STS), and a vector of the shared encoder is what lines up across tasks.
    ``include_head`` appends the head's parameters (last, in the layout), for checks against closed forms."""
    import torch

    from xl.models.inference import load_encoder, pad_id_of
    from xl.models.task_model import head_of, load_head, make_task_model

    head = head_of(ref) or {}
    chosen = task.fisher_examples(examples)
    device_name = resolve_device(device)
    torch.manual_seed(seed)
    encoder = load_encoder(ref, dropout=0.0)
    labels = list(head.get("labels") or [])
    model = make_task_model(encoder, task, n_labels=len(labels), pooling=str(head.get("pooling") or "mean"))
    if model.head is not None:
        load_head(model, ref.path or Path("."))
    model.to(device_name).eval()  # dropout off: the Fisher of the model as it predicts
    params = [(name, p) for name, p in model.named_parameters()
              if not any(s in name for s in SKIPPED) and (include_head or not name.startswith("head."))]  # fmt: skip
    totals = [torch.zeros_like(p, dtype=torch.float32) for _, p in params]
    pad_id = pad_id_of(encoder.config)
    loss_name = str(head.get("loss") or task.losses[0])
    for loss in task.fisher_losses(model, examples, chosen, pad_id, device_name, loss_name):
        model.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)  # align: the losses of one group share its forward pass
        for total, (_, p) in zip(totals, params, strict=True):
            if p.grad is not None:
                total += p.grad.detach().float() ** 2
        if progress is not None:
            progress(1)
    pooled: list[np.ndarray] = []
    layout: list[list[Any]] = []
    for total, (name, _) in zip(totals, params, strict=True):
        mean = (total / max(1, len(chosen))).cpu().numpy()
        vector = mean.reshape(mean.shape[0], -1).mean(axis=1) if mean.ndim >= 2 else mean
        pooled.append(vector.astype(np.float64))
        layout.append([name, int(vector.size)])
    return np.concatenate(pooled).astype(np.float32), layout
