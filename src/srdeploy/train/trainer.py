"""DIPNet's training recipe as a resumable loop: re-param training form, L1 to HR, output and
feature distillation from a teacher, Adam with cosine decay, periodic Set5 PSNR, atomic
checkpoints.

Determinism: the batch of step *k* comes from ``(seed, k)`` only and the model/optimizer states
are checkpointed, so stopping after step *k* and resuming gives the same step *k+1* bit for bit.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SrDeployError
from ..models import create_model, get_spec, reparameterize
from .data import PatchSampler, step_rng
from .distill import FeatureTap, anchor_modules, feature_loss, make_adapters, pair_anchors
from .init import interpolation_init

__all__ = ["TrainConfig", "Trainer", "save_atomic", "load_training_checkpoint", "evaluate_psnr"]

CHECKPOINT_FORMAT = "srdeploy-train-1"
PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


@dataclass
class TrainConfig:
    model: str = "dipnet_lite"
    scale: int = 2
    data: list[str] = field(default_factory=list)
    # One relative weight per data folder (sampling by folder); None samples every image equally.
    data_weights: list[float] | None = None
    # Pair-cache folder (decoded, degraded LR/HR pairs; see pairs.py); None computes them in memory.
    cache: str | None = None
    # Folders whose images must never be trained on (the evaluation sets): refused by pixel hash.
    refuse: list[str] = field(default_factory=list)
    # DIPNet's model-guided ground-truth enhancement: the HR target of every training image is
    # replaced by teacher(HR) bicubic-downscaled back to the HR size (needs a teacher).
    enhance_gt: bool = False
    # Distillation-only inputs (e.g. Sun-Hays80 JPEGs): their LR patches feed the teacher losses
    # but never the L1 to HR, because compressed photos are poor HR targets.
    distill_data: list[str] = field(default_factory=list)
    distill_frac: float = 0.5  # share of each batch drawn from distill_data (when given)
    teacher: str | None = "imdn"
    teacher_scale: int | None = None
    teacher_weights: str | None = None
    steps: int = 20000
    patch: int = 32  # LR patch side
    batch: int = 16
    lr: float = 1e-3
    lr_min_ratio: float = 0.01
    # Linear learning-rate warm-up over the first steps. A fine-tune restarts Adam with empty moment
    # estimates, so its first steps move every weight by about the full rate at once; measured here:
    # 20 steps at 5e-5 from a converged model cost 0.02-0.03 dB Set5 even through a 0.999 weight average.
    warmup: int = 0
    w_hr: float = 1.0  # L1 to HR
    w_out: float = 0.5  # L1 to the teacher's output
    w_feat: float = 0.1  # multi-anchor feature L1
    # Pixel loss of the HR and teacher-output terms. "mse" is PSNR's own criterion: the usual last
    # stage of efficient-SR schedules (L1 first for robustness, then an L2 fine-tune at a low rate).
    pixel_loss: str = "l1"
    seed: int = 0
    # Exponential moving average of the weights (0 = off). The averaged copy is what is evaluated
    # and written; it smooths the step-to-step noise of small-batch fine-tuning (BasicSR's ema_decay).
    ema: float = 0.0
    init: str = "interp"  # "interp" (bilinear start) or "random"
    init_weights: str | None = None  # fine-tune from a deploy-form checkpoint instead
    eval_every: int = 1000
    ckpt_every: int = 500
    eval_data: str | None = None  # Set5 folder; None = none
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 0 or (self.steps == 0 and not self.init_weights):
            raise SrDeployError("--steps must be >= 1 (0 only with --init-weights: fuse/prune an existing model)")
        if self.batch < 1:
            raise SrDeployError("--batch must be >= 1")
        if self.patch < 4:
            raise SrDeployError(f"--patch must be >= 4, got {self.patch}")
        if self.batch * self.patch * self.patch > 1 << 20:
            raise SrDeployError(f"--batch {self.batch} x --patch {self.patch}^2 is {self.batch * self.patch ** 2:,} LR pixels "
                                "a step; at most 1,048,576 (e.g. 16 x 256^2)")
        for flag, v in (("--lr", self.lr), ("--w-out", self.w_out), ("--w-feat", self.w_feat)):
            if not math.isfinite(v) or v < 0 or (flag == "--lr" and v == 0):
                raise SrDeployError(f"{flag} must be a finite number {'> 0' if flag == '--lr' else '>= 0'}, got {v}")
        if self.eval_every < 1 or self.ckpt_every < 1:
            raise SrDeployError(f"--eval-every and --ckpt-every must be >= 1, got {self.eval_every} and {self.ckpt_every}")
        from ..cli_util import check_threads

        check_threads(self.threads)
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise SrDeployError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.pixel_loss not in PIXEL_LOSSES:
            raise SrDeployError(f"--pixel-loss must be one of {', '.join(PIXEL_LOSSES)}, got {self.pixel_loss!r}")
        if self.warmup < 0:
            raise SrDeployError(f"--warmup must be >= 0, got {self.warmup}")
        if not 0 <= self.ema < 1:
            raise SrDeployError(f"--ema must be in [0, 1), got {self.ema}")
        if self.distill_data:
            if not self.teacher:
                raise SrDeployError("--distill-data needs a teacher: its images carry no HR target")
            if not 0 < self.distill_frac < 1:
                raise SrDeployError(f"--distill-frac must be in (0, 1), got {self.distill_frac}")
            if self.batch < 2:
                raise SrDeployError("--distill-data needs --batch >= 2 (HR and distillation samples)")
        if self.enhance_gt and not self.teacher:
            raise SrDeployError("--enhance-gt needs a teacher: the enhanced targets are its output")
        if self.teacher_scale is None:
            self.teacher_scale = self.scale
        if self.teacher and self.teacher_scale != self.scale:
            raise SrDeployError(f"teacher scale x{self.teacher_scale} differs from the student's x{self.scale}: "
                                "distillation needs the same scale")


def save_atomic(obj, dest: Path) -> None:
    """``torch.save`` to a temporary file beside *dest*, then rename: never a half-written file."""
    from ..fsutil import atomic_write

    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: torch.save(obj, tmp))


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SrDeployError(f"resume checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SrDeployError(f"cannot read resume checkpoint {p}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SrDeployError(f"{p} is not an sr-train checkpoint (format {CHECKPOINT_FORMAT})")
    step = ckpt.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise SrDeployError(f"{p}: its step ({step!r}) is not a count of steps done")
    if not isinstance(ckpt.get("config"), dict):
        raise SrDeployError(f"{p}: its config entry is missing or malformed")
    return ckpt


def check_resume_step(ckpt: dict, steps: int) -> None:
    """A resume checkpoint's step must lie within this run's --steps."""
    if not 0 <= int(ckpt["step"]) <= steps:
        raise SrDeployError(f"resume checkpoint is at step {ckpt['step']}, beyond --steps {steps}")


def evaluate_psnr(model: nn.Module, folder: str | os.PathLike, scale: int) -> float:
    """Set5-style PSNR-Y of a (deploy-form) model, whole images, float32, run on the CPU."""
    from ..benchmark.evaluate import evaluate_dataset, find_dataset
    from ..runtime import TorchRunner

    runner = TorchRunner(copy_to_cpu(model))
    res = evaluate_dataset(lambda lr: runner((lr.astype(np.float32) / 255.0)[None])[0],
                           find_dataset(folder, scale), scale)
    if res.psnr_y is None:
        raise SrDeployError(f"no image of {folder} could be evaluated")
    return res.psnr_y


def copy_to_cpu(model: nn.Module) -> nn.Module:
    import copy

    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()


def cosine_lr(base: float, step: int, total: int, min_ratio: float, warmup: int = 0) -> float:
    t = min(max(step, 0), total) / max(total, 1)
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class Trainer:
    """Build student (training form), teacher and optimizer; run or resume steps."""

    def __init__(self, cfg: TrainConfig, sampler: PatchSampler | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg, self.progress, self.log = cfg, progress, log or (lambda s: None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise SrDeployError("--device cuda asked for, but this torch build sees no CUDA device")
        spec = get_spec(cfg.model)
        # a network without a re-parameterizable training form (IMDN_RTC and its variants) trains as it deploys
        form = "train" if spec.train_branches is not None else "deploy"
        torch.manual_seed(cfg.seed)
        if cfg.init not in ("interp", "random"):
            raise SrDeployError(f"--init must be interp or random, got {cfg.init!r}")
        if cfg.init_weights:  # the training form starts as the exact function of these deploy weights
            self.student = create_model(cfg.model, cfg.scale, weights=cfg.init_weights, form=form)
        else:
            self.student = create_model(cfg.model, cfg.scale, pretrained=False, form=form)
            if cfg.init == "interp":
                if not hasattr(self.student, "conv_1"):
                    raise SrDeployError(f"--init interp starts DIPNet-type students as a bilinear upscaler; "
                                        f"{cfg.model} is not one: use --init random or --init-weights")
                interpolation_init(self.student)
        self.teacher = None
        self.adapters = nn.ModuleList()
        if cfg.teacher:
            self.teacher = create_model(cfg.teacher, cfg.teacher_scale, weights=cfg.teacher_weights).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.adapters = make_adapters(self.student, self.teacher)
            self.pairs = pair_anchors(len(anchor_modules(self.student)), len(anchor_modules(self.teacher)))
        self.device = torch.device(cfg.device)
        for m in (self.student, self.teacher, self.adapters):
            if m is not None:
                m.to(self.device)
        params = list(self.student.parameters()) + list(self.adapters.parameters())
        self.opt = torch.optim.Adam(params, lr=cfg.lr)
        # torch's own EMA wrapper (a deep copy updated after each optimizer step).
        self.ema_model = (torch.optim.swa_utils.AveragedModel(
            self.student, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
            if cfg.ema > 0 else None)
        self.step = 0
        self.history: list[dict] = []
        from .pairs import evaluation_hashes

        forbidden = evaluation_hashes(cfg.refuse)
        self.sampler = sampler or PatchSampler.from_folders(
            cfg.data, cfg.scale, cfg.patch, progress=progress, weights=cfg.data_weights, cache=cfg.cache,
            forbidden=forbidden, enhance=self._enhancer() if cfg.enhance_gt else None)
        self.distill_sampler = (PatchSampler.from_folders(cfg.distill_data, cfg.scale, cfg.patch, progress=progress,
                                                          cache=cfg.cache, forbidden=forbidden)
                                if cfg.distill_data else None)

    def _enhancer(self):
        """``(tag, fn)``: DIPNet's enhanced ground truth, ``imresize(teacher(HR), 1/s)`` as uint8.

        The teacher runs tile by tile (a 2040x1356 DIV2K image would need gigabytes whole); the
        tag names the teacher and the sha256 of its weights, so the cache never serves another
        teacher's targets."""
        import hashlib

        from ..resize import imresize
        from ..runtime import TorchRunner
        from ..tiling import upscale_tiled

        h = hashlib.sha256()
        for k, v in self.teacher.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        tag = f"{self.cfg.teacher}-x{self.cfg.teacher_scale}-{h.hexdigest()[:16]}"
        runner = TorchRunner(copy_to_cpu(self.teacher))
        s = self.cfg.scale

        def enhance(hr: np.ndarray) -> np.ndarray:
            tile = (min(hr.shape[0], 256), min(hr.shape[1], 256))  # a smaller image runs whole, unpadded
            up = upscale_tiled(runner, hr.astype(np.float32) / 255.0, s, tile, 12)
            back = imresize(np.clip(up, 0, 1).astype(np.float64) * 255.0, 1.0 / s)
            return np.clip(np.round(back), 0, 255).astype(np.uint8)

        return tag, enhance

    def split_batch(self) -> tuple[int, int]:
        """(HR-supervised samples, distillation-only samples) per step."""
        if self.distill_sampler is None:
            return self.cfg.batch, 0
        n_d = min(self.cfg.batch - 1, max(1, round(self.cfg.batch * self.cfg.distill_frac)))
        return self.cfg.batch - n_d, n_d

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict:
        cfg = asdict(self.cfg)
        return {"format": CHECKPOINT_FORMAT, "config": cfg, "step": self.step,
                "student": self.student.state_dict(), "adapters": self.adapters.state_dict(),
                "optimizer": self.opt.state_dict(), "history": self.history,
                **({"ema": self.ema_model.state_dict()} if self.ema_model is not None else {})}

    def load_state(self, ckpt: dict) -> None:
        c = ckpt.get("config", {})
        defaults = {"distill_data": [], "distill_frac": 0.5, "ema": 0.0,  # checkpoints made before these options
                    "pixel_loss": "l1", "data_weights": None, "enhance_gt": False}
        for key in ("model", "scale", "teacher", "patch", "batch", "seed", "distill_data", "distill_frac", "ema",
                    "pixel_loss", "data_weights", "enhance_gt"):
            if c.get(key, defaults.get(key)) != getattr(self.cfg, key):
                raise SrDeployError(f"resume checkpoint was made with {key}={c.get(key, defaults.get(key))!r}, "
                                    f"this run has {getattr(self.cfg, key)!r}")
        try:
            self.student.load_state_dict(ckpt["student"])
            self.adapters.load_state_dict(ckpt["adapters"])
            self.opt.load_state_dict(ckpt["optimizer"])
            if self.ema_model is not None:
                self.ema_model.load_state_dict(ckpt["ema"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise SrDeployError(f"resume checkpoint does not fit {self.cfg.model}: "
                                f"{str(exc).splitlines()[0]}") from None
        check_resume_step(ckpt, self.cfg.steps)
        self.step = int(ckpt["step"])
        history = ckpt.get("history", [])
        self.history = list(history) if isinstance(history, list) else []

    # -- one step ---------------------------------------------------------------------------------
    def loss(self, model: nn.Module, lr: torch.Tensor, hr: torch.Tensor, with_features: bool = True) -> tuple[torch.Tensor, dict]:
        """Losses of one batch; the first ``len(hr)`` samples of *lr* have HR targets, the rest
        (distillation-only inputs) are matched to the teacher only."""
        cfg = self.cfg
        use_feat = with_features and self.teacher is not None and cfg.w_feat > 0
        s_tap = FeatureTap(anchor_modules(model)) if use_feat else None
        try:
            sr = model(lr)
        finally:
            if s_tap:
                s_tap.remove()
        pixel = PIXEL_LOSSES[cfg.pixel_loss]
        parts = {"hr": pixel(sr[:len(hr)], hr)}
        total = cfg.w_hr * parts["hr"]
        if self.teacher is not None and (cfg.w_out > 0 or use_feat):
            t_tap = FeatureTap(anchor_modules(self.teacher)) if use_feat else None
            try:
                with torch.no_grad():
                    t_sr = self.teacher(lr)
            finally:
                if t_tap:
                    t_tap.remove()
            if cfg.w_out > 0:
                parts["out"] = pixel(sr, t_sr)
                total = total + cfg.w_out * parts["out"]
            if use_feat:
                parts["feat"] = feature_loss(s_tap.features, t_tap.features, self.adapters, self.pairs)
                total = total + cfg.w_feat * parts["feat"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def train_step(self, model: nn.Module, opt: torch.optim.Optimizer, step: int, total_steps: int,
                   with_features: bool = True, stream: int = 0, base_lr: float | None = None) -> dict:
        cfg = self.cfg
        for g in opt.param_groups:
            g["lr"] = cosine_lr(base_lr or cfg.lr, step, total_steps, cfg.lr_min_ratio,
                                cfg.warmup if base_lr is None else 0)
        n_hr, n_d = self.split_batch()
        lr, hr = self.sampler.batch(n_hr, step_rng(cfg.seed, step, stream))
        if n_d:  # an independent stream, so adding distillation data leaves the HR batches unchanged
            lr_d, _ = self.distill_sampler.batch(n_d, step_rng(cfg.seed, step, stream + 1_000_000))
            lr = torch.cat([lr, lr_d])
        lr, hr = lr.to(self.device), hr.to(self.device)
        model.train()
        loss, parts = self.loss(model, lr, hr, with_features)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), **parts}

    # -- the run ----------------------------------------------------------------------------------
    def deploy_model(self) -> nn.Module:
        """Deploy form of the weights being trained (their moving average when ``ema`` is on)."""
        return reparameterize(self.ema_model.module if self.ema_model is not None else self.student).eval()

    def run(self, out: Path, until: int | None = None) -> dict:
        """Train from ``self.step`` to ``until`` (default: ``cfg.steps``), checkpointing to ``out/last.pt``."""
        from ..progress import bar as progress_bar

        cfg = self.cfg
        end = min(until or cfg.steps, cfg.steps)
        bar = progress_bar(total=cfg.steps, initial=self.step, desc=f"train {cfg.model} x{cfg.scale}", unit="step",
                           enabled=self.progress)
        t0, ema, first, busy = time.perf_counter(), None, self.step, 0.0
        while self.step < end:
            ts = time.perf_counter()
            rec = self.train_step(self.student, self.opt, self.step, cfg.steps)
            busy += time.perf_counter() - ts  # patches/s counts training steps only, not the evaluations
            if self.ema_model is not None:
                self.ema_model.update_parameters(self.student)
            self.step += 1
            ema = rec["loss"] if ema is None else 0.98 * ema + 0.02 * rec["loss"]
            bar.update(1)
            rate = cfg.batch * (self.step - first) / max(busy, 1e-9)
            bar.set_postfix(loss=f"{ema:.4f}", patches_s=f"{rate:.1f}")
            done = self.step == end
            if cfg.eval_data and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                psnr = evaluate_psnr(self.deploy_model(), cfg.eval_data, cfg.scale)
                self.history.append({"step": self.step, "loss_ema": round(ema, 6), "set5_psnr_y": round(psnr, 4),
                                     "seconds": round(time.perf_counter() - t0, 1), "patches_per_s": round(rate, 2)})
                bar.set_postfix(loss=f"{ema:.4f}", patches_s=f"{rate:.1f}", set5=f"{psnr:.3f}")
                self.log(f"step {self.step}: loss {ema:.4f}, eval PSNR-Y {psnr:.3f} dB")
            if self.step % cfg.ckpt_every == 0 or done:
                save_atomic(self.state(), out / "last.pt")
        bar.close()
        return {"step": self.step, "history": self.history}

    def prune(self, ratio: float, rounds: int, steps_per_round: int, lr_scale: float = 0.2) -> tuple[nn.Module, list[dict]]:
        """DIPNet's iterative pruning: cut inner widths, fine-tune (deploy form), repeat."""
        from ..progress import bar as progress_bar
        from .prune import prune_dipnet, pruning_schedule

        model = self.deploy_model()
        if not hasattr(model, "arch"):
            raise SrDeployError(f"{self.cfg.model} does not support channel pruning")
        log = []
        widths = pruning_schedule(model.arch["mid"], ratio, rounds)
        for r, width in enumerate(widths, start=1):
            model = prune_dipnet(model, width).to(self.device)
            opt = torch.optim.Adam(list(model.parameters()) + list(self.adapters.parameters()),
                                   lr=self.cfg.lr * lr_scale)
            for k in progress_bar(range(steps_per_round), desc=f"prune round {r}/{len(widths)} (mid {width})",
                                  unit="step", enabled=self.progress, leave=False):
                self.train_step(model, opt, k, steps_per_round, stream=r, base_lr=self.cfg.lr * lr_scale)
            model.eval()
            entry = {"round": r, "mid": width, "params": sum(p.numel() for p in model.parameters())}
            if self.cfg.eval_data:
                entry["set5_psnr_y"] = round(evaluate_psnr(model, self.cfg.eval_data, self.cfg.scale), 4)
            log.append(entry)
            self.log(f"prune round {r}: mid {width}, {entry}")
        return model.cpu().eval(), log
