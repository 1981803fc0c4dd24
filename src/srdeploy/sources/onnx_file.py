"""A user's ONNX file (``sr-export --onnx FILE``), in any I/O convention.

The file is hostile until parsed: it is read without external data (a tensor stored in another
file is refused: its path could point anywhere), its size is bounded, and it must be a single-input,
single-output 4-D float model whose channels match ``--channels`` and whose output at the export
size is ``scale`` times its input. The srdeploy-convention graph is the source graph with its
dynamic H/W fixed to ``--size`` (onnxsim then folds the shape arithmetic, e.g. a Resize's computed
sizes), upgraded to opset 17 when older, wrapped in the exact I/O conversion of
:mod:`.convention` (merged with ``onnx.compose``), and given the project's exact rewrites where
they match (DCR depth-to-space, split mean). The reference is onnxruntime on the *unmodified*
source file with the conversion written independently in numpy.
"""
from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import SrDeployError
from .base import ModelSource, export_name
from .convention import FromSource, IOConvention, ToSource, from_source_np, to_source_np
from .module import _check_shape

__all__ = ["OnnxSource", "MAX_ONNX_BYTES"]

#: protobuf's own limit is 2 GB; a super-resolution model is a few MB
MAX_ONNX_BYTES = 1 << 30
OPSET = 17


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


class OnnxSource(ModelSource):
    kind = "onnx"
    quality_label = "source_onnx"

    def __init__(self, path: str | Path, scale: int, convention: IOConvention = IOConvention(),
                 name: str | None = None) -> None:
        import onnx

        p = Path(path).expanduser()
        if not p.is_file():
            raise SrDeployError(f"ONNX file not found: {p}")
        if p.stat().st_size > MAX_ONNX_BYTES:
            raise SrDeployError(f"{p.name} is {p.stat().st_size / 2**30:.1f} GB; ONNX models of at most "
                                f"{MAX_ONNX_BYTES >> 30} GB are accepted")
        if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
            raise SrDeployError(f"--onnx needs --scale S (an integer 1..16), got {scale!r}")
        try:
            proto = onnx.load(str(p), load_external_data=False)
        except Exception as exc:
            raise SrDeployError(f"{p.name} is not an ONNX model ({_first_line(exc)})") from None
        g = proto.graph
        if not g.node or not proto.opset_import:
            raise SrDeployError(f"{p.name} is not an ONNX model (no graph or no opset)")
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in g.initializer):
            raise SrDeployError(f"{p.name} keeps tensors in external data files; save the model with all its "
                                "tensors inside (onnx.save(model, path, save_as_external_data=False))")
        inits = {t.name for t in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1 or len(g.output) != 1:
            names = ", ".join(i.name for i in inputs) if len(inputs) != 1 else ", ".join(o.name for o in g.output)
            what = "inputs" if len(inputs) != 1 else "outputs"
            raise SrDeployError(f"{p.name} has {len(inputs) if what == 'inputs' else len(g.output)} {what} ({names}); "
                                "srdeploy exports single-input, single-output image models")
        self.input_name, self.output_name = inputs[0].name, g.output[0].name
        dims = _dims(inputs[0])
        if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise SrDeployError(f"{p.name}: input {self.input_name!r} is not float32; srdeploy exports float models")
        if len(dims) != 4:
            raise SrDeployError(f"{p.name}: input {self.input_name!r} has shape {dims} (rank {len(dims)}); "
                                "expected a 4-D NCHW image batch")
        c = convention.n_channels
        if isinstance(dims[1], int) and dims[1] != c:
            raise SrDeployError(f"{p.name}: input {self.input_name!r} has {dims[1]} channels, but --channels "
                                f"{convention.channels} means {c}" + (" (pass --channels y for a luma-only model)"
                                                                      if dims[1] == 1 else ""))
        if isinstance(dims[0], int) and dims[0] != 1:
            raise SrDeployError(f"{p.name}: input batch is fixed to {dims[0]}; srdeploy exports batch 1")
        self.path, self.sha256 = p, _sha256(p)
        self.name = export_name(name, p.stem)
        self.scale, self.convention = scale, convention
        self.fixed_size = (dims[2], dims[3]) if isinstance(dims[2], int) and isinstance(dims[3], int) else None
        self.default_size = None
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.ops = sorted({n.op_type for n in g.node})
        self.description = f"user ONNX model {p.name}"
        self._parameters = int(sum(int(np.prod(t.dims)) for t in g.initializer
                                   if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)))
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SrDeployError(f"onnxruntime cannot load {p.name}: {_first_line(exc)}") from None

    # ---------------------------------------------------------------- checks
    def check_output(self, h: int, w: int) -> None:
        c = self.convention.n_channels
        try:
            out = self.session.run(None, {self.input_name: np.zeros((1, c, h, w), np.float32)})[0]
        except Exception as exc:
            raise SrDeployError(f"{self.path.name} does not run on a 1x{c}x{h}x{w} input: {_first_line(exc)}") from None
        _check_shape(self.path.name, out.shape, c, h, w, self.scale)

    @property
    def weights_info(self) -> dict:
        return {"source": "onnx", "file": str(self.path), "sha256": self.sha256}

    @property
    def parameters(self) -> int:
        return self._parameters

    def describe(self) -> dict:
        return {**super().describe(), "file": str(self.path), "sha256": self.sha256, "opset": self.opset,
                "input": self.input_name, "output": self.output_name, "ops": self.ops}

    # ---------------------------------------------------------------- reference
    def _run(self, nhwc: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2), dtype=np.float32)
        s = to_source_np(x, self.convention).astype(np.float32)
        y = self.session.run(None, {self.input_name: s})[0]
        return from_source_np(y, x, self.convention, self.scale).transpose(0, 2, 3, 1)

    def reference(self):
        return self._run, None

    # ---------------------------------------------------------------- the srdeploy-convention graph
    def write_onnx(self, path, size, rewrites, io="float32") -> dict:
        import onnx
        import onnx.compose
        import onnxsim

        from ..export.formats import ExportFailed
        from ..export.rewrites import apply_rewrites

        h, w = size
        c, s = self.convention.n_channels, self.scale
        src = onnx.load(str(self.path), load_external_data=False)
        if self.opset != OPSET:
            from onnx import version_converter

            try:
                src = version_converter.convert_version(src, OPSET)
            except Exception as exc:
                raise SrDeployError(f"{self.path.name}: opset {self.opset} cannot be converted to {OPSET}: "
                                    f"{_first_line(exc)}") from None
        try:
            src, ok = onnxsim.simplify(src, overwrite_input_shapes={self.input_name: [1, c, h, w]})
        except Exception as exc:
            raise SrDeployError(f"{self.path.name}: cannot fix the input to 1x{c}x{h}x{w}: {_first_line(exc)}") from None
        if not ok:
            raise ExportFailed(f"onnxsim could not validate {self.path.name} at 1x{c}x{h}x{w}")
        if self.convention.is_native and io == "float32":
            model = src
            _rename_io(model, "input", "output")
        else:
            pre = _adapter_onnx(_Pre(self.convention, io), [torch.zeros(1, 3, h, w, dtype=_in_dtype(io))],
                                ["input"], ["src_in"] + (["rgb_lr"] if c == 1 else []), src.ir_version)
            post_in = [torch.zeros(1, c, h * s, w * s)] + ([torch.zeros(1, 3, h, w)] if c == 1 else [])
            post = _adapter_onnx(_Post(self.convention, s, io), post_in,
                                 ["src_out"] + (["rgb_lr"] if c == 1 else []), ["output"], src.ir_version)
            try:
                model = onnx.compose.merge_models(pre, src, io_map=[("src_in", self.input_name)],
                                                  prefix1="pre/", prefix2="source/")
                links = [("source/" + self.output_name, "src_out")] + ([("pre/rgb_lr", "rgb_lr")] if c == 1 else [])
                model = onnx.compose.merge_models(model, post, io_map=links, prefix2="post/")
            except Exception as exc:
                raise SrDeployError(f"{self.path.name}: cannot add the I/O conversion: {_first_line(exc)}") from None
            _rename_io(model, "input", "output")
            model, ok = onnxsim.simplify(model)
            if not ok:
                raise ExportFailed("onnxsim could not validate the I/O-wrapped graph")
        _constants_to_initializers(model)
        for i, n in enumerate(model.graph.node):  # TF op names must match ^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$
            n.name = f"n{i}_{n.op_type}"
        applied = apply_rewrites(model, rewrites)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return applied


def _in_dtype(io: str):
    return torch.uint8 if io == "uint8" else torch.float32


class _Pre(nn.Module):
    def __init__(self, conv: IOConvention, io: str) -> None:
        super().__init__()
        self.to_source, self.io, self.keep = ToSource(conv), io, conv.n_channels == 1

    def forward(self, x):
        if self.io == "uint8":
            from ..export.io_wrap import bytes_to_unit

            x = bytes_to_unit(x)
        s = self.to_source(x)
        return (s, x * 1.0) if self.keep else s  # (x * 1.0: a node of its own, not the graph input)


class _Post(nn.Module):
    def __init__(self, conv: IOConvention, scale: int, io: str) -> None:
        super().__init__()
        self.from_source, self.io = FromSource(conv, scale), io

    def forward(self, y, rgb_lr=None):
        y = self.from_source(y, rgb_lr)
        if self.io == "uint8":
            from ..export.io_wrap import unit_to_bytes

            y = unit_to_bytes(y)
        return y


def _adapter_onnx(module: nn.Module, args: list, inputs: list[str], outputs: list[str], ir_version: int):
    """A conversion module as its own ONNX graph (opset 17, the source's IR version) for merging."""
    import onnx

    from ..export.formats import _quiet

    buf = _io.BytesIO()
    with torch.no_grad(), _quiet():
        torch.onnx.export(module.eval(), tuple(args), buf, input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = ir_version
    return proto


def _rename_io(model, new_in: str, new_out: str) -> None:
    """Name the single graph input and output ``input`` / ``output`` (the names every artifact carries)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    old_in = next(i for i in g.input if i.name not in inits)
    renames = {old_in.name: new_in, g.output[0].name: new_out}
    used = {v for n in g.node for v in list(n.input) + list(n.output)} | inits
    for old, new in renames.items():
        if old == new or new in used:  # (a tensor inside already has that name: keep the source's)
            continue
        for n in g.node:
            n.input[:] = [new if v == old else v for v in n.input]
            n.output[:] = [new if v == old else v for v in n.output]
        for v in list(g.input) + list(g.output) + list(g.value_info):
            if v.name == old:
                v.name = new


def _constants_to_initializers(model) -> None:
    """Constant nodes → initializers (the same values). onnx2tf cannot take a Constant node's output
    straight into arithmetic (BSRN's GELU: ``Div(x, Constant(√2))`` fails its conversion)."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    keep = []
    for n in g.node:
        attrs = {a.name: a for a in n.attribute}
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and "value" in attrs:
            arr = numpy_helper.to_array(onnx.helper.get_attribute_value(attrs["value"]))
            g.initializer.append(numpy_helper.from_array(arr, n.output[0]))
        else:
            keep.append(n)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)


def _sha256(p: Path) -> str:
    from ..models.weights import sha256_file

    return sha256_file(p)
