"""``make bench-startup``: how long a user waits for xl's commands to start, against the floors under them.

Every command runs in its own process on a tiny input (one sentence; 50 × 384 float32 rows; the committed
study gains), ``--repeats`` times, interleaved with its floors; the median wall-clock second of each is
printed. A floor is the bare cost of what the command cannot do without, measured in the same run:

- ``python -c pass`` (the interpreter), ``import numpy``, ``import scipy.stats`` (the statistics of
  ``tasksim correlate``);
- for ``xl embed``: ``import torch``; ``import torch`` + transformers' XLM-R modeling module (the model
  definition xl keeps); that + ``tokenizers.Tokenizer.from_file`` of the default model's ``tokenizer.json``
  (the model stack: what any transformers-based tool pays before its first token). These three end with
  ``os._exit(0)``, as an ``xl`` process does once torch is loaded (:func:`xl.cli.app.exit_process`): the
  interpreter's teardown of torch and transformers (about 2 s here) is not part of any floor;
- the peer of the issue that set the target: ONNX Runtime's ``InferenceSession`` on the default model's ONNX
  export (cached by ``make bench-embed``; skipped with a note when it or onnxruntime is missing), tokenising
  and running the one sentence.

Python's bytecode cache is on for the runs (``PYTHONDONTWRITEBYTECODE`` removed from their environment), as it
is for an installed package: otherwise xl's own modules are compiled from source on every start.

Printed: each command's median seconds, the target, its floor and ``seconds − floor`` (what xl itself adds).
Writes the table between the ``bench-startup`` markers of README.md and prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402
from xl.config import home_dir  # noqa: E402

PY = sys.executable
XL = [PY, "-m", "xl"]
MODELING = "import torch, transformers.models.xlm_roberta.modeling_xlm_roberta"
#: How the floors under ``xl embed`` end: as xl does with torch loaded, without the interpreter's teardown.
NO_TEARDOWN = "\nimport os\nos._exit(0)"


def _default_model_dir() -> Path:
    from xl.models.registry import resolve_model

    ref = resolve_model("default")
    if ref.path is None:
        raise SystemExit("the default model is not installed: make model")
    return Path(ref.path)


def _onnx_file() -> Path | None:
    found = sorted((home_dir() / "bench" / "onnx").glob("*/model.onnx"))
    return found[-1] if found else None


def _inputs(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 384)).astype(np.float32)
    Y = X + 0.01 * rng.standard_normal((50, 384)).astype(np.float32)
    paths = {"one": tmp / "one.txt", "X": tmp / "X.npy", "Y": tmp / "Y.npy", "W": tmp / "W.npy"}
    paths["one"].write_text("The cat sits on the mat.\n", encoding="utf-8")
    np.save(paths["X"], X)
    np.save(paths["Y"], Y)
    np.save(paths["W"], np.eye(384, dtype=np.float32))
    return paths


def _commands(tmp: Path, model: Path) -> list[dict[str, Any]]:
    """name, argv, target seconds (None: a floor), floor name."""
    p = _inputs(tmp)
    tok = model / "tokenizer.json"
    study = REPO / "examples" / "tasksim"
    rows: list[dict[str, Any]] = [
        {"name": "python -c pass", "argv": [PY, "-c", "pass"]},
        {"name": "import numpy", "argv": [PY, "-c", "import numpy"]},
        {"name": "import scipy.stats", "argv": [PY, "-c", "import numpy, scipy.stats"]},
        {"name": "import torch", "argv": [PY, "-c", "import torch" + NO_TEARDOWN]},
        {"name": "import torch + XLM-R modeling", "argv": [PY, "-c", MODELING + NO_TEARDOWN]},
        {
            "name": "model stack (+ tokenizer.json)",
            "argv": [PY, "-c", f"{MODELING}\nfrom tokenizers import Tokenizer\n"
                                f"kept = Tokenizer.from_file({str(tok)!r}){NO_TEARDOWN}"],
        },
        {"name": "xl apply-proj", "target": 0.4, "floor": "import numpy",
         "argv": [*XL, "apply-proj", "--force", str(p["W"]), str(p["X"]), "-o", str(tmp / "out.npy"), "-q"]},
        {"name": "xl fit-proj (procrustes)", "target": 0.4, "floor": "import numpy",
         "argv": [*XL, "fit-proj", "--method", "procrustes", "--src", str(p["X"]), "--tgt", str(p["Y"]),
                  "-o", str(tmp / "Wfit.npy"), "-q"]},
        {"name": "xl eval retrieval", "target": 0.4, "floor": "import numpy",
         "argv": [*XL, "eval", "retrieval", "--src", str(p["X"]), "--tgt", str(p["Y"]), "--bootstrap", "0", "-q"]},
        {"name": "xl tasksim correlate", "target": 0.4, "floor": "import scipy.stats",
         "argv": [*XL, "tasksim", "correlate", "--sim", str(study / "sim" / "textemb.npy"),
                  "--gains", str(study / "gains.jsonl"), "--bootstrap", "0", "--permutations", "0", "-q"]},
        {"name": "xl embed (one sentence)", "target": 3.5, "floor": "model stack (+ tokenizer.json)",
         "argv": [*XL, "embed", str(p["one"]), "-o", str(tmp / "one.npy"), "-q"]},
    ]  # fmt: skip
    onnx = _onnx_file()
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    if onnx is not None and have_ort:
        code = (
            "import numpy as np, onnxruntime\nfrom tokenizers import Tokenizer\n"
            f"tok = Tokenizer.from_file({str(tok)!r})\n"
            f"s = onnxruntime.InferenceSession({str(onnx)!r}, providers=['CPUExecutionProvider'])\n"
            "ids = np.array([tok.encode('query: The cat sits on the mat.').ids], dtype=np.int64)\n"
            "s.run(None, {'input_ids': ids, 'attention_mask': np.ones_like(ids)})\n"
        )
        rows.append({"name": "ONNX Runtime InferenceSession, one sentence (peer)", "argv": [PY, "-c", code]})
    return rows


def _table(rows: list[dict[str, Any]], medians: dict[str, float], repeats: int, notes: list[str]) -> str:
    lines = [
        f"Measured by `make bench-startup` ({platform.processor() or platform.machine()}, this 2-core CPU; "
        f"median wall-clock seconds of {repeats} interleaved runs, each command in its own process on a tiny "
        "input; the floor is the bare import (or load) under the command, measured in the same run).",
        "",
        "| command | seconds | target | floor | floor seconds | xl adds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        name, seconds = row["name"], medians[row["name"]]
        if "target" not in row:
            lines.append(f"| {name} | {seconds:.2f} | – | – | – | – |")
            continue
        floor = medians[row["floor"]]
        lines.append(
            f"| {name} | {seconds:.2f} | ≤ {row['target']} | {row['floor']} | {floor:.2f} | {seconds - floor:.2f} |"
        )
    lines += ["", *notes]
    return "\n".join(lines).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args()
    model = _default_model_dir()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the children inherit it; the warm-up runs write the cache
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xl-bench-startup-") as folder:
        tmp = Path(folder)
        rows = _commands(tmp, model)
        if not any("peer" in row["name"] for row in rows):
            notes.append("The ONNX Runtime peer was skipped: run `make bench-embed` with the `bench` extra first.")
        seconds: dict[str, list[float]] = {row["name"]: [] for row in rows}
        for row in rows:  # one warm-up each: the page cache holds the files afterwards, as for a user's second run
            run_measured(row["argv"], tmp)
        for _ in range(args.repeats):
            for row in rows:
                seconds[row["name"]].append(run_measured(row["argv"], tmp)["seconds"])
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for row in rows:
        print(json.dumps({"command": row["name"], "seconds": round(medians[row["name"]], 3),
                          "runs": [round(s, 3) for s in seconds[row["name"]]], "target": row.get("target"),
                          "floor": row.get("floor")}))  # fmt: skip
    table = _table(rows, medians, args.repeats, notes)
    print(table, file=sys.stderr)
    if not args.no_readme:
        write_readme_section("bench-startup", table)


if __name__ == "__main__":
    main()
