"""Progress for long work: a tqdm bar on a terminal, plain periodic lines anywhere else.

tqdm writing to a file or a pipe (CI logs, ``2> log``) piles its carriage-return redraws into one
long line; a log wants a line now and then instead. tqdm has no such mode, hence this small shim.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable

__all__ = ["bar", "LineProgress"]


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SRDEPLOY_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


class LineProgress:
    """The part of tqdm's interface srdeploy uses, printing ``desc: n/total unit (postfix)`` lines
    to stderr at most every *interval* seconds, and once at the end."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float | None = None, file=None) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval = _interval() if interval is None else interval
        self.file = file or sys.stderr
        self.postfix = ""
        self._t0 = self._last = time.monotonic()
        self._closed = False

    def _emit(self) -> None:
        elapsed = time.monotonic() - self._t0
        of = f"/{self.total}" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit} ({elapsed:.0f} s{tail})", file=self.file, flush=True)
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._emit()

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n:
                self._emit()

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent(LineProgress):
    def _emit(self) -> None:
        pass


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        initial: int = 0, enabled: bool = True, leave: bool = True):
    """A progress reporter: nothing when not *enabled*, tqdm when stderr is a terminal, else
    :class:`LineProgress`."""
    if not enabled:
        return _Silent(iterable, total=total, desc=desc, unit=unit, initial=initial)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr,
                    dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)


class heartbeat:
    """``with heartbeat("onnx2tf: converting 70 ops"):`` prints ``desc (N s)`` every *interval*
    seconds while the block runs — for library calls that report no progress of their own."""

    def __init__(self, desc: str, interval: float | None = None, enabled: bool = True) -> None:
        import threading

        self.desc, self.enabled = desc, enabled
        self.interval = interval if interval is not None else (10.0 if sys.stderr.isatty() else _interval())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.interval):
            print(f"  {self.desc} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)

    def __enter__(self):
        if self.enabled and self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
