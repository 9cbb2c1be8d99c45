"""Baseline implementations that ``benchmarks/throughput.py`` races against the engine.

Each baseline is written the way a skilled user would write it for the job, with no
artificial slowness. Every one is a ``make_*`` factory that does the setup (data,
compilation targets) and returns ``run(axes) -> finals``: ``axes`` maps each swept axis
to the values to run (the trajectories are their Cartesian product, C order, like the
engine's grid), ``finals`` maps each parameter to its final values, ``(n_traj, ...)``
float32 NumPy arrays. Nothing runs at import time; torch and optuna are imported only
inside the factories that need them (see :func:`have`).

Workloads (see :func:`workload`):

- ``A``: student ``relu(w*x + b)`` learns teacher ``relu(x)``, MSE (mean of squared
  error, no 1/2), a fixed batch of 256 points ``x ~ N(0, 1)`` (NumPy seed 0), plain SGD
  lr=0.01, a 256x256 (w0, b0) grid on [-3, 3]^2, 1,000 steps.
- ``A-fresh``: the same with a fresh batch of 1,000 points every step, shared by all
  trajectories (common random numbers): ``x_t = normal(fold_in(PRNGKey(0), t), (1000,))``.
- ``A-adam``: ``A`` with optax.adam and a learning-rate axis logspace(-3, -1, 4) over a
  128x128 (w0, b0) grid.
- ``B``: ``f(x) = W2 @ tanh(W1 @ x)`` (no biases), input dim 16, width 16, 272 fixed data
  points ``x ~ N(0, I)``, ``y ~ N(0, 1)``, MSE, full-batch GD with learning rate lr0 for W1
  and lr1 for W2 on a 64x64 logspace(-2, 1) grid, ``W ~ N(0, 1/fan_in)`` (one init shared
  by every trajectory), 500 steps.

- ``C``: the MLP classifier of the problem library (``sweep`` problem ``mlp``): 2 -> 16 -> 16 -> 3,
  relu hidden layers with biases, an output bias, softmax cross-entropy averaged over the points
  (objective ``xent``: mean over points of ``-sum_k y_k log softmax(logits)_k``, no 1/2), on the
  engine's built-in ``spirals`` data (256 fixed points, 3 classes, noise 0.1, drawn by the
  engine's own generator from its data key), full-batch plain GD, 500 steps, a 64x64 grid of
  lr = logspace(-2, 1) x init_scale = logspace(-1, 0.5) (4,096 trajectories). Initial weights are
  the engine's (``init_dist`` uniform: every weight ``init_scale * U[-1, 1]`` from the
  trajectory's key, biases 0): :func:`mlp_setup` computes every trajectory's initial parameters
  once with the engine's own ``problem.init``, outside the timed calls, so every baseline trains
  exactly the engine's trajectories. 541,158 FLOPs per trajectory-step (:func:`mlp_flops`).

The derivative of relu at 0 is 0 everywhere (``jax.nn.relu``, ``torch.relu``, and the
``z > 0`` mask of the NumPy code).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

Finals = dict[str, np.ndarray]
Axes = dict[str, np.ndarray]

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam defaults, used by every Adam here


# --------------------------------------------------------------------------- workloads

@dataclasses.dataclass(frozen=True, eq=False)
class Workload:
    """One benchmark problem: what is trained, how long, and over which grid.

    ``axes`` is ordered: the trajectories are the C-order product of its values.
    """

    name: str
    problem: str                 # "neuron" | "two_layer" | "mlp"
    optimizer: str               # "sgd" | "adam"
    steps: int
    axes: dict                   # axis name -> (k,) float32 values
    lr: float | None = None      # when lr is not an axis (neuron)
    fresh: bool = False          # neuron: fresh batch every step (common random numbers)
    n_points: int = 256          # neuron: fixed batch size, or fresh batch size
    dim: int = 16                # two_layer, mlp: input dim
    width: int = 16              # two_layer: hidden width
    widths: tuple = (16, 16)     # mlp: hidden widths
    classes: int = 3             # mlp: classes
    seed: int = 0

    @property
    def n_traj(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    @property
    def params(self) -> tuple[str, ...]:
        if self.problem == "mlp":  # the engine's names: W<l>, b<l>, layer L = len(widths) the output
            return tuple(f"{w}{l}" for l in range(len(self.widths) + 1) for w in ("W", "b"))
        return ("w", "b") if self.problem == "neuron" else ("W1", "W2")


WORKLOADS = ("A", "A-fresh", "A-adam", "B", "C")


def workload(name: str, *, quick: bool = False, gpu: bool = False) -> Workload:
    """The named workload at full size, shrunk ~50-80x in work when ``quick``, or at accelerator size
    when ``gpu`` (2^20 trajectories for A, A-fresh, A-adam; 2^16 for B, 2^14 for C, with fewer steps:
    sized so that benchmarks/gpu.sh fits in a few minutes of device time)."""
    lin = lambda k: np.linspace(-3.0, 3.0, k, dtype=np.float32)  # noqa: E731
    log = lambda a, b, k: np.logspace(a, b, k).astype(np.float32)  # noqa: E731
    if gpu:
        sizes = {"A": 1024, "A-fresh": 1024, "A-adam": 1024, "B": 256, "C": 128}
        steps = {"B": 100, "C": 100}
        wl = workload(name)
        k = sizes[name]
        if name.startswith("A"):
            axes = {a: (lin(k) if a != "lr" else v) for a, v in wl.axes.items()}
            if name == "A-adam":
                axes = {"lr": wl.axes["lr"], "w0": lin(k // 2), "b0": lin(k // 2)}
        else:
            first, second = wl.axes
            axes = {first: log(-2, 1, k), second: log(-1, 0.5, k) if name == "C" else log(-2, 1, k)}
        return dataclasses.replace(wl, axes=axes, steps=steps.get(name, wl.steps))
    g = 64 if quick else 256
    if name == "A":
        return Workload(name, "neuron", "sgd", 200 if quick else 1000,
                        {"w0": lin(g), "b0": lin(g)}, lr=0.01, n_points=256)
    if name == "A-fresh":
        return Workload(name, "neuron", "sgd", 200 if quick else 1000,
                        {"w0": lin(g), "b0": lin(g)}, lr=0.01, fresh=True, n_points=1000)
    if name == "A-adam":
        h = g // 2
        return Workload(name, "neuron", "adam", 200 if quick else 1000,
                        {"lr": log(-3, -1, 4), "w0": lin(h), "b0": lin(h)}, n_points=256)
    if name == "B":
        k = 16 if quick else 64
        return Workload(name, "two_layer", "sgd", 100 if quick else 500,
                        {"lr0": log(-2, 1, k), "lr1": log(-2, 1, k)}, n_points=272)
    if name == "C":
        k = 16 if quick else 64
        return Workload(name, "mlp", "sgd", 100 if quick else 500,
                        {"lr": log(-2, 1, k), "init_scale": log(-1, 0.5, k)},
                        n_points=256, dim=2, widths=(16, 16), classes=3)
    raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def expand(axes: Axes) -> dict[str, np.ndarray]:
    """Per-trajectory values of the C-order product of ``axes``: name -> (n,) float32."""
    grids = np.meshgrid(*axes.values(), indexing="ij")
    return {k: np.ascontiguousarray(g.ravel(), dtype=np.float32) for k, g in zip(axes, grids)}


def sub_axes(wl: Workload, counts: dict[str, int]) -> Axes:
    """A product sub-grid: ``counts[axis]`` evenly spaced values of each axis."""
    out = {}
    for k, v in wl.axes.items():
        idx = np.unique(np.linspace(0, len(v) - 1, min(counts[k], len(v))).round().astype(int))
        out[k] = v[idx]
    return out


def pick_axes(wl: Workload, values: dict[str, list[float]]) -> Axes:
    """A product sub-grid of the grid values nearest to ``values[axis]``."""
    return {k: np.unique(np.array([v[np.abs(v - x).argmin()] for x in values[k]], np.float32))
            for k, v in wl.axes.items()}


def fixed_data(wl: Workload) -> dict[str, np.ndarray]:
    """The workload's fixed data (and shared init for ``two_layer``), float32 NumPy arrays.

    neuron: ``x, y`` (n_points,); two_layer: ``x`` (n, dim), ``y`` (n,), ``W1`` (width, dim),
    ``W2`` (width,); mlp: ``x`` (n, dim), ``y`` (n, classes) one-hot, ``labels`` (n,) int64
    (the engine's data, :func:`mlp_setup`).
    """
    if wl.problem == "mlp":
        return dict(mlp_setup(wl).data)
    rng = np.random.default_rng(wl.seed)
    if wl.problem == "neuron":
        x = rng.standard_normal(wl.n_points).astype(np.float32)
        return {"x": x, "y": np.maximum(x, 0)}
    x = rng.standard_normal((wl.n_points, wl.dim)).astype(np.float32)
    y = rng.standard_normal(wl.n_points).astype(np.float32)
    w1 = (rng.standard_normal((wl.width, wl.dim)) / math.sqrt(wl.dim)).astype(np.float32)
    w2 = (rng.standard_normal(wl.width) / math.sqrt(wl.width)).astype(np.float32)
    return {"x": x, "y": y, "W1": w1, "W2": w2}


def fresh_batch(key: jax.Array, t, n: int) -> jax.Array:
    """The shared fresh batch of step ``t``: (n,) float32 N(0, 1) (common random numbers)."""
    return jax.random.normal(jax.random.fold_in(key, t), (n,), jnp.float32)


def fresh_stream(wl: Workload, steps: int) -> np.ndarray:
    """Every step's fresh batch at once, (steps, n_points) float32, bit-equal to
    :func:`fresh_batch`; the NumPy/torch/Optuna baselines read their data from it (it is
    made once in the factory, outside the timed call, as a user comparing with JAX would)."""
    key = jax.random.PRNGKey(wl.seed)
    make = jax.jit(jax.vmap(lambda t: fresh_batch(key, t, wl.n_points)))
    return np.array(make(jnp.arange(steps)))  # a writable copy (torch.from_numpy wants one)


def two_layer_flops(n: int, d: int, h: int) -> int:
    """FLOPs of one full-batch GD step of ``f(x) = W2 @ tanh(W1 @ x)``, one trajectory.

    Counted by hand (a multiply-add = 2, a tanh = 1), n points, input dim d, width h::

        forward   Z = X W1^T          2 n d h
                  A = tanh(Z)           n h
                  f = A W2            2 n h
                  r = f - y             n
        backward  g = (2/n) r           n
                  gW2 = A^T g         2 n h
                  dA = g W2^T           n h
                  dZ = dA * (1 - A^2) 3 n h
                  gW1 = dZ^T X        2 n d h     (no gradient w.r.t. X is needed)
        update    W -= lr * g         2 (h d + h)
        total     4 n d h + 9 n h + 2 n + 2 h (d + 1)

    n=272, d=16, h=16: 318,784 FLOPs (295,936 of them in the four matrix products).
    """
    return 4 * n * d * h + 9 * n * h + 2 * n + 2 * h * (d + 1)


def mlp_spec(wl: Workload) -> dict:
    """The ``sweep.run`` spec of an ``mlp`` workload (``throughput.engine_spec`` runs it, and
    :func:`mlp_setup` reads the engine's data and initial weights from it)."""
    ax = wl.axes
    log = lambda v: {"logspace": [round(math.log10(v[0]), 6), round(math.log10(v[-1]), 6), len(v)]}  # noqa: E731
    return {"seed": wl.seed,
            "problem": {"name": "mlp", "widths": list(wl.widths), "activation": "relu",
                        "objective": "xent", "out_bias": True, "init_dist": "uniform",
                        "bias_dist": "constant",
                        "data": {"source": "spirals", "n": wl.n_points, "classes": wl.classes,
                                 "noise": 0.1}},
            "init": {"bias_init": 0.0},
            "train": {"steps": wl.steps, "optimizer": "sgd"},
            "axes": {"lr": log(ax["lr"]), "init_scale": log(ax["init_scale"])}}


@dataclasses.dataclass(frozen=True)
class MlpSetup:
    """What the baselines take from the engine for an ``mlp`` workload (see :func:`mlp_setup`)."""

    data: dict       # x (n, d) float32, y (n, classes) float32 one-hot, labels (n,) int64
    init: dict       # parameter name -> (n_traj, ...) float32: every grid point's initial value


@functools.lru_cache(maxsize=4)
def mlp_setup(wl: Workload) -> MlpSetup:
    """The engine's data and every trajectory's initial parameters, computed once per workload.

    The data are drawn by the engine's own generator (``problem.sample``) from the engine's data
    key, under ``jit`` as the engine does (eager evaluation, e.g. ``sweep.engine.dataset``,
    differs from it in the last bits); the initial parameters are the engine's
    ``problem.init(key, v)`` with each trajectory's key and traced values from
    ``engine.chunk_inputs``. Nothing of this is timed.
    """
    import sweep
    from sweep import engine

    spec = sweep.parse_spec(mlp_spec(wl))
    plan = engine.make_plan(spec)
    problem = engine.problem_for(plan, plan.groups[0])
    init = jax.jit(jax.vmap(problem.init))
    table = None
    want = expand(wl.axes)
    for c in engine.chunks(plan):
        v, keys, data_key = engine.chunk_inputs(plan, c)
        idx, n = c.index[:c.valid], c.valid
        for k in wl.axes:  # the engine's grid is the workload's grid, point for point
            if not np.array_equal(np.asarray(v[k])[:n], want[k][idx]):
                raise RuntimeError(f"engine axis {k!r} differs from the workload's")
        p0 = jax.device_get(init(keys, v))
        if table is None:
            table = {k: np.empty((wl.n_traj,) + p0[k].shape[1:], np.float32) for k in wl.params}
            x, y = jax.device_get(jax.jit(problem.sample, static_argnums=1)(data_key, wl.n_points))
        for k in wl.params:
            table[k][idx] = p0[k][:n]
    data = {"x": np.array(x, np.float32), "y": np.array(y, np.float32),  # writable copies
            "labels": np.argmax(y, axis=1).astype(np.int64)}
    return MlpSetup(data, table)


def grid_index(wl: Workload, axes: Axes) -> np.ndarray:
    """Flat indices in the full grid ``wl.axes`` of the C-order product of sub-grid ``axes``."""
    pos = [np.searchsorted(wl.axes[k], axes[k]) for k in wl.axes]  # axes are increasing
    for k, p in zip(wl.axes, pos):
        if not np.array_equal(wl.axes[k][p], axes[k]):
            raise ValueError(f"axis {k!r}: values not on the workload's grid")
    grids = np.meshgrid(*pos, indexing="ij")
    return np.ravel_multi_index([g.ravel() for g in grids], [len(v) for v in wl.axes.values()])


def inputs(wl: Workload, axes: Axes) -> dict[str, np.ndarray]:
    """Per-trajectory inputs of ``axes`` (C order): :func:`expand`'s swept values, and for
    ``mlp`` every initial parameter (name -> (n, ...) float32, the engine's values)."""
    hp = expand(axes)
    if wl.problem == "mlp":
        idx = grid_index(wl, axes)
        hp.update({k: v[idx] for k, v in mlp_setup(wl).init.items()})
    return hp


def mlp_flops(n: int, d: int, widths: tuple[int, ...], k: int) -> int:
    """FLOPs of one full-batch GD step of the ``mlp`` (relu hidden layers with biases, output
    bias, softmax cross-entropy averaged over the points), one trajectory.

    Counted by hand (a multiply-add = 2; an exp, log, max, compare or select = 1), n points,
    layer sizes s_0 = d, s_1 .. s_L = widths, s_{L+1} = k classes; A_0 = X, layer l maps
    s_l -> s_{l+1}::

        forward   Z_{l+1} = A_l W_l^T + b_l    2 n s_l s_{l+1} + n s_{l+1}   each layer l = 0..L
                  A_l = relu(Z_l)              n s_l                         each hidden l = 1..L
                  softmax: max, z - max, exp,
                    sum, divide                5 n k
                  loss: log-sum + max - z_y,
                    mean                       4 n
        backward  G_{L+1} = (P - Y) / n        2 n k
                  gW_l = G_{l+1}^T A_l         2 n s_l s_{l+1}               each layer l = 0..L
                  gb_l = sum G_{l+1}           n s_{l+1}                     each layer
                  dA_l = G_{l+1} W_l           2 n s_l s_{l+1}               l = 1..L (no dX)
                  G_l = dA_l * [Z_l > 0]       n s_l                         l = 1..L
        update    p -= lr * g                  2 P,  P = sum_l (s_l s_{l+1} + s_{l+1})

    n=256, d=2, widths (16, 16), k=3: 541,158 FLOPs (499,712 of them in the eight matrix
    products: 4 n (32 + 256 + 48) + 2 n (256 + 48)).
    """
    s = (d, *widths, k)
    L = len(widths)
    total = 0
    for l in range(L + 1):
        total += 4 * n * s[l] * s[l + 1] + 2 * n * s[l + 1]    # forward + gW, bias add + gb
        total += 2 * (s[l] * s[l + 1] + s[l + 1])               # update
        if l > 0:
            total += 2 * n * s[l] * s[l + 1] + 2 * n * s[l]    # dA, relu + its mask
    return total + 5 * n * k + 4 * n + 2 * n * k


def workload_flops(wl: Workload) -> int | None:
    """Hand-counted FLOPs per trajectory-step of a workload (None: not counted, the neuron)."""
    if wl.problem == "two_layer":
        return two_layer_flops(wl.n_points, wl.dim, wl.width)
    if wl.problem == "mlp":
        return mlp_flops(wl.n_points, wl.dim, wl.widths, wl.classes)
    return None


def have(module: str) -> bool:
    """Whether an optional baseline's package (``torch``, ``optuna``) is installed."""
    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------- JAX pieces

def _loss_neuron(params, x, y):
    w, b = params
    return jnp.mean((jax.nn.relu(w * x + b) - y) ** 2)


def _loss_two_layer(params, x, y):
    w1, w2 = params
    return jnp.mean((jnp.tanh(x @ w1.T) @ w2 - y) ** 2)


def _loss_mlp(params, x, y):
    """Mean softmax cross-entropy of the MLP; params (W0, b0, W1, b1, ..., W_L, b_L), y one-hot."""
    *hidden, w_out, b_out = params
    h = x
    for w, b in zip(hidden[::2], hidden[1::2]):
        h = jax.nn.relu(h @ w.T + b)
    return optax.softmax_cross_entropy(h @ w_out.T + b_out, y).mean()


def _jax_problem(wl: Workload):
    """(loss, init(hp, data), make_tx(hp), batch(data, t), data) for ONE trajectory.

    ``hp`` holds the trajectory's swept scalars (and for mlp its initial parameters, see
    :func:`inputs`); ``data`` is shared by all trajectories.
    """
    if wl.problem == "mlp":
        data = {k: jnp.asarray(v) for k, v in fixed_data(wl).items() if k in ("x", "y")}
        init = lambda hp, data: tuple(hp[k] for k in wl.params)  # noqa: E731
        make_tx = lambda hp: optax.sgd(hp["lr"])  # noqa: E731
        batch = lambda data, t: (data["x"], data["y"])  # noqa: E731
        return _loss_mlp, init, make_tx, batch, data
    if wl.problem == "neuron":
        loss = _loss_neuron
        init = lambda hp, data: (hp["w0"], hp["b0"])  # noqa: E731
        if wl.optimizer == "adam":
            make_tx = lambda hp: optax.adam(hp["lr"], b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)  # noqa: E731
        else:
            make_tx = lambda hp: optax.sgd(wl.lr)  # noqa: E731
        if wl.fresh:
            data = {"key": jax.random.PRNGKey(wl.seed)}

            def batch(data, t):
                x = fresh_batch(data["key"], t, wl.n_points)
                return x, jax.nn.relu(x)
        else:
            data = {k: jnp.asarray(v) for k, v in fixed_data(wl).items()}
            batch = lambda data, t: (data["x"], data["y"])  # noqa: E731
    else:
        loss = _loss_two_layer
        data = {k: jnp.asarray(v) for k, v in fixed_data(wl).items()}
        init = lambda hp, data: (data["W1"], data["W2"])  # noqa: E731
        make_tx = lambda hp: optax.multi_transform(  # noqa: E731
            {"W1": optax.sgd(hp["lr0"]), "W2": optax.sgd(hp["lr1"])}, ("W1", "W2"))
        batch = lambda data, t: (data["x"], data["y"])  # noqa: E731
    return loss, init, make_tx, batch, data


def _make_step_one(wl: Workload):
    loss, init, make_tx, batch, data = _jax_problem(wl)

    def step_one(params, opt_state, hp, data, t):
        x, y = batch(data, t)
        grads = jax.grad(loss)(params, x, y)
        updates, opt_state = make_tx(hp).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def init_one(hp, data):
        params = init(hp, data)
        return params, make_tx(hp).init(params)

    return init_one, step_one, data


def _make_train_one(wl: Workload, steps: int):
    """train_one(hp, data) -> final params of ONE trajectory (lax.scan over steps)."""
    init_one, step_one, data = _make_step_one(wl)

    def train_one(hp, data):
        def body(carry, t):
            return step_one(*carry, hp, data, t), None

        (params, _), _ = jax.lax.scan(body, init_one(hp, data), jnp.arange(steps))
        return params

    return train_one, data


def _finals(wl: Workload, params) -> Finals:
    return {k: np.asarray(v) for k, v in zip(wl.params, params)}


def make_jax_scan(wl: Workload, *, steps: int | None = None, chunk: int = 2048):
    """Baseline 0, textbook JAX: ``jit(vmap(train))``, ``train`` = ``lax.scan`` over steps of
    ``jax.grad`` of the batch loss + optax; trajectories run in chunks of ``chunk`` (the
    last one padded, so one executable serves every chunk; chunks are dispatched
    asynchronously and gathered at the end)."""
    train_one, data = _make_train_one(wl, steps or wl.steps)
    train = jax.jit(jax.vmap(train_one, in_axes=(0, None)))

    def run(axes: Axes) -> Finals:
        hp = inputs(wl, axes)
        n = len(next(iter(hp.values())))
        c = min(chunk, n)
        outs = []
        for s in range(0, n, c):
            part = {k: v[s:s + c] for k, v in hp.items()}
            if len(next(iter(part.values()))) < c:  # pad the last chunk (along the trajectories)
                part = {k: np.pad(v, [(0, c - len(v))] + [(0, 0)] * (v.ndim - 1), mode="edge")
                        for k, v in part.items()}
            outs.append(train(part, data))
        outs = jax.device_get(outs)
        return {k: np.concatenate([o[i] for o in outs])[:n] for i, k in enumerate(wl.params)}

    return run


def make_jax_naive(wl: Workload, *, steps: int | None = None):
    """Baseline 1, the naive loop: a Python loop over trajectories, each calling a jitted
    single-trajectory ``train`` (the same ``lax.scan`` as baseline 0, no vmap)."""
    train_one, data = _make_train_one(wl, steps or wl.steps)
    train = jax.jit(train_one)

    def run(axes: Axes) -> Finals:
        hp = inputs(wl, axes)
        n = len(next(iter(hp.values())))
        out = []
        for i in range(n):
            out.append(jax.device_get(train({k: v[i] for k, v in hp.items()}, data)))
        return {k: np.stack([o[j] for o in out]) for j, k in enumerate(wl.params)}

    return run


def make_jax_steploop(wl: Workload, *, steps: int | None = None):
    """Baseline 2, notebook style: a Python loop over steps calling ``jit(vmap(step))`` on
    all the trajectories at once."""
    init_one, step_one, data = _make_step_one(wl)
    init = jax.jit(jax.vmap(init_one, in_axes=(0, None)))
    step = jax.jit(jax.vmap(step_one, in_axes=(0, 0, 0, None, None)))
    n_steps = steps or wl.steps

    def run(axes: Axes) -> Finals:
        hp = {k: jnp.asarray(v) for k, v in inputs(wl, axes).items()}
        params, opt_state = init(hp, data)
        for t in range(n_steps):
            params, opt_state = step(params, opt_state, hp, data, t)
        return _finals(wl, params)

    return run


# --------------------------------------------------------------------------- NumPy

def _np_adam(p, g, m, v, t, lr):
    """One Adam update as optax.adam computes it; returns (p, m, v)."""
    m = ADAM_B1 * m + (1 - ADAM_B1) * g
    v = ADAM_B2 * v + (1 - ADAM_B2) * (g * g)
    m_hat = m / np.float32(1 - ADAM_B1 ** t)
    v_hat = v / np.float32(1 - ADAM_B2 ** t)
    return p - lr * (m_hat / (np.sqrt(v_hat) + ADAM_EPS)), m, v


def _np_neuron_grads(w, b, x, y):
    """Analytic MSE gradients of relu(w*x + b) vs y: w, b (c,); x, y (n,) -> (c,), (c,)."""
    z = np.multiply.outer(w, x)
    z += b[:, None]
    r = np.maximum(z, 0)
    r -= y
    r *= z > 0                       # relu'(0) = 0
    r *= np.float32(2 / x.size)
    return r @ x, r.sum(axis=1)


def _np_two_layer_grads(w1, w2, x, y):
    """Analytic MSE gradients of W2 @ tanh(W1 @ x) over all trajectories at once.

    w1 (c, h, d), w2 (c, h), x (n, d), y (n,) -> (c, h, d), (c, h). The data is shared,
    so both big products are single GEMMs over (n, c*h).
    """
    c, h, d = w1.shape
    a = np.tanh(x @ w1.reshape(c * h, d).T).reshape(-1, c, h)      # (n, c, h)
    r = np.einsum("nch,ch->nc", a, w2, optimize=True) - y[:, None]   # (n, c)
    r *= np.float32(2 / len(y))
    g2 = np.einsum("nc,nch->ch", r, a, optimize=True)
    dz = (r[:, :, None] * w2) * (1 - a * a)                          # (n, c, h)
    g1 = (dz.reshape(-1, c * h).T @ x).reshape(c, h, d)
    return g1, g2


def _np_mlp_grads(params, xt, yt):
    """Analytic gradients of the MLP's mean softmax cross-entropy, features x points layout.

    params [W0, b0, ..., W_L, b_L], with or without leading trajectory dims: W_l (..., s_{l+1},
    s_l), b_l (..., s_{l+1}); xt (d, n) the inputs and yt (k, n) the one-hot labels, shared.
    Returns the gradients in the same order and shapes (one trajectory, or a stack at once:
    every product is a matmul over the stack).
    """
    ws, bs = params[::2], params[1::2]
    acts, zs = [xt], []
    for w, b in zip(ws[:-1], bs[:-1]):
        z = w @ acts[-1] + b[..., None]
        zs.append(z)
        acts.append(np.maximum(z, 0))
    z = ws[-1] @ acts[-1] + bs[-1][..., None]                       # logits (..., k, n)
    z -= z.max(axis=-2, keepdims=True)
    g = np.exp(z)
    g /= g.sum(axis=-2, keepdims=True)                               # softmax
    g -= yt
    g *= np.float32(1 / xt.shape[1])                                 # d loss / d logits
    grads = []
    for l in range(len(ws) - 1, -1, -1):
        grads += [g.sum(axis=-1), g @ acts[l].swapaxes(-1, -2)]     # gb_l, gW_l
        if l:
            g = (ws[l].swapaxes(-1, -2) @ g) * (zs[l - 1] > 0)       # relu'(0) = 0
    return grads[::-1]


def _np_mlp_loss(params, xt, labels) -> float:
    """The MLP's mean softmax cross-entropy for ONE trajectory (float64 log-sum-exp)."""
    ws, bs = params[::2], params[1::2]
    h = xt
    for w, b in zip(ws[:-1], bs[:-1]):
        h = np.maximum(w @ h + b[:, None], 0)
    z = (ws[-1] @ h + bs[-1][:, None]).astype(np.float64)
    m = z.max(axis=0)
    lse = m + np.log(np.exp(z - m).sum(axis=0))
    return float(np.mean(lse - z[labels, np.arange(z.shape[1])]))


def make_numpy(wl: Workload, *, steps: int | None = None, chunk: int = 4096):
    """Baseline 3, hand-vectorised NumPy with analytic gradients: all trajectories of a
    chunk advance together (a Python loop over steps inside a loop over chunks; chunks
    keep the (trajectories x points) temporaries in cache)."""
    n_steps = steps or wl.steps
    data = fixed_data(wl)
    stream = fresh_stream(wl, n_steps) if wl.fresh else None
    if wl.problem == "mlp":
        xt, yt = np.ascontiguousarray(data["x"].T), np.ascontiguousarray(data["y"].T)

    def run_chunk(hp):
        if wl.problem == "mlp":
            params = [hp[k].copy() for k in wl.params]
            lrs = [hp["lr"].reshape((-1,) + (1,) * (p.ndim - 1)) for p in params]
            for _ in range(n_steps):
                for p, g, lr in zip(params, _np_mlp_grads(params, xt, yt), lrs):
                    p -= lr * g
            return params
        if wl.problem == "two_layer":
            c = len(hp["lr0"])
            w1 = np.repeat(data["W1"][None], c, 0)
            w2 = np.repeat(data["W2"][None], c, 0)
            lr0, lr1 = hp["lr0"][:, None, None], hp["lr1"][:, None]
            for _ in range(n_steps):
                g1, g2 = _np_two_layer_grads(w1, w2, data["x"], data["y"])
                w1 -= lr0 * g1
                w2 -= lr1 * g2
            return w1, w2
        w, b = hp["w0"].copy(), hp["b0"].copy()
        if wl.optimizer == "adam":
            mw, vw, mb, vb = (np.zeros_like(w) for _ in range(4))
        for t in range(n_steps):
            if stream is not None:
                x = stream[t]
                y = np.maximum(x, 0)
            else:
                x, y = data["x"], data["y"]
            gw, gb = _np_neuron_grads(w, b, x, y)
            if wl.optimizer == "adam":
                w, mw, vw = _np_adam(w, gw, mw, vw, t + 1, hp["lr"])
                b, mb, vb = _np_adam(b, gb, mb, vb, t + 1, hp["lr"])
            else:
                w -= np.float32(wl.lr) * gw
                b -= np.float32(wl.lr) * gb
        return w, b

    def run(axes: Axes) -> Finals:
        hp = inputs(wl, axes)
        n = len(next(iter(hp.values())))
        with np.errstate(all="ignore"):  # diverging trajectories overflow, as expected
            parts = [run_chunk({k: v[s:s + chunk] for k, v in hp.items()})
                     for s in range(0, n, chunk)]
        return {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(wl.params)}

    return run


# --------------------------------------------------------------------------- torch

def make_torch(wl: Workload, *, steps: int | None = None, chunk: int = 4096):
    """Baseline 4: ``torch.func.vmap(torch.func.grad(loss))`` over stacked parameters, a
    Python loop over steps, updates on the stacked tensors (Adam written out, as
    torch.optim has no per-trajectory learning rate). Requires torch."""
    import torch
    from torch.func import grad, vmap

    n_steps = steps or wl.steps
    data = {k: torch.from_numpy(v) for k, v in fixed_data(wl).items()}
    stream = torch.from_numpy(fresh_stream(wl, n_steps)) if wl.fresh else None

    if wl.problem == "neuron":
        def loss(w, b, x, y):
            return ((torch.relu(w * x + b) - y) ** 2).mean()
    elif wl.problem == "two_layer":
        def loss(w1, w2, x, y):
            return ((torch.tanh(x @ w1.T) @ w2 - y) ** 2).mean()
    if wl.problem == "mlp":
        def mlp_loss(params, x, labels):  # params (W0, b0, ..., W_L, b_L); mean cross-entropy
            *hidden, w_out, b_out = params
            h = x
            for w, b in zip(hidden[::2], hidden[1::2]):
                h = torch.relu(h @ w.T + b)
            return torch.nn.functional.cross_entropy(h @ w_out.T + b_out, labels)
        mlp_grads = vmap(grad(mlp_loss), in_dims=(0, None, None))
    else:
        grads = vmap(grad(loss, argnums=(0, 1)), in_dims=(0, 0, None, None))

    def adam(p, g, m, v, t, lr):
        m = ADAM_B1 * m + (1 - ADAM_B1) * g
        v = ADAM_B2 * v + (1 - ADAM_B2) * g * g
        m_hat = m / (1 - ADAM_B1 ** t)
        v_hat = v / (1 - ADAM_B2 ** t)
        return p - lr * m_hat / (v_hat.sqrt() + ADAM_EPS), m, v

    def run_chunk(hp):
        if wl.problem == "mlp":
            params = tuple(hp[k].clone() for k in wl.params)
            lrs = [hp["lr"].reshape((-1,) + (1,) * (p.dim() - 1)) for p in params]
            for _ in range(n_steps):
                for p, g, lr in zip(params, mlp_grads(params, data["x"], data["labels"]), lrs):
                    p -= lr * g
            return params
        if wl.problem == "two_layer":
            c = len(hp["lr0"])
            w1 = data["W1"].expand(c, -1, -1).clone()
            w2 = data["W2"].expand(c, -1).clone()
            lr0, lr1 = hp["lr0"][:, None, None], hp["lr1"][:, None]
            for _ in range(n_steps):
                g1, g2 = grads(w1, w2, data["x"], data["y"])
                w1 -= lr0 * g1
                w2 -= lr1 * g2
            return w1, w2
        w, b = hp["w0"].clone(), hp["b0"].clone()
        if wl.optimizer == "adam":
            mw, vw, mb, vb = (torch.zeros_like(w) for _ in range(4))
        for t in range(n_steps):
            x = stream[t] if stream is not None else data["x"]
            y = torch.relu(x) if stream is not None else data["y"]
            gw, gb = grads(w, b, x, y)
            if wl.optimizer == "adam":
                w, mw, vw = adam(w, gw, mw, vw, t + 1, hp["lr"])
                b, mb, vb = adam(b, gb, mb, vb, t + 1, hp["lr"])
            else:
                w -= wl.lr * gw
                b -= wl.lr * gb
        return w, b

    def run(axes: Axes) -> Finals:
        hp = {k: torch.from_numpy(v) for k, v in inputs(wl, axes).items()}
        n = len(next(iter(hp.values())))
        with torch.no_grad():
            parts = [run_chunk({k: v[s:s + chunk] for k, v in hp.items()})
                     for s in range(0, n, chunk)]
        return {k: torch.cat([p[i] for p in parts]).numpy() for i, k in enumerate(wl.params)}

    return run


# --------------------------------------------------------------------------- Optuna

def _train_one_numpy(wl: Workload, hp: dict[str, float], data, stream, n_steps, init=None):
    """ONE trajectory in plain NumPy (what an Optuna objective typically runs); ``init``: the
    initial parameters (mlp)."""
    if wl.problem == "mlp":
        xt, yt = data["xt"], data["yt"]
        params = [init[k].copy() for k in wl.params]
        lr = np.float32(hp["lr"])
        for _ in range(n_steps):
            for p, g in zip(params, _np_mlp_grads(params, xt, yt)):
                p -= lr * g
        return dict(zip(wl.params, params)), _np_mlp_loss(params, xt, data["labels"])
    if wl.problem == "two_layer":
        x, y = data["x"], data["y"]
        w1, w2 = data["W1"].copy(), data["W2"].copy()
        lr0, lr1 = np.float32(hp["lr0"]), np.float32(hp["lr1"])
        s = np.float32(2 / len(y))
        for _ in range(n_steps):
            a = np.tanh(x @ w1.T)
            r = (a @ w2 - y) * s
            g2 = a.T @ r
            g1 = (np.outer(r, w2) * (1 - a * a)).T @ x
            w1 -= lr0 * g1
            w2 -= lr1 * g2
        return {"W1": w1, "W2": w2}, float(np.mean((np.tanh(x @ w1.T) @ w2 - y) ** 2))
    w, b = np.float32(hp["w0"]), np.float32(hp["b0"])
    lr = np.float32(hp["lr"] if "lr" in hp else wl.lr)
    mw = vw = mb = vb = np.float32(0)
    for t in range(n_steps):
        if stream is not None:
            x = stream[t]
            y = np.maximum(x, 0)
        else:
            x, y = data["x"], data["y"]
        z = w * x + b
        r = (np.maximum(z, 0) - y) * (z > 0) * np.float32(2 / x.size)
        gw, gb = r @ x, r.sum()
        if wl.optimizer == "adam":
            w, mw, vw = _np_adam(w, gw, mw, vw, t + 1, lr)
            b, mb, vb = _np_adam(b, gb, mb, vb, t + 1, lr)
        else:
            w, b = w - lr * gw, b - lr * gb
    x, y = (stream[-1], np.maximum(stream[-1], 0)) if stream is not None else (data["x"], data["y"])
    return {"w": w, "b": b}, float(np.mean((np.maximum(w * x + b, 0) - y) ** 2))


def make_optuna(wl: Workload, *, steps: int | None = None):
    """Baseline 5: an in-memory Optuna study with ``GridSampler`` over the axes, one trial
    per trajectory, each trial training one trajectory in plain NumPy and returning its
    final loss. ``run.train_s`` records the time spent training in each call (the rest is
    Optuna's own bookkeeping, which grows faster than linearly with the number of trials:
    GridSampler compares every past trial's search space after each trial). Requires optuna."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # diverged trials return NaN
    n_steps = steps or wl.steps
    data = fixed_data(wl)
    stream = fresh_stream(wl, n_steps) if wl.fresh else None
    bounds = {k: (float(v.min()), float(v.max())) for k, v in wl.axes.items()}
    table = None
    if wl.problem == "mlp":  # the engine's initial parameters of every grid point
        table = mlp_setup(wl).init
        data["xt"], data["yt"] = np.ascontiguousarray(data["x"].T), np.ascontiguousarray(data["y"].T)

    def run(axes: Axes) -> Finals:
        finals = {}
        train_s = 0.0

        def objective(trial):
            nonlocal train_s
            hp = {k: trial.suggest_float(k, *bounds[k]) for k in axes}
            init = None
            if table is not None:
                i = grid_index(wl, {k: np.array([hp[k]], np.float32) for k in axes})[0]
                init = {k: v[i] for k, v in table.items()}
            t0 = time.perf_counter()
            params, loss = _train_one_numpy(wl, hp, data, stream, n_steps, init)
            train_s += time.perf_counter() - t0
            finals[tuple(np.float32(hp[k]) for k in axes)] = params
            return loss

        space = {k: [float(x) for x in v] for k, v in axes.items()}
        study = optuna.create_study(sampler=optuna.samplers.GridSampler(space, seed=0))
        with np.errstate(all="ignore"):  # diverging trajectories overflow, as expected
            study.optimize(objective, n_trials=math.prod(len(v) for v in axes.values()))
        hp = expand(axes)
        keys = zip(*(hp[k] for k in axes))
        rows = [finals[tuple(np.float32(x) for x in key)] for key in keys]
        run.train_s.append(train_s)
        return {k: np.stack([np.asarray(r[k], np.float32) for r in rows]) for k in wl.params}

    run.train_s = []  # seconds spent inside the training, one entry per call (the rest is Optuna)
    return run


BASELINES: dict[str, tuple[str, Callable]] = {
    "jax-scan": ("(0) jit(vmap(scan)) chunked", make_jax_scan),
    "jax-naive": ("(1) loop over trajs, jit(train)", make_jax_naive),
    "jax-steploop": ("(2) loop over steps, jit(vmap(step))", make_jax_steploop),
    "numpy": ("(3) NumPy vectorised, analytic grad", make_numpy),
    "torch": ("(4) torch.func vmap(grad), step loop", make_torch),
    "optuna": ("(5) Optuna GridSampler, NumPy/trial", make_optuna),
}
"""Key -> (label, factory). torch and optuna need their packages (:func:`have`)."""
