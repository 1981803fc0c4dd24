"""Quantization-ready INT8 parameters: QAT's result, saved once and applied to any export size.

``--qat-steps`` fine-tunes a calibrated float TFLite graph (:mod:`.qat`): its conv weights and
biases, and the min/max of every activation from which the converter derives each scale and zero
point. Nothing of that depends on the frame size — the weights have no spatial extent, and the
simulation trains on 64×64 crops whatever the export size — so the result is written once
(``sr-export ... --qat-steps N --save-int8-params FILE``) and re-applied to a fresh export of the
same graph at any size (``--int8-params FILE``; for registry models a shipped file is used by
default): the export then skips calibration statistics, range selection and QAT, and the integer
model is still the converter's own, built from exactly the trained weights and ranges.

Tensors are addressed by their index in the converter's flatbuffer. onnx2tf and the converter emit
the same graph in the same order for every frame size (checked: imdn_rtc at 64×64 and 48×80 gives
146 tensors and 85 operators in one order), but their *names* carry Keras' per-process counters, so
names are not used, and the order itself follows those names: :func:`..export.formats.convert_onnx2tf`
resets the counters before each conversion, so a second conversion in one process gives the same
order as the first (without it, both tensors and operators were permuted). A structural signature — every operator's kind and tensor indices, every
tensor's rank and channel count, every stored weight's shape — guards the indices: a file made for
another graph (other rewrites, another converter version, another network) is refused, never
half-applied.

The order is not always the same, though: with the ``conv_split`` INT8 rewrite the converter emits
the two independent convs cut from one distillation conv in one order at 256×256 and in the other at
64×64 (session 31) — the same graph, other indices. So a file also names every tensor it holds by a
**canonical key** (:func:`canonical_keys`): a colour from the graph's structure alone — each tensor's
type, rank, channels (a constant's whole shape), the kind of the operator that makes it and of those
that read it, refined to a fixed point over the whole graph (Weisfeiler–Lehman colour refinement) —
that does not depend on where the converter put a tensor or an operator. Two conversions of one
graph in any order give every tensor the same key; :func:`apply` uses the indices when the export is
the very graph the file was made on and the keys otherwise, and refuses a file whose keys are not
each found exactly once in the export (a graph whose structure does not tell two of its tensors
apart keeps only its indices). Files written before the keys (format v1) are applied by index only.

The file is a ``.npz`` read with ``allow_pickle=False`` (a user's file is hostile until parsed):
arrays ``w<index>`` (float32 weights and biases), ``ranges`` (N × 3: tensor index, min, max) and
``meta`` (UTF-8 JSON: format, signature, the canonical signature and keys, model, scale, rewrites, the
float weights' sha256, recipe).
Written by hand because the converter has no format for "calibrated ranges + weights" of one graph
that another conversion of it can take.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SrDeployError
from ..fsutil import atomic_write

__all__ = ["FORMAT", "Int8Params", "extract", "load", "save", "apply", "graph_signature", "canonical_keys"]

FORMAT = "srdeploy-int8-params-v2"
#: files of this format address tensors by index only (no canonical keys)
FORMAT_V1 = "srdeploy-int8-params-v1"
#: a file larger than this is not an INT8 parameter file of a lightweight SR network
MAX_BYTES = 256 << 20


@dataclass
class Int8Params:
    signature: str
    #: tensor index -> float32 constant (conv / depthwise weights in the flatbuffer's layout, biases)
    weights: dict[int, np.ndarray]
    #: tensor index -> (min, max) of the calibrated activation
    ranges: dict[int, tuple[float, float]]
    meta: dict = field(default_factory=dict)
    #: tensor index -> canonical key (:func:`canonical_keys`) for every index above; None: indices only
    keys: dict[int, str] | None = None
    #: the canonical signature of the graph the file was made on (with *keys*)
    canonical: str | None = None

    def describe(self) -> dict:
        return {"format": FORMAT if self.keys is not None else FORMAT_V1, "signature": self.signature,
                "weights": len(self.weights), "ranges": len(self.ranges),
                **{k: v for k, v in self.meta.items() if k not in ("format", "signature", "keys", "canonical")}}


def _kinds(model) -> list[str]:
    from ..benchmark.profile import op_kind, op_name_map

    names = op_name_map()
    return [op_kind(model, op, names) for op in model.subgraphs[0].operators]


def _conv_params(model) -> list[tuple[int, int | None]]:
    """``(weight index, bias index or None)`` of every CONV_2D / DEPTHWISE_CONV_2D."""
    out = []
    for kind, op in zip(_kinds(model), model.subgraphs[0].operators):
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            ins = [int(i) for i in op.inputs]
            out.append((ins[1], ins[2] if len(ins) > 2 and ins[2] >= 0 else None))
    return out


def _weight_indices(model) -> list[int]:
    """The tensors QAT trains: inputs 1 (weights) and 2 (bias) of every CONV_2D / DEPTHWISE_CONV_2D."""
    return [i for pair in _conv_params(model) for i in pair if i is not None]


def _array(model, index: int) -> np.ndarray:
    """A constant float32 tensor of *model* (a parsed flatbuffer), in its stored shape."""
    t = model.subgraphs[0].tensors[index]
    data = model.buffers[t.buffer].data
    return np.frombuffer(bytes(bytearray(data)), np.float32).reshape([int(d) for d in t.shape])


def graph_signature(model) -> str:
    """sha256 of the graph's structure without its frame size (see the module docstring)."""
    sg = model.subgraphs[0]
    h = hashlib.sha256()
    for kind, op in zip(_kinds(model), sg.operators):
        h.update(f"{kind}:{list(map(int, op.inputs))}>{list(map(int, op.outputs))};".encode())
    for t in sg.tensors:
        shape = [int(d) for d in (t.shape if t.shape is not None else ())]
        h.update(f"{int(t.type)}/{len(shape)}/{shape[-1] if shape else 0};".encode())
    for i in _weight_indices(model):
        h.update(f"w{i}:{[int(d) for d in sg.tensors[i].shape]};".encode())
    h.update(f"in{list(map(int, sg.inputs))}out{list(map(int, sg.outputs))}".encode())
    return h.hexdigest()


def _h(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def canonical_keys(model) -> list[str]:
    """A key for every tensor of *model* (a parsed flatbuffer) from its structure alone, independent of
    the order the converter stored tensors and operators in (see the module docstring).

    Written by hand (no graph library is a dependency, and the refinement is twenty lines): start from
    each tensor's own description, then colour every operator by its kind and its inputs' and outputs'
    colours (inputs in slot order), and every tensor by its colour, its producer's and its readers'
    (sorted), until the number of colours stops growing. Isomorphic graphs take the same number of
    rounds and give corresponding tensors equal keys; tensors the structure cannot tell apart share one."""
    sg = model.subgraphs[0]
    ops = [(kind, [int(i) for i in op.inputs], [int(o) for o in op.outputs])
           for kind, op in zip(_kinds(model), sg.operators)]
    g_in = {int(t): k for k, t in enumerate(sg.inputs)}
    g_out = {int(t): k for k, t in enumerate(sg.outputs)}
    producer, readers = {}, {i: [] for i in range(len(sg.tensors))}
    for k, (_, ins, outs) in enumerate(ops):
        for slot, o in enumerate(outs):
            producer[o] = (k, slot)
        for slot, i in enumerate(ins):
            if i >= 0:
                readers[i].append((k, slot))
    colour = []
    for i, t in enumerate(sg.tensors):
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        const = i not in producer and i not in g_in and data is not None and len(data) > 0
        # a constant's whole shape (weights have no spatial extent); an activation's rank and channels only
        colour.append(_h(int(t.type), len(shape), shape[-1] if shape else 0, shape if const else None,
                         g_in.get(i), g_out.get(i)))
    distinct = len(set(colour))
    for _ in range(len(ops) + 2):
        opc = [_h(kind, tuple(colour[i] if i >= 0 else "-" for i in ins), tuple(colour[o] for o in outs))
               for kind, ins, outs in ops]
        colour = [_h(colour[i], (opc[producer[i][0]], producer[i][1]) if i in producer else None,
                     tuple(sorted((opc[k], slot) for k, slot in readers[i]))) for i in range(len(colour))]
        if len(set(colour)) == distinct:
            break
        distinct = len(set(colour))
    return colour


def canonical_signature(keys: list[str]) -> str:
    """sha256 of a graph's canonical keys as a multiset: equal for every order of one graph."""
    return hashlib.sha256("".join(sorted(keys)).encode()).hexdigest()


def _addressed(model, weights: dict, ranges: dict, meta: dict) -> Int8Params:
    """An :class:`Int8Params` of *model* with its signature and, where the structure tells every stored
    tensor apart, canonical keys."""
    keys = canonical_keys(model)
    stored = set(weights) | set(ranges)
    count = Counter(keys)
    unique = all(count[keys[i]] == 1 for i in stored)
    return Int8Params(graph_signature(model), weights, ranges, dict(meta),
                      keys={i: keys[i] for i in stored} if unique else None,
                      canonical=canonical_signature(keys) if unique else None)


def _parse(blob: bytes):
    from ai_edge_litert.tools import flatbuffer_utils as fu

    return fu.convert_bytearray_to_object(bytearray(blob))


def extract(calibrated: bytes, meta: dict | None = None) -> Int8Params:
    """The weights and activation ranges of a calibrated float graph (e.g. QAT's tuned one)."""
    model = _parse(calibrated)
    sg = model.subgraphs[0]
    weights = {}
    for i in _weight_indices(model):
        weights[i] = _array(model, i).copy()
    ranges = {}
    for i, t in enumerate(sg.tensors):
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1 and i not in weights:
            ranges[i] = (float(q.min[0]), float(q.max[0]))
    if not ranges:
        raise SrDeployError("no calibrated activation ranges in this graph (not a calibrated model)")
    return _addressed(model, weights, ranges, meta or {})


def save(params: Int8Params, path: str | os.PathLike) -> Path:
    """Write *params* to *path* (a temporary name renamed when complete)."""
    path = Path(path)
    meta = {**params.meta, "format": FORMAT_V1, "signature": params.signature}
    if params.keys is not None:
        meta.update(format=FORMAT, canonical=params.canonical, keys={str(i): k for i, k in sorted(params.keys.items())})
    arrays = {f"w{i}": np.ascontiguousarray(a, np.float32) for i, a in params.weights.items()}
    arrays["ranges"] = np.array([[i, lo, hi] for i, (lo, hi) in sorted(params.ranges.items())], np.float64)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: savez_to(tmp, arrays))
    return path


def savez_to(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    """``np.savez`` into exactly *path* (given a file name, NumPy would append ``.npz`` to a temporary one)."""
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def load(path: str | os.PathLike, sha256: str | None = None) -> Int8Params:
    """Read and validate an INT8 parameter file; anything wrong with it is one SrDeployError line."""
    path = Path(path)
    if not path.is_file():
        raise SrDeployError(f"INT8 parameter file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise SrDeployError(f"{path} is {path.stat().st_size:,} bytes: not an INT8 parameter file")
    blob = path.read_bytes()
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise SrDeployError(f"INT8 parameter file {path.name} is damaged or not the shipped one: sha256 "
                            f"{hashlib.sha256(blob).hexdigest()} != {sha256}")
    bad = f"{path} is not a valid INT8 parameter file"
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop("meta").astype(np.uint8)).decode())
        table = arrays.pop("ranges")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
        raise SrDeployError(f"{bad} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, FORMAT_V1) \
            or not isinstance(meta.get("signature"), str):
        raise SrDeployError(f"{bad}: format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT}")
    if table.ndim != 2 or table.shape[1] != 3 or not np.all(np.isfinite(table)) or np.any(table[:, 1] > table[:, 2]):
        raise SrDeployError(f"{bad}: its ranges table is malformed (non-finite or min > max)")
    weights = {}
    for k, a in arrays.items():
        if not (k.startswith("w") and k[1:].isdigit()) or a.dtype != np.float32 or not np.all(np.isfinite(a)):
            raise SrDeployError(f"{bad}: unexpected array {k!r} ({a.dtype})")
        weights[int(k[1:])] = a
    ranges = {int(i): (float(lo), float(hi)) for i, lo, hi in table}
    keys = canonical = None
    if meta["format"] == FORMAT:
        raw, canonical = meta.get("keys"), meta.get("canonical")
        if not (isinstance(raw, dict) and isinstance(canonical, str)
                and all(isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in raw.items())):
            raise SrDeployError(f"{bad}: its canonical keys are malformed")
        keys = {int(k): v for k, v in raw.items()}
        if set(keys) != set(weights) | set(ranges) or len(set(keys.values())) != len(keys):
            raise SrDeployError(f"{bad}: its canonical keys do not name each stored tensor once")
    meta = {k: v for k, v in meta.items() if k not in ("keys", "canonical")}
    return Int8Params(meta["signature"], weights, ranges, meta, keys=keys, canonical=canonical)


def apply(calibrated: bytes, params: Int8Params) -> bytes:
    """*calibrated* (the converter's calibrated float graph of this export) with *params*' weights
    and ranges; refused when *params* were made for another graph."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = _parse(calibrated)
    where = _where(model, params)
    weights = {where[i]: a for i, a in params.weights.items()}
    ranges = {where[i]: r for i, r in params.ranges.items()}
    sg = model.subgraphs[0]
    expected = set(_weight_indices(model))
    if set(weights) != expected:
        raise SrDeployError("the INT8 parameters do not hold every conv weight of this graph")
    for i, arr in weights.items():
        t = sg.tensors[i]
        if list(arr.shape) != [int(d) for d in t.shape]:
            raise SrDeployError(f"INT8 parameters: weight {i} has shape {list(arr.shape)}, the graph {list(t.shape)}")
        model.buffers[t.buffer].data = np.frombuffer(np.ascontiguousarray(arr, np.float32).tobytes(), np.uint8)
    for i, (lo, hi) in ranges.items():
        if not 0 <= i < len(sg.tensors):
            raise SrDeployError(f"INT8 parameters: tensor {i} is not in this graph")
        q = sg.tensors[i].quantization
        if q is None or q.min is None:
            raise SrDeployError(f"INT8 parameters: tensor {i} has no calibrated range in this graph")
        q.min, q.max = [lo], [hi]
    return bytes(fu.convert_object_to_bytearray(model))


def _where(model, params: Int8Params) -> dict[int, int]:
    """The file's tensor index -> this graph's: the same index on the very graph the file was made on
    (same signature), else through the canonical keys; refused (one line) when neither fits."""
    sig = graph_signature(model)
    stored = set(params.weights) | set(params.ranges)
    if sig == params.signature:
        return {i: i for i in stored}
    refused = ("the INT8 parameters were made for another graph (another network, rewrites or converter version): "
               f"signature {params.signature[:12]} != this export's {sig[:12]}")
    if params.keys is None:
        raise SrDeployError(refused)
    keys = canonical_keys(model)
    if canonical_signature(keys) != params.canonical:
        raise SrDeployError(f"{refused}, and its structure differs too (canonical {params.canonical[:12]} != "
                            f"{canonical_signature(keys)[:12]})")
    index = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    where = {}
    for i in stored:
        hits = index.get(params.keys[i], [])
        if len(hits) != 1:
            raise SrDeployError(f"the INT8 parameters' tensor {i} is found {len(hits)} times in this graph, not once")
        where[i] = hits[0]
    return where
