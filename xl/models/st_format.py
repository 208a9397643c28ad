"""sentence-transformers model directories: read what their module files say, and write them for xl's models.

A sentence-transformers (ST) directory is a Hugging Face model directory plus ``modules.json`` (the pipeline:
a ``Transformer`` at ``""``, then ``Pooling``, optionally ``Normalize``), ``sentence_bert_config.json`` (the
Transformer's ``max_seq_length``, ``do_lower_case``), ``1_Pooling/config.json`` (the pooling mode) and
``config_sentence_transformers.json`` (named ``prompts`` and the ``default_prompt_name`` that ``encode`` puts
before every text). The formats follow sentence-transformers' own ``SentenceTransformer.save`` and the
``Transformer``, ``Pooling`` and ``Normalize`` modules (v2 to v6: the classic file layout, which every version
reads; v6 also writes ``pooling_mode`` and ``embedding_dimension`` and keeps the length in
``tokenizer_config.json``, both read here).

:func:`read_st_settings` turns a directory's files into what xl's one inference stack needs (pooling,
normalisation, prefix, max length) and refuses a pipeline that xl cannot run as ST would (a ``Dense`` layer,
weighted-mean pooling, lower-casing, …): it never drops a module silently. :func:`st_files` is the other
direction, the files ``xl finetune`` writes beside a kept model so that ``SentenceTransformer(DIR).encode``
equals ``xl embed --model DIR``. No torch here: resolving a model spec stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xl.errors import ModelError

MODULES = "modules.json"
ST_CONFIG = "sentence_bert_config.json"
ST_MODEL_CONFIG = "config_sentence_transformers.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
#: What ``st_files`` writes into a model directory (files, and the folders of the Pooling and Normalize modules).
ST_ENTRIES = (MODULES, ST_CONFIG, ST_MODEL_CONFIG, POOLING_DIR, NORMALIZE_DIR)

#: The module types xl runs, by their class name (ST has named each under several import paths over versions:
#: ``sentence_transformers.models.Pooling``, ``sentence_transformers.sentence_transformer.modules.pooling.Pooling``).
_TRANSFORMER, _POOLING, _NORMALIZE = "Transformer", "Pooling", "Normalize"
#: ST's pooling flags (``Pooling.get_config_dict`` before v6) and the mode each stands for; xl pools mean, cls, max.
POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
XL_POOLINGS = ("mean", "cls", "max")
_HONOURED = "xl runs Transformer → Pooling (mean, cls or max) → Normalize, as sentence-transformers would"


@dataclass(frozen=True)
class STSettings:
    """What a sentence-transformers directory says about how to embed with it.

    ``prefix`` None: the directory names no prompts (``config_sentence_transformers.json`` is absent), so the
    model's other defaults apply; ``""``: ST puts nothing before the text. ``max_length`` None: not stated.
    """

    pooling: str  # mean | cls | max
    normalize: bool
    prefix: str | None
    max_length: int | None
    source: str  # the modules.json read


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        hint = "repair or remove it (sentence-transformers writes it with model.save(DIR))"
        raise ModelError(f"{what} is not readable JSON ({exc})", source=str(path), hint=hint) from None


def _refuse(message: str, path: Path) -> ModelError:
    return ModelError(message, source=str(path), hint=f"{_HONOURED}; load this model with sentence-transformers, "
                      "or remove the module it cannot honour")  # fmt: skip


def _pooling_mode(config: dict[str, Any], path: Path, hidden: int | None) -> str:
    """The one pooling mode of a Pooling module's config (v6's ``pooling_mode`` or the older flags)."""
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        modes = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else [repr(raw)]
    else:
        modes = [mode for flag, mode in POOLING_FLAGS.items() if config.get(flag)] or ["mean"]  # ST's default
    if len(modes) != 1:
        raise _refuse(f"the Pooling module concatenates {' + '.join(map(str, modes))} pooling; xl pools one way", path)
    if modes[0] not in XL_POOLINGS:
        raise _refuse(f"the Pooling module pools by {modes[0]!r}, which xl does not do", path)
    if config.get("include_prompt", True) is False:
        raise _refuse("the Pooling module leaves the prompt's tokens out (include_prompt false); xl pools them", path)
    width = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if hidden is not None and width is not None and width != hidden:
        raise ModelError(f"the Pooling module expects {width}-dimensional token states but the model's are {hidden}",
                         source=str(path), hint="the directory mixes two models: save it again")  # fmt: skip
    return str(modes[0])


def _max_length(directory: Path) -> int | None:
    """``max_seq_length`` of ``sentence_bert_config.json``, else (ST v6 keeps it there) the tokenizer config's
    ``model_max_length`` when one is set (transformers writes a huge number for "no limit")."""
    config_path = directory / ST_CONFIG
    config = _read_json(config_path, ST_CONFIG) if config_path.is_file() else {}
    if not isinstance(config, dict):
        raise ModelError(f"{ST_CONFIG} is not a JSON object", source=str(config_path))
    if config.get("do_lower_case"):
        raise _refuse(f"the Transformer lower-cases its input ({ST_CONFIG}: do_lower_case true); xl does not",
                      config_path)  # fmt: skip
    value = config.get("max_seq_length")
    if value is None:
        tokenizer_path = directory / "tokenizer_config.json"
        tokenizer = _read_json(tokenizer_path, "tokenizer_config.json") if tokenizer_path.is_file() else {}
        value = tokenizer.get("model_max_length") if isinstance(tokenizer, dict) else None
        if not isinstance(value, int) or value > 1_000_000:
            return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ModelError(f"max_seq_length {value!r} is not a length in tokens", source=str(config_path))
    return value


def _prefix(directory: Path) -> str | None:
    """The prompt ``SentenceTransformer.encode`` puts before every text: ``prompts[default_prompt_name]``."""
    path = directory / ST_MODEL_CONFIG
    if not path.is_file():
        return None
    config = _read_json(path, ST_MODEL_CONFIG)
    if not isinstance(config, dict):
        raise ModelError(f"{ST_MODEL_CONFIG} is not a JSON object", source=str(path))
    prompts = config.get("prompts") or {}
    name = config.get("default_prompt_name")
    if name is None:
        return ""
    if not isinstance(prompts, dict) or not isinstance(prompts.get(name), str):
        hint = f'add it to "prompts", or set default_prompt_name to one of {sorted(prompts or {})}'
        raise ModelError(f"default_prompt_name {name!r} names no prompt of {ST_MODEL_CONFIG}", source=str(path),
                         hint=hint)  # fmt: skip
    return str(prompts[name])


def read_st_settings(directory: Path, hidden: int | None = None) -> STSettings | None:
    """The embedding settings of a sentence-transformers directory (None without ``modules.json``).

    ``hidden``: the model's hidden size (``config.json``), checked against the Pooling module. Raises
    :class:`~xl.errors.ModelError` naming the module when the pipeline is one xl cannot run as ST would.
    """
    path = directory / MODULES
    if not path.is_file():
        return None
    modules = _read_json(path, MODULES)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelError(f"{MODULES} is not a list of modules", source=str(path))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    for module, kind in zip(modules, kinds, strict=True):
        if kind not in (_TRANSFORMER, _POOLING, _NORMALIZE):
            raise _refuse(f"{MODULES} names a module xl cannot honour: {module.get('type')!r} "
                          f"(module {module.get('idx', '?')}, at {module.get('path')!r})", path)  # fmt: skip
    if kinds not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise _refuse(f"{MODULES} runs {' → '.join(kinds) or 'no module'}; xl needs Transformer → Pooling "
                      "[→ Normalize]", path)  # fmt: skip
    if str(modules[0].get("path", "")).strip("./") != "":
        raise _refuse(f"the Transformer module lies in {modules[0].get('path')!r}; xl loads the model of the "
                      "directory itself (the layout of sentence-transformers 2 and later)", path)  # fmt: skip
    pooling_path = directory / str(modules[1].get("path", "")) / "config.json"
    pooling_config = _read_json(pooling_path, "the Pooling module's config") if pooling_path.is_file() else None
    if not isinstance(pooling_config, dict):
        raise ModelError("the Pooling module has no config.json", source=str(pooling_path),
                         hint="save the model again with sentence-transformers")  # fmt: skip
    return STSettings(pooling=_pooling_mode(pooling_config, pooling_path, hidden), normalize=_NORMALIZE in kinds,
                      prefix=_prefix(directory), max_length=_max_length(directory), source=str(path))  # fmt: skip


def st_files(*, hidden: int, pooling: str, normalize: bool, max_length: int, prefix: str) -> dict[str, bytes]:
    """The module files of a sentence-transformers directory around an xl model: {relative path: bytes}.

    Written as ``SentenceTransformer.save`` writes them in the layout every version reads (v2-v6): the model at
    ``""``; ``model_args`` ``add_pooling_layer: false`` because xl saves encoders without the (unused) pooler,
    which ST would otherwise create at random and warn about; the prefix as the default prompt ``query``.
    """
    if pooling not in XL_POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {XL_POOLINGS}")
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": "sentence_transformers.models.Normalize"})
    flags = {flag: mode == pooling for flag, mode in POOLING_FLAGS.items()}
    prompts = {"query": prefix} if prefix else {}
    files = {
        MODULES: modules,
        ST_CONFIG: {"max_seq_length": max_length, "do_lower_case": False, "model_args": {"add_pooling_layer": False}},
        f"{POOLING_DIR}/config.json": {"word_embedding_dimension": hidden, **flags, "include_prompt": True},
        ST_MODEL_CONFIG: {"model_type": "SentenceTransformer", "prompts": prompts,
                          "default_prompt_name": "query" if prefix else None, "similarity_fn_name": "cosine"},
    }  # fmt: skip
    out = {name: (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode() for name, value in files.items()}
    if normalize:
        out[f"{NORMALIZE_DIR}/config.json"] = b"{}\n"  # Normalize has no settings; ST < 6 writes no file at all
    return out


def write_st_files(directory: Path, **settings: Any) -> list[str]:
    """Write :func:`st_files` into ``directory`` (a staging folder that is renamed into place as a whole, so the
    files appear with the model or not at all); the top-level names written."""
    for name, data in st_files(**settings).items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sorted({name.split("/", 1)[0] for name in st_files(**settings)})
