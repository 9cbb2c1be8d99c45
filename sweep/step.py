"""One trajectory: initial state, one optimizer step, final classification.

Everything here is written for a single training run and knows nothing about batches;
``engine.py`` vmaps it. The loss and gradient of a step are computed by the caller (the
engine chooses a batched layout for them) and passed to ``advance`` as a ``StepInput``.
Every classification rule is in ``outcomes.py``; this module only gathers what they read.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .optimizers import SECOND_ORDER, make_optimizer
from .options import EventSpec
from .outcomes import ALIVE, Outcome, Thresholds, settle_code, survivor_code
from .problems import Problem
from .second_order import make_direction


class TrajState(NamedTuple):
    """State of one trajectory (all leaves are scalars or parameter-shaped)."""

    params: dict  # name -> () float or parameter-shaped array
    opt_state: Any  # optax state
    code: jax.Array  # () int8, ALIVE until settled
    stop_step: jax.Array  # () int32
    loss0: jax.Array  # () float, loss at step 0
    target: jax.Array  # () float, the problem's target loss
    last_loss: jax.Array  # () float, loss at the last evaluation while alive
    last_gnorm: jax.Array  # () float
    min_loss: jax.Array  # () float
    max_loss: jax.Array  # () float, the largest loss seen while alive
    path_all: jax.Array  # () float, sum |loss change| since step 0 (event stops before the final window)
    dead_count: jax.Array  # () int32, consecutive exactly-zero gradients
    win_start: jax.Array  # () float, loss at the start of the final window
    win_last: jax.Array  # () float, the last window loss
    win_min: jax.Array  # () float, smallest window loss
    win_max: jax.Array  # () float, largest window loss
    path: jax.Array  # () float, sum |window-loss change| over the final window
    step_norm: jax.Array  # () float, norm of the last update
    first: dict  # event name -> () int32, first step the event held (-1: not yet)
    conv_count: jax.Array  # () int32, consecutive steps within the target tolerance
    conv_first: jax.Array  # () int32, first step of that streak (-1: none)
    conv_loss: jax.Array  # () float, the loss at the first step of that streak
    tail_sum: jax.Array  # () float, sum of the losses of the last ``problem.tail`` steps seen
    tail_n: jax.Array  # () int32, how many of them were seen
    lambda0: jax.Array  # () float, top Hessian eigenvalue at init (train.lr_mode = "sharpness"; else 1)
    tangent: Any  # (params-shaped, opt-state float leaves) unit tangent vector ([outcome] lyapunov; else ())
    lyap_sum: jax.Array  # () float, sum of log tangent growth over the updates taken
    lyap_n: jax.Array  # () int32, updates taken


class StepInput(NamedTuple):
    """What the caller computed at one step of one trajectory (``advance`` reads it)."""

    loss: jax.Array  # () float, the training loss at the current parameters
    grad: Any  # params-shaped gradient
    wloss: jax.Array  # () float, the loss for the final-window statistics (reference sample if noisy)
    wmask: jax.Array  # () bool, this step is a window checkpoint
    inactive: jax.Array  # () bool, the problem reports every unit inactive (False if it has no units)
    events: Any  # {event: () bool} of the problem's ``track``, or None
    direction: Any = None  # second-order step (params-shaped, already times -lr), else None
    tangent: Any = None  # the propagated (not yet renormalised) tangent ([outcome] lyapunov), else None


def tree_norm(t) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(t)))


def tree_absmax(t) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(t)]))


def all_finite(t) -> jax.Array:
    """() bool: every entry of every leaf is finite (no overflowing sum of squares)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(t)]))


def all_zero(t) -> jax.Array:
    """() bool: every entry of every leaf is exactly zero (no underflowing sum of squares)."""
    return jnp.all(jnp.stack([jnp.all(x == 0) for x in jax.tree_util.tree_leaves(t)]))


class Trajectory(NamedTuple):
    """Pure functions of one trajectory for a given static combination."""

    init: Callable  # (key, v, target, batch) -> TrajState
    advance: Callable  # (state, t, StepInput, v) -> TrajState
    win_start: int  # first step of the final window
    finish: Callable  # (state) -> dict of () results
    value_and_grad: Callable  # (params, batch, v) -> (loss, grad)
    direction: Callable | None = None  # second-order: (params, batch, v) -> (loss, grad, step); else None
    apply: Callable | None = None  # (params, opt_state, grad_or_step, v, lambda0) -> (params, opt_state, updates)
    lyapunov: bool = False


LAMBDA0_ITERS = 64  # power iterations for lambda0 (train.lr_mode = "sharpness")


def _dot(a, b) -> jax.Array:
    return sum(jnp.sum(x * y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _start_direction(t):
    """A fixed unit-norm tree like ``t`` (ones + 0.1 * index), the start of every power iteration."""
    u = jax.tree_util.tree_map(lambda x: jnp.ones_like(x) + 0.1 * jnp.arange(x.size, dtype=x.dtype).reshape(x.shape), t)
    n = jnp.sqrt(_dot(u, u))
    return jax.tree_util.tree_map(lambda x: x / n, u)


def sharpness(problem: Problem, params, batch, v, iters: int) -> jax.Array:
    """Top Hessian eigenvalue of ``problem.loss`` at ``params`` (one trajectory): ``iters`` power
    iterations on Hessian-vector products, then the Rayleigh quotient (its sign is kept)."""
    grad = lambda p: jax.grad(problem.loss)(p, batch, v)  # noqa: E731
    hvp = lambda u: jax.jvp(grad, (params,), (u,))[1]  # noqa: E731

    def unit(u):
        n = jnp.sqrt(_dot(u, u))
        return jax.tree_util.tree_map(lambda x: x / jnp.where(n > 0, n, 1.0), u)

    u = jax.lax.fori_loop(0, iters, lambda i, u: unit(hvp(u)), _start_direction(params))
    return _dot(u, hvp(u))


def lr_scale(lambda0: jax.Array) -> jax.Array:
    """1 / lambda0, or nan unless lambda0 > 0 and finite (train.lr_mode = "sharpness")."""
    ok = jnp.isfinite(lambda0) & (lambda0 > 0)
    return jnp.where(ok, 1.0 / jnp.where(ok, lambda0, 1.0), jnp.nan)


# --------------------------------------------------------------------------- Lyapunov exponent
def float_leaves(opt_state) -> list:
    """The floating-point leaves of an optimizer state (the ones a tangent vector has)."""
    return [x for x in jax.tree_util.tree_leaves(opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]


def with_float_leaves(opt_state, leaves: list):
    """``opt_state`` with its floating-point leaves replaced by ``leaves`` (in order)."""
    flat, tree = jax.tree_util.tree_flatten(opt_state)
    it = iter(leaves)
    return jax.tree_util.tree_unflatten(tree, [next(it) if jnp.issubdtype(x.dtype, jnp.floating) else x
                                               for x in flat])


def tangent_start(problem: Problem, params, opt_state):
    """The initial tangent: a fixed unit vector along the trained parameters (constants and optimizer
    state start with zero tangent)."""
    trained = {k: x for k, x in params.items() if k not in problem.constants}
    u = _start_direction(trained)
    tp = {k: u[k] if k in u else jnp.zeros_like(x) for k, x in params.items()}
    return tp, [jnp.zeros_like(x) for x in float_leaves(opt_state)]


def propagate(step_map: Callable, params, opt_state, tangent):
    """Push ``tangent`` through the training map once: ``step_map(params, opt_float_leaves) ->
    (params', opt_float_leaves')`` (``jax.jvp``; works batched or for one trajectory)."""
    _, out = jax.jvp(step_map, (params, float_leaves(opt_state)), tangent)
    return out


def renormalise(tangent, batched: bool):
    """(unit tangent, log of its norm): per trajectory (over all but the first axis) when ``batched``."""
    leaves = jax.tree_util.tree_leaves(tangent)
    if batched:
        sq = sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in leaves)
    else:
        sq = sum(jnp.sum(jnp.square(x)) for x in leaves)
    n = jnp.sqrt(sq)
    safe = jnp.where(n > 0, n, 1.0)
    scale = (lambda x: x / safe.reshape((-1,) + (1,) * (x.ndim - 1))) if batched else (lambda x: x / safe)
    return jax.tree_util.tree_map(scale, tangent), jnp.log(n)


# --------------------------------------------------------------------------- the trajectory
def make_trajectory(problem: Problem, optimizer: str, steps: int, th: Thresholds, dtype,
                    lr_mode: str = "absolute", *, events: tuple[EventSpec, ...] = (),
                    noisy: bool = False) -> Trajectory:
    """Build the trajectory functions (all arguments static: changing them recompiles).

    Steps are evaluated at t = 0..steps: the loss and gradient at t decide whether the run
    settles at t; if not, and t < steps, the optimizer takes a step. So ``steps`` updates
    are taken at most and the final loss is the loss of the final parameters.

    Second-order optimizers (``SECOND_ORDER``) bypass optax: the caller computes the step with
    ``Trajectory.direction`` and passes it in ``StepInput.direction``; a non-finite step (a singular
    Hessian, e.g. Newton's 0/0 on a dead ReLU) settles the run as ``nan`` at that step.
    ``events``: the spec's ``[events]``; ``noisy``: the window losses come from a reference sample.
    """
    win = max(1, int(round(th.window * steps)))
    win_start = max(0, steps - win)
    second = optimizer in SECOND_ORDER
    tail = min(int(problem.tail), steps + 1)
    relative = lr_mode == "sharpness"
    stops = tuple(e.name for e in events if e.stop)

    def opt(v):
        return optax.identity() if second else make_optimizer(optimizer, v)

    def init(key, v, target, batch=None):
        """Initial state; ``batch`` (the fixed data or reference sample) is needed for lr_mode = "sharpness"."""
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), problem.init(key, v))
        opt_state = opt(v).init(params)
        lam = (sharpness(problem, params, batch, v, LAMBDA0_ITERS).astype(dtype) if relative
               else jnp.ones((), dtype))
        z, i0, none = jnp.zeros((), dtype), jnp.int32(0), jnp.int32(-1)
        first = {n: none for n in problem.events + tuple(e.name for e in events)}
        return TrajState(
            params=params, opt_state=opt_state, code=jnp.int8(ALIVE), stop_step=jnp.int32(steps), loss0=z,
            target=jnp.asarray(target, dtype), last_loss=z, last_gnorm=z, min_loss=jnp.asarray(jnp.inf, dtype),
            max_loss=jnp.asarray(-jnp.inf, dtype), path_all=z, dead_count=i0, win_start=z, win_last=z,
            win_min=jnp.asarray(jnp.inf, dtype), win_max=jnp.asarray(-jnp.inf, dtype), path=z, step_norm=z,
            first=first, conv_count=i0, conv_first=none, conv_loss=z, tail_sum=z, tail_n=i0, lambda0=lam,
            tangent=tangent_start(problem, params, opt_state) if th.lyapunov else (), lyap_sum=z, lyap_n=i0)

    def apply(params, opt_state, g, v, lambda0):
        """The parameter update of one step: ``g`` is the gradient (first order) or the second-order step.
        Returns (new params, new optimizer state, the update)."""
        if second:
            updates, opt_state = g, opt_state
        else:
            updates, opt_state = opt(v).update(g, opt_state, params)
        if problem.update_scale is not None:
            scale = problem.update_scale(v)
            updates = {k: u * scale[k] if k in scale else u for k, u in updates.items()}
        if problem.constants:  # per-trajectory constants carried in params (e.g. drawn data weights): never move
            updates = {k: jnp.zeros_like(u) if k in problem.constants else u for k, u in updates.items()}
        if relative:
            scale = lr_scale(lambda0)
            updates = jax.tree_util.tree_map(lambda u: u * scale, updates)
        return optax.apply_updates(params, updates), opt_state, updates

    def spec_events(params) -> dict:
        out = {}
        for e in events:
            x = params[e.param]
            hit = x > e.level if e.above else x < e.level
            out[e.name] = jnp.all(hit) if e.over == "all" else jnp.any(hit)
        return out

    def advance(s: TrajState, t, x: StepInput, v) -> TrajState:
        """One step: classify at the current parameters, then (if still running) update them."""
        loss, wloss = x.loss, x.wloss
        alive = (s.code == ALIVE) & (t <= steps)
        running = alive if th.settle else (t <= steps)  # settle = false: trained to the end of the budget
        gnorm = tree_norm(x.grad)
        finite = jnp.isfinite(loss) & all_finite(x.grad)
        solved = jnp.asarray(True) if x.direction is None else all_finite(x.direction)
        loss0 = jnp.where(t == 0, loss, s.loss0)
        conv_now = loss <= s.target + th.loss_atol + th.loss_rtol * jnp.abs(s.target)
        conv_count = jnp.where(alive, jnp.where(conv_now, s.conv_count + 1, 0), s.conv_count).astype(jnp.int32)
        conv_first = jnp.where(alive, jnp.where(conv_now, jnp.where(s.conv_count == 0, t, s.conv_first), -1),
                               s.conv_first).astype(jnp.int32)
        conv_loss = jnp.where(alive & conv_now & (s.conv_count == 0), loss, s.conv_loss)
        # settle once the streak is long enough AND the loss has not grown over it (a run leaving an
        # unstable fixed point grows geometrically); a streak that lasts to the end of the budget counts
        conv = conv_now & (((conv_count >= th.converge_patience) & (loss <= conv_loss)) | (t == steps))
        zero = all_zero(x.grad)
        dead_count = jnp.where(alive & zero & ~conv_now, s.dead_count + 1, jnp.where(alive, 0, s.dead_count))
        bound = jnp.maximum(th.diverge_loss, th.diverge_factor * jnp.abs(loss0))
        div = (loss > bound) | (tree_absmax(s.params) > th.diverge_param)
        new = settle_code(th, finite=finite, diverged=div, converged=conv, unsolved=~solved & (t < steps),
                          dead=(dead_count >= th.dead_patience) & x.inactive)
        # statistics of the losses (the whole run, and the final window)
        last_loss = jnp.where(running, loss, s.last_loss)
        last_gnorm = jnp.where(running, gnorm, s.last_gnorm)
        min_loss = jnp.where(running, jnp.fmin(s.min_loss, loss), s.min_loss)
        max_loss, path_all = s.max_loss, s.path_all  # (only read by stop events)
        if stops:
            max_loss = jnp.where(alive, jnp.fmax(s.max_loss, loss), s.max_loss)
            path_all = jnp.where(alive & (t > 0), s.path_all + jnp.abs(loss - s.last_loss), s.path_all)
        in_win = alive & x.wmask & (t >= win_start)
        win_loss = jnp.where(in_win & (t == win_start), wloss, s.win_start)
        path = jnp.where(in_win & (t > win_start), s.path + jnp.abs(wloss - s.win_last), s.path)
        win_last = jnp.where(in_win, wloss, s.win_last)
        win_min = jnp.where(in_win, jnp.fmin(s.win_min, wloss), s.win_min)
        win_max = jnp.where(in_win, jnp.fmax(s.win_max, wloss), s.win_max)
        fired = {**({} if x.events is None else x.events), **spec_events(s.params)}
        first = {n: jnp.where(alive & fired[n] & (f < 0), t, f).astype(jnp.int32) for n, f in s.first.items()}
        if stops:  # an event with stop = true ends the run as if its budget ended here
            stopped = jnp.any(jnp.stack([fired[n] for n in stops]))
            inside = t >= win_start
            ended = survivor_code(th, loss_start=jnp.where(inside, win_loss, loss0), loss_end=loss,
                                  loss_min=jnp.where(inside, win_min, min_loss),
                                  loss_max=jnp.where(inside, win_max, max_loss),
                                  path=jnp.where(inside, path, path_all), step_norm=s.step_norm,
                                  param_norm=tree_norm(s.params), target=s.target, noisy=noisy)
            new = jnp.where((new == ALIVE) & stopped & (t < steps), ended.astype(jnp.int32), new)
        settle = alive & (new != ALIVE)
        code = jnp.where(settle, new, s.code).astype(jnp.int8)
        stop_step = jnp.where(settle, t, s.stop_step).astype(jnp.int32)
        window_tail = (t >= steps - tail) & (t < steps) if problem.tail_pre else (t > steps - tail)
        in_tail = running & window_tail
        tail_sum = jnp.where(in_tail, s.tail_sum + jnp.where(jnp.isfinite(loss), loss, jnp.inf), s.tail_sum)
        tail_n = jnp.where(in_tail, s.tail_n + 1, s.tail_n).astype(jnp.int32)
        # the optimizer step, only for runs still running and with budget left
        move = running & (t < steps) & ((code == ALIVE) if th.settle else True)
        new_params, opt_state, updates = apply(s.params, s.opt_state, x.grad if x.direction is None else x.direction,
                                               v, s.lambda0)
        step_norm = jnp.where(move, tree_norm(updates), s.step_norm)
        keep = lambda a, b: jax.tree_util.tree_map(lambda p, q: jnp.where(move, p, q), a, b)  # noqa: E731
        tangent, lyap_sum, lyap_n = s.tangent, s.lyap_sum, s.lyap_n
        if th.lyapunov:
            unit, growth = renormalise(x.tangent, batched=False)
            tangent = keep(unit, s.tangent)
            lyap_sum = jnp.where(move, s.lyap_sum + growth.astype(s.lyap_sum.dtype), s.lyap_sum)
            lyap_n = jnp.where(move, s.lyap_n + 1, s.lyap_n).astype(jnp.int32)
        return s._replace(
            params=keep(new_params, s.params), opt_state=keep(opt_state, s.opt_state), code=code, stop_step=stop_step,
            loss0=loss0, last_loss=last_loss, last_gnorm=last_gnorm, min_loss=min_loss, max_loss=max_loss,
            path_all=path_all, dead_count=dead_count, win_start=win_loss, win_last=win_last, win_min=win_min,
            win_max=win_max, path=path, step_norm=step_norm, first=first, conv_count=conv_count,
            conv_first=conv_first, conv_loss=conv_loss, tail_sum=tail_sum, tail_n=tail_n, tangent=tangent,
            lyap_sum=lyap_sum, lyap_n=lyap_n)

    def finish(s: TrajState) -> dict:
        survivor = survivor_code(th, loss_start=s.win_start, loss_end=s.win_last, loss_min=s.win_min,
                                 loss_max=s.win_max, path=s.path, step_norm=s.step_norm,
                                 param_norm=tree_norm(s.params), target=s.target, noisy=noisy)
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
        if th.lyapunov:
            n = s.lyap_n.astype(s.lyap_sum.dtype)
            out["lyapunov"] = jnp.where(s.lyap_n > 0, s.lyap_sum / jnp.where(s.lyap_n > 0, n, 1.0), jnp.nan)
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
    return Trajectory(init=init, advance=advance, win_start=win_start, finish=finish, value_and_grad=value_and_grad,
                      direction=direction, apply=apply, lyapunov=th.lyapunov)


def step_map(traj: Trajectory, grad_fn: Callable, opt_state, v, lambda0) -> Callable:
    """The training map of one step as a function of (params, optimizer float leaves), for ``propagate``.
    ``grad_fn(params)`` gives the gradient (first order) or the second-order step; works batched when
    ``grad_fn`` and ``traj.apply`` (vmapped by the caller) are."""

    def f(params, leaves):
        new_params, new_state, _ = traj.apply(params, with_float_leaves(opt_state, leaves), grad_fn(params), v, lambda0)
        return new_params, float_leaves(new_state)

    return f


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
            g_of = lambda p: traj.direction(p, batch, v)[2]  # noqa: E731
        else:
            (loss, grad), direction = traj.value_and_grad(s.params, batch, v), None
            g_of = lambda p: traj.value_and_grad(p, batch, v)[1]  # noqa: E731
        inactive = jnp.asarray(False) if problem.inactive is None else problem.inactive(s.params, batch, v)
        events = None if problem.track is None else problem.track(s.params, batch, v)
        tangent = None
        if traj.lyapunov:
            tangent = propagate(step_map(traj, g_of, s.opt_state, v, s.lambda0), s.params, s.opt_state, s.tangent)
        x = StepInput(loss=loss, grad=grad, wloss=loss, wmask=jnp.asarray(True), inactive=inactive, events=events,
                      direction=direction, tangent=tangent)
        return traj.advance(s, t, x, v)

    s = jax.lax.fori_loop(0, steps + 1, body, s)
    out = traj.finish(s)
    if data is not None:  # the engine's metrics, on the fixed data
        out.update(problem.metrics(s.params, data, v))
    return out
