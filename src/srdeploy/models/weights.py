"""Finding, verifying, downloading and loading checkpoints."""
from __future__ import annotations

import os
import re
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import SrDeployError
from ..fsutil import sha256_file  # in __all__: its importers keep reading it from here
from ..paths import cache_dir, downloads_allowed, weights_dir

__all__ = ["WeightsSpec", "resolve_weights", "download_weights", "load_checkpoint", "read_arch",
           "read_checkpoint", "sha256_file", "embedded_path"]


@dataclass(frozen=True)
class WeightsSpec:
    """An official checkpoint: file name, checksum, public address and key remapping."""

    file: str
    sha256: str
    url: str
    #: ``(regex, replacement)`` pairs applied in order to each key (after ``module.`` is stripped)
    remap: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    source: str = ""
    #: shipped inside the package (``srdeploy/models/zoo/``): found offline, checksum verified on load
    embedded: bool = False
    #: how the weights were made (training command, steps, data, measured PSNR) for embedded weights
    training: str = ""
    #: measured quality of these weights, e.g. ``{"set5_psnr_y": 37.257}`` (re-measured by a test)
    metrics: dict = field(default_factory=dict, hash=False, compare=False)


def embedded_path(spec: WeightsSpec) -> Path:
    from importlib.resources import files

    return Path(str(files("srdeploy.models") / "zoo" / spec.file))


def resolve_weights(spec: WeightsSpec, explicit: str | os.PathLike | None = None,
                    download: bool = False) -> Path:
    """Find a checkpoint: explicit path, ``$SRDEPLOY_WEIGHTS`` (or ``../shared/weights``),
    the user cache, then — only when *download* is true — the public address."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise SrDeployError(f"weights file not found: {p}")
        return p
    if spec.embedded:
        path = embedded_path(spec)
        if not path.is_file():
            raise SrDeployError(f"embedded weights {spec.file} are missing from the installed package")
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise SrDeployError(f"embedded weights {spec.file} are damaged: sha256 {digest} != {spec.sha256}")
        return path
    searched = []
    for folder in (weights_dir(), cache_dir()):
        if folder is None:
            continue
        cand = folder / spec.file
        searched.append(str(folder))
        if cand.is_file():
            return cand
    if download:
        return download_weights(spec)
    raise SrDeployError(
        f"{spec.file} not found (looked in {', '.join(searched) or 'no folder'}); set SRDEPLOY_WEIGHTS, "
        f"pass a weights path, or allow the download from {spec.url}"
    )


def download_weights(spec: WeightsSpec) -> Path:
    """Download to the user cache with a progress bar; verify sha256; write-then-rename."""
    if not downloads_allowed():
        raise SrDeployError(f"download of {spec.file} refused: SRDEPLOY_OFFLINE is set")
    from tqdm import tqdm

    dest = cache_dir() / spec.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.file}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=spec.file,
                      disable=not sys.stderr.isatty()) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        digest = sha256_file(Path(tmp))
        if digest != spec.sha256:
            raise SrDeployError(f"checksum mismatch for {spec.file}: got {digest}, expected {spec.sha256}")
        os.replace(tmp, dest)
    except OSError as exc:
        raise SrDeployError(f"download of {spec.url} failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _remap(state: dict, remap: tuple[tuple[str, str], ...]) -> dict:
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        for pattern, repl in remap:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def read_checkpoint(path: Path):
    """``torch.load`` a checkpoint safely (tensors only); an unreadable file is a one-line user error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, not a torch file
        raise SrDeployError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def read_arch(checkpoint, path: Path) -> dict:
    """The ``arch`` entry of a loaded checkpoint (pruned variants record their shape there), or ``{}``."""
    arch = checkpoint.get("arch", {}) if isinstance(checkpoint, dict) else {}
    if not isinstance(arch, dict) or not all(isinstance(v, (int, bool)) for v in arch.values()):
        raise SrDeployError(f"checkpoint {path} has a malformed 'arch' entry")
    return arch


def load_checkpoint(model: nn.Module, path: Path, remap: tuple[tuple[str, str], ...] = (), checkpoint=None) -> None:
    """Load a state dict with ``strict=True`` after remapping; explain mismatches in one line.
    *checkpoint*: the file's contents when the caller has already read it (``read_checkpoint``)."""
    state = read_checkpoint(path) if checkpoint is None else checkpoint
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SrDeployError(f"{path} does not hold a state dict")
    state = _remap(state, remap)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        def brief(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {brief(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {brief(unexpected)}")
        if wrong_shape:
            parts.append(f"shape mismatch: {brief(wrong_shape)}")
        raise SrDeployError(
            f"checkpoint {path.name} does not fit {type(model).__name__}: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
