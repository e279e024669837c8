"""Progress of long work: a line with an ETA at least every ``every_s`` seconds.

A background thread prints, so a long step (a huge prefill) still shows that it is
alive; the work itself only reports what it has finished (``update``). Short work
prints nothing: the first line comes after ``every_s`` seconds, and only once the
work knows its size (so a mistake found while preparing stays the only line).
"""

from __future__ import annotations

import sys
import threading
import time


def _duration(seconds: float) -> str:
    """``75`` -> ``1m15s``: short and readable."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Prints ``what done/total (detail), elapsed, ETA`` to stderr while work runs."""

    def __init__(self, what: str, every_s: float = 2.0, stream=None, enabled: bool = True):
        self.what = what
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done, self.total, self.detail = 0, 0, ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._printed = False

    def update(self, done: int, total: int, detail: str = "") -> None:
        """Record that ``done`` of ``total`` units are finished."""
        self.done, self.total, self.detail = done, total, detail

    def line(self) -> str:
        """The current progress line."""
        elapsed = time.monotonic() - self._started
        eta = "ETA unknown" if not self.done or not self.total else \
            f"ETA {_duration(elapsed * (self.total - self.done) / self.done)}"
        detail = f" ({self.detail})" if self.detail else ""
        return f"  {self.what} {self.done}/{self.total}{detail}, {_duration(elapsed)} elapsed, {eta}"

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="tlmsim-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._printed and self._tty():
            print("\r\x1b[K", end="", file=self.stream, flush=True)  # erase the line \r kept rewriting

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._print()

    def _tty(self) -> bool:
        return getattr(self.stream, "isatty", lambda: False)()

    def _print(self) -> None:
        if not self.total:  # not started yet: errors found while preparing stay the only line
            return
        try:
            if self._tty():
                print("\r" + self.line(), end="", file=self.stream, flush=True)
            else:
                print(self.line(), file=self.stream, flush=True)
            self._printed = True
        except (OSError, ValueError):  # stderr closed: progress is not worth a crash
            self._stop.set()
