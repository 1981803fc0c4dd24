"""The parity gate: does an artifact compute what the PyTorch model computes?

Each artifact runs on a real image (Set5 LR fitted to the export size) and on uniform random
input, and is compared with PyTorch on the same input (run in float64, i.e. the exact result
of the network; a float32 PyTorch run is itself up to ~1e-4 off it for IMDN+ on noise):

* FP32 TFLite and ONNX: max |Δ| ≤ 1e-4 (outputs in [0, 1] units)
* FP16 TFLite: PSNR against PyTorch ≥ 50 dB (peak 1, outputs clipped to [0, 1])
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["ParityInput", "ParityResult", "THRESHOLDS", "check_parity", "format_table"]

#: precision → (metric, bound)
THRESHOLDS: dict[str, tuple[str, float]] = {
    "fp32": ("max_abs", 1e-4),
    "fp16": ("psnr_db", 50.0),
}


@dataclass
class ParityInput:
    name: str
    nhwc: np.ndarray  # float32 [0, 1]
    reference: np.ndarray  # PyTorch output, NHWC


@dataclass
class ParityResult:
    artifact: str
    precision: str
    metric: str
    bound: float
    checks: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def to_json(self) -> dict:
        d = asdict(self)
        d["status"] = "passed" if self.passed else "failed"
        return d


def _psnr01(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def check_parity(artifact: str, precision: str, runner, inputs: list[ParityInput]) -> ParityResult:
    metric, bound = THRESHOLDS[precision]
    result = ParityResult(artifact, precision, metric, bound)
    for item in inputs:
        out = runner(item.nhwc)
        if out.shape != item.reference.shape:
            result.checks.append({"input": item.name, "max_abs": None, "psnr_db": None, "passed": False,
                                  "error": f"output shape {list(out.shape)} != {list(item.reference.shape)}"})
            continue
        max_abs = float(np.max(np.abs(out.astype(np.float64) - item.reference)))
        psnr = _psnr01(out, item.reference)
        value = max_abs if metric == "max_abs" else psnr
        ok = value <= bound if metric == "max_abs" else value >= bound
        result.checks.append({"input": item.name, "max_abs": max_abs,
                              "psnr_db": None if psnr == float("inf") else round(psnr, 3), "passed": bool(ok)})
    return result


def format_table(results: list[ParityResult]) -> str:
    """One screen: artifact × input with max |Δ|, PSNR and verdict."""
    rows = [("artifact", "input", "max |Δ|", "PSNR vs torch", "bound", "result")]
    for r in results:
        bound = f"|Δ| ≤ {r.bound:g}" if r.metric == "max_abs" else f"≥ {r.bound:g} dB"
        for c in r.checks:
            psnr = "inf" if c["psnr_db"] is None and c.get("max_abs") == 0 else (
                "-" if c["psnr_db"] is None else f"{c['psnr_db']:.2f} dB")
            mabs = "-" if c["max_abs"] is None else f"{c['max_abs']:.2e}"
            rows.append((r.artifact, c["input"][:44], mabs, psnr, bound, "PASS" if c["passed"] else "FAIL"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
