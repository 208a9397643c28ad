"""``make bench-embed``: xl embed against sentence-transformers on the default model, same run, same machine.

Speed: 2,000 FLORES-200 dev sentences in 8 scripts (250 each), batch size 32 everywhere, the model
loaded before the clock starts, each variant in its own process (so peak RSS is its own), ``--rounds`` times
interleaved (the median counts): ``xl`` with default settings, ``xl`` with plain ``nn.Linear`` layers
(``XL_PACKED_LINEARS=0``, what :mod:`xl.models.packed` gains), ``xl --dtype float32``, sentence-transformers
``encode`` in fp32 (its defaults) and sentence-transformers with bf16 weights. Printed: sentences/s, ratios to the
peers, min row cosine to the fp32 reference (sentence-transformers fp32), peak RSS. Then the paired comparison
(:data:`PAIRED`): xl, xl unpacked and OpenVINO taking turns in one process, ``--paired-rounds`` times.

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
ROUNDS = 3
PAIRED_ROUNDS = 18
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
if variant == "xl-unpacked":
    os.environ["XL_PACKED_LINEARS"] = "0"  # plain nn.Linear layers: what the packing gains, in the same run
def record(module, args, output):
    shapes.append(list(output.shape[:2]))
if variant.startswith("xl"):
    from xl.embed import EmbedOptions, embed_texts
    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model
    encoder = Encoder(resolve_model("default"), dtype="float32" if variant == "xl-fp32" else "auto", device=device)
    dtype = encoder.dtype_name
    encoder.model.embeddings.register_forward_hook(record)
    dtype += f" ({encoder.packed_linears} packed)" if encoder.packed_linears else ""
    embed_texts(encoder, texts[:warmup], EmbedOptions(batch_size=BATCH))  # warm-up (CUDA kernel set-up)
    shapes.clear()
    start = time.perf_counter()
    X = embed_texts(encoder, texts, EmbedOptions(batch_size=BATCH))
elif variant in ("ort-fp32", "ort-int8", "openvino"):
    from bench._peers import PeerEncoder, peer_forward
    forward, dtype = peer_forward(variant, sys.argv[4])
    peer = PeerEncoder(forward, BATCH)
    peer.encode(texts[:warmup])  # warm-up, as for xl
    shapes = peer.shapes
    shapes.clear()
    start = time.perf_counter()
    X = peer.encode(texts)
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


#: xl (packed), xl with plain nn.Linear layers and OpenVINO in one process, taking turns on the same
#: sentences (argv[1], every 4th), the order rotated each round: a paired comparison that the machine's drift
#: (±30% over minutes on a shared host) cannot bias, as it can runs in separate processes minutes apart.
PAIRED = r"""
import json, os, sys, time
import numpy as np
from bench._peers import PeerEncoder, peer_forward
from xl.embed import EmbedOptions, embed_texts
from xl.models.inference import Encoder
from xl.models.registry import resolve_model
sentences_path, onnx_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = open(sentences_path, encoding="utf-8").read().split("\n")[:-1][::4]
packed = Encoder(resolve_model("default"), device="cpu")
os.environ["XL_PACKED_LINEARS"] = "0"
plain = Encoder(resolve_model("default"), device="cpu")
peer = PeerEncoder(peer_forward("openvino", onnx_path)[0], BATCH)
runs = {"xl": lambda: embed_texts(packed, texts, EmbedOptions(batch_size=BATCH)),
        "xl-unpacked": lambda: embed_texts(plain, texts, EmbedOptions(batch_size=BATCH)),
        "openvino": lambda: peer.encode(texts)}
names = list(runs)
for name in names:
    runs[name]()  # warm-up
seconds = {name: [] for name in names}
for r in range(rounds):
    for name in names[r % 3:] + names[:r % 3]:
        start = time.perf_counter()
        runs[name]()
        seconds[name].append(time.perf_counter() - start)
print(json.dumps({"sentences": len(texts), "packed_linears": packed.packed_linears, "seconds": seconds}))
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
         "xl-unpacked": "`XL_PACKED_LINEARS=0 xl embed`",
         "st-fp32": "sentence-transformers fp32", "st-bf16": "sentence-transformers bf16",
         **{variant: name for variant, (name, _) in PEERS.items()}}  # fmt: skip


def _peer_runs(tmp: Path, fingerprint: str, device: str, notes: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The other CPU runtimes whose packages are installed, with their model file (a note for each one that is
    not run)."""
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
    return [(variant, (str(int8_path if variant == "ort-int8" else onnx_path),)) for variant in wanted]


def _rounds(
    runs: list[tuple[str, tuple[str, ...]]], sentences: Path, tmp: Path, rounds: int
) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """Every run ``rounds`` times, interleaved (run 1 of each, then run 2 of each, ...), each in its own process:
    on a shared machine the speed of one run drifts by ±30% over minutes, and interleaving spreads that drift
    over all of them. Kept per run: the median seconds (its rounds' spread beside it), the largest peak RSS, the
    last round's embeddings and batch shapes."""
    timings: dict[str, list[dict[str, Any]]] = {variant: [] for variant, _ in runs}
    for _ in range(rounds):
        for variant, extra in runs:
            timings[variant].append(_run_variant(variant, sentences, tmp / f"{variant}.npy", tmp, *extra))
    done = []
    for variant, rows in timings.items():
        seconds = sorted(float(r["seconds"]) for r in rows)
        row = {
            **rows[-1],
            "seconds": float(np.median(seconds)),
            "seconds_min": seconds[0],
            "seconds_max": seconds[-1],
            "rounds": len(rows),
            "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in rows),
        }
        done.append((variant, row, np.load(tmp / f"{variant}.npy")))
    return done


def _paired(sentences: Path, onnx_path: str, tmp: Path, rounds: int) -> tuple[dict[str, Any], list[str]]:
    """The paired comparison (:data:`PAIRED`): per round, xl's speed over OpenVINO's and over xl's own with plain
    linear layers; the median and quartiles of those per-round ratios."""
    measured = run_measured([sys.executable, "-c", PAIRED, str(sentences), onnx_path, str(rounds)], tmp)
    raw = json.loads(measured["stdout"].strip().splitlines()[-1])
    xl = np.array(raw["seconds"]["xl"])
    result: dict[str, Any] = {"rounds": rounds, "sentences": raw["sentences"], "packed_linears": raw["packed_linears"]}
    lines = [
        "",
        f"Paired, in one process (xl, xl with plain linear layers and OpenVINO taking turns on {raw['sentences']} of "
        f"the sentences, {rounds} rounds, the order rotated each round): xl's speed over",
    ]
    for other, label in (("openvino", "OpenVINO"), ("xl-unpacked", "xl's own with plain `nn.Linear` layers")):
        ratios = np.array(raw["seconds"][other]) / xl
        q1, median, q3 = (float(x) for x in np.percentile(ratios, [25, 50, 75]))
        result[other] = {"median": median, "quartiles": [q1, q3], "sentences_per_s": float(
            raw["sentences"] / np.median(raw["seconds"][other]))}  # fmt: skip
        lines.append(f"- {label}: {median:.2f}× (quartiles {q1:.2f}–{q3:.2f})")
    result["xl_sentences_per_s"] = float(raw["sentences"] / np.median(xl))
    print(json.dumps({"paired": result}), file=sys.stderr)
    return result, lines


def _runtime_table(results: list[dict[str, Any]], per_token: float, notes: list[str]) -> list[str]:
    """Every run against xl: speed, agreement with xl's fp32 embeddings, achieved FLOP rate."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"All runs against xl on the same sentences, each in its own process; the other runtimes on xl's token "
        f"batches and mean pooling, {threads} threads. GFLOP/s: the padded tokens of every batch × "
        f"{per_token / 1e6:.1f} MFLOP (2 × non-embedding weights) plus attention (4 · layers · L² · hidden per "
        f"sentence padded to L), over the timed seconds. Sentences/s: the median of {results[0]['rounds']} "
        "interleaved runs, their range beside it.",
        "",
        "| run | dtype | sentences/s | range | × xl defaults | min cosine to xl fp32 | mean cosine to xl fp32 "
        "| GFLOP/s | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        low, high = r["sentences_per_s_range"]
        lines.append(
            f"| {NAMES[r['variant']]} | {r['dtype']} | {r['sentences_per_s']:.0f} | {low:.0f}–{high:.0f} | "
            f"{r['x_xl']:.2f} | {r['min_cosine_to_xl_fp32']:.5f} | {r['mean_cosine_to_xl_fp32']:.5f} | "
            f"{r['gflop_per_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    by = {r["variant"]: r for r in results}
    if "openvino" in by:
        ratio = by["xl"]["sentences_per_s"] / by["openvino"]["sentences_per_s"]
        lines += ["", f"`xl embed` (defaults) over OpenVINO: {ratio:.2f}× at min cosine "
                  f"{by['xl']['min_cosine_to_xl_fp32']:.5f} to xl fp32 (target ≥ 1.25× at ≥ 0.9999)."]  # fmt: skip
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (the README figures) or cuda")
    parser.add_argument("--per-lang", type=int, default=PER_LANG, help=f"sentences per script (default {PER_LANG})")
    parser.add_argument("--speed-only", action="store_true", help="skip the streaming-memory runs")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    parser.add_argument("--paired-rounds", type=int, default=PAIRED_ROUNDS, help="rounds of the paired comparison "
                        f"of xl and OpenVINO in one process (default {PAIRED_ROUNDS}; 0: none)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved runs of each variant; the median "
                        f"counts (default {ROUNDS})")  # fmt: skip
    quick = f"check that every run works: --per-lang {QUICK_PER_LANG} --speed-only --no-readme"
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args()
    if args.quick:
        args.per_lang, args.rounds, args.paired_rounds = QUICK_PER_LANG, 1, 3
        args.speed_only = args.no_readme = True
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
        own: list[tuple[str, tuple[str, ...]]] = [(v, ()) for v in ("st-fp32", "st-bf16", "xl-fp32", "xl-unpacked",
                                                                    "xl")]  # fmt: skip
        peers = _peer_runs(tmp, ref.fingerprint, args.device, notes)
        runs = _rounds(own + peers, sentences, tmp, args.rounds)
        onnx = dict(peers).get("openvino")
        paired = _paired(sentences, onnx[0], tmp, args.paired_rounds) if onnx and args.paired_rounds else None
        for variant, row, X in runs:
            outputs[variant] = X
            row["sentences_per_s"] = len(texts) / float(row["seconds"])
            row["sentences_per_s_range"] = [len(texts) / float(row[key]) for key in ("seconds_max", "seconds_min")]
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
        order = ["xl", "xl-unpacked", "xl-fp32", *PEERS, "st-fp32", "st-bf16"]
        runtime_lines = _runtime_table(sorted(results, key=lambda r: order.index(r["variant"])),
                                       _per_token_flops(config), notes)  # fmt: skip
        if paired is not None:
            runtime_lines += paired[1]

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
