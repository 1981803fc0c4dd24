"""srdeploy: lightweight super-resolution networks from PyTorch to phones, with numbers."""
import os as _os

__version__ = "0.1.0"

# Third-party switches that only work when set before those libraries are imported, so they are
# set here, at the first import of anything in srdeploy (every CLI entry point starts here):
# TensorFlow/absl start-up chatter ("Could not find cuda drivers", oneDNN notices) — nothing a user
# of a CPU export can act on; OpenCV's decoder limit, a second line of defence behind the header
# check in srdeploy.imaging (a tiny file must not decode into gigabytes).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 26))


# ``srdeploy.export(model, scale=..., size=..., ...)``: the export package is callable (see its docstring)
from . import export  # noqa: E402,F401
