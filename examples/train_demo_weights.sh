#!/usr/bin/env bash
# Reproduce weights/medm2g-demo: phantom cohort -> prepare -> small preset through all four stages (CPU).
# Usage: bash examples/train_demo_weights.sh [OUT_MODEL_DIR]   (run from the repository root; `make weights`)
# Training seeds are 1000 (data) and 0 (model); `medm2g demo` draws its held-out subjects from other seeds.
set -euo pipefail
OUT=${1:-weights/medm2g-demo}
WORK=${WORK:-demo-data}
MEDM2G=${MEDM2G:-medm2g}
AE_STEPS=${AE_STEPS:-500}
ALIGN_STEPS=${ALIGN_STEPS:-200}
DIFF_STEPS=${DIFF_STEPS:-1500}
FLOW_STEPS=${FLOW_STEPS:-100}
CFG="$WORK/demo_weights.yaml"
mkdir -p "$WORK"
sed -e "s#demo-data/#$WORK/#g" examples/demo_weights.yaml > "$CFG"
start=$(date +%s)
[ -f "$WORK/brain/dataset.json" ] || {
  $MEDM2G phantom brain -o "$WORK/brain-raw" --subjects 24 --layout plain --seed 1000 --overwrite
  $MEDM2G prepare phantom "$WORK/brain-raw" -o "$WORK/brain" --size 64 --slices 32 --overwrite
}
[ -f "$WORK/chest/dataset.json" ] || {
  $MEDM2G phantom chest -o "$WORK/chest-raw" --n 600 --size 256 --layout plain --seed 1000 --overwrite
  $MEDM2G prepare phantom "$WORK/chest-raw" -o "$WORK/chest" --size 64 --overwrite
}
run() { # stage steps init-args...
  local stage=$1 steps=$2; shift 2
  if [ -f "$WORK/run-$stage/model/medm2g.json" ]; then echo "stage $stage already done"; return; fi
  local resume=()
  [ -d "$WORK/run-$stage" ] && resume=(--resume)
  $MEDM2G pretrain --config "$CFG" --stages "$stage" --steps "$steps" -o "$WORK/run-$stage" "${resume[@]}" "$@"
}
run autoencoders "$AE_STEPS" --preset small
run alignment "$ALIGN_STEPS" --init "$WORK/run-autoencoders/model"
run diffusion "$DIFF_STEPS" --init "$WORK/run-alignment/model"
run multiflow "$FLOW_STEPS" --init "$WORK/run-diffusion/model"
end=$(date +%s)
rm -rf "$OUT.tmp" && cp -r "$WORK/run-multiflow/model" "$OUT.tmp"
echo "{\"training_seconds\": $((end - start)), \"cpu_cores\": $(nproc)}" > "$WORK/training_time.json"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
$MEDM2G weights verify "$OUT" || true
echo "trained in $((end - start)) s -> $OUT"
