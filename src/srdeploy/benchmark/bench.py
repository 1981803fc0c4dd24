"""Benchmark orchestration: one worker process per model and setting, interleaved timed rounds."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata

__all__ = ["BenchSetting", "BenchResult", "run_benchmarks", "machine_info", "summarize"]


@dataclass
class BenchSetting:
    model: str
    size: tuple[int, int] | None
    threads: int
    delegate: str
    #: TFLite API: "interpreter" (the classic Interpreter) or "compiled" (LiteRT's CompiledModel, CPU)
    runtime: str = "interpreter"
    #: XNNPACK flags for the compiled runtime (e.g. 0x20: transient indirection buffers); None = default
    xnnpack_flags: int | None = None


@dataclass
class BenchResult:
    model: str
    size: list[int] | None
    threads: int
    delegate: str
    runtime: str = "interpreter"
    xnnpack_flags: int | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    min_ms: float | None = None
    median_ms: float | None = None
    mean_ms: float | None = None
    p90_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    runs: int = 0
    peak_rss_mb: float | None = None
    #: the model's own peak memory: the worker's RSS high-water mark minus the one before loading
    model_memory_mb: float | None = None
    #: activation liveness bound of the graph (TFLite; see benchmark/memory.py) and the ratio to it
    liveness_bound_mb: float | None = None
    memory_ratio: float | None = None
    input: dict | None = None
    output: dict | None = None
    #: ``--delegate gpu``: the GPU adapter LiteRT's GPU accelerator ran on (Dawn's own report)
    adapter: str | None = None
    profile: dict | None = None
    error: str | None = None
    #: which group of workers this row was timed with (1, 2, ...) when not every model fitted in memory at
    #: once (see run_benchmarks); None when all were interleaved together
    interleave_group: int | None = None
    times_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        d = dict(vars(self))
        d.pop("times_ms")
        return d


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "asimddp") if f" {f}" in flags]
    libs = {}
    for name in ("ai-edge-litert", "onnxruntime", "torch", "numpy", "srdeploy"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "platform": platform.platform(),
            "python": platform.python_version(), "libraries": libs}


def summarize(res: BenchResult) -> None:
    t = sorted(res.times_ms)
    if not t:
        return
    res.runs = len(t)
    res.min_ms, res.max_ms = t[0], t[-1]
    res.median_ms = statistics.median(t)
    res.mean_ms = statistics.fmean(t)
    res.std_ms = statistics.pstdev(t) if len(t) > 1 else 0.0
    res.p90_ms = t[min(len(t) - 1, max(0, round(0.9 * (len(t) - 1))))]


#: seconds one worker request (load, a round of runs, profile) may take before the worker is killed
DEFAULT_TIMEOUT_S = 600.0
#: address space one worker may map (MB): a worker maps ~200 MB plus its model's tensors, so this
#: caps what a hostile model can make it allocate (a failed allocation becomes that row's error)
DEFAULT_MEMORY_LIMIT_MB = 16384


def _worker_preexec(memory_limit_mb: float | None):
    """In the child before exec: SIGKILL it when the parent dies (Linux prctl PR_SET_PDEATHSIG), so
    a worker stuck in a hostile model never outlives an sr-bench that was stopped or killed; and
    cap its address space (RLIMIT_AS)."""
    def preexec() -> None:
        import ctypes
        import resource
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if memory_limit_mb:
            lim = int(memory_limit_mb * 2**20)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    return preexec


class _Worker:
    def __init__(self, setting: BenchSetting, timeout: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB) -> None:
        self.setting, self.timeout = setting, timeout
        #: the GPU accelerator's log (Dawn names the adapter it selected there); others' stderr is dropped
        self.log, base = None, os.environ
        if setting.delegate.startswith("gpu"):
            import tempfile

            from ..targets.gpu import run_env

            base, self.log = run_env(), tempfile.TemporaryFile()
        env = dict(base, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(setting.threads))
        linux = sys.platform.startswith("linux")
        self.proc = subprocess.Popen([sys.executable, "-m", "srdeploy.benchmark.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log or subprocess.DEVNULL, text=True, env=env,
                                     preexec_fn=_worker_preexec(memory_limit_mb) if linux else None)

    def adapter(self) -> str | None:
        """The GPU adapter the worker's GPU accelerator selected, or None (no GPU ran)."""
        from ..targets.gpu import adapter_from_log

        if self.log is None:
            return None
        self.log.seek(0)
        return adapter_from_log(self.log.read().decode(errors="replace"))

    def ask(self, **req) -> dict:
        """Send one request; the reply must come within ``timeout`` seconds or the worker is killed."""
        import select

        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            if not ready:
                self.proc.kill()
                self.proc.wait()
                return {"ok": False, "error": f"timed out: no answer to '{req.get('cmd')}' within {self.timeout:g} s "
                                              "(the worker was killed; --timeout raises the limit)"}
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self.proc.poll()
            return {"ok": False, "error": f"worker process died (exit code {code}); the model crashed the runtime"}
        try:
            return json.loads(line)
        except ValueError:
            return {"ok": False, "error": "worker sent an unreadable reply"}

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None:
            self.log.close()


#: a group of workers is closed before the next load unless this much memory stays free: the largest
#: worker so far × MEMORY_HEADROOM (the next model may be larger) plus MEMORY_RESERVE of the machine (Ray's
#: memory monitor kills tasks at 95 % of the node's memory; the desktop's own processes need some)
MEMORY_HEADROOM = 1.5
MEMORY_RESERVE = 0.05


def _meminfo_mb() -> tuple[float, float] | None:
    """(MemTotal, MemAvailable) in MB from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        return info["MemTotal"], info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        return None


def _room_for_another(largest_mb: float) -> bool:
    """Whether one more worker of up to MEMORY_HEADROOM × *largest_mb* (the largest loaded worker's peak
    RSS) fits beside those loaded."""
    mem = _meminfo_mb()
    if mem is None:  # (no /proc: every model in one group, as before)
        return True
    total, available = mem
    return available >= MEMORY_HEADROOM * largest_mb + MEMORY_RESERVE * total


def _load(s: BenchSetting, res: BenchResult, timeout: float, memory_limit_mb: float | None, log) -> _Worker | None:
    log(f"loading {s.model}")
    w = _Worker(s, timeout=timeout, memory_limit_mb=memory_limit_mb)
    reply = w.ask(cmd="load", model=s.model, size=list(s.size) if s.size else None, threads=s.threads,
                  runtime=s.runtime, xnnpack_flags=s.xnnpack_flags,
                  delegate=s.delegate)
    if not reply.get("ok"):
        res.error = reply.get("error", "unknown error")
        w.close()
        return None
    if s.delegate.startswith("gpu"):
        res.adapter = w.adapter()
        if res.adapter is None:  # loaded and ran, yet no GPU was selected: not a GPU timing
            res.error = "LiteRT's GPU accelerator selected no GPU adapter: this would not be a GPU timing"
            w.close()
            return None
    res.init_ms, res.first_ms = reply["init_ms"], reply["first_ms"]
    res.input, res.output = reply.get("input"), reply.get("output")
    res.size = [int(v) for v in reply["size"]] if len(reply.get("size") or []) == 2 else None
    return w


def _time_group(group: list[tuple[_Worker, BenchResult]], warmup: int, per_round: list[int], profile: bool,
                log) -> None:
    """Warm up, time the interleaved rounds, then read each worker's memory and close it."""
    for w, res in group:
        if warmup:
            reply = w.ask(cmd="run", n=warmup)
            if not reply.get("ok"):
                res.error = reply["error"]
    for r, n in enumerate(per_round):
        log(f"round {r + 1}/{len(per_round)}")
        for w, res in group:
            if res.error or n == 0:
                continue
            reply = w.ask(cmd="run", n=n)
            if reply.get("ok"):
                res.times_ms += reply["times_ms"]
            else:
                res.error = reply["error"]
    for w, res in group:
        if profile and not res.error:
            reply = w.ask(cmd="profile", runs=3)
            res.profile = {k: v for k, v in reply.items() if k != "ok"} if reply.get("ok") else {"error": reply["error"]}
        reply = w.ask(cmd="stats")
        if reply.get("ok"):
            res.peak_rss_mb = reply["peak_rss_mb"]
            res.model_memory_mb = reply.get("model_memory_mb")
        if res.model.endswith(".tflite") and not res.error and not res.delegate.startswith("gpu"):
            # (the bound is the CPU arena's; a GPU process's memory is the driver's and the GPU's buffers)
            from .memory import liveness_bound

            try:
                res.liveness_bound_mb = liveness_bound(res.model).mb
            except Exception:  # a file the runtime ran but the reader cannot walk: no bound, no ratio
                res.liveness_bound_mb = None
            if res.liveness_bound_mb and res.model_memory_mb is not None:
                res.memory_ratio = res.model_memory_mb / res.liveness_bound_mb
        w.close()
        summarize(res)


def run_benchmarks(settings: list[BenchSetting], warmup: int = 1, runs: int = 10, rounds: int | None = None,
                   profile: bool = False, log=lambda m: None, timeout: float = DEFAULT_TIMEOUT_S,
                   memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB) -> list[BenchResult]:
    """Load every setting in its own process, then time ``runs`` invocations each, interleaved in
    ``rounds`` rounds (round-robin across models) so slow drifts of the machine hit all alike.

    Every loaded worker holds its model's whole memory (XNNPACK: up to ~4 GB for a 1080x1920 frame),
    so the workers are loaded one by one while the machine keeps room for another (_room_for_another);
    when it does not, the loaded ones are timed and closed as one group and loading goes on with the
    next. Rows of different groups carry ``interleave_group`` (their ratios are from different minutes
    of the machine). Measured need: the suite's ten 1080x1920 artifacts held ~28 GB at once, and Ray's
    memory monitor killed the task again and again on a 24 GB machine."""
    results = [BenchResult(s.model, list(s.size) if s.size else None, s.threads, s.delegate, s.runtime,
                           s.xnnpack_flags) for s in settings]
    rounds = max(1, min(rounds or runs, runs))
    per_round = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    pending, groups = list(zip(settings, results)), []
    while pending:
        group: list[tuple[_Worker, BenchResult]] = []
        largest = 0.0
        while pending and (not group or _room_for_another(largest)):
            s, res = pending.pop(0)
            w = _load(s, res, timeout, memory_limit_mb, log)
            if w is not None:
                group.append((w, res))
                # the worker's own high-water mark (its "stats" reply: VmHWM, or ru_maxrss off Linux)
                largest = max(largest, w.ask(cmd="stats").get("peak_rss_mb") or 0.0)
        if pending:
            log(f"memory: {len(group)} model(s) loaded, no room for another beside them: timing them as one group")
        groups.append(group)
        _time_group(group, warmup, per_round, profile, log)
    if sum(1 for g in groups if g) > 1:
        for i, group in enumerate(groups, 1):
            for _, res in group:
                res.interleave_group = i
    return results


def probe_load(path, timeout: float = 120.0) -> str | None:
    """None when LiteRT loads and allocates the .tflite, else why not — in a worker process, so a
    file that crashes or hangs the runtime cannot take the caller with it."""
    w = _Worker(BenchSetting(str(path), None, 1, "xnnpack"), timeout=timeout)
    try:
        reply = w.ask(cmd="load", model=str(path), size=None, threads=1, delegate="xnnpack", check_only=True)
    finally:
        w.close()
    return None if reply.get("ok") else reply.get("error", "unknown error")
