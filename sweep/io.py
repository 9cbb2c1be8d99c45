"""Result Datasets: build from flat per-trajectory arrays, save and load netCDF4."""
from __future__ import annotations

import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .config import Spec, SpecError
from .outcomes import outcome_attrs


class StorageError(RuntimeError):
    """Reading or writing a result failed; the message names the path and the cause."""


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disk tools print them)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def data_encoding(ds: xr.Dataset) -> dict:
    """netCDF encoding of the data variables: zlib level 4 and HDF5 Fletcher-32 checksums."""
    return {name: {"zlib": True, "complevel": 4, "fletcher32": True} for name in ds.data_vars}


def coord_encoding(ds: xr.Dataset) -> dict:
    """Coordinates: numeric ones with Fletcher-32 checksums; strings (categorical axes) as CF character
    arrays (a ``string<N>`` dimension) rather than netCDF-4 variable-length strings: CF checkers accept
    them, every netCDF reader reads them, and xarray reads them back as strings."""
    enc = {}
    for name, c in ds.coords.items():
        if c.dtype.kind in "iufb" and c.ndim:
            enc[name] = {"fletcher32": True, "zlib": True, "complevel": 4}
        elif c.dtype.kind in "USO":
            enc[name] = {"dtype": "S1"}
    return enc

VAR_ATTRS: dict[str, dict] = {
    "final_loss": {"long_name": "loss at the last evaluated step", "units": "1"},
    "min_loss": {"long_name": "smallest loss seen", "units": "1"},
    "converge_step": {"long_name": "first step within tolerance of the target loss (-1: never)", "units": "1"},
    "stop_step": {"long_name": "step at which the run settled (the budget if it never did)", "units": "1"},
    "final_grad_norm": {"long_name": "gradient norm at the last evaluated step", "units": "1"},
    "target_loss": {"long_name": "the problem's target loss for this run", "units": "1"},
    "sharpness": {"long_name": "top eigenvalue of the loss Hessian at the final parameters (power iteration)",
                  "units": "1"},
    "two_over_lr": {"long_name": "2 / lr: GD on a quadratic is stable iff sharpness < 2/lr", "units": "1"},
    "lyapunov": {"long_name": "finite-time Lyapunov exponent of the training map (natural log per update; > 0: "
                              "nearby starts separate, chaos; < 0: they contract, inside a basin)", "units": "1"},
    "lambda0": {"long_name": "top eigenvalue of the loss Hessian at the initial parameters (train.lr_mode = "
                             "'sharpness': the step size is lr / lambda0)", "units": "1"},
}


def _coord_values(vals: tuple) -> np.ndarray:
    if all(isinstance(v, bool) for v in vals):
        return np.array(["true" if v else "false" for v in vals])
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals)
    return np.array([str(v) for v in vals])


def coords_for(spec: Spec) -> dict[str, Any]:
    """Coordinates of the result grid: one per axis (plus member coords for zipped/sampled axes)."""
    coords: dict[str, Any] = {}
    for a in spec.axes:
        single = len(a.members) == 1 and a.members[0] == a.name
        for m, vals in zip(a.members, a.values):
            opt = spec.options[m][1]
            attrs = {"spacing": a.spacing, "long_name": opt.doc}
            if opt.units:
                attrs["units"] = opt.units
            elif not all(isinstance(v, (str, bool)) for v in vals):
                attrs["units"] = "1"  # a swept number is dimensionless (CF: units "1")
            if single:
                coords[a.name] = xr.Variable(a.name, _coord_values(vals), attrs)
            else:
                coords[m.replace(".", "_")] = xr.Variable(a.name, _coord_values(vals), attrs)
        if not single:
            coords[a.name] = xr.Variable(a.name, np.arange(a.size), {"long_name": f"index along {a.name}",
                                                                     "units": "1"})
    return coords


def provenance(spec: Spec, dtype: str, stats: dict) -> dict[str, Any]:
    import jax

    import sweep

    devices = jax.devices()
    return {
        "title": f"sweep result: {spec.problem}" + (f" - {spec.description}" if spec.description else ""),
        "problem": spec.problem,
        "spec": spec.to_toml(),
        "spec_hash": spec.hash(),
        "sweep_version": sweep.__version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": ", ".join(str(d) for d in devices),
        "device_count": len(devices),
        "dtype": dtype,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_trajectories": spec.n_trajectories,
        "steps": int(spec.train["steps"]),
        "outcome_thresholds": " ".join(f"{k}={v}" for k, v in spec.outcome.items() if v is not None),
        "Conventions": "CF-1.8",
        **{k: float(v) for k, v in stats.items()},
    }


def var_attrs(name: str, metric_attrs: dict | None = None) -> dict:
    """netCDF attributes of a result variable."""
    if name == "outcome":
        va = dict(outcome_attrs())
        va["flag_values"] = np.asarray(va["flag_values"], np.int8)
        return va
    if name.startswith("final_") and name not in VAR_ATTRS:
        return {"long_name": f"final value of parameter {name[6:]}", "units": "1"}
    attrs = dict(VAR_ATTRS.get(name) or (metric_attrs or {}).get(name, {}))
    if attrs.get("units") == "steps":  # a count of steps is a number (CF/UDUNITS has no unit "steps")
        attrs["units"] = "1"
    return attrs


def order_vars(names) -> list[str]:
    """Result variables in a stable, readable order (outcome first)."""
    first = ["outcome", "final_loss", "min_loss", "converge_step", "stop_step", "final_grad_norm", "target_loss"]
    names = list(names)
    return [n for n in first if n in names] + sorted(n for n in names if n not in first)


def skeleton(spec: Spec, attrs: dict) -> xr.Dataset:
    """Coordinates and attributes of a result, without data variables."""
    return xr.Dataset(coords=coords_for(spec), attrs=attrs)


def to_dataset(spec: Spec, flat: dict[str, np.ndarray], attrs: dict, metric_attrs: dict | None = None) -> xr.Dataset:
    """Reshape flat (n_trajectories,) result arrays onto the grid."""
    shape, dims = spec.shape, spec.dims
    data_vars = {name: xr.Variable(dims, np.asarray(flat[name]).reshape(shape), var_attrs(name, metric_attrs))
                 for name in order_vars(flat)}
    return xr.Dataset(data_vars, coords=coords_for(spec), attrs=attrs)


def check_writable(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Fail early (before compute) if ``path`` cannot be written or would be overwritten."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise SpecError(f"--out {str(p)!r} is a directory: give a file path such as {str(p / 'result.nc')!r}")
    if p.suffix not in (".nc", ".nc4", ".netcdf"):
        raise SpecError(f"--out {str(p)!r}: the output must be a netCDF file ending in .nc")
    if p.exists() and not (overwrite or resume):
        raise SpecError(f"--out {str(p)!r} already exists: pass --overwrite to replace it or --resume to continue it")
    # nothing is created here: find the nearest existing ancestor and check it is a writable directory
    parent = p.parent if str(p.parent) else Path(".")
    anc = parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise SpecError(f"--out {str(p)!r}: {str(anc)!r} is a file, not a directory; choose another --out")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise SpecError(f"--out {str(p)!r}: directory {str(anc)!r} is not writable; choose another --out")
    return p


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file onto ``path`` with the usual permissions (0666 minus the
    umask; ``mkstemp`` creates files readable by their owner only)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)


def save(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` as compressed netCDF4 atomically (temporary file, then rename)."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise SpecError(f"{str(p)!r} already exists: pass overwrite=True (--overwrite) to replace it")
    enc = {**coord_encoding(ds), **data_encoding(ds)}
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix="." + p.name + ".", suffix=".tmp")
        os.close(fd)
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=enc)
        publish(tmp, p)
    except (OSError, RuntimeError) as e:
        from .store import is_io_error, write_error

        if not is_io_error(e):
            raise
        raise StorageError(write_error(p, e, need=int(ds.nbytes))) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return p


def load(path: str | os.PathLike, **kwargs) -> xr.Dataset:
    """Open a result file (plain ``xr.open_dataset`` works too); clear error if it is not one."""
    p = Path(path)
    if not p.exists():
        raise SpecError(f"{str(p)!r} does not exist")
    try:
        ds = xr.open_dataset(p, engine="netcdf4", **kwargs)
    except Exception as e:  # noqa: BLE001 - any reader failure means an unreadable file
        raise SpecError(f"{str(p)!r} is not a readable netCDF result file ({type(e).__name__}: {e}); "
                        "it may be truncated: re-run with --overwrite") from None
    if "outcome" not in ds:
        raise SpecError(f"{str(p)!r} is a netCDF file but not a sweep result (no 'outcome' variable)")
    return ds


def check_file(path: str | os.PathLike, budget: int = 64 << 20) -> list[tuple[str, str]]:
    """Read every variable of a netCDF file in full (HDF5 verifies each chunk's Fletcher-32 checksum
    and zlib stream as it reads); returns (variable, error) for each one that cannot be read."""
    import netCDF4

    bad = []
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        for name, var in nc.variables.items():
            try:
                if var.ndim == 0:
                    var[...]
                    continue
                item = getattr(var.dtype, "itemsize", 8)  # vlen strings: a guess
                row = int(np.prod(var.shape[1:], dtype=np.int64)) * item
                step = max(1, budget // max(row, 1))
                for i in range(0, var.shape[0], step):
                    var[i:i + step]
            except (RuntimeError, OSError, ValueError) as e:
                bad.append((name, f"{type(e).__name__}: {e}"))
    return bad


def recorded_dataset(spec: Spec, res: dict[str, np.ndarray]) -> xr.Dataset:
    """Recorded trajectories on (traj, step): ``rec_loss``, ``rec_<param>``, ``rec_outcome`` and, for each
    swept option, a ``traj_<option>`` coordinate giving each recorded run's value."""
    index = res["index"]
    n_rec = res["rec_loss"].shape[1]
    every = spec.record["every"]
    coords = {"step": ("step", np.arange(n_rec) * every, {"long_name": "optimizer step", "units": "1"}),
              "traj": ("traj", np.arange(index.size), {"long_name": "recorded trajectory", "units": "1"}),
              "traj_index": ("traj", index, {"long_name": "flat index of the run in the grid (C order)", "units": "1"})}
    if spec.axes:
        multi = np.unravel_index(index, spec.shape)
        for pos, a in enumerate(spec.axes):
            for m, vals in zip(a.members, a.values):
                values = _coord_values(vals)[multi[pos]]
                coords["traj_" + m.replace(".", "_")] = ("traj", values, {"long_name": f"{m} of the recorded run",
                                                                          **({} if values.dtype.kind in "US" else
                                                                             {"units": "1"})})
    data = {"rec_outcome": ("traj", res["outcome"], var_attrs("outcome"))}
    for k, x in res.items():
        if k.startswith("rec_"):
            name = k[4:]
            data[k] = (("traj", "step"), x, {"long_name": "loss" if name == "loss" else f"parameter {name}",
                                             "units": "1"})
    return xr.Dataset(data, coords=coords)
