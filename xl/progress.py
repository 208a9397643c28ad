"""The progress protocol: the library reports where a long job is, the command line renders it.

A library function that runs long takes ``progress: Progress = no_progress`` and calls
``progress(stage, done, total, **fields)`` as it goes: ``stage`` names what is counted (``"train"`` steps,
``"dev"`` rows, ``"sets"``, ``"rows"``, ``"tasks"``, ``"read"`` rows …), ``done`` how many are done (absolute, not
an increment), ``total`` how many there will be (None: not known), and ``fields`` what else is worth showing
(``loss=0.41``, ``set="korsts.test ko"``), as plain values that the renderer formats. A stage whose ``done``
reaches its ``total`` is finished; a report with a smaller ``done`` than the last starts the stage again (the rows
of the next set). The library never imports rich, prints nothing and keeps no state of the display: what is shown,
where and whether at all is the renderer's (:func:`xl.cli._common.progress_display`: rich on a terminal, nothing
off one). No torch here: ``xl.core``-level commands report too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class Progress(Protocol):
    """``progress(stage, done, total, **fields)``: see the module docstring."""

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None: ...


def no_progress(stage: str, done: int, total: int | None, **fields: Any) -> None:
    """The default of every library function: report nothing (no cost beyond the call)."""


def counter(progress: Progress, stage: str, total: int | None, done: int = 0, **fields: Any) -> Callable[[int], None]:
    """An ``advance(n)`` callback (what a batching loop calls with each batch's row count) that reports ``stage``
    as absolute counts from ``done``; the start is reported at once."""
    count = [done]
    progress(stage, done, total, **fields)

    def advance(n: int) -> None:
        count[0] += n
        progress(stage, count[0], total, **fields)

    return advance


class Throttled:
    """A :class:`Progress` that forwards to ``target`` at most once per ``interval`` seconds per stage, so that a
    loop can report every batch or step at no cost worth measuring. Always forwarded: a stage's first report, its
    last (``done == total``), a restart (``done`` below the last) and a change of ``total``. A report held back is
    not lost: it is forwarded with the next report that passes (of any stage), so a stage that stops advancing
    (training steps while the dev set is scored) shows where it really is."""

    def __init__(self, target: Progress, interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[float, int, int | None]] = {}  # stage -> (time forwarded, done, total)
        self._held: dict[str, tuple[int, int | None, dict[str, Any]]] = {}

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None:
        now = self.clock()
        last = self._last.get(stage)
        must = last is None or (total is not None and done >= total) or done < last[1] or total != last[2]
        if not must and last is not None and now - last[0] < self.interval:
            self._held[stage] = (done, total, fields)
            return
        self._held.pop(stage, None)
        for other, (held_done, held_total, held_fields) in list(self._held.items()):
            del self._held[other]
            self._forward(other, held_done, held_total, held_fields, now)
        self._forward(stage, done, total, fields, now)

    def _forward(self, stage: str, done: int, total: int | None, fields: dict[str, Any], now: float) -> None:
        self._last[stage] = (now, done, total)
        self.target(stage, done, total, **fields)
