"""``make bench-finetune``: ``xl finetune --task sts`` against sentence-transformers' trainer, same run, same machine.

Both train the default model as a siamese bi-encoder on English STSb train (``xl data convert stsb train``)
with CosineSimilarityLoss (MSE of the pair cosine against score / 5), ``--steps`` optimizer steps (default
200) of batch size 16, bf16 autocast, AdamW at 2e-5 with 10% linear warm-up then linear decay, weight decay
0.01, gradient clipping at 1.0, inputs truncated at 128 tokens, the model's ``query: `` prefix, seed 0.
Each variant runs in its own process; throughput is training examples over the wall-clock of the training
loop alone (model loading, tokenizer set-up and saving excluded: sentence-transformers' ``train_runtime``,
xl's loop time from its manifest). Both saved models are then scored by the same evaluator
(``xl eval sts --model DIR stsb:dev``: Spearman × 100 of cosines on the 1,500 dev pairs).

Variants: ``xl`` (defaults: length-grouped batches), ``xl --freeze-embeddings`` (the 96 M-parameter word
embedding matrix fixed) and ``sentence-transformers`` (``SentenceTransformerTrainer``, its default sampler).
Target: xl at least 1.2x the examples per second at a dev Spearman within one point.

Writes the table between the ``bench-finetune`` markers of README.md (unless ``--no-readme``) and prints
JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402

BATCH = 16
LR = 2e-5
MAX_LENGTH = 128
TARGET_SPEEDUP = 1.2
TARGET_SPEARMAN_GAP = 1.0

#: sentence-transformers' trainer on the same data, written as a model directory xl can evaluate.
ST_WORKER = r"""
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
train_path, out_dir, device = sys.argv[1], sys.argv[2], sys.argv[7]
steps, batch, lr, max_length = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
from datasets import Dataset
from sentence_transformers import SentenceTransformer, losses, models
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import PreTrainedTokenizerFast
from xl.models.registry import default_model_dir
path = str(default_model_dir())
prefix = json.load(open(path + "/xl-model.json")).get("prefix", "")
module = models.Transformer(path, max_seq_length=max_length)
# the model's shipped tokenizer.json, as xl uses (transformers 5 rebuilds XLM-R's and differs slightly)
module.processor = PreTrainedTokenizerFast(
    tokenizer_file=path + "/tokenizer.json", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    sep_token="</s>", pad_token="<pad>", cls_token="<s>", mask_token="<mask>")
pooling = models.Pooling(module.get_word_embedding_dimension(), "mean")
model = SentenceTransformer(modules=[module, pooling], device=device)
rows = [json.loads(line) for line in open(train_path, encoding="utf-8")]
data = Dataset.from_dict({"sentence1": [prefix + r["text1"] for r in rows],
                          "sentence2": [prefix + r["text2"] for r in rows],
                          "score": [r["score"] / 5.0 for r in rows]})
args = SentenceTransformerTrainingArguments(
    output_dir=out_dir + "-trainer", max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
    warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", bf16=True,
    use_cpu=device == "cpu", seed=0, save_strategy="no", report_to=[], logging_strategy="no", disable_tqdm=True,
    dataloader_drop_last=False)
loss = losses.CosineSimilarityLoss(model)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
result = trainer.train()
model[0].auto_model.save_pretrained(out_dir, safe_serialization=True)
module.processor.backend_tokenizer.save(out_dir + "/tokenizer.json")
info = {"name": "sentence-transformers", "prefix": prefix, "pooling": "mean"}
json.dump(info, open(out_dir + "/xl-model.json", "w"))
print(json.dumps({"train_seconds": result.metrics["train_runtime"], "examples": steps * batch}))
"""


def _convert(split: str, target: Path) -> None:
    result = run_measured([sys.executable, "-m", "xl", "data", "convert", "stsb", split, "en", "-o", str(target), "-q"],
                          target.parent)  # fmt: skip
    del result


def _dev_spearman(model_dir: Path, tmp: Path, device: str) -> float:
    result = run_measured([sys.executable, "-m", "xl", "eval", "sts", "--model", str(model_dir), "stsb:dev", "-q",
                           "--device", device], tmp)  # fmt: skip
    return float(json.loads(result["stdout"].splitlines()[0])["spearman"])


def _xl(name: str, train: Path, out: Path, steps: int, extra: list[str], tmp: Path, device: str) -> dict[str, Any]:
    args = [sys.executable, "-m", "xl", "finetune", "--task", "sts", "--train", str(train), "-o", str(out),
            "--max-steps", str(steps), "--batch-size", str(BATCH), "--lr", str(LR), "--warmup", "0.1",
            "--weight-decay", "0.01", "--max-length", str(MAX_LENGTH), "--dtype", "bfloat16", "--seed", "0",
            "--log-every", "1000000", "--device", device, "-q", *extra]  # fmt: skip
    measured = run_measured(args, tmp)
    manifest = json.loads((out / "xl-finetune.json").read_text())
    return {"variant": name, "train_seconds": manifest["seconds"], "examples": manifest["examples_seen"],
            "process_seconds": measured["seconds"], "peak_rss_mb": measured["peak_rss_mb"]}  # fmt: skip


def _st(train: Path, out: Path, steps: int, tmp: Path, device: str) -> dict[str, Any]:
    measured = run_measured([sys.executable, "-c", ST_WORKER, str(train), str(out), str(steps), str(BATCH), str(LR),
                             str(MAX_LENGTH), device], tmp)  # fmt: skip
    row = json.loads(measured["stdout"].strip().splitlines()[-1])
    return {"variant": "sentence-transformers", **row, "process_seconds": measured["seconds"],
            "peak_rss_mb": measured["peak_rss_mb"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps of batch 16 (default 200)")
    parser.add_argument("--device", default="cpu", help="cpu (the README figures) or cuda")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="xl-bench-finetune-") as tmp_name:
        tmp = Path(tmp_name)
        train = tmp / "stsb-train.jsonl"
        _convert("train", train)
        rows = [
            _xl("xl", train, tmp / "xl", args.steps, [], tmp, args.device),
            _xl(
                "xl --freeze-embeddings",
                train,
                tmp / "xl-frozen",
                args.steps,
                ["--freeze-embeddings"],
                tmp,
                args.device,
            ),
            _st(train, tmp / "st", args.steps, tmp, args.device),
        ]
        for row, folder in zip(rows, ("xl", "xl-frozen", "st"), strict=True):
            row["examples_per_second"] = row["examples"] / row["train_seconds"]
            row["dev_spearman"] = _dev_spearman(tmp / folder, tmp, args.device)
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    peer = rows[-1]
    for row in rows:
        row["speedup_vs_st"] = row["examples_per_second"] / peer["examples_per_second"]
        row["spearman_minus_st"] = row["dev_spearman"] - peer["dev_spearman"]
        row.update({"steps": args.steps, "batch_size": BATCH, "load_before": load_before, "load_after": load_after})
        print(json.dumps(row))
    xl_row = rows[0]
    met_speed = xl_row["speedup_vs_st"] >= TARGET_SPEEDUP
    met_quality = abs(xl_row["spearman_minus_st"]) <= TARGET_SPEARMAN_GAP or xl_row["spearman_minus_st"] > 0
    cpu = platform.processor() or platform.machine()
    lines = [
        " ".join(
            [
                f"Measured by `make bench-finetune` ({cpu}, {os.cpu_count()} cores, device {args.device};",
                f"load average {load_before} before, {load_after} after; {args.steps} steps × batch {BATCH} of",
                f"English STSb train, bf16 autocast, lr {LR}, max length {MAX_LENGTH}; examples/s over the training",
                "loop alone; dev Spearman by `xl eval sts` on stsb dev for every model).",
            ]
        ),
        "",
        "| run | examples/s | × sentence-transformers | dev Spearman | Δ vs ST | loop s | process s | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['examples_per_second']:.1f} | {row['speedup_vs_st']:.2f} | "
                     f"{row['dev_spearman']:.2f} | {row['spearman_minus_st']:+.2f} | {row['train_seconds']:.0f} | "
                     f"{row['process_seconds']:.0f} | {row['peak_rss_mb']:.0f} |")  # fmt: skip
    lines += [
        "",
        f"Targets: xl at least {TARGET_SPEEDUP}× sentence-transformers' examples/s: {xl_row['speedup_vs_st']:.2f}× — "
        + ("met" if met_speed else "**missed**")
        + f"; dev Spearman within {TARGET_SPEARMAN_GAP:g} point (or above): {xl_row['spearman_minus_st']:+.2f} — "
        + ("met" if met_quality else "**missed**"),
    ]
    table = "\n".join(lines)
    print(table, file=sys.stderr)
    if not args.no_readme:
        write_readme_section("bench-finetune", table)


if __name__ == "__main__":
    main()
