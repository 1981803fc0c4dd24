"""Write-then-rename helpers: an artifact is either complete under its name or absent."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .errors import SrDeployError

__all__ = ["atomic_copy", "atomic_write", "atomic_write_json", "ensure_writable_dir", "FolderLock", "read_user_json",
           "sha256_file",
           "recover_stale_staging", "replaced_whole", "staging_dir", "swap_in"]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (checkpoints, artifacts and training images alike)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_user_json(path: Path, max_bytes: int, kind: str, label: str | None = None):
    """A user's JSON file, parsed: larger than *max_bytes* or unreadable is one clear error that
    never echoes the content (*kind*: what the file should be; *label*: how to name it)."""
    label = label or str(path)
    try:
        if path.stat().st_size > max_bytes:
            raise SrDeployError(f"{label} is larger than {max_bytes >> 20} MB: not {kind}")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SrDeployError(f"{label} is not readable JSON ({type(exc).__name__})") from None


def _tmp_beside(dest: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get the usual permissions
    return Path(tmp)


def atomic_copy(src: Path, dest: Path) -> None:
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def atomic_write(dest: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside *dest*, then rename it to *dest*."""
    tmp = _tmp_beside(dest)
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(dest: Path, obj) -> None:
    atomic_write(dest, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def ensure_writable_dir(path: Path) -> Path | None:
    """Make sure *path* can take files; return the topmost folder created here (clean-up removes
    that one, so no parent made for a failed command is left behind), or None."""
    created = None
    try:
        if path.exists() and not path.is_dir():
            raise SrDeployError(f"output directory {path} is not writable: it exists and is not a directory")
        if not path.exists():
            top = path
            while not top.parent.exists() and top.parent != top:
                top = top.parent
            path.mkdir(parents=True)
            created = top
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-", delete=True)
        probe.close()
    except SrDeployError:
        raise
    except OSError as exc:
        raise SrDeployError(f"output directory {path} is not writable: {exc.strerror or exc}") from None
    return created


class FolderLock:
    """An exclusive, non-blocking lock on writing folder *path* (``flock`` on a hidden file beside it):
    a second writer gets a one-line refusal instead of mixing its files with the first one's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.parent / f".{path.name}.lock"
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.file, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise SrDeployError(f"another process is writing {self.path} (lock {self.file.name}); "
                                "wait for it or choose another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.file.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def staging_dir(final: Path) -> Path:
    """A new empty hidden folder beside *final* (same file system, so it can be renamed into place),
    with the permissions a plain ``mkdir`` would give (mkdtemp makes 0700)."""
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staged, 0o777 & ~umask)
    return staged


def recover_stale_staging(final: Path) -> list[tuple[str, str]]:
    """Deal with the hidden folders a killed writer of *final* left beside it, and return what was done,
    as ``("removed" | "restored", name)`` pairs. A staging folder (``.NAME.XXXXXXXX.partial``,
    :func:`staging_dir`) is removed. A replaced folder (``.NAME.old-XXXXXXXX``, :func:`swap_in`) is removed
    when *final* exists; when *final* is missing, the writer was killed between swap_in's two renames and
    that folder is the previous complete one: it is renamed back (the newest, if several). Call it only
    while holding ``FolderLock(final)``: then no live writer owns them. The names are matched exactly
    (tempfile's 8 random characters), so the folders of a sibling such as ``NAME.v2`` are never touched."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(?:[a-z0-9_]{{8}}\.partial|old-[a-z0-9_]{{8}})")
    found = [p for p in final.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    done = []
    olds = sorted((p for p in found if ".old-" in p.name), key=lambda p: p.stat().st_mtime)
    if olds and not final.exists() and not final.is_symlink():
        os.replace(olds[-1], final)
        done.append(("restored", olds[-1].name))
        found.remove(olds[-1])
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
        done.append(("removed", p.name))
    return sorted(done, key=lambda d: d[1])


@contextlib.contextmanager
def replaced_whole(final: Path):
    """Write a new *final* folder in a hidden staging folder beside it and swap it in whole when the block
    ends normally; if the block raises (or is interrupted), the staging folder is removed and *final* stays
    as it was. First the folders a killed writer left are dealt with (:func:`recover_stale_staging`). Call
    it holding ``FolderLock(final)``. Yields the staging folder to write into. (The exporter does not use
    it: a failed parity gate is swapped in too, for inspection, and it logs what it recovered.)"""
    recover_stale_staging(final)
    staged = staging_dir(final)
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    swap_in(staged, final)


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and deliver it right after. Blocking the
    signal (pthread_sigmask) is not enough: any other thread (TensorFlow starts many) may take it and
    the main thread then runs Python's handler between any two statements."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, None)  # e.g. Python's default: raises KeyboardInterrupt now
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def swap_in(staged: Path, final: Path) -> None:
    """Replace folder *final* by the complete folder *staged* (same parent) with renames: a reader
    sees the old folder or the new one, never a mix. A Ctrl-C between the two renames would have left
    neither under its name (the old one hidden as ``.NAME.old-*`` until the next writer's
    :func:`recover_stale_staging` restores it); it is held until both are done
    and the old folder is removed."""
    old = None
    with _ctrl_c_deferred():
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(staged, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
