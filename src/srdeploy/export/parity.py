"""The parity gate: does an artifact compute what the PyTorch model computes?

Each artifact runs on a real image (Set5 LR fitted to the export size) and on uniform random
input, and is compared with PyTorch on the same input. The reference is PyTorch in float32; where
an artifact misses the bound against it, the check is repeated against PyTorch in float64 (the
exact result of the network), because two float32 engines can differ from each other by more
than either differs from the exact result (IMDN+ on noise: PyTorch float32 is 8.5e-5 off exact).
The float64 run costs ~15× the float32 one, so it is only paid where it decides something.
Where even that misses, one more question is asked: is the artifact's error against the exact
result at most twice PyTorch float32's own error against it? Some checkpoints are so
ill-conditioned on uniform noise that *no* float32 engine meets 1e-4 at large sizes (IMDN+ at
720×480: PyTorch float32 itself is 1.8e-4 off exact, onnxruntime 2.2e-4); an artifact that is as
good as PyTorch's own float32 computes what PyTorch computes. The check records which rule
decided (``reference``) and PyTorch's own error (``torch_float32_error``).

* FP32 TFLite and ONNX: max |Δ| ≤ 1e-4 (outputs in [0, 1] units)
* FP16 TFLite: PSNR against PyTorch ≥ 50 dB (peak 1, outputs clipped to [0, 1])
* uint8-I/O ONNX and FP32 TFLite (``--io uint8``): ≤ 1 grey level from PyTorch's output
  rounded to uint8 (``max_abs`` then holds grey levels)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..imaging import psnr01

__all__ = ["ParityInput", "ParityResult", "THRESHOLDS", "check_parity", "format_table"]

#: precision → (metric, bound)
THRESHOLDS: dict[str, tuple[str, float]] = {
    "fp32": ("max_abs", 1e-4),
    "fp16": ("psnr_db", 50.0),
    # uint8-I/O graphs: output grey levels against PyTorch's output rounded to uint8
    "fp32_uint8": ("max_grey", 1.0),
    "fp16_uint8": ("psnr_db", 50.0),
    # INT8 is a lossy format: the gate catches broken quantization (bad calibration, wrong I/O
    # scales), not its cost, which the quality report measures in dB on Set5/Set14.
    "int8": ("psnr_db", 30.0),
}


@dataclass
class ParityInput:
    name: str
    nhwc: np.ndarray  # float32 [0, 1]
    reference: np.ndarray  # PyTorch float32 output, NHWC
    #: computes the float64 (exact) reference on demand; cached after the first call
    exact: object = None
    #: what computed ``reference`` (PyTorch for registry models and modules, onnxruntime for an ONNX file)
    reference_name: str = "pytorch-float32"
    _exact_cache: np.ndarray | None = None

    def exact_reference(self) -> np.ndarray | None:
        if self._exact_cache is None and self.exact is not None:
            self._exact_cache = self.exact(self.nhwc)
        return self._exact_cache


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


def _compare(out: np.ndarray, ref: np.ndarray, metric: str, bound: float, grey: bool = False) -> tuple[float, float, bool]:
    if grey:  # uint8 graphs: both sides as the uint8 images a phone would display
        grey = np.abs(np.round(out.astype(np.float64) * 255.0) - np.round(np.clip(ref, 0, 1) * 255.0))
        max_abs = float(np.max(grey))
    else:
        max_abs = float(np.max(np.abs(out.astype(np.float64) - ref)))
    psnr = psnr01(out, ref)
    value = psnr if metric == "psnr_db" else max_abs
    return max_abs, psnr, bool(value >= bound if metric == "psnr_db" else value <= bound)


def check_parity(artifact: str, precision: str, runner, inputs: list[ParityInput]) -> ParityResult:
    metric, bound = THRESHOLDS[precision]
    result = ParityResult(artifact, precision, metric, bound)
    for item in inputs:
        out = runner(item.nhwc)
        if out.shape != item.reference.shape:
            result.checks.append({"input": item.name, "max_abs": None, "psnr_db": None, "passed": False,
                                  "error": f"output shape {list(out.shape)} != {list(item.reference.shape)}"})
            continue
        ref_used = item.reference_name
        extra = {}
        grey = precision.endswith("_uint8")
        max_abs, psnr, ok = _compare(out, item.reference, metric, bound, grey)
        if not ok and item.exact is not None:
            ref_used = "pytorch-float64"
            exact = item.exact_reference()
            max_abs, psnr, ok = _compare(out, exact, metric, bound, grey)
            if not ok and metric == "max_abs":
                own = float(np.max(np.abs(item.reference.astype(np.float64) - exact)))
                extra["torch_float32_error"] = own
                if max_abs <= 2 * own:
                    ok, ref_used = True, "within-2x-pytorch-float32-error"
        result.checks.append({"input": item.name, "max_abs": max_abs, "reference": ref_used, **extra,
                              "psnr_db": None if psnr == float("inf") else round(psnr, 3), "passed": bool(ok)})
    return result


def format_table(results: list[ParityResult]) -> str:
    """One screen: artifact × input with max |Δ|, PSNR and verdict."""
    rows = [("artifact", "input", "reference", "max |Δ|", "PSNR vs ref", "bound", "result")]
    for r in results:
        bound = {"max_abs": f"|Δ| ≤ {r.bound:g}", "max_grey": f"≤ {r.bound:g} grey"}.get(r.metric, f"≥ {r.bound:g} dB")
        for c in r.checks:
            psnr = "inf" if c["psnr_db"] is None and c.get("max_abs") == 0 else (
                "-" if c["psnr_db"] is None else f"{c['psnr_db']:.2f} dB")
            mabs = "-" if c["max_abs"] is None else (
                f"{c['max_abs']:.0f} grey" if r.precision.endswith("_uint8") else f"{c['max_abs']:.2e}")
            ref = {"pytorch-float32": "torch32", "pytorch-float64": "torch64", "onnxruntime": "onnxrt",
                   "within-2x-pytorch-float32-error": "2x torch32"}.get(c.get("reference"), "-")
            rows.append((r.artifact, c["input"][:44], ref, mabs, psnr, bound, "PASS" if c["passed"] else "FAIL"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
