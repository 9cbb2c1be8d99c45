"""Reductions of result Datasets: outcome names, outcome fractions with Wilson intervals,
basin boundaries, box-counting dimension and uncertainty exponent.

Every function takes a result Dataset (or the DataArray itself) and works on numpy- and
dask-backed data alike: reductions stay lazy on dask and load only what they return.
No matplotlib here (see ``sweep.plot``).

Outcome-coded variables are read through their CF ``flag_values`` / ``flag_meanings``
attributes; without them the codes of ``sweep.outcomes.Outcome`` are assumed.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from .outcomes import Outcome

OUTCOME_DIM = "outcome"
"""Name of the dimension that ``fractions`` adds (one entry per outcome code)."""

_UNKNOWN = "unknown"


# ----------------------------------------------------------------------------- helpers


def _get(ds: xr.Dataset | xr.DataArray, var: str) -> xr.DataArray:
    """The variable ``var`` of ``ds`` (or ``ds`` itself when it is a DataArray)."""
    if isinstance(ds, xr.DataArray):
        return ds
    if var not in ds.variables:
        have = ", ".join(map(str, ds.data_vars)) or "none"
        raise ValueError(f"no variable {var!r} in the dataset (variables: {have})")
    return ds[var]


def _flags(da: xr.DataArray) -> tuple[np.ndarray, list[str]]:
    """Codes and lowercase names of an outcome-coded variable.

    Returns:
      codes: (K,) int64 and names: K str, from ``flag_values`` / ``flag_meanings``,
      or the ``Outcome`` enum when the attributes are missing.
    """
    values, meanings = da.attrs.get("flag_values"), da.attrs.get("flag_meanings")
    if values is None or meanings is None:
        return np.array([int(o) for o in Outcome], np.int64), [o.name.lower() for o in Outcome]
    codes = np.atleast_1d(np.asarray(values)).astype(np.int64)
    names = str(meanings).split()
    if len(names) != len(codes):
        raise ValueError(
            f"{da.name!r}: {len(codes)} flag_values but {len(names)} flag_meanings")
    return codes, names


def _as_dims(dims: Hashable | Iterable[Hashable] | None) -> list[Hashable] | None:
    if dims is None:
        return None
    if isinstance(dims, str) or not isinstance(dims, Iterable):
        return [dims]
    return list(dims)


def _check_dims(da: xr.DataArray, dims: Sequence[Hashable], what: str) -> None:
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ValueError(
            f"{what}: {', '.join(map(repr, missing))} not a dimension of {da.name!r} "
            f"(dimensions: {', '.join(map(repr, da.dims))})")


def _is_categorical(da: xr.DataArray, dim: Hashable) -> bool:
    return dim in da.coords and da[dim].dtype.kind in "USO"


def _plane(ds, var: str, x: Hashable, y: Hashable, what: str) -> xr.DataArray:
    """``ds[var]`` checked to have exactly the dims (x, y), in any order."""
    da = _get(ds, var)
    if x == y:
        raise ValueError(f"{what}: x and y must differ (both {x!r})")
    _check_dims(da, [x, y], what)
    extra = [d for d in da.dims if d not in (x, y)]
    if extra:
        raise ValueError(_extra_dims_message(da, extra, (x, y), what))
    return da


def _extra_dims_message(da: xr.DataArray, extra, plane, what: str) -> str:
    first = extra[0]
    try:
        v = da[first].values[0]
        sel = f"ds.sel({first}={v.item() if hasattr(v, 'item') else v!r})"
    except Exception:  # noqa: BLE001 - only used to build a message
        sel = f"ds.sel({first}=...)"
    sizes = ", ".join(f"{d}: {da.sizes[d]}" for d in extra)
    return (f"{what} works on the ({', '.join(map(str, plane))}) plane, but {da.name!r} also "
            f"has dims {sizes}; choose one value of each first, e.g. {sel} or "
            f"ds.isel({first}=0)")


def _ne(a, b):
    """Elementwise 'differs' for numpy or dask arrays; NaN equals NaN."""
    d = a != b
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        d = d & ~(np.isnan(a) & np.isnan(b))
    return d


def _pad(m, axis: int, before: int, after: int):
    width = [(0, 0)] * m.ndim
    width[axis] = (before, after)
    return np.pad(m, width)  # constant False; dispatches to dask.array.pad


def _shift_differs(a, e: int, sides: str = "both"):
    """Cells of ``a`` (..., nx, ny) whose value differs from the cell ``e`` away along the last
    two axes. ``sides="both"``: either side; ``"upper"``: only the +e neighbour (so each pair is
    marked once, on its lower-index cell). Returns (..., nx, ny) bool (numpy or dask)."""
    dx = _ne(a[..., e:, :], a[..., :-e, :])  # (..., nx-e, ny): cell i vs i+e along x
    dy = _ne(a[..., :, e:], a[..., :, :-e])
    out = _pad(dx, -2, 0, e) | _pad(dy, -1, 0, e)
    if sides == "both":
        out = out | _pad(dx, -2, e, 0) | _pad(dy, -1, e, 0)
    return out


def _apply_plane(func, da: xr.DataArray, x, y, **kwargs) -> xr.DataArray:
    return xr.apply_ufunc(func, da, kwargs=kwargs, input_core_dims=[[x, y]],
                          output_core_dims=[[x, y]], dask="allowed")


def _fit_line(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ys vs xs and its standard error (NaN with < 3 points)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.size < 2:
        return float("nan"), float("nan")
    xm, ym = xs.mean(), ys.mean()
    sxx = np.sum((xs - xm) ** 2)
    slope = np.sum((xs - xm) * (ys - ym)) / sxx
    if xs.size < 3:
        return float(slope), float("nan")
    resid = ys - ym - slope * (xs - xm)
    return float(slope), float(np.sqrt(np.sum(resid**2) / (xs.size - 2) / sxx))


def _default_scales(n: int, min_boxes: int) -> np.ndarray:
    """Powers of two 1, 2, 4, ... up to n // min_boxes (at least [1] and, if possible, [1, 2])."""
    top = max(n // min_boxes, min(2, n - 1), 1)
    return 2 ** np.arange(int(np.floor(np.log2(top))) + 1)


# ----------------------------------------------------------------------------- outcomes


def outcomes(ds: xr.Dataset | xr.DataArray, var: str = "outcome") -> xr.DataArray:
    """Names of the outcome codes, e.g. ``"converged"``, as a categorical string array.

    Args:
      ds: result Dataset (or the outcome DataArray itself).
      var: outcome-coded variable (int with ``flag_values`` / ``flag_meanings``).
    Returns:
      DataArray of str (``<U..``), same dims and coords as ``ds[var]``; codes not in the
      flags (or NaN) read ``"unknown"``. Lazy when ``ds`` is dask-backed.
    """
    da = _get(ds, var)
    codes, names = _flags(da)
    dtype = np.dtype(f"<U{max(len(n) for n in [*names, _UNKNOWN])}")

    def lookup(a):
        a = np.asarray(a)
        out = np.full(a.shape, _UNKNOWN, dtype)
        for c, name in zip(codes, names):
            out[a == c] = name
        return out

    res = xr.apply_ufunc(lookup, da, dask="parallelized", output_dtypes=[dtype])
    res.attrs = {"long_name": f"{da.attrs.get('long_name', da.name)} (names)"}
    return res.rename(da.name)


def wilson_interval(k, n, z: float = 1.96):
    """Wilson score interval for a binomial proportion k/n.

    Args:
      k: successes, n: trials (numbers, numpy arrays or DataArrays, broadcastable).
      z: normal quantile (1.96 for a 95% interval).
    Returns:
      (lower, upper) float arrays of the broadcast shape (DataArrays if an input is one),
      within [0, 1], exactly 0 where k == 0 and 1 where k == n; NaN where n == 0.
    """
    valid = n > 0
    m = xr.where(valid, n, np.nan)
    p = k / m
    z2 = z * z
    denom = 1.0 + z2 / m
    center = (p + z2 / (2.0 * m)) / denom
    half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
    lower = xr.where(valid, xr.where(k == 0, 0.0, np.clip(center - half, 0.0, 1.0)), np.nan)
    upper = xr.where(valid, xr.where(k == n, 1.0, np.clip(center + half, 0.0, 1.0)), np.nan)
    return lower, upper


def _counts(da: xr.DataArray, over: Sequence[Hashable]) -> xr.DataArray:
    """Count of each code over ``over``: (outcome, *kept dims) int64, lazy on dask."""
    codes, names = _flags(da)
    counts = xr.concat([(da == c).sum(over, dtype=np.int64) for c in codes], dim=OUTCOME_DIM,
                       coords="minimal", compat="override", join="outer")
    counts.attrs = {}
    return counts.assign_coords({OUTCOME_DIM: names, "code": (OUTCOME_DIM, codes)})


def fractions(ds: xr.Dataset | xr.DataArray, over=None, by=None, z: float = 1.96,
              var: str = "outcome") -> xr.Dataset:
    """Fraction of runs ending in each outcome, with Wilson score intervals.

    The result has a new ``outcome`` dimension (one entry per flag, labelled by name, with
    the integer ``code`` as a coordinate), so ``fr.fraction.sel(outcome="converged")``
    reads naturally.

    Args:
      ds: result Dataset (or the outcome DataArray).
      over: dims to reduce over; default all dims not in ``by``.
      by: dims to keep (only used when ``over`` is None); default none, i.e. reduce all.
      z: normal quantile of the interval (1.96: 95%).
      var: outcome-coded variable.
    Returns:
      Dataset with ``fraction``, ``lower``, ``upper`` (outcome, *kept) float64,
      ``count`` (outcome, *kept) int64 and ``n`` (*kept) int64, the number of runs with a
      known code. Lazy when ``ds`` is dask-backed (call ``.compute()``).
    """
    da = _get(ds, var)
    by, over = _as_dims(by) or [], _as_dims(over)
    _check_dims(da, by, "fractions(by=...)")
    if over is None:
        over = [d for d in da.dims if d not in by]
    else:
        _check_dims(da, over, "fractions(over=...)")
        both = [d for d in over if d in by]
        if both:
            raise ValueError(f"fractions: {both} given in both over= and by=")
    counts = _counts(da, over)
    kept = [d for d in da.dims if d not in over]
    counts = counts.transpose(OUTCOME_DIM, *kept)
    n = counts.sum(OUTCOME_DIM)
    lower, upper = (b.transpose(*counts.dims) for b in wilson_interval(counts, n, z))
    frac = counts / xr.where(n > 0, n, np.nan)
    out = xr.Dataset({
        "fraction": frac.assign_attrs(long_name="fraction of runs"),
        "lower": lower.assign_attrs(long_name=f"Wilson score interval lower bound (z={z})"),
        "upper": upper.assign_attrs(long_name=f"Wilson score interval upper bound (z={z})"),
        "count": counts.assign_attrs(long_name="number of runs"),
        "n": n.assign_attrs(long_name="number of runs with a known outcome"),
    })
    out.attrs.update(z=z, reduced_over=" ".join(map(str, over)), variable=str(da.name))
    return out


def summary(ds: xr.Dataset | xr.DataArray, by=None, var: str = "outcome") -> str:
    """Text table of outcome fractions, overall and per value of each categorical axis.

    Args:
      ds: result Dataset (numpy- or dask-backed; one pass over the data).
      by: dims to break down by; default every dim with a string coordinate
        (``optimizer``, ``activation``, ...).
      var: outcome-coded variable.
    Returns:
      str: a header line then one row per group: n and the percentage of each outcome
      that occurs at least once.
    """
    da = _get(ds, var)
    by = _as_dims(by)
    if by is None:
        by = [d for d in da.dims if _is_categorical(da, d)]
    _check_dims(da, by, "summary(by=...)")
    counts = _counts(da, [d for d in da.dims if d not in by]).compute()
    total = counts.sum(by) if by else counts
    shown = [i for i, c in enumerate(total.values) if c > 0] or list(range(total.sizes[OUTCOME_DIM]))
    names = [str(v) for v in counts[OUTCOME_DIM].values]

    rows: list[tuple[str, np.ndarray]] = [("all", total.values)]
    for d in by:
        per = counts.sum([b for b in by if b != d]).transpose(d, OUTCOME_DIM)
        for v, c in zip(per[d].values, per.values):
            label = f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)
            rows.append((f"{d}={label}", c))

    ntot = int(total.values.sum())
    dims = ", ".join(f"{d}: {s}" for d, s in da.sizes.items())
    problem = getattr(ds, "attrs", {}).get("problem")
    head = f"{var} of {ntot:,} runs" + (f" ({problem})" if problem else "") + f" [{dims}]"
    width = max(len(r[0]) for r in rows)
    cols = [max(len(names[i]), 6) for i in shown]
    lines = [head, f"{'':<{width}}  {'n':>9}  " + "  ".join(
        f"{names[i]:>{w}}" for i, w in zip(shown, cols))]
    for label, c in rows:
        n = int(c.sum())
        cells = [(f"{100.0 * c[i] / n:.1f}%" if n else "-") for i in shown]
        lines.append(f"{label:<{width}}  {n:>9,}  " + "  ".join(
            f"{s:>{w}}" for s, w in zip(cells, cols)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- boundaries


def boundary(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable,
             var: str = "outcome") -> xr.DataArray:
    """Cells whose value differs from at least one of their 4 neighbours in the (x, y) plane.

    Both cells on either side of an edge are marked, so a straight edge gives a band two
    cells wide. Neighbours are by index (the coordinate spacing is ignored); NaN equals NaN.

    Args:
      ds: result Dataset (or the DataArray); x, y: two of its dims.
      var: variable whose changes define the boundary.
    Returns:
      bool DataArray with the dims (order kept) and coords of ``ds[var]``; lazy on dask.
    """
    da = _get(ds, var)
    if x == y:
        raise ValueError(f"boundary: x and y must differ (both {x!r})")
    _check_dims(da, [x, y], "boundary")
    mask = _apply_plane(_shift_differs, da, x, y, e=1, sides="both").transpose(*da.dims)
    return mask.rename("boundary").assign_attrs(
        long_name=f"{da.name} differs from a neighbour in the ({x}, {y}) plane")


def fractal_dimension(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable,
                      var: str = "outcome", sizes: Sequence[int] | None = None,
                      fit_range: tuple[int, int] | None = None) -> dict:
    """Box-counting dimension of the boundary in the (x, y) plane.

    The boundary is the set of edges between 4-neighbour cells of different value; each edge
    is given to its lower-index cell, so a straight edge is one cell thick and counts exactly
    L/s boxes at every scale. N(s) = number of s x s boxes (grid aligned, the last one padded)
    containing boundary; the dimension is the least-squares slope of log N vs log(1/s).

    Args:
      ds: result Dataset (or DataArray) whose ``var`` has exactly the dims x and y.
      var: variable whose changes define the boundary.
      sizes: box sides in cells; default 1, 2, 4, ... up to min(nx, ny) / 4.
      fit_range: (smallest, largest) box side used in the fit; default all with N > 0.
    Returns:
      dict: ``dimension`` float, ``stderr`` float (of the slope; NaN with < 3 sizes),
      ``sizes`` (S,) int, ``counts`` (S,) int, ``fit_range`` (int, int).
      Dimension is NaN when fewer than 2 sizes see any boundary.
    """
    da = _plane(ds, var, x, y, "fractal_dimension")
    n = min(da.sizes[x], da.sizes[y])
    sizes = _default_scales(n, 4) if sizes is None else np.asarray(sizes, int)
    if sizes.size == 0 or np.any(sizes < 1):
        raise ValueError(f"fractal_dimension: box sizes must be >= 1, got {list(sizes)}")
    thin = _apply_plane(_shift_differs, da, x, y, e=1, sides="upper").astype(np.int8)
    per_size = [thin if s == 1 else
                thin.coarsen({x: int(s), y: int(s)}, boundary="pad").sum()
                for s in sizes]
    counts = xr.concat([(m > 0).sum() for m in per_size], dim="size").values.astype(np.int64)
    lo, hi = fit_range if fit_range is not None else (sizes.min(), sizes.max())
    use = (counts > 0) & (sizes >= lo) & (sizes <= hi)
    slope, err = _fit_line(np.log(1.0 / sizes[use]), np.log(counts[use]))
    used = sizes[use]
    return {"dimension": slope, "stderr": err, "sizes": sizes, "counts": counts,
            "fit_range": (int(used.min()), int(used.max())) if used.size else (int(lo), int(hi))}


def uncertainty_exponent(ds: xr.Dataset | xr.DataArray, x: Hashable, y: Hashable,
                         var: str = "outcome", eps: Sequence[int] | None = None) -> dict:
    """Uncertainty exponent of the basin boundary (Grebogi, McDonald, Ott & Yorke 1983).

    f(eps) is the fraction of grid points whose value differs from that of at least one point
    ``eps`` cells away along x or y (either side, inside the grid). For a boundary of
    box dimension D in the plane f ~ eps**alpha with alpha = 2 - D; alpha is the
    least-squares slope of log f vs log eps.

    Args:
      ds: result Dataset (or DataArray) whose ``var`` has exactly the dims x and y.
      var: outcome-coded (or any) variable.
      eps: offsets in cells, each in [1, min(nx, ny)); default 1, 2, 4, ... up to
        min(nx, ny) / 8.
    Returns:
      dict: ``eps`` (E,) int, ``fraction`` (E,) float, ``exponent`` float (alpha),
      ``dimension`` float (2 - alpha), ``stderr`` float (of both; NaN with < 3 points).
    """
    da = _plane(ds, var, x, y, "uncertainty_exponent")
    n = min(da.sizes[x], da.sizes[y])
    eps = _default_scales(n, 8) if eps is None else np.asarray(eps, int)
    if eps.size == 0 or np.any(eps < 1) or np.any(eps >= n):
        raise ValueError(f"uncertainty_exponent: eps must be in [1, {n}), got {list(eps)}")
    fr = xr.concat([_apply_plane(_shift_differs, da, x, y, e=int(e), sides="both").mean()
                    for e in eps], dim="eps").values.astype(float)
    use = fr > 0
    alpha, err = _fit_line(np.log(eps[use]), np.log(fr[use]))
    return {"eps": eps, "fraction": fr, "exponent": alpha, "dimension": 2.0 - alpha,
            "stderr": err}
