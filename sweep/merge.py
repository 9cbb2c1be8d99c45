"""Shards: part files written by ``--shard I/N`` (or by each process of a multi-host run)
and ``merge``, which checks them and assembles the same file a single run would write."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import xarray as xr

from .config import SpecError, parse_spec, tomllib
from .io import StorageError, check_writable, load, order_vars, publish, skeleton, var_attrs
from .store import Part, assemble, fill_missing, is_io_error, write_error

PART_DIM = "trajectory"


def write_part_file(out: Path, spec, plan, shard: tuple[int, int], parts: Iterable[tuple[np.ndarray, dict]],
                    attrs: dict, dtypes: dict, overwrite: bool = False, metrics: dict | None = None) -> Path:
    """Stream a shard's chunks into a flat netCDF part file (dimension ``trajectory`` + ``index``).

    metrics: the problem metrics' attributes (``engine.metric_attrs``), kept on their variables."""
    import netCDF4

    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix="." + out.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            nc.set_auto_maskandscale(False)
            nc.createDimension(PART_DIM, None)
            variables = None
            n = 0
            specs = {k: {"dtype": d} for k, d in dtypes.items()}
            for index, res in parts:
                res = fill_missing(res, specs, len(index))
                if variables is None:
                    variables = {"index": nc.createVariable("index", "i8", (PART_DIM,), zlib=True, fletcher32=True)}
                    for name in order_vars(dtypes):
                        dt = np.dtype(dtypes[name])
                        variables[name] = nc.createVariable(name, dt, (PART_DIM,), zlib=True, complevel=4,
                                                            fill_value=False, fletcher32=True)
                        for k, v in var_attrs(name, metrics).items():
                            variables[name].setncattr(k, v)
                k = len(index)
                variables["index"][n:n + k] = index
                for name, arr in res.items():
                    variables[name][n:n + k] = arr
                n += k
            meta = {**attrs, "sweep_part": 1, "shard": shard[0], "n_shards": shard[1], "part_chunk_size": plan.chunk,
                    "part_trajectories": n}
            for k, v in meta.items():
                nc.setncattr(k, v)
        publish(tmp, out)
    except (OSError, RuntimeError) as e:
        if isinstance(e, StorageError) or not is_io_error(e):
            raise
        raise StorageError(write_error(out, e)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _part_pieces(name: str, ds: xr.Dataset, index: np.ndarray, size: int = 1 << 16) -> Iterator[Part]:
    """A part file as pieces of ``size`` trajectories, each with the flat index range it covers."""
    names = [k for k in ds.data_vars if k != "index"]
    for s in range(0, index.size, size):
        sl = slice(s, min(index.size, s + size))
        piece = index[sl]

        def load(sl=sl, piece=piece):
            return piece, {k: np.asarray(ds[k][sl].values) for k in names}

        yield Part(int(piece.min()), int(piece.max()), load, f"{name}[{s}:{sl.stop}]")


def merge(parts: list[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False) -> xr.Dataset:
    """Check shard part files (same spec, none missing, none overlapping) and assemble ``out``.

    Returns:
      the merged Dataset (opened from ``out``), identical in data to a single run's file.
    """
    if not parts:
        raise SpecError("merge: give the part files, e.g. sweep merge part0.nc part1.nc -o result.nc")
    out = check_writable(out, overwrite=overwrite)
    opened = []
    for p in parts:
        if not Path(p).exists():
            raise SpecError(f"merge: part {str(p)!r} does not exist")
        try:
            ds = xr.open_dataset(p, engine="netcdf4", mask_and_scale=False)
        except Exception as e:  # noqa: BLE001
            raise SpecError(f"merge: {str(p)!r} is not a readable netCDF file ({type(e).__name__})") from None
        if ds.attrs.get("sweep_part") != 1 or "index" not in ds:
            raise SpecError(f"merge: {str(p)!r} is not a sweep part file (written by sweep run --shard I/N)")
        opened.append((str(p), ds))
    hashes = {ds.attrs["spec_hash"] for _, ds in opened}
    if len(hashes) != 1:
        raise SpecError("merge: the parts come from different specs (spec_hash " + ", ".join(sorted(hashes)) + ")")
    n_shards = {int(ds.attrs["n_shards"]) for _, ds in opened}
    if len(n_shards) != 1:
        raise SpecError(f"merge: the parts disagree on the number of shards ({sorted(n_shards)})")
    n = n_shards.pop()
    ids = sorted(int(ds.attrs["shard"]) for _, ds in opened)
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SpecError(f"merge: shard(s) {dup} given more than once")
    missing = sorted(set(range(n)) - set(ids))
    if missing:
        raise SpecError(f"merge: shard(s) {missing} of {n} missing; run them with --shard I/{n}")
    first = opened[0][1]
    spec = parse_spec(tomllib.loads(first.attrs["spec"]))
    total = spec.n_trajectories
    seen = np.zeros(total, bool)
    indices = []
    for name, ds in opened:
        idx = np.asarray(ds["index"].values, np.int64)
        indices.append(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= total):
            raise SpecError(f"merge: {name!r} has trajectory indices outside the grid of {total}")
        if np.any(seen[idx]) or np.unique(idx).size != idx.size:
            raise SpecError(f"merge: {name!r} overlaps another part (a trajectory appears twice)")
        seen[idx] = True
    if not seen.all():
        raise SpecError(f"merge: {int((~seen).sum()):,} trajectories are in no part; a part file is incomplete")
    found: dict[str, xr.DataArray] = {}  # every variable of any part (shards may hold different groups)
    for _, ds in opened:
        for k in ds.data_vars:
            if k != "index":
                found.setdefault(k, ds[k])
    attrs = {k: v for k, v in first.attrs.items()
             if k not in ("sweep_part", "shard", "n_shards", "part_chunk_size", "part_trajectories")}
    for k in ("wall_time_s", "compute_time_s", "trajectories_run"):
        if any(k in ds.attrs for _, ds in opened):
            attrs[k] = float(sum(float(ds.attrs.get(k, 0.0)) for _, ds in opened))

    from .api import _set_dtype, with_recorded
    from .engine import make_plan, metric_attrs

    _set_dtype(attrs.get("dtype", "float32"))
    plan = make_plan(spec, int(first.attrs["part_chunk_size"]), attrs.get("dtype", "float32"))
    metrics = metric_attrs(plan)
    # every attribute a part carries, over the ones the schema gives (older part files dropped metrics' ones)
    var_specs = {k: {"dtype": found[k].dtype,
                     "attrs": {**var_attrs(k, metrics), **{a: v for a, v in found[k].attrs.items() if a != "_FillValue"}}}
                 for k in order_vars(found)}
    skel = with_recorded(skeleton(spec, attrs), plan)

    pieces = [p for (name, ds), idx in zip(opened, indices) for p in _part_pieces(name, ds, idx)]
    from .api import clean_temporary
    from .lock import OutputLock

    try:
        with OutputLock(out, "merge"):
            clean_temporary(out)
            if out.exists() and not overwrite:
                raise SpecError(f"{str(out)!r} appeared meanwhile; not overwritten (pass --overwrite)")
            assemble(out, skel, spec.dims, pieces, var_specs, overwrite=True)
    finally:
        for _, ds in opened:
            ds.close()
    return load(out)
