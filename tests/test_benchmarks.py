"""Smoke test of ``benchmarks/throughput.py --quick`` (toy sizes): every workload and every
implementation runs, the baselines agree with each other (and on C with the engine), and the
JSON carries what RESULTS.md is made from. The benchmark runs in a subprocess, as a user runs it
(``import sweep`` must come before JAX starts, to give the CPU backend one device per core)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"A", "A-fresh", "A-adam", "B", "C"}
ALWAYS = ("engine", "jax-scan", "jax-naive", "jax-steploop", "numpy")  # torch, optuna: optional extras


@pytest.mark.slow
def test_quick_benchmark_covers_every_workload(tmp_path):
    out = tmp_path / "quick.json"
    env = {**os.environ, "SWEEP_CACHE_DIR": str(tmp_path / "cache")}  # leave the user's cache alone
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert {row["workload"] for row in rows} == WORKLOADS
    for name in WORKLOADS:
        by_impl = {row["impl"]: row for row in rows if row["workload"] == name}
        for impl in ALWAYS:
            assert "skipped" not in by_impl[impl], (name, by_impl[impl])
            assert by_impl[impl]["traj_steps_per_s"] > 0
        assert "engine-1dev" in by_impl  # measured, or skipped with the reason (one device, not CPU)
        assert res["agreement"][name]["ok"], (name, res["agreement"][name])
    c = {row["impl"]: row for row in rows if row["workload"] == "C" and "skipped" not in row}
    assert c["engine"]["n_traj"] == 256 and c["engine"]["steps"] == 100
    for row in c.values():  # hand-counted FLOPs: the FLOP/s fraction column is filled
        assert row["flops_per_traj_step"] == 541158 and row["flops_fraction"] > 0
    engine = res["agreement"]["C"]["engine"]
    assert engine["ok"] and engine["compared"] >= 1
