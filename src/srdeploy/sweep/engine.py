"""Run a :class:`~.plan.Plan` on Ray: a local Ray started in-process (default) or a cluster by address.

Tasks and what they ask of a node:

* export (one per model × size, shared by its cells): 1 CPU; 1 GPU where QAT runs and the cluster
  has GPUs;
* target check (one per cell off the host): 1 CPU and 1 unit of the custom resource
  ``srdeploy_<kind>`` (``srdeploy_arm64``, ``srdeploy_gpu``, ``srdeploy_qualcomm``), which only a
  node with that target set up offers (``sr-sweep --node-resources``), so no node is given an ARM
  check without an ARM root;
* evaluation (one per artifact × evaluation folder, shared by the targets): 1 CPU;
* latency and memory: after every other task has finished, one interleaved ``sr-bench`` run per
  size on one node reserved for it (the task holds every CPU of the largest node, so nothing else of
  the sweep runs there). One node, so every latency in the table is comparable with every other (a
  ratio across nodes would compare machines); after the other tasks, because work beside a timing is
  what makes timings noise. Targets other than the host get no latency: emulated time is not a
  phone's time.

A worker that dies (killed, out of memory) is retried by Ray up to ``retries`` times; after that its
cells become rows with the error. ``results.json`` is rewritten (atomically) after every finished
cell, so an interrupted sweep keeps what it finished and ``--resume`` reruns only the rest.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import SrDeployError
from ..fsutil import FolderLock, atomic_write_json, ensure_writable_dir, replaced_whole
from .plan import HOST, Cell, ExportGroup, Plan

__all__ = ["run_sweep", "local_resources", "FINISHED"]

#: row statuses that ``--resume`` keeps (an "error" row is run again)
FINISHED = ("passed", "failed", "skipped")
RESULTS = "results.json"


def local_resources() -> dict[str, float]:
    """The custom resources this machine offers a sweep: one per target kind that is set up here."""
    from ..targets import KINDS, Target

    cpus = float(os.cpu_count() or 1)
    return {f"srdeploy_{k}": cpus for k in KINDS if Target(k, "").ready()}


def _import_ray():
    if "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        # Ray 2.60's clusters require their token by default, but its client sends one only in token
        # mode, which Ray reads when it is imported
        os.environ["RAY_AUTH_MODE"] = "token"
    # Ray reports usage to its makers unless told not to: a sweep reaches no network of its own
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise SrDeployError('sr-sweep needs Ray: pip install -e ".[sweep]" (or pip install "ray==2.60.*")') from None
    return ray


def _start_ray(ray, address: str | None, num_cpus: int | None):
    common = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False,
              "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, resources=local_resources(),
                     object_store_memory=300 * 2**20, **common)
    except Exception as exc:  # an unreachable address, a version mismatch: one line
        raise SrDeployError(f"could not {'connect to Ray at ' + address if address else 'start a local Ray'}: "
                            f"{' '.join(str(exc).split())[:300]}") from None


def _lost(kind: str, exc: Exception) -> str:
    """The error of a task whose worker died past its retries (or that raised)."""
    return f"{kind} task lost: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


class _Sweep:
    def __init__(self, plan: Plan, out: Path, address: str | None, retries: int, log: Callable[[str], None],
                 previous: dict[str, dict], before: dict):
        self.plan, self.out, self.address, self.retries, self.log = plan, out, address, retries, log
        self.rows: dict[str, dict] = {}
        self.cells = plan.cells()  # the grid, in plan order (rows are written in it)
        self.previous = previous
        self.t0 = time.time()
        # a resumed sweep keeps its first start and adds up the wall time of its runs
        self.started = before.get("started") or dt.datetime.now().isoformat(timespec="seconds")
        seconds, runs = before.get("seconds"), before.get("invocations")
        self.seconds_before = float(seconds) if isinstance(seconds, (int, float)) else 0.0
        self.invocations = (runs if isinstance(runs, int) else 0) + 1
        self.cluster: dict = {}
        #: the anchor's latency per size ("HxW"), the reference of every row's ratio_to_anchor
        self.anchor_rows: dict[str, dict] = {}
        self.pending_cells: dict[str, Cell] = {}
        self.waiting: dict[str, set] = {}
        self.node_ips: dict[str, str] = {}

    def where(self, node: dict) -> dict:
        """A task's node with its address (from the cluster's node table)."""
        return {**node, "ip": self.node_ips.get(node.get("node_id"))}

    # ---------------------------------------------------------------- results
    def write(self) -> None:
        cells = [self.rows[c.id] for c in self.cells if c.id in self.rows]
        doc = {"srdeploy": __version__, "started": self.started, "invocations": self.invocations,
               "seconds": round(self.seconds_before + time.time() - self.t0, 1),
               "folder": str(self.out.resolve()), "address": self.address or "local", "cluster": self.cluster, "plan": self.plan.describe(),
               "cells": cells, "anchor": self.anchor_rows}
        atomic_write_json(self.out / RESULTS, doc)

    def new_row(self, cell: Cell) -> dict:
        m = cell.group.model
        gmac = None if m.gmac_per_mpix is None else round(m.gmac_per_mpix * cell.group.size[0] * cell.group.size[1] / 1e6, 2)
        return {"id": cell.id, "hash": cell.hash, "srdeploy": __version__, "config": cell.config(), "gmac": gmac,
                "random_weights": m.random_weights, "status": None, "done": False, "parity": None, "target": None,
                "quality": {}, "latency": None, "memory": None, "nodes": {}, "errors": [], "seconds": {}}

    # ---------------------------------------------------------------- run
    def run(self, ray, remote) -> dict:
        todo: list[Cell] = []
        for c in self.cells:
            prev = self.previous.get(c.hash)
            if prev is not None:
                self.rows[c.id] = prev
            elif c.skip:
                self.rows[c.id] = {**self.new_row(c), "status": "skipped", "done": True, "errors": [c.skip]}
            else:
                self.rows[c.id] = self.new_row(c)
                todo.append(c)
        kept = len(self.cells) - len(todo)
        self.log(f"{len(self.cells)} cells: {len(todo)} to run, {kept} finished or skipped"
                 + (" (kept from the earlier sweep)" if self.previous else ""))
        self.write()
        if not todo:
            return self.finish()

        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_ips = {n["NodeID"]: n.get("NodeManagerAddress") for n in nodes}
        self.cluster = {"nodes": len(nodes), "node_addresses": sorted(set(self.node_ips.values())),
                        "node_ids": sorted(self.node_ips), "resources": {k: v for k, v in resources.items()
                                                           if k in ("CPU", "GPU") or k.startswith("srdeploy_")}}
        runnable = []
        self.pending_cells = {c.id: c for c in todo}
        for c in todo:
            need = None if c.target == HOST else f"srdeploy_{c.target.split(':')[0]}"
            if need and not resources.get(need):
                self.fail(c, f"no node of this Ray cluster has target {c.target} set up (resource {need}); "
                             f"run `sr-target setup {c.target.split(':')[0]}` there and start its Ray node with "
                             "--resources \"$(sr-sweep --node-resources)\"")
            else:
                runnable.append(c)
        groups: dict[ExportGroup, list[Cell]] = {}
        for c in runnable:
            groups.setdefault(c.group, []).append(c)
        use_gpu = bool(resources.get("GPU"))
        pending: dict = {}
        for g in sorted(groups, key=lambda g: g.key):
            reused = self.reuse_export(g)
            if reused is not None:
                self.log(f"export {g.key}: reused from {self.out / 'exports' / g.key}")
                self.start_cells(ray, remote, g, groups[g], reused, pending)
                continue
            opts = {"num_cpus": 1, "max_retries": self.retries}
            if use_gpu and g.qat_steps and "int8" in g.precisions:
                opts["num_gpus"] = 1
            pending[remote["export"].options(**opts).remote(g)] = ("export", g)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            kind, key = pending.pop(ref)
            try:
                value, crash = ray.get(ref), None
            except Exception as exc:  # the worker died past its retries, or the task raised
                value, crash = None, _lost(kind, exc)
            if kind == "export":
                self.on_export(ray, remote, key, groups[key], value, crash, pending)
            else:
                self.on_part(kind, key, value, crash)
        self.latency(ray, remote, runnable)
        return self.finish()

    def reuse_export(self, g: ExportGroup) -> dict | None:
        """An export this sweep already wrote for the same group config (``--resume``)."""
        folder = self.out / "exports" / g.key
        stamp = folder / "sweep_group.json"
        try:
            if json.loads(stamp.read_text()) != g.config():
                return None
        except (OSError, ValueError):
            return None
        from .tasks import TRAVELS

        return {"files": {n: (folder / n).read_bytes() for n in TRAVELS if (folder / n).is_file()},
                "error": None, "node": {"reused": str(folder)}, "seconds": 0.0}

    def save_export(self, g: ExportGroup, value: dict) -> None:
        final = self.out / "exports" / g.key
        final.parent.mkdir(parents=True, exist_ok=True)
        # a killed sweep's half-saved copy is dealt with first (run_sweep holds the --out lock); a write that
        # fails (disk full) leaves the earlier copy, if any, and no staging folder
        with replaced_whole(final) as staged:
            for name, data in value["files"].items():
                (staged / name).write_bytes(data)
            (staged / "sweep_group.json").write_text(json.dumps(g.config(), indent=1))

    def on_export(self, ray, remote, g: ExportGroup, cells: list[Cell], value, crash, pending) -> None:
        if crash:
            for c in cells:
                self.fail(c, crash)
            return
        self.log(f"export {g.key}: {'failed: ' + value['error'] if value['error'] else 'done'} "
                 f"({value['seconds']:.0f} s on {value['node']['host']})")
        if value["files"].get("manifest.json"):
            self.save_export(g, value)
        self.start_cells(ray, remote, g, cells, value, pending)

    def start_cells(self, ray, remote, g: ExportGroup, cells: list[Cell], value: dict, pending) -> None:
        files = value["files"]
        manifest = json.loads(files["manifest.json"]) if "manifest.json" in files else {}
        arts = {a["file"]: a for a in manifest.get("artifacts", [])}
        files_ref = ray.put(files)
        evals_started: dict[tuple[str, str], object] = {}
        for c in cells:
            row = self.rows[c.id]
            row["nodes"]["export"] = self.where(value["node"])
            row["seconds"]["export"] = value["seconds"]
            art = arts.get(c.artifact)
            if art is None or c.artifact not in files:
                self.fail(c, value["error"] or f"the export made no {c.artifact}")
                continue
            row["parity"] = art.get("parity")
            row["bytes"] = art.get("bytes")
            parts = set()
            if c.target != HOST:
                kind = c.target.split(":")[0]
                ref = remote["check"].options(num_cpus=1, max_retries=self.retries,
                                              resources={f"srdeploy_{kind}": 1}).remote(files_ref, c.target, c.artifact)
                pending[ref] = ("check", c.id)
                parts.add("check")
            for ev in c.evals:
                key = (c.artifact, ev)
                if key not in evals_started:
                    ref = remote["eval"].options(num_cpus=1, max_retries=self.retries).remote(
                        files_ref, c.artifact, g.model.scale, ev, 1)
                    evals_started[key] = ref
                    pending[ref] = ("eval", (g.key, c.artifact, ev))
                parts.add(f"eval:{ev}")
            self.waiting[c.id] = parts
            if not parts:
                self.complete(c)

    def on_part(self, kind: str, key, value, crash) -> None:
        if kind == "check":
            c = self.pending_cells[key]
            row = self.rows[c.id]
            if crash:
                row["errors"].append(crash)
            else:
                row["target"] = value["result"]
                row["nodes"]["check"] = self.where(value["node"])
                row["seconds"]["check"] = value["seconds"]
            self.waiting[c.id].discard("check")
            if not self.waiting[c.id]:
                self.complete(c)
            return
        gkey, artifact, ev = key
        for c in list(self.pending_cells.values()):
            if c.group.key != gkey or c.artifact != artifact or f"eval:{ev}" not in self.waiting.get(c.id, ()):
                continue
            row = self.rows[c.id]
            name = Path(ev).name
            if crash:
                row["errors"].append(crash)
            elif value.get("error"):
                row["errors"].append(f"evaluation on {name}: {value['error']}")
            else:
                row["quality"][name] = {k: value[k] for k in ("psnr_y", "ssim_y", "images")}
                row["nodes"].setdefault("eval", self.where(value["node"]))
                row["seconds"][f"eval:{name}"] = value["seconds"]
            self.waiting[c.id].discard(f"eval:{ev}")
            if not self.waiting[c.id]:
                self.complete(c)

    def fail(self, c: Cell, error: str) -> None:
        row = self.rows[c.id]
        row["errors"].append(error)
        row["status"], row["done"] = "error", True
        self.pending_cells.pop(c.id, None)
        self.progress(c)

    def complete(self, c: Cell) -> None:
        from ..targets import OK_STATUSES

        row = self.rows[c.id]
        parity_ok = (row["parity"] or {}).get("status") == "passed"
        target_ok = c.target == HOST or (row["target"] or {}).get("status") in OK_STATUSES
        if row["errors"] or (c.target != HOST and (row["target"] or {}).get("status") == "error"):
            row["status"] = "error"
        else:
            row["status"] = "passed" if parity_ok and target_ok else "failed"
        # a host row waits for its latency before it counts as done (an interrupted sweep reruns it)
        row["done"] = not (c.target == HOST and self.plan.runs and row["status"] != "error")
        self.pending_cells.pop(c.id, None)
        self.progress(c)

    def progress(self, c: Cell) -> None:
        done = sum(1 for r in self.rows.values() if r["status"] is not None)
        row = self.rows[c.id]
        extra = f": {row['errors'][-1][:160]}" if row["status"] == "error" and row["errors"] else ""
        self.log(f"[{done}/{len(self.rows)}] {c.id} {row['status']}{extra}")
        self.write()

    # ---------------------------------------------------------------- latency
    def latency(self, ray, remote, cells: list[Cell]) -> None:
        timed = [c for c in cells if c.target == HOST and self.plan.runs and self.rows[c.id]["status"] != "error"]
        if not timed:
            return
        node_cpus = max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1)
        anchor = None
        if self.plan.anchor:
            anchor = (Path(self.plan.anchor).name, Path(self.plan.anchor).read_bytes())
        for size in self.plan.sizes:
            batch = [c for c in timed if c.group.size == size]
            if not batch:
                continue
            folder = self.out / "exports"
            payloads = [(c.id, {c.artifact: (folder / c.group.key / c.artifact).read_bytes()}, c.artifact)
                        for c in batch]
            h, w = size
            self.log(f"latency at {h}x{w}: {len(batch)} artifacts, {self.plan.runs} interleaved runs, "
                     f"on one node reserved for it ({node_cpus:g} CPUs held)")
            ref = remote["bench"].options(num_cpus=node_cpus, max_retries=self.retries).remote(
                payloads, size, self.plan.threads, self.plan.runs, anchor)
            try:
                value, crash = ray.get(ref), None
            except Exception as exc:
                value, crash = None, _lost("latency", exc)
            base = (value or {}).get("results", {}).get("anchor", {}).get("median_ms")
            # the anchor is timed where its input fits (a fixed-shape file runs at its own size only)
            if value and "anchor" in value["results"] and not value["results"]["anchor"].get("error"):
                self.anchor_rows[f"{h}x{w}"] = {**value["results"]["anchor"], "file": anchor[0],
                                                "node": self.where(value["node"])}
            for c in batch:
                row = self.rows[c.id]
                r = (value or {}).get("results", {}).get(c.id)
                if crash or r is None:
                    row["errors"].append(crash or "no latency result")
                    row["status"] = "error"
                elif r.get("error"):
                    row["errors"].append(f"latency: {r['error']}")
                    row["status"] = "error"
                else:
                    # (interleave_group: set when the node could not hold every artifact's worker at once and
                    # timed them in groups -- then the ratio to the anchor may span two groups' minutes)
                    row["latency"] = {k: r.get(k) for k in ("median_ms", "min_ms", "mean_ms", "p90_ms", "init_ms",
                                                            "interleave_group")}
                    row["latency"]["ratio_to_anchor"] = (r["median_ms"] / base) if base and r.get("median_ms") else None
                    row["memory"] = {k: r.get(k) for k in ("peak_rss_mb", "model_memory_mb", "liveness_bound_mb",
                                                           "memory_ratio")}
                    row["nodes"]["bench"] = self.where(value["node"])
                    row["machine"] = value["machine"]
                row["done"] = True
            self.write()

    def finish(self) -> dict:
        self.write()
        return json.loads((self.out / RESULTS).read_text())


def load_previous(out: Path) -> tuple[dict[str, dict], dict]:
    """Finished rows of an earlier sweep in *out*, by config hash (same srdeploy version only), and
    that sweep's document."""
    path = out / RESULTS
    if not path.is_file():
        return {}, {}
    try:
        doc = json.loads(path.read_text())
        cells = doc["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SrDeployError(f"{path} is not an sr-sweep results file; choose another --out") from None
    if not isinstance(cells, list):
        raise SrDeployError(f"{path} is not an sr-sweep results file; choose another --out")
    return ({r["hash"]: r for r in cells if isinstance(r, dict) and r.get("srdeploy") == __version__
             and r.get("status") in FINISHED and r.get("done") and isinstance(r.get("hash"), str)}, doc)


def run_sweep(plan: Plan, out: str | Path, address: str | None = None, resume: bool = False, retries: int = 2,
              num_cpus: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Run every cell of *plan* not already finished in *out*; returns the results document."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SrDeployError(f"--out {out} exists and is not a folder")
    if not 0 <= retries <= 10:
        raise SrDeployError(f"--retries must be 0..10, got {retries}")
    created = ensure_writable_dir(out.parent)
    try:
        with FolderLock(out):  # a second sweep into the same --out is refused in one line, not interleaved
            return _run_sweep_locked(plan, out, address, resume, num_cpus, retries, log)
    except SrDeployError:
        if created is not None and not out.exists():  # no parent folder left behind by a refused sweep
            shutil.rmtree(created, ignore_errors=True)
        raise


def _run_sweep_locked(plan: Plan, out: Path, address: str | None, resume: bool, num_cpus: int | None,
                      retries: int, log: Callable[[str], None]) -> dict:
    from . import tasks

    if (out / RESULTS).exists() and not resume:
        raise SrDeployError(f"{out} already holds a sweep: add --resume to finish it, or choose another --out")
    if out.is_dir() and not (out / RESULTS).exists() and any(out.iterdir()):
        raise SrDeployError(f"--out {out} is not empty and holds no sweep: choose an empty or new folder")
    previous, before = load_previous(out) if resume else ({}, {})
    ray = _import_ray()
    out.mkdir(parents=True, exist_ok=True)
    _start_ray(ray, address, num_cpus)
    try:
        remote = {"export": ray.remote(tasks.export_group), "check": ray.remote(tasks.check_cell),
                  "eval": ray.remote(tasks.evaluate_artifact), "bench": ray.remote(tasks.bench_artifacts)}
        doc = _Sweep(plan, out, address, retries, log, previous, before).run(ray, remote)
    finally:
        ray.shutdown()
    from .report import publish

    publish(doc, out)
    return doc
