"""Streaming storage: completed chunks as atomic, checksummed part files, assembled into netCDF4.

A run with an output path never holds the whole result in memory. Each finished chunk is
written to ``<out>.parts/chunk_<i>.<sha256[:16]>.npz`` under a temporary name and renamed, so
a part either exists whole or not at all (safe under ``kill -9``), and its name carries the
checksum of its bytes: ``--resume`` verifies every part and recomputes a damaged one, and
assembly verifies each part it reads. When every part is in, the netCDF file is assembled in
slabs: contiguous blocks of the flat grid (C order), each filled in memory from the parts that
cover it and written whole, so the writes are the same few large blocks whatever the order of
the axes (a categorical axis last used to make every value its own write). The file is written
to a temporary name, then renamed, and the parts are removed. Shards (``--shard I/N``) and
processes of a multi-host run write flat netCDF "part files" that ``sweep merge`` assembles
the same way.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .config import SpecError
from .io import StorageError, coord_encoding, human_bytes, publish

PART_FORMAT = 2  # 2: the part's checksum in its name (1: chunk_<i>.npz, checked with the zip CRCs)
SLAB_BYTES = 64 << 20  # memory for one slab of the assembled grid (all variables together)
_DIGEST = 16  # hex characters of sha256 kept in a part's name


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


class Part(NamedTuple):
    """One piece of a result: the trajectories it holds lie in flat indices [lo, hi]."""

    lo: int
    hi: int
    load: Callable[[], tuple[np.ndarray, dict]]  # () -> (flat indices (n,) int64, {name: (n,) array})
    name: str  # for messages


class DamagedPart(StorageError):
    """A part file whose bytes do not match its checksum (or that cannot be read)."""

    def __init__(self, message: str, path: str | os.PathLike):
        super().__init__(message)
        self.path = Path(path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST]


def _parse_part(p: Path) -> tuple[int, str | None] | None:
    """chunk_00000012.<digest>.npz -> (12, digest); chunk_00000012.npz (format 1) -> (12, None)."""
    bits = p.name.split(".")
    if len(bits) not in (2, 3) or bits[-1] != "npz" or not bits[0].startswith("chunk_"):
        return None
    try:
        i = int(bits[0][6:])
    except ValueError:
        return None
    return i, (bits[1] if len(bits) == 3 else None)


def read_part(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A part's (indices, results), its checksum verified; DamagedPart names the file otherwise."""
    parsed = _parse_part(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StorageError(f"reading part {str(path)!r} failed: {e.strerror or e}") from None
    if parsed and parsed[1] is not None and _digest(data) != parsed[1]:
        raise DamagedPart(f"part {str(path)!r} is damaged (its bytes do not match the checksum in its name)", path)
    try:
        with np.load(io.BytesIO(data)) as z:
            if parsed and parsed[1] is None:  # format 1: no checksum of ours; the zip CRCs then
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    if zf.testzip() is not None:
                        raise ValueError("zip CRC mismatch")
            res = {k: z[k] for k in z.files if k != "__index__"}
            return np.asarray(z["__index__"], np.int64), res
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise DamagedPart(f"part {str(path)!r} is damaged ({type(e).__name__}: {e})", path) from None


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
        try:
            self.dir.mkdir(parents=True)  # creates the output's directory too, only once compute starts
            _atomic_write_text(self.dir / "meta.json", json.dumps({**meta, "part_format": PART_FORMAT}, indent=1))
        except OSError as e:
            raise StorageError(write_error(self.dir, e)) from None

    def _paths(self) -> dict[int, Path]:
        out: dict[int, Path] = {}
        for p in sorted(self.dir.glob("chunk_*.npz")):
            parsed = _parse_part(p)
            if parsed is not None:
                out[parsed[0]] = p
        return out

    def done(self) -> set[int]:
        """Chunk numbers whose part file is present (not verified: see ``verify``)."""
        return set(self._paths())

    def verify(self) -> list[Path]:
        """Check every part against its checksum; delete the damaged ones and return their paths."""
        bad = []
        for p in self._paths().values():
            try:
                read_part(p)
            except DamagedPart:
                bad.append(p)
                p.unlink(missing_ok=True)
        return bad

    def clean_temporary(self) -> list[Path]:
        """Remove the temporary files of writers that were killed (call while holding the output lock)."""
        gone = []
        for p in self.dir.glob(".chunk_*.tmp"):
            p.unlink(missing_ok=True)
            gone.append(p)
        return gone

    def write(self, i: int, index: np.ndarray, res: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, __index__=index, **res)
        data = buf.getvalue()
        final = self.dir / f"chunk_{i:08d}.{_digest(data)}.npz"
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".chunk_{i}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as e:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise StorageError(write_error(final, e, need=len(data))) from None

    def iter_parts(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(global indices, results) of every part, in chunk order, each verified."""
        for _, p in sorted(self._paths().items()):
            yield read_part(p)

    def scan(self) -> tuple[list[Part], dict[str, np.dtype]]:
        """Every part (verified) with the flat index range it covers, and name -> dtype of every
        result variable in any part."""
        parts, dtypes = [], {}
        for _, p in sorted(self._paths().items()):
            index, res = read_part(p)
            for k, x in res.items():
                dtypes.setdefault(k, x.dtype)
            if index.size:
                parts.append(Part(int(index.min()), int(index.max()), lambda p=p: read_part(p), str(p)))
        return parts, dtypes

    def variables(self) -> dict[str, np.dtype]:
        """name -> dtype of every result variable in any part."""
        return self.scan()[1]

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self._paths().values())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, path)


def is_io_error(e: BaseException) -> bool:
    """An OSError, or the RuntimeError netCDF4 raises for a failed read or write ('NetCDF: HDF error')."""
    return isinstance(e, OSError) or (type(e) is RuntimeError and str(e).startswith(("NetCDF", "HDF")))


def write_error(path: str | os.PathLike, e: BaseException, need: int | None = None) -> str:
    """A one-line message for a failed write: the path, the cause and, when the disk is full, the free space."""
    where = Path(path).parent if not Path(path).is_dir() else Path(path)
    cause = getattr(e, "strerror", None) or str(e) or type(e).__name__
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
        free is not None and need is not None and free < need)
    msg = f"writing {str(path)!r} failed: {cause}"
    if full:
        msg += (f" - the disk is full ({human_bytes(free) if free is not None else 'unknown'} free in {str(where)!r}"
                + (f", {human_bytes(need)} needed" if need else "") + ")")
    return msg


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


def slab_size(shape: tuple[int, ...], chunks: list[int] | None, elements: int) -> int:
    """Flat elements per slab: at most ``elements`` (at least one HDF5 chunk), a whole number of
    rows of the innermost dimensions that fit, and a whole number of HDF5 chunks along the
    dimension the chunks split, so a slab's writes are few whole boxes."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n <= elements or not shape:
        return max(n, 1)
    sizes = [int(np.prod(shape[k:], dtype=np.int64)) for k in range(len(shape))] + [1]
    k = next(k for k in range(len(shape) + 1) if sizes[k] <= elements)  # rows of dims k.. fit
    if k == len(shape):  # not even one element of the last dimension per... (elements < 1)
        return 1
    rows = max(1, elements // sizes[k])  # along dimension k - 1
    if chunks is not None and k >= 1 and chunks[k - 1] > 1:
        rows = max(chunks[k - 1], rows // chunks[k - 1] * chunks[k - 1])
    return rows * sizes[k]


def fill_value(dt: np.dtype):
    """The value of a variable where a compile group does not produce it: NaN (floats) or -1."""
    return np.nan if np.dtype(dt).kind == "f" else -1


def fill_missing(res: dict[str, np.ndarray], var_specs: dict[str, dict], n: int) -> dict[str, np.ndarray]:
    """A part's results with every variable of the run: variables that only some compile groups
    produce (e.g. ``final_alpha`` of a prelu student) are NaN (floats) or -1 (integers) elsewhere."""
    out = dict(res)
    for name, vs in var_specs.items():
        if name not in out:
            dt = np.dtype(vs["dtype"])
            out[name] = np.full(n, fill_value(dt), dt)
    return out


def _slabs(parts: Sequence[Part], n: int, slab: int, budget: int
           ) -> Iterator[tuple[int, int, list[tuple[np.ndarray, dict]]]]:
    """(a, b, loaded parts that cover some of [a, b)) for each slab; a part that reaches past the
    slab is kept for the next one while the kept parts' bytes stay under ``budget``."""
    order = sorted(parts, key=lambda p: p.lo)
    nxt = 0
    kept: list[tuple[Part, tuple | None]] = []
    for a in range(0, n, slab):
        b = min(n, a + slab)
        todo = [(p, d) for p, d in kept if p.hi >= a]
        while nxt < len(order) and order[nxt].lo < b:
            todo.append((order[nxt], None))
            nxt += 1
        loaded, kept, held = [], [], 0
        for p, d in todo:
            if p.hi < a:
                continue
            d = d if d is not None else p.load()
            loaded.append(d)
            if p.hi >= b:
                size = d[0].nbytes + sum(x.nbytes for x in d[1].values())
                kept.append((p, d if held + size <= budget else None))
                held += size if held + size <= budget else 0
        yield a, b, loaded


def assemble(out: Path, skeleton, dims: tuple[str, ...], parts: Sequence[Part], var_specs: dict[str, dict],
             overwrite: bool = True, progress: Callable[[int], None] | None = None,
             final_attrs: Callable[[], dict] | None = None, missing_ok: bool = False) -> Path:
    """Write the final netCDF4 file slab by slab from the parts.

    Args:
      skeleton: an xr.Dataset holding only coordinates and attributes (no data variables).
      parts: the pieces of the result (``Part``: flat index range and a loader); together they
        must cover every point of the grid exactly once.
      var_specs: name -> {"dtype": np.dtype, "attrs": dict} of every result variable.
      progress: called with the number of grid points written after each slab.
      final_attrs: called once the data are written; its attributes are added to the file
        (e.g. the wall time including the assembly).
      missing_ok: points in no part keep the fill values (``sweep merge --partial``).
    """
    import netCDF4

    shape = tuple(skeleton.sizes[d] for d in dims)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    chunks = _hdf_chunks(shape)
    item = sum(np.dtype(vs["dtype"]).itemsize for vs in var_specs.values()) + 1
    slab = slab_size(shape, chunks, max(1, SLAB_BYTES // item))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix="." + out.name + ".", suffix=".tmp")
        os.close(fd)
        skeleton.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=coord_encoding(skeleton))
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.set_auto_maskandscale(False)
            variables = {}
            for name, vs in var_specs.items():
                dt = np.dtype(vs["dtype"])
                fill = np.nan if dt.kind == "f" else False
                var = nc.createVariable(name, dt, dims, zlib=True, complevel=4, chunksizes=chunks, fill_value=fill,
                                        fletcher32=True)
                for k, v in vs["attrs"].items():
                    var.setncattr(k, v)
                # a small chunk cache per variable (HDF5's default one grows RSS with the grid size),
                # large enough to keep an HDF5 chunk cut by a slab edge until the next slab completes it
                var.set_var_chunk_cache(size=4 << 20, nelems=64, preemption=1.0)
                variables[name] = var
            for a, b, loaded in _slabs(parts, n, slab, SLAB_BYTES):
                bufs = {k: np.full(b - a, fill_value(vs["dtype"]), np.dtype(vs["dtype"])) for k, vs in var_specs.items()}
                hit = np.zeros(b - a, np.int32)
                for index, res in loaded:
                    m = (index >= a) & (index < b)
                    pos = index[m] - a
                    np.add.at(hit, pos, 1)
                    for k, x in res.items():
                        if k in bufs:
                            bufs[k][pos] = np.asarray(x)[m]
                wrong = (hit > 1) if missing_ok else (hit != 1)
                if wrong.any():
                    bad = int(np.flatnonzero(wrong)[0]) + a
                    raise StorageError(f"assembling {str(out)!r}: grid point {bad} is in {int(hit[bad - a])} parts "
                                       "(expected exactly one); the parts do not belong together")
                _write_slab(variables, bufs, a, b, shape)
                if progress is not None:
                    progress(b - a)
            if final_attrs is not None:
                for k, v in final_attrs().items():
                    nc.setncattr(k, v)
        if out.exists() and not overwrite:
            raise SpecError(f"{str(out)!r} appeared while running; not overwritten (result left in {tmp})")
        publish(tmp, out)
    except (OSError, RuntimeError) as e:
        if isinstance(e, StorageError) or not is_io_error(e):
            raise
        raise StorageError(write_error(out, e, need=slab * item)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _write_slab(variables: dict, bufs: dict[str, np.ndarray], a: int, b: int, shape: tuple[int, ...]) -> None:
    """Write flat grid positions [a, b) of every variable (a few whole boxes)."""
    if not shape:  # a single trajectory, no axes
        for name, var in variables.items():
            var[...] = bufs[name][0]
        return
    for starts, sizes in range_boxes(a, b, shape):
        lo = int(np.ravel_multi_index(starts, shape)) - a
        count = int(np.prod(sizes))
        sl = tuple(slice(s, s + z) for s, z in zip(starts, sizes))
        for name, var in variables.items():
            var[sl] = bufs[name][lo:lo + count].reshape(sizes)


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
