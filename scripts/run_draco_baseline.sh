#!/usr/bin/env bash
# Draco input-compression baseline, for one trunk:
#   1. the plain PointNet: the frozen trunk of our codec + a classifier trained on unquantized
#      features (no T-nets, no rate term), `train pointcloud --plain`;
#   2. export it to ONNX (points (B, N, 3) -> logits, any N);
#   3. `splitinfer baseline draco` on the ModelNet40 test set (real Draco bytes).
# Everything runs nice'd and single-threaded (a training job may share the machine).
#
# usage: scripts/run_draco_baseline.sh [--wait] [SIZE] [TRUNK_RUN]
#   defaults: full  runs/full-p1024-l4000   (micro: scripts/run_draco_baseline.sh micro runs/micro-p1024-l1000)
#   --wait: poll until TRUNK_RUN/best.pt exists and its log.jsonl has EPOCHS_DONE (4) lines.
# env: DATA (ModelNet40 folder, default ../shared/datasets/modelnet40), EPOCHS (40),
#      QBITS ("2 3 4 5 6 7 8 10 12"), OUT_ONNX, OUT_JSON, EPOCHS_DONE (4)
set -euo pipefail
cd "$(dirname "$0")/.."
WAIT=0
if [[ "${1:-}" == "--wait" ]]; then WAIT=1; shift; fi
SIZE=${1:-full}
TRUNK=${2:-runs/full-p1024-l4000}
DATA=${DATA:-../shared/datasets/modelnet40}
EPOCHS=${EPOCHS:-40}
QBITS=${QBITS:-"2 3 4 5 6 7 8 10 12"}
EPOCHS_DONE=${EPOCHS_DONE:-4}
RUN=runs/plain-${SIZE}-p1024
if [[ "$SIZE" == full ]]; then
  OUT_ONNX=${OUT_ONNX:-$RUN/plain.onnx}
  OUT_JSON=${OUT_JSON:-results/pointcloud/draco.json}
else
  OUT_ONNX=${OUT_ONNX:-$RUN/plain.onnx}
  OUT_JSON=${OUT_JSON:-$RUN/draco.json}
fi
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if (( WAIT )); then
  until [[ -f $TRUNK/best.pt && -f $TRUNK/log.jsonl && $(wc -l < $TRUNK/log.jsonl) -ge $EPOCHS_DONE ]]; do
    sleep 60
  done
  sleep 20  # let the last checkpoint write settle
fi
[[ -f $TRUNK/best.pt ]] || { echo "no trunk checkpoint $TRUNK/best.pt" >&2; exit 1; }

# The trunk's pooled features are cached privately ($RUN/features_p1024.pt), computed from
# $TRUNK/best.pt itself: a cache shared with the build's rate points could belong to another
# trunk (runs/full-p1024-l4000/features_p1024.pt links to the P=256 trunk's) or be half-written.
CACHE=$RUN/features_p1024.pt
mkdir -p "$RUN"
echo "plain PointNet: trunk $TRUNK, feature cache $CACHE" | tee -a "$RUN/run.log"
nice -n 10 "$PY" -m splitinfer.cli train pointcloud --size "$SIZE" --points 1024 --lmbda 1 --plain \
  --warm-start "$TRUNK/best.pt" --freeze-encoder --feature-cache "$CACHE" --epochs "$EPOCHS" \
  --out "$RUN" --threads 1 --data "$DATA" 2>&1 | grep --line-buffered -v "it/s" | tee -a "$RUN/run.log"

nice -n 10 "$PY" -m splitinfer.training.plain "$RUN/best.pt" "$OUT_ONNX" "$TRUNK/best.pt"

if [[ "$SIZE" == full ]]; then   # the shipped cloud-only model: models/plain-pointnet-p1024/1/
  "$PY" scripts/make_plain_model.py --onnx "$OUT_ONNX" --draco-json ""
  OUT_ONNX=models/plain-pointnet-p1024/1/model.onnx
fi
nice -n 10 "$PY" -m splitinfer.baselines.draco baseline draco --plain-model "$OUT_ONNX" \
  --data "$DATA/modelnet40_test.npz" --json "$OUT_JSON" --qbits $QBITS --threads 1 --quiet \
  | tee -a "$RUN/run.log"
