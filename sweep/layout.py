"""Batched loss-and-gradient layouts: how a chunk of trajectories meets its data.

The trajectories of a chunk are independent, so the gradient of the SUM of their losses
with respect to the batched parameters is every trajectory's own gradient. The layouts
differ only in memory traffic:

- ``vmap``: ``vmap(value_and_grad(loss))`` over trajectories (the textbook program); XLA
  materialises (trajectories x points) temporaries.
- ``points``: a loop over data points with trajectories on the vector axis; each point's
  loss and gradient are accumulated (no (trajectories x points) temporaries).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .problems import Problem

LAYOUTS = ("auto", "points", "vmap")
POINT_UNROLL = 8  # data points per iteration of the point loop (measured: A 1.7x, B 2.5x faster than 1 on CPU)


def make_value_and_grad(problem: Problem, n_traj: int, dtype, layout: str = "auto") -> Callable:
    """Return ``f(params, batch, v) -> (loss (T,), grad like params)`` for a chunk of T trajectories.

    Args:
      problem: the built problem; ``points`` needs ``problem.point_loss``.
      n_traj: T, the chunk size (static). dtype: the float dtype. layout: one of LAYOUTS.
    """
    if layout == "auto":
        layout = "points" if problem.point_loss is not None else "vmap"
    if layout == "vmap" or problem.point_loss is None:
        return jax.vmap(jax.value_and_grad(problem.loss), (0, None, 0))

    per_point = jax.vmap(problem.point_loss, (0, None, 0))

    def value_and_grad(params, batch, v):
        n = jax.tree_util.tree_leaves(batch)[0].shape[0]

        def body(j, acc):
            point = jax.tree_util.tree_map(lambda a: a[j], batch)
            loss, vjp = jax.vjp(lambda p: per_point(p, point, v), params)
            (g,) = vjp(jnp.ones_like(loss))
            return acc[0] + loss, jax.tree_util.tree_map(jnp.add, acc[1], g)

        zero = (jnp.zeros((n_traj,), dtype), jax.tree_util.tree_map(jnp.zeros_like, params))
        loss, grad = jax.lax.fori_loop(0, n, body, zero, unroll=max(1, min(POINT_UNROLL, n)))
        inv = jnp.asarray(1.0 / n, dtype)
        return loss * inv, jax.tree_util.tree_map(lambda g: g * inv, grad)

    return value_and_grad
