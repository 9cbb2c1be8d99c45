"""``sweep.run``: the one documented entry point."""
from __future__ import annotations

import os
import sys
from typing import Any

import jax
import numpy as np
import xarray as xr

from .config import Spec, SpecError, parse_spec
from .engine import execute, make_plan, problem_for
from .io import check_writable, provenance, save, to_dataset


def _set_dtype(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def run(spec: Any, *, out: str | os.PathLike | None = None, overwrite: bool = False, chunk_size: int | None = None,
        dtype: str | None = None, progress: bool | None = None, set: list[str] | None = None) -> xr.Dataset:
    """Run a sweep and return its result Dataset (and write it to ``out`` if given).

    Args:
      spec: a dict, a ``sweep.Spec`` or a path to a TOML file (same keys everywhere).
      out: netCDF path to write; an existing file is refused unless ``overwrite=True``.
      overwrite: replace an existing ``out``.
      chunk_size: trajectories per compiled call (default: ``[run] chunk_size`` or automatic).
      dtype: "float32" or "float64" (default: ``[run] dtype``); float64 enables jax_enable_x64.
      progress: show a progress bar (default: only when stderr is a terminal).
      set: overrides such as ``["train.steps=500", "axes.lr=[0.1, 1.0]"]``.
    Returns:
      xr.Dataset with one dimension per axis; ``outcome`` (int8), ``final_loss``, ``min_loss``,
      ``converge_step``, ``stop_step``, ``final_grad_norm``, ``final_<param>`` and metrics.

    Example:
      >>> ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 200},
      ...                 "axes": {"x0": {"linspace": [-2, 2, 41]}, "lr": [0.01, 0.1]}})
    """
    spec = parse_spec(spec, set)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise SpecError(f"chunk_size = {chunk_size!r}: must be an integer >= 1")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise SpecError(f"dtype = {dtype!r}: must be 'float32' or 'float64'")
    if out is not None:
        check_writable(out, overwrite=overwrite)
    dtype = dtype or spec.run["dtype"]
    _set_dtype(dtype)
    plan = make_plan(spec, chunk_size, dtype)

    n = spec.n_trajectories
    flat: dict[str, np.ndarray] = {}

    def sink(i, index, res):
        for k, x in res.items():
            if k not in flat:
                fill = -1 if np.issubdtype(x.dtype, np.integer) else np.nan
                flat[k] = np.full(n, fill, x.dtype)
            flat[k][index] = x

    bar = _progress_bar(plan, progress)
    try:
        stats = execute(plan, sink, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    steps = spec.train["steps"]
    run_s = max(stats["wall_time_s"] - stats["first_call_s"], 1e-9)
    stats["trajectory_steps_per_s"] = n * steps / max(stats["wall_time_s"], 1e-9)
    metric_attrs = problem_for(plan, plan.groups[0]).metric_attrs
    ds = to_dataset(spec, flat, provenance(spec, dtype, {**stats, "chunk_size": plan.chunk,
                                                         "compile_groups": plan.n_compiles}), metric_attrs)
    del run_s
    if out is not None:
        save(ds, out, overwrite=overwrite)
    return ds


def _progress_bar(plan, progress):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    steps = plan.spec.train["steps"]
    return tqdm(total=plan.spec.n_trajectories, unit="traj", unit_scale=True, desc=f"sweep x{steps} steps",
                file=sys.stderr, dynamic_ncols=True)
