"""``make calibrate-tasksim``: how often each test of ``xl tasksim correlate`` rejects at 5%, on simulated gains
with the dependence of a real study, with and without planted effects.

Design: 6 sources × 4 targets × 12 languages (three families of four). Null gains carry a random effect per
(source, target) pair (shared training runs), one per (target, language) (shared baseline) and row noise, and
no similarity effect; the similarity is pair-level. Planted: a slope on similarity, or a slope in one family
only. 199 permutations per test. Seeded: the table is the same on every run. Writes the table between the
``tasksim-calibration`` markers of README.md (unless ``--no-readme``); ``tests/unit/test_inference.py`` asserts
bands around the same rates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import write_readme_section  # noqa: E402
from xl.core import inference as inf  # noqa: E402
from xl.core.tasksim import center_within_target  # noqa: E402

S, T, L = 6, 4, 12
FAMILY_OF = np.array(["A"] * 4 + ["B"] * 4 + ["C"] * 4)


def _grid() -> tuple[np.ndarray, ...]:
    s, t, lc = (a.ravel() for a in np.meshgrid(np.arange(S), np.arange(T), np.arange(L), indexing="ij"))
    return s, t, lc, np.array([f"s{i}" for i in s]), np.array([f"t{i}" for i in t]), np.array([f"l{i}" for i in lc])


def _gains(rng: np.random.Generator, s: np.ndarray, t: np.ndarray, lc: np.ndarray, slope: np.ndarray | float,
           sim: np.ndarray) -> np.ndarray:  # fmt: skip
    pair = rng.normal(size=(S, T))[s, t]
    tlang = rng.normal(size=(T, L))[t, lc]
    return slope * sim + pair + tlang + 0.5 * rng.normal(size=s.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    s, t, lc, src, tgt, lang = _grid()
    family = FAMILY_OF[lc]
    rows: list[tuple[str, str, int, float]] = []

    def rate(label: str, effect: str, n_sets: int, seed: int, test: str, slope: float | tuple[float, ...]) -> None:
        rng = np.random.default_rng(seed)
        rejected = 0
        for i in range(n_sets):
            sim = rng.random((S, T))[s, t]
            b = np.asarray(slope)[np.searchsorted(["A", "B", "C"], family)] if isinstance(slope, tuple) else slope
            y = _gains(rng, s, t, lc, b, sim)
            if test == "pair":
                x, yc = center_within_target(sim, y, tgt, lang)
                p = inf.clustered_correlations(x, yc, src, tgt, lang, methods=("spearman",), n_perm=199, n_boot=0,
                                               seed=i)["spearman"].p_perm  # fmt: skip
            elif test == "naive":
                p = inf.naive_correlations(sim, y, src, tgt, lang, methods=("spearman",), n_perm=199, n_boot=0,
                                           seed=i)["spearman"].p_perm  # fmt: skip
            elif test == "family-permutation":
                x, yc = center_within_target(sim, y, tgt, lang)
                p = inf.family_slopes_permutation(x, yc, src, tgt, lang, family, n_perm=199, seed=i).p_perm
            else:
                p = inf.family_mixed_model(sim, y, src, tgt, lang, family).p_value
            rejected += p is not None and p <= 0.05
        rows.append((label, effect, n_sets, rejected / n_sets))

    started = time.perf_counter()
    rate("pair level, within-target permutation (Spearman, centred)", "none", 400, 1, "pair", 0.0)
    rate("naive: rows as independent (Spearman, row permutation)", "none", 400, 1, "naive", 0.0)
    rate("pair level, within-target permutation (Spearman, centred)", "slope 2", 40, 2, "pair", 2.0)
    rate("family slopes, languages permuted between families", "none (equal slopes)", 400, 3, "family-permutation",
         (0.5, 0.5, 0.5))  # fmt: skip
    rate("family slopes, languages permuted between families", "slope 3 in one family", 20, 4, "family-permutation",
         (3.0, 0.0, 0.0))  # fmt: skip
    rate("mixed model, likelihood-ratio test of sim × family", "none (equal slopes)", 400, 3, "mixed",
         (0.5, 0.5, 0.5))  # fmt: skip
    rate("mixed model, likelihood-ratio test of sim × family", "slope 3 in one family", 20, 4, "mixed",
         (3.0, 0.0, 0.0))  # fmt: skip
    seconds = time.perf_counter() - started
    table = [
        f"Measured by `make calibrate-tasksim` ({seconds:.0f} s): simulated gains with a random effect per (source, "
        f"target) pair and per (target, language), {S} sources × {T} targets × {L} languages in three families "
        "of four; 199 permutations per test; share of data sets with p ≤ 0.05.",
        "",
        "| test | planted effect | data sets | rejects at 5% |",
        "|---|---|---:|---:|",
        *[f"| {label} | {effect} | {n} | {value:.1%} |" for label, effect, n, value in rows],
    ]
    text = "\n".join(table)
    print(text)
    if not args.no_readme:
        write_readme_section("tasksim-calibration", text)


if __name__ == "__main__":
    main()
