"""``python -m xl``: the same entry point as the ``xl`` console script."""

from __future__ import annotations

from xl.cli.app import run

if __name__ == "__main__":
    run()
