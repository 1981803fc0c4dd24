"""The activation liveness bound of a TFLite graph: the least memory any runtime needs for its
run-time tensors when it executes the ops in the graph's own order.

A run-time tensor (a graph input, or an op's output; constants excluded) is alive from the op that
produces it (the inputs: from the start) to the last op that reads it (a graph output: to the end).
During op *k* its inputs and its outputs are all alive. The bound is the largest sum of bytes of
the tensors alive during any one op. An arena that reuses memory perfectly reaches it; the ratio
of a runtime's measured memory to this bound says how far it is from that. (TFLite's own arena
planner computes offsets, not this figure, and its Python API exposes neither; hence this code.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Liveness", "liveness_peak", "liveness_bound"]


@dataclass
class Liveness:
    bytes: int          # the bound
    op_index: int       # the op during which it is reached (-1: the graph inputs alone)
    tensors: int        # run-time tensors in the graph

    @property
    def mb(self) -> float:
        return self.bytes / 2**20

    def to_json(self) -> dict:
        return {"liveness_bound_mb": round(self.mb, 3), "peak_op_index": self.op_index,
                "runtime_tensors": self.tensors}


def liveness_peak(op_inputs: Sequence[Sequence[int]], op_outputs: Sequence[Sequence[int]],
                  graph_inputs: Sequence[int], graph_outputs: Sequence[int], size: dict[int, int]) -> Liveness:
    """The bound for ops given in execution order as lists of tensor ids; *size* holds the bytes of
    every run-time tensor (ids missing from it — constants — cost nothing)."""
    n = len(op_inputs)
    born = {t: -1 for t in graph_inputs if t in size}
    for k, outs in enumerate(op_outputs):
        for t in outs:
            if t in size:
                born.setdefault(t, k)
    last = dict(born)  # a tensor nobody reads dies where it is born
    for k, ins in enumerate(op_inputs):
        for t in ins:
            if t in born:
                last[t] = max(last[t], k)
    for t in graph_outputs:
        if t in born:
            last[t] = n
    best, where = sum(size[t] for t, b in born.items() if b == -1), -1
    for k in range(n):
        alive = sum(size[t] for t, b in born.items() if b <= k <= last[t])
        if alive > best:
            best, where = alive, k
    return Liveness(best, where, len(born))


def liveness_bound(path: str | Path) -> Liveness:
    """The bound of the main subgraph of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime import runtime_tensor_bytes

    m = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    sg = m.Subgraphs(0)
    size = runtime_tensor_bytes(m, sg)
    ops = [sg.Operators(k) for k in range(sg.OperatorsLength())]
    ins = [[int(i) for i in (op.InputsAsNumpy() if op.InputsLength() else []) if i >= 0] for op in ops]
    outs = [[int(i) for i in (op.OutputsAsNumpy() if op.OutputsLength() else [])] for op in ops]
    g_in = [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
    g_out = [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    return liveness_peak(ins, outs, g_in, g_out, size)
