"""Evaluate a candidate INT8 parameter file the way a user meets it: registered in place of the shipped one.

A shipping rule (runs/RULES_session*.md) compares a QAT candidate with the shipped file by the issue's command
with no other flag, `sr-export --model M [--scale S] --size HxW --int8 --calib DIR --quality`. The candidate only
takes that route once it is in the registry, so this tool clones the repository's HEAD twice -- one clone as it
is (the shipped file), one with the candidate copied over the shipped file and its sha256 swapped in the
registry (nothing else changed) -- and runs the command from each clone, one thread per export, `--jobs` exports
at a time. With `--bench HxW` (a size both were exported at) it then times, in one interleaved `sr-bench
--threads 1` pinned to core 0, the FP32 file (one, if both exports' FP32 files are byte-identical) and both INT8
files: the rules' latency condition. It reports; the rule decides.

    python benchmarks/int8_candidate_eval.py --model imdn --scale 4 --candidate runs/s35/imdn_x4_cont.npz \
        --size 720x480:candidate --size 64x64 --size 256x256 --bench 256x256 --out runs/ship35 \
        --json benchmarks/results/int8_params/imdn_x4_session35_eval.json

`--size HxW[:both|candidate|shipped]` (default both); sizes run in the order given (put the slowest first).
Sessions 31-34 did the same with one shell script each (runs/eval3*.sh); this is that script, parametrized.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from srdeploy.cli_util import OneLineParser, run_cli
from srdeploy.errors import SrDeployError
from srdeploy.fsutil import atomic_write_json, sha256_file
from srdeploy.models.registry import get_spec
from srdeploy.paths import data_dir, weights_dir

REPO = Path(__file__).resolve().parents[1]
WHO = ("candidate", "shipped")


def _clone(dest: Path, candidate: Path | None, file: str, old_sha: str) -> Path:
    """HEAD of this repository in *dest*; with *candidate*, that file registered in place of the shipped one."""
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    if candidate is not None:
        registry = dest / "src" / "srdeploy" / "models" / "registry.py"
        text = registry.read_text()
        needle = f'"{file}", "{old_sha}",'
        if text.count(needle) != 1:
            raise SrDeployError(f"{registry} does not name {file} with sha256 {old_sha} exactly once")
        shutil.copyfile(candidate, dest / "src" / "srdeploy" / "models" / "zoo" / file)
        registry.write_text(text.replace(needle, f'"{file}", "{sha256_file(candidate)}",'))
    return dest


def _env(tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1")
    for var, path in (("SRDEPLOY_WEIGHTS", weights_dir()), ("SRDEPLOY_DATA", data_dir())):
        if path is not None:  # absolute, so the clone's working directory does not matter
            env[var] = str(Path(path).resolve())
    probe = subprocess.run([sys.executable, "-c", "import srdeploy; print(srdeploy.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(probe).resolve().is_relative_to(tree.resolve()):
        raise SrDeployError(f"the clone's package is shadowed ({probe}); nothing was measured")
    return env


def _export(who: str, tree: Path, env: dict, args, size: str, out: Path) -> dict:
    dest = out / f"{who}_{size}"
    cmd = [sys.executable, "-m", "srdeploy.export.cli", "--model", args.model, "--scale", str(args.scale),
           "--size", size, "--int8", "--calib", str(Path(args.calib).resolve()), "--quality", "--out", str(dest),
           "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    (out / f"{who}_{size}.log").write_text(proc.stderr)
    if proc.returncode != 0:
        return {"who": who, "size": size, "error": (proc.stderr.strip().splitlines() or ["?"])[-1],
                "seconds": seconds}
    manifest = json.loads(proc.stdout)
    q = manifest["quality"]
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    row = {"who": who, "size": size, "seconds": seconds, "dir": str(dest),
           "int8_params_choice": int8["quantization"].get("int8_params_choice"),
           "graph_rewrites": int8["quantization"].get("graph_rewrites")}
    for name in ("Set5", "Set14"):
        row[f"{name}_int8_drop_db"] = q[name]["int8_tflite"]["drop_db"]
        row[f"{name}_fp32_tflite_drop_db"] = q[name]["fp32_tflite"]["drop_db"]
    return row


def _bench(rows: list[dict], size: str, runs: int, out: Path) -> dict:
    by = {r["who"]: Path(r["dir"]) for r in rows if r["size"] == size and "error" not in r}
    if set(by) != set(WHO):
        return {"error": f"--bench {size}: both files must have exported at that size"}
    same = filecmp.cmp(by["candidate"] / "model_fp32.tflite", by["shipped"] / "model_fp32.tflite", shallow=False)
    files = [by["shipped"] / "model_fp32.tflite", by["shipped"] / "model_int8.tflite",
             by["candidate"] / "model_int8.tflite"]
    if not same:
        files.insert(2, by["candidate"] / "model_fp32.tflite")
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    report = out / f"bench_{size}.json"
    subprocess.run([*pin, sys.executable, "-m", "srdeploy.benchmark.bench_cli", *map(str, files), "--threads", "1",
                    "--runs", str(runs), "--json", str(report)], env=dict(os.environ, OMP_NUM_THREADS="1"),
                   check=True, capture_output=True)
    med = {r["model"]: r["median_ms"] for r in json.loads(report.read_text())["results"]}
    ship, cand = med[str(files[1])], med[str(files[-1])]
    return {"size": size, "fp32_identical": same, "runs": runs, "median_ms": med, "pinned": bool(pin),
            "candidate_over_shipped_int8": round(cand / ship, 4),
            "int8_over_fp32": {"shipped": round(ship / med[str(files[0])], 4),
                               "candidate": round(cand / med[str(files[-2] if not same else files[0])], 4)}}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="int8_candidate_eval", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--scale", type=int, default=None, help="default: the model's only or first scale")
    ap.add_argument("--candidate", required=True, help="the INT8 parameter file (.npz) to register")
    ap.add_argument("--size", action="append", required=True, metavar="HxW[:WHO]",
                    help="an export size and whose file exports there: both (default), candidate or shipped")
    ap.add_argument("--calib", default=None, help="default: the data folder's div2k/HR (the issue's command)")
    ap.add_argument("--jobs", type=int, default=2, help="exports at a time, one thread each (default 2)")
    ap.add_argument("--bench", default=None, metavar="HxW", help="then the latency condition at this size")
    ap.add_argument("--bench-runs", type=int, default=16)
    ap.add_argument("--out", required=True, help="folder for the clones, exports, logs")
    ap.add_argument("--json", default=None, help="write the summary here")
    args = ap.parse_args(argv)

    spec = get_spec(args.model)
    scale = args.scale = args.scale or spec.scales[0]
    shipped = spec.int8_params.get(scale)
    candidate = Path(args.candidate).resolve()
    if shipped is None or not candidate.is_file():
        raise SrDeployError(f"{args.model} x{scale} ships no INT8 file, or {candidate} is not a file")
    if args.calib is None:
        if data_dir() is None:
            raise SrDeployError("no data folder (SRDEPLOY_DATA or ../shared/data): give --calib DIR")
        args.calib = str(Path(data_dir()) / "div2k" / "HR")
    jobs = []
    for item in args.size:
        size, _, who = item.partition(":")
        who = who or "both"
        if who not in (*WHO, "both"):
            raise SrDeployError(f"--size {item}: WHO must be both, candidate or shipped")
        jobs += [(w, size) for w in WHO if who in (w, "both")]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trees = {"candidate": _clone(out / "tree_candidate", candidate, shipped.file, shipped.sha256),
             "shipped": _clone(out / "tree_shipped", None, shipped.file, shipped.sha256)}
    envs = {w: _env(t) for w, t in trees.items()}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    cand_sha = sha256_file(candidate)
    print(f"{args.model} x{scale}: candidate {cand_sha[:8]}… against shipped {shipped.sha256[:8]}… "
          f"(HEAD {head[:8]}), {len(jobs)} exports, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_export, w, trees[w], envs[w], args, s, out) for w, s in jobs]
        rows = []
        for f in cf.as_completed(futures):
            r = f.result()
            rows.append(r)
            print(f"  {r['who']:9s} {r['size']:>9s}: " + (r["error"] if "error" in r else
                  f"INT8 drop Set5 {r['Set5_int8_drop_db']:.4f} Set14 {r['Set14_int8_drop_db']:.4f}  "
                  f"(FP32 TFLite {r['Set5_fp32_tflite_drop_db']:.4f} / {r['Set14_fp32_tflite_drop_db']:.4f})  "
                  f"{r['int8_params_choice']}") + f"  [{r['seconds']} s]", flush=True)
    rows.sort(key=lambda r: (jobs.index((r["who"], r["size"]))))
    summary = {"model": args.model, "scale": scale, "head": head, "candidate": str(candidate),
               "candidate_sha256": cand_sha, "shipped_sha256": shipped.sha256,
               "calib": args.calib, "exports": rows, "export_seconds": round(time.perf_counter() - t0, 1)}
    if args.bench:
        summary["bench"] = _bench(rows, args.bench, args.bench_runs, out)
        print(f"  latency at {args.bench}: {json.dumps(summary['bench'])}", flush=True)
    if args.json:
        atomic_write_json(Path(args.json), summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("int8_candidate_eval", main))
