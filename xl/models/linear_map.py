"""A one-layer linear map trained by gradient descent (``xl fit-proj --method sgd``).

The seed work (Choi et al. 2021) fits the sentence-embedding projection either in closed form or as a
single linear layer trained with gradient descent on the mean squared error between mapped source and
target embeddings. Here: Adam, mini-batches shuffled inside each streamed chunk, seeded, early stopping on
the held-out dev pairs (patience in epochs), the best-on-dev weights kept. A square map starts at the
identity (the "no map" baseline), a rectangular one at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Chunks = Callable[[], Iterable[tuple[NDArray[np.float32], NDArray[np.float32]]]]


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
) -> NDArray[np.float32]:
    """Train ``y ≈ x W (+ b)`` and return W: (d, d') float32, or (d+1, d') with the bias as last row.

    chunks: zero-argument callable giving a fresh iterable of (X (m, d), Y (m, d')) float32 train pairs
    per epoch (preprocessed). dev: held-out (X, Y) for early stopping, or None (all epochs run).
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
    dev_x = dev_y = None
    if dev is not None and len(dev[0]):
        dev_x, dev_y = torch.from_numpy(dev[0]), torch.from_numpy(dev[1])
    for epoch in range(1, epochs + 1):
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
            continue
        with torch.no_grad():
            dev_loss = float(torch.nn.functional.mse_loss(layer(dev_x), dev_y))
        if log is not None:
            log(f"sgd epoch {epoch}: train mse {train_loss / max(seen, 1):.6f}, dev mse {dev_loss:.6f}")
        if dev_loss < best_loss - 1e-9:
            best_loss, stale = dev_loss, 0
            best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        layer.load_state_dict(best_state)
    W = layer.weight.detach().T.numpy().astype(np.float32)
    if center:
        W = np.vstack([W, layer.bias.detach().numpy()[None, :].astype(np.float32)])
    return np.ascontiguousarray(W)
