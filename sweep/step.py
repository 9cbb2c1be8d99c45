"""One trajectory: initial state, one optimizer step, final classification.

Everything here is written for a single training run and knows nothing about batches;
``engine.py`` vmaps it. The loss and gradient of a step are computed by the caller (the
engine chooses a batched layout for them) and passed to ``advance``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .optimizers import SECOND_ORDER, make_optimizer
from .outcomes import Outcome, Thresholds, classify_survivor
from .problems import Problem
from .second_order import make_direction

ALIVE = -1  # code of a trajectory that has not settled yet


class TrajState(NamedTuple):
    """State of one trajectory (all leaves are scalars or parameter-shaped)."""

    params: dict  # name -> () float
    opt_state: Any  # optax state
    code: jax.Array  # () int8, ALIVE until settled
    stop_step: jax.Array  # () int32
    loss0: jax.Array  # () float, loss at step 0
    target: jax.Array  # () float, the problem's target loss
    last_loss: jax.Array  # () float, loss at the last evaluation while alive
    last_gnorm: jax.Array  # () float
    min_loss: jax.Array  # () float
    dead_count: jax.Array  # () int32, consecutive exactly-zero gradients
    win_start: jax.Array  # () float, loss at the start of the final window
    path: jax.Array  # () float, sum |window-loss change| over the final window
    win_last: jax.Array  # () float, the last window loss
    step_norm: jax.Array  # () float, norm of the last update
    first: dict  # event name -> () int32, first step the problem's event held (-1: not yet)
    conv_count: jax.Array  # () int32, consecutive steps within the target tolerance
    conv_first: jax.Array  # () int32, first step of that streak (-1: none)
    conv_loss: jax.Array  # () float, the loss at the first step of that streak
    tail_sum: jax.Array  # () float, sum of the losses of the last ``problem.tail`` steps seen
    tail_n: jax.Array  # () int32, how many of them were seen
    lambda0: jax.Array  # () float, top Hessian eigenvalue at init (train.lr_mode = "sharpness"; else 1)


def hyperparams(v: dict) -> dict:
    """The optimizer hyperparameters of one trajectory (traced scalars)."""
    return v


def tree_norm(t) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(t)))


def tree_absmax(t) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(t)]))


class Trajectory(NamedTuple):
    """Pure functions of one trajectory for a given static combination."""

    init: Callable  # (key, v, target) -> TrajState
    advance: Callable  # (state, t, loss, grad, v, wloss, wmask, inactive, events, direction) -> TrajState
    win_start: int  # first step of the final window
    finish: Callable  # (state) -> dict of () results
    value_and_grad: Callable  # (params, batch, v) -> (loss, grad)
    direction: Callable | None = None  # second-order: (params, batch, v) -> (loss, grad, step); else None


LAMBDA0_ITERS = 64  # power iterations for lambda0 (train.lr_mode = "sharpness")


def sharpness(problem: Problem, params, batch, v, iters: int) -> jax.Array:
    """Top Hessian eigenvalue of ``problem.loss`` at ``params`` (one trajectory): ``iters`` power
    iterations on Hessian-vector products, then the Rayleigh quotient (its sign is kept)."""
    grad = lambda p: jax.grad(problem.loss)(p, batch, v)  # noqa: E731
    hvp = lambda u: jax.jvp(grad, (params,), (u,))[1]  # noqa: E731
    dot = lambda a, b: sum(jnp.sum(x * y) for x, y in zip(jax.tree_util.tree_leaves(a),  # noqa: E731
                                                        jax.tree_util.tree_leaves(b)))

    def unit(u):
        n = jnp.sqrt(dot(u, u))
        return jax.tree_util.tree_map(lambda x: x / jnp.where(n > 0, n, 1.0), u)

    u = unit(jax.tree_util.tree_map(lambda x: jnp.ones_like(x) + 0.1 * jnp.arange(x.size, dtype=x.dtype)
                                    .reshape(x.shape), params))
    u = jax.lax.fori_loop(0, iters, lambda i, u: unit(hvp(u)), u)
    return dot(u, hvp(u))


def lr_scale(lambda0: jax.Array) -> jax.Array:
    """1 / lambda0, or nan unless lambda0 > 0 and finite (train.lr_mode = "sharpness")."""
    ok = jnp.isfinite(lambda0) & (lambda0 > 0)
    return jnp.where(ok, 1.0 / jnp.where(ok, lambda0, 1.0), jnp.nan)


def make_trajectory(problem: Problem, optimizer: str, steps: int, th: Thresholds, dtype,
                    lr_mode: str = "absolute") -> Trajectory:
    """Build the trajectory functions (all arguments static: changing them recompiles).

    Steps are evaluated at t = 0..steps: the loss and gradient at t decide whether the run
    settles at t; if not, and t < steps, the optimizer takes a step. So ``steps`` updates
    are taken at most and the final loss is the loss of the final parameters.

    Second-order optimizers (``SECOND_ORDER``) bypass optax: the caller computes the step with
    ``Trajectory.direction`` and passes it to ``advance``; a non-finite step (a singular Hessian,
    e.g. Newton's 0/0 on a dead ReLU) settles the run as ``nan`` at that step, parameters frozen.
    """
    win = max(1, int(round(th.window * steps)))
    win_start = max(0, steps - win)
    second = optimizer in SECOND_ORDER
    tail = min(int(problem.tail), steps + 1)
    relative = lr_mode == "sharpness"

    def opt(v):
        return optax.identity() if second else make_optimizer(optimizer, hyperparams(v))

    def init(key, v, target, batch=None):
        """Initial state; ``batch`` (the fixed data or reference sample) is needed for lr_mode = "sharpness"."""
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), problem.init(key, v))
        lam = (sharpness(problem, params, batch, v, LAMBDA0_ITERS).astype(dtype) if relative
               else jnp.ones((), dtype))
        z = jnp.zeros((), dtype)
        first = {n: jnp.int32(-1) for n in problem.events}
        return TrajState(params, opt(v).init(params), jnp.int8(ALIVE), jnp.int32(steps), z,
                         jnp.asarray(target, dtype), z, z, jnp.asarray(jnp.inf, dtype), jnp.int32(0), z, z, z, z,
                         first, jnp.int32(0), jnp.int32(-1), z, z, jnp.int32(0), lam)

    def advance(s: TrajState, t, loss, grad, v, wloss=None, wmask=True, inactive=True, events=None,
                direction=None) -> TrajState:
        """One step. ``wloss``: the loss used for the final-window statistics (the step's own loss
        for deterministic data; a fixed reference sample's loss at checkpoints for noisy data, where
        ``wmask`` says whether this step is a checkpoint). ``inactive``: the problem's "every unit
        inactive" check at these parameters (True when the problem has none). ``events``: the
        problem's ``track`` at these parameters (or None). ``direction``: the second-order step
        (parameter-shaped, already times -lr), required for second-order optimizers."""
        wloss = loss if wloss is None else wloss
        alive = (s.code == ALIVE) & (t <= steps)
        gnorm = tree_norm(grad)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        solved = jnp.asarray(True) if direction is None else jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(direction)]))
        loss0 = jnp.where(t == 0, loss, s.loss0)
        conv_now = loss <= s.target + th.loss_atol + th.loss_rtol * jnp.abs(s.target)
        conv_count = jnp.where(alive, jnp.where(conv_now, s.conv_count + 1, 0), s.conv_count).astype(jnp.int32)
        conv_first = jnp.where(alive, jnp.where(conv_now, jnp.where(s.conv_count == 0, t, s.conv_first), -1),
                               s.conv_first).astype(jnp.int32)
        conv_loss = jnp.where(alive & conv_now & (s.conv_count == 0), loss, s.conv_loss)
        # settle once the streak is long enough AND the loss has not grown over it (a run leaving an
        # unstable fixed point grows geometrically); a streak that lasts to the end of the budget counts
        conv = conv_now & (((conv_count >= th.converge_patience) & (loss <= conv_loss)) | (t == steps))
        dead_count = jnp.where(alive & (gnorm == 0) & ~conv_now, s.dead_count + 1,
                               jnp.where(alive, 0, s.dead_count))
        bound = jnp.maximum(th.diverge_loss, th.diverge_factor * jnp.abs(loss0))
        div = (loss > bound) | (tree_absmax(s.params) > th.diverge_param)
        new = jnp.where(~finite, int(Outcome.NAN),
                        jnp.where(div, int(Outcome.DIVERGED),
                                  jnp.where(conv, int(Outcome.CONVERGED),
                                            jnp.where(~solved & (t < steps), int(Outcome.NAN),
                                                      jnp.where((dead_count >= th.dead_patience) & inactive,
                                                                int(Outcome.DEAD), ALIVE)))))
        settle = alive & (new != ALIVE)
        code = jnp.where(settle, new, s.code).astype(jnp.int8)
        stop_step = jnp.where(settle, t, s.stop_step).astype(jnp.int32)
        last_loss = jnp.where(alive, loss, s.last_loss)
        last_gnorm = jnp.where(alive, gnorm, s.last_gnorm)
        min_loss = jnp.where(alive, jnp.fmin(s.min_loss, loss), s.min_loss)
        in_win = alive & wmask & (t >= win_start)
        win_loss = jnp.where(in_win & (t == win_start), wloss, s.win_start)
        path = jnp.where(in_win & (t > win_start), s.path + jnp.abs(wloss - s.win_last), s.path)
        win_last = jnp.where(in_win, wloss, s.win_last)
        first = {n: jnp.where(alive & events[n] & (f < 0), t, f).astype(jnp.int32) for n, f in s.first.items()}
        in_tail = alive & (((t >= steps - tail) & (t < steps)) if problem.tail_pre else (t > steps - tail))
        tail_sum = jnp.where(in_tail, s.tail_sum + jnp.where(jnp.isfinite(loss), loss, jnp.inf), s.tail_sum)
        tail_n = jnp.where(in_tail, s.tail_n + 1, s.tail_n).astype(jnp.int32)
        # the optimizer step, only for runs still alive and with budget left
        move = alive & (code == ALIVE) & (t < steps)
        if second:
            updates, opt_state = direction, s.opt_state
        else:
            updates, opt_state = opt(v).update(grad, s.opt_state, s.params)
        if problem.update_scale is not None:
            scale = problem.update_scale(v)
            updates = {k: u * scale[k] if k in scale else u for k, u in updates.items()}
        if problem.constants:  # per-trajectory constants carried in params (e.g. drawn data weights): never move
            updates = {k: jnp.zeros_like(u) if k in problem.constants else u for k, u in updates.items()}
        if relative:
            scale = lr_scale(s.lambda0)
            updates = jax.tree_util.tree_map(lambda u: u * scale, updates)
        new_params = optax.apply_updates(s.params, updates)
        step_norm = jnp.where(move, tree_norm(updates), s.step_norm)
        keep = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(move, x, y), a, b)  # noqa: E731
        return TrajState(keep(new_params, s.params), keep(opt_state, s.opt_state), code, stop_step, loss0, s.target,
                         last_loss, last_gnorm, min_loss, dead_count, win_loss, path, win_last, step_norm,
                         first, conv_count, conv_first, conv_loss, tail_sum, tail_n, s.lambda0)

    def finish(s: TrajState) -> dict:
        survivor = classify_survivor(th, loss_start=s.win_start, loss_end=s.win_last, path=s.path,
                                     step_norm=s.step_norm, param_norm=tree_norm(s.params), target=s.target)
        code = jnp.where(s.code == ALIVE, survivor, s.code).astype(jnp.int8)
        out = {
            "outcome": code,
            "final_loss": s.last_loss,
            "min_loss": s.min_loss,
            "converge_step": jnp.where(code == int(Outcome.CONVERGED), s.conv_first, -1).astype(jnp.int32),
            "stop_step": s.stop_step,
            "final_grad_norm": s.last_gnorm,
            "target_loss": s.target,
        }
        for name in problem.params:
            out["final_" + name] = s.params[name]
        if relative:
            out["lambda0"] = s.lambda0
        for name, f in s.first.items():
            out[name] = (f >= 0).astype(jnp.int8)
            out[name + "_step"] = f
        if tail:
            # a run that settled early keeps its last loss for the steps it did not take
            # (diverged and nan count as infinite)
            gone = (code == int(Outcome.DIVERGED)) | (code == int(Outcome.NAN)) | ~jnp.isfinite(s.last_loss)
            frozen = jnp.where(gone, jnp.inf, s.last_loss)
            missing = (tail - s.tail_n).astype(s.tail_sum.dtype)
            mean = (s.tail_sum + jnp.where(missing > 0, missing * frozen, 0.0)) / tail
            ratio = mean / s.loss0
            out["tail_loss_ratio"] = ratio
            out["trainable"] = (ratio < 1).astype(jnp.int8)
        return out

    def value_and_grad(params, batch, v):
        return jax.value_and_grad(problem.loss)(params, batch, v)

    direction = make_direction(problem, optimizer) if second else None
    return Trajectory(init, advance, win_start, finish, value_and_grad, direction)


def run_one(problem: Problem, traj: Trajectory, steps: int, key, v: dict, data=None,
            batch_fn: Callable | None = None, target=None) -> dict:
    """Train ONE trajectory with ``lax`` loops (reference for tests; the engine batches this).

    Args:
      data: the fixed batch, or None with ``batch_fn(t) -> batch`` for per-step batches.
    Returns:
      dict of () results, as the engine's (metrics only with fixed ``data``).
    """
    if target is None:
        target = problem.target(data, v)
    s = traj.init(key, v, target, data)

    def body(t, s):
        batch = data if batch_fn is None else batch_fn(t)
        if traj.direction is not None:
            loss, grad, direction = traj.direction(s.params, batch, v)
        else:
            (loss, grad), direction = traj.value_and_grad(s.params, batch, v), None
        inactive = True if problem.inactive is None else problem.inactive(s.params, batch, v)
        events = None if problem.track is None else problem.track(s.params, batch, v)
        return traj.advance(s, t, loss, grad, v, loss, True, inactive, events, direction)

    s = jax.lax.fori_loop(0, steps + 1, body, s)
    out = traj.finish(s)
    if data is not None:  # the engine's metrics, on the fixed data
        out.update(problem.metrics(s.params, data, v))
    return out
