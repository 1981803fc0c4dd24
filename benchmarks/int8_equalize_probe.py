"""The PyTorch-side probe behind the equalization QAT candidates of docs/RESULTS.md (session 20): IMDN
distillation blocks' c1..cK outputs rescaled by s_c = (R_max / R_c)^alpha from p0.01..p99.99 spans on 32 DIV2K
crops (not powers of two; float function within ~2e-6), saved as a checkpoint for `sr-export --weights`.
The product's form is srdeploy.quantize.equalize (ONNX, powers of two, min/max with a cap).
Usage: python benchmarks/int8_equalize_probe.py imdn_rtc 2 0.25 runs/eq/rtc_a025.pth"""
import sys, torch
from srdeploy.models.registry import create_model
from srdeploy.models.imdn import DistillationBlock
from srdeploy.quantize.calibration import calibration_frames

def channel_ranges(model, x, modules, q=1e-4):
    out = {}
    hooks = []
    for name, mod in modules:
        def f(m, i, o, name=name):
            t = o.detach().permute(1, 0, 2, 3).reshape(o.shape[1], -1)
            idx = torch.randperm(t.shape[1], generator=torch.Generator().manual_seed(0))[:2_000_000]
            t = t[:, idx]
            lo = torch.quantile(t, q, dim=1).clamp(max=0); hi = torch.quantile(t, 1 - q, dim=1).clamp(min=0)
            out[name] = (hi - lo)
        hooks.append(mod.register_forward_hook(f))
    with torch.no_grad():
        model(x)
    for h in hooks: h.remove()
    return out

def equalize(model, x, alpha):
    blocks = [(n, b) for n, b in model.named_modules() if isinstance(b, DistillationBlock)]
    assert not any(hasattr(b, "cca") for _, b in blocks), "CCA not handled in probe"
    convs = [(f"{n}.c{k}", getattr(b, f"c{k}")) for n, b in blocks for k in range(1, b.n_convs + 1)]
    r = channel_ranges(model, x, convs)
    report = []
    for n, b in blocks:
        K, d = b.n_convs, b.distilled
        last = getattr(b, f"c{K+1}")
        for k in range(1, K + 1):
            prod = getattr(b, f"c{k}")
            rk = r[f"{n}.c{k}"].clamp(min=1e-6)
            s = (rk.max() / rk) ** alpha
            with torch.no_grad():
                prod.weight.mul_(s.view(-1, 1, 1, 1)); prod.bias.mul_(s)
                # concat slot of this conv's kept channels in c{K+1}'s input
                if k < K:
                    last.weight[:, (k - 1) * d:k * d].div_(s[:d].view(1, -1, 1, 1))
                    nxt = getattr(b, f"c{k+1}")
                    nxt.weight.div_(s[d:].view(1, -1, 1, 1))
                else:
                    last.weight[:, (k - 1) * d:].div_(s.view(1, -1, 1, 1))
            report.append(float(s.max()))
    return report

if __name__ == "__main__":
    name, scale, alpha, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    m = create_model(name, scale)
    cal = calibration_frames("../shared/data/div2k/HR", scale, (64, 64), n=32, seed=0)
    x = torch.from_numpy(cal.frames).permute(0, 3, 1, 2).contiguous()
    ref = create_model(name, scale)
    s = equalize(m, x, alpha)
    with torch.no_grad():
        t = torch.rand(2, 3, 48, 40)
        a, b = ref(t), m(t)
    print("max scale", max(s), "max |diff|", float((a - b).abs().max()))
    torch.save(m.state_dict(), out)
