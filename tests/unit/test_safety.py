"""Unsafe loading stays impossible: the tree is scanned for calls that can run code from a file.

Pickle executes whatever a file says when it is loaded, and so do ``torch.load`` without ``weights_only=True``,
``np.load(..., allow_pickle=True)``, Hugging Face's ``trust_remote_code=True`` and ``eval``/``exec``. xl stores
matrices as NPY (never pickled), models and checkpoints as safetensors, and optimizer state through
``torch.load(weights_only=True)``. The scanner parses every Python file of the package, the benchmarks and the
examples; a planted file shows that it finds each unsafe call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = [REPO / "xl", REPO / "bench", REPO / "examples"]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "cloudpickle", "marshal"}


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def unsafe_calls(source: str, name: str) -> list[str]:
    """Every unsafe import or call in ``source``, as ``name:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Call):
            callee = _dotted(node.func)
            if callee.endswith("torch.load") or callee == "load" and _keyword(node, "weights_only") is not None:
                if not _is_true(_keyword(node, "weights_only")):
                    found.append(f"{where}: torch.load without weights_only=True")
            if callee in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not None:
                if not (isinstance(_keyword(node, "allow_pickle"), ast.Constant)
                        and _keyword(node, "allow_pickle").value is False):  # type: ignore[union-attr]  # fmt: skip
                    found.append(f"{where}: np.load with allow_pickle")
            if _is_true(_keyword(node, "trust_remote_code")):
                found.append(f"{where}: trust_remote_code=True")
            if callee in ("eval", "exec"):
                found.append(f"{where}: {callee}()")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and _is_true(value):
                    found.append(f"{where}: trust_remote_code=True")
    return found


def _files() -> list[Path]:
    return sorted(p for folder in SCANNED if folder.is_dir() for p in folder.rglob("*.py"))


@pytest.mark.slow
def test_the_tree_has_no_unsafe_loading() -> None:
    files = _files()
    assert len(files) > 40  # the scan reaches the package
    problems = [hit for path in files for hit in unsafe_calls(path.read_text(), str(path.relative_to(REPO)))]
    assert problems == []


def test_optimizer_state_is_loaded_with_weights_only() -> None:
    source = (REPO / "xl" / "models" / "training.py").read_text()  # where checkpoints are loaded
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and _dotted(n.func) == "torch.load"]
    assert calls and all(_is_true(_keyword(c, "weights_only")) for c in calls)


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ("import pickle\n", "imports pickle"),
        ("from joblib import load\n", "imports from joblib"),
        ("import torch\ntorch.load('x.pt')\n", "torch.load without weights_only"),
        ("import torch\ntorch.load('x.pt', weights_only=False)\n", "torch.load without weights_only"),
        ("import numpy as np\nnp.load('x.npy', allow_pickle=True)\n", "np.load with allow_pickle"),
        ("AutoModel.from_pretrained('m', trust_remote_code=True)\n", "trust_remote_code"),
        ("kwargs = {'trust_remote_code': True}\n", "trust_remote_code"),
        ("eval('1 + 1')\n", "eval()"),
    ],
)
def test_the_scanner_finds_each_unsafe_call(snippet: str, what: str) -> None:
    hits = unsafe_calls(snippet, "planted.py")
    assert len(hits) == 1 and what in hits[0]


def test_the_scanner_accepts_the_safe_forms() -> None:
    safe = ("import torch, numpy as np\ntorch.load('x.pt', weights_only=True, map_location='cpu')\n"
            "np.load('x.npy', allow_pickle=False)\nAutoModel.from_pretrained('m', use_safetensors=True)\n")  # fmt: skip
    assert unsafe_calls(safe, "safe.py") == []
