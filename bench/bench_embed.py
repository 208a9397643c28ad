"""``make bench-embed``: xl embed against sentence-transformers on the default model, same run, same machine.

Speed: 2,000 FLORES-200 dev sentences in 8 scripts (250 each), batch size 32 everywhere, the model
loaded before the clock starts, each variant in its own process (so peak RSS is its own):
``xl`` with default settings, ``xl --dtype float32``, sentence-transformers ``encode`` in fp32 (its
defaults) and sentence-transformers with bf16 weights. Printed: sentences/s, ratios to the peers, min row
cosine to the fp32 reference (sentence-transformers fp32), peak RSS.

Memory: the real ``xl embed`` command on 5,000 and on 100,000 Tatoeba sentences (cycled over all its
languages); the difference of peak RSS must stay under 300 MB (streaming).

Writes the tables between the ``bench-embed`` markers of README.md and prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402
from xl.config import data_dir  # noqa: E402

LANGS = ("eng_Latn", "rus_Cyrl", "zho_Hans", "arb_Arab", "hin_Deva", "kor_Hang", "tha_Thai", "ell_Grek")
PER_LANG = 250
BATCH = 32

WORKER = r"""
import json, os, sys, time
import numpy as np
variant, sentences_path, out_path = sys.argv[1:4]
device = os.environ.get("XL_BENCH_DEVICE", "cpu")
texts = open(sentences_path, encoding="utf-8").read().split("\n")[:-1]
if variant.startswith("xl"):
    from xl.models.embedding import EmbedOptions, embed_texts
    from xl.models.encoder import Encoder
    from xl.models.registry import resolve_model
    encoder = Encoder(resolve_model("default"), dtype="float32" if variant == "xl-fp32" else "auto", device=device)
    dtype = encoder.dtype_name
    embed_texts(encoder, texts[:2 * BATCH], EmbedOptions(batch_size=BATCH))  # warm-up (CUDA kernel set-up)
    start = time.perf_counter()
    X = embed_texts(encoder, texts, EmbedOptions(batch_size=BATCH))
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
    st.encode(prefixed[:2 * BATCH], batch_size=BATCH)  # warm-up, as for xl
    start = time.perf_counter()
    X = st.encode(prefixed, batch_size=BATCH, convert_to_numpy=False)
    X = torch.stack([x.float() for x in X]).cpu().numpy()
seconds = time.perf_counter() - start
np.save(out_path, X.astype(np.float32))
print(json.dumps({"variant": variant, "seconds": seconds, "dtype": dtype}))
""".replace("BATCH", str(BATCH))


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


def _run_variant(variant: str, sentences: Path, out: Path, tmp: Path) -> dict[str, float | str]:
    """One speed variant in its own process: the worker's timing of the encode, the process's peak RSS."""
    measured = run_measured([sys.executable, "-c", WORKER, variant, str(sentences), str(out)], tmp)
    row = dict(json.loads(measured["stdout"].strip().splitlines()[-1]))
    row["peak_rss_mb"] = measured["peak_rss_mb"]
    return row


def _min_cosine(X: np.ndarray, R: np.ndarray) -> float:
    cos = (X * R).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(R, axis=1)
    return float(cos.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (the README figures) or cuda")
    parser.add_argument("--per-lang", type=int, default=PER_LANG, help=f"sentences per script (default {PER_LANG})")
    parser.add_argument("--speed-only", action="store_true", help="skip the streaming-memory runs")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    os.environ["XL_BENCH_DEVICE"] = args.device
    root = data_dir()
    results: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        texts, nfc_changed = _sentences(root, args.per_lang)
        sentences = tmp / "sentences.txt"
        sentences.write_text("\n".join(texts) + "\n", encoding="utf-8")
        outputs: dict[str, np.ndarray] = {}
        for variant in ("st-fp32", "st-bf16", "xl-fp32", "xl"):
            row = _run_variant(variant, sentences, tmp / f"{variant}.npy", tmp)
            outputs[variant] = np.load(tmp / f"{variant}.npy")
            row["sentences_per_s"] = len(texts) / float(row["seconds"])
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        by = {str(r["variant"]): r for r in results}
        reference = outputs["st-fp32"]
        for r in results:
            r["min_cosine_to_fp32"] = _min_cosine(outputs[str(r["variant"])], reference)
            r["x_st_fp32"] = float(r["sentences_per_s"]) / float(by["st-fp32"]["sentences_per_s"])
            r["x_st_bf16"] = float(r["sentences_per_s"]) / float(by["st-bf16"]["sentences_per_s"])

        if args.speed_only:
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

    from xl.models.encoder import cpu_supports_bf16

    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    isa = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no native bf16"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {isa}{'' if cpu_supports_bf16() else ' (fp32 default)'}"
    lines = [
        f"Measured by `make bench-embed` ({machine}; {len(LANGS)} scripts × {PER_LANG} FLORES-200 dev "
        f"sentences, NFC-normalised for both tools ({nfc_changed} changed); batch size {BATCH}; model loaded "
        "before the clock starts).",
        "",
        "| run | dtype | sentences/s | × ST fp32 | × ST bf16 | min cosine to fp32 | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    names = {"xl": "`xl embed` (defaults)", "xl-fp32": "`xl embed --dtype float32`",
             "st-fp32": "sentence-transformers fp32", "st-bf16": "sentence-transformers bf16"}  # fmt: skip
    for r in results:
        lines.append(
            f"| {names[str(r['variant'])]} | {r['dtype']} | {float(r['sentences_per_s']):.0f} | "
            f"{float(r['x_st_fp32']):.2f} | {float(r['x_st_bf16']):.2f} | {float(r['min_cosine_to_fp32']):.5f} | "
            f"{float(r['peak_rss_mb']):.0f} |"
        )
    growth = memory[100_000]["peak_rss_mb"] - memory[5_000]["peak_rss_mb"]
    lines += [
        "",
        f"Streaming memory (`xl embed` command, Tatoeba sentences): peak RSS {memory[5_000]['peak_rss_mb']:.0f} MB "
        f"for 5,000 rows, {memory[100_000]['peak_rss_mb']:.0f} MB for 100,000 rows "
        f"(+{growth:.0f} MB; target ≤ 300 MB; {memory[100_000]['seconds']:.0f} s wall for 100,000).",
    ]
    table = "\n".join(lines)
    print(table)
    for r in results:
        print(json.dumps(r))
    if not args.no_readme:
        write_readme_section("bench-embed", table)


if __name__ == "__main__":
    main()
