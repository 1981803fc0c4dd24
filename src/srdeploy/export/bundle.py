"""``sr-bundle``: put an exported ``.tflite`` and a reduced manifest into the Android demo's assets.

The app reads its I/O contract (tile shape, scale, dtypes, quantization, overlap) from that
manifest, so a bundle is validated against what the app supports before anything is touched:
NHWC ``1×H×W×3`` input, ``1×sH×sW×3`` output, dtypes float32 / uint8 / int8. The bundle folder is
built beside the old one and swapped in with renames, so the app never sees half a bundle and a
refused model leaves the previous bundle as it was.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cli_util import OneLineParser, run_cli
from ..errors import SrDeployError
from ..fsutil import FolderLock, read_user_json, replaced_whole
from ..models.weights import sha256_file

__all__ = ["bundle", "APP_DTYPES", "ASSET_SUBDIR"]

PROG = "sr-bundle"
APP_DTYPES = ("float32", "uint8", "int8")
ASSET_SUBDIR = Path("app/src/main/assets/srdeploy")
#: preference when the export folder holds several artifacts and none is named
PREFERENCE = ("model_int8.tflite", "model_fp16.tflite", "model_fp32.tflite")


def default_artifact(files) -> str | None:
    """The artifact an app gets when none is named: INT8, else FP16, else FP32."""
    return next((p for p in PREFERENCE if p in files), None)


def _io_contract(path: Path) -> dict:
    from ..runtime import TFLiteRunner

    r = TFLiteRunner(path)
    ins, outs = r.interpreter.get_input_details(), r.interpreter.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise SrDeployError(f"{path.name}: the app supports one input and one output, got {len(ins)} and {len(outs)}")

    def describe(d):
        out = {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if out["dtype"] == "float32":  # float I/O has no quantization: no scale/zero point to misread
            return out
        scale, zero = d["quantization"]
        if d["dtype"] == np.uint8 and not scale:
            # a float graph with --io uint8 (normalisation inside the graph): its bytes are pixels 0..255,
            # which the app's (byte - zero_point) * scale mapping expresses as scale 1/255, zero point 0
            scale, zero = 1.0 / 255.0, 0
        return {**out, "scale": float(scale), "zero_point": int(zero)}

    i, o = describe(ins[0]), describe(outs[0])
    for side, d in (("input", i), ("output", o)):
        if d["dtype"] not in APP_DTYPES:
            raise SrDeployError(f"{path.name}: {side} dtype {d['dtype']} is not supported by the app "
                                f"(supported: {', '.join(APP_DTYPES)})")
        if len(d["shape"]) != 4 or d["shape"][0] != 1 or d["shape"][3] != 3:
            raise SrDeployError(f"{path.name}: {side} shape {d['shape']} is not NHWC 1xHxWx3")
    (_, h, w, _), (_, oh, ow, _) = i["shape"], o["shape"]
    if oh % h or ow % w or oh // h != ow // w:
        raise SrDeployError(f"{path.name}: output {oh}x{ow} is not an integer upscale of input {h}x{w}")
    return {"input": i, "output": o, "scale": oh // h}


SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
#: largest manifest.json read (an export's is a few KB)
MAX_MANIFEST_BYTES = 4 << 20


def read_export_manifest(man_path: Path) -> dict:
    """Parse and validate an export's manifest.json against the shipped JSON Schema. A manifest is
    a user's file: the messages name the offending field, never echo its (possibly hostile) value."""
    import jsonschema

    manifest = read_user_json(man_path, MAX_MANIFEST_BYTES, "an sr-export manifest")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    err = next(iter(sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))), None)
    if err is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "(top level)"
        what = {"required": "a required field is missing", "type": f"must be of type {err.validator_value}",
                "pattern": "is not a plain name (no folders or special characters)",
                "enum": f"must be one of {err.validator_value}"}.get(err.validator, f"fails '{err.validator}'")
        raise SrDeployError(f"{man_path}: invalid manifest: {where.lstrip('.')} {what}")
    return manifest


def artifact_source(artifact: str | Path) -> tuple[dict | None, str | None]:
    """The ``source`` entry (model name, convention, what the export added to the graph) of the
    manifest beside an artifact, when that manifest lists the file: ``(source, None)``, or
    ``(None, warning)`` for a manifest that is there but unusable, ``(None, None)`` for none."""
    art = Path(artifact)
    man = art.parent / "manifest.json"
    if not man.is_file():
        return None, None
    try:
        manifest = read_export_manifest(man)
    except SrDeployError as exc:
        return None, f"ignoring the manifest beside {art.name}: {exc}"
    entry = next((a for a in manifest["artifacts"] if a["file"] == art.name), None)
    if entry is None or entry.get("bytes") not in (None, art.stat().st_size):
        return None, f"the manifest beside {art.name} does not describe this file; ignoring it"
    return {"model": manifest["model"], **manifest.get("source", {"kind": "registry"})}, None


def describe_source(source: dict | None) -> str:
    """One line: where an artifact's model came from and what its export added to the graph."""
    if not source:
        return ""
    conv = source.get("convention") or {}
    if source.get("kind") == "registry" or not source.get("added_to_graph"):
        return f"source {source['model']} ({source.get('kind', 'registry')}, RGB 0..1)"
    return (f"source {source['model']} ({source['kind']}, {conv.get('channels', 'rgb')} "
            f"0..{conv.get('value_range', 1)}; converted to RGB 0..1 inside the graph)")


#: a Snapdragon SoC as LiteRT's Qualcomm plugin names it (and Android's Build.SOC_MODEL reports it)
SOC_PATTERN = re.compile(r"SM\d{4}[A-Z]?")


def _npu_models(export_dir: Path, manifest: dict, name: str) -> dict:
    """``{SoC: {"file": ...}}``: the Qualcomm-compiled versions of *name* that the export's targets
    record as fully offloaded (``sr-export --target qualcomm:SoC``), checked against their checksum.
    A partial or failed compile is not bundled: the app would run it split with the CPU."""
    from ..targets.qualcomm import compiled_name

    found = {}
    targets = manifest.get("targets")
    for label, rows in (targets.items() if isinstance(targets, dict) else []):
        kind, _, soc = str(label).partition(":")
        row = rows.get(name) if isinstance(rows, dict) else None
        if kind != "qualcomm" or not isinstance(row, dict) or not SOC_PATTERN.fullmatch(soc):
            continue
        if row.get("status") not in ("passed", "compiled") or row.get("ops_offloaded") != row.get("ops_total"):
            continue
        file = compiled_name(name, soc)
        if row.get("compiled_file") != file:
            raise SrDeployError(f"{export_dir}: targets.{label} names a compiled file other than {file}")
        path = export_dir / file
        if not path.is_file() or sha256_file(path) != row.get("compiled_sha256"):
            raise SrDeployError(f"{path} is missing or does not match the checksum its target row records "
                                f"(compile it again: sr-target check {export_dir} --target {label})")
        found[soc] = {"file": file}
    return found


def _runtime_choice(manifest: dict, name: str) -> int | None:
    """The XNNPACK flags ``sr-export --memory-budget`` chose for *name* (None: LiteRT's defaults, or
    no budget was set); a manifest whose choice for it is missing or malformed is refused."""
    runtime = manifest.get("runtime")
    if runtime is None:
        return None
    entry = runtime.get("artifacts", {}).get(name) if isinstance(runtime, dict) else None
    if not isinstance(entry, dict):
        raise SrDeployError(f"manifest.json: runtime.artifacts has no entry for {name}")
    if entry.get("choice") is None:
        raise SrDeployError(f"{name} fits in no CPU setting under the export's --memory-budget "
                            f"{runtime.get('memory_budget_mb')} MB: not bundled (pick another --artifact)")
    pick = next((c for c in entry.get("candidates", []) if isinstance(c, dict) and c.get("setting") == entry["choice"]),
                None)
    flags = pick.get("xnnpack_flags") if pick else "missing"
    if flags is not None and (not isinstance(flags, int) or isinstance(flags, bool) or not 0 <= flags < 2**31):
        raise SrDeployError(f"manifest.json: runtime.artifacts.{name}: the chosen setting's xnnpack_flags is not a "
                            "non-negative 31-bit integer")
    return flags


def bundle(export_dir: str | Path, app_dir: str | Path, artifact: str | None = None, overlap: int = 8) -> Path:
    """Validate and install; returns the bundle folder."""
    export_dir, app_dir = Path(export_dir), Path(app_dir)
    man_path = export_dir / "manifest.json"
    if not man_path.is_file():
        raise SrDeployError(f"{export_dir} is not an sr-export folder (no manifest.json)")
    if artifact is not None and (Path(artifact).name != artifact or artifact in ("", ".", "..")):
        raise SrDeployError("--artifact must be a file name inside the export folder (e.g. model_fp16.tflite), "
                            "not a path")
    if overlap < 0:
        raise SrDeployError(f"--overlap must be >= 0, got {overlap}")
    manifest = read_export_manifest(man_path)
    if manifest.get("status") not in ("passed", "unchecked"):
        raise SrDeployError(f"{export_dir}: the export's parity gate did not pass (status {manifest.get('status')})")
    if not (app_dir / "app" / "build.gradle.kts").is_file():
        raise SrDeployError(f"{app_dir} is not the Android demo project (no app/build.gradle.kts)")
    arts = {a["file"]: a for a in manifest.get("artifacts", []) if a["file"].endswith(".tflite")}
    name = artifact or default_artifact(arts)
    if name is None or name not in arts:
        raise SrDeployError(f"no such TFLite artifact in {export_dir}: {artifact or 'none found'} "
                            f"(available: {', '.join(sorted(arts)) or 'none'})")
    src = export_dir / name
    if not src.is_file() or sha256_file(src) != arts[name]["sha256"]:
        raise SrDeployError(f"{src} is missing or does not match its manifest checksum")
    io = _io_contract(src)
    if io["scale"] != manifest["scale"]:
        raise SrDeployError(f"{name} upscales x{io['scale']} but the manifest says x{manifest['scale']}")
    _, h, w, _ = io["input"]["shape"]
    if 2 * overlap >= min(h, w):
        raise SrDeployError(f"overlap {overlap} is too large for {h}x{w} tiles")
    reduced = {
        "model": manifest["model"], "scale": manifest["scale"], "file": name,
        "precision": arts[name]["precision"], "sha256": arts[name]["sha256"], "overlap": overlap,
        "input": io["input"], "output": io["output"], "value_range": [0.0, 1.0], "color": "RGB",
        "layout": "NHWC",
        # which export this came from, without the developer's absolute path or user name
        "source_export": {"folder": export_dir.resolve().name, "manifest_sha256": sha256_file(man_path)},
        # the model's own convention and what the export added to make it speak the app's (no file paths)
        "model_source": {k: manifest["source"][k] for k in ("kind", "convention", "added_to_graph")
                         if k in manifest.get("source", {})},
    }
    choice = _runtime_choice(manifest, name)
    if choice is not None:
        reduced["xnnpack_flags"] = choice
    compiled = _npu_models(export_dir, manifest, name)
    if compiled:
        reduced["compiled"] = {soc: c["file"] for soc, c in compiled.items()}
    # the order the app tries accelerators in: the NPU only with a model compiled for the phone's SoC
    reduced["accelerators"] = (["npu"] if compiled else []) + ["gpu", "cpu"]
    dest = app_dir / ASSET_SUBDIR
    dest.parent.mkdir(parents=True, exist_ok=True)
    # one writer at a time (a second sr-bundle into the same app is refused in one line); holding the lock,
    # the staging folders a killed sr-bundle left in the app's assets are this run's to remove
    with FolderLock(dest), replaced_whole(dest) as staging:
        shutil.copyfile(src, staging / name)
        for c in compiled.values():
            shutil.copyfile(export_dir / c["file"], staging / c["file"])
        (staging / "manifest.json").write_text(json.dumps(reduced, indent=2) + "\n")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                      description="Copy an exported .tflite and a reduced manifest into the Android demo's "
                                  "assets (app/src/main/assets/srdeploy/), after checking that the app supports "
                                  "its I/O (NHWC 1xHxWx3, float32/uint8/int8). Replaces a previous bundle atomically.",
                      epilog="example: sr-bundle exports/imdn_rtc_x2_720x480 --app android_demo --artifact model_fp16.tflite")
    p.add_argument("export_dir", metavar="EXPORT_DIR")
    p.add_argument("--app", default="android_demo", help="Android demo project folder (default android_demo)")
    p.add_argument("--artifact", help=f"which .tflite to bundle (default: first of {', '.join(PREFERENCE)})")
    p.add_argument("--overlap", type=int, default=8, help="tile context margin the app uses (default 8)")
    args = p.parse_args(argv)
    dest = bundle(args.export_dir, args.app, args.artifact, args.overlap)
    print(describe_bundle(dest))
    return 0


def describe_bundle(dest: Path) -> str:
    """``bundled into DEST: model_int8.tflite (int8, 1x64x64x3 uint8 -> ...), manifest.json``"""
    man = json.loads((dest / "manifest.json").read_text())
    i, o = man["input"], man["output"]
    return (f"bundled into {dest}: {man['file']} ({man['precision']}, x{man['scale']}, "
            f"{'x'.join(map(str, i['shape']))} {i['dtype']} -> {'x'.join(map(str, o['shape']))} {o['dtype']}), "
            + "".join(f"{f} (NPU, {soc}), " for soc, f in sorted(man.get("compiled", {}).items()))
            + f"manifest.json; the app tries {' -> '.join(a.upper() for a in man['accelerators'])}"
            + (f"; its CPU path sets XNNPACK flags {man['xnnpack_flags']:#x} (the export's --memory-budget)"
               if man.get("xnnpack_flags") is not None else ""))


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
