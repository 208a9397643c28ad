"""bf16 inference on the CPU with the encoder's linear layers packed once for oneDNN.

In eager PyTorch a bf16 ``nn.Linear`` on the CPU hands oneDNN a plain row-major weight, which oneDNN reorders into
its blocked AMX/AVX512-BF16 layout on every call; a frozen inference model can reorder each weight once. This is
what ``torch.compile`` with ``freezing`` does (its ``mkldnn_fusion`` pass), without the compile: every linear of the
transformer layers becomes ``mkldnn::_linear_pointwise`` on a weight from ``mkldnn::_reorder_linear_weight``, and
the feed-forward's exact (erf) GELU runs inside the first feed-forward product, on its float32 accumulator, instead
of as a second pass over a bf16 tensor.

Measured by ``make bench-embed`` (the README's Performance section). Only for inference in bfloat16 on the CPU: in
float32 the packed weights were no faster here, and training needs the ``nn.Linear`` parameters. Every packed layer
is checked against the layer it replaces on a random input when it is built; where the running PyTorch lacks the
ops or disagrees, the model is left as it was (:func:`pack_linears` returns 0).
"""

from __future__ import annotations

import os
from typing import Any

import torch

#: Largest relative error of a packed layer against the ``nn.Linear`` it replaces, on a random bf16 input: the
#: two differ in the order of the float32 accumulation and in where bf16 rounding happens (once, after the GELU,
#: for the fused layer), a few bf16 ulps (2^-8 each); a wrong layout or transposition gives errors of order 1.
CHECK_TOLERANCE = 0.05


class PackedLinear(torch.nn.Module):
    """``y = act(x Wᵀ + b)`` for x of shape (..., in_features) bf16, with W reordered once for oneDNN.

    ``activation``: ``"none"`` or ``"gelu"`` (exact, erf-based, as ``torch.nn.functional.gelu``), fused into the
    product. The weight is a oneDNN-blocked tensor: it is not a parameter and cannot be trained or saved.
    """

    def __init__(self, linear: torch.nn.Linear, activation: str = "none", rows_hint: int = 1024) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        ops = torch.ops.mkldnn
        # rows_hint: the number of rows oneDNN picks its blocking for (a batch of 32 sentences of ~32 tokens)
        self.weight_packed = ops._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.activation = activation
        # the GELU "algorithm" argument: "none" is the exact erf form ("tanh" the approximation)
        self.algorithm = "none" if activation == "gelu" else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight_packed, self.bias, self.activation, [], self.algorithm)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def _fused_gelu(module: Any, config: Any) -> bool:
    """Whether ``module`` is a BERT-family feed-forward input (``dense`` then ``intermediate_act_fn``) whose
    activation is the exact GELU."""
    dense = getattr(module, "dense", None)
    act = getattr(module, "intermediate_act_fn", None)
    return (isinstance(dense, torch.nn.Linear) and act is not None
            and getattr(config, "hidden_act", None) == "gelu")  # fmt: skip


def _agrees(packed: PackedLinear, linear: torch.nn.Linear, activation: Any) -> bool:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, linear.in_features, generator=generator).to(linear.weight.dtype)
    with torch.inference_mode():
        want = linear(x) if activation is None else activation(linear(x))
        got = packed(x)
    if got.shape != want.shape:
        return False
    error = float((got.float() - want.float()).norm() / want.float().norm().clamp(min=1e-12))
    return error <= CHECK_TOLERANCE


def pack_linears(model: Any) -> int:
    """Replace the linear layers of ``model.encoder`` (a transformers encoder in bfloat16 on the CPU, in eval
    mode) by :class:`PackedLinear` layers, the feed-forward GELU fused; return how many were replaced (0: the
    model is unchanged, because it is not bf16 on the CPU, has no ``encoder``, or this PyTorch lacks the oneDNN
    ops or disagrees with ``nn.Linear``)."""
    encoder = getattr(model, "encoder", None)
    first = next(iter(model.parameters()), None)
    if encoder is None or first is None or first.dtype != torch.bfloat16 or first.device.type != "cpu":
        return 0
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 0
    config = getattr(model, "config", None)
    plan: list[tuple[Any, str, PackedLinear, bool]] = []  # (parent, attribute, packed layer, drops the activation)
    try:
        for parent in encoder.modules():
            if _fused_gelu(parent, config):
                packed = PackedLinear(parent.dense, "gelu")
                if not _agrees(packed, parent.dense, parent.intermediate_act_fn):
                    return 0
                plan.append((parent, "dense", packed, True))
                continue
            for name, child in parent.named_children():
                if isinstance(child, torch.nn.Linear):
                    packed = PackedLinear(child)
                    if not _agrees(packed, child, None):
                        return 0
                    plan.append((parent, name, packed, False))
    except RuntimeError:  # oneDNN without a bf16 inner product for this CPU or shape
        return 0
    for parent, name, packed, drops_activation in plan:
        setattr(parent, name, packed)
        if drops_activation:
            parent.intermediate_act_fn = torch.nn.Identity()
    return len(plan)


def pack_for_inference(model: Any, device: str) -> int:
    """:func:`pack_linears` for a model about to run inference on ``device``, unless ``XL_PACKED_LINEARS=0``
    (to measure the difference): what ``xl embed``, TextEmb and every ``xl eval`` run. Returns the count."""
    if device != "cpu" or os.environ.get("XL_PACKED_LINEARS", "1") == "0":
        return 0
    return pack_linears(model)
