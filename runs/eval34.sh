#!/usr/bin/env bash
# Session 34 evaluation under runs/RULES_session34.md: the candidate registered in a clone (file and sha256; the INT8
# graph's rewrites unchanged), the shipped file from this tree, the issue's command with no other flag, one thread
# each, the pair at each size at the same time; then the latency condition (one interleaved sr-bench on core 0).
set -euo pipefail
cand=${1:?candidate npz}
cd /work
rm -rf eval34 && git clone -q main eval34
cp "$cand" eval34/src/srdeploy/models/zoo/imdn_rtc_x2_int8.npz
new=$(sha256sum "$cand" | cut -d' ' -f1)
old=bfe437ee2f1ec0bf7ba3090f8ff31e79864bfc3ddf044b949c07acb867e62329
test "$(grep -c "\"imdn_rtc_x2_int8.npz\", \"$old\"," eval34/src/srdeploy/models/registry.py)" = 1
sed -i "s/\"imdn_rtc_x2_int8.npz\", \"$old\",/\"imdn_rtc_x2_int8.npz\", \"$new\",/" eval34/src/srdeploy/models/registry.py
grep -c "$new" eval34/src/srdeploy/models/registry.py
out=/work/main/runs/ship34
mkdir -p $out
ex() {  # tree, size, outname
  (cd /work/$1 && PYTHONPATH=/work/$1/src OMP_NUM_THREADS=1 sr-export --model imdn_rtc --size $2 --int8 \
     --calib ../shared/data/div2k/HR --quality --out $out/$3 --json > $out/$3.json 2> $out/$3.log)
}
PYTHONPATH=/work/eval34/src python -c "import srdeploy; print(srdeploy.__file__)"
date -u
for s in 64x64 256x256 720x480; do
  ex eval34 $s new_$s & ex main $s old_$s & wait
  date -u
done
for f in $out/*.json; do
  python -c "
import json,sys; d=json.load(open('$f')); q=d['quality']
a=[a for a in d['artifacts'] if a['precision']=='int8'][0]
print('$f'.split('/')[-1], 'int8 drop Set5 %.4f Set14 %.4f' % (q['Set5']['int8_tflite']['drop_db'], q['Set14']['int8_tflite']['drop_db']),
      'fp32 %.4f %.4f' % (q['Set5']['fp32_tflite']['drop_db'], q['Set14']['fp32_tflite']['drop_db']),
      a['quantization'].get('int8_params_choice'), a['quantization'].get('graph_rewrites'))"
done
cd /work/main
if cmp -s $out/old_720x480/model_fp32.tflite $out/new_720x480/model_fp32.tflite; then
  echo "FP32 files byte-identical: one FP32 reference"
  files="$out/old_720x480/model_fp32.tflite $out/old_720x480/model_int8.tflite $out/new_720x480/model_int8.tflite"
else
  echo "FP32 files differ: each INT8 with its own FP32"
  files="$out/old_720x480/model_fp32.tflite $out/old_720x480/model_int8.tflite $out/new_720x480/model_fp32.tflite $out/new_720x480/model_int8.tflite"
fi
OMP_NUM_THREADS=1 taskset -c 0 sr-bench $files --threads 1 --runs 24 \
  --json benchmarks/results/int8_params/imdn_rtc_varied_crops_session34_latency.json > $out/bench.txt 2>&1
tail -6 $out/bench.txt
date -u
