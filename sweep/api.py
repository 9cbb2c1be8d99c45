"""``sweep.run``: the one documented entry point."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from . import cores
from .config import Spec, SpecError, parse_spec
from .engine import chunk_starts, chunk_valid, execute, make_plan, metric_attrs, recorded_indices, run_recorded
from .io import (StorageError, check_writable, load, order_vars, provenance, recorded_dataset, skeleton, to_dataset,
                 var_attrs)
from .lock import OutputLock
from .planning import bytes_per_trajectory, check_disk, plan_report, result_bytes  # noqa: F401 (public here too)
from .progress import Interrupted, Progress as _Progress, Signals as _Signals
from .store import DamagedPart, PartStore, assemble

cores.settle()  # JAX has read the CPU device count sweep asked for

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


SHARD_ENV = "SWEEP_SHARD"


def parse_shard(shard) -> tuple[int, int] | None:
    """'I/N', (I, N) or 'auto' -> (I, N), validated.

    'auto' reads ``SWEEP_SHARD=I/N`` or, under a SLURM job array, ``SLURM_ARRAY_TASK_ID`` and
    ``SLURM_ARRAY_TASK_COUNT`` (with ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_STEP`` when the
    array does not count 0, 1, 2, ...): ``--array=1-16`` and ``--array=0-30:2`` give shards 0..15 of 16.
    """
    if shard is None:
        return None
    if isinstance(shard, str) and shard.strip() == "auto":
        return shard_from_env(os.environ)
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise SpecError(f"--shard {shard!r}: expected I/N with integers (e.g. --shard 0/4) or 'auto' "
                            f"(from {SHARD_ENV} or a SLURM array)") from None
    else:
        i, n = shard
    if not (isinstance(n, int) and isinstance(i, int) and n >= 1 and 0 <= i < n):
        raise SpecError(f"--shard {i}/{n}: needs 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    return i, n


def shard_from_env(env) -> tuple[int, int]:
    """``--shard auto``: (I, N) from ``SWEEP_SHARD`` or the SLURM array variables (SpecError if none is set)."""
    if env.get(SHARD_ENV, "").strip():
        raw = env[SHARD_ENV].strip()
        if raw == "auto":
            raise SpecError(f"{SHARD_ENV}=auto: give the shard itself, e.g. {SHARD_ENV}=0/4")
        try:
            return parse_shard(raw)
        except SpecError as e:
            raise SpecError(f"{SHARD_ENV}={raw!r}: {str(e).split(': ', 1)[-1]}") from None
    if "SLURM_ARRAY_TASK_ID" not in env:
        raise SpecError(f"--shard auto: neither {SHARD_ENV} nor SLURM_ARRAY_TASK_ID is set; run it as a SLURM "
                        f"array task (sbatch --array=0-N-1), set {SHARD_ENV}=I/N, or give --shard I/N")
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
             "SLURM_ARRAY_TASK_STEP")
    vals = {}
    for k in names:
        if env.get(k, "").strip():
            try:
                vals[k] = int(env[k])
            except ValueError:
                raise SpecError(f"--shard auto: {k}={env[k]!r} is not an integer") from None
    tid, lo = vals["SLURM_ARRAY_TASK_ID"], vals.get("SLURM_ARRAY_TASK_MIN", 0)
    step = vals.get("SLURM_ARRAY_TASK_STEP", 1) or 1
    count = vals.get("SLURM_ARRAY_TASK_COUNT")
    if count is None and "SLURM_ARRAY_TASK_MAX" in vals:
        count = (vals["SLURM_ARRAY_TASK_MAX"] - lo) // step + 1
    if count is None:
        raise SpecError(f"--shard auto: SLURM_ARRAY_TASK_ID={tid} but SLURM_ARRAY_TASK_COUNT is not set; "
                        "give --shard I/N")
    hi = vals.get("SLURM_ARRAY_TASK_MAX", lo + (count - 1) * step)
    if (tid - lo) % step or (hi - lo) // step + 1 != count or not lo <= tid <= hi:
        raise SpecError(f"--shard auto: the SLURM array (task {tid}, min {lo}, max {hi}, step {step}, count {count}) "
                        "is not evenly spaced; use --array=0-N-1 (or A-B:S) or give --shard I/N")
    return parse_shard(((tid - lo) // step, count))


def shard_span(n: int, shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """Positions [lo, hi) of the run order (compile groups one after another) that shard (I, N) runs:
    contiguous, and sizes that differ by at most one; empty when N exceeds the trajectories."""
    if shard is None:
        return None
    i, k = shard
    q, r = divmod(int(n), k)
    lo = i * q + min(i, r)
    return lo, lo + q + (1 if i < r else 0)


def run(spec: Any, *, out: str | os.PathLike | None = None, overwrite: bool = False, resume: bool = False,
        chunk_size: int | None = None, dtype: str | None = None, progress: bool | str | None = None,
        set: list[str] | None = None, shard: str | tuple[int, int] | None = None) -> xr.Dataset:
    """Run a sweep and return its result Dataset (and write it to ``out`` if given).

    Args:
      spec: a dict, a ``sweep.Spec`` or a path to a TOML file (same keys everywhere).
      out: netCDF path. Results stream to disk chunk by chunk (memory stays bounded); an
        existing file is refused unless ``overwrite`` or ``resume``; so is an output another
        live process is writing (``OUT.lock``), and one the disk has no room for.
      overwrite: replace an existing ``out`` (and any partial run of it).
      resume: continue an interrupted run of the same spec (a different spec is refused);
        parts whose checksum does not match are named, deleted and recomputed.
      chunk_size: trajectories per compiled call (default: ``[run] chunk_size`` or automatic).
      dtype: "float32" or "float64" (default: ``[run] dtype``); float64 enables jax_enable_x64.
      progress: True: a progress bar; False: nothing; "lines": a plain line now and then (batch
        logs); None (default): the bar when stderr is a terminal, else the lines.
      set: overrides such as ``["train.steps=500", "axes.lr=[0.1, 1.0]"]``.
      shard: "I/N": run only the I-th of N contiguous, balanced ranges of the trajectories (in run
        order: compile groups one after another) and write a part file to ``out`` (combine the
        N parts with ``sweep merge``); "auto": I/N from ``SWEEP_SHARD`` or the SLURM array
        variables. Under jax.distributed (several processes) each process runs shard
        ``process_index/process_count`` into ``OUT.partIofN.nc``.
    Returns:
      xr.Dataset with one dimension per axis; ``outcome`` (int8), ``final_loss``, ``min_loss``,
      ``converge_step``, ``stop_step``, ``final_grad_norm``, ``final_<param>`` and metrics.
      With ``out``, the Dataset is opened lazily from the file. Timing attributes:
      ``wall_time_s`` (this call, everything: planning, compiling, computing, writing),
      ``compute_time_s`` (running the chunks, compiles included), ``compile_time_s`` (of that,
      tracing, lowering and XLA compilation, from jax.monitoring), ``first_call_s`` (the first
      call of each compile group), ``assemble_time_s`` (writing the netCDF file);
      ``trajectory_steps_per_s`` = trajectories run x steps / ``wall_time_s``,
      ``compute_trajectory_steps_per_s`` the same over ``compute_time_s`` and
      ``run_trajectory_steps_per_s`` over ``compute_time_s - compile_time_s``.

    Example:
      >>> ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 200},
      ...                 "axes": {"x0": {"linspace": [-2, 2, 41]}, "lr": [0.01, 0.1]}})
    """
    t_start = time.perf_counter()
    spec = parse_spec(spec, set)
    enable_compilation_cache()
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise SpecError(f"chunk_size = {chunk_size!r}: must be an integer >= 1")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise SpecError(f"dtype = {dtype!r}: must be 'float32' or 'float64'")
    if progress not in (None, True, False, "lines", "bar"):
        raise SpecError(f"progress = {progress!r}: must be True, False, None or 'lines'")
    if overwrite and resume:
        raise SpecError("--overwrite and --resume: choose one (resume continues a run, overwrite starts over)")
    shard = parse_shard(shard)
    if jax.process_count() > 1:
        if out is None:
            raise SpecError(f"a multi-process run (jax.distributed, {jax.process_count()} processes) needs out: each "
                            "process writes its part file OUT.partIofN.nc for 'sweep merge'")
        if shard is None:  # jax.distributed: each process runs its share of the trajectories into its own part file
            shard = (jax.process_index(), jax.process_count())
            out = distributed_part_path(out, shard)
    if shard is not None and out is None:
        raise SpecError("--shard needs --out: each shard writes a part file for 'sweep merge'")
    span = shard_span(spec.n_trajectories, shard)
    dtype = dtype or spec.run["dtype"]
    if out is None:
        if resume:
            raise SpecError("--resume needs --out: the file to continue")
        _set_dtype(dtype)
        return _run_in_memory(spec, make_plan(spec, chunk_size, dtype), progress, t_start)
    out = check_writable(out, overwrite=overwrite, resume=resume)
    if not resume and not out.parent.exists():  # refuse before the lock creates the output's folder
        _set_dtype(dtype)
        check_disk(make_plan(spec, chunk_size, dtype, span), out)
    with OutputLock(out):
        return _run_to_file(spec, out, overwrite, resume, chunk_size, dtype, progress, shard, t_start)


def _run_to_file(spec, out: Path, overwrite, resume, chunk_size, dtype, progress, shard, t_start) -> xr.Dataset:
    """``run`` with an output, while holding its lock."""
    if out.exists() and not (overwrite or resume):  # appeared since check_writable
        raise SpecError(f"--out {str(out)!r} already exists: pass --overwrite to replace it or --resume to continue it")
    store = PartStore(out)
    clean_temporary(out)
    done: frozenset | set = frozenset()  # (`set` is the overrides argument here)
    if resume and store.exists:
        meta = store.meta()
        _check_same_spec(spec, meta.get("spec_hash"), str(store.dir))
        if tuple(meta.get("shard") or ()) != (shard or ()):
            raise SpecError(f"--resume: {str(store.dir)!r} belongs to shard {meta.get('shard')}, not {shard}")
        if shard is not None and tuple(meta.get("span") or ()) != shard_span(spec.n_trajectories, shard):
            raise SpecError(f"--resume: {str(store.dir)!r} was written by an older sweep that split shards by "
                            "chunks; pass --overwrite to rerun this shard")
        dtype = meta["dtype"]
        chunk_size = meta["chunk"]
        for p in store.verify():
            print(f"part {str(p)!r} was damaged (checksum mismatch): deleted, it is recomputed", file=sys.stderr)
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
    span = shard_span(spec.n_trajectories, shard)
    plan = make_plan(spec, chunk_size, dtype, span)
    todo = list(range(plan.n_chunks))
    check_disk(plan, out, todo_fraction=sum(i not in done for i in todo) / max(1, plan.n_chunks),
               reuse=store.nbytes() if done else 0)
    if not done:
        store.create({"spec_hash": spec.hash(), "spec": spec.to_toml(), "chunk": plan.chunk, "dtype": dtype,
                      "n_chunks": plan.n_chunks, "shard": list(shard) if shard else None,
                      "span": list(span) if span else None})
    hint = resume_command(out, shard)
    with _Signals() as sig:
        stats = _execute(plan, store.write, progress, skip=lambda i: i in done, signals=sig,
                         resume_hint=hint)
        finished = store.done()
        missing = [i for i in todo if i not in finished]
        if missing:
            raise RuntimeError(f"{len(missing)} chunks missing from {store.dir} after the run; rerun with --resume")
        sig.stage = "assembling"
        sig.hint = hint
        attrs = _attrs(spec, plan, dtype, stats, time.perf_counter() - t_start)
        try:
            if shard is not None:
                from .merge import write_part_file

                write_part_file(out, spec, plan, shard, store.iter_parts(), attrs, store.variables(),
                                overwrite=overwrite, metrics=metric_attrs(plan))
                store.remove()
                return xr.open_dataset(out)
            parts, dtypes = store.scan()
            attrs_of = metric_attrs(plan)
            var_specs = {n: {"dtype": dtypes[n], "attrs": var_attrs(n, attrs_of)} for n in order_vars(dtypes)}
            skel = with_recorded(skeleton(spec, attrs), plan)
            bar = _Progress(progress, spec.n_trajectories, f"assembling {out.name}", "points")
            t_asm = time.perf_counter()

            def final_attrs():
                return _final_times(attrs, time.perf_counter() - t_asm, time.perf_counter() - t_start)

            try:
                assemble(out, skel, spec.dims, parts, var_specs, overwrite=True, progress=bar.update,
                         final_attrs=final_attrs)
            finally:
                bar.close()
        except DamagedPart as e:
            e.path.unlink(missing_ok=True)
            raise DamagedPart(f"{e}: deleted; recompute it with  {hint}", e.path) from None
        except StorageError as e:
            raise StorageError(f"{e}; the finished chunks are kept in {str(store.dir)!r}: once the cause is "
                               f"fixed, resume with  {hint}") from None
    store.remove()
    return load(out)


def clean_temporary(out: Path) -> None:
    """Remove temporary files that killed writers of ``out`` left (``.OUT.*.tmp``, parts' ``.chunk_*.tmp``);
    called while holding the output's lock, so no live writer owns them."""
    for p in out.parent.glob("." + out.name + ".*.tmp") if out.parent.exists() else ():
        p.unlink(missing_ok=True)
    store = PartStore(out)
    if store.dir.exists():
        store.clean_temporary()


def resume_command(out, shard) -> str:
    return f"sweep run SPEC --out {out} --resume" + (f" --shard {shard[0]}/{shard[1]}" if shard else "")


DISTRIBUTED_TIMEOUT_ENV = "SWEEP_DISTRIBUTED_TIMEOUT"  # seconds to wait for every process to join (JAX: 300)


def start_distributed(env=None) -> tuple[int, int] | None:
    """``sweep run --distributed``: ``jax.distributed.initialize()`` (JAX's auto-detection: SLURM, Open
    MPI, Cloud TPU, ...; or ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``); returns this process's shard (process_index, process_count), None for one process.
    ``SWEEP_DISTRIBUTED_TIMEOUT`` (seconds, JAX's default 300): how long a process waits for the others to
    join; one that dies before joining makes the others exit non-zero after it."""
    env = os.environ if env is None else env
    kw = {}
    for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id"),
                      (DISTRIBUTED_TIMEOUT_ENV, "initialization_timeout")):
        if env.get(name, "").strip():
            try:
                kw[key] = int(env[name])
            except ValueError:
                raise SpecError(f"--distributed: {name}={env[name]!r} is not an integer") from None
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise SpecError(f"--distributed: jax.distributed.initialize() failed ({msg[:300]}); run under SLURM "
                        "(srun), Open MPI or a Cloud TPU pod, or set JAX_COORDINATOR_ADDRESS=host:port, "
                        "JAX_NUM_PROCESSES and JAX_PROCESS_ID in every process") from None
    return (jax.process_index(), jax.process_count()) if jax.process_count() > 1 else None


def distributed_part_path(out, shard: tuple[int, int]) -> Path:
    """``result.nc`` -> ``result.part0of4.nc``: the part file of one process of a multi-host run."""
    p = Path(out)
    return p.with_name(f"{p.stem}.part{shard[0]}of{shard[1]}{p.suffix}")


def _check_same_spec(spec: Spec, stored_hash: str | None, where: str) -> None:
    if stored_hash != spec.hash():
        raise SpecError(f"--resume: {where!r} was made from a different spec (hash {stored_hash} != "
                        f"{spec.hash()}); use the same spec and --set values, or --overwrite to start over")


def _attrs(spec, plan, dtype, stats, wall: float) -> dict:
    """Provenance and timing attributes (see ``run``); ``wall`` so far, updated by ``_final_times``."""
    steps = spec.train["steps"]
    stats = dict(stats)
    stats["compute_time_s"] = stats.pop("wall_time_s")
    stats["compute_trajectory_steps_per_s"] = stats["trajectories_run"] * steps / max(stats["compute_time_s"], 1e-9)
    run_s = max(stats["compute_time_s"] - stats.get("compile_time_s", 0.0), 1e-9)
    stats["run_trajectory_steps_per_s"] = stats["trajectories_run"] * steps / run_s
    stats["chunk_size"] = plan.chunk
    stats["compile_groups"] = plan.n_compiles
    attrs = provenance(spec, dtype, stats)
    return {**attrs, **_final_times(attrs, 0.0, wall)}


def _final_times(attrs: dict, assemble_s: float, wall: float) -> dict:
    steps = float(attrs["steps"])
    return {"assemble_time_s": float(assemble_s), "wall_time_s": float(wall),
            "trajectory_steps_per_s": float(attrs["trajectories_run"]) * steps / max(wall, 1e-9)}


def _run_in_memory(spec: Spec, plan, progress, t_start) -> xr.Dataset:
    n = spec.n_trajectories
    flat: dict[str, np.ndarray] = {}

    def sink(i, index, res):
        for k, x in res.items():
            if k not in flat:
                fill = -1 if np.issubdtype(x.dtype, np.integer) else np.nan
                flat[k] = np.full(n, fill, x.dtype)
            flat[k][index] = x

    with _Signals() as sig:
        stats = _execute(plan, sink, progress, signals=sig)
    ds = with_recorded(to_dataset(spec, flat, _attrs(spec, plan, plan.dtype, stats, 0.0), metric_attrs(plan)), plan)
    ds.attrs.update(_final_times(ds.attrs, 0.0, time.perf_counter() - t_start))
    return ds


def with_recorded(ds: xr.Dataset, plan) -> xr.Dataset:
    """Add the ``[record]`` trajectories (re-run with recording on) to ``ds``."""
    index = recorded_indices(plan.spec)
    if index.size == 0:
        return ds
    rec = recorded_dataset(plan.spec, run_recorded(plan, index))
    return xr.merge([ds, rec], combine_attrs="override", compat="override")


def _execute(plan, sink, progress, skip=None, signals: _Signals | None = None, resume_hint: str = "") -> dict:
    """Run the chunks with a progress display; a signal stops after the current chunk (``_Signals``)."""
    total = plan.spec.n_trajectories
    if skip is not None:
        total = sum(chunk_valid(plan, g, start) for i, (g, start) in enumerate(chunk_starts(plan)) if not skip(i))
    elif plan.span is not None:
        total = plan.n_trajectories
    bar = _Progress(progress, total, f"sweep x{plan.spec.train['steps']} steps", "traj",
                    steps=plan.spec.train["steps"])
    if signals is not None:
        signals.hint = resume_hint
    try:
        stats = execute(plan, sink, progress=bar.update, skip=skip,
                        stop=(lambda: signals.stop) if signals is not None else None)
    finally:
        bar.close()
    if signals is not None and signals.stop:
        raise Interrupted(f"{signal.Signals(signals.signum).name}: interrupted after "
                          f"{stats['trajectories_run']:,} trajectories{signals.kept()}", signals.signum)
    return stats
