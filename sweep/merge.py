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
PART_VERSION = 2  # 2: a shard is a contiguous range of the run order (1: every N-th chunk)
PART_ONLY = ("sweep_part", "shard", "n_shards", "part_chunk_size", "part_trajectories", "shard_start", "shard_stop",
             "jaxlib_version", "device_kind")  # checked, then dropped: the merged file has a single run's attributes
# attributes every part must share: each one can change the results' bits (spec_hash: the spec itself)
SAME_BITS = ("spec_hash", "dtype", "backend", "device_kind", "sweep_version", "jax_version", "jaxlib_version")


def bit_attrs() -> dict:
    """What a part records, beyond the provenance, of the software and hardware that made its bits."""
    import jax
    import jaxlib

    return {"jaxlib_version": jaxlib.__version__, "device_kind": str(jax.local_devices()[0].device_kind)}


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
            # always there, so that an empty shard (more shards than trajectories) is a valid part
            variables = {"index": nc.createVariable("index", "i8", (PART_DIM,), zlib=True, fletcher32=True)}
            made = False
            n = 0
            specs = {k: {"dtype": d} for k, d in dtypes.items()}
            for index, res in parts:
                res = fill_missing(res, specs, len(index))
                if not made:
                    made = True
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
            lo, hi = plan.span if plan.span is not None else (0, spec.n_trajectories)
            if n != hi - lo:
                raise StorageError(f"writing {str(out)!r}: the shard holds {n} trajectories, expected {hi - lo}; "
                                   "rerun it with --overwrite")
            meta = {**attrs, **bit_attrs(), "sweep_part": PART_VERSION, "shard": shard[0], "n_shards": shard[1],
                    "part_chunk_size": plan.chunk, "part_trajectories": n, "shard_start": lo, "shard_stop": hi}
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


def merge(parts: list[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
          partial: bool = False) -> xr.Dataset:
    """Check shard part files and assemble ``out``: the parts must come from one spec and agree on
    everything that can change the results' bits (``SAME_BITS``: dtype, backend, device kind, sweep,
    jax and jaxlib versions), none may be missing (unless ``partial``) or overlap another, and each
    must hold exactly its shard's trajectories.

    partial: merge the parts there are; the missing shards' trajectories get ``outcome`` -1, NaN
      (floats) or -1 (integers), and the file's ``missing_shards`` attribute names them.
    Returns:
      the merged Dataset (opened from ``out``), identical in data to a single run's file.
    """
    if not parts:
        raise SpecError("merge: give the part files, e.g. sweep merge part0.nc part1.nc -o result.nc")
    out = check_writable(out, overwrite=overwrite)
    opened = []
    try:
        for p in parts:
            opened.append((str(p), open_part(p)))
        _check_parts(opened, partial)
        return _merge(opened, out, overwrite, partial)
    finally:
        for _, ds in opened:
            ds.close()


def open_part(p) -> xr.Dataset:
    """A part file opened lazily (SpecError if it is missing or not a sweep part file)."""
    if not Path(p).exists():
        raise SpecError(f"merge: part {str(p)!r} does not exist")
    try:
        ds = xr.open_dataset(p, engine="netcdf4", mask_and_scale=False)
    except Exception as e:  # noqa: BLE001
        raise SpecError(f"merge: {str(p)!r} is not a readable netCDF file ({type(e).__name__})") from None
    if ds.attrs.get("sweep_part") not in (1, PART_VERSION) or "index" not in ds:
        ds.close()
        raise SpecError(f"merge: {str(p)!r} is not a sweep part file (written by sweep run --shard I/N)")
    return ds


def _check_parts(opened: list[tuple[str, xr.Dataset]], partial: bool) -> None:
    name0, first = opened[0]
    for name, ds in opened[1:]:
        for k in SAME_BITS:
            a, b = first.attrs.get(k), ds.attrs.get(k)
            if str(a) == str(b):
                continue
            if k == "spec_hash":
                raise SpecError(f"merge: the parts come from different specs: {name!r} has spec_hash {b}, "
                                f"{name0!r} has {a}; merge the parts of one sweep")
            fix = {"dtype": "the same --dtype"}.get(k, "the same software" if k.endswith("version")
                                                   else "the same kind of device")
            raise SpecError(f"merge: {name!r} has {k} = {b!r} but {name0!r} has {a!r}; every part must have the "
                            f"same {k} (it can change the results' bits): rerun that shard with {fix}")
    n_shards = {int(ds.attrs["n_shards"]) for _, ds in opened}
    if len(n_shards) != 1:
        raise SpecError(f"merge: the parts disagree on the number of shards ({sorted(n_shards)}): "
                        "merge the parts of one --shard I/N split")
    n = n_shards.pop()
    ids = sorted(int(ds.attrs["shard"]) for _, ds in opened)
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SpecError(f"merge: shard(s) {dup} given more than once")
    missing = sorted(set(range(n)) - set(ids))
    if missing and not partial:
        raise SpecError(f"merge: shard(s) {_ranges(missing)} of {n} missing; run them with --shard I/{n} "
                        "(sweep status PARTS... prints the commands), or pass --partial to merge what is there")
    total = int(first.attrs["n_trajectories"])
    from .api import shard_span

    for name, ds in opened:
        if int(ds.attrs["sweep_part"]) < PART_VERSION:
            continue
        i = int(ds.attrs["shard"])
        lo, hi = shard_span(total, (i, n))
        got = (int(ds.attrs.get("shard_start", -1)), int(ds.attrs.get("shard_stop", -1)))
        if got != (lo, hi) or ds.sizes[PART_DIM] != hi - lo:
            raise SpecError(f"merge: {name!r} (shard {i}/{n}) holds {ds.sizes[PART_DIM]:,} trajectories at "
                            f"positions {got[0]}..{got[1]}, expected {hi - lo:,} at {lo}..{hi}; the part is "
                            f"incomplete or damaged: rerun it with --shard {i}/{n} --overwrite")


def _check_device_counts(opened, plan) -> None:
    """On CPU, the vmap layout's blocked products (networks) compile differently for a one-device
    client: parts made on one device and on several cannot be joined bit for bit (README, Reproducible)."""
    from .engine import _static_key, vmap_block

    if str(opened[0][1].attrs.get("backend")) != "cpu":
        return
    one = {name: int(ds.attrs.get("device_count", 0)) == 1 for name, ds in opened
           if int(ds.sizes.get(PART_DIM, 0))}
    if len(set(one.values())) < 2:
        return
    if not any(vmap_block(plan, g) for g in {_static_key(plan, g): g for g in plan.groups}.values()):
        return  # elementwise problems: the same bits on any number of devices
    a = next(n for n, v in one.items() if v)
    b = next(n for n, v in one.items() if not v)
    raise SpecError(f"merge: {a!r} ran on one CPU device (device_count = 1) but {b!r} on several; this problem's "
                    "blocked matrix products compile differently on one device, so their bits differ: rerun "
                    f"{a!r}'s shard with SWEEP_CPU_DEVICES=2")


def _ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], None
    for k, i in enumerate(ids):
        if start is None:
            start = i
        if k + 1 == len(ids) or ids[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


def _merge(opened, out: Path, overwrite: bool, partial: bool) -> xr.Dataset:
    n = int(opened[0][1].attrs["n_shards"])
    missing = sorted(set(range(n)) - {int(ds.attrs["shard"]) for _, ds in opened})
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
    if not seen.all() and not partial:
        raise SpecError(f"merge: {int((~seen).sum()):,} trajectories are in no part; a part file is incomplete")
    if not seen.any():
        raise SpecError("merge --partial: the parts given hold no trajectories; run some shards first")
    found: dict[str, xr.DataArray] = {}  # every variable of any part (shards may hold different groups)
    for _, ds in opened:
        for k in ds.data_vars:
            if k != "index":
                found.setdefault(k, ds[k])
    attrs = {k: v for k, v in first.attrs.items() if k not in PART_ONLY}
    if partial and missing:
        attrs["missing_shards"] = f"{_ranges(missing)} of {n}: {int((~seen).sum())} trajectories not run (outcome -1)"
    for k in ("wall_time_s", "compute_time_s", "trajectories_run"):
        if any(k in ds.attrs for _, ds in opened):
            attrs[k] = float(sum(float(ds.attrs.get(k, 0.0)) for _, ds in opened))

    from .api import _set_dtype, with_recorded
    from .engine import make_plan, metric_attrs

    _set_dtype(attrs.get("dtype", "float32"))
    plan = make_plan(spec, int(first.attrs["part_chunk_size"]), attrs.get("dtype", "float32"))
    _check_device_counts(opened, plan)
    metrics = metric_attrs(plan)
    # every attribute a part carries, over the ones the schema gives (older part files dropped metrics' ones)
    var_specs = {k: {"dtype": found[k].dtype,
                     "attrs": {**var_attrs(k, metrics), **{a: v for a, v in found[k].attrs.items() if a != "_FillValue"}}}
                 for k in order_vars(found)}
    skel = with_recorded(skeleton(spec, attrs), plan)

    pieces = [p for (name, ds), idx in zip(opened, indices) for p in _part_pieces(name, ds, idx)]
    from .api import clean_temporary
    from .lock import OutputLock

    with OutputLock(out, "merge"):
        clean_temporary(out)
        if out.exists() and not overwrite:
            raise SpecError(f"{str(out)!r} appeared meanwhile; not overwritten (pass --overwrite)")
        assemble(out, skel, spec.dims, pieces, var_specs, overwrite=True, missing_ok=partial)
    return load(out)

