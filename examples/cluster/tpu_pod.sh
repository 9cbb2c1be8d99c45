#!/bin/bash
# One sweep on a Cloud TPU pod slice (e.g. v5litepod-32: 8 hosts x 4 chips), from your workstation.
# Every host runs the same command; jax.distributed.initialize() detects the pod by itself. OUT must be
# on storage every host sees (a Filestore or gcsfuse mount), here /mnt/shared.
#   TPU=my-pod ZONE=us-west4-a SPEC=experiments/big.toml OUT=/mnt/shared/big.nc ./tpu_pod.sh
set -euo pipefail
TPU=${TPU:-my-pod}
ZONE=${ZONE:-us-west4-a}
SPEC=${SPEC:-experiments/quickstart.toml}
OUT=${OUT:-/mnt/shared/quickstart.nc}
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all \
  --command "cd ~/sweep && sweep run $SPEC --out $OUT --distributed --progress"
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=0 \
  --command "cd ~/sweep && sweep merge ${OUT%.nc}.part*of*.nc -o $OUT"
