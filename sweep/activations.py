"""Activation registry: name -> pure function ``f(z, alpha)``.

``z`` is any float array; ``alpha`` is a traced scalar parameter (the negative slope of
leaky_relu / prelu, the scale of elu), ignored by activations that have none. The
derivative of the ReLU family at its kink is a static choice, ``relu_grad_at_zero``:
0 (jax.nn.relu, PyTorch, TensorFlow), 0.5 (what ``jnp.maximum(z, 0)`` gives) or 1.
It is implemented with a custom JVP whose own derivative is zero, so second-order
optimizers see ReLU's exact zero curvature.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

GRAD_AT_ZERO_CHOICES = (0.0, 0.5, 1.0)


class Activation(NamedTuple):
    """A registered activation."""

    make: Callable[[float], Callable]  # relu_grad_at_zero -> f(z, alpha)
    doc: str
    alpha_default: float | None = None  # None: has no alpha parameter
    kinked: bool = False  # member of the ReLU family (relu_grad_at_zero applies)


def _piecewise_linear(grad_at_zero: float):
    """f(z, slope_left) = z for z > 0, slope_left*z for z < 0; f'(0) interpolates the one-sided slopes.

    ``slope_left`` gets a tangent only when it is trained (prelu): a constant slope costs nothing in the
    gradient (symbolic zeros are skipped)."""

    @jax.custom_jvp
    def f(z, left):
        return jnp.where(z > 0, z, left * z)

    def f_jvp(primals, tangents):
        z, left = primals
        dz, dleft = tangents
        out = f(z, left)
        if type(dz) is SymbolicZero:
            dz = jnp.zeros_like(z)
        slope_at_zero = (1.0 - grad_at_zero) * left + grad_at_zero
        t = jnp.where(z > 0, dz, jnp.where(z < 0, left, slope_at_zero) * dz)
        if type(dleft) is not SymbolicZero:
            t = t + jnp.where(z > 0, 0.0, z) * dleft
        return out, t.astype(z.dtype)

    f.defjvp(f_jvp, symbolic_zeros=True)
    return f


def _relu_only(grad_at_zero: float):
    """max(z, 0) with derivative ``grad_at_zero`` at 0: one select in the gradient (two when it is not 0)."""

    @jax.custom_jvp
    def f(z):
        return jnp.where(z > 0, z, 0.0).astype(z.dtype)

    @f.defjvp
    def f_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        zero = jnp.zeros_like(dz)
        if grad_at_zero == 0.0:
            t = jnp.where(z > 0, dz, zero)
        else:
            t = jnp.where(z > 0, dz, jnp.where(z == 0, grad_at_zero * dz, zero))
        return f(z), t

    return f


def _relu(g0):
    r = _relu_only(g0)
    return lambda z, alpha: r(jnp.asarray(z))


def _leaky(g0):
    pl = _piecewise_linear(g0)
    return lambda z, alpha: pl(z, jnp.broadcast_to(jnp.asarray(alpha, z.dtype), z.shape))


def _relu6(g0):
    r = _relu_only(g0)
    return lambda z, alpha: jnp.minimum(r(jnp.asarray(z)), 6.0)


def _maxout(g0):
    """Max over the k pieces on the last axis of ``z``; the gradient goes to the first maximal piece."""

    def f(z, alpha):
        z = jnp.atleast_1d(z)
        i = jnp.argmax(z, axis=-1)
        return jnp.take_along_axis(z, i[..., None], axis=-1)[..., 0]

    return f


def _plain(fn):
    return lambda g0: (lambda z, alpha: fn(z))


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(_relu, "max(z, 0)", kinked=True),
    "leaky_relu": Activation(_leaky, "z if z > 0 else alpha*z (alpha default 0.01)", 0.01, kinked=True),
    "prelu": Activation(_leaky, "leaky ReLU whose alpha is a trained parameter (problems that support it)", 0.25, kinked=True),
    "relu6": Activation(_relu6, "min(max(z, 0), 6)", kinked=True),
    "abs": Activation(_plain(jnp.abs), "|z| (absolute value rectification)"),
    "elu": Activation(lambda g0: (lambda z, alpha: jax.nn.elu(z, alpha)), "z if z > 0 else alpha*(exp(z)-1) (alpha default 1)", 1.0),
    "selu": Activation(_plain(jax.nn.selu), "scaled ELU (Klambauer et al.)"),
    "gelu": Activation(_plain(lambda z: jax.nn.gelu(z, approximate=False)), "z * Phi(z), exact"),
    "silu": Activation(_plain(jax.nn.silu), "z * sigmoid(z) (swish)"),
    "swish": Activation(_plain(jax.nn.silu), "alias of silu"),
    "softplus": Activation(_plain(jax.nn.softplus), "log(1 + exp(z))"),
    "sigmoid": Activation(_plain(jax.nn.sigmoid), "1 / (1 + exp(-z))"),
    "tanh": Activation(_plain(jnp.tanh), "tanh(z)"),
    "linear": Activation(_plain(lambda z: z), "identity"),
    "maxout": Activation(_maxout, "max over k linear pieces (a layer: z holds the pieces on its last axis; "
                         "problems that support it give each unit k pieces; ties go to the first piece)"),
}

LAYER_ACTIVATIONS = ("maxout", "prelu")
"""Activations that are layers with their own parameters (maxout's pieces, prelu's learnable alpha), supported
only by problems that say so; every other activation is elementwise ``f(z, alpha)``."""
ELEMENTWISE = tuple(n for n in ACTIVATIONS if n not in LAYER_ACTIVATIONS)


def get_activation(name: str, relu_grad_at_zero: float = 0.0) -> Callable:
    """Return ``f(z, alpha)`` for a registered activation (both arguments arrays/scalars)."""
    return ACTIVATIONS[name].make(float(relu_grad_at_zero))
