"""Shared fixtures.

Tests that need the official weights or the evaluation images find them through
``SRDEPLOY_WEIGHTS`` / ``SRDEPLOY_DATA`` (default ``../shared/...``). Locally they skip when
those are missing; in CI (``CI=true``) they fail, so a missing data set cannot pass silently.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["SRDEPLOY_OFFLINE"] = "1"  # no test may download anything
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from srdeploy.paths import data_dir, foreign_dir, weights_dir  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(path: Path | None, what: str) -> Path:
    if path is None or not path.is_dir():
        msg = f"{what} not found (set SRDEPLOY_{what.upper()} or provide ../shared/{what})"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def weights_root() -> Path:
    return _need(weights_dir(), "weights")


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _need(data_dir(), "data")


@pytest.fixture(scope="session")
def foreign_root() -> Path:
    """Other people's SR models as ONNX (../shared/foreign): a user's own model, for tests."""
    return _need(foreign_dir(), "foreign")


def need_target(kind: str, setup: str) -> None:
    """Skip locally, fail under CI=true, when a target (sr-target setup KIND) is not set up."""
    from srdeploy.targets import parse_target

    if not parse_target(kind).ready():
        msg = f"{kind} target not set up ({setup})"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Make every outgoing connection (and DNS lookup) fail, as on a machine with no network."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked("network access attempted during a test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in a child process; returns the completed process."""
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
