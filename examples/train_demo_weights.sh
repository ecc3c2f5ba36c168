#!/usr/bin/env bash
# Reproduce weights/medm2g-demo: phantom cohort -> prepare -> small preset through all four stages (CPU).
# Usage: bash examples/train_demo_weights.sh [OUT_MODEL_DIR]   (run from the repository root; `make weights`)
# Training seeds are 1000 (data) and 0 (model); `medm2g demo` draws its held-out subjects from other seeds.
set -euo pipefail
OUT=${1:-weights/medm2g-demo}
WORK=${WORK:-demo-data}
MEDM2G=${MEDM2G:-$([ -x .venv/bin/medm2g ] && echo .venv/bin/medm2g || echo medm2g)}
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
AE_STEPS=${AE_STEPS:-500}
ALIGN_STEPS=${ALIGN_STEPS:-200}
DIFF_STEPS=${DIFF_STEPS:-1000}
HIRES_STEPS=${HIRES_STEPS:-400}
TEXTVAE_STEPS=${TEXTVAE_STEPS:-1200}
REPORT_STEPS=${REPORT_STEPS:-2000}
FLOW_STEPS=${FLOW_STEPS:-100}
BRAINVAE_STEPS=${BRAINVAE_STEPS:-800}
CTVAE_STEPS=${CTVAE_STEPS:-1000}
CTALL_STEPS=${CTALL_STEPS:-1500}
DECODER_STEPS=${DECODER_STEPS:-800}
CTV_STEPS=${CTV_STEPS:-3000}
PDV_STEPS=${PDV_STEPS:-3000}
BRAIN_STEPS=${BRAIN_STEPS:-1500}
CHEST_STEPS=${CHEST_STEPS:-1800}
# The recipes (examples/demo_weights/: base.yaml plus one file per stage, joined by `extends:`), with
# their data paths pointed at $WORK; copied together so that each file's `extends:` still resolves.
CFG="$WORK/demo_weights"
mkdir -p "$CFG"
for f in examples/demo_weights/*.yaml; do sed -e "s#demo-data/#$WORK/#g" "$f" > "$CFG/$(basename "$f")"; done
start=$(date +%s)
[ -f "$WORK/brain/dataset.json" ] || {
  $MEDM2G phantom brain -o "$WORK/brain-raw" --subjects 24 --layout plain --seed 1000 --overwrite
  $MEDM2G prepare phantom "$WORK/brain-raw" -o "$WORK/brain" --size 64 --slices 32 --overwrite
}
[ -f "$WORK/chest/dataset.json" ] || {
  $MEDM2G phantom chest -o "$WORK/chest-raw" --n 600 --size 256 --layout plain --seed 1000 --overwrite
  $MEDM2G prepare phantom "$WORK/chest-raw" -o "$WORK/chest" --size 64 --overwrite
}
run() { # name config stage steps init-args...
  local name=$1 cfg=$2 stage=$3 steps=$4; shift 4
  if [ -f "$WORK/run-$name/model/medm2g.json" ]; then echo "stage $name already done"; return; fi
  local resume=()
  [ -d "$WORK/run-$name" ] && resume=(--resume)
  $MEDM2G pretrain --config "$cfg" --stages "$stage" --steps "$steps" -o "$WORK/run-$name" "${resume[@]}" "$@"
}
run autoencoders "$CFG/pretrain.yaml" autoencoders "$AE_STEPS" --preset small
run alignment "$CFG/pretrain.yaml" alignment "$ALIGN_STEPS" --init "$WORK/run-autoencoders/model"
run diffusion "$CFG/pretrain.yaml" diffusion "$DIFF_STEPS" --init "$WORK/run-alignment/model"
run multiflow "$CFG/pretrain.yaml" multiflow "$FLOW_STEPS" --init "$WORK/run-diffusion/model"
# the same cohorts at 128 px for the last stage
[ -f "$WORK/brain128/dataset.json" ] || $MEDM2G prepare phantom "$WORK/brain-raw" -o "$WORK/brain128" --size 128 --slices 32 --overwrite
[ -f "$WORK/chest128/dataset.json" ] || $MEDM2G prepare phantom "$WORK/chest-raw" -o "$WORK/chest128" --size 128 --overwrite
# 64 px loses the skull and sulci of a 2 mm head (a perfect 64 px model is 73 HU MAE off), so the
# image diffusers continue at 128 px: the UNets and autoencoders are convolutional.
run hires "$CFG/hires.yaml" diffusion "$HIRES_STEPS" --init "$WORK/run-multiflow/model"
run textvae "$CFG/text.yaml" autoencoders "$TEXTVAE_STEPS" --init "$WORK/run-hires/model"
# the X-ray encoder again, on the chest pairs alone: its pooled embedding conditions the report
# diffuser, and 200 mixed steps left it near chance (InfoNCE 2.45 for a chance level of 2.48)
run alignx "$CFG/text.yaml" alignment 800 --init "$WORK/run-textvae/model" --batch-size 32
run report "$CFG/text.yaml" diffusion "$REPORT_STEPS" --init "$WORK/run-alignx/model" --batch-size 32 --lr 3e-4
# Second round (examples/demo_weights/brain.yaml, chest.yaml). Brain: the CT and MRI
# autoencoders again on 64 px crops of the padded 128 px slices, then the T1 -> CT and T1 + T2 -> PD
# diffusers, one process each (1 thread each: they share the 2 cores). Chest: text -> X-ray and
# X-ray -> report again with the conditioners at prompt_scale sqrt(E). `weights merge` joins them.
run chest "$CFG/chest.yaml" diffusion "$CHEST_STEPS" --init "$WORK/run-report/model" &
chest_pid=$!
run brainvae "$CFG/brain.yaml" autoencoders "$BRAINVAE_STEPS" --init "$WORK/run-report/model"
wait $chest_pid
# The CT autoencoder alone for longer (cosine lr; the skull and scalp edges dominate its error) while
# the PD diffuser trains on the (now fixed) MRI latents; then the CT diffuser on the new CT latents.
run brainpd "$CFG/brain.yaml" diffusion "$BRAIN_STEPS" --init "$WORK/run-brainvae/model" --pairs "pd<t1+t2" &
pd_pid=$!
run brainctvae "$CFG/brainct_vae.yaml" autoencoders "$CTVAE_STEPS" --init "$WORK/run-brainvae/model"
run brainct "$CFG/brain.yaml" diffusion "$BRAIN_STEPS" --init "$WORK/run-brainctvae/model" --pairs "ct<t1"
wait $pd_pid
[ -f "$WORK/merged/medm2g.json" ] || $MEDM2G weights merge "$WORK/run-brainct/model" -o "$WORK/merged" \
  --take "unet_mri=$WORK/run-brainpd/model" --take "conditioner_mri=$WORK/run-brainpd/model" \
  --take "unet_xray=$WORK/run-chest/model" --take "conditioner_xray=$WORK/run-chest/model" \
  --take "unet_text=$WORK/run-chest/model" --take "conditioner_text=$WORK/run-chest/model"
# Last, the CT diffuser alone on every axial slice of the training heads (95 per subject, not the 32
# with the most brain: the skull cap and base were never seen), autoencoders unchanged.
[ -f "$WORK/brain128all/dataset.json" ] || $MEDM2G prepare phantom "$WORK/brain-raw" -o "$WORK/brain128all" --size 128 --slices 95 --overwrite
run ctdiffall "$CFG/brainall.yaml" diffusion "$CTALL_STEPS" --init "$WORK/merged" --lr 2e-4
# Round 3, on every slice as well. The CT and MRI decoders alone (encoders frozen: the latents and the
# diffusers stay valid): the autoencoders had only seen the 32 slices with the most brain and their
# round trip alone was above the global map's error. Then the CT diffuser fine-tuned into v-prediction.
run decoders "$CFG/decoders.yaml" autoencoders "$DECODER_STEPS" --init "$WORK/run-ctdiffall/model"
run ctv "$CFG/ctv.yaml" diffusion "$CTV_STEPS" --init "$WORK/run-decoders/model" --lr 3e-4
# Round 4 (issue 20): the PD diffuser fine-tuned into v-prediction the same way, so that a deterministic
# few-step solver keeps its quality (the epsilon branch needed 8 stochastic steps with guidance).
run pdv "$CFG/pdv.yaml" diffusion "$PDV_STEPS" --init "$WORK/run-ctv/model" --lr 3e-4
end=$(date +%s)
rm -rf "$OUT.tmp"
cp -r "$WORK/run-pdv/model" "$OUT.tmp"
[ -f "$OUT/README.md" ] && cp "$OUT/README.md" "$OUT.tmp/README.md"  # keep the model card
# the licence, intended use and recommended sampler settings (examples/demo_weights/card.json) go into medm2g.json
"$PY" -c 'import json, sys
card = {k: v for k, v in json.load(open(sys.argv[1])).items() if not k.startswith("_")}
meta = json.load(open(sys.argv[2])); meta.update(card)
open(sys.argv[2], "w").write(json.dumps(meta, indent=2) + "\n")' examples/demo_weights/card.json "$OUT.tmp/medm2g.json"
echo "{\"training_seconds\": $((end - start)), \"cpu_cores\": $(nproc)}" > "$WORK/training_time.json"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
# the training latents' statistics, for the applicability guard's latent distance check (records its sha256)
$MEDM2G weights calibrate "$OUT" --data "$WORK/brain128all"
$MEDM2G weights verify "$OUT"
echo "trained in $((end - start)) s -> $OUT"
