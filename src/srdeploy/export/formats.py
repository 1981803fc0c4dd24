"""One function per format: PyTorch → ONNX, ONNX → TFLite (FP32, FP16) via onnx2tf."""
from __future__ import annotations

import contextlib
import io as _io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import SrDeployError
from ..runtime import quiet_tensorflow
from ..sample_images import sample_batch
from .rewrites import DEFAULT_REWRITES

__all__ = ["ExportFailed", "export_onnx", "convert_onnx2tf", "ONNX_OPSET"]

ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"

#: onnx2tf loads this file from the current directory when present and otherwise downloads
#: it (MS-COCO crops) for its accuracy check — see ``download_test_image_data`` in onnx2tf.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


class ExportFailed(SrDeployError):
    """A converter failed on a valid request (exit code 1)."""

    exit_code = 1



def export_onnx(model: nn.Module, path: Path, size: tuple[int, int], rewrites: tuple[str, ...] = DEFAULT_REWRITES,
                io: str = "float32") -> dict:
    """Export NCHW ``1×3×H×W`` → ``1×3×sH×sW`` with the TorchScript exporter, simplify, then apply
    the exact graph *rewrites* (see :mod:`.rewrites`); returns what each changed. ``io="uint8"``
    wraps the model so the graph takes and returns uint8 RGB 0..255 (see :mod:`.io_wrap`)."""
    from .rewrites import apply_rewrites

    import onnx
    import onnxsim

    h, w = size
    dummy = torch.rand(1, 3, h, w)
    if io == "uint8":
        from .io_wrap import Uint8IO

        model, dummy = Uint8IO(model), (dummy * 255).to(torch.uint8)
    elif io != "float32":
        raise ValueError(f"graph I/O must be float32 or uint8, got {io!r}")
    buf = _io.BytesIO()
    with torch.no_grad(), _quiet():
        torch.onnx.export(model.eval(), (dummy,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    # onnxsim folds the Constant/Slice chains of torch.split; onnx2tf mis-lays-out the raw form.
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise ExportFailed("onnxsim could not validate the simplified ONNX graph")
    applied = apply_rewrites(simplified, rewrites)
    onnx.checker.check_model(simplified)
    onnx.save(simplified, str(path))
    return applied


def convert_onnx2tf(onnx_path: Path, work_dir: Path) -> dict[str, Path]:
    """Run onnx2tf offline in *work_dir*; return ``{"fp32": path, "fp16": path}``.

    onnx2tf wants sample images for image-shaped inputs and downloads them when the
    sample file is not in the current directory; we write one from local images first.
    """
    quiet_tensorflow()
    import onnx
    import onnx2tf

    from ..progress import heartbeat

    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "saved_model"
    log = work_dir / "onnx2tf.log"
    with contextlib.chdir(work_dir):
        np.save(ONNX2TF_SAMPLE_FILE, sample_batch(20, 128))
        try:
            nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
            n_ops = len(nodes)
            # TFLite has no ERF builtin (onnx2tf would emit a Flex op no phone runtime loads; its GELU
            # pattern match does not fire on torch's export): the polynomial erf of Abramowitz &
            # Stegun 7.1.26 (|error| ≤ 1.5e-7) in builtin ops. The parity gate checks the result.
            pseudo = ["erf"] if any(n.op_type == "Erf" for n in nodes) else []
            # Keras numbers layers per process (tf.math.add_39 vs add_79 on a second conversion), and
            # the converter orders tensors and operators by those names: reset them so that every
            # conversion of one graph gives the same flatbuffer, first in a process or not (INT8
            # parameter files address tensors by their place in it; same-size exports are byte-equal).
            import tf_keras

            tf_keras.backend.clear_session()
            with open(log, "w") as fh, contextlib.redirect_stdout(fh), _quiet(), \
                    heartbeat(f"onnx2tf: converting {n_ops} ONNX ops to TFLite"):
                onnx2tf.convert(
                    input_onnx_file_path=str(onnx_path),
                    output_folder_path=str(out),
                    non_verbose=True,
                    copy_onnx_input_output_names_to_tflite=True,
                    # already simplified by export_onnx; simplifying again would undo the rewrites
                    not_use_onnxsim=True,
                    replace_to_pseudo_operators=pseudo,
                )
        except (Exception, SystemExit) as exc:
            import re

            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            missing = re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", str(exc))
            if missing:
                raise ExportFailed(f"onnx2tf has no conversion for the ONNX op {missing.group(1)} "
                                   "(onnx2tf failed: not implemented)") from None
            text = re.sub(r"\x1b\[[0-9;]*m", "", f"onnx2tf failed: {type(exc).__name__}: {exc} {' '.join(tail)}")
            raise ExportFailed(" ".join(text.split())[:500]) from None
    stem = onnx_path.stem
    result = {"fp32": out / f"{stem}_float32.tflite", "fp16": out / f"{stem}_float16.tflite"}
    for prec, p in result.items():
        if not p.is_file():
            raise ExportFailed(f"onnx2tf produced no {prec} model (see {log})")
    return result


@contextlib.contextmanager
def _quiet():
    """Keep library warnings (exporter deprecations, TF chatter) off the user's screen."""
    import warnings

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            tf_logger.setLevel(level)
