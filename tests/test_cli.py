"""The command line: plan / dry run, every --help example, plot arguments, errors that name the path."""
import errno
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.cli import main

SMALL = {"problem": {"name": "neuron", "activation": "relu", "data": {"dist": "normal", "n": 16}},
         "train": {"steps": 40, "lr": 0.1},
         "axes": {"w0": {"linspace": [-3, 3, 5]}, "b0": {"linspace": [-3, 3, 3]}, "optimizer": ["sgd", "adam"]}}


def _toml(tmp_path, d=SMALL, name="spec.toml") -> Path:
    from sweep.config import dumps_toml

    p = tmp_path / name
    p.write_text(dumps_toml(d))
    return p


# ----------------------------------------------------------------------------- plan / --dry-run
def _grid_bytes(ds) -> int:
    return sum(ds[v].dtype.itemsize for v in ds.data_vars if ds[v].dims == ds.outcome.dims)


@pytest.mark.parametrize("spec", [SMALL, {"problem": {"name": "quartic"}, "outcome": {"sharpness_iters": 2},
                                          "train": {"steps": 10, "lr": 0.1, "lr_mode": "sharpness"},
                                          "axes": {"x0": [0.5, 1.0, 2.0]}}])
def test_plan_counts_and_the_output_size_are_the_run_s(spec, tmp_path):
    from sweep.api import plan_report

    r = plan_report(spec, out=tmp_path / "r.nc", chunk_size=4, probe=False)
    ds = sweep.run(spec, progress=False, chunk_size=4)
    n = int(np.prod(list(ds.outcome.shape)))
    assert r["n_trajectories"] == n and r["steps"] == spec["train"]["steps"]
    groups = len(spec["axes"].get("optimizer", [None]))
    assert r["compile_groups"] == groups and r["chunk"] == 4
    assert r["chunks"] == groups * math.ceil(n / groups / 4)
    assert r["bytes_per_trajectory"] == _grid_bytes(ds)  # exact here: every variable's dtype is known
    assert r["result_bytes"] == n * _grid_bytes(ds)
    assert r["fits"] and r["free_bytes"] > 0 and r["disk_dir"] == str(tmp_path)


def test_plan_probe_gives_an_eta(tmp_path, capsys):
    spec = _toml(tmp_path)
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "30 trajectories x 40 steps = 1,200 trajectory-steps" in out
    assert "2 compile group(s)" in out and "ETA: at most" in out and "probe: one chunk" in out
    assert main(["run", str(spec), "--dry-run"]) == 0  # the same, and nothing is written
    assert "ETA: at most" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["spec.toml"]


def test_plan_of_the_largest_sweep_states_its_size(tmp_path, capsys):
    """2^32 trajectories (the limit): ~160 GB of results, said before anything runs."""
    big = {**SMALL, "axes": {"w0": {"linspace": [-3, 3, 65536]}, "b0": {"linspace": [-3, 3, 65536]}}}
    from sweep.api import plan_report

    r = plan_report(big, out=tmp_path / "r.nc", probe=False)
    assert r["n_trajectories"] == 2 ** 32
    assert r["result_bytes"] == 2 ** 32 * r["bytes_per_trajectory"]
    assert 150e9 < r["result_bytes"] < 250e9


def test_a_run_that_does_not_fit_on_the_disk_is_refused_before_any_compute(tmp_path, monkeypatch, capsys):
    from sweep import engine

    real = shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(real(p).total, real(p).used, 1000))
    spec = _toml(tmp_path)
    traces = engine.TRACE_COUNT["n"]
    out = tmp_path / "new" / "r.nc"
    assert main(["run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    from sweep.api import plan_report

    per = plan_report(SMALL, probe=False)["bytes_per_trajectory"]  # the run's own (test above)
    assert f"30 trajectories x {per} B" in err and "1.0 kB is free" in err and str(out) in err
    assert engine.TRACE_COUNT["n"] == traces and not (tmp_path / "new").exists()
    assert main(["plan", str(spec), "--out", str(out), "--no-probe"]) == 2
    cap = capsys.readouterr()
    assert "does not fit" in cap.out and "free" in cap.err
    with pytest.raises(sweep.SpecError, match="free"):
        sweep.run(SMALL, out=tmp_path / "r.nc", progress=False)
    assert engine.TRACE_COUNT["n"] == traces
