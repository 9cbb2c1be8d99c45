"""Streaming storage: completed chunks as atomic part files, assembled into netCDF4.

A run with an output path never holds the whole result in memory. Each finished chunk is
written to ``<out>.parts/chunk_<i>.npz`` under a temporary name and renamed, so a part
either exists whole or not at all (safe under ``kill -9``); ``--resume`` reads which parts
exist. When every part is in, the netCDF file is assembled by streaming the parts into
variables preallocated for the whole grid (written to a temporary name, then renamed), and
the parts are removed. Shards (``--shard I/N``) and processes of a multi-host run write the
same kind of parts, as flat netCDF "part files" that ``sweep merge`` assembles.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import SpecError
from .io import publish

PART_FORMAT = 1


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


class PartStore:
    """Completed chunks of one run, beside its output file."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.dir = parts_dir(self.out)

    @property
    def exists(self) -> bool:
        return (self.dir / "meta.json").exists()

    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise SpecError(f"{str(self.dir)!r}: unreadable run metadata ({e}); pass --overwrite to start over") from None

    def create(self, meta: dict) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)  # creates the output's directory too, only once compute starts
        _atomic_write_text(self.dir / "meta.json", json.dumps(meta, indent=1))

    def done(self) -> set[int]:
        """Chunk numbers whose part file is complete."""
        out = set()
        for p in self.dir.glob("chunk_*.npz"):
            try:
                out.add(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return out

    def write(self, i: int, index: np.ndarray, res: dict[str, np.ndarray]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".chunk_{i}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __index__=index, **res)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / f"chunk_{i:08d}.npz")

    def parts(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(global indices, results) of every part, in chunk order."""
        for i in sorted(self.done()):
            with np.load(self.dir / f"chunk_{i:08d}.npz") as z:
                res = {k: z[k] for k in z.files if k != "__index__"}
                yield z["__index__"], res

    def variables(self) -> dict[str, np.dtype]:
        """name -> dtype of every result variable in any part (reads one array per new name)."""
        seen: dict[str, np.dtype] = {}
        for i in sorted(self.done()):
            with np.load(self.dir / f"chunk_{i:08d}.npz") as z:
                for k in z.files:
                    if k != "__index__" and k not in seen:
                        seen[k] = z[k].dtype
        return seen

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, path)


def range_boxes(a: int, b: int, shape: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Hyper-rectangles (starts, sizes) covering flat C-order indices [a, b) of ``shape``, in order."""
    if a >= b:
        return
    if len(shape) == 1:
        yield (a,), (b - a,)
        return
    inner = int(np.prod(shape[1:], dtype=np.int64))
    r0, r_end, tail = a // inner, b // inner, b % inner
    if a % inner:
        stop = inner if r_end > r0 else tail
        for s, z in range_boxes(a % inner, stop, shape[1:]):
            yield (r0,) + s, (1,) + z
        if r_end == r0:
            return
        r0 += 1
    if r_end > r0:
        yield (r0,) + (0,) * (len(shape) - 1), (r_end - r0,) + tuple(shape[1:])
    if tail and r_end >= r0:
        for s, z in range_boxes(0, tail, shape[1:]):
            yield (r_end,) + s, (1,) + z


def runs(index: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Runs of consecutive flat indices: (first index, start position, length)."""
    if index.size == 0:
        return
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [index.size]])
    for s, e in zip(starts, ends):
        yield int(index[s]), int(s), int(e - s)


def assemble(out: Path, skeleton, dims: tuple[str, ...], parts: Iterable[tuple[np.ndarray, dict]],
             var_specs: dict[str, dict], overwrite: bool = True) -> Path:
    """Write the final netCDF4 file by streaming parts into preallocated variables.

    Args:
      skeleton: an xr.Dataset holding only coordinates and attributes (no data variables).
      parts: iterable of (flat global indices (n,) int64 sorted, {name: (n,) array}).
      var_specs: name -> {"dtype": np.dtype, "attrs": dict} of every result variable.
    """
    import netCDF4

    shape = tuple(skeleton.sizes[d] for d in dims)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix="." + out.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        skeleton.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.set_auto_maskandscale(False)
            chunks = _hdf_chunks(shape)
            variables = {}
            for name, vs in var_specs.items():
                dt = np.dtype(vs["dtype"])
                fill = np.nan if dt.kind == "f" else False
                var = nc.createVariable(name, dt, dims, zlib=True, complevel=4, chunksizes=chunks, fill_value=fill)
                for k, v in vs["attrs"].items():
                    var.setncattr(k, v)
                # a small chunk cache per variable: HDF5's default one grows RSS with the grid size
                var.set_var_chunk_cache(size=1 << 20, nelems=64, preemption=1.0)
                variables[name] = var
            for index, res in parts:
                res = fill_missing(res, var_specs, len(index))
                if not shape:  # a single trajectory, no axes
                    for name, var in variables.items():
                        var[...] = np.asarray(res[name])[0]
                    continue
                for first, pos, length in runs(np.asarray(index, np.int64)):
                    offset = pos
                    for starts, sizes in range_boxes(first, first + length, shape):
                        n = int(np.prod(sizes))
                        sl = tuple(slice(s, s + z) for s, z in zip(starts, sizes))
                        for name, var in variables.items():
                            var[sl] = np.asarray(res[name][offset:offset + n]).reshape(sizes)
                        offset += n
        if out.exists() and not overwrite:
            raise SpecError(f"{str(out)!r} appeared while running; not overwritten (result left in {tmp})")
        publish(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def fill_missing(res: dict[str, np.ndarray], var_specs: dict[str, dict], n: int) -> dict[str, np.ndarray]:
    """A part's results with every variable of the run: variables that only some compile groups
    produce (e.g. ``final_alpha`` of a prelu student) are NaN (floats) or -1 (integers) elsewhere."""
    out = dict(res)
    for name, vs in var_specs.items():
        if name not in out:
            dt = np.dtype(vs["dtype"])
            out[name] = np.full(n, np.nan if dt.kind == "f" else -1, dt)
    return out


def _hdf_chunks(shape: tuple[int, ...], target: int = 1 << 16) -> list[int] | None:
    if not shape:
        return None
    chunks = [1] * len(shape)
    size = 1
    for i in reversed(range(len(shape))):
        take = max(1, min(shape[i], target // size))
        chunks[i] = take
        size *= take
    return chunks
