"""Where weights and data live: explicit paths, environment variables, then ``../shared``.

``SRDEPLOY_WEIGHTS`` / ``SRDEPLOY_DATA`` / ``SRDEPLOY_FOREIGN`` win; otherwise ``../shared/weights``,
``../shared/data`` and ``../shared/foreign`` are used when they exist, looked up beside the current directory and
beside the source checkout (the layout this project is developed in).
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _shared_candidates(sub: str) -> list[Path]:
    return [Path.cwd().parent / "shared" / sub, _REPO_ROOT.parent / "shared" / sub]


def _resolve(env: str, sub: str) -> Path | None:
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    for cand in _shared_candidates(sub):
        if cand.is_dir():
            return cand
    return None


def weights_dir() -> Path | None:
    """Folder of official checkpoints, or None when none is configured."""
    return _resolve("SRDEPLOY_WEIGHTS", "weights")


def data_dir() -> Path | None:
    """Folder of evaluation/calibration images (Set5, Set14, div2k, ...), or None."""
    return _resolve("SRDEPLOY_DATA", "data")


def foreign_dir() -> Path | None:
    """Folder of other people's ONNX models used as test inputs (``SRDEPLOY_FOREIGN``), or None."""
    return _resolve("SRDEPLOY_FOREIGN", "foreign")


def cache_dir() -> Path:
    """User cache for downloaded weights (``$XDG_CACHE_HOME/srdeploy`` or ``~/.cache/srdeploy``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "srdeploy"


def downloads_allowed() -> bool:
    """Downloads happen only on request; ``SRDEPLOY_OFFLINE=1`` forbids them (tests set it)."""
    return os.environ.get("SRDEPLOY_OFFLINE", "") not in ("1", "true", "yes")
