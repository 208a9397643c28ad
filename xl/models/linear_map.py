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
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer: Any = None
    optimizer: Any = None
    best_loss, best_state, stale = math.inf, None, 0
    best_epoch = stopped_epoch = 0
    stop_reason: StopReason = "epochs"
    dev_x = dev_y = None
    if dev is not None and len(dev[0]):
        dev_x, dev_y = torch.from_numpy(dev[0]), torch.from_numpy(dev[1])
    for epoch in range(1, epochs + 1):
        stopped_epoch = epoch
        train_loss, seen = 0.0, 0
        for X, Y in chunks():
            if len(X) == 0:
                continue
            x, y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(Y))
            if layer is None:
                layer = torch.nn.Linear(x.shape[1], y.shape[1], bias=center)
                with torch.no_grad():
                    if x.shape[1] == y.shape[1]:
                        layer.weight.copy_(torch.eye(x.shape[1]))
                    else:
                        layer.weight.zero_()
                    if center:
                        layer.bias.zero_()
                optimizer = torch.optim.Adam(layer.parameters(), lr=lr)
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                loss = torch.nn.functional.mse_loss(layer(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                train_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
        if layer is None:
            raise InputError("no pairs to fit on (the input is empty)")
        if dev_x is None:
            best_epoch = epoch
            continue
        with torch.no_grad():
            dev_loss = float(torch.nn.functional.mse_loss(layer(dev_x), dev_y))
        if log is not None:
            log(f"sgd epoch {epoch}: train mse {train_loss / max(seen, 1):.6f}, dev mse {dev_loss:.6f}")
        if dev_loss < best_loss - 1e-9:
            best_loss, best_epoch, stale = dev_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                stop_reason = "patience"
                break
    if best_state is not None:
        layer.load_state_dict(best_state)
    W = layer.weight.detach().T.numpy().astype(np.float32)
    if center:
        W = np.vstack([W, layer.bias.detach().numpy()[None, :].astype(np.float32)])
    return LinearMapFit(
        W=np.ascontiguousarray(W),
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
        stop_reason=stop_reason,
        best_dev_mse=best_loss if best_state is not None else None,
        epochs=epochs,
        patience=patience,
    )
