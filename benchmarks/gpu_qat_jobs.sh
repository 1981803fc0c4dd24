#!/usr/bin/env bash
# Long QAT on a lent GPU, prepared as one script (issue 17, item 1). The GPU machine has PyTorch but no
# TensorFlow, so the converter's part runs here and only the fine-tuning runs there (srdeploy.quantize.qat_job).
#
#   1. here (CPU, ~2-4 min a model):  bash benchmarks/gpu_qat_jobs.sh prepare
#        -> runs/gpu/<name>.qatjob.npz for the issue's three models (the shipped files' recipes: imdn_rtc x2
#           at 720x480 on the slice-free INT8 graph, imdn x4 and dipnet x4 at 256x256), and .whl/ with
#           ai-edge-litert's cp312 wheel (its pure-Python flatbuffer schema is what the job needs there)
#   2. there, one device call:  run(command="bash benchmarks/gpu_qat_jobs.sh run 150",
#                                    carry=[".whl", "runs/gpu"], timeout_s=600)
#        -> every job for 150 s of steps (timed on a probe, so the step count fits the budget), results
#           $OUT/<name>.int8.npz and the log $OUT/gpu_qat.log (the last lines are in the call's output too)
#   3. here: sr-export --model M --scale S --size SIZE --int8 --calib ../shared/data/div2k/HR \
#              --int8-params <files_at>/<name>.int8.npz --quality   (the drop, measured by the converter's INT8)
#      and, for a file to ship, a rule written before step 2 (see runs/RULES_session*.md for the form).
#
# Options by environment: DEVICE (default cuda; cpu for a dry run here), JOBS (a name pattern, default all),
# BATCH / PATCH (default: the job's,
# 8 and 64 -- the recipe of every shipped file), STEPS (prepare: the job's nominal --qat-steps, default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
prepare)
  mkdir -p runs/gpu
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 -d .whl ai-edge-litert==2.3.0
  steps=${STEPS:-20000}
  cal=${SRDEPLOY_DATA:-../shared/data}/div2k/HR
  job() {  # name, then sr-export arguments
    local name=$1; shift
    sr-export "$@" --int8 --calib "$cal" --int8-params none --qat-steps "$steps" \
      --qat-job "runs/gpu/$name.qatjob.npz" --out "runs/gpu/export_$name" --json > "runs/gpu/export_$name.json"
  }
  job imdn_rtc_x2 --model imdn_rtc --size 720x480 --int8-rewrites split_mean,dcr,gelu,slice_conv,slice_select \
    --equalize off
  job imdn_x4 --model imdn --scale 4 --size 256x256 --equalize off
  job dipnet_x4 --model dipnet --scale 4 --size 256x256 --equalize off
  ls -la runs/gpu/*.qatjob.npz .whl/
  ;;
run)
  seconds=${2:?usage: gpu_qat_jobs.sh run SECONDS_PER_JOB}
  out=${OUT:-runs/gpu/out}
  mkdir -p "$out"
  if [ "${DEVICE:-cuda}" != cpu ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  extra=()
  [ -n "${BATCH:-}" ] && extra+=(--batch "$BATCH")
  [ -n "${PATCH:-}" ] && extra+=(--patch "$PATCH")
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$out/gpu_qat.log"
  for job in runs/gpu/${JOBS:-*}.qatjob.npz; do
    name=$(basename "$job" .qatjob.npz)
    echo "== $name $(date -u +%H:%M:%S)" | tee -a "$out/gpu_qat.log"
    python3 -m srdeploy.quantize.qat_job "$job" --out "$out/$name.int8.npz" --device "${DEVICE:-cuda}" \
      --seconds "$seconds" "${extra[@]}" --json 2>&1 | grep -v '^QAT:' | tee -a "$out/gpu_qat.log" || true
  done
  ;;
*)
  sed -n 2,23p "$0"; exit 2 ;;
esac
