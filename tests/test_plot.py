"""Tests of sweep.plot: every figure draws headless, saves, and closes its figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm, to_hex  # noqa: E402

from sweep import accessor  # noqa: E402,F401  (registers ds.sweep)
from sweep import plot  # noqa: E402
from sweep.outcomes import COLORS, Outcome, outcome_attrs  # noqa: E402

C, S, D = int(Outcome.CONVERGED), int(Outcome.STUCK), int(Outcome.DEAD)


@pytest.fixture(autouse=True)
def no_figures_left():
    plt.close("all")
    yield
    left = plt.get_fignums()
    plt.close("all")
    assert left == [], f"figures left open: {left}"


def grid_ds(n: int = 12) -> xr.Dataset:
    """(w0, b0, lr, optimizer) result: converged for w0 > 0 (adam: always), stuck otherwise;
    the largest lr kills sgd runs with b0 > 0."""
    w0, b0 = np.linspace(-3, 3, n), np.linspace(-2, 2, n + 1)
    lr, opt = np.array([1e-3, 1e-2, 1e-1]), np.array(["sgd", "adam"])
    W, B, LR, O = np.meshgrid(w0, b0, lr, np.arange(2), indexing="ij")
    code = np.where((W > 0) | (O == 1), C, S)
    code = np.where((LR == lr[-1]) & (B > 0) & (O == 0), D, code).astype(np.int8)
    dims = ("w0", "b0", "lr", "optimizer")
    steps = np.where(code == C, np.round(3 + 10 ** (1 + np.abs(W))), -1).astype(np.int32)
    return xr.Dataset(
        {"outcome": (dims, code, outcome_attrs()),
         "converge_step": (dims, steps, {"long_name": "first step within tolerance"}),
         "final_loss": (dims, np.where(code == C, 1e-9 + 1e-9 * W**2, 0.2 + 0.01 * B),
                        {"units": "1"})},
        coords={"w0": ("w0", w0, {"units": "1", "spacing": "linear"}),
                "b0": ("b0", b0, {"units": "1", "spacing": "linear"}),
                "lr": ("lr", lr, {"units": "1", "spacing": "log"}),
                "optimizer": ("optimizer", opt)},
        attrs={"problem": "neuron"})


_XS = np.random.default_rng(0).normal(size=400)


def neuron_loss(w, b):
    """Seed 000's loss E[(relu(w x + b) - relu(x))^2] on numpy grids (any shape)."""
    w, b = np.asarray(w, float)[..., None], np.asarray(b, float)[..., None]
    return np.mean((np.maximum(w * _XS + b, 0) - np.maximum(_XS, 0)) ** 2, axis=-1)


def traj_ds(k: int = 5, steps: int = 150, lr: float = 0.2) -> xr.Dataset:
    """Recorded GD trajectories of a single ReLU neuron from a k x k grid of starts."""
    w0, b0 = np.meshgrid(np.linspace(-2, 2, k), np.linspace(-1.5, 1.5, k), indexing="ij")
    w, b = w0.ravel().copy(), b0.ravel().copy()
    n = w.size
    rw, rb, rl = (np.full((n, steps), np.nan) for _ in range(3))
    code = np.full(n, int(Outcome.STUCK), np.int8)
    alive = np.ones(n, bool)
    t = np.maximum(_XS, 0)
    for s in range(steps):
        z = w[:, None] * _XS + b[:, None]
        r = np.maximum(z, 0) - t
        loss = np.mean(r**2, axis=1)
        rw[alive, s], rb[alive, s], rl[alive, s] = w[alive], b[alive], loss[alive]
        g = 2 * r * (z > 0)
        gw, gb = np.mean(g * _XS, axis=1), np.mean(g, axis=1)
        conv, dead = alive & (loss < 1e-5), alive & (gw == 0) & (gb == 0) & (loss > 1e-5)
        code[conv], code[dead] = C, D
        alive &= ~(conv | dead)
        w, b = np.where(alive, w - lr * gw, w), np.where(alive, b - lr * gb, b)
    return xr.Dataset(
        {"rec_w": (("traj", "step"), rw), "rec_b": (("traj", "step"), rb),
         "rec_loss": (("traj", "step"), rl, {"long_name": "rec_loss"}),
         "rec_outcome": ("traj", code, outcome_attrs())},
        coords={"step": np.arange(steps), "traj_w0": ("traj", w0.ravel()),
                "traj_b0": ("traj", b0.ravel())})


def _saved(obj, tmp_path, name="fig.png"):
    path = plot.save(obj, tmp_path / name)
    assert path.exists() and path.stat().st_size > 1000
    return path


# ----------------------------------------------------------------------------- basin_map


def test_basin_map_legend_labels_colors(tmp_path):
    ds = grid_ds().sel(lr=0.1, optimizer="sgd")
    mesh = plot.basin_map(ds, "w0", "b0")
    ax = mesh.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["converged", "stuck", "dead"]
    colors = [to_hex(h.get_facecolor()) for h in legend.legend_handles]
    assert colors == [COLORS[Outcome(c)] for c in (C, S, D)]
    assert ax.get_xlabel() == "w0 [1]" and ax.get_ylabel() == "b0 [1]"
    assert "lr = 0.1" in ax.get_title() and "optimizer = sgd" in ax.get_title()
    assert mesh.get_array().shape == (13, 12)  # (y, x)
    _saved(mesh, tmp_path, "basin.png")


def test_basin_map_log_and_categorical_axes(tmp_path):
    ds = grid_ds()
    mesh = plot.basin_map(ds.sel(b0=ds.b0[-1], optimizer="sgd"), "lr", "w0")
    assert mesh.axes.get_xscale() == "log" and mesh.axes.get_yscale() == "linear"
    lo, hi = mesh.axes.get_xlim()
    assert lo < 1e-3 < 1e-1 < hi
    _saved(mesh, tmp_path, "log.png")
    mesh = plot.basin_map(ds.isel(b0=0, lr=0), "optimizer", "w0")
    assert [t.get_text() for t in mesh.axes.get_xticklabels()] == ["sgd", "adam"]
    _saved(mesh, tmp_path, "cat.png")


def test_basin_map_extra_dims_error():
    with pytest.raises(ValueError, match=r"lr: 3, optimizer: 2.*\.sel\(lr=0\.001\).*\.isel"):
        plot.basin_map(grid_ds(), "w0", "b0")
    with pytest.raises(ValueError, match="'seed' not a dimension"):
        plot.basin_map(grid_ds().isel(lr=0, optimizer=0), "w0", "seed")


def test_basin_map_facet_and_given_ax(tmp_path):
    ds = grid_ds().sel(lr=0.1)
    fig = plot.basin_map(ds, "w0", "b0", facet="optimizer", title="neuron")
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in visible] == ["optimizer = sgd", "optimizer = adam"]
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"converged", "stuck", "dead"}
    _saved(fig, tmp_path, "facet.png")
    fig, axes = plt.subplots(1, 2)
    mesh = plot.basin_map(ds.sel(optimizer="adam"), "w0", "b0", ax=axes[1], title="")
    assert mesh.axes is axes[1] and mesh.figure is fig
    _saved(fig, tmp_path, "ax.png")


def test_basin_map_continuous_var_and_samples(tmp_path):
    ds = grid_ds().sel(lr=0.1, optimizer="sgd")
    mesh = plot.basin_map(ds, "w0", "b0", var="final_loss")
    assert isinstance(mesh.norm, LogNorm)
    _saved(mesh, tmp_path, "loss.png")
    rng = np.random.default_rng(0)
    w, b = rng.uniform(-3, 3, 300), rng.uniform(-3, 3, 300)
    sample = xr.Dataset({"outcome": ("sample", np.where(w > 0, C, S).astype(np.int8),
                                     outcome_attrs())},
                        coords={"w0": ("sample", w), "b0": ("sample", b)})
    art = plot.basin_map(sample, "w0", "b0")
    assert len(art.get_offsets()) == 300
    _saved(art, tmp_path, "samples.png")


# ----------------------------------------------------------------------------- other maps


def test_convergence_map(tmp_path):
    ds = grid_ds().sel(lr=0.1, optimizer="sgd")
    mesh = plot.convergence_map(ds, "w0", "b0")
    assert isinstance(mesh.norm, LogNorm)
    arr = mesh.get_array()
    never = int((ds.converge_step < 0).sum())
    assert never > 0 and int(np.ma.count_masked(arr)) == never
    cbar_ax = [a for a in mesh.figure.axes if a is not mesh.axes][0]
    assert "converge" in cbar_ax.get_ylabel()
    assert mesh.axes.get_legend().get_texts()[0].get_text() == "never converged"
    _saved(mesh, tmp_path, "conv.png")


def test_fractions_plot(tmp_path):
    ds = grid_ds()
    ax = plot.fractions_plot(ds, "lr")
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["converged", "stuck", "dead"]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
    assert to_hex(lines[0].get_color()) == COLORS[Outcome.CONVERGED]
    _saved(ax, tmp_path, "fr.png")
    ax = plot.fractions_plot(ds.sel(lr=0.1), "optimizer", over=["w0", "b0"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "adam"]
    _saved(ax, tmp_path, "fr2.svg")
    with pytest.raises(ValueError, match="lr: 3"):
        plot.fractions_plot(ds, "optimizer", over=["w0", "b0"])


def test_boundary_plot(tmp_path):
    mesh = plot.boundary_plot(grid_ds().sel(lr=1e-3, optimizer="sgd"), "w0", "b0")
    arr = np.asarray(mesh.get_array())
    np.testing.assert_array_equal(np.flatnonzero(arr.any(axis=0)), [5, 6])  # columns = w0
    _saved(mesh, tmp_path, "boundary.pdf")


# ----------------------------------------------------------------------------- trajectories


def test_trajectories_with_loss_contours(tmp_path):
    ds = traj_ds()
    codes = set(ds.rec_outcome.values.tolist())
    assert {C, D} <= codes  # the fixture reaches both basins
    lc = plot.trajectories(ds, loss_fn=neuron_loss)
    ax = lc.axes
    assert len(lc.get_paths()) == 25
    assert ax.get_xlabel() == "w" and ax.get_ylabel() == "b"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == "start" and any(s.startswith("converged (") for s in labels)
    assert len(ax.collections) >= 3  # contours + paths + start markers
    starts = [c for c in ax.collections if c.get_offsets().shape == (25, 2)]
    assert starts, "start points not marked"
    x0, x1 = ax.get_xlim()
    assert x0 < -2 and x1 > 2
    _saved(lc, tmp_path, "traj.png")
    lc = plot.trajectories(ds, x="rec_w", y="rec_b")  # no contours
    _saved(lc, tmp_path, "traj2.png")


def test_trajectories_missing_records():
    with pytest.raises(ValueError, match=r"no recorded variable 'rec_w'.*\[record\]"):
        plot.trajectories(grid_ds())


def test_loss_curves_subsample_keeps_every_outcome(tmp_path):
    ds = traj_ds()
    lc = plot.loss_curves(ds, max_lines=6)
    n = len(lc.get_paths())
    assert 3 <= n <= 8
    colors = {to_hex(c) for c in lc.get_colors()}
    present = {COLORS[Outcome(int(c))] for c in np.unique(ds.rec_outcome.values)}
    assert colors == present
    assert lc.axes.get_yscale() == "log" and lc.axes.get_xlabel() == "step"
    assert "of 25" in lc.axes.get_title()
    _saved(lc, tmp_path, "loss.png")


# ----------------------------------------------------------------------------- save, accessor


def test_save_formats_and_bad_extension(tmp_path):
    for ext in ("png", "svg", "pdf"):
        mesh = plot.boundary_plot(grid_ds(6).isel(lr=0, optimizer=0), "w0", "b0")
        assert plot.save(mesh.figure, tmp_path / f"f.{ext}").exists()
    fig = plt.figure()
    with pytest.raises(ValueError, match=r"'\.jpg'.*\.png, \.svg, \.pdf"):
        plot.save(fig, tmp_path / "f.jpg")
    plt.close(fig)


def test_accessor_plots(tmp_path):
    ds = grid_ds().sel(lr=0.1)
    _saved(ds.sweep.basin_map("w0", "b0", facet="optimizer"), tmp_path, "a1.png")
    sgd = ds.sel(optimizer="sgd")
    _saved(sgd.sweep.convergence_map("w0", "b0"), tmp_path, "a2.png")
    _saved(ds.sweep.fractions_plot("optimizer"), tmp_path, "a3.png")
    _saved(sgd.sweep.boundary_plot("w0", "b0"), tmp_path, "a4.png")
    tr = traj_ds(3, 60)
    _saved(tr.sweep.trajectories(), tmp_path, "a5.png")
    _saved(tr.sweep.loss_curves(), tmp_path, "a6.png")


def test_netcdf_roundtrip_plots(tmp_path):
    path = tmp_path / "r.nc"
    xr.merge([grid_ds(), traj_ds(3, 40)]).to_netcdf(path)
    with xr.open_dataset(path, chunks={}) as ds:
        mesh = ds.isel(b0=0).sel(optimizer="sgd").sweep.basin_map("lr", "w0")
        assert mesh.axes.get_xscale() == "log"  # spacing attr survived the file
        _saved(mesh, tmp_path, "nc.png")
        _saved(ds.sweep.trajectories(), tmp_path, "nc_traj.png")
