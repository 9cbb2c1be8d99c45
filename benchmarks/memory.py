"""Peak memory (RSS) of a streamed sweep as it grows: 2^20 vs 2^24 trajectories.

Each size runs in a fresh process (so peak RSS is its own): the neuron workload (fixed batch
of 64 normal points, 8 SGD steps) written to a netCDF file. Prints peak RSS, wall time and
the ratio. Usage: python benchmarks/memory.py [--sizes 20 24] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, sys, time, sweep
k = int(sys.argv[1]); out = sys.argv[2]
side = 2 ** (k // 2); other = 2 ** (k - k // 2)
spec = {"problem": {"name": "neuron", "data": {"dist": "normal", "n": 64}},
        "train": {"steps": 8, "lr": 0.1}, "run": {"early_exit": False},
        "axes": {"w0": {"linspace": [-3, 3, side]}, "b0": {"linspace": [-3, 3, other]}}}
t = time.perf_counter()
ds = sweep.run(spec, out=out, progress=False)
wall = time.perf_counter() - t
n = ds.sizes["w0"] * ds.sizes["b0"]
ds.close()
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, wall, ds.attrs.get("chunk_size"))
"""


def measure(k: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", CHILD, str(k), os.path.join(d, "r.nc")], capture_output=True,
                           text=True, check=True)
        n, rss, wall, chunk = r.stdout.split()
        size = os.path.getsize(os.path.join(d, "r.nc"))
    return {"log2_trajectories": k, "trajectories": int(n), "peak_rss_bytes": int(rss), "wall_s": float(wall),
            "file_bytes": size, "chunk_size": float(chunk)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 24])
    p.add_argument("--json")
    args = p.parse_args()
    rows = [measure(k) for k in args.sizes]
    print(f"{'trajectories':>14} {'peak RSS':>10} {'wall s':>8} {'file':>10}")
    for r in rows:
        print(f"{r['trajectories']:>14,} {r['peak_rss_bytes'] / 2**20:>8.0f} MiB {r['wall_s']:>8.1f} "
              f"{r['file_bytes'] / 2**20:>7.1f} MiB")
    if len(rows) > 1:
        print(f"RSS ratio largest/smallest: {rows[-1]['peak_rss_bytes'] / rows[0]['peak_rss_bytes']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
