"""Write-then-rename helpers: an artifact is either complete under its name or absent."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import SrDeployError

__all__ = ["atomic_copy", "atomic_write", "atomic_write_json", "ensure_writable_dir"]


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


def ensure_writable_dir(path: Path) -> bool:
    """Make sure *path* can take files; return True when it was created here (for clean-up)."""
    created = False
    try:
        if path.exists() and not path.is_dir():
            raise SrDeployError(f"output path {path} exists and is not a directory")
        if not path.exists():
            path.mkdir(parents=True)
            created = True
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-", delete=True)
        probe.close()
    except SrDeployError:
        raise
    except OSError as exc:
        raise SrDeployError(f"output directory {path} is not writable: {exc.strerror or exc}") from None
    return created
