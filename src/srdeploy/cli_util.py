"""Shared CLI plumbing: one-line errors with exit code 2, never a traceback."""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import Callable, Sequence

from .errors import SrDeployError


def parse_hw(text: str | None, flag: str = "--size") -> tuple[int, int] | None:
    """``"720x480"`` → (720, 480); None stays None; anything else is a one-line user error."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise SrDeployError(f"{flag} must be HxW with positive integers (e.g. 720x480), got {text!r}")
    return int(m.group(1)), int(m.group(2))


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), ``--help`` unchanged."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: set by Ctrl-C (SIGINT) during a command run through :func:`run_cli`. It stays set where a library
#: swallows the KeyboardInterrupt -- onnx2tf wraps its simplifier subprocess and shape inference in bare
#: ``except:`` clauses, so a Ctrl-C that lands there was lost and the export ran on to completion (seen
#: under load) -- and long work calls :func:`raise_if_interrupted` between its stages.
_interrupted = False


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed during this command, even if it was swallowed."""
    if _interrupted:
        raise KeyboardInterrupt


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def run_cli(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call *main*; map user errors to one line on stderr and their exit code; Ctrl-C → exit 130."""
    from . import errors

    global _interrupted
    errors.PROGRAM = prog
    _interrupted = False
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        return main(argv)
    except SrDeployError as exc:
        msg = " ".join(str(exc).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure still gets one line; SRDEPLOY_DEBUG=1 shows the trace
        if os.environ.get("SRDEPLOY_DEBUG"):
            raise
        msg = " ".join(str(exc).split())[:400]
        print(f"{prog}: internal error: {type(exc).__name__}: {msg} (set SRDEPLOY_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        _interrupted = False  # the flag is this command's: library calls after it (srdeploy.export) start clean


def check_output_file(path: str | None, flag: str) -> None:
    """Before any work: *path* (a file the command will write, e.g. ``--json``) can be created.
    Nothing is created here; a missing parent folder counts as unwritable."""
    if path is None:
        return
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise SrDeployError(f"{flag} {path} is a folder, not a file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise SrDeployError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise SrDeployError(f"{flag} {path} is not writable")


#: the most runtime threads any command accepts (more only oversubscribes the cores)
MAX_THREADS = 256


def check_threads(n: int | None, flag: str = "--threads") -> None:
    if n is not None and not 1 <= n <= MAX_THREADS:
        raise SrDeployError(f"{flag} must be 1..{MAX_THREADS}, got {n}")
