"""Progress of long phases (the training loop, SMAC's score model, landscape grids) in every kind
of output: a progress bar when stdout is a terminal, else (a log file, nohup, CI, a pipe) one
line every ``LINE_SECONDS`` seconds and one at the end::

    [offline smac] step 1200/5000 (24%) | 40.1 step/s | ETA 1m35s | eval return 12.3

and a line at each event worth a line of its own (an evaluation)::

    [offline smac] step 1500/5000 | eval return 14.1
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

LINE_SECONDS = 5.0


def duration(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``7260`` -> ``2h01m``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Position ``initial`` -> ``total`` (floats allowed: part of a chunk of points), with the
    latest value to show (``note``). ``interactive`` (default: whether stdout is a terminal)
    draws a tqdm bar; otherwise lines go to ``stream`` (default stdout), one every ``interval``
    seconds (default ``LINE_SECONDS``) of ``clock``."""

    def __init__(self, total: float, desc: str, initial: float = 0, unit: str = "step",
                 interactive: bool | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 interval: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.position = self._start_position = initial
        self.latest = ""
        self.stream = sys.stdout if stream is None else stream
        self.clock = clock
        self.interval = LINE_SECONDS if interval is None else interval
        self._start = self._last_line = clock()
        self._lined_position: float | None = None
        interactive = self.stream.isatty() if interactive is None else interactive
        self.bar = None
        if interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                            dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.set_position(self.position + n)

    def set_position(self, position: float) -> None:
        if self.bar is not None:
            self.bar.update(position - self.position)
        self.position = position
        if self.bar is None and self.clock() - self._last_line >= self.interval:
            self._print_line()

    @property
    def interactive(self) -> bool:
        return self.bar is not None

    def note(self, latest: str) -> None:
        """The latest value (a score, a loss), shown after the rate."""
        self.latest = latest
        if self.bar is not None:
            self.bar.set_postfix_str(latest)

    def event(self, text: str) -> None:
        """``note(text)``, and in a log a line of its own now: ``[desc] step N/total | text``."""
        self.note(text)
        if self.bar is None:
            print(f"[{self.desc}] {self.unit} {int(self.position)}/{int(self.total)} | {text}",
                  file=self.stream, flush=True)
            self._last_line, self._lined_position = self.clock(), self.position

    def line(self) -> str:
        """``[desc] step 1200/5000 (24%) | 40.1 step/s | ETA 1m35s | latest``."""
        elapsed = self.clock() - self._start
        rate = (self.position - self._start_position) / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.position / self.total if self.total else 100.0
        parts = [f"[{self.desc}] {self.unit} {int(self.position)}/{int(self.total)} "
                 f"({percent:.0f}%)", f"{rate:.3g} {self.unit}/s"]
        if self.position >= self.total:
            parts.append(f"done in {duration(elapsed)}")
        elif rate > 0:
            parts.append(f"ETA {duration((self.total - self.position) / rate)}")
        if self.latest:
            parts.append(self.latest)
        return " | ".join(parts)

    def _print_line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line, self._lined_position = self.clock(), self.position

    def close(self) -> None:
        """Close the bar, or print the last line (unless the last one printed says it all)."""
        if self.bar is not None:
            self.bar.close()
        elif self._lined_position != self.position and self.position > self._start_position:
            self._print_line()
