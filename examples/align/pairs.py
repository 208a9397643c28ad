"""Print ``tatoeba:flores`` code pairs of the languages both data sets have (ISO 639-1 via xl's table)."""

from __future__ import annotations

import sys
from pathlib import Path

from xl.core.languages import normalize_lang_code
from xl.errors import InputError


def iso(code: str) -> str | None:
    try:
        return normalize_lang_code(code)
    except InputError:
        return None


root = Path(sys.argv[1])
flores = {iso(p.stem): p.stem for p in (root / "flores200" / "dev").glob("*.dev")}
tatoeba = sorted(p.name.split(".")[1].split("-")[0] for p in (root / "tatoeba").glob("tatoeba.*-eng.eng"))
print(" ".join(f"{t}:{flores[iso(t)]}" for t in tatoeba if iso(t) is not None and iso(t) in flores))
