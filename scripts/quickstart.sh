#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine with Python 3.11:
# set up, train a short Fashion-MNIST VAE, export it, draw samples from it.
# Rerunning resumes the run (and extends it if EPOCHS grows).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN_DIR="${RUN_DIR:-checkpoints/quickstart}"
EPOCHS="${EPOCHS:-5}"
# float32, mixed_bfloat16 (about 2x on CPUs with AVX512_BF16) or
# mixed_float16 (GPUs); the export computes in the matching dtype.
PRECISION="${PRECISION:-float32}"
echo "[quickstart] training ${EPOCHS} epochs into ${RUN_DIR} (${PRECISION})"
tfvae-train --dataset=fashion_mnist --model=vae --network=mlp --latent_dim=2 \
  --epochs="${EPOCHS}" --run_dir="${RUN_DIR}" --log_every_steps=300 \
  --precision="${PRECISION}"
EXPORT_DIR="${EXPORT_DIR:-exports/quickstart}"
echo "[quickstart] exporting the newest checkpoint to ${EXPORT_DIR}"
VERSION_DIR="$(tfvae-export --run_dir="${RUN_DIR}" --export_dir="${EXPORT_DIR}" \
  --dtype="${PRECISION#mixed_}")"
echo "[quickstart] generating from the export"
tfvae-generate --model="${EXPORT_DIR}" --num=64 --seed=0 \
  --out="${RUN_DIR}/pictures/exported_samples.png"
tfvae-generate --model="${EXPORT_DIR}" --z="3,3" \
  --out="${RUN_DIR}/pictures/z_3_3.png"
echo "[quickstart] done. Outputs:"
echo "  run directory:   ${RUN_DIR}  (layout: WORKSPACE.md)"
echo "  per-epoch stats: ${RUN_DIR}/metrics.jsonl"
tail -n 1 "${RUN_DIR}/metrics.jsonl"
echo "  pictures:        $(ls "${RUN_DIR}"/pictures/samples_epoch_*.png | tail -n 1)"
echo "  export:          ${VERSION_DIR}  (SavedModel; signatures: README)"
echo "  samples:         ${RUN_DIR}/pictures/exported_samples.png"
echo "  decoded z=[3,3]: ${RUN_DIR}/pictures/z_3_3.png"
echo "  TensorBoard:     tensorboard --logdir ${RUN_DIR}/summaries"
