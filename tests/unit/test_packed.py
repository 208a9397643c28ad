"""The oneDNN-packed linear layers of bf16 CPU inference (xl.models.packed): same outputs as the plain layers,
the exact GELU fused only where the model's activation is the exact GELU, nothing changed where packing does not
apply or a packed layer disagrees, and the Encoder using it (with XL_PACKED_LINEARS=0 to turn it off)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xl.models import packed  # noqa: E402

LAYERS = 2
LINEARS_PER_LAYER = 6  # query, key, value, attention output, feed-forward in and out


def _model(hidden_act: str = "gelu", dtype: Any = None) -> Any:
    config = transformers.XLMRobertaConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=130, pad_token_id=1, type_vocab_size=1, hidden_act=hidden_act,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.XLMRobertaModel(config, add_pooling_layer=False).eval()
    return model.to(dtype or torch.bfloat16)


def _batch() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (5, 23), generator=generator)
    mask = torch.ones_like(ids)
    for row, length in enumerate((23, 20, 17, 9, 3)):  # padded rows: the mask reaches attention
        ids[row, length:], mask[row, length:] = 1, 0
    return ids, mask


def _states(model: Any) -> Any:
    ids, mask = _batch()
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask


def _require_packing(model: Any) -> int:
    count = packed.pack_linears(model)
    if count == 0:
        pytest.skip("this PyTorch/CPU has no oneDNN bf16 inner product")
    return count


def _kinds(model: Any) -> list[str]:
    return [type(m).__name__ for m in model.encoder.modules() if isinstance(m, (torch.nn.Linear, packed.PackedLinear))]


def test_packed_model_gives_the_plain_models_token_states() -> None:
    plain = _model()
    fast = copy.deepcopy(plain)
    assert _require_packing(fast) == LAYERS * LINEARS_PER_LAYER
    assert set(_kinds(fast)) == {"PackedLinear"}
    (want, mask), (got, _) = _states(plain), _states(fast)
    valid = mask.bool()
    error = (got - want)[valid].norm() / want[valid].norm()
    assert float(error) < 0.02  # bf16 rounding in other places, a few ulps; a wrong layout is of order 1
    cosine = torch.nn.functional.cosine_similarity(got[valid], want[valid], dim=-1)
    assert float(cosine.min()) > 0.999
    # packing is a change of kernels, not of the model: the plain model is untouched
    assert set(_kinds(plain)) == {"Linear"}


def test_the_exact_gelu_is_fused_and_other_activations_are_kept() -> None:
    exact = _model("gelu")
    _require_packing(exact)
    for layer in exact.encoder.layer:
        assert layer.intermediate.dense.activation == "gelu"
        assert isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    tanh = _model("gelu_new")  # the tanh approximation: not what oneDNN's fused "gelu" computes here
    reference = copy.deepcopy(tanh)
    assert packed.pack_linears(tanh) == LAYERS * LINEARS_PER_LAYER
    for layer in tanh.encoder.layer:
        assert layer.intermediate.dense.activation == "none"
        assert not isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    (want, mask), (got, _) = _states(reference), _states(tanh)
    valid = mask.bool()
    assert float((got - want)[valid].norm() / want[valid].norm()) < 0.02


def test_float32_and_models_without_an_encoder_are_left_alone() -> None:
    full = _model(dtype=torch.float32)
    assert packed.pack_linears(full) == 0
    assert set(_kinds(full)) == {"Linear"}
    assert packed.pack_linears(torch.nn.Sequential(torch.nn.Linear(4, 4).bfloat16())) == 0


def test_a_disagreeing_or_failing_kernel_leaves_the_model_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    before = _states(model)[0]
    monkeypatch.setattr(packed, "_agrees", lambda *args: False)
    assert packed.pack_linears(model) == 0
    assert set(_kinds(model)) == {"Linear"}
    monkeypatch.undo()

    def broken(*args: Any) -> Any:
        raise RuntimeError("could not create a primitive descriptor for the inner product")

    monkeypatch.setattr(packed.PackedLinear, "__init__", lambda self, *args, **kwargs: broken())
    assert packed.pack_linears(model) == 0
    assert set(_kinds(model)) == {"Linear"}
    torch.testing.assert_close(_states(model)[0], before, rtol=0, atol=0)


def test_the_check_catches_a_transposed_weight() -> None:
    """The self-check is not vacuous: a square layer packed from its transpose is refused."""
    linear = torch.nn.Linear(64, 64).bfloat16()
    good = packed.PackedLinear(linear)
    assert packed._agrees(good, linear, None)
    flipped = torch.nn.Linear(64, 64).bfloat16()
    with torch.no_grad():
        flipped.weight.copy_(linear.weight.t())
        flipped.bias.copy_(linear.bias)
    assert not packed._agrees(packed.PackedLinear(flipped), linear, None)


def test_encoder_packs_in_bf16_on_the_cpu_and_can_be_told_not_to(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model

    texts = ["a short sentence", "eine etwas längere Zeile mit mehr Wörtern darin", "한국어 문장"]
    fast = Encoder(resolve_model(str(tiny_model_path)), dtype="bfloat16", device="cpu")
    if fast.packed_linears == 0:
        pytest.skip("this PyTorch/CPU has no oneDNN bf16 inner product")
    assert fast.packed_linears == 2 * LINEARS_PER_LAYER
    monkeypatch.setenv("XL_PACKED_LINEARS", "0")
    plain = Encoder(resolve_model(str(tiny_model_path)), dtype="bfloat16", device="cpu")
    assert plain.packed_linears == 0
    full = Encoder(resolve_model(str(tiny_model_path)), dtype="float32", device="cpu")
    monkeypatch.delenv("XL_PACKED_LINEARS")
    assert Encoder(resolve_model(str(tiny_model_path)), dtype="float32", device="cpu").packed_linears == 0
    X, Y, R = (enc.embed_ids(enc.tokenize(texts).ids)[2] for enc in (fast, plain, full))
    cosine = lambda A, B: (A * B).sum(1) / np.linalg.norm(A, axis=1) / np.linalg.norm(B, axis=1)  # noqa: E731
    assert cosine(X, R).min() > 0.999 and cosine(Y, R).min() > 0.999
    assert not np.array_equal(X, Y)  # the packed path really ran


def test_every_eval_packs_in_bf16_on_the_cpu(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``xl eval`` (TaskInference.load) runs the packed layers too, with the scores of the plain model."""
    from xl.models.registry import resolve_model
    from xl.models.task_model import TaskInference
    from xl.tasks.objects import task_named

    task = task_named("sts")
    records = [{"text1": "a short sentence", "text2": "ein kurzer Satz", "score": 3.0},
               {"text1": "the cat sat", "text2": "고양이가 앉았다", "score": 2.0}]  # fmt: skip

    def similarities(runner: Any) -> np.ndarray:
        predictions, _ = runner.predict(runner.tokenize(records, "sts"))
        return np.asarray(predictions, dtype=np.float64)

    fast = TaskInference.load(resolve_model(str(tiny_model_path)), task, device="cpu", dtype="bfloat16")
    if fast.packed_linears == 0:
        pytest.skip("this PyTorch/CPU has no oneDNN bf16 inner product")
    assert fast.packed_linears == 2 * LINEARS_PER_LAYER
    monkeypatch.setenv("XL_PACKED_LINEARS", "0")
    plain = TaskInference.load(resolve_model(str(tiny_model_path)), task, device="cpu", dtype="bfloat16")
    assert plain.packed_linears == 0
    np.testing.assert_allclose(similarities(fast), similarities(plain), atol=2e-2)
