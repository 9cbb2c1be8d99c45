"""What a run would do before it does it: the output's size, the disk it needs, an ETA from a probe."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .config import Spec, SpecError, parse_spec
from .engine import make_plan
from .io import human_bytes


def result_bytes(plan) -> int:
    """Bytes of the result's grid variables (uncompressed: an upper bound of the netCDF file, and about
    the size of the parts a run keeps until it assembles the file)."""
    return plan.n_trajectories * bytes_per_trajectory(plan)


def bytes_per_trajectory(plan) -> int:
    """Uncompressed bytes of one trajectory's result variables (the union over compile groups)."""
    from .engine import _static_key, problem_for

    fl = np.dtype(plan.dtype).itemsize
    sizes = {"outcome": 1, "final_loss": fl, "min_loss": fl, "converge_step": 4, "stop_step": 4,
             "final_grad_norm": fl, "target_loss": fl}
    spec = plan.spec
    if spec.train.get("lr_mode") == "sharpness":
        sizes["lambda0"] = fl
    if spec.outcome.get("sharpness_iters"):
        sizes["sharpness"] = sizes["two_over_lr"] = fl
    for g in {_static_key(plan, g): g for g in plan.groups}.values():
        p = problem_for(plan, g)
        sizes.update({"final_" + k: fl for k in p.params})
        sizes.update({k: fl for k in p.metric_attrs if k not in sizes})
        for e in p.events:
            sizes[e], sizes[e + "_step"] = 1, 4
        if p.tail:
            sizes["trainable"], sizes["tail_loss_ratio"] = 1, fl
    return sum(sizes.values())


def check_disk(plan, out: Path, todo_fraction: float = 1.0, reuse: int = 0) -> dict:
    """Refuse (SpecError) a run whose parts would not fit on the output's disk; returns the numbers.

    The parts of the chunks still to run take about ``result_bytes`` x ``todo_fraction``; assembling
    then writes the netCDF file (compressed, at most ``result_bytes``) while the parts still exist.
    """
    need = result_bytes(plan)
    anc = out.parent if str(out.parent) else Path(".")
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    try:
        free = shutil.disk_usage(anc).free
    except OSError:
        return {"bytes": need, "free": None, "dir": str(anc)}
    parts = int(need * todo_fraction)
    if parts > free:
        raise SpecError(f"--out {str(out)!r}: the run needs about {human_bytes(parts)} for its parts "
                        f"({plan.n_trajectories:,} trajectories x {bytes_per_trajectory(plan)} B) and then up to "
                        f"{human_bytes(need)} for the file, but only {human_bytes(free)} is free in {str(anc)!r}; "
                        "free space, choose another --out, or run fewer trajectories (--shard I/N on other disks)")
    return {"bytes": need, "free": free, "dir": str(anc), "tight": parts + need > free + reuse}


def plan_report(spec: Any, *, out: str | os.PathLike | None = None, chunk_size: int | None = None,
                dtype: str | None = None, set: list[str] | None = None, probe: bool = True) -> dict:
    """What a run would do, without doing it: sizes, the output's disk need, and an ETA.

    The probe runs one chunk of the first compile group for ``PROBE_STEPS`` steps twice (the first
    call compiles) with early exit off; the ETA then assumes every chunk runs every step, so it is
    an upper bound (early exit and compaction make runs shorter), and it scales the first group's
    speed to all groups.

    Returns:
      dict with n_trajectories, steps, compile_groups, chunks, chunk, devices, bytes_per_trajectory,
      result_bytes, free_bytes, disk_dir, fits, and with the probe: probe_chunk, probe_steps,
      compile_s, run_s (seconds of PROBE_STEPS steps of one chunk), eta_s.
    """
    from .api import _set_dtype

    spec = parse_spec(spec, set)
    dtype = dtype or spec.run["dtype"]
    _set_dtype(dtype)
    plan = make_plan(spec, chunk_size, dtype)
    from .engine import local_devices

    rep = {"n_trajectories": spec.n_trajectories, "steps": int(spec.train["steps"]), "compile_groups": plan.n_compiles,
           "chunks": plan.n_chunks, "chunk": plan.chunk, "devices": f"{len(local_devices())} {jax.default_backend()}",
           "bytes_per_trajectory": bytes_per_trajectory(plan), "result_bytes": result_bytes(plan)}
    if out is not None:
        try:
            disk = check_disk(plan, Path(out))
            rep.update(free_bytes=disk["free"], disk_dir=disk["dir"], fits=True)
        except SpecError as e:
            rep.update(fits=False, refusal=str(e))
            rep["free_bytes"] = None
            anc = Path(out).parent
            while not anc.exists() and anc != anc.parent:
                anc = anc.parent
            rep["disk_dir"] = str(anc)
            try:
                rep["free_bytes"] = shutil.disk_usage(anc).free
            except OSError:
                pass
    if probe and plan.groups:
        rep.update(_probe(spec, plan))
    return rep


PROBE_STEPS = 64


def _probe(spec: Spec, plan) -> dict:
    from .engine import make_chunk, run_chunk

    k = min(PROBE_STEPS, int(spec.train["steps"]))
    from .config import load_spec_dict

    d = load_spec_dict(spec)
    d["train"]["steps"] = k
    d["run"] = {**d.get("run", {}), "early_exit": False}
    d.pop("record", None)
    if "steps" in d.get("axes", {}):
        d["axes"] = {**d["axes"], "steps": [k]}
    pspec = parse_spec(d)
    pplan = make_plan(pspec, plan.chunk, plan.dtype)
    c = make_chunk(pplan, pplan.groups[0], 0)
    t0 = time.perf_counter()
    run_chunk(pplan, c)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_chunk(pplan, c)
    run_s = time.perf_counter() - t0
    per_chunk = run_s * spec.train["steps"] / k
    compile_s = max(0.0, first - run_s)
    return {"probe_chunk": pplan.chunk, "probe_steps": k, "compile_s": compile_s, "run_s": run_s,
            "eta_s": plan.n_compiles * compile_s + plan.n_chunks * per_chunk}
