"""Settled trajectories stop costing compute: wall time with and without compaction.

Workload: bias-free ReLU neuron, fixed batch of 256 normal points, 2,000 GD steps, lr axis
(64 values, outer) x w0 axis (1,024 values in [-0.2, 3], inner): in every chunk ~94% of runs
converge within the first 10% of the steps and a few (w0 < 0) never settle, so a per-chunk
"all settled" exit saves nothing. Results must be identical. Usage: python benchmarks/compaction.py
"""
from __future__ import annotations

import time

import numpy as np

import sweep

SPEC = {"problem": {"name": "neuron", "bias": False, "data": {"dist": "normal", "n": 256}},
        "train": {"steps": 2000},
        "axes": {"lr": {"linspace": [0.3, 0.6, 64]}, "w0": {"linspace": [-0.2, 3.0, 1024]}}}


def main(repeats: int = 3) -> None:
    out = {}
    for compact in (False, True):
        spec = {**SPEC, "run": {"compact": compact}}
        sweep.run(spec, chunk_size=1024, progress=False)  # compile
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            ds = sweep.run(spec, chunk_size=1024, progress=False)
            times.append(time.perf_counter() - t)
        out[compact] = (min(times), ds)
    a, b = out[False][1], out[True][1]
    same = all(np.array_equal(a[k].values, b[k].values, equal_nan=True) for k in a.data_vars)
    early = float((a.stop_step < 200).mean())
    print(f"{a.outcome.size:,} trajectories x 2,000 steps; settled within the first 10% of steps: {early:.1%}")
    print(f"without compaction: {out[False][0]:.2f} s   with compaction: {out[True][0]:.2f} s   "
          f"speed-up {out[False][0] / out[True][0]:.1f}x   identical results: {same}")


if __name__ == "__main__":
    main()
