#!/usr/bin/env bash
# Kodak evaluation of the learned image codecs + JPEG / WebP anchors, then the summary:
#   1. `eval image` for every image-compression model of the repository (static and, when the
#      model ships one, adaptive entropy coding; real container bytes, PSNR, MS-SSIM, times);
#   2. `baseline image` for JPEG and WebP (Pillow, quality sweep, real file bytes);
#   3. scripts/make_image_results.py: summary.json, table.md, rd_kodak.png, adaptive_savings.png.
# Runs nice'd and single-threaded (training jobs may share the machine).
#
# usage: scripts/run_image_eval.sh [--skip-baselines] [MODEL ...]   (default: all image models)
# env: DATA (default ../shared/datasets/kodak), MODELS (repository, default models),
#      OUT (default results/image), LIMIT (first N images), PY (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python
DATA=${DATA:-../shared/datasets/kodak}
MODELS=${MODELS:-models}
OUT=${OUT:-results/image}
BASELINES=1
if [[ "${1:-}" == "--skip-baselines" ]]; then BASELINES=0; shift; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUN=(nice -n 10 "$PY" -m splitinfer.image.cli)
LIM=()
[[ -n "${LIMIT:-}" ]] && LIM=(--limit "$LIMIT")
mkdir -p "$OUT"

if [[ $# -gt 0 ]]; then
  NAMES=("$@")
else
  mapfile -t NAMES < <("$PY" -c "
from splitinfer.repository import ModelRepository
for n in sorted({c.name for c in ModelRepository('$MODELS').list('image-compression')}):
    print(n)")
fi
[[ ${#NAMES[@]} -gt 0 ]] || echo "no image-compression models in $MODELS" >&2

for name in "${NAMES[@]}"; do
  echo "== eval image $name"
  "${RUN[@]}" eval image --model "$name" --models "$MODELS" --data "$DATA" \
      --json "$OUT/${name}_kodak.json" "${LIM[@]}"
done

if [[ $BASELINES == 1 ]]; then
  for codec in jpeg webp; do
    echo "== baseline image $codec"
    "${RUN[@]}" baseline image --codec "$codec" --data "$DATA" --json "$OUT/${codec}_kodak.json" "${LIM[@]}"
  done
fi

echo "== summary"
nice -n 10 "$PY" scripts/make_image_results.py --results "$OUT"
