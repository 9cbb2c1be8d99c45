"""Tests of sweep.analysis (and the ds.sweep accessor) on small synthetic result Datasets."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sweep import accessor  # noqa: F401  (registers ds.sweep)
from sweep import analysis
from sweep.outcomes import FLAG_MEANINGS, FLAG_VALUES, Outcome, outcome_attrs

C, S, D = int(Outcome.CONVERGED), int(Outcome.STUCK), int(Outcome.DEAD)


def plane(codes: np.ndarray, name: str = "outcome") -> xr.Dataset:
    """A (w0, b0) result Dataset holding the given (nx, ny) codes."""
    nx, ny = codes.shape
    return xr.Dataset(
        {name: (("w0", "b0"), codes.astype(np.int8), outcome_attrs())},
        coords={"w0": ("w0", np.linspace(-3, 3, nx), {"units": "1", "spacing": "linear"}),
                "b0": ("b0", np.linspace(-3, 3, ny), {"units": "1", "spacing": "linear"})},
        attrs={"problem": "neuron", "spec": "[problem]\nname = 'neuron'\n"})


def sweep_ds(n: int = 16) -> xr.Dataset:
    """(w0, b0, lr, optimizer) Dataset: converged for w0 > 0, else stuck; adam always
    converges; the largest lr makes b0 > 0 dead."""
    w0 = np.linspace(-3, 3, n)
    b0 = np.linspace(-2, 2, n)
    lr = np.array([1e-3, 1e-2, 1e-1])
    opt = np.array(["sgd", "adam"])
    W, B, LR, O = np.meshgrid(w0, b0, lr, np.arange(2), indexing="ij")
    code = np.where(W > 0, C, S)
    code = np.where(O == 1, C, code)
    code = np.where((LR == lr[-1]) & (B > 0) & (O == 0), D, code).astype(np.int8)
    steps = np.where(code == C, (10 + 100 * np.abs(W)).astype(np.int32), -1).astype(np.int32)
    return xr.Dataset(
        {"outcome": (("w0", "b0", "lr", "optimizer"), code, outcome_attrs()),
         "converge_step": (("w0", "b0", "lr", "optimizer"), steps),
         "final_loss": (("w0", "b0", "lr", "optimizer"), np.where(code == C, 1e-8, 0.3))},
        coords={"w0": ("w0", w0, {"units": "1", "spacing": "linear"}),
                "b0": ("b0", b0, {"units": "1", "spacing": "linear"}),
                "lr": ("lr", lr, {"units": "1", "spacing": "log"}),
                "optimizer": ("optimizer", opt)},
        attrs={"problem": "neuron", "spec": "[problem]\nname = 'neuron'\n"})


# ----------------------------------------------------------------------------- outcomes


def test_outcomes_names_keep_dims_and_coords():
    ds = sweep_ds(4)
    names = analysis.outcomes(ds)
    assert names.dims == ds.outcome.dims
    assert names.dtype.kind == "U"
    codes = ds.outcome.values
    expect = np.array(FLAG_MEANINGS.split())[codes]
    np.testing.assert_array_equal(names.values, expect)
    xr.testing.assert_identical(names.optimizer, ds.optimizer)


def test_outcomes_unknown_code_and_default_flags():
    da = xr.DataArray(np.array([0, 6, 9], np.int8), dims="sample", name="outcome")
    np.testing.assert_array_equal(analysis.outcomes(da).values,
                                  ["converged", "unfinished", "unknown"])


# ----------------------------------------------------------------------------- fractions


def test_wilson_known_values():
    lo, up = analysis.wilson_interval(3, 10)
    assert lo == pytest.approx(0.1078, abs=1e-4)
    assert up == pytest.approx(0.6032, abs=1e-4)
    lo, up = analysis.wilson_interval(0, 10)
    assert lo == 0.0 and up == pytest.approx(0.2775, abs=1e-4)
    lo, up = analysis.wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and up == 1.0
    lo, up = analysis.wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(up)


def test_fractions_three_of_ten():
    codes = np.array([C] * 3 + [S] * 7, np.int8)
    da = xr.DataArray(codes, dims="sample", name="outcome", attrs=outcome_attrs())
    fr = analysis.fractions(da)
    assert fr.fraction.dims == ("outcome",)
    assert list(fr.outcome.values) == FLAG_MEANINGS.split()
    assert list(fr.code.values) == FLAG_VALUES
    conv = fr.sel(outcome="converged")
    assert float(conv.fraction) == pytest.approx(0.3)
    assert float(conv.lower) == pytest.approx(0.1078, abs=1e-4)
    assert float(conv.upper) == pytest.approx(0.6032, abs=1e-4)
    assert int(conv["count"]) == 3 and int(fr.n) == 10
    stuck = fr.sel(outcome="stuck")
    assert float(stuck.lower) == pytest.approx(1 - 0.6032, abs=1e-4)
    assert float(fr.fraction.sum()) == pytest.approx(1.0)


def test_fractions_by_and_over():
    ds = sweep_ds(8)
    fr = analysis.fractions(ds, by="optimizer")
    for v in ("fraction", "lower", "upper", "count"):
        assert fr[v].dims == ("outcome", "optimizer")
    assert fr.n.dims == ("optimizer",) and "flag_values" not in fr.fraction.attrs
    assert float(fr.fraction.sel(optimizer="adam", outcome="converged")) == 1.0
    assert int(fr.n.sel(optimizer="sgd")) == 8 * 8 * 3
    np.testing.assert_allclose(fr.fraction.sum("outcome"), 1.0)
    assert np.all(fr.lower <= fr.fraction) and np.all(fr.fraction <= fr.upper)
    # over= keeps every other dim
    fr2 = analysis.fractions(ds, over=["w0", "b0"])
    assert fr2.fraction.dims == ("outcome", "lr", "optimizer")
    sgd_big = fr2.sel(optimizer="sgd", lr=0.1)
    assert float(sgd_big.fraction.sel(outcome="dead")) == pytest.approx(4 * 8 / 64)
    # z changes the width only
    wide = analysis.fractions(ds, by="optimizer", z=3.0)
    assert np.all(wide.upper - wide.lower >= fr.upper - fr.lower - 1e-12)
    xr.testing.assert_allclose(wide.fraction, fr.fraction)


def test_fractions_bad_dims():
    ds = sweep_ds(4)
    with pytest.raises(ValueError, match="'seed' not a dimension"):
        analysis.fractions(ds, by="seed")
    with pytest.raises(ValueError, match="both over= and by="):
        analysis.fractions(ds, over="lr", by="lr")
    with pytest.raises(ValueError, match="no variable 'nope'"):
        analysis.fractions(ds, var="nope")


# ----------------------------------------------------------------------------- summary


def test_summary_table():
    text = analysis.summary(sweep_ds(8))
    lines = text.splitlines()
    assert "384 runs" in lines[0] and "neuron" in lines[0]
    header = lines[1].split()
    assert header == ["n", "converged", "stuck", "dead"]  # only codes that occur
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    assert set(rows) == {"all", "optimizer=sgd", "optimizer=adam"}  # string axes only
    assert rows["optimizer=adam"] == ["192", "100.0%", "0.0%", "0.0%"]
    assert rows["optimizer=sgd"][0] == "192"
    # by= breaks down by numeric dims as well
    text = analysis.summary(sweep_ds(8), by=["lr"])
    assert "lr=0.001" in text and "lr=0.1" in text and "optimizer=" not in text


# ----------------------------------------------------------------------------- boundary


def test_boundary_half_plane_two_columns():
    codes = np.zeros((20, 12), int)
    codes[9:, :] = S  # edge between w0 index 8 and 9
    mask = analysis.boundary(plane(codes), "w0", "b0")
    assert mask.dtype == bool and mask.dims == ("w0", "b0")
    cols = np.flatnonzero(mask.values.any(axis=1))
    np.testing.assert_array_equal(cols, [8, 9])
    assert mask.values[[8, 9]].all()
    # constant map: no boundary; the (y, x) order gives the transposed answer
    assert not analysis.boundary(plane(np.zeros((5, 5), int)), "w0", "b0").any()
    xr.testing.assert_equal(analysis.boundary(plane(codes), "b0", "w0"), mask)


def test_boundary_keeps_other_dims():
    ds = sweep_ds(6)
    mask = analysis.boundary(ds, "w0", "b0")
    assert mask.dims == ds.outcome.dims
    assert not mask.sel(optimizer="adam").any()  # adam: all converged
    sgd = mask.sel(optimizer="sgd", lr=1e-3)
    np.testing.assert_array_equal(np.flatnonzero(sgd.values.any(axis=1)), [2, 3])


# ----------------------------------------------------------------------------- dimensions


def _disk(n=256, r=0.3):
    x = np.linspace(-0.5, 0.5, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    return plane((X**2 + Y**2 < r**2).astype(int))


@pytest.mark.parametrize("edge", [128, 100, 37])
def test_fractal_dimension_straight_line(edge):
    codes = np.zeros((256, 256), int)
    codes[edge:] = S
    res = analysis.fractal_dimension(plane(codes), "w0", "b0")
    assert set(res) == {"dimension", "stderr", "sizes", "counts", "fit_range"}
    assert res["dimension"] == pytest.approx(1.0, abs=0.05)
    assert res["sizes"][0] == 1 and res["counts"][0] == 256
    assert res["fit_range"] == (1, 64)


def test_fractal_dimension_random_map_fills_plane():
    rng = np.random.default_rng(0)
    res = analysis.fractal_dimension(plane(rng.integers(0, 2, (256, 256))), "w0", "b0")
    assert res["dimension"] == pytest.approx(2.0, abs=0.1)


def test_fractal_dimension_circle():
    res = analysis.fractal_dimension(_disk(), "w0", "b0")
    assert res["dimension"] == pytest.approx(1.0, abs=0.1)
    assert res["stderr"] < 0.05


def test_fractal_dimension_options_and_errors():
    ds = _disk(64)
    res = analysis.fractal_dimension(ds, "w0", "b0", sizes=[1, 2, 4, 8], fit_range=(2, 8))
    assert list(res["sizes"]) == [1, 2, 4, 8] and res["fit_range"] == (2, 8)
    flat = analysis.fractal_dimension(plane(np.zeros((32, 32), int)), "w0", "b0")
    assert np.isnan(flat["dimension"]) and not flat["counts"].any()
    with pytest.raises(ValueError, match=r"also has dims lr: 3, optimizer: 2.*\.sel\(lr=0\.001\)"):
        analysis.fractal_dimension(sweep_ds(4), "w0", "b0")


def test_uncertainty_exponent_straight_boundary():
    codes = np.zeros((256, 256), int)
    codes[:, 100:] = S
    res = analysis.uncertainty_exponent(plane(codes), "w0", "b0")
    assert set(res) == {"eps", "fraction", "exponent", "dimension", "stderr"}
    np.testing.assert_allclose(res["fraction"], 2 * res["eps"] / 256)  # exact: 2 eps columns
    assert res["exponent"] == pytest.approx(1.0, abs=0.02)
    assert res["dimension"] == pytest.approx(1.0, abs=0.02)


def test_uncertainty_exponent_random_and_circle():
    rng = np.random.default_rng(1)
    res = analysis.uncertainty_exponent(plane(rng.integers(0, 2, (128, 128))), "w0", "b0")
    assert res["exponent"] == pytest.approx(0.0, abs=0.05)
    assert res["dimension"] == pytest.approx(2.0, abs=0.05)
    res = analysis.uncertainty_exponent(_disk(), "w0", "b0", eps=[1, 2, 4, 8])
    assert res["dimension"] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="eps must be in"):
        analysis.uncertainty_exponent(_disk(16), "w0", "b0", eps=[16])


# ----------------------------------------------------------------------------- files, dask


def test_netcdf_roundtrip_keeps_what_the_accessor_needs(tmp_path):
    ds = sweep_ds(8)
    path = tmp_path / "r.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as back:
        assert back.outcome.dtype == np.int8
        assert list(back.outcome.attrs["flag_values"]) == FLAG_VALUES
        assert back.outcome.attrs["flag_meanings"] == FLAG_MEANINGS
        assert back.lr.attrs["spacing"] == "log" and back.w0.attrs["units"] == "1"
        assert back.optimizer.dtype.kind in "UO"
        xr.testing.assert_identical(back.sweep.fractions(by="optimizer"),
                                    ds.sweep.fractions(by="optimizer"))
        assert back.sweep.summary() == ds.sweep.summary()
        np.testing.assert_array_equal(back.sweep.outcomes().values, ds.sweep.outcomes().values)


def test_dask_backed_is_lazy_and_equal(tmp_path):
    pytest.importorskip("dask")
    ds = sweep_ds(8)
    path = tmp_path / "r.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path, chunks={}) as lazy:
        assert lazy.outcome.chunks is not None
        fr = analysis.fractions(lazy, by=["optimizer", "lr"])
        assert fr.fraction.chunks is not None  # still lazy
        xr.testing.assert_allclose(fr.compute(), analysis.fractions(ds, by=["optimizer", "lr"]))
        assert analysis.summary(lazy) == analysis.summary(ds)
        names = analysis.outcomes(lazy)
        assert names.chunks is not None
        np.testing.assert_array_equal(names.values, analysis.outcomes(ds).values)
        mask = analysis.boundary(lazy, "w0", "b0")
        assert mask.chunks is not None
        xr.testing.assert_equal(mask.compute(), analysis.boundary(ds, "w0", "b0"))
        sub = lazy.sel(lr=1e-3, optimizer="sgd").chunk({"w0": 3})
        ref = ds.sel(lr=1e-3, optimizer="sgd")
        for f in (analysis.fractal_dimension, analysis.uncertainty_exponent):
            a, b = f(sub, "w0", "b0"), f(ref, "w0", "b0")
            np.testing.assert_equal(a, b)


def test_accessor_forwards():
    ds = sweep_ds(4)
    xr.testing.assert_identical(ds.sweep.fractions(by="lr"), analysis.fractions(ds, by="lr"))
    xr.testing.assert_identical(ds.sweep.boundary("w0", "b0"), analysis.boundary(ds, "w0", "b0"))
    assert ds.sweep.summary(by="lr") == analysis.summary(ds, by="lr")
    sub = ds.sel(lr=0.1, optimizer="sgd")
    assert ds.sweep.fractal_dimension.__name__ == "fractal_dimension"
    np.testing.assert_equal(sub.sweep.uncertainty_exponent("w0", "b0", eps=[1, 2]),
                            analysis.uncertainty_exponent(sub, "w0", "b0", eps=[1, 2]))
    for name in ("outcomes", "summary", "fractions", "boundary", "fractal_dimension",
                 "uncertainty_exponent", "basin_map", "convergence_map", "fractions_plot",
                 "boundary_plot", "trajectories", "loss_curves"):
        assert callable(getattr(ds.sweep, name))
