"""[record]: recorded trajectories are the sweep's own runs, step by step."""
import numpy as np
import xarray as xr

import sweep
from sweep.merge import merge

SPEC = {"problem": {"name": "neuron", "data": {"dist": "normal", "n": 64}}, "train": {"steps": 120, "lr": 0.2},
        "axes": {"w0": {"linspace": [-2, 2, 9]}, "b0": {"linspace": [-2, 2, 7]}}, "record": {"stride": 2, "every": 1}}


def test_recorded_runs_are_the_sweeps_runs():
    ds = sweep.run(SPEC, progress=False)
    assert ds.rec_loss.dims == ("traj", "step") and ds.sizes["traj"] == 5 * 4
    sel = ds.sel(w0=xr.DataArray(ds.traj_w0.values, dims="traj"), b0=xr.DataArray(ds.traj_b0.values, dims="traj"))
    np.testing.assert_array_equal(sel.outcome.values, ds.rec_outcome.values)
    for j in range(ds.sizes["traj"]):
        stop = int(sel.stop_step.values[j])
        assert ds.rec_w.values[j, 0] == ds.traj_w0.values[j].astype(np.float32)
        assert ds.rec_w.values[j, stop] == sel.final_w.values[j]
        assert ds.rec_loss.values[j, stop] == sel.final_loss.values[j]
        assert np.all(np.isnan(ds.rec_loss.values[j, stop + 1:]))
        assert np.all(np.isfinite(ds.rec_loss.values[j, : stop + 1]))


def test_recorded_runs_survive_files_and_shards(tmp_path):
    spec = {**SPEC, "record": {"stride": 3, "every": 10}}
    mem = sweep.run(spec, progress=False)
    assert list(mem.step.values) == list(range(0, 121, 10))
    parts = [tmp_path / f"p{i}.nc" for i in range(2)]
    for i, p in enumerate(parts):
        sweep.run(spec, out=p, chunk_size=8, shard=f"{i}/2", progress=False)
    merged = merge(parts, tmp_path / "m.nc")
    xr.testing.assert_identical(mem.drop_attrs(), merged.load().drop_attrs())


def test_cli_plots_every_kind_of_a_result_with_recorded_runs(tmp_path):
    from sweep.cli import main

    path = tmp_path / "r.nc"
    sweep.run(SPEC, out=path, progress=False)
    for kind, extra in (("basin", ["--y", "b0"]), ("convergence", ["--y", "b0"]), ("boundary", ["--y", "b0"]),
                        ("fractions", []), ("loss", []), ("trajectories", [])):
        x = "w" if kind == "trajectories" else "w0"
        args = ["plot", str(path), "--x", x, *(["--y", "b"] if kind == "trajectories" else extra), "--kind", kind,
                "-o", str(tmp_path / f"{kind}.png")]
        assert main(args) == 0, kind
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000


def test_recorded_network_runs_are_the_sweeps_runs():
    """The vmap layout's blocks: a recorded re-run (other chunk, other neighbours) gives the same bits."""
    spec = {"problem": {"name": "mlp", "widths": [4], "data": {"source": "moons", "n": 32}},
            "train": {"steps": 60, "lr": 2.0}, "record": {"stride": 2, "every": 1},
            "axes": {"init_scale": {"logspace": [-1, 0.7, 7]}, "lr": {"logspace": [-1, 1.3, 9]}}}
    ds = sweep.run(spec, progress=False)
    sel = ds.sel(init_scale=xr.DataArray(ds.traj_init_scale.values, dims="traj"),
                 lr=xr.DataArray(ds.traj_lr.values, dims="traj"))
    np.testing.assert_array_equal(sel.outcome.values, ds.rec_outcome.values)
    assert len(set(sel.outcome.values.tolist())) >= 2
    for j in range(ds.sizes["traj"]):
        stop = int(sel.stop_step.values[j])
        np.testing.assert_array_equal(ds.rec_loss.values[j, stop], sel.final_loss.values[j])
