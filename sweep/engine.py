"""The only place with vmap / jit / chunking: a Spec becomes compiled, batched sweeps.

Trajectories are grouped by their static combination (categorical options, and the data
seed for problems with random data); each group is run in fixed-size chunks through ONE
compiled function, reused for every chunk and every continuous value. Continuous values
(init values, lr, momentum, alpha, ...) are per-trajectory arrays. Only per-trajectory
summaries leave the device.
"""
from __future__ import annotations

import itertools
import math
import os
import time
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .config import Spec, points_per_step
from .layout import blocking, in_blocks, make_value_and_grad, one_trajectory, primitives
from .optimizers import OPTIMIZERS, default_lr
from .population import NODES_BOUND
from .problems import PROBLEMS
from .outcomes import ALIVE, Thresholds
from .step import StepInput, make_trajectory, propagate, sharpness, step_map

TRACE_COUNT = {"n": 0}  # test hook: incremented each time a chunk function is traced
COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                            "/jax/core/compile/backend_compile_duration", "/jax/compilation_cache/cache_retrieval_time_sec"})
COMPILE_SECONDS = [0.0]  # tracing + lowering + XLA compilation seen in this process (jax.monitoring)


def _count_compile(event: str, duration: float, **_) -> None:
    if event in COMPILE_EVENTS:
        COMPILE_SECONDS[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compile)
_COMPILED: dict[Any, Callable] = {}

REF_SALT = 2 ** 31 - 1  # fold-in value for the reference sample of fresh-data problems


class Group(NamedTuple):
    """Trajectories that share one static combination (and data seed).

    fixed: axis position -> value index for every axis that is not traced;
    static: the static option values of this group (name -> value);
    shared_seed: the seed value that defines the data (problems with random data), else 0.
    """

    fixed: dict
    static: dict
    shared_seed: int
    size: int


class Plan(NamedTuple):
    """How a spec is executed: which axes are traced, the groups, the chunk size."""

    spec: Spec
    traced_axes: tuple[int, ...]  # positions of axes whose members are all per-trajectory
    traced_names: tuple[str, ...]  # every traced option name (swept or not)
    groups: tuple[Group, ...]
    chunk: int
    dtype: str
    span: tuple[int, int] | None = None  # a shard: positions [lo, hi) of the run order (None: every trajectory)

    @property
    def n_chunks(self) -> int:
        return sum(math.ceil((b - a) / self.chunk) for _, a, b in group_ranges(self))

    @property
    def n_trajectories(self) -> int:
        """Trajectories this plan runs (the shard's, or the whole grid's)."""
        return sum(b - a for _, a, b in group_ranges(self))

    @property
    def n_compiles(self) -> int:
        return len({_static_key(self, g) for g in self.groups})


def _kind(spec: Spec, name: str) -> str:
    """'traced', 'shared' (data seed) or 'static' for an option name."""
    if name == "seed":
        return "shared" if PROBLEMS[spec.problem].has_data else "traced"
    return "traced" if spec.options[name][1].traced else "static"


def device_memory_bytes() -> int | None:
    """Memory of the first local device (accelerators report it; CPU: the host's physical memory)."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - some backends do not implement memory_stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def per_trajectory_bytes(spec: Spec, dtype: str) -> int:
    """Working set of one trajectory on the device (a deliberate over-estimate).

    ~16 copies of each scalar parameter (parameters, gradient, optimizer state, accumulators,
    double buffers) plus ~24 summary scalars; with the ``vmap`` layout (or problems without a
    per-point loss) also ~4 values per data point for the (trajectories x points) temporaries
    (``data.population``: per quadrature node, ``sweep.population.NODES_BOUND``).
    """
    item = np.dtype(dtype).itemsize
    n_params = max(1, len(PROBLEMS[spec.problem].init) or 4)
    per = (16 * n_params + 24) * item
    data = spec.problem_options.get("data")
    if data and data.get("population"):  # the neuron's expected loss: its quadrature nodes, vmapped
        per += 4 * NODES_BOUND * item
    elif data and spec.run["layout"] == "vmap":
        per += 4 * points_per_step(data) * item
    if data and (data.get("fresh") or points_per_step(data) < data.get("n", 0)):
        # noisy batches: the final-window loss on the reference sample is computed with vmap
        per += 2 * max(4 * points_per_step(data), 4096) * item
    return per


CPU_CHUNK_PER_DEVICE = 8192  # best of the scan in benchmarks/RESULTS.md (flat within ~10% from 4,096 to 16,384)


MIN_CHUNK_PER_DEVICE = 2  # trajectories per device in a chunk, at least (1 per device changes adam's last bits)


VMAP_BLOCKS_PER_CHUNK = 16  # CPU, vmap layout: blocks per device per chunk (B: 512 per device, 1.4x the 2,048 of a 4,096 chunk)


def vmap_block(plan: Plan, g: Group) -> int | None:
    """The block size the engine's vmap layout uses for group ``g`` on CPU (None: no blocks, e.g.
    the points layout), decided from one trajectory's shapes as at trace time."""
    problem = problem_for(plan, g)
    one = plan._replace(chunk=1)
    v, keys, data_key = chunk_inputs(one, make_chunk(one, g, 0))
    dt = jnp.dtype(plan.dtype)
    cast = lambda tree: jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, dt), tree)  # noqa: E731
    v1 = {k: x[0] for k, x in v.items()}
    params1 = cast(jax.eval_shape(problem.init, keys[0], v1))
    batch = None
    if problem.sample is not None:
        n = points_per_step(plan.spec.problem_options.get("data") or {})
        batch = cast(jax.eval_shape(lambda k: problem.sample(k, n), data_key))
    return blocking(problem, params1, batch, cast(v1), plan.spec.run["layout"])[1]


def default_chunk(spec: Spec, backend: str, dtype: str = "float32") -> int:
    """Automatic chunk size (documented rule).

    Start from a backend default - CPU: 8,192 trajectories per CPU device (one device per core,
    see ``sweep.cores``), where the per-trajectory vectors of the point-loop layout stay in
    cache (benchmarks/RESULTS.md has the scan); accelerators: 2^20, enough to fill the device -
    then cap it so that a chunk's working set (``per_trajectory_bytes`` x chunk) stays under 1/4
    of the device's memory. On CPU the vmap layout (networks) works through a chunk in blocks
    sized to the cache (``sweep.layout.block_size``); ``make_plan`` then takes
    ``VMAP_BLOCKS_PER_CHUNK`` blocks per device, so that the chunk's states stay in cache as well
    (scan in benchmarks/RESULTS.md).
    """
    base = CPU_CHUNK_PER_DEVICE * len(local_devices()) if backend == "cpu" else 1 << 20
    mem = device_memory_bytes()
    if mem:
        base = min(base, max(1, (mem // 4) // per_trajectory_bytes(spec, dtype)))
    return int(base)


def make_plan(spec: Spec, chunk_size: int | None = None, dtype: str | None = None,
              span: tuple[int, int] | None = None) -> Plan:
    """The execution plan; ``span``: only positions [lo, hi) of the run order (a shard: ``api.shard_span``)."""
    dtype = dtype or spec.run["dtype"]
    traced_axes, group_axes = [], []
    for i, a in enumerate(spec.axes):
        (traced_axes if all(_kind(spec, m) == "traced" for m in a.members) else group_axes).append(i)
    traced_names = [n for n, (sec, o) in spec.options.items() if _kind(spec, n) == "traced"]
    sub = int(np.prod([spec.axes[i].size for i in traced_axes], dtype=np.int64)) if traced_axes else 1
    groups = []
    for combo in itertools.product(*[range(spec.axes[i].size) for i in group_axes]):
        fixed = dict(zip(group_axes, combo))
        static, shared = {}, 0
        for i, k in fixed.items():
            a = spec.axes[i]
            for m, vals in zip(a.members, a.values):
                if m == "seed" and _kind(spec, m) == "shared":
                    shared = int(vals[k])
                elif _kind(spec, m) == "static":
                    static[m] = vals[k]
                else:
                    static[m] = vals[k]  # a traced member zipped with a static one: a group constant
        groups.append(Group(fixed, static, shared, sub))
    if span is not None:  # a shard: chunks no larger than its largest piece of one group
        shard_plan = Plan(spec, tuple(traced_axes), tuple(traced_names), tuple(groups), 1, dtype, tuple(span))
        sub = max([b - a for _, a, b in group_ranges(shard_plan)] or [1])
    backend = jax.default_backend()
    chunk = chunk_size or spec.run["chunk_size"]
    if not chunk:
        chunk = default_chunk(spec, backend, dtype)
        if backend == "cpu" and groups:
            provisional = Plan(spec, tuple(traced_axes), tuple(traced_names), tuple(groups), 1, dtype)
            block = vmap_block(provisional, groups[0])
            if block:  # the vmap layout: a chunk's states stay in cache too
                chunk = min(chunk, VMAP_BLOCKS_PER_CHUNK * block * len(local_devices()))
    chunk = int(chunk)
    chunk = max(1, min(chunk, 1 << max(0, (sub - 1).bit_length())))
    n_dev = len(local_devices())
    # XLA compiles a batch of one per device differently (other last bits): never fewer than two
    chunk = max(chunk, MIN_CHUNK_PER_DEVICE * n_dev)
    chunk = -(-chunk // n_dev) * n_dev  # a multiple of the device count: equal shares
    plan = Plan(spec, tuple(traced_axes), tuple(traced_names), tuple(groups), chunk, dtype,
                None if span is None else tuple(span))
    _check_events(plan)
    return plan


def _check_events(plan: Plan) -> None:
    """Every ``[events]`` parameter is a parameter of every compile group's problem (SpecError otherwise)."""
    if not plan.spec.events:
        return
    from .config import SpecError

    one = plan._replace(chunk=1)
    for g in {_static_key(plan, g): g for g in plan.groups}.values():
        v, keys, _ = chunk_inputs(one, Chunk(g, np.zeros(1, np.int64), 1))
        problem = problem_for(plan, g)
        shapes = jax.eval_shape(lambda k, vv: problem.init(k, vv), keys[0], one_trajectory(v))
        taken = set(problem.events) | {n + "_step" for n in problem.events} | set(problem.metric_attrs)
        for e in plan.spec.events:
            if e.name in taken or e.name + "_step" in taken or "final_" + e.name in taken:
                raise SpecError(f"events.{e.name}: the name is already a result variable of this problem; "
                                "choose another name")
            if e.param not in shapes:
                raise SpecError(f"events.{e.name}.param: {e.param!r} is not a parameter of this problem; "
                                f"its parameters are {', '.join(sorted(shapes))}")


class CompileKey(NamedTuple):
    """Everything that decides a compiled chunk program (hashable; one compile per distinct key)."""

    problem: str
    static: tuple  # sorted (option, value) pairs of the static options
    data: tuple  # sorted (option, value) pairs of the data table
    thresholds: Thresholds
    chunk: int  # trajectories per chunk (all devices)
    dtype: str
    early_exit: bool
    check_every: int
    layout: str
    record_every: int
    n_dev: int
    events: tuple  # step.EventSpec of the spec's [events]


def _static_key(plan: Plan, g: Group, chunk: int = 0, record_every: int = 0):
    s = plan.spec
    static = {**{k: v for k, v in s.problem_options.items() if k != "data"},
              **{k: v for k, v in s.train.items() if not s.options[k][1].traced}}
    data = dict(s.problem_options.get("data", {}))
    for k, v in g.static.items():
        if k.startswith("data."):
            data[k[5:]] = v
        elif k in s.options and s.options[k][1].traced:
            continue
        else:
            static[k] = v
    return CompileKey(problem=s.problem, static=tuple(sorted(static.items(), key=lambda kv: kv[0])),
                      data=tuple(sorted(data.items())), thresholds=s.thresholds(), chunk=chunk or plan.chunk,
                      dtype=plan.dtype, early_exit=s.run["early_exit"], check_every=s.run["check_every"],
                      layout=s.run["layout"], record_every=record_every, n_dev=len(local_devices()),
                      events=s.events)


class ChunkFns(NamedTuple):
    """The compiled functions of one static combination (all for chunks of T trajectories)."""

    run: Callable  # (v, keys, data_key) -> results: the whole run of a chunk
    start: Callable  # (v, keys, data_key) -> state
    advance: Callable  # (state, v, data_key, t0, t1) -> state: steps t0 .. t1-1
    finish: Callable  # (state, v, data_key) -> results
    sharding: Any = None  # the trajectory sharding the inputs go in with (None: one device)


def _build_chunk_fn(key) -> ChunkFns:
    """Compile the function that runs one chunk of one static combination."""
    problem_name, th, T_all, dtype_name = key.problem, key.thresholds, key.chunk, key.dtype
    early_exit, check_every, layout, record_every, n_dev = (key.early_exit, key.check_every, key.layout,
                                                            key.record_every, key.n_dev)
    static_items, data_items = key.static, key.data
    T = T_all // n_dev  # trajectories per device: each device runs its share independently (shard_map)
    static = dict(static_items)
    data = dict(data_items)
    pdef = PROBLEMS[problem_name]
    popts = {k: v for k, v in static.items() if k in pdef.options}
    if pdef.has_data:
        popts["data"] = data
    problem = pdef.build(popts)
    steps = static["steps"]
    optimizer = static["optimizer"]
    dtype = jnp.dtype(dtype_name)
    n_fixed = data.get("n", 0)
    per_step = points_per_step(data)
    fresh = bool(data.get("fresh", False))

    def sample(key, n):
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), problem.sample(key, n))

    def batched_loss(params, batch, v):
        return jax.vmap(problem.loss, (0, None, 0))(params, batch, v)

    noisy = problem.sample is not None and (fresh or per_step < n_fixed)
    traj = make_trajectory(problem, optimizer, steps, th, dtype, static.get("lr_mode", "absolute"),
                           events=key.events, noisy=noisy)
    n_rec = steps // max(record_every, 1) + 1

    def data_of(data_key):
        """(fixed dataset, reference sample) of a data key: recomputed in each compiled function."""
        if problem.sample is None:
            return None, None
        if fresh:
            return None, sample(jax.random.fold_in(data_key, REF_SALT), max(4 * per_step, 4096))
        fixed = sample(data_key, n_fixed)
        return fixed, fixed

    def start(v, traj_keys, data_key):
        """Initial states of a chunk: (T,)-batched TrajState."""
        _, ref = data_of(data_key)
        target = jax.vmap(problem.target, (None, 0))(ref, v)
        return jax.vmap(traj.init, (0, 0, 0, None))(traj_keys, v, target, ref)

    def advance(state, rec, v, data_key, t0, t1):
        """Steps t0 .. t1-1 (in blocks of check_every; stops early once every run has settled)."""
        fixed, ref = data_of(data_key)

        def batch_at(t):
            if problem.sample is None or (not fresh and per_step == n_fixed):
                return fixed
            k = jax.random.fold_in(data_key, t)
            if fresh:
                return sample(k, per_step)
            idx = jax.random.choice(k, n_fixed, (per_step,), replace=False)
            return jax.tree_util.tree_map(lambda a: a[idx], fixed)

        def record(rec, t, s, loss):
            """Store loss and parameters at steps 0, k, 2k, ... of runs still alive (NaN after they settle)."""
            if not record_every:
                return rec
            alive = ((s.code == ALIVE) | (not th.settle)) & (t <= steps)
            row = {"loss": loss, **{k: s.params[k] for k in problem.params}}
            pos = jnp.minimum(t // record_every, n_rec - 1)
            on = alive & (t % record_every == 0)
            return {k: rec[k].at[pos].set(jnp.where(on, row[k], rec[k][pos])) for k in rec}

        def core(s, v, batch, t):
            """One step of a batch of trajectories (the chunk, or one block of it): (state, loss)."""
            n = s.code.shape[0]
            vg = make_value_and_grad(problem, dtype, chosen)
            if traj.direction is not None:  # second-order: one Hessian/Jacobian solve per trajectory, no optax
                loss, grad, direction = jax.vmap(traj.direction, (0, None, 0))(s.params, batch, v)
                g_of = lambda p: jax.vmap(traj.direction, (0, None, 0))(p, batch, v)[2]  # noqa: E731
            else:
                (loss, grad), direction = vg(s.params, batch, v), None
                g_of = lambda p: vg(p, batch, v)[1]  # noqa: E731
            events = None if problem.track is None else jax.vmap(problem.track, (0, None, 0))(s.params, batch, v)
            inactive = jnp.zeros((n,), bool)  # a problem without units is never dead
            if problem.inactive is not None:  # only evaluated once some run has had a zero gradient long enough
                need = jnp.any((s.code == ALIVE) & (s.dead_count >= th.dead_patience - 1))
                inactive = jax.lax.cond(need, lambda: jax.vmap(problem.inactive, (0, None, 0))(s.params, batch, v),
                                        lambda: jnp.zeros((n,), bool))
            if noisy:  # the final-window statistics use the reference sample's loss at checkpoints
                wmask = (t >= traj.win_start) & (((t - traj.win_start) % check_every == 0) | (t == steps))
                wloss = jax.lax.cond(wmask, lambda: batched_loss(s.params, ref, v), lambda: jnp.zeros((n,), dtype))
            else:
                wmask, wloss = jnp.asarray(True), loss
            tangent = None
            if traj.lyapunov:  # the tangent pushed through this step's training map (same layout, jvp)
                apply = jax.vmap(traj.apply)
                tangent = propagate(step_map(traj._replace(apply=apply), g_of, s.opt_state, v, s.lambda0),
                                    s.params, s.opt_state, s.tangent)
            x = StepInput(loss=loss, grad=grad, wloss=wloss, wmask=wmask, inactive=inactive, events=events,
                          direction=direction, tangent=tangent)
            axes = StepInput(loss=0, grad=0, wloss=0, wmask=None, inactive=0, events=0, direction=0, tangent=0)
            s = jax.vmap(traj.advance, (0, None, axes, 0))(s, t, x, v)
            return s, loss

        # The layout (and, for vmap, the block size) is decided from one trajectory's shapes.
        params1, batch0, v1 = one_trajectory(state.params), batch_at(0), one_trajectory(v)
        chosen, size = blocking(problem, params1, batch0, v1, layout, jax.default_backend(), device_memory_bytes())
        if size:  # vmap with array parameters: fixed-size blocks keep the temporaries in cache and make
            # every product and reduction over a parameter array see the same shapes whatever the chunk size
            stepper = lambda s, v, batch, t: in_blocks(lambda s, v: core(s, v, batch, t), T, size)(s, v)  # noqa: E731
        else:
            stepper = core

        def step(t, carry):
            s, rec = carry
            s_next, loss = stepper(s, v, batch_at(t), t)
            return s_next, record(rec, t, s, loss)

        def block(carry):
            t, s, rec = carry
            s, rec = jax.lax.fori_loop(t, t + check_every, step, (s, rec))
            return t + check_every, s, rec

        def more(carry):
            t, s, _ = carry
            go = (t <= steps) & (t < t1)
            return (go & jnp.any(s.code == ALIVE)) if early_exit and th.settle else go

        _, state, rec = jax.lax.while_loop(more, block, (jnp.asarray(t0, jnp.int32), state, rec))
        return state, rec

    def finish(state, rec, v, data_key):
        """Per-trajectory results of a chunk: dict of (T,) arrays (and (T, n_rec) recordings)."""
        _, ref = data_of(data_key)
        out = jax.vmap(traj.finish)(state)
        for k, x in rec.items():
            out["rec_" + k] = x.T  # (T, n_rec)
        if ref is not None or problem.sample is None:  # data-free problems (population) need no data for them
            out.update(jax.vmap(problem.metrics, (0, None, 0))(state.params, ref, v))
        if th.sharpness_iters:
            out["sharpness"] = jax.vmap(lambda p, b, vv: sharpness(problem, p, b, vv, th.sharpness_iters),
                                        (0, None, 0))(state.params, ref, v)
            if "lr" in v:
                out["two_over_lr"] = 2.0 / v["lr"]
        return out

    def run_chunk(v, traj_keys, data_key):
        TRACE_COUNT["n"] += 1
        rec0 = {}
        if record_every:
            rec0 = {k: jnp.full((n_rec, T), jnp.nan, dtype) for k in ("loss",) + tuple(problem.params)}
        state, rec = advance(start(v, traj_keys, data_key), rec0, v, data_key, 0, steps + 1)
        return finish(state, rec, v, data_key)

    def counted(fn):
        def wrapped(*args):
            TRACE_COUNT["n"] += 1
            return fn(*args)
        return wrapped

    fns = (run_chunk, counted(start), counted(lambda state, v, data_key, t0, t1: advance(state, {}, v, data_key, t0, t1)[0]),
           counted(lambda state, v, data_key: finish(state, {}, v, data_key)))
    sharding = _traj_sharding() if n_dev > 1 else None
    if sharding is not None:  # one independent program per device: no collectives, each exits early on its own
        from jax.sharding import PartitionSpec as P

        shared = P()
        specs = ((P("traj"), P("traj"), shared), (P("traj"), P("traj"), shared),
                 (P("traj"), P("traj"), shared, shared, shared), (P("traj"), P("traj"), shared))
        fns = tuple(jax.shard_map(f, mesh=sharding.mesh, in_specs=sp, out_specs=P("traj"), check_vma=False)
                    for f, sp in zip(fns, specs))
    return ChunkFns(*(jax.jit(f) for f in fns), sharding=sharding)


# Batched LAPACK kernels (jnp.linalg: solve, lstsq, eigh, ...) split their batch over the CPU thread
# pool and wait for it; with one CPU device per core every pool thread can be running a device's
# program, waiting the same way - a deadlock (seen with two devices and a batched SVD). Programs that
# contain these primitives run on one device.
LINALG_PRIMITIVES = frozenset({
    "cholesky", "cholesky_update", "eig", "eigh", "geqp3", "geqrf", "hessenberg", "householder_product", "lu",
    "lu_pivots_to_permutation", "ormqr", "qr", "schur", "svd", "symmetric_product", "triangular_solve",
    "tridiagonal", "tridiagonal_solve"})
_ONE_DEVICE: dict = {}


def _uses_linalg(plan: Plan, g: Group, single: ChunkFns, T: int) -> bool:
    """Whether the one-device program ``single`` (chunks of T) contains a batched LAPACK primitive;
    decided once per problem, static options, data and dtype."""
    key = _static_key(plan, g)
    combo = (key.problem, key.static, key.data, key.dtype, key.events)
    if combo not in _ONE_DEVICE:
        v, keys, data_key = chunk_inputs(plan._replace(chunk=T), Chunk(g, np.zeros(T, np.int64), T))
        _ONE_DEVICE[combo] = bool(primitives(jax.make_jaxpr(single.run)(v, keys, data_key)) & LINALG_PRIMITIVES)
    return _ONE_DEVICE[combo]


def chunk_fn(plan: Plan, g: Group, chunk: int = 0, record_every: int = 0) -> ChunkFns:
    key = _static_key(plan, g, chunk, record_every)
    fn = _COMPILED.get(key)
    if fn is None:
        one = key._replace(n_dev=1)  # the same combination on one device
        if key.n_dev > 1 and jax.default_backend() == "cpu":
            single = _COMPILED.get(one)
            if single is None:
                single = _COMPILED[one] = _build_chunk_fn(one)
            if _uses_linalg(plan, g, single, key.chunk):
                fn = single
        if fn is None:
            fn = _build_chunk_fn(key)
        _COMPILED[key] = fn
    return fn


def metric_attrs(plan: Plan) -> dict:
    """netCDF attributes of every problem metric of the run (union over compile groups)."""
    out: dict = {}
    for key in {_static_key(plan, g): g for g in plan.groups}.values():
        out.update(problem_for(plan, key).metric_attrs)
    for e in plan.spec.events:
        cond = f"{e.over} of {e.param} {'>' if e.above else '<'} {e.level:g}"
        out[e.name] = {"long_name": f"event {e.name!r} ({cond}) happened", "units": "1"}
        out[e.name + "_step"] = {"long_name": f"updates before {cond} first held (-1: never)", "units": "1"}
    return out


def problem_for(plan: Plan, g: Group):
    """The built Problem of a group (for names of params and metrics)."""
    key = _static_key(plan, g)
    static, data = dict(key.static), dict(key.data)
    pdef = PROBLEMS[plan.spec.problem]
    popts = {k: v for k, v in static.items() if k in pdef.options}
    if pdef.has_data:
        popts["data"] = data
    return pdef.build(popts)


class Chunk(NamedTuple):
    group: Group
    index: np.ndarray  # (T,) int64 global flat indices (padding repeats the last one)
    valid: int  # number of real trajectories at the front


def group_ranges(plan: Plan) -> Iterator[tuple[Group, int, int]]:
    """(group, a, b): the local indices [a, b) of each group the plan runs (groups with none left out).

    The run order puts the groups one after another, each group's trajectories in C order of
    its traced axes; a plan with a ``span`` runs the positions [lo, hi) of that order."""
    off = 0
    for g in plan.groups:
        a, b = 0, g.size
        if plan.span is not None:
            a, b = max(0, plan.span[0] - off), min(g.size, plan.span[1] - off)
        if b > a:
            yield g, a, b
        off += g.size


def chunk_starts(plan: Plan) -> Iterator[tuple[Group, int]]:
    """(group, first local index) of every chunk, in order - cheap: no indices are computed."""
    for g, a, b in group_ranges(plan):
        for start in range(a, b, plan.chunk):
            yield g, start


def chunk_valid(plan: Plan, g: Group, start: int) -> int:
    """Real (unpadded) trajectories of the chunk of ``g`` that starts at ``start``."""
    stop = next(b for gg, a, b in group_ranges(plan) if gg == g and a <= start < b)
    return min(start + plan.chunk, stop) - start


def make_chunk(plan: Plan, g: Group, start: int) -> Chunk:
    """The chunk of group ``g`` starting at local index ``start``: fixed size, padded at the end."""
    shape = plan.spec.shape
    tshape = tuple(shape[i] for i in plan.traced_axes)
    stop = g.size if plan.span is None else start + chunk_valid(plan, g, start)
    local = np.arange(start, min(start + plan.chunk, stop), dtype=np.int64)
    valid = len(local)
    local = np.concatenate([local, np.full(plan.chunk - valid, local[-1], np.int64)])
    multi = [None] * len(shape)
    if tshape:
        for pos, idx in zip(plan.traced_axes, np.unravel_index(local, tshape)):
            multi[pos] = idx
    for pos, k in g.fixed.items():
        multi[pos] = np.full(plan.chunk, k, np.int64)
    index = np.ravel_multi_index(multi, shape) if shape else np.zeros(plan.chunk, np.int64)
    return Chunk(g, index.astype(np.int64), valid)


def chunks(plan: Plan) -> Iterator[Chunk]:
    """Every chunk of every group, in order: fixed size, last one padded."""
    for g, start in chunk_starts(plan):
        yield make_chunk(plan, g, start)


def chunk_inputs(plan: Plan, c: Chunk) -> tuple[dict, jax.Array, jax.Array]:
    """Per-trajectory traced values (name -> (T,) array), trajectory keys and the data key."""
    spec = plan.spec
    shape = spec.shape
    multi = np.unravel_index(c.index, shape) if shape else ()
    dtype = np.dtype(plan.dtype)
    values: dict[str, np.ndarray] = {}
    for name in plan.traced_names:
        sec, opt = spec.options[name]
        if name == "seed":
            values[name] = np.full(plan.chunk, c.group.shared_seed, np.int64)
        else:
            d = spec.train if sec == "train" else spec.init if sec == "init" else spec.problem_options
            base = d.get(name) if name in d else opt.default
            if name == "lr" and base is None:  # no lr in the spec: the group's optimizer's own default
                base = default_lr(c.group.static.get("optimizer", spec.train["optimizer"]))
            values[name] = np.full(plan.chunk, np.nan if base is None else base, dtype)
    for pos, a in enumerate(spec.axes):
        for m, vals in zip(a.members, a.values):
            if m in values:
                arr = np.asarray(vals)[multi[pos]]
                values[m] = arr.astype(np.int64 if m == "seed" else dtype)
    seeds = values.pop("seed", np.full(plan.chunk, c.group.shared_seed, np.int64)).astype(np.uint32)
    base = jax.random.key(spec.seed)
    traj_base = jax.random.fold_in(base, 0)
    keys = _traj_keys(traj_base, jnp.asarray(seeds), jnp.asarray(c.index.astype(np.uint32)))
    data_key = jax.random.fold_in(jax.random.fold_in(base, 1), c.group.shared_seed)
    v = {k: jnp.asarray(x) for k, x in values.items() if not np.all(np.isnan(x))}
    return v, keys, data_key


@jax.jit
def _traj_keys(base, seeds, index):
    return jax.vmap(lambda s, i: jax.random.fold_in(jax.random.fold_in(base, s), i))(seeds, index)


def local_devices() -> list:
    """The devices a chunk is spread over (this process's devices of the default backend)."""
    return jax.local_devices()


_SHARDINGS: dict = {}


def _traj_sharding():
    """A 1-D mesh over the local devices: trajectories are split along it (None for one device)."""
    devs = local_devices()
    if len(devs) == 1:
        return None
    key = tuple(d.id for d in devs)
    if key not in _SHARDINGS:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        _SHARDINGS[key] = NamedSharding(Mesh(np.array(devs), ("traj",)), PartitionSpec("traj"))
    return _SHARDINGS[key]


def run_chunk(plan: Plan, c: Chunk) -> dict[str, np.ndarray]:
    """Run one chunk (spread over the local devices); returns host arrays of the valid trajectories."""
    v, keys, data_key = chunk_inputs(plan, c)
    fns = chunk_fn(plan, c.group)
    if fns.sharding is not None:
        v = jax.device_put(v, fns.sharding)
        keys = jax.device_put(keys, fns.sharding)
    out = fns.run(v, keys, data_key)
    out = jax.device_get(out)
    return {k: np.asarray(x)[: c.valid] for k, x in out.items()}


def _segments(plan: Plan) -> int:
    """Steps per compaction segment (0: no compaction) - a multiple of check_every."""
    run = plan.spec.run
    if not run["compact"] or not run["early_exit"] or not plan.spec.outcome["settle"]:
        return 0  # (settle = false: every run trains to the end, nothing to pack)
    steps, k = plan.spec.train["steps"], run["check_every"]
    seg = max(k, -(-(steps + 1) // run["segments"] // k) * k)
    return seg if seg <= steps else 0


def run_window(plan: Plan, window: list[Chunk]) -> list[dict[str, np.ndarray]]:
    """Run several chunks of one group with compaction (continuous batching).

    Every trajectory of the window advances in lockstep, ``segment`` steps at a time. Between
    segments only the chunks' outcome codes come back to the host; when the live trajectories
    would fit in fewer chunks, they are packed together (the states make a round trip through
    the host), and chunks with no live trajectory are dropped - so settled trajectories stop
    costing compute, while a sweep where few settle pays only a small check per segment. Each
    trajectory sees exactly the same operations as in ``run_chunk``: results are identical,
    whatever the packing.
    """
    g = window[0].group
    fns = chunk_fn(plan, g)
    T, steps, seg = plan.chunk, plan.spec.train["steps"], _segments(plan)
    put = (lambda x: jax.device_put(x, fns.sharding)) if fns.sharding is not None else (lambda x: x)
    inputs = [chunk_inputs(plan, c) for c in window]
    data_key = inputs[0][2]
    v_dev = [put(v) for v, _, _ in inputs]
    active = [(np.arange(j * T, (j + 1) * T), fns.start(v_dev[j], put(k), data_key), v_dev[j])
              for j, (_, k, _) in enumerate(inputs)]  # (window positions of the first len(idx) slots, state, v)
    cat = lambda trees: jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *trees)  # noqa: E731
    state = cat(jax.device_get([s for _, s, _ in active]))  # the window's states on the host
    v_all = cat([jax.device_get(v) for v in v_dev])
    take = lambda tree, idx: jax.tree_util.tree_map(lambda x: x[idx], tree)  # noqa: E731

    def write_back(chunks):
        nonlocal state
        for idx, out in zip([c[0] for c in chunks], jax.device_get([c[1] for c in chunks])):

            def put_back(dst, src, idx=idx):
                dst[idx] = src[: idx.size]
                return dst

            state = jax.tree_util.tree_map(put_back, state, out)

    for t0 in range(0, steps + 1, seg):
        codes = jax.device_get([s.code for _, s, _ in active])
        n_live = [int(np.sum(np.asarray(c)[: idx.size] == -1)) for (idx, _, _), c in zip(active, codes)]
        if -(-sum(n_live) // T) < len(active):  # fewer chunks would hold the live runs: pack them
            write_back(active)
            live = np.flatnonzero(state.code == -1)
            active = []
            for start in range(0, live.size, T):
                idx = live[start:start + T]
                full = np.concatenate([idx, np.full(T - idx.size, idx[-1])])  # pad with a copy (discarded)
                active.append((idx, put(take(state, full)), put(take(v_all, full))))
        if not active:
            break
        # every chunk of the segment is dispatched before any is read back (async dispatch)
        active = [(idx, fns.advance(s, v, data_key, t0, t0 + seg), v) for idx, s, v in active]
    write_back(active)
    finished = [fns.finish(put(take(state, np.arange(j * T, (j + 1) * T))),
                           put(take(v_all, np.arange(j * T, (j + 1) * T))), data_key) for j in range(len(window))]
    return [{k: np.asarray(x)[: c.valid] for k, x in jax.device_get(res).items()} for c, res in zip(window, finished)]


def execute(plan: Plan, sink, progress: Callable[[int], None] | None = None,
            skip: Callable[[int], bool] | None = None, stop: Callable[[], bool] | None = None) -> dict:
    """Run every chunk (except ``skip(i)``), handing (chunk number, global indices, results) to ``sink``.

    With compaction on (``[run] compact``), consecutive chunks of a group are run together in
    windows of ``[run] window`` chunks. ``stop()`` is asked after each chunk or window; when it says
    True the loop ends there.
    """
    t0 = time.perf_counter()
    compiled0 = COMPILE_SECONDS[0]
    compile_s = 0.0
    done = 0
    width = plan.spec.run["window"] if _segments(plan) else 1
    pending: list[tuple[int, Chunk]] = []

    def flush():
        nonlocal compile_s, done
        if not pending:
            return
        first = _static_key(plan, pending[0][1].group) not in _COMPILED
        t1 = time.perf_counter()
        if width == 1:
            results = [run_chunk(plan, pending[0][1])]
        else:
            results = run_window(plan, [c for _, c in pending])
        if first:
            compile_s += time.perf_counter() - t1
        for (i, c), res in zip(pending, results):
            sink(i, c.index[: c.valid], res)
            done += c.valid
            if progress is not None:
                progress(c.valid)
        pending.clear()

    for i, (g, start) in enumerate(chunk_starts(plan)):
        if skip is not None and skip(i):  # resumed or another shard's: no indices computed
            continue
        c = make_chunk(plan, g, start)
        if pending and pending[0][1].group != c.group:
            flush()
        pending.append((i, c))
        if len(pending) >= width:
            flush()
            if stop is not None and stop():
                break
    else:
        flush()
    return {"wall_time_s": time.perf_counter() - t0, "first_call_s": compile_s, "trajectories_run": done,
            "compile_time_s": COMPILE_SECONDS[0] - compiled0}


def dataset(spec: Spec, seed: int = 0, step: int | None = None, dtype: str | None = None):
    """The data a sweep trains on: the fixed dataset (or, with ``step``, that step's batch).

    Args:
      seed: the seed-axis value (data depend on it and on the spec's seed only).
    Returns:
      the problem's batch, e.g. ``(x, y)`` arrays of shape (n,), or None for data-free problems.
    """
    plan = make_plan(spec, 1, dtype)
    g = plan.groups[0]
    problem = problem_for(plan, g)
    if problem.sample is None:
        return None
    data = dict(spec.problem_options.get("data") or {})
    dt = jnp.dtype(plan.dtype)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(spec.seed), 1), seed)
    if data.get("fresh"):
        n = points_per_step(data)
        key = jax.random.fold_in(key, 0 if step is None else step)
    else:
        n = data.get("n", 0)
    # drawn under jit, as the engine draws it (op-by-op evaluation can differ in the last bits)
    return jax.jit(lambda k: jax.tree_util.tree_map(lambda a: a.astype(dt), problem.sample(k, n)))(key)


def recorded_indices(spec: Spec) -> np.ndarray:
    """Flat indices of the recorded trajectories: every ``stride``-th value along each axis, at most ``max``."""
    stride, cap = spec.record["stride"], spec.record["max"]
    if not stride:
        return np.zeros(0, np.int64)
    if not spec.axes:
        return np.zeros(1, np.int64)
    sub = [np.arange(0, n, stride) for n in spec.shape]
    idx = np.ravel_multi_index(np.meshgrid(*sub, indexing="ij"), spec.shape).ravel()
    if idx.size > cap:
        idx = idx[np.linspace(0, idx.size - 1, cap).round().astype(np.int64)]
    return np.unique(idx)


def run_recorded(plan: Plan, index: np.ndarray) -> dict[str, np.ndarray]:
    """Re-run the trajectories ``index`` with recording on (identical runs: same inputs, same keys).

    Returns:
      {"index": (R,), "rec_loss": (R, S), "rec_<param>": (R, S), plus every summary (R,)}, S = steps//every + 1.
    """
    spec = plan.spec
    every = spec.record["every"]
    shape = spec.shape
    multi = np.unravel_index(index, shape) if shape else ()
    by_group: dict[int, list[int]] = {}
    for j in range(index.size):
        key = {pos: int(multi[pos][j]) for pos in range(len(shape)) if pos not in plan.traced_axes}
        gi = next(i for i, g in enumerate(plan.groups) if g.fixed == key)
        by_group.setdefault(gi, []).append(j)
    n_dev = len(local_devices())
    parts = []
    for gi, js in by_group.items():
        g = plan.groups[gi]
        n = len(js)
        T = -(-max(n, 1) // n_dev) * n_dev
        idx = index[js]
        padded = np.concatenate([idx, np.full(T - n, idx[-1], np.int64)])
        c = Chunk(g, padded, n)
        sub_plan = plan._replace(chunk=T)
        v, keys, data_key = chunk_inputs(sub_plan, c)
        out = jax.device_get(chunk_fn(plan, g, T, every).run(v, keys, data_key))
        parts.append((idx, {k: np.asarray(x)[:n] for k, x in out.items()}))
    order = np.argsort(np.concatenate([p[0] for p in parts]))
    res = {k: np.concatenate([p[1][k] for p in parts])[order] for k in parts[0][1]}
    res["index"] = np.concatenate([p[0] for p in parts])[order]
    return res
