"""The host side of the guest protocol (:mod:`.guest`): a model loaded once in a target's own
process, then ``runner(x)`` per input — the interface of :class:`srdeploy.runtime.TFLiteRunner`
(NHWC float [0, 1] in and out; quantized I/O encoded and decoded on the host by the same rules)."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np

from ..errors import SrDeployError

__all__ = ["GuestRunner", "MAX_FRAME"]

#: one frame may hold at most this much (a 2048×2048×3 float32 output ×16 is 805 MB)
MAX_FRAME = 1 << 31


def _read_frame(stream) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    if n > MAX_FRAME:
        raise SrDeployError(f"a target process sent a {n}-byte frame")
    data = stream.read(n)
    return data if len(data) == n else None


def _write_frame(stream, data: bytes) -> None:
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


class GuestRunner:
    kind = "tflite-target"

    def __init__(self, command: list[str], env: dict, model: Path | bytes, config: dict, label: str) -> None:
        guest = (Path(__file__).parent / "guest.py").read_text()
        self.label = label
        self.name = Path(model).name if isinstance(model, Path) else "(in memory)"
        blob = model.read_bytes() if isinstance(model, Path) else model
        self.proc = subprocess.Popen(command + ["-c", guest], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._stderr: list[bytes] = []
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        try:
            _write_frame(self.proc.stdin, json.dumps(config).encode())
            _write_frame(self.proc.stdin, blob)
            frame = _read_frame(self.proc.stdout)
        except (BrokenPipeError, OSError):
            frame = None
        if frame is None:
            self.close()
            raise SrDeployError(f"{label}: the target's LiteRT died loading {self.name}: {self._tail()}")
        self.info = json.loads(frame)
        if self.info.get("error"):
            self.close()
            raise SrDeployError(f"{label}: cannot load {self.name}: {self.info['error']}")
        self.input, self.output = self.info["input"], self.info["output"]
        self.seconds: list[float] = []

    def stderr_has(self, needle: bytes) -> bool:
        return any(needle in line for line in self._stderr)

    def stderr_line(self, needle: bytes) -> str | None:
        return next((ln.decode(errors="replace").strip() for ln in self._stderr if needle in ln), None)

    def _tail(self) -> str:
        text = [t for t in b"".join(self._stderr).decode(errors="replace").strip().splitlines() if t.strip()]
        return text[-1][:300] if text else f"exit code {self.proc.poll()}"

    @property
    def input_shape(self) -> list:
        return list(self.input["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from ..runtime import decode_output

        return decode_output(self.output, self.raw(x))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The guest's answer to *x* (encoded by the input's rules) as it sent it, undecoded."""
        from ..runtime import encode_input

        buf = io.BytesIO()
        np.save(buf, encode_input(self.input, x), allow_pickle=False)
        try:
            _write_frame(self.proc.stdin, buf.getvalue())
            frame = _read_frame(self.proc.stdout)
        except (BrokenPipeError, OSError):
            frame = None
        if frame is None:
            raise SrDeployError(f"{self.label}: the target's LiteRT died running {self.name}: {self._tail()}")
        self.seconds.append(struct.unpack("<d", frame[:8])[0])
        return np.load(io.BytesIO(frame[8:]), allow_pickle=False)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                _write_frame(self.proc.stdin, b"")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
