"""Carry an INT8 parameter file across an exact graph rewrite, without re-running QAT.

An INT8 parameter file (:mod:`.int8_params`) addresses tensors by their index in one converted
graph, guarded by that graph's signature. An exact rewrite (:mod:`..export.rewrites`, e.g.
``conv_split``) gives another graph computing the same values, so a file made by hours of QAT on the
first one says everything the second needs — only under other indices, and with some tensors cut
into channel pieces. :func:`port` finds, for each tensor of the new graph, where its values lived in
the old one:

* **weights**: each new conv's official weights (and bias) are a run of output channels of exactly one
  old conv's (equal, not close: the rewrite copies them), so its fine-tuned weights are the same run
  of the old file's;
* **activation ranges**: both calibrated float graphs run on the same input, every intermediate
  tensor kept; a new tensor whose values equal a run of channels of an old tensor takes that old
  tensor's range (the range its channels were quantized with there). Ties — several old tensors
  holding the same values, e.g. an activation and the slice cut from it — go to the old tensor with
  the fewest channels; equal values with other ranges (e.g. attention tensors that are all zero on the
  input used) by structure — the old tensor whose producer is of the same kind and reads what the new
  producer's inputs were matched to.

A tensor takes the range *recorded* for its source. Files written by QAT record, for every tensor of a
group the converter makes share one scale (a concat's inputs, a slice and its input), that group's
scale, so the rewritten graph gets the very scales the old one ran with; a file of raw calibration
statistics records each tensor's own range, which a slice never used, and its port is not the same
INT8 model.

The ported file therefore makes the new graph's INT8 model compute what the old file's did (checked
by :func:`port`'s caller on the quality report), and QAT resumed from it can use the freedom the
rewrite adds (each piece its own scale). Written by hand: the converter has no notion of one graph
being a rewrite of another.
"""
from __future__ import annotations

import numpy as np

from ..errors import SrDeployError
from .int8_params import (Int8Params, _addressed, _array, _conv_params, _kinds, _parse, _weight_indices, _where,
                          graph_signature)

__all__ = ["port"]


def _find_rows(old: np.ndarray, new: np.ndarray) -> int | None:
    """Offset ``k`` with ``old[k:k + len(new)] == new`` exactly (the leading axis), else None."""
    if old.shape[1:] != new.shape[1:] or len(new) > len(old):
        return None
    hits = [k for k in range(len(old) - len(new) + 1) if np.array_equal(old[k:k + len(new)], new)]
    return hits[0] if len(hits) == 1 else None


def _all_tensors(blob: bytes, x: np.ndarray) -> dict[int, np.ndarray]:
    """Every float tensor of a float TFLite graph on input *x* (LiteRT, all tensors kept)."""
    from ai_edge_litert.interpreter import Interpreter

    import warnings

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": keeping them is the point here
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_content=blob, experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        if d["dtype"] == np.float32 and len(d["shape"]) == 4:
            try:
                out[d["index"]] = it.get_tensor(d["index"]).copy()
            except ValueError:  # a tensor LiteRT did not keep (e.g. freed by the delegate)
                continue
    return out


def port(old_calibrated: bytes, old: Int8Params, new_calibrated: bytes, seed: int = 0) -> Int8Params:
    """*old* (made for *old_calibrated*) as a parameter file for *new_calibrated*, an exact rewrite of it.

    Both graphs are the converter's calibrated float graphs of the same model and weights (e.g. the
    ``calibrated`` flatbuffers of two QAT job files). Refused, one line, when a new weight or range has
    no unique source in the old graph."""
    om, nm = _parse(old_calibrated), _parse(new_calibrated)
    try:  # the file's tensors as the old graph's indices (by key when the old graph was stored in another order)
        where = _where(om, old)
    except SrDeployError:
        raise SrDeployError("port: the INT8 parameters were not made for the old graph given") from None
    old = Int8Params(graph_signature(om), {where[i]: a for i, a in old.weights.items()},
                     {where[i]: r for i, r in old.ranges.items()}, old.meta)
    if graph_signature(nm) == old.signature:  # the very graph: nothing to match, the file re-addressed (keys added)
        return _addressed(nm, old.weights, old.ranges, old.meta)
    # weights: each new conv's official weights are one run of output channels of one old conv's
    old_convs = [(w, b, _array(om, w)) for w, b in _conv_params(om)]
    weights, conv_source = {}, {}  # new weight tensor -> its source: old weight tensor
    for w, b in _conv_params(nm):
        arr = _array(nm, w)
        hits = [(ow, ob, k) for ow, ob, oarr in old_convs if (k := _find_rows(oarr, arr)) is not None]
        if len(hits) != 1:
            raise SrDeployError(f"port: new conv weight {w} {list(arr.shape)} matches {len(hits)} old convs, not one")
        ow, ob, k = hits[0]
        conv_source[w] = ow
        weights[w] = np.ascontiguousarray(old.weights[ow][k:k + len(arr)])
        if b is not None:
            if ob is None or not np.array_equal(_array(om, ob)[k:k + len(arr)], _array(nm, b)):
                raise SrDeployError(f"port: the bias of new conv weight {w} is not the old conv's")
            weights[b] = np.ascontiguousarray(old.weights[ob][k:k + len(arr)])
    if set(weights) != set(_weight_indices(nm)):
        raise SrDeployError("port: not every conv weight of the new graph was found")
    # ranges: match the values of every ranged tensor on one input
    sg = nm.subgraphs[0]
    shape = [int(d) for d in sg.tensors[int(sg.inputs[0])].shape]
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    ov, nv = _all_tensors(old_calibrated, x), _all_tensors(new_calibrated, x)
    ranged_old = {i: a for i, a in ov.items() if i in old.ranges}
    # a cheap fingerprint first: each channel's values at a few fixed pixels (full tensors only for candidates)
    probe = lambda a: a.reshape(-1, a.shape[3])[:: max(1, a.shape[1] * a.shape[2] // 16)][:16]  # noqa: E731
    old_probe = {j: probe(b) for j, b in ranged_old.items()}

    def same(b, a, k, tol):
        return np.abs(b[..., k:k + a.shape[3]] - a).max() <= tol

    def offsets(j, a, pa, tol):
        b, pb = ranged_old[j], old_probe[j]
        return [k for k in range(b.shape[3] - a.shape[3] + 1)
                if np.abs(pb[:, k:k + a.shape[3]] - pa).max() <= tol and same(b, a, k, tol)]

    # ties (equal values, other ranges: e.g. several all-zero attention tensors) go by structure: the old tensor
    # whose producer is of the same kind and reads the sources of what the new producer reads (a conv: the old conv
    # its weights came from); so tensors are matched in operator order, inputs before outputs
    def producers(model):
        return {int(o): (kind, op) for kind, op in zip(_kinds(model), model.subgraphs[0].operators) for o in op.outputs}

    new_prod, old_prod = producers(nm), producers(om)
    source: dict[int, int] = {}

    def same_producer(i, j) -> bool:
        if i not in new_prod or j not in old_prod or new_prod[i][0] != old_prod[j][0]:
            return False
        (kind, nop), (_, oop) = new_prod[i], old_prod[j]
        n_in, o_in = [int(v) for v in nop.inputs], [int(v) for v in oop.inputs]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return conv_source.get(n_in[1]) == o_in[1]
        return len(n_in) == len(o_in) and all(source.get(a, b) == b for a, b in zip(n_in, o_in) if a not in weights)

    order = [int(v) for v in sg.inputs] + [int(o) for op in sg.operators for o in op.outputs]
    ranges = {}
    for i in dict.fromkeys(order):
        t = sg.tensors[i]
        q = t.quantization
        if q is None or q.min is None or len(q.min) != 1 or i in weights:
            continue
        if i not in nv:
            raise SrDeployError(f"port: new tensor {i} ({t.name.decode() if t.name else ''}) could not be read")
        a = nv[i]
        tol = 1e-5 * max(1.0, float(np.abs(a).max()))
        pa = probe(a)
        hits = [j for j, b in ranged_old.items() if b.shape[:3] == a.shape[:3] and b.shape[3] >= a.shape[3]
                and offsets(j, a, pa, tol)]
        name = t.name.decode() if t.name else ""
        if not hits:
            raise SrDeployError(f"port: new tensor {i} ({name}) has no source in the old graph: not an exact "
                                "rewrite of it")
        fewest = min(ov[j].shape[3] for j in hits)
        hits = [j for j in hits if ov[j].shape[3] == fewest]
        if len({old.ranges[j] for j in hits}) > 1:  # equal values, other ranges: by structure
            hits = [j for j in hits if same_producer(i, j)]
            if len({old.ranges[j] for j in hits}) != 1:
                raise SrDeployError(f"port: new tensor {i} ({name}) matches old tensors of different ranges")
        source[i] = hits[0]
        ranges[i] = old.ranges[hits[0]]
    meta = dict(old.meta)
    meta["ported_from_signature"] = old.signature
    return _addressed(nm, weights, ranges, meta)


def main(argv: list[str] | None = None) -> int:
    """``python -m srdeploy.quantize.port OLD_JOB NEW_JOB PARAMS --out OUT``: the graphs are the ``calibrated``
    flatbuffers of two QAT job files (``sr-export ... --qat-job``) of the same model, size and weights."""
    import argparse
    import json
    import sys

    from . import int8_params as ip
    from . import qat_job

    p = argparse.ArgumentParser(prog="python -m srdeploy.quantize.port", description=(
        "Carry an INT8 parameter file made for one graph (OLD_JOB's) onto an exact rewrite of it (NEW_JOB's, e.g. "
        "made with --int8-rewrites ...,conv_split), matching weights and activations by value; no training. "
        "Given the same job twice, it re-writes a file of format v1 (tensors by index) as v2 (by canonical key too, "
        "so that it holds where the converter stores the graph in another order), weights and ranges unchanged."))
    p.add_argument("old_job", help="QAT job file of the graph PARAMS was made for")
    p.add_argument("new_job", help="QAT job file of the rewritten graph (same model, export size and weights; made "
                   "with --int8-params none --equalize off, so that its weights are the official ones unscaled)")
    p.add_argument("params", help="the INT8 parameter file to carry over")
    p.add_argument("--out", required=True, help="the ported INT8 parameter file (apply with sr-export --int8-params)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    args = p.parse_args(argv)
    try:
        old_job, new_job = qat_job.load(args.old_job), qat_job.load(args.new_job)
        params = ip.load(args.params)
        ported = port(old_job.calibrated, params, new_job.calibrated)
        meta = dict(ported.meta)
        for key in ("rewrites", "int8_rewrites"):  # what the new graph was made with
            if key in new_job.params_meta:
                meta[key] = new_job.params_meta[key]
        ported.meta = meta
        ip.save(ported, args.out)
    except SrDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {"out": args.out, "weights": len(ported.weights), "ranges": len(ported.ranges),
               "signature": ported.signature, "ported_from_signature": params.signature}
    print(json.dumps(summary) if args.json else
          f"ported {len(ported.weights)} weights and {len(ported.ranges)} ranges to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
