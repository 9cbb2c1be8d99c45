"""``sweep report``: one self-contained HTML page of a result (opens offline, no network).

The page is hand-written HTML + a little JavaScript (``report_page.PAGE``) over a JSON payload:
the outcome codes of every facet as base64 uint8 (drawn on a ``<canvas>`` in the engine's
``outcomes.COLORS``), the final loss (float32), converge step and event steps (int16/int32) for
the hover, the outcome fractions with Wilson intervals, the boundary's box-counting dimension
per facet, the recorded trajectories over loss contours, and the provenance. A
Content-Security-Policy ``default-src 'none'`` forbids every request, so nothing leaves the
machine. Grids over ``max_cells`` are shown in blocks of b x b cells, each drawn in its most
common outcome (the mode; ties go to the lower code) with the hover reading one real cell of
that outcome in the block; the page says so.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from . import analysis
from .outcomes import COLORS, MESSAGES, Outcome

MAX_CELLS = 2 ** 18  # cells shown (all facets together) before blocks are drawn instead of cells
MAX_PATHS, MAX_POINTS, CONTOUR_N = 200, 400, 64
MISSING = len(Outcome)  # page code of a cell without a valid outcome (drawn white)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _int_codec(a: np.ndarray) -> dict:
    """An integer grid as the smallest little-endian type that holds it (-1 kept as -1)."""
    a = np.asarray(a)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    kind = "i2" if -32768 <= lo and hi <= 32767 else "i4"
    return {"type": kind, "data": _b64(a.astype("<" + kind))}


def block_mode(codes: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mode of each f x f block over the last two axes (..., ny, nx) of an outcome-code array.

    Blocks at the far edges are partial (padding never counts). Ties go to the lower code.
    Returns (mode (..., ceil(ny/f), ceil(nx/f)) uint8, flat (ny*nx) index of the first cell of
    the block, in row-major order within it, whose code is the mode).
    """
    codes = np.asarray(codes)
    *lead, ny, nx = codes.shape
    by, bx = -(-ny // f), -(-nx // f)
    pad = np.full((*lead, by * f, bx * f), 255, np.uint8)
    pad[..., :ny, :nx] = codes
    blk = pad.reshape(*lead, by, f, bx, f).swapaxes(-3, -2).reshape(*lead, by, bx, f * f)
    counts = np.stack([(blk == c).sum(-1) for c in range(int(codes.max(initial=0)) + 1)], -1)
    mode = counts.argmax(-1).astype(np.uint8)
    first = (blk == mode[..., None]).argmax(-1)  # position inside the block
    iy = np.arange(by)[:, None] * f + first // f
    ix = np.arange(bx)[None, :] * f + first % f
    return mode, iy * nx + ix


def _offsets(rep: np.ndarray, nx: int, f: int) -> dict:
    """Each block's shown cell as its row-major offset inside the block (uint8 while f*f <= 256)."""
    off = ((rep // nx) % f) * f + (rep % nx) % f
    return {"type": "u1", "data": _b64(off.astype(np.uint8))} if f * f <= 256 else _int_codec(off.reshape(-1))


def _choose_axes(da: xr.DataArray, x, y) -> tuple[str, str]:
    numeric = [d for d in da.dims if not analysis._is_categorical(da, d) and da.sizes[d] > 1]
    for name, flag in ((x, "x"), (y, "y")):
        if name is not None and name not in da.dims:
            raise ValueError(f"report: {flag}={name!r} is not a dimension of the result; "
                             f"dimensions: {', '.join(map(str, da.dims))}")
    if x is None or y is None:
        rest = sorted((d for d in numeric if d not in (x, y)), key=lambda d: -da.sizes[d])
        x = x if x is not None else (rest.pop(0) if rest else None)
        y = y if y is not None else (rest.pop(0) if rest else None)
    if x is None or y is None or x == y:
        raise ValueError(f"report: the map needs two different dimensions; the result has "
                         f"{dict(da.sizes)}: pass x= and y= (sweep report --x DIM --y DIM)")
    return str(x), str(y)


def _coord_values(c: xr.DataArray) -> list:
    v = c.values
    return [str(s) for s in v] if v.dtype.kind in "USO" else [float(s) for s in v]


def _facet_label(dims, vals) -> str:
    return ", ".join(f"{d}={v:g}" if isinstance(v, float) else f"{d}={v}" for d, v in zip(dims, vals))


def _grid(ds: xr.Dataset, x: str, y: str, max_cells: int) -> dict:
    """The map's arrays in (facets..., y, x) order, blocked when larger than ``max_cells``."""
    da = analysis._get(ds, "outcome")
    facets = [str(d) for d in da.dims if d not in (x, y)]
    order = [*facets, y, x]
    raw = np.asarray(da.transpose(*order).values, np.float64)  # float: a missing code may read as NaN
    codes = np.where((raw >= 0) & (raw < len(Outcome)), np.nan_to_num(raw), MISSING).astype(np.uint8)
    nf = int(np.prod([ds.sizes[d] for d in facets])) if facets else 1
    ny, nx = ds.sizes[y], ds.sizes[x]
    f = 1
    while nf * (-(-ny // f)) * (-(-nx // f)) > max_cells and f < max(nx, ny):
        f += 1
    codes = codes.reshape(nf, ny, nx)
    if f > 1:
        mode, rep = block_mode(codes, f)
    else:
        mode, rep = codes, np.broadcast_to(np.arange(ny * nx).reshape(ny, nx), codes.shape)
    take = rep.reshape(nf, -1) + (np.arange(nf) * ny * nx)[:, None]

    def pick(name):
        return np.asarray(ds[name].transpose(*order).values).reshape(-1)[take.reshape(-1)]

    out = {"x": x, "y": y, "facets": facets, "block": f, "nx": int(mode.shape[-1]), "ny": int(mode.shape[-2]),
           "outcome": _b64(mode.astype(np.uint8)), "rep": _offsets(rep, nx, f) if f > 1 else None,
           "fields": [], "counts": [np.bincount(c.ravel(), minlength=MISSING + 1).tolist() for c in codes]}
    cells = [(n, "final loss") for n in ("final_loss",) if n in ds] + \
            [(n, n.replace("_", " ")) for n in ds.data_vars
             if (str(n) == "converge_step" or str(n).endswith("_step")) and ds[n].dims == da.dims]
    for name, label in cells:
        v = pick(name)
        enc = {"type": "f4", "data": _b64(v.astype("<f4"))} if v.dtype.kind == "f" else _int_codec(v)
        out["fields"].append({"name": str(name), "label": label, **enc})
    return out


def _dimensions(ds: xr.Dataset, x: str, y: str, facets: list[str], limit: int = 64) -> list:
    """Box-counting dimension of the outcome boundary for every facet (full resolution)."""
    da = analysis._get(ds, "outcome")
    shape = [ds.sizes[d] for d in facets]
    n = int(np.prod(shape)) if facets else 1
    if n > limit or min(ds.sizes[x], ds.sizes[y]) < 8:
        return []
    out = []
    for flat in range(n):
        idx = dict(zip(facets, np.unravel_index(flat, shape))) if facets else {}
        fd = analysis.fractal_dimension(da.isel({k: int(v) for k, v in idx.items()}), x, y)
        out.append({"d": _num(fd["dimension"]), "se": _num(fd["stderr"]),
                    "sizes": [int(s) for s in fd["sizes"]], "counts": [int(c) for c in fd["counts"]]})
    return out


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _fractions(ds: xr.Dataset) -> list:
    """Rows (group label, n, [(outcome, code, fraction, lower, upper)]) overall and per categorical value."""
    da = analysis._get(ds, "outcome")
    rows = []
    groups = [(None, None)] + [(d, v) for d in da.dims if analysis._is_categorical(da, d)
                               for v in da[d].values.tolist()]
    for dim, val in groups:
        sub = da if dim is None else da.sel({dim: val})
        fr = analysis.fractions(sub).load()
        cells = [(str(o), int(c), float(f), float(lo), float(hi)) for o, c, f, lo, hi, k in zip(
            fr.outcome.values, fr.code.values, fr.fraction.values, fr.lower.values, fr.upper.values,
            fr["count"].values) if k > 0]
        rows.append(("all runs" if dim is None else f"{dim}={val}", int(fr.n), cells))
    return rows


def _traj_facets(ds: xr.Dataset, ti: np.ndarray, facets: list[str]) -> list | None:
    """Flat facet index of each shown trajectory (from its ``traj_<axis>`` coordinates), or None."""
    if not all(f"traj_{d}" in ds.coords for d in facets):
        return None
    flat = np.zeros(ti.size, np.int64)
    for d in facets:
        pos = {v: i for i, v in enumerate(ds[d].values.tolist())}
        flat = flat * ds.sizes[d] + np.array([pos.get(v, 0) for v in ds[f"traj_{d}"].values[ti].tolist()])
    return flat.tolist()


def _trajectories(ds: xr.Dataset, x: str, y: str, facets: list[str]) -> dict | None:
    """Recorded paths of two parameters (thinned) and loss contour bands from the recorded losses."""
    params = [str(v)[4:] for v in ds.data_vars if str(v).startswith("rec_")
              and str(v) not in ("rec_loss", "rec_outcome") and set(ds[v].dims) == {"traj", "step"}]
    if len(params) < 2:
        return None
    prefer = [p for a in (x, y) for p in params if a.rstrip("0") == p]
    px, py = (prefer + [p for p in params if p not in prefer])[:2]
    X = np.asarray(ds[f"rec_{px}"].transpose("traj", "step").values, np.float64)
    Y = np.asarray(ds[f"rec_{py}"].transpose("traj", "step").values, np.float64)
    rc = np.asarray(ds["rec_outcome"].values, np.float64) if "rec_outcome" in ds else np.full(X.shape[0], -1.0)
    codes = np.where((rc >= 0) & (rc < len(Outcome)), np.nan_to_num(rc), MISSING).astype(int)
    ti = np.unique(np.linspace(0, X.shape[0] - 1, min(MAX_PATHS, X.shape[0])).astype(int))
    si = np.unique(np.linspace(0, X.shape[1] - 1, min(MAX_POINTS, X.shape[1])).astype(int))
    X, Y, codes, tf = X[ti][:, si], Y[ti][:, si], codes[ti], _traj_facets(ds, ti, facets)
    keep = np.isfinite(X) & np.isfinite(Y)
    ends = ~np.isin(codes, (Outcome.DIVERGED, Outcome.NAN))
    pts_x = np.concatenate([X[:, 0], np.where(keep, X, np.nan)[ends].ravel()])
    pts_y = np.concatenate([Y[:, 0], np.where(keep, Y, np.nan)[ends].ravel()])
    lo = np.array([np.nanmin(pts_x), np.nanmin(pts_y)])
    hi = np.array([np.nanmax(pts_x), np.nanmax(pts_y)])
    pad = np.where(hi > lo, 0.06 * (hi - lo), 0.5)
    lo, hi = lo - pad, hi + pad
    out = {"px": px, "py": py, "lo": lo.tolist(), "hi": hi.tolist(), "n": int(X.shape[0]),
           "steps": int(X.shape[1]), "of": int(ds.sizes["traj"]),
           "codes": _b64(codes.astype(np.uint8)), "facet": tf,
           "xs": _b64(np.where(keep, X, np.nan).astype("<f4")), "ys": _b64(np.where(keep, Y, np.nan).astype("<f4"))}
    if "rec_loss" in ds:
        out["bands"] = _contour_bands(ds, px, py, lo, hi)
    return out


def _contour_bands(ds, px, py, lo, hi, n=CONTOUR_N, levels=12):
    """Loss over the trajectory view from the recorded (param, loss) samples: each raster cell takes
    the loss of the nearest recorded point within 8 cells (else 255: no data), quantised into
    ``levels`` bands of log10 loss at quantiles over the view. Returns the (n, n) bands base64, rows bottom-up."""
    L = np.asarray(ds["rec_loss"].values, np.float64).ravel()
    X = np.asarray(ds[f"rec_{px}"].transpose("traj", "step").values, np.float64).ravel()
    Y = np.asarray(ds[f"rec_{py}"].transpose("traj", "step").values, np.float64).ravel()
    ok = np.isfinite(L) & np.isfinite(X) & np.isfinite(Y) & (L > 0)
    X, Y, L = X[ok], Y[ok], L[ok]
    if L.size < 4:
        return None
    if L.size > 20000:
        s = np.linspace(0, L.size - 1, 20000).astype(int)
        X, Y, L = X[s], Y[s], L[s]
    u = (X - lo[0]) / (hi[0] - lo[0]) * n
    v = (Y - lo[1]) / (hi[1] - lo[1]) * n
    c = np.arange(n) + 0.5
    best = np.full((n, n), np.inf)
    val = np.zeros((n, n))
    for row in range(n):  # rows of the raster, bottom-up
        d2 = (u[None, :] - c[:, None]) ** 2 + (v[None, :] - c[row]) ** 2
        j = d2.argmin(1)
        best[row], val[row] = d2[np.arange(n), j], np.log10(L[j])
    near = best <= 64.0  # within 8 raster cells of a recorded point
    edges = np.unique(np.quantile(val[near], np.linspace(0, 1, levels + 1)[1:-1]))
    band = np.searchsorted(edges, val).astype(np.uint8)
    band[~near] = 255
    return {"n": n, "levels": int(edges.size + 1), "data": _b64(band),
            "edges": [float(e) for e in edges]}


def _provenance(ds: xr.Dataset, source: str | None) -> dict:
    a = ds.attrs
    keys = ("sweep_version", "jax_version", "numpy_version", "xarray_version", "python_version", "backend",
            "devices", "device_count", "dtype", "created", "n_trajectories", "steps", "wall_time_s",
            "first_call_s", "compute_time_s", "trajectory_steps_per_s", "chunk_size", "compile_groups",
            "spec_hash", "outcome_thresholds")
    name = Path(source).name if source else "result.nc"
    spec = str(a.get("spec", ""))
    cmd = (f"cat > spec.toml <<'EOF'\n{spec.rstrip()}\nEOF\nsweep run spec.toml --out {name}" if spec
           else "(the file holds no spec: it was not written by sweep run)")
    return {"attrs": [(k, _fmt(a[k])) for k in keys if k in a], "spec": spec, "command": cmd, "file": name}


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.4g}" if abs(float(v)) < 1e5 else f"{float(v):,.0f}"
    return str(v)


def _axis_info(ds: xr.Dataset, d: str) -> dict:
    c = ds[d]
    return {"name": d, "values": _coord_values(c), "spacing": str(c.attrs.get("spacing", "")),
            "categorical": c.values.dtype.kind in "USO", "label": str(c.attrs.get("long_name", d))}


def report(ds: xr.Dataset | str | os.PathLike, path: str | os.PathLike | None = None, *, x: str | None = None,
           y: str | None = None, title: str | None = None, max_cells: int = MAX_CELLS,
           source: str | None = None) -> Path:
    """Write one self-contained HTML report of a result (no network, every byte inline).

    Args:
      ds: result Dataset, or the path of a result file.
      path: the HTML file to write; default the result's path with ``.html`` (``report.html``
        for an in-memory Dataset).
      x, y: dims drawn across and up; default the two largest numeric dims.
      title: page title; default the result's description or title.
      max_cells: cells shown over all facets before b x b blocks (outcome mode) are drawn.
      source: the result file's name shown in the reproduce command (default: from ``ds``).
    Returns:
      Path of the written HTML file.
    """
    from .report_page import render

    if not isinstance(ds, xr.Dataset):
        from .io import load

        source = source or str(ds)
        path = path or Path(ds).with_suffix(".html")
        ds = load(ds)
    source = source or ds.encoding.get("source")
    path = Path(path or (Path(source).with_suffix(".html") if source else "report.html"))
    grid_vars = [k for k in ds.data_vars if "traj" not in ds[k].dims and "step" not in ds[k].dims]
    da = analysis._get(ds, "outcome")
    x, y = _choose_axes(da, x, y)
    grid = _grid(ds[grid_vars], x, y, int(max_cells))
    spec_text = str(ds.attrs.get("spec", ""))
    try:
        from .config import tomllib

        desc = tomllib.loads(spec_text).get("description") if spec_text else None
    except Exception:  # noqa: BLE001 - a title is not worth failing the page for
        desc = None
    data = {
        "title": title or desc or str(ds.attrs.get("title", "sweep result")),
        "axes": {d: _axis_info(ds, str(d)) for d in da.dims},
        "grid": grid,
        "outcomes": [{"code": int(o), "name": o.name.lower(), "color": COLORS[o], "meaning": MESSAGES[o]}
                     for o in Outcome] + [{"code": -1, "name": "missing", "color": "#ffffff",
                                           "meaning": "no valid outcome code stored for this cell"}],
        "dimension": _dimensions(ds, x, y, grid["facets"]),
        "trajectories": _trajectories(ds, x, y, grid["facets"]) if "traj" in ds.dims else None,
        "prov": _provenance(ds, source),
        "steps": int(ds.attrs.get("steps", 0) or 0),
    }
    page = render(data, _fractions(ds), da.sizes)
    path.write_text(page, encoding="utf-8")
    return path


def fractions_html(rows) -> str:
    """The fractions table: per group a stacked bar and each outcome's fraction [Wilson 95% interval]."""
    color = {o.name.lower(): COLORS[o] for o in Outcome}
    out = ["<table class='fr'><tr><th>group</th><th>n</th><th>outcomes</th><th>fraction [95% Wilson interval]</th></tr>"]
    for label, n, cells in rows:
        bar = "".join(f"<span style='width:{100 * f:.2f}%;background:{color[o]}' title='{o} {f:.1%}'></span>"
                      for o, _, f, _, _ in cells)
        text = "; ".join(f"<b style='color:{color[o]}'>{o}</b> {f:.1%} [{lo:.1%}, {hi:.1%}]" for o, _, f, lo, hi in cells)
        out.append(f"<tr><td>{html.escape(label)}</td><td>{n:,}</td><td><div class='bar'>{bar}</div></td><td>{text}</td></tr>")
    return "".join(out) + "</table>"


def to_json(data) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def cmd_report(args) -> int:
    from .cli import _open_result
    from .config import SpecError

    out = Path(args.output or Path(args.path).with_suffix(".html"))
    if out.suffix.lower() not in (".html", ".htm"):
        raise SpecError(f"-o {str(out)!r}: the report must end in .html")
    if out.exists() and not args.overwrite:
        raise SpecError(f"{str(out)!r} already exists: pass --overwrite or choose another -o")
    if args.max_cells is None:
        args.max_cells = MAX_CELLS
    if args.max_cells < 1:
        raise SpecError(f"--max-cells {args.max_cells}: must be >= 1 (default {MAX_CELLS})")
    ds = _open_result(args.path)
    try:
        page = report(ds, out, x=args.x, y=args.y, max_cells=args.max_cells, source=args.path)
    except ValueError as e:
        raise SpecError(str(e)) from None
    print(f"wrote {page} ({page.stat().st_size / 2 ** 20:.2f} MB)")
    return 0
