#!/usr/bin/env bash
# Session 33 latency condition (runs/RULES_session33.md): one FP32 reference when the two exports' FP32 files are
# byte-identical, else each INT8 with its own FP32; one interleaved sr-bench, 16 rounds, one thread, one core.
set -euo pipefail
out=/work/main/runs/ship33
cd /work/main
if cmp -s /work/main/runs/ship32/new_256x256/model_fp32.tflite $out/new_256x256/model_fp32.tflite; then
  echo "FP32 files byte-identical: one FP32 reference"
  files="/work/main/runs/ship32/new_256x256/model_fp32.tflite /work/main/runs/ship32/new_256x256/model_int8.tflite $out/new_256x256/model_int8.tflite"
else
  echo "FP32 files differ: each INT8 against its own FP32"
  files="/work/main/runs/ship32/new_256x256/model_fp32.tflite /work/main/runs/ship32/new_256x256/model_int8.tflite $out/new_256x256/model_fp32.tflite $out/new_256x256/model_int8.tflite"
fi
date -u
OMP_NUM_THREADS=1 taskset -c 0 sr-bench $files --threads 1 --runs 16 --profile \
  --json benchmarks/results/int8_params/imdn_x4_conv_split_session33_latency.json > $out/bench.txt 2>&1
tail -8 $out/bench.txt
date -u
