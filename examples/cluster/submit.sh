#!/bin/bash
# Queue the shards (a SLURM array) and a merge job that starts when every shard has succeeded.
#   SPEC=experiments/big.toml PARTS=parts/big OUT=results/big.nc examples/cluster/submit.sh
# (paths are relative to where you submit; logs go to ./logs)
set -euo pipefail
export SPEC=${SPEC:-experiments/quickstart.toml} PARTS=${PARTS:-parts/quickstart} OUT=${OUT:-results/quickstart.nc}
mkdir -p logs
here=$(dirname "$0")
jid=$(sbatch --parsable --export=ALL "$here/array.sbatch")
sbatch --parsable --export=ALL --dependency=afterok:"${jid%%;*}" "$here/merge.sbatch"
