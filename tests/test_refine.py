"""Adaptive boundary refinement finds the quartic's exact basin edge lr*x0^2 = 1/2."""
import numpy as np

from sweep.refine import refine

SPEC = {"problem": {"name": "quartic"}, "train": {"steps": 1000},
        "axes": {"x0": {"linspace": [0.1, 3.0, 17]}, "lr": {"logspace": [-2, 0, 17]}}}
LEVELS = 5


def test_quartic_edge_is_located_to_one_finest_cell_with_dimension_one():
    r = refine(SPEC, "x0", "lr", LEVELS, var="diverged")
    x0, lr, div = r.x0.values, r.lr.values, r.outcome.values == 4
    c = x0 ** 2 * lr
    assert not np.any(div & (c < 0.5)) and not np.any(~div & (c > 0.5))  # every sample on its exact side
    # every finest cell that the analytic curve crosses was refined down to the finest level
    have = set(zip(r.ix.values.tolist(), r.iy.values.tolist()))
    n = 16 * 2 ** LEVELS
    xs = 0.1 + 2.9 * np.arange(n + 1) / n
    ls = 10 ** (-2 + 2 * np.arange(n + 1) / n)
    C = xs[:, None] ** 2 * ls[None, :]
    side = C > 0.5
    corner = side[:-1, :-1]
    crossed = np.argwhere((corner != side[1:, :-1]) | (corner != side[:-1, 1:]) | (corner != side[1:, 1:]))
    assert len(crossed) > 500
    missing = [(i, j) for i, j in crossed if not {(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)} <= have]
    assert not missing, missing[:5]
    assert abs(r.attrs["dimension"] - 1) < 0.05
    full = (n + 1) ** 2
    assert r.attrs["full_grid"] == full and r.attrs["trajectories_used"] * 20 < full  # >20x fewer (about 85x)


def test_refinement_is_reproducible():
    a = refine(SPEC, "x0", "lr", 2)
    b = refine(SPEC, "x0", "lr", 2)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values)
    np.testing.assert_array_equal(a.ix.values, b.ix.values)
