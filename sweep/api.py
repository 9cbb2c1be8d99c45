"""``sweep.run``: the one documented entry point."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from .config import Spec, SpecError, parse_spec
from .engine import execute, make_plan, metric_attrs, recorded_indices, run_recorded
from .io import (check_writable, load, order_vars, provenance, recorded_dataset, save, skeleton, to_dataset,
                 var_attrs)
from .store import PartStore, assemble


class Interrupted(RuntimeError):
    """The run was stopped (Ctrl-C) after a completed chunk; the message says how to resume."""


_CACHE_SET = {"done": False}


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache (once per process).

    Location: ``$SWEEP_CACHE_DIR`` or ``~/.cache/sweep/jax``; ``SWEEP_NO_CACHE=1`` turns it off.
    A second identical run then loads its executables instead of compiling them.
    """
    if _CACHE_SET["done"]:
        return jax.config.jax_compilation_cache_dir
    _CACHE_SET["done"] = True
    if os.environ.get("SWEEP_NO_CACHE", "") not in ("", "0"):
        return None
    if jax.config.jax_compilation_cache_dir:  # the user set one: keep it
        return jax.config.jax_compilation_cache_dir
    path = os.environ.get("SWEEP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sweep", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # read-only home: run without a cache
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path


def _set_dtype(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def parse_shard(shard) -> tuple[int, int] | None:
    """'I/N' or (I, N) -> (I, N), validated."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise SpecError(f"--shard {shard!r}: expected I/N with integers, e.g. --shard 0/4") from None
    else:
        i, n = shard
    if not (isinstance(n, int) and isinstance(i, int) and n >= 1 and 0 <= i < n):
        raise SpecError(f"--shard {i}/{n}: needs 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    return i, n


def run(spec: Any, *, out: str | os.PathLike | None = None, overwrite: bool = False, resume: bool = False,
        chunk_size: int | None = None, dtype: str | None = None, progress: bool | None = None,
        set: list[str] | None = None, shard: str | tuple[int, int] | None = None) -> xr.Dataset:
    """Run a sweep and return its result Dataset (and write it to ``out`` if given).

    Args:
      spec: a dict, a ``sweep.Spec`` or a path to a TOML file (same keys everywhere).
      out: netCDF path. Results stream to disk chunk by chunk (memory stays bounded); an
        existing file is refused unless ``overwrite`` or ``resume``.
      overwrite: replace an existing ``out`` (and any partial run of it).
      resume: continue an interrupted run of the same spec (a different spec is refused).
      chunk_size: trajectories per compiled call (default: ``[run] chunk_size`` or automatic).
      dtype: "float32" or "float64" (default: ``[run] dtype``); float64 enables jax_enable_x64.
      progress: show a progress bar (default: only when stderr is a terminal).
      set: overrides such as ``["train.steps=500", "axes.lr=[0.1, 1.0]"]``.
      shard: "I/N": run only every N-th chunk starting at I and write a part file to ``out``
        (combine the N parts with ``sweep merge``). Set automatically under jax.distributed.
    Returns:
      xr.Dataset with one dimension per axis; ``outcome`` (int8), ``final_loss``, ``min_loss``,
      ``converge_step``, ``stop_step``, ``final_grad_norm``, ``final_<param>`` and metrics.
      With ``out``, the Dataset is opened lazily from the file.

    Example:
      >>> ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 200},
      ...                 "axes": {"x0": {"linspace": [-2, 2, 41]}, "lr": [0.01, 0.1]}})
    """
    spec = parse_spec(spec, set)
    enable_compilation_cache()
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise SpecError(f"chunk_size = {chunk_size!r}: must be an integer >= 1")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise SpecError(f"dtype = {dtype!r}: must be 'float32' or 'float64'")
    if overwrite and resume:
        raise SpecError("--overwrite and --resume: choose one (resume continues a run, overwrite starts over)")
    shard = parse_shard(shard)
    if shard is None and jax.process_count() > 1 and out is not None:
        # jax.distributed: each process runs its share of the chunks into its own part file
        shard = (jax.process_index(), jax.process_count())
        out = distributed_part_path(out, shard)
    if shard is not None and out is None:
        raise SpecError("--shard needs --out: each shard writes a part file for 'sweep merge'")
    dtype = dtype or spec.run["dtype"]
    if out is None:
        if resume:
            raise SpecError("--resume needs --out: the file to continue")
        _set_dtype(dtype)
        return _run_in_memory(spec, make_plan(spec, chunk_size, dtype), progress)
    out = check_writable(out, overwrite=overwrite, resume=resume)
    store = PartStore(out)
    done: frozenset | set = frozenset()  # (`set` is the overrides argument here)
    if resume and store.exists:
        meta = store.meta()
        _check_same_spec(spec, meta.get("spec_hash"), str(store.dir))
        if shard is not None and tuple(meta.get("shard") or ()) != shard:
            raise SpecError(f"--resume: {str(store.dir)!r} belongs to shard {meta.get('shard')}, not {shard}")
        dtype = meta["dtype"]
        chunk_size = meta["chunk"]
        done = store.done()
    elif resume and out.exists():
        ds = load(out)
        _check_same_spec(spec, ds.attrs.get("spec_hash"), str(out))
        print(f"{out} is already complete; nothing to resume", file=sys.stderr)
        return ds
    elif store.exists and not overwrite:
        raise SpecError(f"{str(out)!r} has an unfinished run ({store.dir}): pass --resume to continue it or "
                        "--overwrite to start over")
    _set_dtype(dtype)
    plan = make_plan(spec, chunk_size, dtype)
    if not done:
        store.create({"spec_hash": spec.hash(), "spec": spec.to_toml(), "chunk": plan.chunk, "dtype": dtype,
                      "n_chunks": plan.n_chunks, "shard": list(shard) if shard else None})
    mine = (lambda i: i % shard[1] == shard[0]) if shard else (lambda i: True)
    stats = _execute(plan, store.write, progress, skip=lambda i: i in done or not mine(i), resume_hint=(out, shard))
    todo = [i for i in range(plan.n_chunks) if mine(i)]
    finished = store.done()
    missing = [i for i in todo if i not in finished]
    if missing:
        raise RuntimeError(f"{len(missing)} chunks missing from {store.dir} after the run; rerun with --resume")
    attrs = _attrs(spec, plan, dtype, stats)
    if shard is not None:
        from .merge import write_part_file

        write_part_file(out, spec, plan, shard, store.parts(), attrs, store.variables(), overwrite=overwrite)
        store.remove()
        return xr.open_dataset(out)
    dtypes = store.variables()
    attrs_of = metric_attrs(plan)
    var_specs = {n: {"dtype": dtypes[n], "attrs": var_attrs(n, attrs_of)} for n in order_vars(dtypes)}
    assemble(out, with_recorded(skeleton(spec, attrs), plan), spec.dims, store.parts(), var_specs, overwrite=True)
    store.remove()
    return load(out)


def distributed_part_path(out, shard: tuple[int, int]) -> Path:
    """``result.nc`` -> ``result.part0of4.nc``: the part file of one process of a multi-host run."""
    p = Path(out)
    return p.with_name(f"{p.stem}.part{shard[0]}of{shard[1]}{p.suffix}")


def _check_same_spec(spec: Spec, stored_hash: str | None, where: str) -> None:
    if stored_hash != spec.hash():
        raise SpecError(f"--resume: {where!r} was made from a different spec (hash {stored_hash} != "
                        f"{spec.hash()}); use the same spec and --set values, or --overwrite to start over")


def _attrs(spec, plan, dtype, stats) -> dict:
    steps = spec.train["steps"]
    stats = dict(stats)
    stats["trajectory_steps_per_s"] = stats["trajectories_run"] * steps / max(stats["wall_time_s"], 1e-9)
    stats["chunk_size"] = plan.chunk
    stats["compile_groups"] = plan.n_compiles
    return provenance(spec, dtype, stats)


def _run_in_memory(spec: Spec, plan, progress) -> xr.Dataset:
    n = spec.n_trajectories
    flat: dict[str, np.ndarray] = {}

    def sink(i, index, res):
        for k, x in res.items():
            if k not in flat:
                fill = -1 if np.issubdtype(x.dtype, np.integer) else np.nan
                flat[k] = np.full(n, fill, x.dtype)
            flat[k][index] = x

    stats = _execute(plan, sink, progress)
    return with_recorded(to_dataset(spec, flat, _attrs(spec, plan, plan.dtype, stats), metric_attrs(plan)), plan)


def with_recorded(ds: xr.Dataset, plan) -> xr.Dataset:
    """Add the ``[record]`` trajectories (re-run with recording on) to ``ds``."""
    index = recorded_indices(plan.spec)
    if index.size == 0:
        return ds
    rec = recorded_dataset(plan.spec, run_recorded(plan, index))
    return xr.merge([ds, rec], combine_attrs="override", compat="override")


def _execute(plan, sink, progress, skip=None, resume_hint=None) -> dict:
    """Run the chunks with a progress bar; Ctrl-C stops after the current chunk."""
    bar = _progress_bar(plan, progress)
    stop = {"flag": False}
    old = None
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            if stop["flag"]:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            stop["flag"] = True
            print("\nstopping after the current chunk (Ctrl-C again to abort now)", file=sys.stderr)
        old = signal.signal(signal.SIGINT, handler)
    try:
        stats = execute(plan, sink, progress=bar.update if bar else None, skip=skip, stop=lambda: stop["flag"])
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        if bar:
            bar.close()
    if stop["flag"]:
        hint = ""
        if resume_hint is not None:
            out, shard = resume_hint
            hint = f"; finished chunks are kept: resume with  sweep run SPEC --out {out} --resume" + (
                f" --shard {shard[0]}/{shard[1]}" if shard else "")
        raise Interrupted(f"interrupted after {stats['trajectories_run']:,} trajectories{hint}")
    return stats


def _progress_bar(plan, progress):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    steps = plan.spec.train["steps"]

    class Bar(tqdm):
        def update(self, n=1):
            super().update(n)
            rate = self.format_dict.get("rate")
            if rate:
                self.set_postfix_str(f"{rate * steps / 1e6:.2f} M traj-steps/s", refresh=False)

    return Bar(total=plan.spec.n_trajectories, unit="traj", unit_scale=True, desc=f"sweep x{steps} steps",
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
