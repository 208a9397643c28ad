"""``make bench-proj``: ``xl fit-proj`` against numpy/scipy on the same NPY files on disk, same run, same machine.

Data: ``--rows`` (default 1,000,000) synthetic float32 translation pairs of width ``--dim`` (default 384),
generated once (seeded) in blocks straight into two NPY files in a temporary folder, deleted at the end.
``X`` looks like sentence embeddings: a common mean direction (pairwise cosine about 0.25) plus a covariance
whose eigenvalues decay as 1/k along a random basis; ``Y = X R + noise`` with ``R`` a random rotation
(relative residual of the true map about 0.4).

Four variants, each in its own process so that its peak RSS is its own (``os.wait4`` from a bare launcher
process: Linux carries a parent's peak RSS over fork and exec); seconds are the wall-clock of the whole process
(interpreter start, imports, reading the files, the fit, writing W) for all four:

- ``xl fit-proj --method lstsq --dev-frac 0`` (the real command) against ``numpy.linalg.lstsq(np.load(X),
  np.load(Y))`` (numpy solves float32 input in float64: a float64 copy of both matrices, then LAPACK gelsd);
- ``xl fit-proj --method procrustes --dev-frac 0`` against ``scipy.linalg.orthogonal_procrustes(np.load(X),
  np.load(Y))`` (one float32 product XᵀY of all rows, then the SVD).

Printed: seconds, peak RSS, ratios to the peer, the largest difference between the maps, and the largest
difference of each map to the exact float64 map (normal equations / SVD of XᵀY accumulated in float64 while
generating the data). With ``--repeat N`` each variant runs N times and the fastest run counts. Writes the
table between the ``bench-proj`` markers of README.md (unless ``--no-readme``) and prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
from numpy.lib.format import open_memmap

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import xl  # noqa: E402
from bench._measure import run_measured, write_readme_section  # noqa: E402

GEN_BLOCK_ROWS = 65_536
TARGET_LSTSQ_SPEEDUP = 3.0
TARGET_MEMORY_SHARE = 0.1
TARGET_MAX_DIFF = 1e-4

#: The peers: load both files whole, fit, save W. Timed from outside like the xl command.
WORKER = r"""
import sys
import numpy as np
variant, x_path, y_path, out_path = sys.argv[1:5]
X, Y = np.load(x_path), np.load(y_path)
if variant == "numpy-lstsq":
    W = np.linalg.lstsq(X, Y, rcond=None)[0]
else:
    import scipy.linalg
    W = scipy.linalg.orthogonal_procrustes(X, Y)[0]
np.save(out_path, W)
"""

PEER = {"xl-lstsq": "numpy-lstsq", "xl-procrustes": "scipy-procrustes"}
NAMES = {
    "xl-lstsq": "`xl fit-proj --method lstsq`",
    "numpy-lstsq": "`numpy.linalg.lstsq` (+ `np.load`)",
    "xl-procrustes": "`xl fit-proj --method procrustes`",
    "scipy-procrustes": "`scipy.linalg.orthogonal_procrustes` (+ `np.load`)",
}


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random orthogonal (d, d) float64 matrix (QR of a Gaussian, signs fixed: Haar distributed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def generate_pairs(x_path: Path, y_path: Path, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write X (n, d) and Y (n, d) float32 NPY files block by block; return float64 (XᵀX, XᵀY).

    Memory stays at a few blocks whatever n (the files are written through ``open_memmap``).
    """
    rng = np.random.default_rng(seed)
    harmonic = float(np.sum(1.0 / np.arange(1, d + 1)))
    # Rows with E‖x‖² ≈ 1: a quarter in a common mean direction, the rest spread over a 1/k spectrum.
    std = np.sqrt(0.75 / harmonic / np.arange(1, d + 1)).astype(np.float32)
    basis = _orthogonal(rng, d).astype(np.float32)
    rotation = _orthogonal(rng, d).astype(np.float32)
    mean = rng.standard_normal(d)
    mean = (0.5 * mean / np.linalg.norm(mean)).astype(np.float32)
    noise_std = np.float32(np.sqrt(0.16 / d))
    X_file = open_memmap(x_path, mode="w+", dtype=np.float32, shape=(n, d))
    Y_file = open_memmap(y_path, mode="w+", dtype=np.float32, shape=(n, d))
    XtX, XtY = np.zeros((d, d)), np.zeros((d, d))
    for start in range(0, n, GEN_BLOCK_ROWS):
        m = min(GEN_BLOCK_ROWS, n - start)
        X = (rng.standard_normal((m, d), dtype=np.float32) * std) @ basis + mean
        Y = X @ rotation + noise_std * rng.standard_normal((m, d), dtype=np.float32)
        X_file[start : start + m] = X
        Y_file[start : start + m] = Y
        X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
        XtX += X64.T @ X64
        XtY += X64.T @ Y64
    X_file.flush()
    Y_file.flush()
    del X_file, Y_file
    return XtX, XtY


def exact_maps(XtX: np.ndarray, XtY: np.ndarray) -> dict[str, np.ndarray]:
    """The float64 reference maps from float64 statistics."""
    U, _, Vt = scipy.linalg.svd(XtY)
    return {"lstsq": scipy.linalg.solve(XtX, XtY, assume_a="pos"), "procrustes": U @ Vt}


def _command(variant: str, x_path: Path, y_path: Path, w_path: Path) -> list[str]:
    if variant.startswith("xl-"):
        method = variant.removeprefix("xl-")
        return [sys.executable, "-m", "xl", "fit-proj", "--src", str(x_path), "--tgt", str(y_path),
                "--method", method, "--dev-frac", "0", "-o", str(w_path), "-q"]  # fmt: skip
    return [sys.executable, "-c", WORKER, variant, str(x_path), str(y_path), str(w_path)]


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _machine() -> str:
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


VARIANTS = ("xl-lstsq", "numpy-lstsq", "xl-procrustes", "scipy-procrustes")


def run(n: int, d: int, seed: int, repeat: int, tmp_root: str | None) -> tuple[list[dict[str, Any]], str]:
    """Generate the files, run every variant ``repeat`` times (interleaved), compare the maps."""
    load_before = _loadavg()
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    maps: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="xl-bench-proj-", dir=tmp_root) as tmp_name:
        tmp = Path(tmp_name)
        x_path, y_path = tmp / "X.npy", tmp / "Y.npy"
        start = time.perf_counter()
        XtX, XtY = generate_pairs(x_path, y_path, n, d, seed)
        print(f"generated {n:,} × {d} pairs in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        exact = exact_maps(XtX, XtY)
        # Interleaved, so that a change of load on a shared machine hits a variant and its peer alike.
        for _ in range(repeat):
            for variant in VARIANTS:
                w_path = tmp / f"W-{variant}.npy"
                runs[variant].append(run_measured(_command(variant, x_path, y_path, w_path), tmp))
                maps[variant] = np.load(w_path).astype(np.float64)
                last = runs[variant][-1]
                print(f"{variant}: {last['seconds']:.2f} s ({last['cpu_seconds']:.2f} s CPU), "
                      f"peak RSS {last['peak_rss_mb']:.0f} MB", file=sys.stderr)  # fmt: skip
    load_after = _loadavg()
    results: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        method = "lstsq" if variant.endswith("lstsq") else "procrustes"
        fastest = min(runs[variant], key=lambda r: r["seconds"])
        results[variant] = {
            "variant": variant,
            "rows": n,
            "dim": d,
            "seconds": fastest["seconds"],
            "cpu_seconds": fastest["cpu_seconds"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[variant]),
            "seconds_all": [round(r["seconds"], 3) for r in runs[variant]],
            "max_abs_diff_to_float64": float(np.abs(maps[variant] - exact[method]).max()),
        }
    for variant, peer in PEER.items():
        mine, theirs = results[variant], results[peer]
        mine["peer"] = peer
        mine["speedup_vs_peer"] = theirs["seconds"] / mine["seconds"]
        mine["memory_share_of_peer"] = mine["peak_rss_mb"] / theirs["peak_rss_mb"]
        mine["max_abs_diff_to_peer"] = float(np.abs(maps[variant] - maps[peer]).max())
    for r in results.values():
        r.update({"load_before": load_before, "load_after": load_after, "xl_version": xl.__version__})
    return list(results.values()), f"load average {load_before} before, {load_after} after"


def _targets(by: dict[str, dict[str, Any]]) -> list[str]:
    def ok(flag: bool) -> str:
        return "met" if flag else "**missed**"

    lst, pro = by["xl-lstsq"], by["xl-procrustes"]
    lines = [
        f"- lstsq at least {TARGET_LSTSQ_SPEEDUP:.0f}× faster than numpy: {lst['speedup_vs_peer']:.2f}× — "
        f"{ok(lst['speedup_vs_peer'] >= TARGET_LSTSQ_SPEEDUP)}",
        f"- procrustes no slower than scipy: {pro['speedup_vs_peer']:.2f}× — {ok(pro['speedup_vs_peer'] >= 1.0)}",
    ]
    for name, r in (("lstsq", lst), ("procrustes", pro)):
        share = r["memory_share_of_peer"]
        lines.append(
            f"- {name}: peak RSS at most a tenth of the peer's: {share:.3f} — {ok(share <= TARGET_MEMORY_SHARE)}"
        )
    for name, r in (("lstsq", lst), ("procrustes", pro)):
        diff = r["max_abs_diff_to_peer"]
        lines.append(f"- {name}: maps agree to {TARGET_MAX_DIFF:g}: {diff:.1e} — {ok(diff <= TARGET_MAX_DIFF)}")
    return lines


def render(results: list[dict[str, Any]], load: str, repeat: int) -> str:
    by = {r["variant"]: r for r in results}
    n, d = results[0]["rows"], results[0]["dim"]
    best = f"fastest of {repeat} interleaved runs; " if repeat > 1 else ""
    lines = [
        f"Measured by `make bench-proj` ({_machine()}; {load}; {n:,} × {d} float32 synthetic pairs in two NPY "
        f"files; {best}seconds are the wall-clock of the whole process — start-up, reading both files, the fit, "
        "writing W — for all four, CPU seconds its user + system time over all threads; `xl` with `--dev-frac 0`; "
        "× peer speed is the peer's seconds over xl's).",
        "",
        "| run | seconds | CPU seconds | peak RSS (MB) | × peer speed | share of peer's memory | max \\|W − W_peer\\| "
        "| max \\|W − W_float64\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        r = by[variant]
        mine = variant in PEER
        speed = f"{r['speedup_vs_peer']:.2f}" if mine else ""
        share = f"{r['memory_share_of_peer']:.3f}" if mine else ""
        diff = f"{r['max_abs_diff_to_peer']:.1e}" if mine else ""
        lines.append(
            f"| {NAMES[variant]} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_rss_mb']:.0f} | {speed} "
            f"| {share} | {diff} | {r['max_abs_diff_to_float64']:.1e} |"
        )
    lines += [
        "",
        "W_float64: the exact map, from XᵀX and XᵀY accumulated in float64 while the data were generated.",
        "",
        "Targets:",
        "",
        *_targets(by),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="pairs to generate (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=384, help="embedding width (default 384)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the fastest counts")
    parser.add_argument("--tmp-dir", default=None, help="where the NPY files go (default: the system temp folder)")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    if args.rows < args.dim or args.repeat < 1:
        parser.error("--rows must be at least --dim, --repeat at least 1")
    results, load = run(args.rows, args.dim, args.seed, args.repeat, args.tmp_dir)
    table = render(results, load, args.repeat)
    print(table)
    for r in results:
        print(json.dumps(r))
    if not args.no_readme:
        write_readme_section("bench-proj", table)


if __name__ == "__main__":
    main()
