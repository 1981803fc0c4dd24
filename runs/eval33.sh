#!/usr/bin/env bash
# Session 33 evaluation under runs/RULES_session33.md: the candidate registered in a clone (file and sha256; the
# INT8 graph's rewrites unchanged), the shipped file from this tree, the issue's command with no other flag, one
# thread each, two at a time; the shipped file's 256/720 figures are session 32's (rule amendment, 16:40 UTC);
# the latency condition is runs/bench33.sh.
set -euo pipefail
cand=${1:?candidate npz}
cd /work
rm -rf eval33 && git clone -q main eval33
cp "$cand" eval33/src/srdeploy/models/zoo/imdn_x4_int8.npz
new=$(sha256sum "$cand" | cut -d' ' -f1)
old=05f7491f2f72c82dec1ad34324a22151d9b2a1c5d0a0acb19b3d5b0daea76ba4
test "$(grep -c "\"imdn_x4_int8.npz\", \"$old\"," eval33/src/srdeploy/models/registry.py)" = 1
sed -i "s/\"imdn_x4_int8.npz\", \"$old\",/\"imdn_x4_int8.npz\", \"$new\",/" eval33/src/srdeploy/models/registry.py
grep -c "$new" eval33/src/srdeploy/models/registry.py
out=/work/main/runs/ship33
mkdir -p $out
ex() {  # tree, size, outname
  (cd /work/$1 && PYTHONPATH=/work/$1/src OMP_NUM_THREADS=1 sr-export --model imdn --scale 4 --size $2 --int8 \
     --calib ../shared/data/div2k/HR --quality --out $out/$3 --json > $out/$3.json 2> $out/$3.log)
}
PYTHONPATH=/work/eval33/src python -c "import srdeploy; print(srdeploy.__file__)"
date -u
# the shipped file again at 64x64 only (must reproduce session 32's figures); its 256/720 figures are session 32's
ex eval33 64x64 new_64x64 & ex main 64x64 old_64x64 & wait
date -u
ex eval33 256x256 new_256x256 & ex eval33 720x480 new_720x480 & wait
date -u
for f in $out/*.json /work/main/runs/ship32/new_256x256.json /work/main/runs/ship32/new_720x480.json; do
  python -c "
import json,sys; d=json.load(open('$f')); q=d['quality']
a=[a for a in d['artifacts'] if a['precision']=='int8'][0]
print('$f'.split('/')[-1], 'int8 drop Set5 %.4f Set14 %.4f' % (q['Set5']['int8_tflite']['drop_db'], q['Set14']['int8_tflite']['drop_db']),
      'fp32 %.4f %.4f' % (q['Set5']['fp32_tflite']['drop_db'], q['Set14']['fp32_tflite']['drop_db']),
      a['quantization'].get('int8_params_choice'), a['quantization'].get('graph_rewrites'))"
done
