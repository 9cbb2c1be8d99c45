"""Outcome codes: how one training run ended, and the on-device classifier.

Every trajectory gets exactly one code (int8). Codes and their one-line meanings are
stored in result files as CF ``flag_values`` / ``flag_meanings`` attributes.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

import jax.numpy as jnp


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
"""Codes that end a trajectory before its step budget (it is frozen from then on)."""

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
    """Classification thresholds (static floats, stored in the result file; see README).

    ``converged``: the loss stayed <= target + loss_atol + loss_rtol*|target| for at least
    ``converge_patience`` consecutive steps and is no higher than at the start of that streak (or it
    stayed from some step to the end of the budget); a run that touches the tolerance near an
    unstable fixed point and grows away again is not converged. ``converge_step`` is the streak's start.
    ``diverged``: loss > max(diverge_loss, diverge_factor*|initial loss|) or any |parameter| >
    diverge_param. ``dead``: gradient exactly zero for ``dead_patience`` consecutive steps while
    above the target. Runs still alive at the end are judged on the last ``window`` fraction of
    the steps: ``unfinished`` if the loss fell by more than ``improve_rtol`` of its excess over the
    target; else ``oscillating`` if the loss went up and down (path length over the window greater
    than ``osc_factor`` x the net change + ``osc_rtol`` x the loss) or the last step moved the
    parameters by more than ``move_rtol`` x (1 + |params|); else ``stuck``.
    """

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
    sharpness_iters: int = 0  # > 0: power iterations for the final top Hessian eigenvalue (``sharpness``)


def classify_survivor(th: Thresholds, *, loss_start, loss_end, path, step_norm, param_norm, target):
    """Code for a run still alive when the step budget ran out (pure jnp, vmap-safe).

    Args:
      loss_start: () float, loss at the start of the final window; loss_end: the last loss.
      path: sum of |loss change| over the final window; step_norm: norm of the last update;
      param_norm: norm of the parameters; target: the problem's target loss.
    Returns:
      () int8: UNFINISHED, OSCILLATING or STUCK.
    """
    net = loss_start - loss_end
    excess = jnp.maximum(loss_start - target, 1e-30)
    improving = net > th.improve_rtol * excess
    wobbling = path > th.osc_factor * jnp.abs(net) + th.osc_rtol * jnp.abs(loss_end)
    moving = step_norm > th.move_rtol * (1.0 + param_norm)
    code = jnp.where(improving, int(Outcome.UNFINISHED),
                     jnp.where(wobbling | moving, int(Outcome.OSCILLATING), int(Outcome.STUCK)))
    return code.astype(jnp.int8)
