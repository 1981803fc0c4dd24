#!/usr/bin/env bash
# Session 32 evaluation under runs/RULES_session32.md: the candidate registered in a clone (file, sha256 and its
# INT8 graph's rewrites), the shipped file from this tree, the issue's command with no other flag, one thread each,
# two at a time; then the latency condition (one interleaved sr-bench, 16 rounds).
set -euo pipefail
cand=${1:?candidate npz}
cd /work
rm -rf eval32 && git clone -q main eval32
cp "$cand" eval32/src/srdeploy/models/zoo/imdn_x4_int8.npz
new=$(sha256sum "$cand" | cut -d' ' -f1)
python - "$new" <<'PY'
import sys
p = "/work/eval32/src/srdeploy/models/registry.py"
s = open(p).read()
old = '"imdn_x4_int8.npz", "2eccea51fa9ce6679d6ea4ec546a529f00c94bb68737139b44b757ed012adbe5",'
assert s.count(old) == 1
s = s.replace(old, f'"imdn_x4_int8.npz", "{sys.argv[1]}",')
old = '"set5_drop_db_64x64": 0.114, "set14_drop_db_64x64": 0.085})},'
assert s.count(old) == 1
s = s.replace(old, '"set5_drop_db_64x64": 0.114, "set14_drop_db_64x64": 0.085},\n        rewrites=("split_mean", "dcr", "gelu", "conv_split"))},')
open(p, "w").write(s)
PY
grep -c "$new" eval32/src/srdeploy/models/registry.py
out=/work/main/runs/ship32
mkdir -p $out
ex() {  # tree, size, outname
  (cd /work/$1 && PYTHONPATH=/work/$1/src OMP_NUM_THREADS=1 sr-export --model imdn --scale 4 --size $2 --int8 \
     --calib ../shared/data/div2k/HR --quality --out $out/$3 --json > $out/$3.json 2> $out/$3.log)
}
PYTHONPATH=/work/eval32/src python -c "import srdeploy; print(srdeploy.__file__)"
date -u
ex eval32 64x64 new_64x64 & ex main 64x64 old_64x64 & wait
ex eval32 256x256 new_256x256 & ex main 256x256 old_256x256 & wait
# one at a time: two imdn x4 720x480 exports (11 GB each) beside CI ran out of memory (the first try, 13:42 UTC)
ex eval32 720x480 new_720x480; ex main 720x480 old_720x480
date -u
for f in $out/*.json; do
  python -c "
import json,sys; d=json.load(open('$f')); q=d['quality']
a=[a for a in d['artifacts'] if a['precision']=='int8'][0]
print('$f'.split('/')[-1], 'int8 drop Set5 %.4f Set14 %.4f' % (q['Set5']['int8_tflite']['drop_db'], q['Set14']['int8_tflite']['drop_db']),
      'fp32 %.4f %.4f' % (q['Set5']['fp32_tflite']['drop_db'], q['Set14']['fp32_tflite']['drop_db']),
      a['quantization'].get('int8_params_choice'), a['quantization'].get('graph_rewrites'))"
done
