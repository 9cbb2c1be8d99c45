#!/usr/bin/env bash
# The engine's first run on an accelerator, in one command (at most ~9 minutes of device time: tests 150 s, throughput 360 s):
#   bash benchmarks/gpu.sh            # on the GPU machine, from the repository root
# 1. finds a Python whose JAX sees a GPU (the machine's own, e.g. /opt/torch/.venv/bin/python3, or
#    installs jax[cuda13] / jax[cuda12] with pip where a registry is reachable);
# 2. installs what sweep needs and the machine lacks, from wheels in .whl/ when there is no network
#    (make them here with: bash benchmarks/gpu_wheels.sh);
# 3. prints the device, runs the GPU-relevant tests (engine, physics, verdicts) and the throughput
#    workloads A, A-fresh, A-adam, B and C at accelerator sizes (engine and the textbook jit(vmap(scan))
#    program), and writes benchmarks/results-gpu.json, a RESULTS.md section (benchmarks/RESULTS-gpu.md)
#    and the log, under $OUT when it is set (the device tool's output folder).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-benchmarks}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1
t0=$(date +%s)

has_gpu() { "$1" -c "import jax, sys; sys.exit(0 if jax.default_backend() == 'gpu' else 1)" 2>/dev/null; }
PY=""
for cand in "${SWEEP_GPU_PYTHON:-}" /opt/torch/.venv/bin/python3 python3 python; do
  [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && has_gpu "$cand" && { PY="$cand"; break; }
done
if [ -z "$PY" ]; then
  echo "no Python with a GPU JAX found; trying pip install 'jax[cuda13]' (then cuda12)"
  PY=python3
  $PY -m pip install -q "jax[cuda13]" || $PY -m pip install -q "jax[cuda12]" || true
  has_gpu "$PY" || { echo "FAILED: JAX sees no GPU (jax.devices(): $($PY -c 'import jax; print(jax.devices())' 2>&1))"; exit 1; }
fi
echo "python: $PY ($($PY --version 2>&1))"
SITE=/tmp/sweep-site
missing=$($PY - <<'PY'
import importlib.util
need = {"optax": "optax", "xarray": "xarray", "netCDF4": "netCDF4", "cftime": "cftime", "tqdm": "tqdm",
        "matplotlib": "matplotlib", "pytest": "pytest"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "missing: $missing"
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  else
    $PY -m pip install -q --target "$SITE" $missing || echo "could not install: $missing (make .whl/ with benchmarks/gpu_wheels.sh)"
  fi
fi
export PYTHONPATH="$PWD:$SITE:${PYTHONPATH:-}"
export SWEEP_CACHE_DIR=/tmp/sweep-cache

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
$PY -c "import jax, jaxlib, sweep; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'backend', jax.default_backend()); print(jax.devices()); print('sweep', sweep.__version__, 'engine devices', len(sweep.engine.local_devices()))"

echo "== tests (GPU-relevant part)"
timeout 150 $PY -m pytest -q -x -p no:cacheprovider tests/test_engine.py tests/test_physics.py tests/test_verdicts.py \
  2>&1 | tail -15
echo "tests: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"

echo "== throughput at accelerator sizes"
timeout 360 $PY benchmarks/throughput.py --gpu --impl engine,jax-scan --json "$OUTDIR/results-gpu.json"
echo "throughput: exit $? after $(( $(date +%s) - t0 )) s"

$PY - "$OUTDIR/results-gpu.json" "$OUTDIR/RESULTS-gpu.md" <<'PY'
import json, sys
try:
    res = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("no results-gpu.json")
m = res["machine"]
lines = [f"## GPU run ({', '.join(m.get('devices', []))[:120]}; jax {m.get('jax')})", "",
         "| workload | implementation | trajectories | steps | traj-steps/s | / engine | compile s |", "|---|---|---|---|---|---|---|"]
for r in res["rows"]:
    if "skipped" in r:
        lines.append(f"| {r['workload']} | {r['label']} | | | skipped: {r['skipped']} | | |")
    else:
        lines.append(f"| {r['workload']} | {r['label']} | {r['n_traj']:,} | {r['steps']:,} | {r['traj_steps_per_s']:.3g} | "
                     f"{r.get('ratio_to_engine', float('nan')):.2f} | {r.get('compile_s', float('nan')):.2f} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "total $(( $(date +%s) - t0 )) s"
