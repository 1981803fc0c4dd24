"""``sr-target``: prepare a target once, then check any export's artifacts on it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..cli_util import OneLineParser, run_cli

PROG = "sr-target"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run exported .tflite files on a phone's own kernels, off-device, and measure them against "
                    "the reference and the host CPU. Targets: arm64[:CORE] — LiteRT's ARM CPU kernels (XNNPACK) "
                    "under QEMU user-mode emulation; CORE cortex-a76 (default; dot product and fp16 arithmetic), "
                    "cortex-a53 (ARMv8.0), neoverse-n1, cortex-a72, cortex-a57. gpu[:fp32] — LiteRT's GPU accelerator "
                    "on a software Vulkan GPU (Mesa lavapipe), in its FP16 default or FP32. Emulated time is not phone time: "
                    "checks report parity, never latency.",
        epilog="examples:\n  sudo sr-target setup arm64        # once: ~1 min, ~350 MB in ~/.cache/srdeploy/targets\n"
               "  sr-target check exports/imdn_rtc_x2_64x64 --target arm64 --target arm64:cortex-a53\n"
               "  sr-target list\n\nexit codes: 0 ok, 1 a check failed, 2 bad input (e.g. a target not set up).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="prepare a target (arm64: root, debootstrap, ~150 MB download; gpu: no root, ~35 MB)")
    s.add_argument("kind", choices=("arm64", "gpu", "qualcomm"))
    s.add_argument("--force", action="store_true", help="rebuild even if it is set up")
    c = sub.add_parser("check", help="run an export's .tflite artifacts on targets; results go into its manifest")
    c.add_argument("export_dir", metavar="EXPORT_DIR")
    c.add_argument("--target", action="append", required=True, metavar="T", help="arm64[:CORE], gpu[:fp32] or qualcomm:<SoC> (repeatable)")
    c.add_argument("--artifact", action="append", metavar="FILE", help="only this .tflite (repeatable; default all)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    lo = sub.add_parser("localise", help="where an artifact's NPU result leaves the host's: every tensor on the "
                        "HTP simulator against this host's LiteRT, in op order (INT8: in LSB; float: PSNR)")
    lo.add_argument("export_dir", metavar="EXPORT_DIR")
    lo.add_argument("--target", required=True, metavar="qualcomm:<SoC>")
    lo.add_argument("--artifact", default="model_int8.tflite")
    lo.add_argument("--input", choices=("image", "noise"), default="image",
                    help="the parity image (default) or the parity check's uniform random input")
    lo.add_argument("--seed", type=int, default=0, help="seed of --input noise (default 0, as sr-target check)")
    lo.add_argument("--json", action="store_true", help="print every tensor's figures as JSON")
    sub.add_parser("list", help="which targets are set up")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import parse_target

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.command == "setup":
        from . import arm64, gpu, qualcomm

        {"arm64": arm64, "gpu": gpu, "qualcomm": qualcomm}[args.kind].setup(log=log, force=args.force)
        return 0
    if args.command == "list":
        from . import arm64, gpu

        ready = arm64.is_ready()
        print(f"arm64: {'ready in ' + str(arm64.target_dir()) if ready else 'not set up (sudo sr-target setup arm64)'}"
              f"; cores {', '.join(arm64.CORES)}")
        g = gpu.is_ready()
        print(f"gpu: {'ready in ' + str(gpu.target_dir()) + ' (' + g['adapter'] + ')' if g else 'not set up (sr-target setup gpu)'}"
              "; modes gpu (FP16 default), gpu:fp32")
        from . import qualcomm

        q = qualcomm.is_ready()
        print(f"qualcomm: {'ready in ' + str(qualcomm.target_dir()) if q else 'not set up (sr-target setup qualcomm)'}"
              f"; SoCs {', '.join(qualcomm.SOCS)} (compile, offload report, run on the HTP simulator)")
        return 0
    if args.command == "localise":
        return _localise(args, parse_target(args.target))
    targets = [parse_target(t) for t in args.target]
    from .check import check_export, format_targets, record_in_manifest

    results = check_export(args.export_dir, targets, args.artifact, seed=args.seed, log=log)
    record_in_manifest(Path(args.export_dir), results)
    print(json.dumps(results, indent=2) if args.json else format_targets(results))
    from . import OK_STATUSES

    ok = all(r.get("status") in OK_STATUSES for arts in results.values() for r in arts.values())
    return 0 if ok else 1


def _localise(args, target) -> int:
    from ..errors import SrDeployError
    from .check import _inputs
    from .qualcomm import localise

    if target.kind != "qualcomm":
        raise SrDeployError("localise compares the NPU with the host: give --target qualcomm:<SoC>")
    art = Path(args.export_dir) / args.artifact
    if not art.is_file():
        raise SrDeployError(f"no such artifact: {art}")
    from ..runtime import TFLiteRunner

    _, h, w, _ = TFLiteRunner(art).input_shape
    scale = json.loads((Path(args.export_dir) / "manifest.json").read_text())["scale"]
    image, noise = _inputs(h, w, scale, args.seed, integer_io=False)  # the parity check's two inputs
    desc, x = image if args.input == "image" else noise
    rows = localise(art, target.option, x, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps({"input": desc, "tensors": rows}, indent=1))
        return 0
    is_int8 = bool(rows) and "max_lsb" in rows[0]
    first = next((r for r in rows if (r["max_lsb"] > 2 if is_int8 else r["psnr_db"] < 50.0)), None)
    kind = "int8" if is_int8 else "float"
    print(f"{len(rows)} {kind} tensors of {art.name} on the {target.label} HTP simulator vs this host, input {desc}:")
    for r in rows:
        if is_int8:
            mark = "  <- first above 2 LSB" if r is first else ""
            figures = f"max {r['max_lsb']:>3} LSB  mean {r['mean_lsb']:.2f}  {100 * r['fraction_off']:.0f}% off"
        else:
            mark = "  <- first below 50 dB" if r is first else ""
            figures = f"max |d| {r['max_abs']:.1e}  peak {r['peak']:8.3f}  {r['psnr_db']:6.1f} dB"
        print(f"  {r['op']:<16} {str(r['shape']):<20} {figures}  {r['tensor'][:40]}{mark}")
    return 0


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
