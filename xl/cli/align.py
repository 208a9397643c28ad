"""``xl fit-proj`` and ``xl apply-proj``: linear maps between languages' sentence-embedding spaces."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from xl.cli._common import (
    Messages,
    OutputOpt,
    QuietOpt,
    deprecated_alias,
    handle_errors,
    progress_display,
    refuse_ignored,
    resolve_output_format,
)

ChainOpt = Annotated[str | None, typer.Option(help="Chain for one side only (overrides --preprocess there).")]
#: The former spellings of --preprocess* and --affine, hidden (they still work, with a warning).
OldChainOpt = Annotated[str | None, typer.Option(hidden=True)]


@handle_errors("fit-proj")
def fit_proj_cli(
    ctx: typer.Context,
    src: Annotated[str, typer.Option("--src", help="Source embeddings X (NPY; - for stdin).")],
    tgt: Annotated[str, typer.Option("--tgt", help="Target embeddings Y; row i translates row i of X.")],
    output: OutputOpt = "-",
    method: Annotated[
        Literal["lstsq", "procrustes", "sgd", "identity"],
        typer.Option(help="lstsq, procrustes (orthogonal), sgd (one linear layer) or identity (baseline)."),
    ] = "lstsq",
    ridge: Annotated[float, typer.Option(min=0.0, help="lstsq: ridge penalty λ (absolute).")] = 0.0,
    affine: Annotated[bool, typer.Option("--affine", help="Affine map: the bias is W's last row.")] = False,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Preprocessing chain of unit and center steps for both sides, e.g. unit,center,unit "
            "(VecMap). Changes results."
        ),
    ] = None,  # fmt: skip
    preprocess_src: ChainOpt = None,
    preprocess_tgt: ChainOpt = None,
    center: Annotated[bool | None, typer.Option("--center", hidden=True)] = None,
    normalize: OldChainOpt = None,
    normalize_src: OldChainOpt = None,
    normalize_tgt: OldChainOpt = None,
    dev_frac: Annotated[float, typer.Option(help="Share of pairs held out for diagnostics (seeded).")] = 0.1,
    dev_max: Annotated[int, typer.Option(min=0, help="At most this many dev pairs.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the dev split and of sgd.")] = 0,
    src_lang: Annotated[str | None, typer.Option(help="Source language, recorded in the manifest.")] = None,
    tgt_lang: Annotated[str | None, typer.Option(help="Target language, recorded in the manifest.")] = None,
    lr: Annotated[float, typer.Option(help="sgd: learning rate (Adam).")] = 1e-3,
    epochs: Annotated[int, typer.Option(min=1, help="sgd: most epochs.")] = 50,
    batch_size: Annotated[int, typer.Option(min=1, help="sgd: pairs per step.")] = 128,
    patience: Annotated[int, typer.Option(min=1, help="sgd: epochs without dev improvement before stopping.")] = 5,
    quiet: QuietOpt = False,
) -> None:
    """Fit a map W from source to target embeddings on parallel rows (X W ≈ Y).

    lstsq and procrustes stream sufficient statistics (memory independent of the number of pairs). The
    manifest beside W.npy records the method, preprocessing, pairs, models and layers, fit residual,
    orthogonality error, condition number and dev retrieval before and after the map.

    Examples:

        xl fit-proj --src en.npy --tgt ko.npy --method procrustes -o W.npy

        xl embed en.txt | xl fit-proj --src - --tgt ko.npy --affine --ridge 1e-3 -o W.npy
    """
    from xl.align import FitOptions, fit_projection_files

    messages = Messages("fit-proj", quiet)
    if method != "sgd":
        refuse_ignored(ctx, ("lr", "epochs", "batch_size", "patience"), f"with --method {method}",
                       hint="they tune --method sgd only: drop them or pass --method sgd")  # fmt: skip
    if method != "lstsq":
        refuse_ignored(ctx, ("ridge",), f"with --method {method}", hint="drop --ridge or use --method lstsq")
    if dev_frac == 0:
        # No dev pairs: nothing to cap, no dev loss to wait on, and only sgd has another use for the seed.
        without_dev = ("dev_max", "patience", "seed") if method != "sgd" else ("dev_max", "patience")
        refuse_ignored(ctx, without_dev, "with --dev-frac 0 (no dev pairs)",
                       hint="drop them, or hold out dev pairs with --dev-frac 0.1")  # fmt: skip
    resolve_output_format(output, None, ("npy",))
    affine = deprecated_alias(ctx, messages, "affine", "center", affine, center)
    preprocess = deprecated_alias(ctx, messages, "preprocess", "normalize", preprocess, normalize)
    preprocess_src = deprecated_alias(ctx, messages, "preprocess_src", "normalize_src", preprocess_src, normalize_src)
    preprocess_tgt = deprecated_alias(ctx, messages, "preprocess_tgt", "normalize_tgt", preprocess_tgt, normalize_tgt)
    options = FitOptions(
        method=method, ridge=ridge, center=affine,
        normalize_src=preprocess_src if preprocess_src is not None else preprocess,
        normalize_tgt=preprocess_tgt if preprocess_tgt is not None else preprocess,
        dev_frac=dev_frac, dev_max=dev_max, seed=seed, src_lang=src_lang, tgt_lang=tgt_lang,
        lr=lr, epochs=epochs, batch_size=batch_size, patience=patience,
    )  # fmt: skip
    with progress_display(not quiet) as progress:
        fit_projection_files(src, tgt, output, options, log=messages.info, progress=progress)


@handle_errors("apply-proj")
def apply_proj_cli(
    map_path: Annotated[str, typer.Argument(metavar="W.npy", help="A map written by xl fit-proj.")],
    input: Annotated[str, typer.Argument(help="Embeddings to map (NPY stream); - for stdin.")] = "-",
    output: OutputOpt = "-",
    side: Annotated[
        Literal["src", "tgt"], typer.Option(help="src: map source rows; tgt: apply the target preprocessing.")
    ] = "src",
    force: Annotated[
        bool, typer.Option("--force", help="Apply even if the map was fitted on another model or layer.")
    ] = False,  # fmt: skip
    quiet: QuietOpt = False,
) -> None:
    """Stream embeddings through a fitted map (with its preprocessing), row i to row i.

    Refuses a map fitted on embeddings of another model, layer or pooling (see --force).

    Examples:

        xl embed en.txt | xl apply-proj W.npy > en2ko.npy

        xl apply-proj W.npy en.npy -o en2ko.npy
    """
    from xl.align import apply_projection_file

    resolve_output_format(output, None, ("npy",))
    rows = apply_projection_file(map_path, input, output, side=side, force=force)
    Messages("apply-proj", quiet).info(f"{rows} rows mapped")
