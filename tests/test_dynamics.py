"""Tests of sweep.dynamics (basin entropy, fractal test, Wada test, tipping) on label grids built
here, plus one pair of tiny sweeps for tipping."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep import dynamics
from sweep.outcomes import Outcome, outcome_attrs

C, S, D = int(Outcome.CONVERGED), int(Outcome.STUCK), int(Outcome.DEAD)
LOG2 = np.log(2.0)


def plane(codes: np.ndarray) -> xr.Dataset:
    nx, ny = codes.shape
    return xr.Dataset({"outcome": (("w0", "b0"), codes.astype(np.int8), outcome_attrs())},
                      coords={"w0": np.linspace(-1, 1, nx), "b0": np.linspace(-2, 2, ny)})


def H(*p):
    p = np.asarray(p, float)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def vertical(n: int, col: int) -> xr.Dataset:
    """Converged for b0-index < col, stuck from col on (a straight boundary along w0)."""
    return plane(np.where(np.arange(n)[None, :] < col, C, S) * np.ones((n, 1), int))


def newton(n: int = 512, lim: float = 2.0, iters: int = 60) -> xr.Dataset:
    """Basins of the three cube roots of 1 under Newton's method z <- z - (z^3 - 1) / (3 z^2)."""
    xs = np.linspace(-lim, lim, n)  # n even: no grid point at the pole z = 0
    z = xs[:, None] + 1j * xs[None, :]
    for _ in range(iters):
        z = z - (z**3 - 1) / (3 * z**2)
    roots = np.exp(2j * np.pi * np.arange(3) / 3)
    lab = np.argmin(np.abs(z[..., None] - roots), -1)
    assert np.all(np.min(np.abs(z[..., None] - roots), -1) < 1e-6)  # every start converged
    return plane(np.array([C, S, D])[lab])


@pytest.fixture(scope="module")
def newton_ds():
    return newton()


def circle(n: int = 512, radius: float = 150.0) -> xr.Dataset:
    i = np.arange(n) - n / 2 + 0.5
    return plane(np.where(i[:, None] ** 2 + i[None, :] ** 2 < radius**2, C, S))


# ----------------------------------------------------------------------------- basin entropy


@pytest.mark.parametrize("n,col,eps", [(64, 28, 8), (64, 26, 8), (64, 28, 5), (60, 7, 3)])
def test_basin_entropy_straight_boundary_exact(n, col, eps):
    # full boxes: (n // eps)^2; the one box column holding col (col % eps = k != 0) is split
    # k : eps - k in every row, so every boundary box has entropy H(k/eps) and Sb = that / (n // eps).
    k = col % eps
    m = n // eps
    assert 0 < k and col < m * eps
    r = dynamics.basin_entropy(vertical(n, col), "w0", "b0", eps)
    assert r["n_boxes"] == m * m and r["n_boundary_boxes"] == m
    assert r["Sbb"] == pytest.approx(H(k / eps, 1 - k / eps), rel=1e-12)
    assert r["Sb"] == pytest.approx(H(k / eps, 1 - k / eps) / m, rel=1e-12)
    if 2 * k == eps:
        assert r["Sbb"] == pytest.approx(LOG2, rel=1e-12)


def test_basin_entropy_boundary_on_box_edges_and_single_outcome():
    r = dynamics.basin_entropy(vertical(64, 32), "w0", "b0", 8)  # boundary between two box columns
    assert r["n_boundary_boxes"] == 0 and r["Sb"] == 0.0 and np.isnan(r["Sbb"])
    r = dynamics.basin_entropy(plane(np.full((16, 16), C)), "w0", "b0", 4)
    assert r["Sb"] == 0.0 and np.isnan(r["Sbb"]) and r["n_boxes"] == 16


def test_basin_entropy_matches_a_loop_reference_and_dim_order():
    rng = np.random.default_rng(0)
    codes = rng.choice([C, S, D, int(Outcome.NAN)], size=(23, 17), p=[0.6, 0.2, 0.15, 0.05])
    ds = plane(codes)
    for eps in (1, 2, 3, 5):
        ent = []
        for i in range(0, 23 - eps + 1, eps):
            for j in range(0, 17 - eps + 1, eps):
                cnt = Counter(codes[i:i + eps, j:j + eps].ravel().tolist())
                ent.append((H(*[v / eps**2 for v in cnt.values()]), len(cnt) > 1))
        s = np.array([e for e, _ in ent])
        mixed = np.array([m for _, m in ent])
        r = dynamics.basin_entropy(ds, "w0", "b0", eps)
        assert r["Sb"] == pytest.approx(s.mean(), rel=1e-12)
        assert r["n_boundary_boxes"] == mixed.sum()
        if mixed.any():
            assert r["Sbb"] == pytest.approx(s[mixed].mean(), rel=1e-12)
        t = dynamics.basin_entropy(ds.transpose("b0", "w0"), "w0", "b0", eps)
        np.testing.assert_equal(t, r)
    with pytest.raises(ValueError, match="eps must be in"):
        dynamics.basin_entropy(ds, "w0", "b0", 0)
    with pytest.raises(ValueError, match="choose one value"):
        dynamics.basin_entropy(ds.expand_dims(lr=[0.1, 0.2]), "w0", "b0", 2)


def test_basin_entropy_iid_three_labels_exact_expectation():
    # 2 x 2 boxes of i.i.d. uniform labels from 3: enumerate the 81 boxes; the 78 mixed ones have
    # mean entropy (24 H(3/4,1/4) + 18 log 2 + 36 H(1/2,1/4,1/4)) / 78 = 0.813 > log 2.
    boxes = list(itertools.product(range(3), repeat=4))
    ent = [H(*[c / 4 for c in Counter(b).values()]) for b in boxes if len(set(b)) > 1]
    expect = float(np.mean(ent))
    rng = np.random.default_rng(1)
    ds = plane(rng.choice([C, S, D], size=(512, 512)))
    r = dynamics.basin_entropy(ds, "w0", "b0", 2)
    # 16384 boxes, per-box sd of the entropy < 0.25: the mean's sd < 0.002
    assert r["Sbb"] == pytest.approx(expect, abs=0.01)
    verdict, info = dynamics.fractal_test(ds, "w0", "b0", details=True)
    assert verdict == "fractal" and info["all_above_log2"]  # criterion (a)


def test_newton_basins_are_fractal(newton_ds):
    # Newton's z^3 = 1 basins share one Wada boundary: boxes on it often hold all three roots.
    for eps in (2, 3, 4, 5):
        r = newton_ds.sweep.basin_entropy("w0", "b0", eps)
        assert r["Sbb"] > LOG2, (eps, r)
    verdict, info = newton_ds.sweep.fractal_test("w0", "b0", details=True)
    assert verdict == "fractal"
    assert info["slope"] > 1.15  # criterion (b): more boundary boxes than a curve's 1/eps


def test_smooth_boundaries():
    for ds in (circle(), vertical(256, 101)):
        verdict, info = dynamics.fractal_test(ds, "w0", "b0", details=True)
        assert verdict == "smooth", info
        # two outcomes: every box entropy <= log 2 (equality only for a 50:50 box)
        assert np.all(info["Sbb"] <= LOG2 + 1e-12)
    # three outcomes meeting at one point (three 120-degree wedges) and a wavy boundary: smooth
    # curves, so the boundary boxes scale like 1/eps; only the box at the junction sees all three
    i = np.arange(256) - 127.5
    wedge = ((np.arctan2(i[:, None], i[None, :]) + np.pi) / (2 * np.pi) * 3).astype(int) % 3
    j = np.arange(256)
    for ds in (plane(np.array([C, S, D])[wedge]),
               plane(np.where(j[None, :] < 128 + 30 * np.sin(j[:, None] / 15.0), C, S))):
        assert dynamics.fractal_test(ds, "w0", "b0") == "smooth"
    # the straight boundary at an odd column crosses one box column at every power-of-two size:
    # N(eps) = 256 / eps exactly, slope 1
    _, info = dynamics.fractal_test(vertical(256, 101), "w0", "b0", details=True)
    np.testing.assert_array_equal(info["n_boundary_boxes"], 256 // info["sizes"])
    assert info["slope"] == pytest.approx(1.0, abs=1e-12)
    assert dynamics.fractal_test(plane(np.full((32, 32), C)), "w0", "b0") == "smooth"
    with pytest.raises(ValueError, match="sizes must be in"):
        dynamics.fractal_test(circle(64, 20), "w0", "b0", sizes=[0, 2])


# ----------------------------------------------------------------------------- Wada


def stripes(w: int, rows: int = 30) -> xr.Dataset:
    return plane(np.repeat(np.array([C, S, D]), w)[None, :] * np.ones((rows, 1), int))


def test_wada_stripes_exact():
    # stripes A | B | C of width w: the boundary is the 4 columns w-1, w (A|B) and 2w-1, 2w (B|C).
    # The A cell (column w-1) is w + 1 from C, the B cells are w from the far stripe: for r < w
    # every boundary cell misses an outcome (1), at r = w only the two B columns see all (1/2),
    # from r = w + 1 on all do (0).
    w = 8
    ds = stripes(w)
    for r in (1, 4, w - 1):
        assert dynamics.wada(ds, "w0", "b0", r) == 1.0
    assert ds.sweep.wada("w0", "b0", w) == 0.5
    assert dynamics.wada(ds, "w0", "b0", w + 1) == 0.0


def test_wada_matches_a_loop_reference():
    rng = np.random.default_rng(2)
    codes = np.repeat(np.repeat(rng.choice([C, S, D, int(Outcome.DIVERGED)], size=(6, 5)), 3, 0), 2, 1)
    present = set(codes.ravel().tolist())
    nx, ny = codes.shape
    for r in (1, 2, 3):
        bnd = fail = 0
        for i in range(nx):
            for j in range(ny):
                nb = [codes[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                      if 0 <= a < nx and 0 <= b < ny]
                if all(v == codes[i, j] for v in nb):
                    continue
                bnd += 1
                seen = set(codes[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].ravel().tolist())
                fail += not present <= seen
        assert dynamics.wada(plane(codes), "w0", "b0", r) == pytest.approx(fail / bnd, rel=1e-12)


def test_wada_newton(newton_ds):
    # On this 512 x 512 grid (spacing 4/511) every boundary cell of the Newton basins sees all
    # three roots within 4 cells; a grid one cell coarser (r = 1) misses the small bulbs on part of
    # the boundary. The fraction falls with r, and at r = 4 is below 1% (a margin over the 0 seen),
    # while non-Wada stripes stay at 1 for any r below their width.
    f = [dynamics.wada(newton_ds, "w0", "b0", r) for r in (1, 2, 3, 4)]
    assert f[0] > f[1] > f[2] >= f[3]
    assert f[3] < 0.01
    assert dynamics.wada(stripes(16), "w0", "b0", 4) == 1.0


def test_wada_bad_input():
    with pytest.raises(ValueError, match="three or more outcomes.*found 2"):
        dynamics.wada(vertical(16, 5), "w0", "b0", 2)
    with pytest.raises(ValueError, match="r must be an integer >= 1"):
        dynamics.wada(stripes(4), "w0", "b0", 0)


# ----------------------------------------------------------------------------- tipping


def test_tipping_against_itself_is_identity():
    codes = np.where(np.arange(12)[:, None] < 5, C, S) * np.ones((1, 7), int)
    codes[0, :3] = D
    ds = plane(codes)
    t = sweep.tipping(ds, ds)
    names = [o.name.lower() for o in Outcome]
    assert t.probability.dims == ("from", "to") and list(t["from"].values) == names
    assert list(t["to"].values) == names and list(t.from_code.values) == [int(o) for o in Outcome]
    n = {name: int(np.sum(codes == int(o))) for o, name in zip(Outcome, names)}
    z2 = 1.96**2
    for f in names:
        row = t.sel({"from": f})
        assert int(row.n) == n[f]
        if n[f] == 0:
            assert np.all(np.isnan(row.probability)) and np.all(row["count"] == 0)
            continue
        np.testing.assert_array_equal(row.probability.values, [1.0 if g == f else 0.0 for g in names])
        assert float(row.upper.sel(to=f)) == 1.0
        assert float(row.lower.sel(to=f)) == pytest.approx(n[f] / (n[f] + z2), rel=1e-12)  # Wilson, k = n
        assert np.all(row.lower.drop_sel(to=f) == 0.0)
    assert int(t["count"].sum()) == codes.size
    xr.testing.assert_identical(ds.sweep.tipping(ds), t)
    xr.testing.assert_identical(sweep.tipping(ds, ds.transpose("b0", "w0")), t)


def test_tipping_refuses_different_grids():
    ds = plane(np.full((4, 5), C))
    other = ds.assign_coords(b0=ds.b0 + 0.5)
    with pytest.raises(ValueError, match="coordinate 'b0' differs"):
        sweep.tipping(ds, other)
    with pytest.raises(ValueError, match="coordinate 'w0' differs: 4 vs 3"):
        sweep.tipping(ds, ds.isel(w0=slice(0, 3)))
    with pytest.raises(ValueError, match="different dims"):
        sweep.tipping(ds, ds.expand_dims(lr=[0.1]))


def test_tipping_relu_grad_at_zero_flips_only_the_kink():
    # f(x) = relu(w x) fitting relu(x): dL/dw = 2 mean((relu(w x) - relu(x)) relu'(w x) x).
    # At w = 0 every w x = 0, so dL/dw = -2 g0 mean(x relu(x)) with g0 = relu'(0): zero for g0 = 0
    # (every unit inactive: dead), negative for g0 = 1 (w moves up into w > 0, where the loss is
    # (w - 1)^2 mean(x^2 [x > 0]) and gradient descent contracts to w = 1: converged). Every w0 != 0
    # never meets the kink (w x = 0 only at x = 0), so its run is the same for both.
    def spec(g0):
        return {"problem": {"name": "neuron", "bias": False, "relu_grad_at_zero": g0, "data": {"n": 64}},
                "train": {"steps": 200, "lr": 0.1}, "axes": {"w0": {"linspace": [-1, 1, 21]}}}
    a, b = sweep.run(spec(0.0)), sweep.run(spec(1.0))
    assert int(a.outcome.sel(w0=0.0)) == D and int(b.outcome.sel(w0=0.0)) == C
    t = a.sweep.tipping(b)
    cnt = t["count"]
    assert int(cnt.sel({"from": "dead", "to": "converged"})) == 1
    off = cnt.values.sum() - np.trace(cnt.values)
    assert off == 1 and int(cnt.sum()) == 21
    assert float(t.probability.sel({"from": "dead", "to": "converged"})) == 1.0
    assert np.all(b.outcome.sel(w0=slice(0.05, None)) == C)  # w0 > 0: converged either way


def test_tipping_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from sweep import plot

    a = plane(np.where(np.arange(10)[:, None] < 4, C, S) * np.ones((1, 6), int))
    codes = a.outcome.values.copy()
    codes[0, :2] = D  # 2 of the 24 converged cells tip to dead
    b = plane(codes)
    mesh = a.sweep.tipping_plot(b)
    # rows: converged, stuck (present in a); columns: converged, stuck, dead (present in b)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 3),
                               [[22 / 24, 0.0, 2 / 24], [0.0, 1.0, 0.0]])
    assert [t.get_text() for t in mesh.axes.get_xticklabels()] == ["converged", "stuck", "dead"]
    assert "2 of 60 cells change" in mesh.axes.get_title()
    assert plot.save(mesh, tmp_path / "tip.png").stat().st_size > 0


def test_float_values_nan_is_one_outcome_and_dask():
    # a float variable: NaN cells are one outcome of their own, distinct from inf
    v = np.zeros((8, 8))
    v[:, 2:4] = np.nan
    v[:, 4:6] = np.inf
    v[:, 6:] = 1.0
    ds = xr.Dataset({"final_loss": (("w0", "b0"), v)})
    assert dynamics._labels(ds, "final_loss", "w0", "b0", "t")[0].tolist() == [0, 0, 3, 3, 2, 2, 1, 1]
    assert dynamics.wada(ds, "w0", "b0", 1, var="final_loss") == 1.0  # 4 stripes of width 2
    assert dynamics.wada(ds, "w0", "b0", 5, var="final_loss") == 0.0
    r = dynamics.basin_entropy(ds, "w0", "b0", 2, var="final_loss")
    assert r["n_boundary_boxes"] == 0 and r["Sb"] == 0.0  # every stripe edge on a box edge
    pytest.importorskip("dask")
    c = circle(64, 20)
    np.testing.assert_equal(dynamics.basin_entropy(c.chunk(16), "w0", "b0", 3),
                            dynamics.basin_entropy(c, "w0", "b0", 3))
    assert dynamics.wada(stripes(4).chunk(8), "w0", "b0", 2) == 1.0
    xr.testing.assert_identical(sweep.tipping(c.chunk(16), c), sweep.tipping(c, c))
