"""Per-channel spread of every conv output of a registry model on DIV2K crops (min/max, official weights):
how much more noise per-tensor int8 rounding puts on each tensor than per-channel would.
Usage: python benchmarks/int8_channel_spread.py imdn_rtc 2  (docs/RESULTS.md, equalization)."""
import sys, glob, numpy as np, torch, cv2
from srdeploy.models.registry import create_model
name, scale = sys.argv[1], int(sys.argv[2])
m = create_model(name, scale)
files = sorted(glob.glob('../shared/data/div2k/HR/*.png'))
rng = np.random.default_rng(0)
crops = []
for f in files:
    im = cv2.imread(f)[:, :, ::-1].astype(np.float32) / 255
    h, w = im.shape[:2]
    lr = cv2.resize(im, (w // scale, h // scale), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        y, x = rng.integers(0, lr.shape[0] - 96), rng.integers(0, lr.shape[1] - 96)
        crops.append(lr[y:y+96, x:x+96])
x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
stats = {}
def hook(name):
    def f(mod, inp, out):
        o = out.detach().permute(1, 0, 2, 3).reshape(out.shape[1], -1)
        stats[name] = (o.min(1).values.numpy(), o.max(1).values.numpy())
    return f
for n, mod in m.named_modules():
    if isinstance(mod, torch.nn.Conv2d):
        mod.register_forward_hook(hook(n))
with torch.no_grad():
    m(x)
for n, (lo, hi) in stats.items():
    r = np.maximum(hi, 0) - np.minimum(lo, 0)
    gain = (r.max() ** 2) / np.mean(r ** 2)
    print(f"{n:28s} C={len(r):3d} tensor range {r.max():7.2f}  channel range min {r.min():7.3f} median {np.median(r):6.2f}  per-tensor/ideal noise {10*np.log10(gain):5.1f} dB")
