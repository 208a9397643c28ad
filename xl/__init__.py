"""xl: command-line toolkit for zero-shot cross-lingual transfer research."""

from __future__ import annotations

__version__ = "0.1.0"
