#!/usr/bin/env bash
# Stage 1 of the shipped point-cloud models: one end-to-end trained base per size and P.
# Every step resumes from its last.pt if interrupted. Wall times land in each run's log.jsonl.
set -euo pipefail
S="python -m splitinfer.cli train pointcloud --threads 2"
R=${RUNS:-runs}
$S --size micro --points 1024 --lmbda 1000 --epochs 60 --out $R/micro_p1024_l1000
$S --size lite  --points 1024 --lmbda 1000 --epochs 60 --out $R/lite_p1024_l1000
$S --size full  --points 256  --lmbda 4000 --epochs 20 --out $R/full_p256_l4000
$S --size full  --points 1024 --lmbda 4000 --epochs 4 --warm-start $R/full_p256_l4000/best.pt --out $R/full_p1024_l4000
