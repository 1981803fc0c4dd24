"""``sr-train``: train a lite SR network with DIPNet's recipe and write its deploy-form weights."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from ..cli_util import OneLineParser, run_cli
from ..errors import SrDeployError
from ..paths import data_dir

__all__ = ["main", "entry", "save_deploy_weights"]

EPILOG = """\
examples:
  sr-train --model dipnet_lite --scale 2 --steps 20000 --out runs/lite
  sr-train --model dipnet_lite --resume runs/lite/last.pt --out runs/lite      # continue a stopped run
  sr-train --model dipnet_lite --steps 2000 --prune-to 0.75 --prune-rounds 3 --prune-steps 500
  sr-train --data $SRDEPLOY_DATA/div2k/HR --data $SRDEPLOY_DATA/train/T91 --data $SRDEPLOY_DATA/train/BSD200 \
           --data $SRDEPLOY_DATA/train/General100 --data-weights 1 1 2 1 --out runs/lite400

training images matching an evaluation image (Set5, Set14, --eval-data) pixel for pixel are refused;
the progress bar shows training throughput in patches/s (evaluations excluded).

outputs (in --out): last.pt (resumable training checkpoint, training form), <model>_x<scale>.pth
(re-parameterized deploy-form weights, loadable with sr-export/sr-eval --weights), optionally
<model>_x<scale>_pruned.pth, and train_report.json. Every file is written then renamed.
"""


def _default(sub: str) -> str | None:
    root = data_dir()
    return str(root / sub) if root is not None and (root / sub).is_dir() else None


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="sr-train",
        description="Train a lite SR model in its re-parameterizable training form on random LR/HR patches "
                    "(MATLAB-bicubic degradation of HR images), with L1 to HR plus output and feature "
                    "distillation from a teacher, then fuse it to the deploy form and optionally prune it.",
        epilog=EPILOG, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dipnet_lite", help="student: a registry model, trained in its re-parameterizable training form where it has one, "
                        "else as it deploys (e.g. imdn_rtc_relu)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--data", action="append", default=None,
                   help="folder of HR training images (repeatable); default: DIV2K HR under $SRDEPLOY_DATA")
    p.add_argument("--data-weights", type=float, nargs="+", default=None, metavar="W",
                   help="one relative weight per --data folder: each step draws a folder with these odds, then "
                        "an image uniformly within it (e.g. --data T91 --data BSD200 --data-weights 1 1: half "
                        "the patches from each); default: every image equally likely")
    p.add_argument("--sampling", choices=("image", "folder"), default="image",
                   help="image (default): every training image equally likely; folder: every --data folder "
                        "equally likely (the same as --data-weights 1 1 ...)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="pair cache: each image is decoded and bicubic-degraded once, stored here keyed by "
                        "its content (an edited file gets a new entry) and memory-mapped by later runs "
                        "(default: $XDG_CACHE_HOME/srdeploy/train-pairs)")
    p.add_argument("--no-cache", action="store_true", help="compute every LR/HR pair in memory, write no cache")
    p.add_argument("--enhance-gt", action="store_true",
                   help="DIPNet's model-guided ground-truth enhancement: train toward teacher(HR) bicubic-"
                        "downscaled back to HR size instead of the HR itself (computed once, cached). With the "
                        "bicubic-trained teachers here the targets differ from HR by ~0.03 grey levels and a "
                        "3000-step A/B showed no effect (docs/RESULTS.md)")
    p.add_argument("--distill-data", action="append", default=None, metavar="DIR",
                   help="folder of extra images used only as distillation inputs (repeatable): the student "
                        "matches the teacher on their bicubic LR, with no L1 to their HR (e.g. JPEG photos)")
    p.add_argument("--distill-frac", type=float, default=0.5,
                   help="share of each batch drawn from --distill-data (default 0.5)")
    p.add_argument("--teacher", default="imdn", help="teacher model name, or 'none' (default: imdn, official weights)")
    p.add_argument("--teacher-scale", type=int, default=None, help="teacher's scale (must equal --scale)")
    p.add_argument("--teacher-weights", default=None, help="teacher checkpoint path (default: the registry's)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--patch", type=int, default=32, help="LR patch side in pixels (HR patch = patch x scale)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay to 1%%)")
    p.add_argument("--w-out", type=float, default=0.5, help="weight of the L1 to the teacher's output")
    p.add_argument("--w-feat", type=float, default=0.1, help="weight of the feature distillation L1")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="raise the learning rate linearly over the first STEPS steps (default 0); spares a "
                        "fine-tune the jolt of Adam's first full-size steps")
    p.add_argument("--pixel-loss", choices=("l1", "mse"), default="l1",
                   help="loss of the HR and teacher-output terms: l1 (default), or mse, PSNR's own criterion, "
                        "for a final low-rate fine-tune (use with --w-feat 0: an L1 feature term would "
                        "outweigh the much smaller squared errors)")
    p.add_argument("--init", choices=("interp", "random"), default="interp",
                   help="interp: start as a bilinear upscaler (residual learning); random: plain init")
    p.add_argument("--init-weights", default=None, metavar="PTH",
                   help="fine-tune from a deploy-form checkpoint (e.g. an earlier run's <model>_x<scale>.pth)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and "
                        "evaluate/write it instead of the last step's weights (default 0: off)")
    p.add_argument("--average", nargs="+", metavar="PTH", default=None,
                   help="train nothing: write the uniform average of these deploy-form weight files (runs "
                        "fine-tuned from one ancestor, a 'model soup') as <model>_x<scale>.pth, evaluated "
                        "like a trained model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="output folder")
    p.add_argument("--resume", default=None, help="continue from a last.pt checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--eval-data", default=None, help="Set5-style folder for the periodic PSNR (default: Set5)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--prune-to", type=float, default=None, metavar="RATIO",
                   help="after training, prune inner block widths to RATIO of their size (e.g. 0.75)")
    p.add_argument("--prune-rounds", type=int, default=3)
    p.add_argument("--prune-steps", type=int, default=500, help="fine-tune steps after each prune round")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def save_deploy_weights(model: torch.nn.Module, dest: Path, meta: dict) -> None:
    from .trainer import save_atomic

    obj = {"state_dict": model.state_dict(), "meta": meta}
    if hasattr(model, "arch"):
        obj["arch"] = dict(model.arch)
    save_atomic(obj, dest)


def _within(folder: str, outer: str | None) -> bool:
    """Is *folder* the *outer* folder or inside it?"""
    if outer is None:
        return False
    f, o = Path(folder).resolve(), Path(outer).resolve()
    return f == o or o in f.parents


def _evaluate(model, eval_data: str | None, custom_eval: bool, scale: int) -> dict:
    """Set5 (or --eval-data) PSNR-Y, plus Set14 when evaluating on the default Set5."""
    from .trainer import evaluate_psnr

    scores = {}
    if eval_data:
        scores["set5_psnr_y"] = round(evaluate_psnr(model, eval_data, scale), 4)
        set14 = _default("Set14")
        if set14 and not custom_eval:
            scores["set14_psnr_y"] = round(evaluate_psnr(model, set14, scale), 4)
    return scores


def _average(args, eval_data: str | None) -> int:
    from ..fsutil import atomic_write_json, ensure_writable_dir
    from ..models import create_model
    from .soup import average_models

    # create_model reads each file as --weights does (its shape, pruned or not, and its errors)
    model = average_models([create_model(args.model, args.scale, weights=p) for p in args.average],
                           args.average).eval()
    out = Path(args.out)
    ensure_writable_dir(out)
    name = f"{args.model}_x{args.scale}"
    report = {"averaged": [str(p) for p in args.average], **_evaluate(model, eval_data, args.eval_data is not None,
                                                                     args.scale)}
    save_deploy_weights(model, out / f"{name}.pth", {"trained_with": "sr-train --average", **report})
    report["weights"] = str(out / f"{name}.pth")
    atomic_write_json(out / "train_report.json", report)
    print(json.dumps(report, indent=2) if args.json else
          f"{name}: average of {len(args.average)} runs"
          + "".join(f", {k.split('_')[0].capitalize()} PSNR-Y {v:.3f} dB" for k, v in report.items() if k.endswith("psnr_y"))
          + f"\nweights: {report['weights']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .trainer import TrainConfig, Trainer, check_resume_step, load_training_checkpoint

    eval_data = args.eval_data or _default("Set5")
    if args.average:  # trains nothing: needs no training data
        return _average(args, eval_data)
    data = args.data or ([d] if (d := _default("div2k/HR")) else None)
    if not data:
        raise SrDeployError("no training data: pass --data DIR (HR images) or set SRDEPLOY_DATA")
    distill = args.distill_data or []
    refuse = list(dict.fromkeys(f for f in (eval_data, _default("Set5"), _default("Set14")) if f))
    for d in [*data, *distill]:
        if any(_within(d, f) for f in refuse):
            raise SrDeployError(f"training folder {d} is an evaluation set: train on DIV2K, evaluate on Set5")
    weights = args.data_weights
    if args.sampling == "folder":
        if weights is not None:
            raise SrDeployError("--sampling folder and --data-weights both set the folder odds: give one")
        weights = [1.0] * len(data)
    if weights is not None and len(weights) != len(data):
        raise SrDeployError(f"--data-weights has {len(weights)} values for {len(data)} --data folders")
    if args.no_cache and args.cache:
        raise SrDeployError("--cache and --no-cache contradict each other")
    from ..paths import cache_dir

    cache = None if args.no_cache else (args.cache or str(cache_dir() / "train-pairs"))
    teacher = None if args.teacher.lower() == "none" else args.teacher
    ckpt = load_training_checkpoint(args.resume) if args.resume else None
    out = Path(args.out)
    cfg = TrainConfig(model=args.model, scale=args.scale, data=list(data), data_weights=weights, cache=cache,
                      refuse=refuse, enhance_gt=args.enhance_gt, distill_data=list(distill),
                      distill_frac=args.distill_frac, teacher=teacher,
                      teacher_scale=args.teacher_scale, teacher_weights=args.teacher_weights, steps=args.steps,
                      patch=args.patch, batch=args.batch, lr=args.lr, w_out=args.w_out, w_feat=args.w_feat,
                      pixel_loss=args.pixel_loss, warmup=args.warmup,
                      seed=args.seed, ema=args.ema, init=args.init, init_weights=args.init_weights, eval_every=args.eval_every,
                      ckpt_every=args.ckpt_every, eval_data=eval_data, device=args.device, threads=args.threads)
    if args.prune_to is not None and not 0 < args.prune_to <= 1:
        raise SrDeployError("--prune-to must be in (0, 1]")
    if args.prune_rounds < 1 or args.prune_steps < 0:
        raise SrDeployError("--prune-rounds must be >= 1 and --prune-steps >= 0")
    if ckpt is not None:  # before the Trainer reads any data
        check_resume_step(ckpt, cfg.steps)
    progress = not args.no_progress
    trainer = Trainer(cfg, progress=progress, log=lambda s: print(s, file=sys.stderr, flush=True))
    if ckpt is not None:
        trainer.load_state(ckpt)
    from ..fsutil import ensure_writable_dir

    ensure_writable_dir(out)  # only after every input was checked: bad input leaves no folder behind
    t0 = time.perf_counter()
    trainer.run(out)
    deploy = trainer.deploy_model()
    name = f"{cfg.model}_x{cfg.scale}"
    report: dict = {"config": asdict(cfg), "steps": trainer.step, "data": trainer.sampler.describe(),
                    **({"distill_data": trainer.distill_sampler.describe()} if trainer.distill_sampler else {}),
                    "history": trainer.history, "seconds": round(time.perf_counter() - t0, 1),
                    "torch": torch.__version__,
                    "params_train_form": sum(p.numel() for p in trainer.student.parameters()),
                    "params_deploy": sum(p.numel() for p in deploy.parameters())}
    report.update(_evaluate(deploy, eval_data, args.eval_data is not None, cfg.scale))
    meta = {"trained_with": "sr-train", "steps": trainer.step, "config": asdict(cfg),
            **{k: report[k] for k in ("set5_psnr_y", "set14_psnr_y") if k in report}}
    save_deploy_weights(deploy, out / f"{name}.pth", meta)
    report["weights"] = str(out / f"{name}.pth")
    if args.prune_to is not None and args.prune_to < 1:
        pruned, log = trainer.prune(args.prune_to, args.prune_rounds, args.prune_steps)
        report["pruning"] = log
        report["params_pruned"] = sum(p.numel() for p in pruned.parameters())
        save_deploy_weights(pruned, out / f"{name}_pruned.pth", {**meta, "pruning": log})
        report["pruned_weights"] = str(out / f"{name}_pruned.pth")
    from ..fsutil import atomic_write_json

    atomic_write_json(out / "train_report.json", report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{name}: {trainer.step} steps, {report['params_deploy']} deploy params"
              + (f", Set5 PSNR-Y {report['set5_psnr_y']:.3f} dB" if "set5_psnr_y" in report else "")
              + (f", Set14 {report['set14_psnr_y']:.3f} dB" if "set14_psnr_y" in report else "")
              + f"\nweights: {report['weights']}")
    return 0


def entry() -> None:
    sys.exit(run_cli("sr-train", main))


if __name__ == "__main__":
    entry()
