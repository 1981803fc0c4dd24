"""sr-train: loss goes down, exact resume, exact fusion after training, pruning stays exportable,
bad input is refused in one line with nothing written."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from srdeploy.imaging import write_image
from srdeploy.models import create_model
from srdeploy.sample_images import synthetic_image
from srdeploy.train.data import PatchSampler, step_rng
from srdeploy.train.init import bilinear_subpixel_kernel, interpolation_init
from srdeploy.train.prune import prune_dipnet, pruning_schedule
from srdeploy.errors import SrDeployError
from srdeploy.train.trainer import TrainConfig, Trainer, load_training_checkpoint, save_atomic

from .conftest import run_cli


@pytest.fixture
def hr_folder(tmp_path):
    d = tmp_path / "hr"
    d.mkdir()
    for i in range(3):
        write_image(d / f"img{i}.png", synthetic_image(96, 112, seed=i))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """sr-train's default pair cache lives under $XDG_CACHE_HOME: keep the tests' out of the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _cfg(hr_folder, **kw) -> TrainConfig:
    base = dict(model="dipnet_lite", scale=2, data=[str(hr_folder)], teacher=None, steps=40, patch=12, batch=4,
                lr=2e-3, eval_data=None, ckpt_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def test_sampler_pairs_are_aligned_and_deterministic(hr_folder):
    s = PatchSampler.from_folders([hr_folder], scale=2, patch=12)
    assert len(s.images) == 3 and s.skipped_non_images == 1
    lr1, hr1 = s.batch(4, step_rng(0, 7))
    lr2, hr2 = s.batch(4, step_rng(0, 7))
    assert lr1.shape == (4, 3, 12, 12) and hr1.shape == (4, 3, 24, 24)
    assert torch.equal(lr1, lr2) and torch.equal(hr1, hr2)
    assert not torch.equal(lr1, s.batch(4, step_rng(0, 8))[0])
    # LR really is the bicubic downscale of the HR patch (up to the border of the crop)
    down = torch.nn.functional.avg_pool2d(hr1, 2)
    assert (down - lr1)[..., 2:-2, 2:-2].abs().mean() < 0.03


def test_bilinear_init_computes_bilinear_upscale():
    k = bilinear_subpixel_kernel(2)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(4))  # each sub-pixel: weights sum to 1
    torch.manual_seed(0)
    net = create_model("dipnet_lite", 2, pretrained=False)
    interpolation_init(net)
    with torch.no_grad():
        net.upsampler[0].weight[:, 3:] = 0  # only the copied RGB channels reach the output
        net.conv_2.weight[:3] = 0  # and no residual detail is added to them
        x = torch.rand(1, 3, 16, 16)
        ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        assert (net(x) - ref)[..., 2:-2, 2:-2].abs().max() < 1e-5


def _held_out_loss(tr: Trainer, lr, hr, loss=torch.nn.functional.l1_loss) -> float:
    with torch.no_grad():
        tr.student.eval()
        return float(loss(tr.student(lr), hr))


def test_few_steps_lower_the_loss(hr_folder):
    tr = Trainer(_cfg(hr_folder, init="random"))
    lr, hr = tr.sampler.batch(8, step_rng(123, 0))
    before = _held_out_loss(tr, lr, hr)
    for k in range(40):
        tr.train_step(tr.student, tr.opt, k, 40)
    after = _held_out_loss(tr, lr, hr)
    assert after < 0.7 * before, (before, after)


def test_checkpoint_resumes_to_the_identical_next_step(hr_folder, tmp_path, weights_root):
    cfg = _cfg(hr_folder, teacher="imdn", steps=3, w_feat=0.1, w_out=0.5)
    straight = Trainer(cfg)
    straight.run(tmp_path / "a")
    first = Trainer(cfg, sampler=straight.sampler)
    first.run(tmp_path / "b", until=2)
    ckpt = load_training_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] == 2
    resumed = Trainer(cfg, sampler=straight.sampler)
    resumed.load_state(ckpt)
    resumed.run(tmp_path / "b")
    assert resumed.step == straight.step == 3
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the steps really changed the weights (the comparison can fail)
    assert not all(torch.equal(a[k], first.student.state_dict()[k]) for k in a)


def test_training_form_fuses_exactly_after_training(hr_folder):
    tr = Trainer(_cfg(hr_folder, steps=5))
    tr.run(hr_folder.parent / "run")
    deploy = tr.deploy_model()
    x = torch.rand(2, 3, 20, 28)
    tr.student.eval()
    with torch.no_grad():
        assert (tr.student(x) - deploy(x)).abs().max() < 1e-5
    assert sum(p.numel() for p in deploy.parameters()) == 93_664


def test_pruning_schedule_and_shape():
    assert pruning_schedule(24, 0.5, 3) == [20, 16, 12]
    torch.manual_seed(0)
    net = create_model("dipnet_lite", 2, pretrained=False)
    small = prune_dipnet(net, 16)
    assert small.arch["mid"] == 16 and small.block_1.c1_r.weight.shape == (16, 32, 3, 3)
    assert small(torch.rand(1, 3, 10, 10)).shape == (1, 3, 20, 20)
    # keeping every channel is the identity
    same = prune_dipnet(net, 24)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(same(x), net(x), atol=1e-6)


@pytest.mark.slow
def test_pruned_model_exports_with_parity(hr_folder, tmp_path):
    from srdeploy.export.exporter import ExportConfig, Exporter
    from srdeploy.train.cli import save_deploy_weights

    tr = Trainer(_cfg(hr_folder, steps=5))
    tr.run(tmp_path / "run")
    pruned, log = tr.prune(0.5, rounds=2, steps_per_round=3)
    assert [r["mid"] for r in log] == [18, 12]
    weights = tmp_path / "pruned.pth"
    save_deploy_weights(pruned, weights, {"note": "test"})
    loaded = create_model("dipnet_lite", 2, weights=str(weights))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    manifest = Exporter(ExportConfig(model="dipnet_lite", scale=2, weights=str(weights), size="64x64",
                                     out=str(tmp_path / "exp")), log=lambda m: None).run()
    assert manifest["status"] == "passed"
    assert all(a["parity"]["status"] == "passed" for a in manifest["artifacts"])


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        save_atomic({"x": Unpicklable()}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def _train_cli(*args, tmp_path):
    return run_cli("srdeploy.train.cli", *args, "--no-progress", cwd=tmp_path)


@pytest.mark.parametrize("case", ["no_images", "patch_too_large", "teacher_scale", "corrupt_resume", "ema",
                                  "warmup", "data_weights", "enhance_gt"])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, hr_folder):
    out = tmp_path / "out"
    evald = tmp_path / "eval"  # a separate evaluation folder (training on it is refused; tested below)
    evald.mkdir()
    write_image(evald / "e.png", synthetic_image(32, 32, seed=9))
    args = ["--data", str(hr_folder), "--teacher", "none", "--steps", "2", "--patch", "8", "--batch", "2",
            "--out", str(out), "--eval-data", str(evald)]
    if case == "no_images":
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "a.txt").write_text("x")
        (empty / "b.png").write_bytes(b"not a png")
        args[1] = str(empty)
        expect = "no usable images"
    elif case == "patch_too_large":
        args[args.index("--patch") + 1] = "64"
        expect = "smaller than the HR patch"
    elif case == "teacher_scale":
        args[args.index("--teacher") + 1] = "imdn"
        args += ["--teacher-scale", "4"]
        expect = "differs from the student"
    elif case == "ema":
        args += ["--ema", "1.5"]
        expect = "--ema must be in [0, 1)"
    elif case == "warmup":
        args += ["--warmup", "-5"]
        expect = "--warmup must be >= 0"
    elif case == "data_weights":
        args += ["--data-weights", "1", "2"]
        expect = "--data-weights has 2 values for 1 --data folders"
    elif case == "enhance_gt":
        args += ["--enhance-gt"]
        expect = "--enhance-gt needs a teacher"
    else:
        bad = tmp_path / "last.pt"
        bad.write_bytes(b"\x00garbage" * 10)
        args += ["--resume", str(bad)]
        expect = "cannot read resume checkpoint"
    proc = _train_cli(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sr-train: error:") and expect in lines[0], proc.stderr
    assert not out.exists()


def test_training_on_the_evaluation_set_is_refused(tmp_path, hr_folder):
    proc = _train_cli("--data", str(hr_folder), "--eval-data", str(hr_folder), "--teacher", "none",
                      "--out", str(tmp_path / "o"), tmp_path=tmp_path)
    assert proc.returncode == 2 and "evaluation set" in proc.stderr


def test_cli_trains_and_writes_loadable_weights(tmp_path, hr_folder):
    evald = tmp_path / "eval"
    evald.mkdir()
    write_image(evald / "e.png", synthetic_image(40, 48, seed=5))
    out = tmp_path / "run"
    proc = _train_cli("--data", str(hr_folder), "--eval-data", str(evald), "--teacher", "none", "--steps", "4",
                      "--patch", "8", "--batch", "2", "--eval-every", "2", "--out", str(out), "--json",
                      tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["steps"] == 4 and [h["step"] for h in report["history"]] == [2, 4]
    assert np.isfinite(report["set5_psnr_y"])
    net = create_model("dipnet_lite", 2, weights=report["weights"])
    assert sum(p.numel() for p in net.parameters()) == 93_664
    assert sorted(p.name for p in out.iterdir()) == ["dipnet_lite_x2.pth", "last.pt", "train_report.json"]
    # the checkpoint trains on: resume to 6 steps
    proc = _train_cli("--data", str(hr_folder), "--eval-data", str(evald), "--teacher", "none", "--steps", "6",
                      "--patch", "8", "--batch", "2", "--eval-every", "2", "--out", str(out),
                      "--resume", str(out / "last.pt"), "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"] == 6


def test_fine_tune_starts_from_deploy_weights(hr_folder, tmp_path):
    from srdeploy.train.cli import save_deploy_weights

    first = Trainer(_cfg(hr_folder, steps=3))
    first.run(tmp_path / "a")
    weights = tmp_path / "w.pth"
    save_deploy_weights(first.deploy_model(), weights, {})
    second = Trainer(_cfg(hr_folder, steps=3, init_weights=str(weights)))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        second.student.eval()
        assert (second.student(x) - first.deploy_model()(x)).abs().max() < 1e-5


def test_a_network_without_a_training_form_trains_as_it_deploys(hr_folder, tmp_path):
    """IMDN_RTC's ReLU variant has no re-parameterizable form: sr-train fine-tunes its deploy form, starting
    from the original's weights (the same keys; only the activation differs), and the loss goes down."""
    from srdeploy.train.cli import save_deploy_weights

    torch.manual_seed(0)
    original = create_model("imdn_rtc", 2, pretrained=False)
    weights = tmp_path / "rtc.pth"
    save_deploy_weights(original, weights, {})
    tr = Trainer(_cfg(hr_folder, model="imdn_rtc_relu", init_weights=str(weights), steps=30, lr=3e-3))
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in tr.student.modules())
    assert all(torch.equal(a, b) for a, b in zip(tr.student.state_dict().values(), original.state_dict().values()))
    lr, hr = tr.sampler.batch(8, step_rng(99, 0))
    before = _held_out_loss(tr, lr, hr)
    tr.run(tmp_path / "run")
    assert _held_out_loss(tr, lr, hr) < 0.9 * before
    assert type(tr.deploy_model()) is type(original)
    with pytest.raises(SrDeployError, match="--init interp"):  # the bilinear start is DIPNet's
        Trainer(_cfg(hr_folder, model="imdn_rtc_relu"))


def test_distillation_only_inputs_never_reach_the_hr_loss(hr_folder, tmp_path, weights_root):
    """--distill-data images join each batch as teacher-only inputs: the HR part of the batch is the
    one a run without them draws, and the HR loss is computed on that part only."""
    extra = tmp_path / "extra"
    extra.mkdir()
    for i in range(2):
        write_image(extra / f"photo{i}.jpg", synthetic_image(80, 80, seed=20 + i))
    plain = Trainer(_cfg(hr_folder, teacher="imdn", batch=4))
    mixed = Trainer(_cfg(hr_folder, teacher="imdn", batch=4, distill_data=[str(extra)], distill_frac=0.5))
    assert mixed.split_batch() == (2, 2) and plain.split_batch() == (4, 0)
    seen = {}
    real_loss = mixed.loss

    def spy(model, lr, hr, with_features=True):
        seen["lr"], seen["hr"] = lr, hr
        return real_loss(model, lr, hr, with_features)

    mixed.loss = spy
    rec = mixed.train_step(mixed.student, mixed.opt, 0, 10)
    assert seen["lr"].shape[0] == 4 and seen["hr"].shape[0] == 2
    lr_hr, hr_hr = plain.sampler.batch(2, step_rng(0, 0))
    assert torch.equal(seen["lr"][:2], lr_hr) and torch.equal(seen["hr"], hr_hr)
    assert not torch.equal(seen["lr"][2:], lr_hr)  # the extra half really comes from the other folder
    assert {"hr", "out", "feat"} <= set(rec)
    with pytest.raises(Exception, match="needs a teacher"):
        TrainConfig(model="dipnet_lite", data=[str(hr_folder)], teacher=None, distill_data=[str(extra)])


def test_weight_average_resumes_exactly_and_is_what_gets_deployed(hr_folder, tmp_path):
    cfg = _cfg(hr_folder, teacher=None, steps=3, ema=0.5)
    straight = Trainer(cfg)
    straight.run(tmp_path / "a")
    first = Trainer(cfg, sampler=straight.sampler)
    first.run(tmp_path / "b", until=2)
    resumed = Trainer(cfg, sampler=straight.sampler)
    resumed.load_state(load_training_checkpoint(tmp_path / "b" / "last.pt"))
    resumed.run(tmp_path / "b")
    a, b = straight.ema_model.state_dict(), resumed.ema_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the average lags the raw weights, and the deployed model is the average, fused exactly
    raw, avg = straight.student.state_dict(), straight.ema_model.module.state_dict()
    assert not all(torch.equal(raw[k], avg[k]) for k in raw)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(straight.deploy_model()(x), straight.ema_model.module.eval()(x),
                                   atol=1e-5, rtol=1e-5)
    # a checkpoint made without averaging cannot be resumed with it
    plain = Trainer(_cfg(hr_folder, teacher=None, steps=1))
    plain.run(tmp_path / "c")
    with pytest.raises(SrDeployError, match="ema"):
        Trainer(cfg, sampler=straight.sampler).load_state(load_training_checkpoint(tmp_path / "c" / "last.pt"))


def test_warmup_ramps_the_rate_then_follows_the_cosine():
    from srdeploy.train.trainer import cosine_lr

    plain = [cosine_lr(1e-3, k, 100, 0.01) for k in range(100)]
    warm = [cosine_lr(1e-3, k, 100, 0.01, warmup=10) for k in range(100)]
    assert warm[0] == pytest.approx(plain[0] / 10) and warm[4] == pytest.approx(plain[4] / 2)
    assert all(a < b for a, b in zip(warm[:9], warm[1:10]))  # rising through the warm-up
    assert warm[9:] == plain[9:]  # then exactly the schedule without it
    assert cosine_lr(1e-3, 0, 100, 0.01, warmup=0) == plain[0]


def test_mse_pixel_loss_is_used_for_hr_and_teacher_terms(hr_folder, weights_root):
    tr = Trainer(_cfg(hr_folder, teacher="imdn", pixel_loss="mse", w_feat=0))
    lr, hr = tr.sampler.batch(2, step_rng(0, 0))
    with torch.no_grad():
        _, parts = tr.loss(tr.student, lr, hr)
        sr, t_sr = tr.student(lr), tr.teacher(lr)
    assert parts["hr"] == pytest.approx(float(torch.nn.functional.mse_loss(sr, hr)), rel=1e-5)
    assert parts["out"] == pytest.approx(float(torch.nn.functional.mse_loss(sr, t_sr)), rel=1e-5)
    assert "feat" not in parts
    l1 = Trainer(_cfg(hr_folder, teacher="imdn", w_feat=0), sampler=tr.sampler)
    l1.student.load_state_dict(tr.student.state_dict())
    with torch.no_grad():
        assert l1.loss(l1.student, lr, hr)[1]["hr"] == pytest.approx(float(torch.nn.functional.l1_loss(sr, hr)), rel=1e-5)
    # MSE training still lowers the held-out squared error
    held_lr, held_hr = tr.sampler.batch(8, step_rng(123, 0))
    before = _held_out_loss(tr, held_lr, held_hr, torch.nn.functional.mse_loss)
    for k in range(30):
        tr.train_step(tr.student, tr.opt, k, 30)
    assert _held_out_loss(tr, held_lr, held_hr, torch.nn.functional.mse_loss) < before
    with pytest.raises(SrDeployError, match="pixel-loss"):
        _cfg(hr_folder, pixel_loss="l3")


def test_resume_refuses_a_different_pixel_loss(hr_folder, tmp_path):
    first = Trainer(_cfg(hr_folder, steps=1))
    first.run(tmp_path / "a")
    with pytest.raises(SrDeployError, match="pixel_loss"):
        Trainer(_cfg(hr_folder, steps=2, pixel_loss="mse"), sampler=first.sampler).load_state(
            load_training_checkpoint(tmp_path / "a" / "last.pt"))


def test_average_writes_the_mean_of_runs_and_refuses_mixed_shapes(tmp_path, monkeypatch):
    """sr-train --average: the uniform weight average of deploy-form files ("model soup"); it trains
    nothing, so it needs no training data."""
    import json

    monkeypatch.setenv("SRDEPLOY_DATA", str(tmp_path / "no-data-here"))

    from srdeploy.train.cli import save_deploy_weights

    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = create_model("dipnet_lite", 2, pretrained=False)
        files.append(tmp_path / f"run{seed}.pth")
        save_deploy_weights(net, files[-1], {})
    evald = tmp_path / "eval"
    evald.mkdir()
    write_image(evald / "e.png", synthetic_image(40, 48, seed=5))
    out = tmp_path / "soup"
    proc = _train_cli("--average", *map(str, files), "--eval-data", str(evald), "--out", str(out), "--json",
                      tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert np.isfinite(report["set5_psnr_y"]) and report["averaged"] == [str(f) for f in files]
    a, b = (torch.load(f, weights_only=True)["state_dict"] for f in files)
    soup = create_model("dipnet_lite", 2, weights=report["weights"]).state_dict()
    assert all(torch.allclose(soup[k], (a[k] + b[k]) / 2) for k in a)
    assert not torch.equal(soup["conv_1.weight"], a["conv_1.weight"])
    # a pruned run has other shapes; a single file is no average: one line, exit 2, nothing written
    pruned = tmp_path / "pruned.pth"
    save_deploy_weights(prune_dipnet(create_model("dipnet_lite", 2, pretrained=False), 16), pruned, {})
    for args, expect in (([str(files[0]), str(pruned)], "only runs of one architecture"),
                         ([str(files[0])], "at least two")):
        bad_out = tmp_path / "bad"
        proc = _train_cli("--average", *args, "--eval-data", str(evald), "--out", str(bad_out), tmp_path=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expect in lines[0], proc.stderr
        assert not bad_out.exists()


# -- several folders, the pair cache, evaluation images by content, enhanced ground truth (issue 21) --

def _folder(root, name, n, seed0, h=80, w=96):
    d = root / name
    d.mkdir()
    for i in range(n):
        write_image(d / f"{name}{i}.png", synthetic_image(h, w, seed=seed0 + i))
    return d


def test_several_folders_are_sampled_with_their_weights(tmp_path):
    a, b = _folder(tmp_path, "a", 2, 0), _folder(tmp_path, "b", 6, 10)
    by_image = PatchSampler.from_folders([a, b], scale=2, patch=8)
    assert by_image.describe()["images_per_folder"] == [2, 6] and by_image.folder_weights is None
    weighted = PatchSampler.from_folders([a, b], scale=2, patch=8, weights=[3, 1])
    assert weighted.folder_weights == [0.75, 0.25]

    def share_of_a(sampler):
        rng = np.random.default_rng(0)
        draws = [sampler.folder_of[sampler._draw(rng)] for _ in range(4000)]
        return draws.count(0) / len(draws)

    assert abs(share_of_a(by_image) - 2 / 8) < 0.03  # by image: folder a holds 2 of 8 images
    assert abs(share_of_a(weighted) - 0.75) < 0.03  # by folder: 3:1, whatever the folders' sizes
    with pytest.raises(SrDeployError, match="positive"):
        PatchSampler.from_folders([a, b], scale=2, patch=8, weights=[1, 0])


def test_the_pair_cache_serves_pairs_and_a_changed_file_is_recomputed(tmp_path, monkeypatch):
    d = _folder(tmp_path, "hr", 3, 0)
    cache = tmp_path / "cache"
    first = PatchSampler.from_folders([d], scale=2, patch=8, cache=cache)
    assert (first.cache_hits, first.cache_misses) == (0, 3)
    second = PatchSampler.from_folders([d], scale=2, patch=8, cache=cache)
    assert (second.cache_hits, second.cache_misses) == (3, 0)
    assert isinstance(second.images[0][0], np.memmap)  # memory-mapped, not decoded again
    for (lr1, hr1), (lr2, hr2) in zip(first.images, second.images):
        assert np.array_equal(lr1, lr2) and np.array_equal(hr1, hr2)
    # the same file name with other pixels: a new entry, the new image's pair
    write_image(d / "hr1.png", synthetic_image(80, 96, seed=99))
    third = PatchSampler.from_folders([d], scale=2, patch=8, cache=cache)
    assert (third.cache_hits, third.cache_misses) == (2, 1)
    fresh = PatchSampler.from_folders([d], scale=2, patch=8)  # no cache at all
    for (lr1, hr1), (lr2, hr2) in zip(third.images, fresh.images):
        assert np.array_equal(lr1, lr2) and np.array_equal(hr1, hr2)
    # a damaged entry is rebuilt, never trusted
    victim = next(cache.rglob("lr.npy"))
    victim.write_bytes(victim.read_bytes()[:40])
    fourth = PatchSampler.from_folders([d], scale=2, patch=8, cache=cache)
    assert fourth.cache_misses == 1
    for (lr1, hr1), (lr2, hr2) in zip(fourth.images, fresh.images):
        assert np.array_equal(lr1, lr2) and np.array_equal(hr1, hr2)


def test_a_copy_of_an_evaluation_image_is_refused_by_its_pixels(tmp_path):
    import cv2

    evald = _folder(tmp_path, "eval", 2, 50)
    train = _folder(tmp_path, "train", 2, 0)
    # the evaluation image re-encoded losslessly under another name and format
    img = cv2.imread(str(evald / "eval1.png"))
    cv2.imwrite(str(train / "harmless.bmp"), img)
    out = tmp_path / "out"
    proc = _train_cli("--data", str(train), "--eval-data", str(evald), "--teacher", "none", "--steps", "2",
                      "--patch", "8", "--batch", "2", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "harmless.bmp" in lines[0] and "eval1.png" in lines[0], proc.stderr
    assert not out.exists()
    (train / "harmless.bmp").unlink()
    proc = _train_cli("--data", str(train), "--eval-data", str(evald), "--teacher", "none", "--steps", "2",
                      "--patch", "8", "--batch", "2", "--out", str(out), "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["data"]["cache_misses"] == 2 and str(tmp_path / "xdg") in report["data"]["pair_cache"]
    assert report["history"][-1]["patches_per_s"] > 0


def test_refusal_covers_the_real_set5_under_another_name(tmp_path, data_root):
    import shutil

    train = _folder(tmp_path, "train", 1, 0)
    src = sorted((data_root / "Set5" / "HR").iterdir())[0]
    shutil.copy(src, train / "photo.png")
    with pytest.raises(SrDeployError, match=f"photo.png.*{src.name}"):
        Trainer(_cfg(train, refuse=[str(data_root / "Set5")]))


def test_enhanced_ground_truth_is_the_teachers_and_is_cached_per_teacher(tmp_path, weights_root):
    from srdeploy.resize import imresize
    from srdeploy.train.pairs import PairCache

    d = _folder(tmp_path, "hr", 1, 0, h=64, w=72)
    cfg = _cfg(d, teacher="imdn", enhance_gt=True, cache=str(tmp_path / "cache"), patch=8)
    tr = Trainer(cfg)
    (lr, ehr), = tr.sampler.images
    plain = PatchSampler.from_folders([d], scale=2, patch=8).images[0][1]
    assert ehr.shape == plain.shape and not np.array_equal(ehr, plain)
    # what it is: the teacher's x2 of the HR, MATLAB-bicubic-downscaled back (tiles blended away)
    with torch.no_grad():
        up = tr.teacher(torch.from_numpy(np.asarray(plain, np.float32) / 255).permute(2, 0, 1)[None])
    ref = imresize(up[0].permute(1, 2, 0).clamp(0, 1).double().numpy() * 255, 0.5)
    assert np.abs(ehr.astype(float) - np.clip(np.round(ref), 0, 255)).max() <= 1
    # cached: the second trainer reads it; another teacher tag computes its own
    again = Trainer(cfg)
    assert again.sampler.cache_hits == 1 and np.array_equal(again.sampler.images[0][1], ehr)
    calls = []
    other = PairCache(tmp_path / "cache").pair(d / "hr0.png", 2, 16, ("other", lambda hr: calls.append(1) or hr.copy()))
    assert calls == [1] and np.array_equal(other.hr, plain)
