"""Optimizer registry: name -> optax factory taking traced hyperparameters.

Every hyperparameter is a traced value (a per-trajectory scalar under ``vmap``), so a
sweep over lr, momentum, b1, b2, eps or weight_decay is one compilation. An option given
once under ``[train]`` applies to every optimizer that has it and is ignored by the rest.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import optax


class OptimizerDef(NamedTuple):
    """A registered optimizer: ``make(hp) -> optax.GradientTransformation``."""

    make: Callable[[dict], optax.GradientTransformation]
    hyperparams: tuple[str, ...]  # names it reads from ``hp`` (besides lr)
    doc: str


# Defaults for every optimizer hyperparameter (optax's own defaults).
HYPER_DEFAULTS: dict[str, float] = {
    "lr": 0.01,
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
    "weight_decay": 1e-4,
    "decay": 0.9,
    "rho": 0.9,
    "initial_accumulator_value": 0.1,
    "damping": 0.0,
}

OPTIMIZERS: dict[str, OptimizerDef] = {
    "sgd": OptimizerDef(lambda hp: optax.sgd(hp["lr"]), (), "plain (stochastic) gradient descent"),
    "momentum": OptimizerDef(lambda hp: optax.sgd(hp["lr"], momentum=hp["momentum"]), ("momentum",),
                             "heavy-ball momentum: v = m*v + g; p -= lr*v"),
    "nesterov": OptimizerDef(lambda hp: optax.sgd(hp["lr"], momentum=hp["momentum"], nesterov=True),
                             ("momentum",), "Nesterov momentum"),
    "adam": OptimizerDef(lambda hp: optax.adam(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]),
                         ("b1", "b2", "eps"), "Adam (Kingma & Ba)"),
    "amsgrad": OptimizerDef(lambda hp: optax.amsgrad(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]),
                            ("b1", "b2", "eps"), "AMSGrad (Reddi et al.)"),
    "adamw": OptimizerDef(lambda hp: optax.adamw(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"],
                                                 weight_decay=hp["weight_decay"]),
                          ("b1", "b2", "eps", "weight_decay"), "Adam with decoupled weight decay"),
    "rmsprop": OptimizerDef(lambda hp: optax.rmsprop(hp["lr"], decay=hp["decay"], eps=hp["eps"]),
                            ("decay", "eps"), "RMSProp"),
    "adagrad": OptimizerDef(lambda hp: optax.adagrad(hp["lr"], initial_accumulator_value=hp["initial_accumulator_value"],
                                                     eps=hp["eps"]),
                            ("initial_accumulator_value", "eps"), "Adagrad"),
    "adadelta": OptimizerDef(lambda hp: optax.adadelta(hp["lr"], rho=hp["rho"], eps=hp["eps"]),
                             ("rho", "eps"), "Adadelta (use lr=1.0 for the original method)"),
}

SECOND_ORDER: dict[str, str] = {
    "newton": "exact Newton: p -= lr * (H + damping*I)^-1 g (damping=0: undamped)",
    "gauss_newton": "Gauss-Newton for least squares: p -= lr * (J^T J + damping*I)^-1 J^T r",
    "levenberg_marquardt": "Levenberg-Marquardt: Gauss-Newton with damping*diag(J^T J) added",
}
"""Second-order methods, implemented in ``second_order.py`` (they need the Hessian or Jacobian); ``lr`` and
``damping`` are their traced hyperparameters. Gauss-Newton and Levenberg-Marquardt need a least-squares problem."""

ALL_OPTIMIZERS = tuple(OPTIMIZERS) + tuple(SECOND_ORDER)

LR_DEFAULTS: dict[str, float] = {name: 1.0 for name in SECOND_ORDER}
"""The learning rate an optimizer uses when the spec gives none (``train.lr`` unset and not an axis): 1 for the
second-order methods (lr = 1 is the full Newton / Gauss-Newton step), ``HYPER_DEFAULTS["lr"]`` for the rest."""


def default_lr(name: str) -> float:
    """The learning rate of optimizer ``name`` when the spec gives none (``LR_DEFAULTS``, else 0.01)."""
    return LR_DEFAULTS.get(name, HYPER_DEFAULTS["lr"])


def make_optimizer(name: str, hp: dict) -> optax.GradientTransformation:
    """Build the optax transformation ``name`` from traced hyperparameters ``hp`` (name -> scalar)."""
    return OPTIMIZERS[name].make(hp)
