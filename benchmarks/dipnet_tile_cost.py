"""Is dipnet x4's FP32 'tiling cost' on Set14 the model (PyTorch in the same tile) or the conversion?
PyTorch FP32 of the official weights, whole image vs. the same image mirror-padded into one tile (srdeploy's tiler).

usage: python benchmarks/dipnet_tile_cost.py benchmarks/results/dipnet_x4_tile_cost_pytorch.json
(Set5/Set14 from SRDEPLOY_DATA; about 2 minutes at 2 threads)"""
import json, sys, time
from srdeploy.benchmark.evaluate import find_dataset, evaluate_dataset, make_predictor
from srdeploy.paths import data_dir

if len(sys.argv) != 2 or data_dir() is None:
    sys.exit("usage: python benchmarks/dipnet_tile_cost.py OUT.json (Set5/Set14 from SRDEPLOY_DATA)")
out = {}
for name in ("Set5", "Set14"):
    ds = find_dataset(data_dir() / name, 4)
    whole, _ = make_predictor("dipnet", 4)
    ref = evaluate_dataset(whole, ds, 4).psnr_y
    out[name] = {"whole_image": ref}
    for tile in ((256, 256), (720, 480)):
        t0 = time.time()
        pred, _ = make_predictor("dipnet", 4, tile=tile)
        r = evaluate_dataset(pred, ds, 4).psnr_y
        out[name][f"{tile[0]}x{tile[1]}"] = {"psnr_y": r, "drop_db": ref - r, "s": round(time.time() - t0, 1)}
        print(name, tile, f"drop {ref - r:.4f}", flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
