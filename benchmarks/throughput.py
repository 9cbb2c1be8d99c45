"""Trajectory-steps per second of the engine next to the obvious alternatives.

    python benchmarks/throughput.py [--quick] [--json OUT.json] [--only A,B] [--impl engine,numpy]

Metric: trajectory-steps/s; one trajectory advancing one optimizer step counts 1. For the
engine the count is n_trajectories x steps (the step budget) even though it stops settled
trajectories early: that saving is part of what it is measured for.

Every measurement times the first call separately (compile + run), then takes the min of
>= 3 warm calls (6 when a call is under 2 s, except with --quick), each ended by ``jax.block_until_ready`` (the
baselines return host arrays, so their calls are complete when they return); the min is
the figure to trust on a shared machine, and each row records the load average. "compile s" is first call minus
the best warm call (the engine's own ``compile_time_s`` when it reports one). Baselines
that are slow are timed on a slice (fewer trajectories or fewer steps, said in the table)
and their rate is extrapolated per trajectory-step. The workloads and baselines are in
``benchmarks/baselines.py``. ``--quick`` shrinks every workload ~50-80x (smoke test) and
writes benchmarks/results-quick.json unless --json says otherwise.

Optuna (baseline 5) is timed on 1,000 trials and extrapolated linearly, which flatters it:
its GridSampler bookkeeping per trial grows with the number of past trials; the table
also gives the rate of its training alone.

The engine runs each chunk on every local device: on CPU, one JAX CPU device per usable core
(``sweep.cores``; ``import sweep`` sets it up, so this script imports sweep before anything
starts JAX's backends). Each workload also gets the row "engine, 1 CPU device": the same
run with the engine restricted to the first device, for comparison with the baselines, which
are single-device programs (CPU backend only).

Workload C is the ``mlp`` problem of the engine's library (spirals, 2 -> 16 -> 16 -> 3 relu,
softmax cross-entropy, GD, lr x init_scale grid; ``baselines.py`` has the definition): the
baselines train exactly the engine's trajectories (its data and its per-trajectory initial
weights, read from the engine once, untimed), so for C the agreement check also compares the
engine's own final loss with the textbook program's on the checked trajectories.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
# compile times must be real compiles: keep the engine's persistent compilation cache off (a warm
# cache would turn the first calls of the engine, and of every baseline after it, into cache loads)
os.environ.setdefault("SWEEP_NO_CACHE", "1")
try:  # first: importing sweep gives the CPU backend one device per core, before JAX starts
    import sweep  # noqa: E402,F401
except ImportError:
    sys.path.append(str(ROOT))  # a checkout that is not pip-installed; installed wins
    try:
        import sweep  # noqa: E402,F401
    except Exception:  # noqa: BLE001 - the engine rows are skipped, with the reason
        sweep = None
except Exception:  # noqa: BLE001 - a broken engine must not stop the baselines
    sweep = None
import baselines as bl  # noqa: E402

REPEATS = 3
COMPILED = ("engine", "engine-reported", "engine-1dev", "jax-scan", "jax-naive", "jax-steploop")
QUICK = False  # set by --quick: always REPEATS warm calls


# --------------------------------------------------------------------------- timing

def rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn, *, repeats: int | None = None) -> dict:
    """Time ``fn()``: the first call (compile + run) apart, then warm calls.

    ``repeats`` warm calls; by default REPEATS, or 2 * REPEATS when the first call took
    under 2 s (cheap calls are the noisiest on a shared machine).
    """
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    if repeats is None:
        repeats = REPEATS if first >= 2.0 or QUICK else 2 * REPEATS
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        warm.append(time.perf_counter() - t0)
    return {"first_s": first, "warm_s": warm, "best_s": min(warm),
            "compile_s": max(0.0, first - min(warm)), "out": out}


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "engine_devices": len(sweep.engine.local_devices()) if sweep is not None else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
    }
    for mod in ("optax", "torch", "optuna"):
        if bl.have(mod):
            m = __import__(mod)
            info[mod] = m.__version__
    if bl.have("torch"):
        import torch
        info["torch_threads"] = torch.get_num_threads()
    return info


def matmul_flops(quick: bool) -> dict:
    """The machine's float32 matmul FLOP/s: jnp.dot of two 2048x2048, min of several."""
    n = 2048
    a = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    m = measure(lambda: dot(a, b), repeats=10)
    return {"n": n, "best_s": m["best_s"], "first_s": m["first_s"],
            "flops_per_s": 2 * n ** 3 / m["best_s"]}


# --------------------------------------------------------------------------- engine

def engine_spec(wl: bl.Workload) -> dict:
    """The ``sweep.run`` spec for a workload (the same grid, steps and data as baselines)."""
    if wl.problem == "mlp":
        # C: spirals (the engine's generator), widths (16, 16), relu, objective xent (mean over
        # points of the cross-entropy, as the baselines), plain GD with lr swept, init_dist
        # uniform with init_scale swept, biases 0. The spec lives in baselines.py because the
        # baselines read the engine's data and initial weights from it.
        return bl.mlp_spec(wl)
    ax = wl.axes
    lin = lambda v: {"linspace": [float(v[0]), float(v[-1]), len(v)]}  # noqa: E731
    if wl.problem == "neuron":
        if wl.fresh:
            data = {"dist": "normal", "batch": wl.n_points, "fresh": True}
        else:
            data = {"dist": "normal", "n": wl.n_points, "fresh": False}
        train = {"steps": wl.steps, "optimizer": wl.optimizer}
        axes = {}
        if "lr" in ax:
            axes["lr"] = {"logspace": [-3, -1, len(ax["lr"])]}
        else:
            train["lr"] = wl.lr
        axes["w0"], axes["b0"] = lin(ax["w0"]), lin(ax["b0"])
        return {"problem": {"name": "neuron", "bias": True, "activation": "relu", "data": data},
                "train": train, "axes": axes}
    # The engine's two_layer_lr loss is 1/2 mean (f - y)^2 and its layer rates are train.lr *
    # lr0 / lr1, so train.lr = 2 gives the same GD dynamics as the baselines' MSE. Its initial
    # weights come from each trajectory's key (same distribution, not one shared draw): the
    # same work per step, different trajectories.
    return {"problem": {"name": "two_layer_lr", "activation": "tanh", "width": wl.width,
                        "d": wl.dim, "n_data": wl.n_points},
            "train": {"steps": wl.steps, "optimizer": "sgd", "lr": 2.0},
            "axes": {"lr0": {"logspace": [-2, 1, len(ax["lr0"])]},
                     "lr1": {"logspace": [-2, 1, len(ax["lr1"])]}}}


ENGINE_RESULTS: dict = {}  # workload name -> the engine's last Dataset (agreement check of C)


@contextlib.contextmanager
def one_engine_device():
    """Restrict the engine to the first of its local devices for the duration (its compiled
    functions and meshes are cached per device set, so the caches are cleared on the way in and
    out: the first call inside compiles, as a fresh process would)."""
    from sweep import engine

    every = engine.local_devices
    engine._COMPILED.clear()
    engine._SHARDINGS.clear()
    engine.local_devices = lambda: every()[:1]
    try:
        yield
    finally:
        engine.local_devices = every
        engine._COMPILED.clear()
        engine._SHARDINGS.clear()


def measure_engine(wl: bl.Workload) -> dict:
    """Time ``sweep.run(spec, progress=False)``; raises when the engine can't run it."""
    if sweep is None:
        raise ImportError("sweep could not be imported")

    spec = engine_spec(wl)
    runs = []

    def call():
        ds = sweep.run(spec, progress=False)
        runs.append({"run_time_s": ds.attrs.get("compute_time_s")})  # the engine's own clock: running the chunks (no file writing)
        runs[-1].update({k: v for k, v in ds.attrs.items() if k not in runs[-1]
                         and isinstance(v, (int, float, np.integer, np.floating))})
        return ds

    m = measure(call)
    ds = m.pop("out")
    sizes = dict(ds.sizes)
    n = math.prod(len(v) for v in wl.axes.values())
    got = math.prod(sizes[k] for k in wl.axes if k in sizes)
    if got != n:
        raise RuntimeError(f"engine returned dims {sizes}, expected {n} trajectories")
    m["engine_attrs"] = runs
    ENGINE_RESULTS[wl.name] = ds
    reported = [r["run_time_s"] for r in runs[1:] if r["run_time_s"] is not None]
    if reported:
        m["reported_best_run_s"] = float(min(reported))
    return m


# --------------------------------------------------------------------------- plan

class Plan:
    """Sizes of the slices and scans, full or ``--quick``."""

    def __init__(self, quick: bool, gpu: bool = False):
        self.quick = quick
        self.chunks = [256, 2048] if quick else [2 ** k for k in range(6, 17)]   # 64 .. 65536
        if gpu:  # an accelerator fills with large chunks
            self.chunks = [2 ** k for k in range(14, 21, 2)]
        self.np_chunks = [1024, None] if quick else [256, 1024, 8192, None]   # None: all at once

    def scan_steps(self, wl):          # step slice for the chunk-size scan of baseline 0
        return max(10, wl.steps // 50)

    def loop_steps(self, wl):          # step slice for baselines 2, 3, 4 (Python step loops)
        return max(5, wl.steps // 100)

    def naive_axes(self, wl):          # trajectory slice for baseline 1
        if wl.problem == "mlp":
            counts = {"lr": 4, "init_scale": 2} if self.quick else {"lr": 8, "init_scale": 8}  # 8 / 64
            return bl.sub_axes(wl, counts)
        if self.quick:
            counts = {"lr": 2, "w0": 4, "b0": 4, "lr0": 4, "lr1": 2}
        elif wl.problem == "two_layer":
            counts = {"lr0": 8, "lr1": 8}                                  # 64
        else:
            counts = {"lr": 4, "w0": 8, "b0": 8} if "lr" in wl.axes else {"w0": 16, "b0": 16}
        return bl.sub_axes(wl, counts)

    def optuna_axes(self, wl):         # trajectory slice for baseline 5
        if wl.problem == "mlp":
            counts = {"lr": 10, "init_scale": 5} if self.quick else {"lr": 40, "init_scale": 25}
            return bl.sub_axes(wl, counts)                                 # 50 / 1,000
        if self.quick:
            counts = {"lr": 2, "w0": 5, "b0": 5, "lr0": 10, "lr1": 5}     # 50
        else:
            counts = {"lr": 4, "w0": 25, "b0": 10, "lr0": 40, "lr1": 25}  # 1,000
        if "lr" not in wl.axes and wl.problem == "neuron" and not self.quick:
            counts = {"w0": 40, "b0": 25}
        if "lr" not in wl.axes and wl.problem == "neuron" and self.quick:
            counts = {"w0": 10, "b0": 5}
        return bl.sub_axes(wl, counts)

    @staticmethod
    def check_axes(wl):                # a few well-behaved trajectories for the agreement check
        if wl.problem == "mlp":  # small steps and weights: see check_tol
            return bl.pick_axes(wl, {"lr": [0.01, 0.03, 0.1], "init_scale": [0.1, 0.3]})
        if wl.problem == "two_layer":
            return bl.pick_axes(wl, {"lr0": [0.01, 0.05, 0.2], "lr1": [0.01, 0.1]})
        vals = {"w0": [0.5, 1.5, 2.5], "b0": [-0.5, 0.5]}
        if "lr" in wl.axes:
            vals = {"lr": [1e-3, 1e-2], "w0": [0.5, 2.0], "b0": [-0.5, 0.5]}
        return bl.pick_axes(wl, vals)

    @staticmethod
    def check_tol(wl):                 # max |final parameter difference| allowed by the check
        # mlp: a relu pre-activation that lands within rounding distance of 0 on one data point
        # keeps or drops that point's gradient term depending on the summation order, a jump of
        # ~lr |g x| / n that GD then carries along. Runs agree to ~1e-7 until such a flip.
        # Measured against the textbook program over 500 steps: on lr 0.01 .. 0.1 x init_scale
        # 0.1 .. 1 (25 runs), some implementation flipped in 4 runs, by 2e-5 .. 2e-4 with
        # init_scale <= 0.3 and 3.5e-3 at lr 0.1, init_scale 1; at lr 0.3 by 3e-3 .. 3e-2.
        # A wrong loss scale, init or data is off by far more than 1e-3.
        return 1e-3 if wl.problem == "mlp" else 1e-4


def count(axes) -> int:
    return math.prod(len(v) for v in axes.values())


# --------------------------------------------------------------------------- main

def run_workload(wl: bl.Workload, plan: Plan, impls: set[str], peak: float, log) -> list[dict]:
    rows = []
    full = wl.axes
    flops = bl.workload_flops(wl)

    def add(impl, label, m, n_traj, steps, note=""):
        row = {"workload": wl.name, "impl": impl, "label": label, "n_traj": n_traj,
               "steps": steps, "traj_steps": n_traj * steps,
               "traj_steps_per_s": n_traj * steps / m["best_s"],
               "first_s": m["first_s"], "warm_s": m["warm_s"], "best_s": m["best_s"],
               "compile_s": m["compile_s"], "note": note, "rss_peak_mb_so_far": rss_mb(),
               "loadavg_1min_after": os.getloadavg()[0]}
        for k in ("engine_attrs", "reported_best_run_s", "chunk_scan", "chunk",
                  "train_only_traj_steps_per_s"):
            if k in m:
                row[k] = m[k]
        if flops:
            row["flops_per_traj_step"] = flops
            row["flops_per_s"] = row["traj_steps_per_s"] * flops
            row["flops_fraction"] = row["flops_per_s"] / peak
        rows.append(row)
        log(f"  {label:<40} {row['traj_steps_per_s']:>12.4g} traj-steps/s  "
            f"first {m['first_s']:.2f}s  best {m['best_s']:.3f}s  {note}")
        return row

    def skip(impl, label, why):
        rows.append({"workload": wl.name, "impl": impl, "label": label, "skipped": why})
        log(f"  {label:<40} skipped: {why}" if impl != "engine" else f"  engine: {why}")

    log(f"\n== {wl.name}: {wl.n_traj:,} trajectories x {wl.steps:,} steps "
        f"({wl.problem}, {wl.optimizer}{', fresh batch' if wl.fresh else ''}, "
        f"{wl.n_points} points{', %d FLOPs/traj-step' % flops if flops else ''})")

    if "engine" in impls:
        try:
            m = measure_engine(wl)
        except Exception as e:  # ImportError, unknown problem, spec error, engine bug ...
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
            skip("engine", "engine sweep.run", f"not available ({reason})")
        else:
            add("engine", "engine sweep.run", m, wl.n_traj, wl.steps,
                "budget n_traj*steps counted; wall clock of sweep.run")
            if "reported_best_run_s" in m:
                m2 = dict(m, best_s=m["reported_best_run_s"])
                add("engine-reported", "engine (own compute_time_s)", m2, wl.n_traj, wl.steps,
                    "the engine's compute_time_s attr: running the chunks")

    if "engine-1dev" in impls:
        label = "engine, 1 CPU device"
        n_dev = len(sweep.engine.local_devices()) if sweep is not None else 0
        if jax.default_backend() != "cpu":
            skip("engine-1dev", label, f"only on the CPU backend (this is {jax.default_backend()})")
        elif n_dev < 2:
            skip("engine-1dev", label, "the engine has only one device here: same as the engine row"
                 if n_dev else "sweep could not be imported")
        else:
            try:
                with one_engine_device():
                    m = measure_engine(wl)
            except Exception as e:  # noqa: BLE001 - reported in the table
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
                skip("engine-1dev", label, f"failed ({reason})")
            else:
                add("engine-1dev", label, m, wl.n_traj, wl.steps,
                    f"the engine on 1 of its {n_dev} CPU devices (baselines use one device)")

    if "jax-scan" in impls:
        label, make = bl.BASELINES["jax-scan"]
        s = plan.scan_steps(wl)
        scan = []
        for c in [c for c in plan.chunks if c <= wl.n_traj] or [wl.n_traj]:
            run = make(wl, steps=s, chunk=c)
            m = measure(lambda: run(full))
            scan.append({"chunk": c, "traj_steps_per_s": wl.n_traj * s / m["best_s"],
                         "first_s": m["first_s"], "best_s": m["best_s"]})
            log(f"    chunk {c:>6}: {scan[-1]['traj_steps_per_s']:.4g} traj-steps/s "
                f"({s} steps)")
        best = max(scan, key=lambda r: r["traj_steps_per_s"])["chunk"]
        run = make(wl, chunk=best)
        m = measure(lambda: run(full))
        m["chunk_scan"], m["chunk"] = scan, best
        add("jax-scan", label, m, wl.n_traj, wl.steps,
            f"best chunk {best} (scanned on {s} steps)")

    if "jax-naive" in impls:
        label, make = bl.BASELINES["jax-naive"]
        axes = plan.naive_axes(wl)
        run = make(wl)
        m = measure(lambda: run(axes))
        add("jax-naive", label, m, count(axes), wl.steps,
            f"slice of {count(axes)} trajs, extrapolated")

    if "jax-steploop" in impls:
        label, make = bl.BASELINES["jax-steploop"]
        s = plan.loop_steps(wl)
        run = make(wl, steps=s)
        m = measure(lambda: run(full))
        add("jax-steploop", label, m, wl.n_traj, s, f"slice of {s} steps, extrapolated")

    for impl in ("numpy", "torch"):
        if impl not in impls:
            continue
        label, make = bl.BASELINES[impl]
        if impl == "torch" and not bl.have("torch"):
            skip(impl, label, "torch not installed")
            continue
        s = plan.loop_steps(wl)
        best = None
        for c in plan.np_chunks:
            c = c or wl.n_traj
            if c > wl.n_traj:
                continue
            run = make(wl, steps=s, chunk=c)
            m = measure(lambda: run(full))
            log(f"    {impl} chunk {c:>6}: {wl.n_traj * s / m['best_s']:.4g} traj-steps/s")
            if best is None or m["best_s"] < best[1]["best_s"]:
                best = (c, m)
        c, m = best
        m["chunk"] = c
        add(impl, label, m, wl.n_traj, s, f"slice of {s} steps, extrapolated; chunk {c}")

    if "optuna" in impls:
        label, make = bl.BASELINES["optuna"]
        if not bl.have("optuna"):
            skip("optuna", label, "optuna not installed")
        else:
            axes = plan.optuna_axes(wl)
            run = make(wl)
            m = measure(lambda: run(axes))
            n = count(axes)
            train = min(run.train_s[1:])
            m["train_only_traj_steps_per_s"] = n * wl.steps / train
            add("optuna", label, m, n, wl.steps,
                f"slice of {n} trials, extrapolated linearly; training alone "
                f"{n * wl.steps / train:.3g}/s, the rest is Optuna")
    return rows


def agreement(wl: bl.Workload, plan: Plan, impls: set[str], log) -> dict:
    """Final parameters of a few trajectories (full steps) from every baseline vs baseline 0."""
    axes = plan.check_axes(wl)
    got = {}
    for impl, (label, make) in bl.BASELINES.items():
        if impl not in impls or (impl in ("torch", "optuna") and not bl.have(impl)):
            continue
        got[impl] = make(wl)(axes)
    if not got:
        return {}
    ref_name = "jax-scan" if "jax-scan" in got else next(iter(got))
    ref = got[ref_name]
    tol = plan.check_tol(wl)
    out = {"reference": ref_name, "n_traj": count(axes), "tol": tol,
           "axes": {k: v.tolist() for k, v in axes.items()}, "max_abs_diff": {},
           "median_traj_max_abs_diff": {}}  # the typical trajectory: isolated flips aside
    parts = []
    for impl, fin in got.items():
        if impl == ref_name:
            continue
        per_traj = np.max([np.abs(fin[k] - ref[k]).reshape(len(ref[k]), -1).max(axis=1)
                           for k in wl.params], axis=0)
        d = float(np.max(per_traj))
        out["max_abs_diff"][impl] = d
        out["median_traj_max_abs_diff"][impl] = float(np.median(per_traj))
        parts.append(f"{impl} {d:.1e}")
    out["ok"] = all(d <= out["tol"] for d in out["max_abs_diff"].values())  # NaN fails
    log(f"  agreement on {count(axes)} trajectories, final {'/'.join(wl.params)} "
        f"vs {ref_name} (tol {tol:g}): {', '.join(parts) or 'nothing to compare'} -> "
        f"{'OK' if out['ok'] else 'MISMATCH'}")
    if wl.problem == "mlp" and ref_name == "jax-scan" and wl.name in ENGINE_RESULTS:
        out["engine"] = engine_agreement(wl, axes, ref, ENGINE_RESULTS[wl.name], tol, log)
        out["ok"] = out["ok"] and out["engine"]["ok"]
    return out


def engine_agreement(wl: bl.Workload, axes, ref, ds, tol: float, log) -> dict:
    """C: the engine's ``final_loss`` vs the loss at the textbook program's final parameters on
    the checked trajectories (the engine does not return an MLP's weight arrays). Only runs
    that the engine did not stop early are comparable (a settled run is frozen)."""
    idx = bl.grid_index(wl, axes)
    flat = lambda name: ds[name].transpose(*wl.axes).values.reshape(-1)[idx]  # noqa: E731
    data = bl.fixed_data(wl)
    loss = jax.jit(jax.vmap(bl._loss_mlp, (0, None, None)))
    mine = np.asarray(loss(tuple(ref[k] for k in wl.params), data["x"], data["y"]))
    full = flat("stop_step") == wl.steps
    diff = np.abs(flat("final_loss") - mine)[full]
    d = float(np.max(diff)) if diff.size else float("nan")
    res = {"compared": int(full.sum()), "stopped_early": int((~full).sum()), "tol": tol,
           "max_abs_diff_final_loss": d, "ok": bool(diff.size and d <= tol)}
    log(f"  engine final_loss vs loss at jax-scan's final parameters, {res['compared']} runs "
        f"(tol {tol:g}): {d:.1e} -> {'OK' if res['ok'] else 'MISMATCH'}"
        + (f" ({res['stopped_early']} stopped early, not compared)" if res["stopped_early"] else ""))
    return res


def table(rows: list[dict], engine_rate: dict) -> str:
    head = (f"{'workload':<8} {'implementation':<40} {'traj-steps/s':>12} {'/engine':>8} "
            f"{'compile s':>9} {'FLOP/s frac':>11}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['workload']:<8} {r['label']:<40} {'-':>12} {'-':>8} {'-':>9} "
                         f"{'-':>11}  {r['skipped']}")
            continue
        e = engine_rate.get(r["workload"])
        ratio = f"{r['traj_steps_per_s'] / e:.3g}" if e else "n/a"
        frac = f"{r['flops_fraction']:.3f}" if "flops_fraction" in r else ""
        # NumPy, torch (eager) and Optuna compile nothing: first - best is only noise there
        comp = f"{r['compile_s']:.2f}" if r["impl"] in COMPILED else "-"
        lines.append(f"{r['workload']:<8} {r['label']:<40} {r['traj_steps_per_s']:>12.4g} "
                     f"{ratio:>8} {comp:>9} {frac:>11}  {r['note']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shrink everything ~50x (smoke test)")
    ap.add_argument("--gpu", action="store_true", help="accelerator sizes (2^20 trajectories for A; see "
                    "baselines.workload); used by benchmarks/gpu.sh")
    ap.add_argument("--json", type=Path, default=None,
                    help="where to write the results (default benchmarks/results.json, "
                         "or benchmarks/results-quick.json with --quick)")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated workloads (default all: {','.join(bl.WORKLOADS)})")
    ap.add_argument("--impl", default=None,
                    help="comma-separated implementations (default all: engine,engine-1dev,"
                         + ",".join(bl.BASELINES) + ")")
    args = ap.parse_args(argv)

    names = {n.lower(): n for n in bl.WORKLOADS}
    only = [s.strip() for s in args.only.split(",")] if args.only else list(bl.WORKLOADS)
    bad = [s for s in only if s.lower() not in names]
    if bad:
        ap.error(f"--only: unknown workload(s) {bad}; known: {', '.join(bl.WORKLOADS)}")
    all_impls = ["engine", "engine-1dev", *bl.BASELINES]
    impls = set(s.strip() for s in args.impl.split(",")) if args.impl else set(all_impls)
    if impls - set(all_impls):
        ap.error(f"--impl: unknown {sorted(impls - set(all_impls))}; known: {', '.join(all_impls)}")
    out_path = args.json or Path(__file__).resolve().parent / (
        "results-quick.json" if args.quick else "results.json")

    def log(msg):
        print(msg, flush=True)

    global QUICK
    QUICK = args.quick
    t_start = time.perf_counter()
    info = machine_info()
    plan = Plan(args.quick, args.gpu)
    log(f"machine: {info['cpu_model']}, {info['cpus_usable']} usable cores, "
        f"jax {info['jax']} ({info['backend']}), load {info['loadavg_at_start']}")
    mm = matmul_flops(args.quick)
    log(f"matmul 2048x2048 float32: {mm['flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"(min of warm calls {mm['best_s'] * 1e3:.1f} ms)")
    missing = [m for m in ("torch", "optuna") if not bl.have(m)]
    if missing:
        log(f"optional baselines skipped (not installed): {', '.join(missing)}")

    rows, checks = [], {}
    for name in only:
        wl = bl.workload(names[name.lower()], quick=args.quick, gpu=args.gpu)
        rows += run_workload(wl, plan, impls, mm["flops_per_s"], log)
        checks[wl.name] = agreement(wl, plan, impls, log)

    engine_rate = {r["workload"]: r["traj_steps_per_s"] for r in rows
                   if r["impl"] == "engine" and "skipped" not in r}
    for r in rows:
        if "traj_steps_per_s" in r and r["workload"] in engine_rate:
            r["ratio_to_engine"] = r["traj_steps_per_s"] / engine_rate[r["workload"]]
    mm_end = matmul_flops(args.quick)
    log(f"matmul 2048x2048 float32 at the end: {mm_end['flops_per_s'] / 1e9:.1f} GFLOP/s")
    if mm_end["flops_per_s"] > mm["flops_per_s"]:  # the faster of the two is the peak
        for r in rows:
            if "flops_fraction" in r:
                r["flops_fraction"] = r["flops_per_s"] / mm_end["flops_per_s"]
    mm = {"start": mm, "end": mm_end,
          "flops_per_s": max(mm["flops_per_s"], mm_end["flops_per_s"])}
    peak = rss_mb()
    log("\ntraj-steps/s = trajectories x optimizer steps per second (min of "
        f">= {REPEATS} warm calls); /engine = rate / engine rate; engine counts the full budget "
        "n_traj x steps although it stops settled trajectories early.")
    log(table(rows, engine_rate))
    log(f"\nmatmul peak {mm['flops_per_s'] / 1e9:.1f} GFLOP/s; peak RSS {peak:.0f} MiB; "
        f"total {time.perf_counter() - t_start:.0f} s")

    result = {"machine": info, "quick": args.quick, "gpu": args.gpu, "repeats": REPEATS,
              "matmul": mm, "rows": rows, "agreement": checks, "peak_rss_mb": peak,
              "total_s": time.perf_counter() - t_start,
              "metric": "trajectory-steps per second (n_traj x steps / best warm call); "
                        "engine counted at the full step budget"}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1, default=float))
    log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
