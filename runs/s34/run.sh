#!/usr/bin/env bash
set -euo pipefail
cd /work/main
date -u
sr-export --model imdn_rtc --size 256x256 --int8 --calib runs/s34/crops --qat-steps 30000 \
    --qat-job runs/s34/rtc.job.npz --out runs/s34/job_export --json > runs/s34/job_export.json 2> runs/s34/job_export.err
date -u
python -m srdeploy.quantize.qat_job runs/s34/rtc.job.npz --device cpu --lr 1e-4 --seconds 4500 \
    --out runs/s34/imdn_rtc_x2_varied.npz --json > runs/s34/qat.json 2> runs/s34/qat.log
date -u
