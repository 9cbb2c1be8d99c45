"""Adaptive boundary refinement: run a coarse grid, then re-run only the cells next to an
outcome change at twice the resolution, down to ``levels`` levels (a quadtree).

Every sample keeps its coordinates, its position on the finest lattice and its level. The
number of boundary cells per level gives the boundary's box-counting dimension directly
(a smooth curve doubles its count when the cells halve: dimension 1).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import xarray as xr

from .analysis import _fit_line
from .config import SpecError, parse_spec, load_spec_dict, apply_overrides, spec_folder


def _lattice(axis, levels: int):
    """Coordinate function on the finest lattice: index i (0..(n-1)*2^L) -> value."""
    vals = np.asarray(axis.values[0], float)
    n = vals.size
    if axis.spacing not in ("linear", "log") or n < 2:
        raise SpecError(f"refine: axis {axis.name!r} must be a linspace or logspace with at least 2 values")
    step = 2 ** levels
    if axis.spacing == "log":
        lo, hi = np.log10(vals[0]), np.log10(vals[-1])
        return lambda i: 10 ** (lo + (hi - lo) * np.asarray(i) / ((n - 1) * step)), (n - 1) * step + 1
    return lambda i: vals[0] + (vals[-1] - vals[0]) * np.asarray(i) / ((n - 1) * step), (n - 1) * step + 1


def refine(spec: Any, x: str, y: str, levels: int, *, var: str = "outcome", set: list[str] | None = None,
           chunk_size: int | None = None, dtype: str | None = None, progress: bool | None = False,
           out: str | os.PathLike | None = None, overwrite: bool = False) -> xr.Dataset:
    """Refine the (x, y) boundary of a sweep adaptively.

    Args:
      spec: dict / path / Spec whose ``x`` and ``y`` axes (linspace or logspace) give the coarse
        grid; every other axis must have a single value.
      levels: number of halvings of the coarse cells (the finest cell is 2^-levels of a coarse one).
      var: the variable whose changes mark the boundary (default: outcome), or an outcome name
        such as "diverged" to refine only the edge of that outcome's region.
    Returns:
      Dataset on a ``sample`` dimension: coordinates x, y, ``level``, ``ix``/``iy`` (finest lattice
      indices) and every result variable; attrs ``trajectories_used``, ``full_grid``, ``ratio``,
      ``dimension``, ``dimension_stderr``, ``boundary_cells`` (per level).
    """
    from .api import run
    from .io import check_writable, save

    if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 20:
        raise SpecError(f"--levels {levels!r}: must be an integer in [0, 20]")
    raw = apply_overrides(load_spec_dict(spec), set)
    base = parse_spec(raw, folder=spec_folder(spec))
    if out is not None:
        check_writable(out, overwrite=overwrite)
    axes = {a.name: a for a in base.axes}
    for name, flag in ((x, "--x"), (y, "--y")):
        if name not in axes:
            raise SpecError(f"refine {flag} {name}: not an axis of the spec; axes: {', '.join(axes) or 'none'}")
    if x == y:
        raise SpecError("refine: --x and --y must be different axes")
    others = [a.name for a in base.axes if a.name not in (x, y) and a.size > 1]
    if others:
        raise SpecError(f"refine: axes {', '.join(others)} have several values; refine one combination at a time "
                        "(--set axes.NAME=[value])")
    fx, nx = _lattice(axes[x], levels)
    fy, ny = _lattice(axes[y], levels)
    step = 2 ** levels
    axes_raw = dict(raw.get("axes", {}))
    # the raw keys of the x and y axes: an axis is named by the option it resolves to (axes."train.lr" is lr,
    # a function's axes.c is constants.c); every key but random ones (one shared 'sample' axis) is one axis, in order
    keys = [k for k, f in axes_raw.items() if k != "samples" and not (isinstance(f, dict) and ("uniform" in f
                                                                                              or "normal" in f))]
    for k, a in zip(keys, [a for a in base.axes if a.spacing != "random"]):
        if a.name in (x, y):
            del axes_raw[k]
    t0 = time.perf_counter()
    known: dict[tuple[int, int], int] = {}
    values: dict[str, list] = {}
    level_of: dict[tuple[int, int], int] = {}

    def evaluate(points: list[tuple[int, int]], level: int) -> None:
        points = [p for p in points if p not in known]
        if not points:
            return
        ix = np.array([p[0] for p in points])
        iy = np.array([p[1] for p in points])
        pts = {**raw, "axes": {**axes_raw, "refine_point": {"zip": {x: fx(ix).tolist(), y: fy(iy).tolist()}}}}
        ds = run(parse_spec(pts, folder=base.folder), chunk_size=chunk_size, dtype=dtype, progress=progress)
        flat = {k: np.asarray(ds[k].values).reshape(-1) for k in ds.data_vars if "traj" not in ds[k].dims}
        for j, p in enumerate(points):
            known[p] = len(level_of)
            level_of[p] = level
            for k, arr in flat.items():
                values.setdefault(k, []).append(arr[j])

    # level 0: the coarse grid
    coarse = [(i * step, j * step) for i in range(axes[x].size) for j in range(axes[y].size)]
    evaluate(coarse, 0)
    cells = [(i * step, j * step) for i in range(axes[x].size - 1) for j in range(axes[y].size - 1)]
    boundary_counts = []
    side = step
    from .outcomes import Outcome

    names = {o.name.lower(): int(o) for o in Outcome}
    for level in range(levels + 1):
        if var in names:
            code = np.asarray(values["outcome"]) == names[var]
        elif var in values:
            code = np.asarray(values[var])
        else:
            raise SpecError(f"refine --var {var}: not a result variable or outcome name; "
                            f"one of {', '.join(list(values) + list(names))}")

        def mixed(c, s=side):
            corners = [known[(c[0] + a, c[1] + b)] for a in (0, s) for b in (0, s)]
            return len({code[k].item() for k in corners}) > 1

        flagged = [c for c in cells if mixed(c)]
        boundary_counts.append(len(flagged))
        if level == levels or not flagged:
            break
        half = side // 2
        new_points, new_cells = [], []
        for c in flagged:
            for a in (0, half):
                for b in (0, half):
                    new_cells.append((c[0] + a, c[1] + b))
            new_points += [(c[0] + a, c[1] + b) for a in (0, half, side) for b in (0, half, side)]
        evaluate(list(dict.fromkeys(new_points)), level + 1)
        cells, side = new_cells, half
    order = sorted(known, key=known.get)
    ix = np.array([p[0] for p in order])
    iy = np.array([p[1] for p in order])
    counts = np.array(boundary_counts, float)
    use = np.flatnonzero(counts > 0)
    use = use[1:] if use.size > 3 else use  # the coarsest level undercounts a curve
    dim, err = _fit_line(use * np.log(2.0), np.log(counts[use])) if use.size >= 2 else (float("nan"),) * 2
    n_used = len(order)
    full = nx * ny
    data = {k: ("sample", np.asarray(v)) for k, v in values.items()}
    coords = {x: ("sample", fx(ix), {"spacing": axes[x].spacing}), y: ("sample", fy(iy), {"spacing": axes[y].spacing}), "ix": ("sample", ix), "iy": ("sample", iy),
              "level": ("sample", np.array([level_of[p] for p in order]))}
    attrs = {"refine_x": x, "refine_y": y, "levels": levels, "trajectories_used": n_used, "full_grid": full,
             "ratio": full / n_used, "dimension": dim, "dimension_stderr": err,
             "boundary_cells": counts.astype(int).tolist(), "wall_time_s": time.perf_counter() - t0,
             "spec": base.to_toml(), "spec_hash": base.hash(), "problem": base.problem,
             "title": f"adaptive refinement of the ({x}, {y}) boundary, {levels} levels"}
    res = xr.Dataset(data, coords=coords, attrs=attrs)
    from .io import var_attrs

    for k in res.data_vars:
        res[k].attrs.update(var_attrs(k))
    if out is not None:
        save(res, out, overwrite=overwrite)
    return res


def to_grid(ds: xr.Dataset, var: str = "outcome") -> xr.DataArray:
    """The refined samples on the finest lattice, each cell filled from the nearest finer-or-equal
    sample of its quadtree cell (for drawing): (ix, iy) -> value, NaN where never sampled."""
    nx, ny = int(ds.ix.max()) + 1, int(ds.iy.max()) + 1
    grid = np.full((nx, ny), np.nan)
    order = np.argsort(np.asarray(ds.level))
    lv = np.asarray(ds.level)[order]
    L = int(ds.attrs["levels"])
    ix, iy = np.asarray(ds.ix)[order], np.asarray(ds.iy)[order]
    val = np.asarray(ds[var], float)[order]
    for i, j, v, l in zip(ix, iy, val, lv):
        r = 2 ** (L - l) // 2
        grid[max(0, i - r): i + r + 1, max(0, j - r): j + r + 1] = v
    return xr.DataArray(grid, dims=("ix", "iy"))

