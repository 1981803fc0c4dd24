#!/usr/bin/env bash
# Long QAT on a lent GPU, prepared as one script (issue 17, item 1). The GPU machine has PyTorch but no
# TensorFlow, so the converter's part runs here and only the fine-tuning runs there (srdeploy.quantize.qat_job).
#
#   1. here (CPU, ~3.5 min a model at one thread):  bash benchmarks/gpu_qat_jobs.sh prepare
#        -> runs/gpu/<name>.qatjob.npz for the issue's three models (the shipped files' recipes: imdn_rtc x2
#           at 720x480 on the slice-free INT8 graph, imdn x4 and dipnet x4 at 256x256; 29 MB together), and
#           .gpu_site/ with ai-edge-litert's pure-Python flatbuffer schema (what the job needs there)
#   2. there, one device call:  run(command="bash benchmarks/gpu_qat_jobs.sh run 150",
#                                    carry=[".gpu_site", "runs/gpu"], timeout_s=600)
#        -> every job for 150 s of steps (timed on a probe, so the step count fits the budget), results
#           $OUT/<name>.int8.npz and the log $OUT/gpu_qat.log (the last lines are in the call's output too)
#   3. here: sr-export --model M --scale S --size SIZE --int8 --calib ../shared/data/div2k/HR \
#              --int8-params <files_at>/<name>.int8.npz --quality   (the drop, measured by the converter's INT8)
#      and, for a file to ship, a rule written before step 2 (see runs/RULES_session*.md for the form).
#
# Options by environment: DEVICE (default cuda; cpu for a dry run here), JOBS (a name pattern, default all),
# BATCH / PATCH (default: the job's, 8 and 64 -- the recipe of every shipped file), LR (the schedule's peak rate,
# default the job's 3e-4), STEPS (prepare: the job's
# nominal --qat-steps, default 20000). Three jobs of 150 s fit one 10-minute call with the probes and start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
prepare)
  mkdir -p runs/gpu runs/gpu_exports
  # the job reads and writes TFLite flatbuffers with ai-edge-litert's schema: its pure-Python files (0.7 MB, copied
  # from the installed package; without libLiteRt.so its __init__ loads nothing native) instead of the 22 MB wheel,
  # so that the jobs, the wheel and the repository would not crowd the call's 64 MiB
  grep -qx '/.gpu_site/' .git/info/exclude 2>/dev/null || echo '/.gpu_site/' >> .git/info/exclude
  rm -rf .gpu_site && mkdir -p .gpu_site/ai_edge_litert/tools
  src=$(python3 -c 'import ai_edge_litert, os; print(os.path.dirname(ai_edge_litert.__file__))')
  cp "$src"/__init__.py "$src"/schema_py_generated.py .gpu_site/ai_edge_litert/
  cp "$src"/tools/__init__.py "$src"/tools/flatbuffer_utils.py "$src"/tools/mmap_utils.py .gpu_site/ai_edge_litert/tools/
  steps=${STEPS:-20000}
  cal=${SRDEPLOY_DATA:-../shared/data}/div2k/HR
  job() {  # name, then sr-export arguments
    local name=$1; shift
    sr-export "$@" --int8 --calib "$cal" --int8-params none --qat-steps "$steps" \
      --qat-job "runs/gpu/$name.qatjob.npz" --out "runs/gpu_exports/$name" --json > "runs/gpu_exports/$name.json"
  }
  job imdn_rtc_x2 --model imdn_rtc --size 720x480 --int8-rewrites split_mean,dcr,gelu,slice_conv,slice_select \
    --equalize off
  job imdn_x4 --model imdn --scale 4 --size 256x256 --equalize off
  job dipnet_x4 --model dipnet --scale 4 --size 256x256 --equalize off
  ls -la runs/gpu/*.qatjob.npz; du -sh .gpu_site
  ;;
run)
  seconds=${2:?usage: gpu_qat_jobs.sh run SECONDS_PER_JOB}
  out=${OUT:-runs/gpu/out}
  mkdir -p "$out"
  export PYTHONPATH="$PWD/.gpu_site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  extra=()
  [ -n "${BATCH:-}" ] && extra+=(--batch "$BATCH")
  [ -n "${PATCH:-}" ] && extra+=(--patch "$PATCH")
  [ -n "${LR:-}" ] && extra+=(--lr "$LR")
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
  sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
