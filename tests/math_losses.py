"""User losses for tests of problem = "function" (importable as math_losses:<name>)."""
import jax.numpy as jnp


def sqrt_loss(x):
    return jnp.sqrt(x)


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def bowl(x, y):
    return 0.5 * (x ** 2 + 4 * y ** 2)


def half_square(x):
    return 0.5 * x ** 2


def uv_loss(u, v):
    """The two-parameter u*v model: (u*v - 1)^2 / 2 (minima on the hyperbola u*v = 1, a saddle at 0)."""
    return 0.5 * (u * v - 1.0) ** 2


def shifted(x, c=0.0):
    return 0.5 * (x - c) ** 2


def with_eps(x, eps=0.0):
    return 0.5 * x ** 2 + eps
