"""The dynamics behind a basin map: basin entropy and a fractal test, the Wada test, and the
tipping (cross-tabulation) of outcomes between two sweeps on the same grid.

Functions of result Datasets like those of ``sweep.analysis`` (whose helpers they reuse); they
load the (x, y) plane they work on into memory. Boxes and neighbourhoods are in grid cells
(the coordinate spacing is ignored). NaN equals NaN when comparing values.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from .analysis import _fit_line, _flags, _get, _plane, boundary, wilson_interval
from .outcomes import Outcome

LOG2 = float(np.log(2.0))


def _labels(ds, var: str, x: Hashable, y: Hashable, what: str) -> np.ndarray:
    """The (x, y) plane of ``ds[var]`` as (nx, ny) int labels 0..K-1 (one per distinct value; NaN
    is one value)."""
    a = np.asarray(_plane(ds, var, x, y, what).transpose(x, y).values)
    _, inv = np.unique(a.ravel(), return_inverse=True, equal_nan=True)  # all NaNs: one value
    return inv.reshape(a.shape)


def _box_counts(lab: np.ndarray, eps: int) -> np.ndarray:
    """(B, K) count of each label in each full eps x eps grid-aligned box (partial ones dropped)."""
    nx, ny = (lab.shape[0] // eps) * eps, (lab.shape[1] // eps) * eps
    k = int(lab.max()) + 1
    blocks = lab[:nx, :ny].reshape(nx // eps, eps, ny // eps, eps).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, eps * eps)
    return np.stack([(blocks == j).sum(1) for j in range(k)], axis=1)


def _entropy(lab: np.ndarray, eps: int) -> dict:
    if eps < 1 or eps > min(lab.shape):
        raise ValueError(f"basin_entropy: eps must be in [1, {min(lab.shape)}] cells, got {eps}")
    c = _box_counts(lab, eps)
    p = c / float(eps * eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    mixed = (c > 0).sum(1) > 1
    return {"Sb": float(s.mean()), "Sbb": float(s[mixed].mean()) if mixed.any() else float("nan"),
            "eps": int(eps), "n_boxes": int(s.size), "n_boundary_boxes": int(mixed.sum())}


def basin_entropy(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable, eps: int = 5,
                  var: str = "outcome") -> dict:
    """Basin entropy and boundary basin entropy of the (x, y) plane (Daza et al. 2016).

    The plane is cut into grid-aligned boxes of eps x eps cells (boxes that would stick out of the
    grid are dropped). In box i with outcome proportions p_ij the Gibbs entropy is
    S_i = -sum_j p_ij log p_ij (natural log). ``Sb`` is the mean of S_i over all boxes, ``Sbb``
    the mean over the boxes holding more than one outcome. Sbb > log 2 is a sufficient condition
    for a fractal boundary (with two outcomes per box S_i <= log 2, so only boxes seeing three or
    more outcomes can lift the mean above it). A straight boundary crossing every box of one box
    column k cells from its edge gives Sbb = H(k/eps), H(p) = -p log p - (1-p) log(1-p).

    Args:
      ds: result Dataset (or DataArray) whose ``var`` has exactly the dims x and y.
      eps: box side in cells, in [1, min(nx, ny)].
      var: outcome-coded (or any) variable; every distinct value is one outcome.
    Returns:
      dict: ``Sb`` float, ``Sbb`` float (NaN without a boundary box), ``eps`` int,
      ``n_boxes`` int, ``n_boundary_boxes`` int, ``log2`` float (the threshold).
    """
    out = _entropy(_labels(ds, var, x, y, "basin_entropy"), int(eps))
    out["log2"] = LOG2
    return out


def fractal_test(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable,
                 sizes: Sequence[int] | None = None, margin: float = 0.15,
                 var: str = "outcome", details: bool = False):
    """Is the basin boundary of the (x, y) plane fractal or smooth? (after Puy et al. 2021)

    Criterion: with grid-aligned boxes of decreasing side eps (``sizes``, default 2, 4, 8, ...
    up to min(nx, ny) / 8), the boundary is ``"fractal"`` if

    (a) Sbb(eps) > log 2 at every size (Daza's sufficient condition holds at all scales), or
    (b) the number of boundary boxes N(eps) grows faster than a smooth curve's: the
        least-squares slope D of log N vs log(1/eps) exceeds 1 + ``margin``
        (a rectifiable curve has N ~ 1/eps, D = 1; on a grid a box the curve crosses counts
        only when cells on both sides fall in it, which misses more of the smallest boxes, so a
        smooth curve's D comes out at or below 1 - 0.75 to 0.9 for circles, lines and waves on
        512 x 512 grids - and a fractal's a little below its box dimension: 1.33 to 1.36 for the
        Newton basins of z^3 = 1 on 256 to 1024 grids);

    otherwise ``"smooth"``. A plane with a single outcome is ``"smooth"``.

    Args:
      ds: result Dataset (or DataArray) whose ``var`` has exactly the dims x and y.
      sizes: box sides in cells, each >= 1 (at least two for (b)).
      margin: how far above 1 the slope must be for (b).
      var: outcome-coded (or any) variable.
      details: also return the numbers behind the verdict.
    Returns:
      ``"fractal"`` or ``"smooth"``; with ``details=True`` a tuple (verdict, dict with ``sizes``,
      ``Sbb`` (S,), ``n_boundary_boxes`` (S,), ``slope``, ``stderr``, ``all_above_log2``).
    """
    lab = _labels(ds, var, x, y, "fractal_test")
    n = min(lab.shape)
    if sizes is None:
        sizes = 2 ** np.arange(1, int(np.floor(np.log2(max(n // 8, 2)))) + 1)
    sizes = np.asarray(sizes, int)
    if sizes.size == 0 or np.any(sizes < 1) or np.any(sizes > n):
        raise ValueError(f"fractal_test: sizes must be in [1, {n}] cells, got {list(sizes)}")
    res = [_entropy(lab, int(s)) for s in sizes]
    sbb = np.array([r["Sbb"] for r in res])
    nb = np.array([r["n_boundary_boxes"] for r in res])
    use = nb > 0
    slope, err = _fit_line(np.log(1.0 / sizes[use]), np.log(nb[use])) if use.sum() >= 2 else (
        float("nan"), float("nan"))
    above = bool(use.all() and np.all(sbb > LOG2))
    verdict = "fractal" if above or (np.isfinite(slope) and slope > 1.0 + margin) else "smooth"
    if details:
        return verdict, {"sizes": sizes, "Sbb": sbb, "n_boundary_boxes": nb, "slope": slope,
                         "stderr": err, "all_above_log2": above}
    return verdict


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Cells within Chebyshev distance r (cells) of a True cell of ``mask`` (nx, ny)."""
    nx, ny = mask.shape
    c = np.zeros((nx + 1, ny + 1), np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(mask, 0), 1)
    i0, i1 = np.clip(np.arange(nx) - r, 0, nx), np.clip(np.arange(nx) + r + 1, 0, nx)
    j0, j1 = np.clip(np.arange(ny) - r, 0, ny), np.clip(np.arange(ny) + r + 1, 0, ny)
    s = (c[i1][:, j1] - c[i0][:, j1] - c[i1][:, j0] + c[i0][:, j0])
    return s > 0


def wada(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable, r: int = 1,
         var: str = "outcome") -> float:
    """Wada test on the grid: the fraction of boundary cells NOT within r cells of every other
    outcome (0: every boundary cell touches all basins at this scale, the grid sign of Wada basins).

    Boundary cells are those of ``sweep.analysis.boundary`` (differ from a 4-neighbour). "Within r
    cells" is the (2r+1) x (2r+1) square around the cell (Chebyshev distance <= r, clipped at the
    grid's edges). "Every other outcome" is every value present in the plane except the cell's own.

    Args:
      ds: result Dataset (or DataArray) whose ``var`` has exactly the dims x and y.
      r: neighbourhood radius in cells, >= 1.
      var: outcome-coded (or any) variable; every distinct value is one outcome.
    Returns:
      float in [0, 1].
    Raises:
      ValueError: fewer than three outcomes in the plane, or r < 1.
    """
    lab = _labels(ds, var, x, y, "wada")
    if int(r) != r or r < 1:
        raise ValueError(f"wada: r must be an integer >= 1 (cells), got {r!r}")
    k = int(lab.max()) + 1
    if k < 3:
        raise ValueError(f"wada: needs three or more outcomes in the ({x}, {y}) plane, found {k}; "
                         "the Wada property is about three or more basins sharing one boundary")
    bnd = np.asarray(boundary(xr.DataArray(lab, dims=("x", "y"), name=var), "x", "y").values)
    # a cell is always within r of its own outcome, so "every other" = every outcome here
    touches_all = np.all([_dilate(lab == j, int(r)) for j in range(k)], axis=0)
    return float(np.sum(bnd & ~touches_all) / np.sum(bnd))


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> None:
    if set(a.dims) != set(b.dims):
        raise ValueError(f"tipping: the two results have different dims ({', '.join(map(str, a.dims))} "
                         f"vs {', '.join(map(str, b.dims))}); compare sweeps over the same axes")
    for d in a.dims:
        if a.sizes[d] != b.sizes[d]:
            raise ValueError(f"tipping: coordinate {d!r} differs: {a.sizes[d]} vs {b.sizes[d]} "
                             "values; both sweeps must be on the same grid")
        if d in a.coords and d in b.coords:
            va, vb = np.asarray(a[d].values), np.asarray(b[d].values)
            if va.dtype.kind in "fc" and vb.dtype.kind in "fc":
                same = np.allclose(va, vb, rtol=1e-9, atol=0.0, equal_nan=True)
            else:
                same = np.array_equal(va, vb)
            if not same:
                raise ValueError(f"tipping: coordinate {d!r} differs between the two results "
                                 f"({va[:3].tolist()}... vs {vb[:3].tolist()}...); both sweeps "
                                 "must be on the same grid")
        elif (d in a.coords) != (d in b.coords):
            raise ValueError(f"tipping: coordinate {d!r} is labelled in only one of the results")


def tipping(ds_a: xr.Dataset | xr.DataArray, ds_b: xr.Dataset | xr.DataArray, z: float = 1.96,
            var: str = "outcome") -> xr.Dataset:
    """Cross-tabulation of outcomes between two sweeps on the same grid: how runs tip from a to b.

    Args:
      ds_a, ds_b: result Datasets (or outcome DataArrays) with the same dims and coordinates.
      z: normal quantile of the Wilson interval (1.96: 95%).
      var: outcome-coded variable (codes of ``sweep.outcomes.Outcome``).
    Returns:
      Dataset over dims ``from`` and ``to`` (the seven outcome names, with ``from_code`` /
      ``to_code`` coordinates): ``count`` int64 (cells with outcome ``from`` in a and ``to`` in b),
      ``probability`` = P(to in b | from in a) (NaN rows for outcomes absent in a), Wilson
      ``lower`` / ``upper`` bounds, and ``n`` (from) int64, the cells with that outcome in a.
    Raises:
      ValueError: the grids differ (names the coordinate).
    """
    a, b = _get(ds_a, var), _get(ds_b, var)
    _same_grid(a, b)
    av = np.asarray(a.values).ravel()
    bv = np.asarray(b.transpose(*a.dims).values).ravel()
    _flags(a)  # validates the flag attributes
    codes = np.array([int(o) for o in Outcome], np.int64)
    names = [o.name.lower() for o in Outcome]
    count = np.array([[np.sum((av == ca) & (bv == cb)) for cb in codes] for ca in codes], np.int64)
    dims = ("from", "to")
    coords = {"from": names, "to": names, "from_code": ("from", codes), "to_code": ("to", codes)}
    cnt = xr.DataArray(count, dims=dims, coords=coords)
    n = cnt.sum("to")
    prob = cnt / xr.where(n > 0, n, np.nan)
    lower, upper = (v.transpose(*dims) for v in wilson_interval(cnt, n, z))
    out = xr.Dataset({
        "probability": prob.assign_attrs(long_name="P(outcome `to` in b | outcome `from` in a)"),
        "lower": lower.assign_attrs(long_name=f"Wilson score interval lower bound (z={z})"),
        "upper": upper.assign_attrs(long_name=f"Wilson score interval upper bound (z={z})"),
        "count": cnt.assign_attrs(long_name="number of cells"),
        "n": n.assign_attrs(long_name="cells with outcome `from` in a"),
    })
    out.attrs.update(z=z, variable=str(var))
    return out
