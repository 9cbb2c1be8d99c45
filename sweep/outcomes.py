"""Outcome codes and every classification rule: how one training run ended.

Every trajectory gets exactly one code (int8). Codes and their one-line meanings are
stored in result files as CF ``flag_values`` / ``flag_meanings`` attributes. The two rules
live here and nowhere else: ``settle_code`` (at every step: does the run end now?) and
``survivor_code`` (at the end of the budget: how did a run that never settled end?). Both are
pure ``jnp`` (``where``/``select``), vmap-safe and never raise.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

import jax.numpy as jnp

ALIVE = -1  # code of a trajectory that has not settled yet


class Outcome(enum.IntEnum):
    """The seven ways a run can end (values are what is stored in files)."""

    CONVERGED = 0
    STUCK = 1
    DEAD = 2
    OSCILLATING = 3
    DIVERGED = 4
    NAN = 5
    UNFINISHED = 6


MESSAGES: dict[Outcome, str] = {
    Outcome.CONVERGED: "reached the problem's target loss within tolerance",
    Outcome.STUCK: "stationary above the target: vanishing gradient or a bad local minimum",
    Outcome.DEAD: "exactly zero gradient: every unit inactive on all data",
    Outcome.OSCILLATING: "bounded, not stationary, not improving (2-cycles, chaos)",
    Outcome.DIVERGED: "loss or a parameter went past its bound",
    Outcome.NAN: "a non-finite value appeared (loss, gradient or parameter)",
    Outcome.UNFINISHED: "still improving when the step budget ran out",
}

# Colours used by every figure, so a code looks the same everywhere.
COLORS: dict[Outcome, str] = {
    Outcome.CONVERGED: "#2c7fb8",
    Outcome.STUCK: "#d95f02",
    Outcome.DEAD: "#252525",
    Outcome.OSCILLATING: "#7570b3",
    Outcome.DIVERGED: "#e7298a",
    Outcome.NAN: "#b8b8b8",
    Outcome.UNFINISHED: "#fdd835",
}

SETTLED = (Outcome.CONVERGED, Outcome.DEAD, Outcome.DIVERGED, Outcome.NAN)
"""Codes that end a trajectory before its step budget (``settle_code``); the others are given at the end."""

FLAG_VALUES = [int(o) for o in Outcome]
FLAG_MEANINGS = " ".join(o.name.lower() for o in Outcome)


def outcome_attrs() -> dict:
    """CF attributes for the ``outcome`` variable."""
    return {
        "long_name": "how the training run ended",
        "flag_values": FLAG_VALUES,
        "flag_meanings": FLAG_MEANINGS,
        "flag_descriptions": "; ".join(f"{o.name.lower()}: {MESSAGES[o]}" for o in Outcome),
    }


class Thresholds(NamedTuple):
    """Classification thresholds and switches (static, stored in the result file; ``RULES`` says how
    each is used). Infinite ``diverge_*`` values switch that test off."""

    loss_atol: float = 1e-6
    loss_rtol: float = 1e-4
    converge_patience: int = 10
    diverge_loss: float = 1e8
    diverge_factor: float = 1e6
    diverge_param: float = 1e6
    dead_patience: int = 10
    window: float = 0.1
    improve_rtol: float = 1e-3
    osc_factor: float = 2.0
    osc_rtol: float = 1e-4
    move_rtol: float = 1e-3
    noise_rtol: float = 1e-2
    sharpness_iters: int = 0  # > 0: power iterations for the final top Hessian eigenvalue (``sharpness``)
    settle: bool = True  # False: every run trains to the end of its budget (codes unchanged)
    lyapunov: bool = False  # True: the finite-time Lyapunov exponent of the training map (``lyapunov``)


RULES = """\
The loss and gradient are evaluated at steps t = 0 .. steps; a run settles at the first step
where (in this order) the loss or gradient is non-finite (`nan`); the loss exceeds
max(`diverge_loss`, `diverge_factor` x |initial loss|) or a parameter exceeds `diverge_param`
(`diverged`); the loss has stayed within `loss_atol + loss_rtol*|target|` of the target for
`converge_patience` consecutive steps without growing over that streak, or to the end of the
budget (`converged`; `converge_step` is the streak's first step, so a run that touches the
tolerance near an unstable fixed point and grows away again is not converged); a second-order
step could not be solved (`nan`); or every entry of the gradient has been exactly zero for
`dead_patience` steps while the problem reports every unit inactive on the batch (`dead`; a
problem without units, or an exactly zero gradient with an active unit, is never `dead`: such a
stationary point ends `stuck`). A settled run is frozen: its parameters are those of that step,
and it never affects another run. With `[outcome] settle = false` every run trains to the end
of its budget: the codes are the same, the final values are those of the last step.

Runs alive at the end are judged on the loss over the final `window` fraction of steps (with
noisy batches, fresh or minibatch, the loss on a fixed reference sample at checkpoints). With
net = fall of the loss over the window, path = sum of |changes| and range = max - min over it:
the run is `oscillating` if the loss went up and down (path > `osc_factor` x |net| +
`osc_rtol` x loss; with noisy batches also range > `noise_rtol` x loss, so batch noise is not
read as oscillation); otherwise `unfinished` if it fell by more than `improve_rtol` of its excess
over the target and ended within net/2 of the window's minimum; otherwise `oscillating` if, with
deterministic data, the last update moved the parameters by more than `move_rtol` x (1 + |params|)
(a 2-cycle at constant loss); otherwise `stuck`. Chaos, whose loss at the two ends of the window
is a coin flip, is therefore `oscillating`, and a slow monotone descent `unfinished`. An `[events]`
entry with `stop = true` ends a run when it fires (unless a settling rule applies at that step):
it is judged like a survivor whose budget ended there, on the final window if it had begun,
otherwise on the whole run so far."""


def settle_code(th: Thresholds, *, finite, diverged, converged, unsolved, dead):
    """Code of a run at one step: a ``SETTLED`` code, or ``ALIVE`` (pure jnp, vmap-safe).

    Args (all () bool): finite: loss and gradient finite; diverged: past a divergence bound;
      converged: the convergence streak is complete; unsolved: a second-order step failed (budget left);
      dead: the exact-zero-gradient streak is complete and the problem reports every unit inactive.
    Returns:
      () int32: the code (precedence: nan, diverged, converged, nan of a failed solve, dead).
    """
    code = jnp.where(dead, int(Outcome.DEAD), ALIVE)
    code = jnp.where(unsolved, int(Outcome.NAN), code)
    code = jnp.where(converged, int(Outcome.CONVERGED), code)
    code = jnp.where(diverged, int(Outcome.DIVERGED), code)
    return jnp.where(finite, code, int(Outcome.NAN)).astype(jnp.int32)


def survivor_code(th: Thresholds, *, loss_start, loss_end, loss_min, loss_max, path, step_norm, param_norm,
                  target, noisy: bool):
    """Code for a run still alive when the step budget ran out (pure jnp, vmap-safe).

    Args:
      loss_start, loss_end: () float, loss at the start and the end of the final window;
      loss_min, loss_max: its extremes over the window; path: sum of |loss change| over the window;
      step_norm: norm of the last update; param_norm: norm of the parameters; target: the target loss;
      noisy: (static) the losses come from a reference sample of a noisy-batch run.
    Returns:
      () int8: UNFINISHED, OSCILLATING or STUCK.
    """
    net = loss_start - loss_end
    scale = jnp.abs(loss_end)
    excess = jnp.maximum(loss_start - target, 1e-30)
    wobbling = path > th.osc_factor * jnp.abs(net) + th.osc_rtol * scale
    if noisy:
        wobbling = wobbling & (loss_max - loss_min > th.noise_rtol * jnp.maximum(scale, jnp.abs(loss_max)))
    improving = (net > th.improve_rtol * excess) & (loss_end - loss_min <= 0.5 * net)
    moving = (step_norm > th.move_rtol * (1.0 + param_norm)) if not noisy else jnp.asarray(False)
    code = jnp.where(wobbling, int(Outcome.OSCILLATING),
                     jnp.where(improving, int(Outcome.UNFINISHED),
                               jnp.where(moving, int(Outcome.OSCILLATING), int(Outcome.STUCK))))
    return code.astype(jnp.int8)


def rules_markdown() -> str:
    """The README's outcome table and rules (generated: ``python -m sweep.docs``)."""
    rows = ["| code | name | meaning |", "|---|---|---|"]
    rows += [f"| {int(o)} | `{o.name.lower()}` | {MESSAGES[o]} |" for o in Outcome]
    return "\n".join(rows) + "\n\n" + RULES
