"""Second-order steps for ONE trajectory: exact Newton, Gauss-Newton, Levenberg-Marquardt (seed 002).

Each method turns (params, batch, v) into the loss, its gradient and the step to add to the
parameters; no optax state is involved. The parameters (any dict of arrays) are flattened into
one vector of P entries, the P x P system is formed explicitly and solved with
``jnp.linalg.solve``:

- ``newton``:              step = -lr * (H + damping*I)^-1 g,  H = jax.hessian(loss)
- ``gauss_newton``:        step = -lr * (J^T J + damping*I)^-1 g
- ``levenberg_marquardt``: step = -lr * (J^T J + damping*diag(J^T J))^-1 g   (Marquardt's scaling)

where J is the Jacobian of ``problem.residuals`` (``loss == 0.5*sum(r**2)``, so g = J^T r).
``lr`` and ``damping`` are traced per-trajectory values (``v["lr"]``, ``v["damping"]``).

A singular system (ReLU's zero curvature on a dead unit: H = 0, g = 0) makes the solve return
inf/nan; the caller (``step.advance``) records that trajectory as ``nan`` at that step and
freezes it. Nothing is raised and no other trajectory is touched. A nearly singular system
gives a huge but finite step, which the usual rules classify (typically ``diverged``).
The cost is O(P^3) per step per trajectory: meant for the small problems of the seeds.
The problem's ``constants`` (per-trajectory constants carried in the parameters, e.g. drawn data
weights) are not part of the system: their gradient and step are zero.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .optimizers import HYPER_DEFAULTS, SECOND_ORDER, default_lr
from .problems import Problem

METHODS = tuple(SECOND_ORDER)


def make_direction(problem: Problem, method: str) -> Callable:
    """Return ``direction(params, batch, v) -> (loss, grad, step)`` for one trajectory.

    Args:
      problem: the built problem (``residuals`` required for gauss_newton / levenberg_marquardt).
      method: one of METHODS (static).
    Returns:
      a function giving loss () float, grad and step (both shaped like params).
    Raises:
      ValueError: a least-squares method on a problem without residuals.
    """
    if method not in METHODS:
        raise ValueError(f"optimizer {method!r} is not a second-order method; one of {', '.join(METHODS)}")
    if method != "newton" and problem.residuals is None:
        raise ValueError(f"optimizer {method!r} needs a least-squares problem (one with residuals); "
                         "this problem has none: use 'newton'")

    def direction(params, batch, v):
        const = {k: x for k, x in params.items() if k in problem.constants}  # never trained: left out
        flat, unravel_trained = ravel_pytree({k: x for k, x in params.items() if k not in const})
        unravel = lambda q: {**unravel_trained(q), **const}  # noqa: E731
        lr = jnp.asarray(v.get("lr", default_lr(method)), flat.dtype)
        damping = jnp.asarray(v.get("damping", HYPER_DEFAULTS["damping"]), flat.dtype)

        def f(q):
            return problem.loss(unravel(q), batch, v)

        loss, g = jax.value_and_grad(f)(flat)
        eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
        if method == "newton":
            a = jax.hessian(f)(flat) + damping * eye
        else:
            jac = jax.jacfwd(lambda q: problem.residuals(unravel(q), batch, v))(flat)  # (n, P)
            a = jac.T @ jac
            a = a + damping * (eye if method == "gauss_newton" else jnp.diag(jnp.diag(a)))
        step = -lr * jnp.linalg.solve(a, g)
        zeros = {k: jnp.zeros_like(x) for k, x in const.items()}
        return loss, {**unravel_trained(g), **zeros}, {**unravel_trained(step), **zeros}

    return direction
