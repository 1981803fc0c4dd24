"""The work of one sweep task, as plain functions (no Ray here: :mod:`.engine` wraps them in tasks,
and tests can call them directly). Each returns a JSON-able dict that says which node ran it;
a user-level failure (a refused model, a failed gate, a target that refuses a file) is a value in
that dict, never an exception, so one bad cell never costs the sweep.

Artifacts travel as bytes (``{file name: bytes}``): an export's files are a few MB, so every node
gets them through Ray's object store and no shared file system is needed.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

from ..errors import SrDeployError

__all__ = ["node_info", "export_group", "check_cell", "evaluate_artifact", "bench_artifacts", "materialize"]

#: files of an export folder that travel (the rest — locks, staging leftovers — stay)
TRAVELS = ("manifest.json", "model.onnx", "model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite")


def node_info() -> dict:
    """The node as Ray names it (its id; the driver maps ids to addresses) and this process."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # not under Ray (tests call these functions directly)
        node = None
    return {"host": socket.gethostname(), "node_id": node, "pid": os.getpid()}


def materialize(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name not in TRAVELS:  # names come from our own export, but are checked all the same
            raise SrDeployError(f"unexpected file {name!r} in an export's payload")
        (folder / name).write_bytes(data)
    return folder


def export_group(group) -> dict:
    """Export one model × size with every precision its cells need; the folder comes back as bytes
    (a failed parity gate too: its manifest says which artifact failed)."""
    from ..export import ExportConfig, Exporter

    t0 = time.time()
    h, w = group.size
    precs = set(group.precisions)
    error = None
    with tempfile.TemporaryDirectory(prefix="srdeploy-sweep-") as tmp:
        out = Path(tmp) / group.key
        cfg = ExportConfig(**group.model.export_kwargs(), scale=group.model.scale, size=f"{h}x{w}",
                           fp16="fp16" in precs, int8="int8" in precs,
                           calib=group.calib if "int8" in precs else None,
                           qat_steps=group.qat_steps if "int8" in precs else 0, out=str(out))
        try:
            Exporter(cfg, log=lambda m: None).run()
        except SrDeployError as exc:
            error = " ".join(str(exc).split())
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name in TRAVELS} if out.is_dir() else {}
    return {"files": files, "error": error, "node": node_info(), "seconds": round(time.time() - t0, 1)}


def check_cell(files: dict[str, bytes], target: str, artifact: str) -> dict:
    """``sr-target check`` of one artifact on one target (emulated ARM CPU, GPU, NPU compiler)."""
    from ..targets import parse_target
    from ..targets.check import check_export

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="srdeploy-sweep-") as tmp:
        folder = materialize(files, Path(tmp) / "export")
        try:
            res = check_export(folder, [parse_target(target)], [artifact], log=lambda m: None)
            res = next(iter(res.values()))[artifact]
        except SrDeployError as exc:
            res = {"status": "error", "error": " ".join(str(exc).split())}
    res.pop("compiled_file", None)  # it stayed on the node, in a temporary folder
    return {"result": res, "node": node_info(), "seconds": round(time.time() - t0, 1)}


def evaluate_artifact(files: dict[str, bytes], artifact: str, scale: int, dataset: str, threads: int) -> dict:
    """PSNR-Y / SSIM-Y of one artifact on one evaluation folder, tile by tile at its input size."""
    from ..benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="srdeploy-sweep-") as tmp:
        folder = materialize(files, Path(tmp) / "export")
        try:
            predict, _ = make_predictor(None, scale, str(folder / artifact), threads=threads)
            r = evaluate_dataset(predict, find_dataset(dataset, scale), scale)
            res = {"dataset": r.dataset, "psnr_y": r.psnr_y, "ssim_y": r.ssim_y, "images": r.images}
        except SrDeployError as exc:
            res = {"dataset": Path(dataset).name, "error": " ".join(str(exc).split())}
    return {**res, "node": node_info(), "seconds": round(time.time() - t0, 1)}


def bench_artifacts(payloads: list[tuple[str, dict[str, bytes], str]], size: tuple[int, int], threads: int,
                    runs: int, anchor: tuple[str, bytes] | None = None) -> dict:
    """One interleaved ``sr-bench`` run of every artifact of one size on this node (and the anchor
    first, when given): ``{label: BenchResult JSON}``. Run alone on its node (see engine)."""
    from ..benchmark.bench import BenchSetting, machine_info, run_benchmarks

    t0 = time.time()
    # Ray starts its workers at niceness 15: a timing at that priority loses the CPU to anything else
    # on the node (measured: the suite's latencies 6-20 % above the serial run's, the anchor's 81 %).
    # Back to 0 where allowed (root, or CAP_SYS_NICE); the niceness it ran at is in the result.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    with tempfile.TemporaryDirectory(prefix="srdeploy-sweep-bench-") as tmp:
        labels, settings = [], []
        if anchor:  # (file name, bytes): the reference model travels like the artifacts
            path = Path(tmp) / "anchor" / Path(anchor[0]).name
            path.parent.mkdir()
            path.write_bytes(anchor[1])
            labels.append("anchor")
            settings.append(BenchSetting(str(path), size, threads, "xnnpack"))
        for i, (label, files, artifact) in enumerate(payloads):
            folder = materialize({k: v for k, v in files.items() if k == artifact}, Path(tmp) / str(i))
            labels.append(label)
            settings.append(BenchSetting(str(folder / artifact), size, threads, "xnnpack"))
        results = run_benchmarks(settings, warmup=1, runs=runs)
        out = {}
        for label, r in zip(labels, results):
            d = r.to_json()
            d.pop("model", None)  # a temporary path
            out[label] = d
    return {"results": out, "node": node_info(), "machine": {**machine_info(), "niceness": nice},
            "seconds": round(time.time() - t0, 1)}
