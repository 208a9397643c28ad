"""Write the worked example of the repository README (between the ``tasksim-example`` markers): each command on
the committed study outputs (``gains.jsonl``, ``sim/*.npy``) shown with the output it prints, so that every
number there comes from the command beside it.

Usage (from the repository root): ``make tasksim-example`` (``python examples/tasksim/readme_example.py XL``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START, END = "<!-- tasksim-example:start -->", "<!-- tasksim-example:end -->"
STUDY = "examples/tasksim"
COMMANDS = [  # correlate prints the decomposition (`xl tasksim decompose`) first
    f"xl tasksim correlate --sim {STUDY}/sim/taskemb-task2vec.npy --gains {STUDY}/gains.jsonl --methods spearman "
    "--format md",
    f"xl tasksim predict --sim {STUDY}/sim/taskemb-task2vec.npy --gains {STUDY}/gains.jsonl "
    f"--covariates {STUDY}/covariates.jsonl --folds pair,language,source --format md",
]


def main(xl: str) -> None:
    parts: list[str] = []
    for command in COMMANDS:
        args = shlex.split(command)
        result = subprocess.run([xl, *args[1:]], cwd=REPO, capture_output=True, check=True)
        parts += ["```bash", command, "```", "", result.stdout.decode().rstrip(), ""]
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n" + "\n".join(parts) + f"{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "xl")
