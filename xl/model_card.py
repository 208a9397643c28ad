"""The model card (``README.md``) of an ``xl finetune`` run directory, generated from its manifest.

The card is what the Hugging Face hub shows and what ``huggingface_hub.ModelCard.load`` parses: YAML front
matter between ``---`` lines (``base_model``, ``library_name``, ``tags``, ``pipeline_tag``, ``language``,
``datasets``, a ``model-index`` with the dev-set metrics of the kept step, as sentence-transformers' own card
writes them), then a body with the command that made the run and how to load it in xl and in
sentence-transformers. Everything on it comes from ``xl-finetune.json`` and ``xl-model.json``; nothing is
guessed, and what the manifest does not know (no dev set, no language field in the data) is left out. The front
matter is written with PyYAML's ``safe_dump`` (installed with transformers and huggingface_hub), so quoting is
PyYAML's, not hand-made.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD = "README.md"

#: The hub's task type of each xl task (the ``task.type`` of a model-index result) and its pipeline.
_HUB_TASKS = {
    "sts": ("semantic-similarity", "Semantic Similarity"),
    "classify": ("text-classification", "Text Classification"),
    "qa": ("question-answering", "Question Answering"),
    "align": ("translation-retrieval", "Translation Retrieval"),
}
#: Options that only say where or how often, never what is trained: left off the reconstructed command.
_NOT_SHOWN = {"resume", "overwrite"}


def command_line(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """The ``xl finetune`` command of the recorded options: each one that differs from its default
    (``defaults``: option name → default, from ``xl.finetune.FinetuneOptions``), by its flag (paths as recorded:
    absolute)."""
    words = ["xl", "finetune"]
    for name in ("task", "train", "dev", "output", "model", "init"):
        value = options.get(name)
        if value is not None and value != defaults.get(name, object()):
            words += ["-o" if name == "output" else f"--{name}", str(value)]
    for name, value in options.items():
        if name in ("task", "train", "dev", "output", "model", "init") or name in _NOT_SHOWN:
            continue
        if name not in defaults or value == defaults[name]:
            continue
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, dict):
            words += [flag, ",".join(f"{k}={v}" for k, v in value.items())]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _metrics(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dev metrics of the kept step, as model-index metrics (numbers only; the CIs stay in the manifest)."""
    chosen = manifest.get("chosen") or {}
    rows = [e for e in manifest.get("evaluations") or [] if e.get("step") == chosen.get("step")]
    if not rows:
        return []
    dev = rows[-1].get("dev") or {}
    skip = {"n", "selection_metric", "selection_name"}
    return [{"type": key, "value": float(value), "name": f"dev {key}"} for key, value in dev.items()
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)]  # fmt: skip


def _languages(langs: list[str]) -> list[str]:
    """The ISO 639 codes in the data's ``lang`` values (an align pair ``en-de`` names two; a script subtag such
    as ``Hans`` in ``zh-Hans`` is not a language)."""
    codes = {part.lower() for lang in langs for part in str(lang).replace("_", "-").split("-")
             if part.isalpha() and 2 <= len(part) <= 3}  # fmt: skip
    return sorted(codes)


def _base_name(base: Mapping[str, Any]) -> str:
    """The base model as a card names it: a hub id as given, else the model's name (a directory without a
    name of its own: its folder's name, not a path of this machine)."""
    if base.get("path") is None:
        return str(base.get("spec"))
    name = str(base.get("name"))
    return Path(name).name if name == base.get("path") or "/" in name else name


def front_matter(manifest: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The card's metadata (see the module docstring)."""
    task = str(manifest.get("task"))
    base = manifest.get("base_model") or {}
    train, dev = manifest.get("train") or {}, manifest.get("dev")
    languages = _languages([*(train.get("langs") or []), *([dev["lang"]] if dev and dev.get("lang") else [])])
    data: dict[str, Any] = {"train": {"file": Path(str(train.get("path"))).name, "sha256": train.get("sha256"),
                                      "examples": train.get("examples")}}  # fmt: skip
    if dev:
        data["dev"] = {"file": Path(str(dev.get("path"))).name, "sha256": dev.get("sha256"),
                       "examples": dev.get("examples"), "lang": dev.get("lang")}  # fmt: skip
    hub_type, hub_name = _HUB_TASKS.get(task, (task, task))
    meta: dict[str, Any] = {
        "base_model": _base_name(base),
        "library_name": "sentence-transformers",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction", "xl", f"xl-{task}",
                 "cross-lingual-transfer"],
        "pipeline_tag": "sentence-similarity",
    }  # fmt: skip
    if languages:
        meta["language"] = languages
    meta["datasets"] = [entry["file"] for entry in data.values()]
    meta["xl_data"] = data
    metrics = _metrics(manifest)
    if metrics and dev:
        meta["model-index"] = [{
            "name": f"{_base_name(base)}+{task}",
            "results": [{"task": {"type": hub_type, "name": hub_name},
                         "dataset": {"name": data["dev"]["file"], "type": data["dev"]["file"], "split": "dev"},
                         "metrics": metrics}],
        }]  # fmt: skip
    return meta


def render_card(manifest: Mapping[str, Any], info: Mapping[str, Any], directory: Path,
                option_defaults: Mapping[str, Any]) -> str:  # fmt: skip
    """The whole ``README.md``: front matter and body."""
    import yaml

    meta = front_matter(manifest, info)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    task, chosen = manifest.get("task"), manifest.get("chosen") or {}
    base = _base_name(manifest.get("base_model") or {})
    kept = f"step {chosen.get('step')} of {manifest.get('steps')} ({chosen.get('by')})"
    metric = chosen.get("metric")
    score = f"; dev {chosen.get('metric_name')} {metric:.4f}" if isinstance(metric, (int, float)) else ""
    prefix = info.get("prefix") or ""
    head = info.get("head") or {}
    where = shlex.quote(str(directory))
    lines = [
        f"# {_base_name(manifest.get('base_model') or {})}+{task}",
        "",
        f"`{base}` fine-tuned by `xl finetune` for **{task}**: kept {kept}{score}.",
        f"Pooling {info.get('pooling', 'mean')}" + (", L2-normalised" if head.get("normalize") else "")
        + f", max length {head.get('max_length')} tokens"
        + (f", prefix `{prefix!r}`" if prefix else ", no prefix") + ".",
        "",
        "## How it was made",
        "",
        "```bash",
        command_line(manifest.get("options") or {}, option_defaults),
        "```",
        "",
        f"xl {manifest.get('xl_version')}, {manifest.get('device')} / {manifest.get('dtype')}, "
        f"{manifest.get('processes')} process(es). Every option, input hash and dev evaluation is in "
        "`xl-finetune.json`; the training log in `log.jsonl`.",
        "",
        "## Loading it",
        "",
        "```bash",
        f"xl embed sentences.txt --model {where} > embeddings.npy",
        f"xl eval {'retrieval' if task == 'align' else task} DATA --model {where}",
        "```",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f"model = SentenceTransformer({str(directory)!r})",
        "embeddings = model.encode([\"...\"])" + ("  # the prefix is the default prompt: not added by hand"
                                                  if prefix else ""),
        "```",
        "",
        "Both give the same embeddings: the module files beside the weights (`modules.json`, "
        "`sentence_bert_config.json`, `1_Pooling/`, `config_sentence_transformers.json`) say the pooling, "
        "normalisation, prompt and max length xl uses.",
        "",
    ]  # fmt: skip
    return f"---\n{front}---\n\n" + "\n".join(lines)
