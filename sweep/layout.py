"""Batched loss-and-gradient layouts: how a chunk of trajectories meets its data.

The trajectories of a chunk are independent, so the gradient of the SUM of their losses
with respect to the batched parameters is every trajectory's own gradient. The layouts
differ only in memory traffic:

- ``points``: a loop over data points with trajectories on the vector axis; each point's
  loss and gradient are accumulated (no (trajectories x points) temporaries). Best for
  elementwise problems (a neuron, a scalar toy), where a point costs a few vector operations.
- ``vmap``: ``vmap(value_and_grad(loss))`` over trajectories (the textbook program): a
  trajectory's matrix products with the shared data become one batched matrix product. XLA
  materialises (trajectories x points x units) temporaries, so the engine runs it in blocks
  of a fixed number of trajectories (:func:`block_size`, :func:`in_blocks`) whose temporaries
  stay in cache; the fixed block shape also makes the bits independent of the chunk size.

``auto`` (:func:`resolve`) takes ``points`` when the problem has a per-point loss without
matrix products and ``vmap`` otherwise. Measured (benchmarks/RESULTS.md): workload A's neuron
runs 4-7x faster with points; workload B's 16x16 network ~6x and C's MLP ~1.4x faster with
blocked vmap than with points.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from .problems import Problem

LAYOUTS = ("auto", "points", "vmap")
POINT_UNROLL = 8  # data points per iteration of the point loop (measured: A 1.7x, B 2.5x faster than 1 on CPU)
MATRIX_PRIMITIVES = frozenset({"dot_general", "conv_general_dilated"})
BLOCK_BYTES = 1 << 19  # vmap layout: a block's (trajectories x points x units) temporaries stay near this size
MAX_BLOCK = 64  # ... with at most this many trajectories per block
OWN_ARRAY_BYTES = 1 << 10  # a data-free problem with scalar parameters is blocked when its working set is this big
ACCELERATOR_BLOCK = 1 << 16  # on a GPU/TPU a block must fill the device: at most this many, within 1/16 of its memory


def equations(jaxpr):
    """Every equation of a (closed) jaxpr, those of its sub-jaxprs (loops, conds, calls) included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        yield eqn
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else (p,)):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    yield from equations(sub)


def primitives(jaxpr) -> set[str]:
    """Names of every primitive in a (closed) jaxpr, sub-jaxprs included."""
    return {eqn.primitive.name for eqn in equations(jaxpr)}


def one_trajectory(tree):
    """Abstract values of one element from (T, ...) batched values (a trajectory, a data point)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def resolve(problem: Problem, params, batch, v, layout: str = "auto") -> str:
    """The layout that ``auto`` stands for, given ONE trajectory's params and v (arrays or
    ShapeDtypeStructs) and the batch: ``points`` when ``problem.point_loss`` exists and has no
    matrix product, else ``vmap``. An explicit ``points`` without a point loss is ``vmap``."""
    if problem.point_loss is None or batch is None:
        return "vmap"
    if layout != "auto":
        return layout
    names = primitives(jax.make_jaxpr(problem.point_loss)(params, one_trajectory(batch), v))
    return "vmap" if names & MATRIX_PRIMITIVES else "points"


def working_set_bytes(problem: Problem, params, batch, v) -> int:
    """Bytes of the largest array in one trajectory's ``value_and_grad(loss)`` (params and v:
    one trajectory's arrays or ShapeDtypeStructs): what the vmap layout materialises per trajectory."""
    jaxpr = jax.make_jaxpr(jax.value_and_grad(problem.loss))(params, batch, v)
    sizes = (int(o.aval.size) * o.aval.dtype.itemsize for eqn in equations(jaxpr) for o in eqn.outvars
             if hasattr(getattr(o, "aval", None), "shape"))
    return max(sizes, default=4)


def block_size(problem: Problem, params, batch, v, budget: int = BLOCK_BYTES, most: int = MAX_BLOCK) -> int:
    """Trajectories per block of the vmap layout: the power of two in [1, ``most``] nearest to
    ``budget`` / ``working_set_bytes``. On CPU (the defaults) a property of the problem and its
    shapes only, never of the machine or the chunk size, so results do not depend on either."""
    ratio = budget / max(working_set_bytes(problem, params, batch, v), 1)
    return int(min(most, max(1, 2 ** round(math.log2(max(ratio, 1.0))))))


def blocking(problem: Problem, params, batch, v, layout: str = "auto", backend: str = "cpu",
             memory: int | None = None) -> tuple[str, int | None]:
    """(layout, block size or None) the engine uses for one trajectory's params and v (arrays or
    ShapeDtypeStructs): the vmap layout is run in blocks when a parameter is an array, or when a
    problem without data builds arrays of its own (the neuron's ``data.population``: its quadrature
    nodes; a working set over ``OWN_ARRAY_BYTES``); the block is cache-sized on CPU and fills
    1/16 of ``memory`` (bytes) on an accelerator."""
    chosen = resolve(problem, params, batch, v, layout)
    if chosen != "vmap":
        return chosen, None
    if not any(a.shape for a in jax.tree_util.tree_leaves(params)) and (
            batch is not None or working_set_bytes(problem, params, batch, v) < OWN_ARRAY_BYTES):
        return chosen, None
    if backend == "cpu":
        return chosen, block_size(problem, params, batch, v)
    return chosen, block_size(problem, params, batch, v, (memory or 1 << 34) // 16, ACCELERATOR_BLOCK)


def in_blocks(fn: Callable, n: int, block: int) -> Callable:
    """``fn`` applied to fixed-size blocks of ``block`` trajectories, one block after another.

    ``fn(*trees)`` maps (B, ...)-batched trees to (B, ...)-batched trees; the result maps
    (n, ...)-batched trees the same way. ``n`` is padded up to a multiple of ``block``, at least
    two blocks, with copies of the last trajectory (dropped again), so every call of ``fn`` has
    the same shapes and code whatever ``n`` is: a trajectory's bits depend on ``block``, not on
    the chunk size or its place in the chunk.
    """
    nb = max(2, -(-n // block))  # XLA inlines a one-trip loop, and the inlined block is compiled differently
    pad = nb * block - n

    def split(x):
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        return x.reshape((nb, block) + x.shape[1:])

    def run(*trees):
        out = jax.lax.map(lambda args: fn(*args), jax.tree_util.tree_map(split, trees))
        return jax.tree_util.tree_map(lambda x: x.reshape((nb * block,) + x.shape[2:])[:n], out)

    return run


def make_value_and_grad(problem: Problem, dtype, layout: str) -> Callable:
    """Return ``f(params, batch, v) -> (loss (T,), grad like params)`` for a batch of T trajectories.

    Args:
      problem: the built problem; ``points`` needs ``problem.point_loss``.
      dtype: the float dtype. layout: ``points`` or ``vmap`` (see :func:`resolve`). The vmap
        layout is meant to be called on blocks (:func:`in_blocks`, :func:`block_size`).
    """
    if layout == "vmap" or problem.point_loss is None:
        return jax.vmap(jax.value_and_grad(problem.loss), (0, None, 0))
    per_point = jax.vmap(problem.point_loss, (0, None, 0))

    def by_points(params, batch, v):
        n = jax.tree_util.tree_leaves(batch)[0].shape[0]
        n_traj = jax.tree_util.tree_leaves(params)[0].shape[0]

        def body(j, acc):
            point = jax.tree_util.tree_map(lambda a: a[j], batch)
            loss, vjp = jax.vjp(lambda p: per_point(p, point, v), params)
            (g,) = vjp(jnp.ones_like(loss))
            return acc[0] + loss, jax.tree_util.tree_map(jnp.add, acc[1], g)

        zero = (jnp.zeros((n_traj,), dtype), jax.tree_util.tree_map(jnp.zeros_like, params))
        loss, grad = jax.lax.fori_loop(0, n, body, zero, unroll=max(1, min(POINT_UNROLL, n)))
        inv = jnp.asarray(1.0 / n, dtype)
        return loss * inv, jax.tree_util.tree_map(lambda g: g * inv, grad)

    return by_points
