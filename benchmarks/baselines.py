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

The derivative of relu at 0 is 0 everywhere (``jax.nn.relu``, ``torch.relu``, and the
``z > 0`` mask of the NumPy code).
"""
from __future__ import annotations

import dataclasses
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
    problem: str                 # "neuron" | "two_layer"
    optimizer: str               # "sgd" | "adam"
    steps: int
    axes: dict                   # axis name -> (k,) float32 values
    lr: float | None = None      # when lr is not an axis (neuron)
    fresh: bool = False          # neuron: fresh batch every step (common random numbers)
    n_points: int = 256          # neuron: fixed batch size, or fresh batch size
    dim: int = 16                # two_layer: input dim
    width: int = 16              # two_layer: hidden width
    seed: int = 0

    @property
    def n_traj(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    @property
    def params(self) -> tuple[str, ...]:
        return ("w", "b") if self.problem == "neuron" else ("W1", "W2")


WORKLOADS = ("A", "A-fresh", "A-adam", "B")


def workload(name: str, *, quick: bool = False) -> Workload:
    """The named workload at full size, or shrunk ~50-80x in work when ``quick``."""
    lin = lambda k: np.linspace(-3.0, 3.0, k, dtype=np.float32)  # noqa: E731
    log = lambda a, b, k: np.logspace(a, b, k).astype(np.float32)  # noqa: E731
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
    ``W2`` (width,).
    """
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


def _jax_problem(wl: Workload):
    """(loss, init(hp, data), make_tx(hp), batch(data, t), data) for ONE trajectory.

    ``hp`` holds the trajectory's swept scalars; ``data`` is shared by all trajectories.
    """
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
        hp = expand(axes)
        n = len(next(iter(hp.values())))
        c = min(chunk, n)
        outs = []
        for s in range(0, n, c):
            part = {k: v[s:s + c] for k, v in hp.items()}
            if len(next(iter(part.values()))) < c:  # pad the last chunk
                part = {k: np.pad(v, (0, c - len(v)), mode="edge") for k, v in part.items()}
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
        hp = expand(axes)
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
        hp = {k: jnp.asarray(v) for k, v in expand(axes).items()}
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


def make_numpy(wl: Workload, *, steps: int | None = None, chunk: int = 4096):
    """Baseline 3, hand-vectorised NumPy with analytic gradients: all trajectories of a
    chunk advance together (a Python loop over steps inside a loop over chunks; chunks
    keep the (trajectories x points) temporaries in cache)."""
    n_steps = steps or wl.steps
    data = fixed_data(wl)
    stream = fresh_stream(wl, n_steps) if wl.fresh else None

    def run_chunk(hp):
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
        hp = expand(axes)
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
    else:
        def loss(w1, w2, x, y):
            return ((torch.tanh(x @ w1.T) @ w2 - y) ** 2).mean()
    grads = vmap(grad(loss, argnums=(0, 1)), in_dims=(0, 0, None, None))

    def adam(p, g, m, v, t, lr):
        m = ADAM_B1 * m + (1 - ADAM_B1) * g
        v = ADAM_B2 * v + (1 - ADAM_B2) * g * g
        m_hat = m / (1 - ADAM_B1 ** t)
        v_hat = v / (1 - ADAM_B2 ** t)
        return p - lr * m_hat / (v_hat.sqrt() + ADAM_EPS), m, v

    def run_chunk(hp):
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
        hp = {k: torch.from_numpy(v) for k, v in expand(axes).items()}
        n = len(next(iter(hp.values())))
        with torch.no_grad():
            parts = [run_chunk({k: v[s:s + chunk] for k, v in hp.items()})
                     for s in range(0, n, chunk)]
        return {k: torch.cat([p[i] for p in parts]).numpy() for i, k in enumerate(wl.params)}

    return run


# --------------------------------------------------------------------------- Optuna

def _train_one_numpy(wl: Workload, hp: dict[str, float], data, stream, n_steps):
    """ONE trajectory in plain NumPy (what an Optuna objective typically runs)."""
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

    def run(axes: Axes) -> Finals:
        finals = {}
        train_s = 0.0

        def objective(trial):
            nonlocal train_s
            hp = {k: trial.suggest_float(k, *bounds[k]) for k in axes}
            t0 = time.perf_counter()
            params, loss = _train_one_numpy(wl, hp, data, stream, n_steps)
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
