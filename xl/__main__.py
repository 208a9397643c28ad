"""``python -m xl``: the same entry point as the ``xl`` console script."""

from __future__ import annotations

from xl.cli.app import main

if __name__ == "__main__":
    main()
