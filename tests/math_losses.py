"""User losses for tests of problem = "function" (importable as math_losses:<name>)."""
import jax.numpy as jnp


def sqrt_loss(x):
    return jnp.sqrt(x)


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def bowl(x, y):
    return 0.5 * (x ** 2 + 4 * y ** 2)


def shifted(x, c=0.0):
    return 0.5 * (x - c) ** 2


def with_eps(x, eps=0.0):
    return 0.5 * x ** 2 + eps
