"""``xl eval``: zero-shot evaluation. ``retrieval`` scores bitext retrieval between two matrices."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from xl.cli._common import handle_errors
from xl.errors import UsageError
from xl.io.jsonl import dumps_line


def render_markdown(result: dict[str, Any]) -> str:
    """A small table of the headline metrics of one retrieval result."""
    lines = ["| direction | accuracy | 95% CI | F1 | xSIM error |", "|---|---:|---|---:|---:|"]
    for direction in ("src2tgt", "tgt2src"):
        r = result.get(direction) or {}
        ci = r.get("accuracy_ci") or [None, None]
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {direction} | {fmt(r.get('accuracy'))} | {fmt(ci[0])}–{fmt(ci[1])} | "
                     f"{fmt(r.get('f1'))} | {fmt(r.get('xsim_error'))} |")  # fmt: skip
    return "\n".join(lines)


def parse_tags(items: list[str]) -> dict[str, str]:
    """``["lang=ko", "method=lstsq"]`` -> {"lang": "ko", "method": "lstsq"}."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r} is not KEY=VALUE", hint="e.g. --tag lang=ko")
        tags[key] = value
    return tags


@handle_errors("eval retrieval")
def retrieval_cli(
    src: Annotated[str, typer.Option("--src", help="Source embeddings (NPY; - for stdin).")],
    tgt: Annotated[str, typer.Option("--tgt", help="Target embeddings; row i is the translation of src row i.")],
    proj: Annotated[str | None, typer.Option("--proj", help="Map the source with this W.npy first.")] = None,
    scoring: Annotated[str, typer.Option(help="nn (cosine), csls or margin.")] = "nn",
    csls_k: Annotated[int, typer.Option(help="Neighbours for CSLS.")] = 10,
    margin_k: Annotated[int, typer.Option(help="Neighbours for the ratio margin (xSIM).")] = 4,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    output_format: Annotated[str, typer.Option("--format", help="jsonl (one JSON line) or md.")] = "jsonl",
    force: Annotated[bool, typer.Option("--force", help="Use --proj even if fitted on another model.")] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE added to the JSON line (repeatable), e.g. --tag lang=ko --tag method=lstsq."),
    ] = None,
) -> None:
    """Bitext retrieval, both directions: accuracy (XTREME Tatoeba), xSIM error, F1 (MTEB), with CIs.

    Chunked top-k: 100,000 × 100,000 runs in bounded memory. Prints one JSON line.

    Examples:

        xl eval retrieval --src ko.npy --tgt en.npy

        xl eval retrieval --src ko.npy --tgt en.npy --proj W.npy --scoring csls --format md
    """
    from xl.align import evaluate_retrieval_files

    if output_format not in ("jsonl", "md"):
        raise UsageError(f"--format {output_format!r} is not jsonl or md")
    tags = parse_tags(tag or [])
    result = evaluate_retrieval_files(src, tgt, proj=proj, scoring=scoring, csls_k=csls_k, margin_k=margin_k,
                                      n_resamples=bootstrap, seed=seed, force=force)  # fmt: skip
    result = {**tags, **result}
    if output_format == "md":
        print(render_markdown(result))
    else:
        sys.stdout.buffer.write(dumps_line(result))
