"""``make bench-embed``: xl embed against sentence-transformers on the default model, same run, same machine.

Speed: 2,000 FLORES-200 dev sentences in 8 scripts (250 each), batch size 32 everywhere, the model
loaded before the clock starts, each variant in its own process (so peak RSS is its own):
``xl`` with default settings, ``xl --dtype float32``, sentence-transformers ``encode`` in fp32 (its
defaults) and sentence-transformers with bf16 weights. Printed: sentences/s, ratios to the peers, min row
cosine to the fp32 reference (sentence-transformers fp32), peak RSS.

Other CPU runtimes (``pip install -e '.[bench]'``; each skipped with a note when its package is missing, and
on ``--device cuda``): the default model exported once with ``torch.onnx.export`` (input_ids + attention_mask ->
last_hidden_state, dynamic batch and sequence axes; cached under the xl home) and run by ONNX Runtime in fp32,
by ONNX Runtime after int8 dynamic quantisation (``quantize_dynamic`` with the settings of sentence-transformers'
``export_dynamic_quantized_onnx_model(model, "avx512_vnni", ...)``, the config of its published
``model_qint8_avx512_vnni.onnx`` files (the function has no default; Optimum's ``avx512_vnni`` with
``is_static=False``): QInt8 symmetric weights, per channel, full range (``reduce_range=False``), uint8
asymmetric activations, every op type ONNX Runtime quantises dynamically, the word-embedding Gather included),
and by OpenVINO in bf16 (f32 where the CPU has no native bf16). They get xl's tokens and xl's batches
(:func:`xl.models.inference.tokenize_texts`, :func:`xl.core.batching.plan_batches` with ``xl embed``'s window,
token budget and batch size) and xl's mean pooling over the mask, in numpy. Printed for every run:
sentences/s, the ratio to xl's defaults, min and mean row cosine to xl's fp32 embeddings, and the achieved
GFLOP/s: each batch's padded tokens × 2 × the non-embedding weights (42.5 MFLOP per token for the default
model), plus attention (4 · layers · L² · hidden per sequence of padded length L), over the timed seconds.

Memory: the real ``xl embed`` command on 5,000 and on 100,000 Tatoeba sentences (cycled over all its
languages); the difference of peak RSS must stay under 300 MB (streaming).

``--quick``: 8 sentences per script (64), every run, a warm-up of 8 sentences, no memory runs, README.md left
alone: a check that all the runs work and agree (a few minutes once the ONNX files are cached; not for timings).

Writes the tables between the ``bench-embed`` markers of README.md and prints JSON lines.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402
from xl.config import data_dir, home_dir  # noqa: E402

LANGS = ("eng_Latn", "rus_Cyrl", "zho_Hans", "arb_Arab", "hin_Deva", "kor_Hang", "tha_Thai", "ell_Grek")
PER_LANG = 250
QUICK_PER_LANG = 8
BATCH = 32
#: The other CPU runtimes: variant -> (name in the tables, the packages it needs).
PEERS = {
    "ort-fp32": ("ONNX Runtime fp32", ("onnxruntime",)),
    "ort-int8": ("ONNX Runtime int8 (dynamic quantisation)", ("onnxruntime", "onnx")),
    "openvino": ("OpenVINO", ("openvino",)),
}
OPSET = 17

WORKER = r"""
import json, os, sys, time
import numpy as np
variant, sentences_path, out_path = sys.argv[1:4]
device = os.environ.get("XL_BENCH_DEVICE", "cpu")
warmup = int(os.environ.get("XL_BENCH_WARMUP", 2 * BATCH))  # sentences encoded before the clock starts
texts = open(sentences_path, encoding="utf-8").read().split("\n")[:-1]
shapes = []  # (rows, padded length) of every batch of the timed run: the FLOP count
def record(module, args, output):
    shapes.append(list(output.shape[:2]))
if variant.startswith("xl"):
    from xl.embed import EmbedOptions, embed_texts
    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model
    encoder = Encoder(resolve_model("default"), dtype="float32" if variant == "xl-fp32" else "auto", device=device)
    dtype = encoder.dtype_name
    encoder.model.embeddings.register_forward_hook(record)
    embed_texts(encoder, texts[:warmup], EmbedOptions(batch_size=BATCH))  # warm-up (CUDA kernel set-up)
    shapes.clear()
    start = time.perf_counter()
    X = embed_texts(encoder, texts, EmbedOptions(batch_size=BATCH))
elif variant in ("ort-fp32", "ort-int8", "openvino"):
    from types import SimpleNamespace
    from xl.core.batching import plan_batches
    from xl.embed import EmbedOptions
    from xl.models.inference import cpu_supports_bf16, load_tokenizer, pad_id_of, resolve_max_length, tokenize_texts
    from xl.models.registry import resolve_model
    ref = resolve_model("default")
    config = SimpleNamespace(**json.loads((ref.path / "config.json").read_text()))
    tokenizer = load_tokenizer(str(ref.path))
    max_length, pad_id, options = resolve_max_length(None, ref, 512, config), pad_id_of(config), EmbedOptions()
    threads = len(os.sched_getaffinity(0))
    if variant.startswith("ort"):
        import onnxruntime as ort
        ort_options = ort.SessionOptions()
        ort_options.intra_op_num_threads, ort_options.inter_op_num_threads = threads, 1
        runtime = ort.InferenceSession(sys.argv[4], ort_options, providers=["CPUExecutionProvider"])
        dtype = "int8" if variant == "ort-int8" else "float32"
        def forward(input_ids, mask):
            return runtime.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask})[0]
    else:
        import openvino as ov
        core = ov.Core()
        precision = "bf16" if cpu_supports_bf16() else "f32"
        compiled = core.compile_model(core.read_model(sys.argv[4]), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                      "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        dtype = "bfloat16" if precision == "bf16" else "float32"
        def forward(input_ids, mask):
            return request.infer({"input_ids": input_ids, "attention_mask": mask})[compiled.output(0)]
    def encode(texts):
        # xl embed's windows, tokens, batches and mean pooling (xl.models.inference.pool), in numpy
        out = np.zeros((len(texts), int(config.hidden_size)), np.float32)
        for first in range(0, len(texts), options.window):
            ids = tokenize_texts(tokenizer, texts[first:first + options.window], prefix=ref.prefix,
                                 max_length=max_length).ids
            for batch in plan_batches([len(row) for row in ids], max_tokens=options.max_tokens, max_rows=BATCH):
                longest = max(len(ids[i]) for i in batch)
                input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
                mask = np.zeros((len(batch), longest), dtype=np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, :len(ids[i])] = ids[i]
                    mask[row, :len(ids[i])] = 1
                states = np.asarray(forward(input_ids, mask), dtype=np.float32)
                weights = mask[:, :, None].astype(np.float32)
                pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
                out[[first + i for i in batch]] = pooled
                shapes.append([len(batch), longest])
        return out
    encode(texts[:warmup])  # warm-up, as for xl
    shapes.clear()
    start = time.perf_counter()
    X = encode(texts)
else:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from xl.models.registry import default_model_dir
    module = models.Transformer(str(default_model_dir()), max_seq_length=512)
    st = SentenceTransformer(modules=[module, models.Pooling(module.get_word_embedding_dimension(), "mean")],
                             device=device)
    # transformers 5 rebuilds the XLM-R tokenizer from the vocabulary and differs from the model's shipped
    # tokenizer.json on ~4% of these sentences (trailing spaces, some Greek/Thai/Arabic); give the peer the
    # shipped one, as xl uses, so the cosine column compares numerics and not tokenizers.
    from transformers import PreTrainedTokenizerFast
    module.processor = PreTrainedTokenizerFast(
        tokenizer_file=str(default_model_dir() / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    if variant == "st-bf16":
        st = st.to(torch.bfloat16)
    dtype = "bfloat16" if variant == "st-bf16" else "float32"
    prefixed = ["query: " + t for t in texts]
    module.auto_model.embeddings.register_forward_hook(record)
    st.encode(prefixed[:warmup], batch_size=BATCH)  # warm-up, as for xl
    shapes.clear()
    start = time.perf_counter()
    X = st.encode(prefixed, batch_size=BATCH, convert_to_numpy=False)
    X = torch.stack([x.float() for x in X]).cpu().numpy()
seconds = time.perf_counter() - start
np.save(out_path, X.astype(np.float32))
print(json.dumps({"variant": variant, "seconds": seconds, "dtype": dtype, "shapes": shapes}))
""".replace("BATCH", str(BATCH))


#: Exports the default model to ONNX (argv[1]) and, when argv[2] is given, quantises it to int8 there; each
#: file is written under a temporary name and renamed, and kept (a cache) for the next run.
PREPARE = r"""
import json, os, sys, time, warnings
onnx_path, int8_path = sys.argv[1], sys.argv[2]
timings = {}
if not os.path.exists(onnx_path):
    import torch
    from xl.models.inference import load_encoder
    from xl.models.registry import resolve_model

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    wrapped = LastHiddenState(load_encoder(resolve_model("default"))).eval()
    # a padded example, so that the traced graph keeps the attention mask
    ids = torch.tensor([[0, 6, 7, 8, 2], [0, 9, 2, 1, 1]])
    axes = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "last_hidden_state")}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        # dynamo=False: the TorchScript exporter, which needs no onnxscript
        torch.onnx.export(wrapped, (ids, (ids != 1).long()), onnx_path + ".part", input_names=["input_ids",
                          "attention_mask"], output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    os.replace(onnx_path + ".part", onnx_path)
    timings["export_s"] = time.perf_counter() - start
if int8_path and not os.path.exists(int8_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    start = time.perf_counter()
    # Optimum's AutoQuantizationConfig.avx512_vnni(is_static=False), what sentence-transformers'
    # export_dynamic_quantized_onnx_model is documented with: QInt8 symmetric weights per channel, full range;
    # op types: ONNX Runtime's default (IntegerOpsRegistry), as Optimum's.
    quantize_dynamic(onnx_path, int8_path + ".part.onnx", per_channel=True, reduce_range=False,
                     weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    os.replace(int8_path + ".part.onnx", int8_path)
    timings["quantize_s"] = time.perf_counter() - start
print(json.dumps(timings))
""".replace("OPSET", str(OPSET))


def _missing(packages: tuple[str, ...]) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def _onnx_files(fingerprint: str, tmp: Path, int8: bool) -> tuple[Path, Path | None]:
    """The default model as ONNX (and its int8 copy when asked), exported once and cached under the xl home."""
    torch_version = importlib.metadata.version("torch")
    folder = home_dir() / "bench" / "onnx" / f"{fingerprint.split(':')[-1][:16]}-torch{torch_version}-opset{OPSET}"
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    int8_path = folder / f"model-int8-ort{importlib.metadata.version('onnxruntime')}.onnx" if int8 else None
    if not onnx_path.is_file() or (int8_path is not None and not int8_path.is_file()):
        measured = run_measured([sys.executable, "-c", PREPARE, str(onnx_path), str(int8_path or "")], tmp)
        print(f"onnx files in {folder}: {measured['stdout'].strip()}", file=sys.stderr)
    return onnx_path, int8_path


def _per_token_flops(config: dict[str, Any]) -> int:
    """2 × the non-embedding weights: the matrix products of attention (Q, K, V, output) and feed-forward."""
    hidden, inner = int(config["hidden_size"]), int(config["intermediate_size"])
    return 2 * int(config["num_hidden_layers"]) * (4 * hidden * hidden + 2 * hidden * inner)


def _flops(shapes: list[list[int]], config: dict[str, Any]) -> float:
    """Forward FLOPs of batches of (rows, padded length): every padded token at :func:`_per_token_flops`, plus
    attention scores and mixing, 4 · layers · L² · hidden per row of padded length L."""
    attention = 4 * int(config["num_hidden_layers"]) * int(config["hidden_size"])
    per_token = _per_token_flops(config)
    return float(sum(rows * length * (per_token + attention * length) for rows, length in shapes))


def _sentences(root: Path, per_lang: int = PER_LANG) -> tuple[list[str], int]:
    """The benchmark sentences, NFC-normalised, and how many NFC changed.

    xl NFC-normalises its input and sentence-transformers does not; both get NFC text here so that the
    cosine column measures the numerics (dtype, batching) and not that preprocessing difference (FLORES
    Hindi has decomposed nukta sequences: about 1 in 8 sentences change, cosine down to ~0.98).
    """
    texts: list[str] = []
    for lang in LANGS:
        lines = (root / "flores200" / "dev" / f"{lang}.dev").read_text(encoding="utf-8").split("\n")
        texts += lines[:per_lang]
    normalized = [unicodedata.normalize("NFC", t) for t in texts]
    return normalized, sum(a != b for a, b in zip(texts, normalized, strict=True))


def _run_variant(variant: str, sentences: Path, out: Path, tmp: Path, *extra: str) -> dict[str, Any]:
    """One speed variant in its own process: the worker's timing of the encode, the process's peak RSS."""
    measured = run_measured([sys.executable, "-c", WORKER, variant, str(sentences), str(out), *extra], tmp)
    row = dict(json.loads(measured["stdout"].strip().splitlines()[-1]))
    row["peak_rss_mb"] = measured["peak_rss_mb"]
    return row


def _cosines(X: np.ndarray, R: np.ndarray) -> np.ndarray:
    return (X * R).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(R, axis=1)


def _min_cosine(X: np.ndarray, R: np.ndarray) -> float:
    return float(_cosines(X, R).min())


NAMES = {"xl": "`xl embed` (defaults)", "xl-fp32": "`xl embed --dtype float32`",
         "st-fp32": "sentence-transformers fp32", "st-bf16": "sentence-transformers bf16",
         **{variant: name for variant, (name, _) in PEERS.items()}}  # fmt: skip


def _run_peers(
    sentences: Path, tmp: Path, fingerprint: str, device: str, notes: list[str]
) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """The other CPU runtimes whose packages are installed (a note for each one that is not run)."""
    if device != "cpu":
        notes.append(f"not run on --device {device}: {', '.join(name for name, _ in PEERS.values())} (CPU peers)")
        return []
    wanted = []
    for variant, (name, packages) in PEERS.items():
        missing = _missing(packages)
        if missing:
            notes.append(f"not run: {name} (not installed: {', '.join(missing)}; `pip install -e '.[bench]'`)")
        else:
            wanted.append(variant)
    if not wanted:
        return []
    onnx_path, int8_path = _onnx_files(fingerprint, tmp, "ort-int8" in wanted)
    done = []
    for variant in wanted:
        model = int8_path if variant == "ort-int8" else onnx_path
        row = _run_variant(variant, sentences, tmp / f"{variant}.npy", tmp, str(model))
        done.append((variant, row, np.load(tmp / f"{variant}.npy")))
    return done


def _runtime_table(results: list[dict[str, Any]], per_token: float, notes: list[str]) -> list[str]:
    """Every run against xl: speed, agreement with xl's fp32 embeddings, achieved FLOP rate."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"All runs against xl on the same sentences, each in its own process; the other runtimes on xl's token "
        f"batches and mean pooling, {threads} threads. GFLOP/s: the padded tokens of every batch × "
        f"{per_token / 1e6:.1f} MFLOP (2 × non-embedding weights) plus attention (4 · layers · L² · hidden per "
        "sentence padded to L), over the timed seconds.",
        "",
        "| run | dtype | sentences/s | × xl defaults | min cosine to xl fp32 | mean cosine to xl fp32 | GFLOP/s "
        "| peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {NAMES[r['variant']]} | {r['dtype']} | {r['sentences_per_s']:.0f} | {r['x_xl']:.2f} | "
            f"{r['min_cosine_to_xl_fp32']:.5f} | {r['mean_cosine_to_xl_fp32']:.5f} | {r['gflop_per_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (the README figures) or cuda")
    parser.add_argument("--per-lang", type=int, default=PER_LANG, help=f"sentences per script (default {PER_LANG})")
    parser.add_argument("--speed-only", action="store_true", help="skip the streaming-memory runs")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    quick = f"check that every run works: --per-lang {QUICK_PER_LANG} --speed-only --no-readme"
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args()
    if args.quick:
        args.per_lang, args.speed_only, args.no_readme = QUICK_PER_LANG, True, True
        os.environ["XL_BENCH_WARMUP"] = str(QUICK_PER_LANG)
    os.environ["XL_BENCH_DEVICE"] = args.device
    root = data_dir()
    from xl.models.registry import resolve_model

    ref = resolve_model("default")
    assert ref.path is not None
    config = json.loads((ref.path / "config.json").read_text())
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        texts, nfc_changed = _sentences(root, args.per_lang)
        sentences = tmp / "sentences.txt"
        sentences.write_text("\n".join(texts) + "\n", encoding="utf-8")
        outputs: dict[str, np.ndarray] = {}
        runs = [(v, _run_variant(v, sentences, tmp / f"{v}.npy", tmp)) for v in ("st-fp32", "st-bf16", "xl-fp32", "xl")]
        runs = [(v, row, np.load(tmp / f"{v}.npy")) for v, row in runs]
        runs += _run_peers(sentences, tmp, ref.fingerprint, args.device, notes)
        for variant, row, X in runs:
            outputs[variant] = X
            row["sentences_per_s"] = len(texts) / float(row["seconds"])
            shapes = row.pop("shapes")
            row["padded_tokens"] = sum(rows * length for rows, length in shapes)
            row["gflop_per_s"] = _flops(shapes, config) / float(row["seconds"]) / 1e9
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        for note in notes:
            print(note, file=sys.stderr)
        by = {str(r["variant"]): r for r in results}
        reference = outputs["st-fp32"]
        for r in results:
            r["min_cosine_to_fp32"] = _min_cosine(outputs[str(r["variant"])], reference)
            r["x_st_fp32"] = float(r["sentences_per_s"]) / float(by["st-fp32"]["sentences_per_s"])
            r["x_st_bf16"] = float(r["sentences_per_s"]) / float(by["st-bf16"]["sentences_per_s"])
            cosines = _cosines(outputs[str(r["variant"])], outputs["xl-fp32"])
            r["min_cosine_to_xl_fp32"], r["mean_cosine_to_xl_fp32"] = float(cosines.min()), float(cosines.mean())
            r["x_xl"] = float(r["sentences_per_s"]) / float(by["xl"]["sentences_per_s"])
        order = ["xl", "xl-fp32", *PEERS, "st-fp32", "st-bf16"]
        runtime_lines = _runtime_table(sorted(results, key=lambda r: order.index(r["variant"])),
                                       _per_token_flops(config), notes)  # fmt: skip

        if args.speed_only:
            print("\n".join(runtime_lines))
            for r in results:
                print(json.dumps({**r, "device": args.device}))
            return
        # Streaming memory: the real command on 5,000 and 100,000 sentences.
        pool: list[str] = []
        for path in sorted((root / "tatoeba").glob("tatoeba.*-eng.*")):
            pool += [line for line in path.read_text(encoding="utf-8").split("\n") if line]
        memory = {}
        for n in (5_000, 100_000):
            src = tmp / f"mem{n}.txt"
            src.write_text("\n".join(pool[i % len(pool)] for i in range(n)) + "\n", encoding="utf-8")
            measured = run_measured([sys.executable, "-m", "xl", "embed", str(src), "-o", str(tmp / f"mem{n}.npy"),
                                     "-q"], tmp)  # fmt: skip
            memory[n] = {"rows": n, "seconds": measured["seconds"], "peak_rss_mb": measured["peak_rss_mb"]}
            print(json.dumps(memory[n]), file=sys.stderr)

    from xl.models.inference import cpu_supports_bf16

    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    isa = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no native bf16"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {isa}{'' if cpu_supports_bf16() else ' (fp32 default)'}"
    lines = [
        f"Measured by `make bench-embed` ({machine}; {len(LANGS)} scripts × {args.per_lang} FLORES-200 dev "
        f"sentences, NFC-normalised for both tools ({nfc_changed} changed); batch size {BATCH}; model loaded "
        "before the clock starts).",
        "",
        "| run | dtype | sentences/s | × ST fp32 | × ST bf16 | min cosine to fp32 | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r["variant"].startswith(("xl", "st")):
            continue
        lines.append(
            f"| {NAMES[str(r['variant'])]} | {r['dtype']} | {float(r['sentences_per_s']):.0f} | "
            f"{float(r['x_st_fp32']):.2f} | {float(r['x_st_bf16']):.2f} | {float(r['min_cosine_to_fp32']):.5f} | "
            f"{float(r['peak_rss_mb']):.0f} |"
        )
    growth = memory[100_000]["peak_rss_mb"] - memory[5_000]["peak_rss_mb"]
    lines += [
        "",
        f"Streaming memory (`xl embed` command, Tatoeba sentences): peak RSS {memory[5_000]['peak_rss_mb']:.0f} MB "
        f"for 5,000 rows, {memory[100_000]['peak_rss_mb']:.0f} MB for 100,000 rows "
        f"(+{growth:.0f} MB; target ≤ 300 MB; {memory[100_000]['seconds']:.0f} s wall for 100,000).",
        "",
        *runtime_lines,
    ]
    table = "\n".join(lines)
    print(table)
    for r in results:
        print(json.dumps(r))
    if not args.no_readme:
        write_readme_section("bench-embed", table)


if __name__ == "__main__":
    main()
