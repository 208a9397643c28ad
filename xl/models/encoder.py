"""Sentence encoders: an XLM-R-family model, its tokenizer, and pooling of token states.

Pooling follows sentence-transformers and e5: mean over the attention mask (special tokens included),
the first token (``cls``), or the max over the mask. Every model spec (the default model, a local
directory, a hub id) goes through the same code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xl.errors import ModelError, UsageError
from xl.models.registry import ModelRef

if TYPE_CHECKING:
    import torch

Pooling = Literal["mean", "cls", "max"]
DTYPES = ("auto", "float32", "bfloat16", "float16")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send stray prints of dependencies to stderr while models load: stdout carries data only."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _quiet_transformers() -> None:
    import huggingface_hub
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def _hub_reachable() -> bool:
    """Whether the hub's host resolves (fails at once when offline, instead of minutes of retries)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def from_pretrained(loader: Callable[..., Any], ref: ModelRef, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` for any model spec: local directory, hub cache first, then the hub."""
    if ref.path is not None:
        try:
            return loader(str(ref.path), **kwargs)
        except Exception as exc:  # transformers and safetensors raise many kinds: all mean "cannot load"
            raise _load_error(ref, exc) from None
    try:
        return loader(ref.spec, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") or not _hub_reachable():
        raise ModelError(
            f"{ref.spec!r} is not a local directory, not in the Hugging Face cache, and the hub is unreachable",
            hint="offline? pass a local model directory, or --model default (built offline)",
        )
    try:
        return loader(ref.spec, **kwargs)
    except Exception as exc:
        raise _load_error(ref, exc) from None


def cpu_supports_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where bf16 matrix products are native (about 3× fp32)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; validate ``cuda[:N]``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available", hint="use --device cpu or auto")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UsageError(
                f"--device {device}: there are {torch.cuda.device_count()} CUDA devices",
                hint="number them from 0: --device cuda:0",
            )
        return device
    raise UsageError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bfloat16 on CUDA with bf16 support and on CPUs with AMX/AVX512-BF16, else float32."""
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}", hint="use auto, float32, bfloat16 or float16")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_supports_bf16() else "float32"


@dataclass(frozen=True)
class Tokenized:
    """Token ids of a list of texts (special tokens included) and which were truncated."""

    ids: list[list[int]]
    truncated: list[bool]


class Encoder:
    """A loaded encoder on one device in one dtype, running the first ``top_layer`` layers only.

    ``layers`` are absolute indices 0..L (0 = embedding output, L = last layer); the encoder drops the
    layers above the highest one requested, which saves their compute.
    """

    def __init__(
        self,
        ref: ModelRef,
        *,
        layers: Sequence[int] = (-1,),
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 512,
    ) -> None:
        import torch

        _quiet_transformers()
        from transformers import AutoConfig, AutoModel

        self.ref = ref
        self.device = resolve_device(device)
        self.dtype_name = resolve_dtype(dtype, self.device)
        self.torch_dtype = getattr(torch, self.dtype_name)
        with stdout_to_stderr():
            config = from_pretrained(AutoConfig.from_pretrained, ref)
            self.tokenizer = from_pretrained(load_tokenizer, ref)
            self.num_layers = int(config.num_hidden_layers)
            self.hidden = int(config.hidden_size)
            self.layers = [self.absolute_layer(layer) for layer in layers]
            self.top_layer = max(self.layers)
            limit = int(getattr(config, "max_position_embeddings", 514)) - 2
            if max_length < 2:
                raise UsageError(f"--max-length {max_length} is too small", hint="use at least 2")
            self.max_length = min(max_length, limit) if limit > 0 else max_length
            self.tokenizer.enable_truncation(self.max_length)
            # Never trust_remote_code; safetensors only.
            model = from_pretrained(AutoModel.from_pretrained, ref, dtype=self.torch_dtype, use_safetensors=True)
        if hasattr(model, "pooler"):
            model.pooler = None  # never used: xl pools token states itself
        encoder_layers = getattr(getattr(model, "encoder", None), "layer", None)
        if encoder_layers is not None and self.top_layer < len(encoder_layers):
            model.encoder.layer = encoder_layers[: max(self.top_layer, 1)]
        self.model = model.to(self.device).eval()
        self.pad_id = int(config.pad_token_id if config.pad_token_id is not None else 0)

    def absolute_layer(self, layer: int) -> int:
        """Map ``-1`` -> L, ``-L-1`` -> 0; refuse layers the model does not have."""
        absolute = layer + self.num_layers + 1 if layer < 0 else layer
        if not 0 <= absolute <= self.num_layers:
            raise UsageError(
                f"--layer {layer}: the model has layers 0..{self.num_layers}",
                hint=f"0 is the embedding output, {self.num_layers} (or -1) the last layer",
            )
        return absolute

    def tokenize(self, texts: Sequence[str], prefix: str = "") -> Tokenized:
        """NFC-normalise, prefix and tokenize; truncate to ``max_length`` tokens (counted)."""
        prepared = [prefix + unicodedata.normalize("NFC", text) for text in texts]
        encodings = self.tokenizer.encode_batch(prepared)
        return Tokenized(ids=[e.ids for e in encodings], truncated=[bool(e.overflowing) for e in encodings])

    def embed_ids(
        self, ids: Sequence[Sequence[int]], pooling: Pooling = "mean", normalize: bool = False
    ) -> dict[int, np.ndarray]:
        """Pooled embeddings of one batch: {layer: (b, hidden) float32}. Halves the batch on CUDA OOM."""
        import torch

        try:
            return self._forward(ids, pooling, normalize)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(ids) == 1:
                raise ModelError(
                    "CUDA out of memory on a single sentence",
                    hint="lower --max-length, or use --dtype bfloat16 or --device cpu",
                ) from None
            half = len(ids) // 2
            first = self.embed_ids(ids[:half], pooling, normalize)
            second = self.embed_ids(ids[half:], pooling, normalize)
            return {k: np.concatenate([first[k], second[k]]) for k in first}

    def _forward(self, ids: Sequence[Sequence[int]], pooling: Pooling, normalize: bool) -> dict[int, Any]:
        import torch

        # On CUDA every new (batch, length) shape pays a one-time kernel set-up, which made bf16 slower than
        # fp32 over a fresh run (measured on an H200); lengths rounded up to a multiple of 8 mean 8× fewer shapes.
        # Padding is masked in attention and pooling, so only the arithmetic order can change.
        multiple = 8 if str(self.device).startswith("cuda") else 1
        input_ids, attention = pad_batch(ids, self.pad_id, self.device, multiple=multiple)
        want_all = self.layers != [len(self.model.encoder.layer)] if hasattr(self.model, "encoder") else True
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=attention, output_hidden_states=want_all)
            result: dict[int, Any] = {}
            for layer in self.layers:
                states = out.hidden_states[layer] if want_all else out.last_hidden_state
                pooled = pool(states, attention, pooling)
                if normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                result[layer] = pooled.to("cpu", torch.float32).numpy()
        return result


def pad_batch(
    ids: Sequence[Sequence[int]], pad_id: int, device: Any, *, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, L) int64 input ids and attention mask on ``device``; L is the longest row rounded up to ``multiple``."""
    import torch

    longest = -(-max(len(row) for row in ids) // multiple) * multiple
    batch = np.full((len(ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for i, row in enumerate(ids):
        batch[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return torch.from_numpy(batch).to(device), torch.from_numpy(mask).to(device)


def pool(states: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool (b, t, h) token states to (b, h) float32 over the attention mask (b, t)."""
    import torch

    states = states.float()
    if pooling == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    if pooling == "mean":
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if pooling == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).amax(dim=1)
    raise UsageError(f"unknown pooling {pooling!r}", hint="use mean, cls or max")


def load_tokenizer(location: str, **kwargs: Any) -> Any:
    """A ``tokenizers.Tokenizer`` with special tokens: ``tokenizer.json`` when present, else via HF."""
    from pathlib import Path

    from tokenizers import Tokenizer

    path = Path(location) / "tokenizer.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs).backend_tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _load_error(ref: ModelRef, exc: Exception) -> ModelError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if ref.path is None:
        return ModelError(
            f"could not load {ref.spec!r} from the Hugging Face hub: {first}",
            hint="offline? pass a local model directory, or --model default (built offline)",
        )
    return ModelError(f"could not load the model: {first}", source=str(ref.path),
                      hint="check the directory holds a complete Hugging Face model")  # fmt: skip
