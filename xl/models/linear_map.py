"""A one-layer linear map trained by gradient descent (``xl fit-proj --method sgd``).

The seed work (Choi et al. 2021) fits the sentence-embedding projection either in closed form or as a
single linear layer trained with gradient descent on the mean squared error between mapped source and
target embeddings. Here: Adam, mini-batches shuffled inside each streamed chunk, seeded, early stopping on
the held-out dev pairs (patience in epochs), the best-on-dev weights kept. A square map starts at the
identity (the "no map" baseline), a rectangular one at zero. :func:`fit_linear_map` returns the map with a
record of the run (:class:`LinearMapFit`): the epoch kept, the epoch it stopped at and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Chunks = Callable[[], Iterable[tuple[NDArray[np.float32], NDArray[np.float32]]]]

#: Why training ended: ``patience`` (that many epochs in a row without a better dev loss, even if that
#: happened at the last epoch) or ``epochs`` (the epoch limit reached while the dev loss was still improving
#: within the patience, or without dev pairs).
StopReason = Literal["patience", "epochs"]


@dataclass(frozen=True)
class LinearMapFit:
    """A trained map and the record of its run.

    ``W``: (d, d') float32, or (d+1, d') with the bias as last row. ``best_epoch``: the epoch whose weights
    are kept (1-based; the best dev loss, or the last epoch without dev pairs). ``stopped_epoch``: the last
    epoch run. ``stop_reason``: ``patience`` or ``epochs``. ``best_dev_mse``: the dev loss of the kept
    weights (None without dev pairs).
    """

    W: NDArray[np.float32]
    best_epoch: int
    stopped_epoch: int
    stop_reason: StopReason
    best_dev_mse: float | None
    epochs: int
    patience: int

    def record(self) -> dict[str, Any]:
        """JSON-able record of the run (everything but W), as kept in the manifest."""
        return {
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "best_dev_mse": self.best_dev_mse,
            "epochs": self.epochs,
            "patience": self.patience,
        }


def fit_linear_map(
    chunks: Chunks,
    dev: tuple[NDArray[np.float32], NDArray[np.float32]] | None,
    *,
    center: bool,
    lr: float = 1e-3,
    epochs: int = 50,
    batch_size: int = 128,
    patience: int = 5,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> LinearMapFit:
    """Train ``y ≈ x W (+ b)``; returns W ((d, d') float32, or (d+1, d') with the bias as last row) with
    the record of the run (:class:`LinearMapFit`).

    chunks: zero-argument callable giving a fresh iterable of (X (m, d), Y (m, d')) float32 train pairs
    per epoch (preprocessed). dev: held-out (X, Y) for early stopping, or None (all epochs run, the last
    kept).
    """
    import torch

    from xl.errors import InputError, UsageError

    if lr <= 0 or epochs < 1 or batch_size < 1 or patience < 1:
        raise UsageError("--lr, --epochs, --batch-size and --patience must be positive")
    run = _Run(torch.Generator().manual_seed(seed), center=center, lr=lr, batch_size=batch_size)
    torch.manual_seed(seed)
    best = _Best(patience)
    stopped_epoch = 0
    stop_reason: StopReason = "epochs"
    dev_x = dev_y = None
    if dev is not None and len(dev[0]):
        dev_x, dev_y = torch.from_numpy(dev[0]), torch.from_numpy(dev[1])
    for epoch in range(1, epochs + 1):
        stopped_epoch = epoch
        train_loss, seen = run.epoch(chunks)
        if run.layer is None:
            raise InputError("no pairs to fit on (the input is empty)")
        if dev_x is None:
            best.epoch = epoch
            continue
        with torch.no_grad():
            dev_loss = float(torch.nn.functional.mse_loss(run.layer(dev_x), dev_y))
        if log is not None:
            log(f"sgd epoch {epoch}: train mse {train_loss / max(seen, 1):.6f}, dev mse {dev_loss:.6f}")
        if best.out_of_patience(epoch, dev_loss, run.layer):
            stop_reason = "patience"
            break
    if best.state is not None:
        run.layer.load_state_dict(best.state)
    return LinearMapFit(
        W=_map_of(run.layer, center),
        best_epoch=best.epoch,
        stopped_epoch=stopped_epoch,
        stop_reason=stop_reason,
        best_dev_mse=best.loss if best.state is not None else None,
        epochs=epochs,
        patience=patience,
    )


class _Best:
    """Early stopping: the best dev loss so far, its epoch and a copy of its weights (``state``, None until a
    dev loss is measured), and the epochs since it."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.loss = math.inf
        self.epoch = 0
        self.state: dict[str, Any] | None = None
        self.stale = 0

    def out_of_patience(self, epoch: int, dev_loss: float, layer: Any) -> bool:
        """Record ``epoch``'s dev loss (keeping ``layer``'s weights when better by more than 1e-9); True when
        ``patience`` epochs in a row have not been better."""
        if dev_loss < self.loss - 1e-9:
            self.loss, self.epoch, self.stale = dev_loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
            return False
        self.stale += 1
        return self.stale >= self.patience


class _Run:
    """The layer and its Adam optimizer, made at the first non-empty chunk (its dimensions come from the data),
    and the seeded ``generator`` that shuffles each chunk's pairs."""

    def __init__(self, generator: Any, *, center: bool, lr: float, batch_size: int) -> None:
        self.generator = generator
        self.center = center
        self.lr = lr
        self.batch_size = batch_size
        self.layer: Any = None
        self.optimizer: Any = None

    def _start(self, d_in: int, d_out: int) -> None:
        """A square map starts at the identity, a rectangular one at zero; the bias at zero."""
        import torch

        self.layer = torch.nn.Linear(d_in, d_out, bias=self.center)
        with torch.no_grad():
            if d_in == d_out:
                self.layer.weight.copy_(torch.eye(d_in))
            else:
                self.layer.weight.zero_()
            if self.center:
                self.layer.bias.zero_()
        self.optimizer = torch.optim.Adam(self.layer.parameters(), lr=self.lr)

    def epoch(self, chunks: Chunks) -> tuple[float, int]:
        """One pass over ``chunks()``, mini-batches shuffled within each chunk; returns (sum of the batches'
        MSE weighted by their sizes, pairs seen)."""
        import torch

        train_loss, seen = 0.0, 0
        for X, Y in chunks():
            if len(X) == 0:
                continue
            x, y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(Y))
            if self.layer is None:
                self._start(x.shape[1], y.shape[1])
            order = torch.randperm(len(x), generator=self.generator)
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                loss = torch.nn.functional.mse_loss(self.layer(x[idx]), y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                train_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
        return train_loss, seen


def _map_of(layer: Any, center: bool) -> NDArray[np.float32]:
    """The layer's map as a contiguous (d, d') float32 array, or (d+1, d') with the bias as last row."""
    W = layer.weight.detach().T.numpy().astype(np.float32)
    if center:
        W = np.vstack([W, layer.bias.detach().numpy()[None, :].astype(np.float32)])
    return np.ascontiguousarray(W)
