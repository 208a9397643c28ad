"""The one inference stack: model loading, tokenisation, length-sorted token-budget batches, the forward pass
with one out-of-memory back-off, and pooling. ``xl embed``, every ``xl eval``, the dev scoring of ``xl finetune``,
TextEmb and the Fisher all run through it.

- **Loading** (:func:`load_encoder`): any model spec (the default model, a local directory, a hub id) as an
  ``AutoModel`` without its pooler, safetensors only, never ``trust_remote_code``.
- **Lengths** (:func:`resolve_max_length`): ``--max-length`` when given, else the length the model was trained at
  (an ``xl finetune`` output records it in its head), else the caller's default; never more than the model's
  position table holds.
- **Tokenisation** (:func:`tokenize_texts`, :func:`tokenize_pairs`): NFC, the model's prefix, the model's
  ``tokenizers.Tokenizer`` with its special tokens (XLM-R: ``<s> A </s></s> B </s>``), truncation counted.
- **Batches** (:func:`run_batches`): rows sorted by length into batches of at most ``max_rows`` rows and
  ``max_tokens`` padded tokens (:func:`xl.core.batching.plan_batches`), results back in input order; a batch that
  runs out of CUDA memory is halved and retried. On CUDA lengths are padded to a multiple of 8.
- **Kernels**: in bfloat16 on the CPU, :class:`Encoder` and :meth:`xl.models.task_model.TaskInference.load`
  pack the transformer layers' linear weights once for oneDNN and fuse the feed-forward GELU into its product
  (:func:`xl.models.packed.pack_for_inference`).
- **Pooling** (:func:`pool`) follows sentence-transformers and e5: mean over the attention mask (special tokens
  included), the first token (``cls``), or the max over the mask. What a model asks for when no option says
  (:func:`model_pooling`): a sentence-transformers directory's modules, else its head or card, else mean.
"""

from __future__ import annotations

import contextlib
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def resolve_device(device: str, env: Mapping[str, str] | None = None) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; validate ``cuda[:N]``.

    Under torchrun (``WORLD_SIZE`` > 1 and ``LOCAL_RANK`` set in ``env``, default ``os.environ``), ``auto`` and a bare
    ``cuda`` pick this process's own GPU, ``cuda:{LOCAL_RANK mod the visible device count}``: without it every
    process of a node would share GPU 0. One visible device (``CUDA_VISIBLE_DEVICES`` set per process) stays
    ``cuda``; an explicit ``cuda:N`` is kept as given."""
    import torch

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        device = "cuda"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available", hint="use --device cpu or auto")
        if device == "cuda":
            return _local_cuda_device(os.environ if env is None else env, torch.cuda.device_count())
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UsageError(
                f"--device {device}: there are {torch.cuda.device_count()} CUDA devices",
                hint="number them from 0: --device cuda:0",
            )
        return device
    raise UsageError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")


def _local_cuda_device(env: Mapping[str, str], count: int) -> str:
    """``cuda:K`` for the torchrun process of local rank K (mod ``count``), else ``cuda``."""
    try:
        world, local_rank = int(env.get("WORLD_SIZE", "1")), int(env["LOCAL_RANK"])
    except (KeyError, ValueError):
        return "cuda"
    if world <= 1 or count <= 1 or local_rank < 0:
        return "cuda"
    return f"cuda:{local_rank % count}"


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


# --------------------------------------------------------------------------------------------- tokenisation


def prepare_text(text: str, prefix: str = "") -> str:
    """NFC-normalise and prefix a text (e5's ``query: ``)."""
    return prefix + unicodedata.normalize("NFC", text)


@dataclass
class TokenizedTexts:
    """Token ids (special tokens included) of a list of texts or pairs, with truncation counted."""

    ids: list[list[int]]
    truncated: int


def tokenize_texts(tokenizer: Any, texts: Sequence[str], *, prefix: str, max_length: int) -> TokenizedTexts:
    """Token ids of single texts, truncated to ``max_length`` tokens."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    encodings = tokenizer.encode_batch([prepare_text(t, prefix) for t in texts])
    tokenizer.no_truncation()
    return TokenizedTexts([e.ids for e in encodings], sum(bool(e.overflowing) for e in encodings))


def tokenize_pairs(
    tokenizer: Any, first: Sequence[str], second: Sequence[str], *, prefix: str, max_length: int
) -> TokenizedTexts:
    """Token ids of text pairs encoded together (a cross-encoder input), longest-first truncation."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    pairs = [(prepare_text(a, prefix), prepare_text(b)) for a, b in zip(first, second, strict=True)]
    encodings = tokenizer.encode_batch(pairs)
    tokenizer.no_truncation()
    return TokenizedTexts([e.ids for e in encodings], sum(bool(e.overflowing) for e in encodings))


# --------------------------------------------------------------------------------------------- loading


def pad_id_of(config: Any) -> int:
    """The padding id of a model's config; XLM-R's (1) when the config names none."""
    pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None else 1


def position_limit(config: Any) -> int | None:
    """The most tokens the model's position table holds (XLM-R's starts 2 rows in), None when unknown."""
    limit = int(getattr(config, "max_position_embeddings", 514) or 0) - 2
    return limit if limit > 0 else None


def head_of(ref: ModelRef) -> dict[str, Any] | None:
    """The head description stored with a model (None for a plain encoder)."""
    head = ref.info.get("head")
    return head if isinstance(head, dict) else None


def resolve_max_length(requested: int | None, ref: ModelRef, default: int, config: Any = None) -> int:
    """The one max-length rule: ``requested`` (``--max-length``) when given, else a sentence-transformers
    directory's ``max_seq_length``, else the length the model was trained at (recorded in an ``xl finetune``
    output's head; its ST files say the same), else ``default``; capped at the position table."""
    if requested is not None and requested < 2:
        raise UsageError(f"--max-length {requested} is too small", hint="use at least 2")
    stated = ref.st.max_length if ref.st is not None else None
    trained = (head_of(ref) or {}).get("max_length")
    length = int(requested or stated or trained or default)
    limit = position_limit(config) if config is not None else None
    return min(length, limit) if limit is not None else length


def model_pooling(ref: ModelRef) -> tuple[Pooling, bool]:
    """How the model's token states are pooled and whether the result is L2-normalised, when no option says:
    a sentence-transformers directory's Pooling and Normalize modules, else the head's (an ``xl finetune``
    output), else the model's card (``xl-model.json``), else mean without normalisation."""
    if ref.st is not None:
        return ref.st.pooling, ref.st.normalize  # type: ignore[return-value]
    head = head_of(ref) or {}
    pooling = str(head.get("pooling") or ref.info.get("pooling") or "mean")
    if pooling not in ("mean", "cls", "max"):
        raise ModelError(f"the model's card names the pooling {pooling!r}", source=str(ref.path or ref.spec),
                         hint="xl pools mean, cls or max")  # fmt: skip
    return pooling, bool(head.get("normalize", False))  # type: ignore[return-value]


def _dropout_overrides(dropout: float | None) -> dict[str, float]:
    if dropout is None:
        return {}
    if not 0.0 <= dropout < 1.0:
        raise UsageError(f"--dropout {dropout} is not in [0, 1)")
    return {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}


def load_config(ref: ModelRef) -> Any:
    """The model's transformers config."""
    _quiet_transformers()
    from transformers import AutoConfig

    with stdout_to_stderr():
        return from_pretrained(AutoConfig.from_pretrained, ref)


def load_encoder(
    ref: ModelRef, *, dtype: Any = None, dropout: float | None = None, top_layer: int | None = None
) -> Any:
    """The ``AutoModel`` of a model spec without its pooler (xl pools token states itself), in ``dtype``
    (a torch dtype; float32 by default), keeping only the first ``top_layer`` transformer layers when given.
    Safetensors only; never ``trust_remote_code``."""
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
        model.pooler = None  # never used: xl pools token states itself
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if top_layer is not None and layers is not None and top_layer < len(layers):
        model.encoder.layer = layers[: max(top_layer, 1)]  # the layers above the highest one asked for cost compute
    return model


# --------------------------------------------------------------------------------------------- batches


def run_batches(
    forward: Callable[[Any, Any], Any],
    ids: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
    *,
    max_tokens: int = 16384,
    max_rows: int = 256,
    progress: Callable[[int], None] | None = None,
) -> list[Any]:
    """Run ``forward(input_ids, attention_mask)`` over token id rows in length-sorted batches of at most
    ``max_rows`` rows and ``max_tokens`` padded tokens; return one output per row, in input order.

    ``forward`` returns a float tensor with the batch first — ``(b, h)`` per row, or ``(b, t, k)`` per token, which
    is cut to the row's length — or a dict of such tensors (one output dict per row). Runs under
    ``torch.inference_mode``. A batch that runs out of CUDA memory is halved and retried; a single row that does
    not fit is a ModelError. On CUDA, lengths are padded to a multiple of 8: every new (batch, length) shape pays a
    one-time kernel set-up (bf16 was slower than fp32 over a fresh run on an H200 without it), and padding is
    masked in attention and pooling, so only the order of the arithmetic can change.
    """
    import torch

    from xl.core.batching import plan_batches

    if not ids:
        return []
    out: list[Any] = [None] * len(ids)
    multiple = 8 if str(device).startswith("cuda") else 1
    with torch.inference_mode():
        for batch in plan_batches([len(row) for row in ids], max_tokens=max_tokens, max_rows=max_rows):
            _run_one(forward, ids, list(batch), pad_id, device, multiple, out)
            if progress is not None:
                progress(len(batch))
    return out


def _rows_of(value: Any, batch: list[int], ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    array = value.float().cpu().numpy()
    return [array[row][: len(ids[i])] if array.ndim == 3 else array[row] for row, i in enumerate(batch)]


def _run_one(forward: Callable[[Any, Any], Any], ids: Sequence[Sequence[int]], batch: list[int], pad_id: int,
             device: Any, multiple: int, out: list[Any]) -> None:  # fmt: skip
    import torch

    try:
        input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, device, multiple=multiple)
        result = forward(input_ids, mask)
        if isinstance(result, dict):
            parts = {key: _rows_of(value, batch, ids) for key, value in result.items()}
            rows: list[Any] = [{key: parts[key][r] for key in parts} for r in range(len(batch))]
        else:
            rows = _rows_of(result, batch, ids)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(batch) == 1:
            raise ModelError("CUDA out of memory on a single input",
                             hint="lower --max-length, or use --dtype bfloat16 or --device cpu") from None  # fmt: skip
        half = len(batch) // 2
        _run_one(forward, ids, batch[:half], pad_id, device, multiple, out)
        _run_one(forward, ids, batch[half:], pad_id, device, multiple, out)
        return
    for row, i in enumerate(batch):
        out[i] = rows[row]


# --------------------------------------------------------------------------------------------- embeddings


class Encoder:
    """A loaded encoder on one device in one dtype, running the first ``top_layer`` layers only: the embedding
    front of the stack (``xl embed``, TextEmb, covariates).

    ``layers`` are absolute indices 0..L (0 = embedding output, L = last layer); the encoder drops the
    layers above the highest one requested, which saves their compute. ``max_length`` None: the model's own
    (:func:`resolve_max_length`, 512 for a plain encoder).
    """

    def __init__(
        self,
        ref: ModelRef,
        *,
        layers: Sequence[int] = (-1,),
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
    ) -> None:
        import torch

        self.ref = ref
        self.device = resolve_device(device)
        self.dtype_name = resolve_dtype(dtype, self.device)
        self.torch_dtype = getattr(torch, self.dtype_name)
        config = load_config(ref)
        with stdout_to_stderr():
            self.tokenizer = from_pretrained(load_tokenizer, ref)
        self.num_layers = int(config.num_hidden_layers)
        self.hidden = int(config.hidden_size)
        self.layers = [self.absolute_layer(layer) for layer in layers]
        self.top_layer = max(self.layers)
        self.max_length = resolve_max_length(max_length, ref, 512, config)
        self.pooling, self.normalize = model_pooling(ref)  # the defaults of embed_ids
        self.model = load_encoder(ref, dtype=self.torch_dtype, top_layer=self.top_layer).to(self.device).eval()
        self.pad_id = pad_id_of(config)
        from xl.models.packed import pack_for_inference

        #: linear layers packed for oneDNN (bf16 on the CPU; :mod:`xl.models.packed`), 0 when none;
        #: XL_PACKED_LINEARS=0 keeps plain nn.Linear layers (to measure the difference)
        self.packed_linears = pack_for_inference(self.model, self.device)

    def absolute_layer(self, layer: int) -> int:
        """Map ``-1`` -> L, ``-L-1`` -> 0; refuse layers the model does not have."""
        absolute = layer + self.num_layers + 1 if layer < 0 else layer
        if not 0 <= absolute <= self.num_layers:
            raise UsageError(
                f"--layer {layer}: the model has layers 0..{self.num_layers}",
                hint=f"0 is the embedding output, {self.num_layers} (or -1) the last layer",
            )
        return absolute

    def tokenize(self, texts: Sequence[str], prefix: str = "") -> TokenizedTexts:
        """NFC-normalise, prefix and tokenize; truncate to ``max_length`` tokens (counted)."""
        return tokenize_texts(self.tokenizer, texts, prefix=prefix, max_length=self.max_length)

    def embed_ids(
        self,
        ids: Sequence[Sequence[int]],
        pooling: Pooling | None = None,
        normalize: bool | None = None,
        *,
        max_tokens: int = 8192,
        max_rows: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> dict[int, np.ndarray]:
        """Pooled embeddings of token id rows: {layer: (n, hidden) float32}, in input order (:func:`run_batches`).
        ``pooling`` / ``normalize`` None: the model's (:func:`model_pooling`)."""
        pooling = self.pooling if pooling is None else pooling
        normalize = self.normalize if normalize is None else normalize
        rows = run_batches(lambda input_ids, mask: self._forward(input_ids, mask, pooling, normalize), ids,
                           self.pad_id, self.device, max_tokens=max_tokens, max_rows=max_rows,
                           progress=progress)  # fmt: skip
        return {layer: (np.stack([row[layer] for row in rows]) if rows else np.zeros((0, self.hidden), np.float32))
                for layer in self.layers}  # fmt: skip

    def _forward(self, input_ids: Any, attention: Any, pooling: Pooling, normalize: bool) -> dict[int, Any]:
        import torch

        want_all = self.layers != [len(self.model.encoder.layer)] if hasattr(self.model, "encoder") else True
        out = self.model(input_ids=input_ids, attention_mask=attention, output_hidden_states=want_all)
        result: dict[int, Any] = {}
        for layer in self.layers:
            states = out.hidden_states[layer] if want_all else out.last_hidden_state
            pooled = pool(states, attention, pooling)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            result[layer] = pooled
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


#: Tokenizers built from a ``tokenizer.json``, keyed by the file's length and SHA-1, newest last. Building the
#: XLM-R tokenizer (250,002 pieces, 17 MB) takes ~0.8 s and freeing it ~0.35 s, while hashing its file takes
#: ~0.03 s; a process that loads models more than once (a notebook or script that embeds, fine-tunes and evaluates;
#: the test suite, which runs commands in process) builds it once, also from a run directory's copy of the file.
#: Sharing one object is safe because every caller sets truncation and padding before it encodes
#: (:func:`tokenize_texts`, :func:`tokenize_pairs`, :func:`xl.tasks.features.qa_features`).
_TOKENIZERS: dict[tuple[int, str], Any] = {}
_TOKENIZERS_KEPT = 2


def load_tokenizer(location: str, **kwargs: Any) -> Any:
    """A ``tokenizers.Tokenizer`` with special tokens: ``tokenizer.json`` when present, else via HF.

    A ``tokenizer.json`` whose bytes were loaded before in this process gives the same object again (see
    ``_TOKENIZERS``): callers set its truncation and padding before each use and must not change it otherwise."""
    import hashlib
    from pathlib import Path

    from tokenizers import Tokenizer

    path = Path(location) / "tokenizer.json"
    if path.is_file():
        content = path.read_bytes()  # hashed and built from the same bytes, whatever happens to the file
        key = (len(content), hashlib.sha1(content, usedforsecurity=False).hexdigest())
        tokenizer = _TOKENIZERS.pop(key, None)
        if tokenizer is None:
            tokenizer = Tokenizer.from_str(content.decode("utf-8"))
        _TOKENIZERS[key] = tokenizer  # newest last
        while len(_TOKENIZERS) > _TOKENIZERS_KEPT:
            del _TOKENIZERS[next(iter(_TOKENIZERS))]
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
