"""Figures of result Datasets: basin maps, convergence maps, outcome fractions, boundaries,
recorded trajectories and loss curves.

matplotlib is imported inside the functions only, so ``import sweep`` works without it.
Every function accepts ``ax=None`` (a new figure is made) and returns the main artist
(a ``QuadMesh`` for maps, a ``LineCollection`` for paths/curves), the ``Axes`` for
``fractions_plot``, or the ``Figure`` for a faceted ``basin_map``; ``save`` accepts any of
these. Outcome codes are always drawn in ``sweep.outcomes.COLORS``. Nothing calls
``plt.show``; on a machine without a display the Agg backend is selected.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import xarray as xr

from . import analysis
from .outcomes import COLORS, Outcome

NEVER_COLOR = "#d4d4d4"
"""Colour of cells that never converged (``converge_step == -1``) in ``convergence_map``."""

_OTHER_COLOR = "#777777"
_SAVE_FORMATS = ("png", "svg", "pdf")


# ----------------------------------------------------------------------------- helpers


def _pyplot():
    """matplotlib.pyplot, choosing Agg first when no backend is set and there is no display."""
    import matplotlib

    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and sys.platform.startswith("linux")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax, figsize=(5.8, 4.4)):
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _color(code) -> str:
    try:
        return COLORS[Outcome(int(code))]
    except (ValueError, TypeError):
        return _OTHER_COLOR


def _is_coded(da: xr.DataArray) -> bool:
    return "flag_values" in da.attrs or str(da.name).endswith("outcome")


def _label(da: xr.DataArray, name: Hashable) -> str:
    attrs = da[name].attrs if name in da.coords else {}
    units = attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def _axis(da: xr.DataArray, dim: Hashable):
    """Cell edges of ``dim`` for pcolormesh: (edges (n+1,) float, centers (n,), tick labels or
    None for a categorical coord, log bool)."""
    n = da.sizes[dim]
    if dim not in da.coords:
        c = np.arange(n, dtype=float)
        return np.arange(n + 1) - 0.5, c, None, False
    coord = da[dim]
    if coord.dtype.kind in "USO":
        c = np.arange(n, dtype=float)
        return np.arange(n + 1) - 0.5, c, [str(v) for v in coord.values], False
    v = np.asarray(coord.values, float)
    log = coord.attrs.get("spacing") == "log" and bool(np.all(v > 0))
    t = np.log10(v) if log else v
    if n == 1:
        e = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mid = 0.5 * (t[1:] + t[:-1])
        e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
    return (10.0**e if log else e), v, None, log


def _setup_axis(ax, which: str, da, dim, ticks, log):
    set_label, set_scale = getattr(ax, f"set_{which}label"), getattr(ax, f"set_{which}scale")
    set_label(_label(da, dim))
    if log:
        set_scale("log")
    if ticks is not None:
        getattr(ax, f"set_{which}ticks")(np.arange(len(ticks)), ticks,
                                         rotation=30 if which == "x" and len(ticks) > 3 else 0)


def _sorted(da: xr.DataArray, dims) -> xr.DataArray:
    for d in dims:
        if d in da.coords and da[d].dtype.kind not in "USO" and da.sizes[d] > 1:
            v = da[d].values
            if np.any(np.diff(v.astype(float)) < 0):
                da = da.sortby(d)
    return da


def _scalar_title(da: xr.DataArray) -> str:
    parts = []
    for name, c in da.coords.items():
        if c.ndim == 0 and name not in da.dims:
            v = c.values.item()
            parts.append(f"{name} = {v:g}" if isinstance(v, float) else f"{name} = {v}")
    return ", ".join(parts)


def _outcome_handles(codes, names, present, counts=None, kind="patch"):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for c, name in zip(codes, names):
        if c not in present:
            continue
        label = name if counts is None else f"{name} ({counts[c]})"
        handles.append(Patch(facecolor=_color(c), edgecolor="none", label=label) if kind == "patch"
                       else Line2D([], [], color=_color(c), lw=1.5, label=label))
    return handles


def _legend_right(ax, handles, title=None):
    return ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     frameon=False, title=title, fontsize="small", title_fontsize="small")


def _check_plane_dims(da: xr.DataArray, plane, what: str, hint: str = ""):
    analysis._check_dims(da, [d for d in plane if d is not None], what)
    extra = [d for d in da.dims if d not in plane]
    if extra:
        raise ValueError(analysis._extra_dims_message(da, extra, [p for p in plane if p], what)
                         + hint)


def _code_mesh(ax, da: xr.DataArray, x, y):
    """pcolormesh of an outcome-coded 2-D DataArray; returns (mesh, codes present)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    codes, names = analysis._flags(da)
    da = _sorted(da, (x, y))
    xe, _, xt, xlog = _axis(da, x)
    ye, _, yt, ylog = _axis(da, y)
    c = np.asarray(da.transpose(y, x).values)
    idx = np.full(c.shape, np.nan)
    for i, code in enumerate(codes):
        idx[c == code] = i
    cmap = ListedColormap([_color(k) for k in codes]).with_extremes(bad="white")
    norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes))
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(idx), cmap=cmap, norm=norm,
                         shading="flat", rasterized=True)
    _setup_axis(ax, "x", da, x, xt, xlog)
    _setup_axis(ax, "y", da, y, yt, ylog)
    present = {int(k) for k in np.unique(c[np.isfinite(c)]) if k in codes} if c.size else set()
    return mesh, present


def _value_mesh(ax, da: xr.DataArray, x, y):
    """pcolormesh of a continuous 2-D DataArray with a colourbar (log when positive and wide)."""
    from matplotlib.colors import LogNorm

    da = _sorted(da, (x, y))
    xe, _, xt, xlog = _axis(da, x)
    ye, _, yt, ylog = _axis(da, y)
    c = np.asarray(da.transpose(y, x).values, float)
    fin = c[np.isfinite(c)]
    norm = None
    if fin.size and fin.min() > 0 and fin.max() / fin.min() > 1e3:
        norm = LogNorm(fin.min(), fin.max())
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(c), norm=norm, shading="flat",
                         rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label=_var_label(da))
    _setup_axis(ax, "x", da, x, xt, xlog)
    _setup_axis(ax, "y", da, y, yt, ylog)
    return mesh


def _var_label(da: xr.DataArray) -> str:
    name = da.attrs.get("long_name", da.name)
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


# ----------------------------------------------------------------------------- maps


def basin_map(ds: xr.Dataset, x: Hashable, y: Hashable, facet: Hashable | None = None,
              var: str = "outcome", ax=None, title: str | None = None):
    """Basin-of-attraction map: one colour per outcome over the (x, y) plane.

    Args:
      ds: result Dataset whose ``var`` has the dims x, y (and ``facet``) and no others;
        select the rest first (``ds.sel(lr=0.01)``, ``ds.isel(seed=0)``). For random-sample
        sweeps, x and y may be coords on the ``sample`` dim: points are scattered instead.
      x, y: dims (or sample coords) drawn across and up; coords with ``spacing="log"`` are
        drawn on log axes, string coords as labelled categories.
      facet: a dim to split over: one subplot per value (a row, wrapped after 4).
      var: outcome-coded variable (COLORS, legend of the codes present); any other variable
        is drawn with a continuous colour map and a colourbar.
      ax: Axes to draw in (not with ``facet``); default a new figure.
      title: default the scalar coords left by ``.sel`` (e.g. ``lr = 0.01``).
    Returns:
      QuadMesh (PathCollection for samples), or the Figure when ``facet`` is given.
    """
    da = analysis._get(ds, var)
    title = _scalar_title(da) if title is None else title
    if facet is not None:
        return _basin_facets(da, x, y, facet, title)
    if x not in da.dims and y not in da.dims and x in da.coords and y in da.coords:
        return _basin_scatter(da, x, y, ax, title)
    extra = [d for d in da.dims if d not in (x, y)]
    _check_plane_dims(da, (x, y), "basin_map", f", or pass facet={extra[0]!r}" if extra else "")
    fig, ax = _new_axes(ax)
    if _is_coded(da):
        mesh, present = _code_mesh(ax, da, x, y)
        codes, names = analysis._flags(da)
        _legend_right(ax, _outcome_handles(codes, names, present), title=str(var))
    else:
        mesh = _value_mesh(ax, da, x, y)
    if title:
        ax.set_title(title, fontsize="medium")
    return mesh


def _basin_facets(da, x, y, facet, title):
    _check_plane_dims(da, (x, y, facet), "basin_map")
    plt = _pyplot()
    n = da.sizes[facet]
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.8, 3.1 * nrows + 0.5),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    coded = _is_coded(da)
    present: set[int] = set()
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        sub = da.isel({facet: i})
        if coded:
            _, p = _code_mesh(ax, sub, x, y)
            present |= p
        else:
            _value_mesh(ax, sub, x, y)
        v = sub[facet].values.item() if facet in sub.coords else i
        ax.set_title(f"{facet} = {v:g}" if isinstance(v, float) else f"{facet} = {v}",
                     fontsize="medium")
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
    if coded:
        codes, names = analysis._flags(da)
        fig.legend(handles=_outcome_handles(codes, names, present), loc="outside right upper",
                   frameon=False, title=str(da.name), fontsize="small", title_fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _basin_scatter(da, x, y, ax, title):
    dims = tuple(dict.fromkeys(da[x].dims + da[y].dims))
    if len(dims) != 1:
        raise ValueError(f"basin_map: {x!r} and {y!r} are neither dims of {da.name!r} nor "
                         f"coords on one shared (sample) dim")
    _check_plane_dims(da, dims, "basin_map")
    fig, ax = _new_axes(ax)
    xv, yv = np.asarray(da[x].values), np.asarray(da[y].values)
    c = np.asarray(da.values)
    codes, names = analysis._flags(da)
    art = ax.scatter(xv, yv, c=[_color(k) for k in c], s=max(2.0, 3000.0 / max(c.size, 1)),
                     linewidths=0, rasterized=True)
    for which, name in (("x", x), ("y", y)):
        _setup_axis(ax, which, da, name, None, da[name].attrs.get("spacing") == "log")
    present = {int(k) for k in np.unique(c)}
    _legend_right(ax, _outcome_handles(codes, names, present), title=str(da.name))
    if title:
        ax.set_title(title, fontsize="medium")
    return art


def convergence_map(ds: xr.Dataset, x: Hashable, y: Hashable, ax=None, facet: Hashable | None = None):
    """Steps to converge (``converge_step``) over the (x, y) plane on a log colour scale.

    Cells that never converged (-1) are drawn in ``NEVER_COLOR`` grey; step 0 is drawn as 1.

    Args:
      ds: result Dataset whose ``converge_step`` (int32) has exactly the dims x, y (and ``facet``).
      x, y: dims drawn across and up (log axes for ``spacing="log"`` coords).
      ax: Axes to draw in (not with ``facet``); default a new figure.
      facet: a dim to split over: one panel per value (wrapped after 4), one colour scale for all.
    Returns:
      QuadMesh (with a labelled colourbar), or the Figure when ``facet`` is given.
    """
    da = analysis._get(ds, "converge_step")
    if facet is not None:
        return _convergence_facets(da, x, y, facet)
    _check_plane_dims(da, (x, y), "convergence_map",
                      f", or pass facet={[d for d in da.dims if d not in (x, y)][0]!r}"
                      if len(da.dims) == 3 and x in da.dims and y in da.dims else "")
    fig, ax = _new_axes(ax)
    mesh, never = _convergence_mesh(ax, da, x, y, _steps_norm(da))
    fig.colorbar(mesh, ax=ax, label="steps to converge (converge_step)")
    if never:
        _never_legend(ax)
    title = _scalar_title(da)
    if title:
        ax.set_title(title, fontsize="medium")
    return mesh


def _steps_norm(da: xr.DataArray):
    """One log colour scale for the converged cells of ``da`` (all facets together)."""
    from matplotlib.colors import LogNorm

    c = np.asarray(da.values, float)
    ok = c >= 0
    lo = max(1.0, float(c[ok].min())) if ok.any() else 1.0
    hi = max(1.0, float(c[ok].max())) if ok.any() else 10.0
    return LogNorm(lo, hi if hi > lo else lo * 10.0)


def _never_legend(ax):
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=NEVER_COLOR, label="never converged")],
              loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False, fontsize="small")


def _convergence_mesh(ax, da: xr.DataArray, x, y, norm):
    """pcolormesh of steps to converge of a 2-D DataArray; returns (mesh, any cell never converged)."""
    import matplotlib

    da = _sorted(da, (x, y))
    xe, _, xt, xlog = _axis(da, x)
    ye, _, yt, ylog = _axis(da, y)
    c = np.asarray(da.transpose(y, x).values, float)
    never = ~(c >= 0)
    show = np.where(never, np.nan, np.maximum(c, 1.0))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=NEVER_COLOR)
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(show), cmap=cmap, norm=norm, shading="flat", rasterized=True)
    _setup_axis(ax, "x", da, x, xt, xlog)
    _setup_axis(ax, "y", da, y, yt, ylog)
    return mesh, bool(never.any())


def _convergence_facets(da, x, y, facet):
    _check_plane_dims(da, (x, y, facet), "convergence_map")
    plt = _pyplot()
    n = da.sizes[facet]
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.8, 3.1 * nrows + 0.7),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    norm = _steps_norm(da)
    never, mesh = False, None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        sub = da.isel({facet: i})
        mesh, nv = _convergence_mesh(ax, sub, x, y, norm)
        never |= nv
        v = sub[facet].values.item() if facet in sub.coords else i
        ax.set_title(f"{facet} = {v:g}" if isinstance(v, float) else f"{facet} = {v}", fontsize="medium")
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
    fig.colorbar(mesh, ax=axes, label="steps to converge (converge_step)", shrink=0.9)
    if never:
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(facecolor=NEVER_COLOR, label="never converged")], loc="outside lower left",
                   frameon=False, fontsize="small")
    title = _scalar_title(da)
    if title:
        fig.suptitle(title)
    return fig


def fractions_plot(ds: xr.Dataset, x: Hashable, over=None, ax=None, z: float = 1.96):
    """Fraction of each outcome vs the coord x, with Wilson-interval error bars.

    Args:
      ds: result Dataset with an ``outcome`` variable having the dim x.
      x: dim on the horizontal axis (log for ``spacing="log"``, labelled categories for
        strings).
      over: dims pooled into each point; default every dim but x. Any dim in neither
        must be selected first.
      ax: Axes to draw in; default a new figure.
      z: normal quantile of the intervals (1.96: 95%).
    Returns:
      Axes (one errorbar line per outcome that occurs).
    """
    da = analysis._get(ds, "outcome")
    analysis._check_dims(da, [x], "fractions_plot")
    if over is not None:
        over = analysis._as_dims(over)
        _check_plane_dims(da, (x, *over), "fractions_plot")
    fr = analysis.fractions(da, over=over, by=None if over is not None else [x], z=z)
    fr = _sorted(fr.compute(), (x,))
    fig, ax = _new_axes(ax)
    _, pos, ticks, log = _axis(fr.fraction, x)
    codes = fr["code"].values
    for i, code in enumerate(codes):
        f = fr.fraction.isel(outcome=i).values
        if not np.nansum(f) > 0:
            continue
        lo, up = fr.lower.isel(outcome=i).values, fr.upper.isel(outcome=i).values
        ax.errorbar(pos, f, yerr=[f - lo, up - f], color=_color(code), marker="o", ms=3.5,
                    lw=1.3, capsize=2.5, label=str(fr.outcome.values[i]))
    _setup_axis(ax, "x", fr.fraction, x, ticks, log)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"fraction of runs (Wilson interval, z={z:g})")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if handles:
        _legend_right(ax, handles, title="outcome")
    n = fr.n.values
    ax.set_title(f"{int(n.min()):,} runs per point" if n.min() == n.max()
                 else f"{int(n.min()):,}-{int(n.max()):,} runs per point", fontsize="medium")
    return ax


def boundary_plot(ds: xr.Dataset, x: Hashable, y: Hashable, ax=None, var: str = "outcome"):
    """The boundary mask of ``analysis.boundary`` over the (x, y) plane (boundary in black).

    Args:
      ds: result Dataset whose ``var`` has exactly the dims x, y.
      x, y: dims drawn across and up. ax: Axes to draw in; default a new figure.
      var: variable whose changes define the boundary.
    Returns:
      QuadMesh.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    da = analysis._get(ds, var)
    _check_plane_dims(da, (x, y), "boundary_plot")
    mask = analysis.boundary(_sorted(da, (x, y)), x, y)
    fig, ax = _new_axes(ax)
    xe, _, xt, xlog = _axis(mask, x)
    ye, _, yt, ylog = _axis(mask, y)
    m = np.asarray(mask.transpose(y, x).values, np.int8)
    mesh = ax.pcolormesh(xe, ye, m, cmap=ListedColormap(["white", "black"]),
                         norm=BoundaryNorm([-0.5, 0.5, 1.5], 2), shading="flat",
                         rasterized=True)
    _setup_axis(ax, "x", mask, x, xt, xlog)
    _setup_axis(ax, "y", mask, y, yt, ylog)
    ax.set_title(f"boundary of {var}: {int(m.sum()):,} of {m.size:,} cells", fontsize="medium")
    return mesh


def tipping_plot(ds: xr.Dataset, other: xr.Dataset, ax=None, var: str = "outcome",
                 z: float = 1.96):
    """Where each outcome of ``ds`` goes in ``other`` (same grid): P(outcome in other | outcome in
    ds) of ``sweep.dynamics.tipping`` as a heat map, one row per outcome present in ``ds`` and one
    column per outcome present in ``other``, each cell labelled with its count.

    Args:
      ds, other: result Datasets on the same grid. ax: Axes to draw in; default a new figure.
      var: outcome-coded variable. z: normal quantile of the interval (as in ``tipping``).
    Returns:
      QuadMesh (its array is the probability, rows = ``from``, columns = ``to``).
    """
    from . import dynamics

    t = dynamics.tipping(ds, other, z=z, var=var)
    rows = [f for f in t["from"].values if int(t.n.sel({"from": f})) > 0]
    cols = [g for g in t["to"].values if int(t["count"].sel(to=g).sum()) > 0]
    sub = t.sel({"from": rows, "to": cols})
    fig, ax = _new_axes(ax, figsize=(1.2 * len(cols) + 2.6, 0.8 * len(rows) + 1.6))
    p = np.asarray(sub.probability.values, float)
    mesh = ax.pcolormesh(np.arange(len(cols) + 1) - 0.5, np.arange(len(rows) + 1) - 0.5, p,
                         cmap="Blues", vmin=0.0, vmax=1.0, shading="flat")
    cnt = np.asarray(sub["count"].values)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{cnt[i, j]:,}", ha="center", va="center", fontsize="small",
                    color="white" if p[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("outcome in the other sweep (to)")
    ax.set_ylabel("outcome in this sweep (from)")
    fig.colorbar(mesh, ax=ax, label="P(to | from)")
    ax.set_title(f"tipping of {var}: {int(cnt.sum() - np.trace(cnt)):,} of {int(cnt.sum()):,} "
                 "cells change", fontsize="medium")
    return mesh


# ----------------------------------------------------------------------------- trajectories


def _rec(ds: xr.Dataset, name: str) -> xr.DataArray:
    key = name if name.startswith("rec_") else f"rec_{name}"
    if key not in ds.variables:
        have = [v for v in ds.data_vars if str(v).startswith("rec_")]
        raise ValueError(
            f"no recorded variable {key!r} in the dataset (recorded: {have or 'none'}; "
            "add a [record] section to the spec to record trajectories)")
    da = ds[key]
    _check_plane_dims(da, ("traj", "step"), f"{key}")
    return da.transpose("traj", "step")


def _rec_codes(ds: xr.Dataset, n: int) -> np.ndarray:
    if "rec_outcome" in ds.variables:
        return np.asarray(ds["rec_outcome"].values).astype(np.int64).reshape(n)
    return np.full(n, -1, np.int64)


def trajectories(ds: xr.Dataset, x: str = "w", y: str = "b", ax=None, loss_fn=None,
                 levels=30):
    """Recorded parameter paths rec_<y> vs rec_<x>, coloured by outcome, starts marked.

    Args:
      ds: result Dataset with ``rec_<x>``, ``rec_<y>`` (traj, step) float (NaN after a run
        stopped) and optionally ``rec_outcome`` (traj,) int8.
      x, y: parameter names (``"w"`` or ``"rec_w"``).
      ax: Axes to draw in; default a new figure.
      loss_fn: optional ``loss_fn(X, Y) -> Z`` on numpy (G, G) grids; its contours are drawn
        underneath over the view.
      levels: contour levels: an int (that many, at quantiles of Z over the view) or a
        sequence of values.
    Returns:
      LineCollection, one polyline per trajectory. The view spans the starts and the ends of
      runs that did not diverge.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    rx, ry = _rec(ds, x), _rec(ds, y)
    X, Y = np.asarray(rx.values, float), np.asarray(ry.values, float)
    codes = _rec_codes(ds, X.shape[0])
    fig, ax = _new_axes(ax, figsize=(6.2, 5.0))
    lines, starts, keep_pts, colors = [], [], [], []
    for i in range(X.shape[0]):
        ok = np.isfinite(X[i]) & np.isfinite(Y[i])
        pts = np.column_stack([X[i, ok], Y[i, ok]])
        if not len(pts):
            continue
        lines.append(pts)
        colors.append(_color(codes[i]))
        starts.append(pts[0])
        keep_pts.append(pts[:1])
        if codes[i] not in (Outcome.DIVERGED, Outcome.NAN):
            keep_pts.append(pts[-1:])
    lc = LineCollection(lines, colors=colors, linewidths=0.9, alpha=0.85, zorder=2)
    ax.add_collection(lc, autolim=False)
    if starts:
        s = np.array(starts)
        ax.scatter(s[:, 0], s[:, 1], c=colors, s=14, marker="o", edgecolors="black",
                   linewidths=0.4, zorder=3)
        pts = np.concatenate(keep_pts)
        lo, hi = pts.min(0), pts.max(0)
        pad = np.where(hi > lo, 0.06 * (hi - lo), 0.5)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if loss_fn is not None:
        _loss_contours(ax, loss_fn, levels)
    ax.set_xlabel(_var_label(rx).replace("rec_", ""))
    ax.set_ylabel(_var_label(ry).replace("rec_", ""))
    fcodes, fnames = (analysis._flags(ds["rec_outcome"]) if "rec_outcome" in ds.variables
                      else ([], []))
    counts = {int(c): int((codes == c).sum()) for c in np.unique(codes)}
    handles = _outcome_handles(list(fcodes), fnames, set(counts), counts, kind="line")
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", ms=4,
                          label="start"))
    _legend_right(ax, handles, title="outcome")
    ax.set_title(f"{len(lines)} recorded trajectories", fontsize="medium")
    return lc


def _loss_contours(ax, loss_fn, levels, n: int = 200):
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    z = np.asarray(loss_fn(gx, gy), float)
    fin = z[np.isfinite(z)]
    if np.isscalar(levels) or np.ndim(levels) == 0:
        lv = np.unique(np.quantile(fin, np.linspace(0, 1, int(levels) + 2)[1:-1])) \
            if fin.size else np.array([])
    else:
        lv = np.asarray(levels, float)
    if lv.size < 2 or fin.min() == fin.max():
        return None
    return ax.contour(gx, gy, z, levels=lv, cmap="Greys_r", linewidths=0.5, alpha=0.6,
                      zorder=1)


def _pick(codes: np.ndarray, max_lines: int) -> np.ndarray:
    """Indices of at most ``max_lines`` trajectories, evenly spread within each outcome and
    each outcome represented (stratified, deterministic)."""
    n = codes.size
    if n <= max_lines:
        return np.arange(n)
    picked = []
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        k = max(1, int(round(max_lines * idx.size / n)))
        picked.append(idx[np.unique(np.linspace(0, idx.size - 1, min(k, idx.size)).round()
                                    .astype(int))])
    return np.sort(np.concatenate(picked))


def loss_curves(ds: xr.Dataset, ax=None, max_lines: int = 200):
    """Recorded loss vs step (log y), one line per trajectory coloured by outcome.

    Args:
      ds: result Dataset with ``rec_loss`` (traj, step) float (NaN after a run stopped),
        coordinate ``step`` int, and optionally ``rec_outcome`` (traj,) int8.
      ax: Axes to draw in; default a new figure.
      max_lines: at most this many lines, spread evenly within each outcome (every outcome
        present keeps at least one).
    Returns:
      LineCollection. Runs that stopped early get a dot where they stopped; non-positive
      losses are left out (log scale).
    """
    from matplotlib.collections import LineCollection

    da = _rec(ds, "loss")
    steps = np.asarray(da["step"].values if "step" in da.coords else np.arange(da.sizes["step"]),
                       float)
    codes_all = _rec_codes(ds, da.sizes["traj"])
    sel = _pick(codes_all, max_lines)
    L = np.asarray(da.isel(traj=sel).values, float)
    codes = codes_all[sel]
    fig, ax = _new_axes(ax)
    lines, colors = [], []
    for i in range(L.shape[0]):
        ok = np.isfinite(L[i]) & (L[i] > 0)
        if ok.any():
            lines.append(np.column_stack([steps[ok], L[i, ok]]))
            colors.append(_color(codes[i]))
    lc = LineCollection(lines, colors=colors, linewidths=0.8, alpha=0.7)
    ax.add_collection(lc, autolim=False)
    ends = [(ln[-1], c) for ln, c in zip(lines, colors) if ln[-1, 0] < steps.max()]
    if ends:  # runs that stopped early (a dead run may be a single point)
        ax.scatter([e[0][0] for e in ends], [e[0][1] for e in ends], c=[e[1] for e in ends],
                   s=10, zorder=3, linewidths=0)
    ax.set_yscale("log")
    if lines:
        pts = np.concatenate(lines)
        span = max(steps.max() - steps.min(), 1.0)
        ax.set_xlim(steps.min() - 0.02 * span, steps.max() + 0.02 * span)
        lo, hi = pts[:, 1].min(), pts[:, 1].max()
        ax.set_ylim(lo / 1.5, hi * 1.5 if hi > lo else lo * 10)
    ax.set_xlabel("step")
    ax.set_ylabel(_var_label(da).replace("rec_", ""))
    if "rec_outcome" in ds.variables:
        fcodes, fnames = analysis._flags(ds["rec_outcome"])
        counts = {int(c): int((codes_all == c).sum()) for c in np.unique(codes_all)}
        _legend_right(ax, _outcome_handles(list(fcodes), fnames, set(counts), counts,
                                           kind="line"), title="outcome")
    shown = f"{len(sel)} of {codes_all.size}" if len(sel) < codes_all.size else f"{len(sel)}"
    ax.set_title(f"loss of {shown} recorded trajectories", fontsize="medium")
    ax.grid(alpha=0.3, which="major")
    return lc


# ----------------------------------------------------------------------------- output


def _figure_of(obj):
    from matplotlib.figure import Figure

    fig = obj
    for _ in range(4):
        if isinstance(fig, Figure):
            return fig
        fig = getattr(fig, "figure", None)
    raise TypeError(f"save: expected a Figure, Axes or artist, got {type(obj).__name__}")


def save(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write a figure to PNG, SVG or PDF (by extension) at ``dpi`` and close it.

    Args:
      fig: a Figure, or anything drawn in one (Axes, QuadMesh, ...: what the plot functions
        return).
      path: output file; its extension picks the format (.png, .svg, .pdf).
      dpi: resolution (raster parts).
    Returns:
      Path written.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in _SAVE_FORMATS:
        raise ValueError(f"save: unsupported extension {path.suffix!r} of {str(path)!r}; "
                         f"use one of {', '.join('.' + f for f in _SAVE_FORMATS)}")
    fig = _figure_of(fig)
    try:
        fig.savefig(path, dpi=dpi, format=fmt, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path
