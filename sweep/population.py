"""Exact population expectations over a 1-D input distribution (the neuron's ``data.population``).

With ``[problem] data = { population = true }`` the neuron trains on the EXPECTED squared error
E[r(x)^2], x ~ N(mean, std^2) or U[lo, hi], instead of a sample mean; r(x) = student(x) -
teacher(x). The support is split at r's kinks: the student's (x where w*x + b meets an
activation kink, maxout's crossings; they move with the parameters) and the teacher's (static).
Which method is used for which activations:

- **closed form**, when the student and the teacher are both piecewise linear (relu,
  leaky_relu, prelu, relu6, abs, linear, maxout; with bias / out_weight): between consecutive
  kinks r is affine. Normal: with u = (x - mean)/std, r = alpha + beta*u on [a, b] contributes
  ``alpha^2 T0 + 2 alpha beta T1 + beta^2 T2``, the truncated-normal moments
  ``T0 = Phi(b) - Phi(a)``, ``T1 = phi(a) - phi(b)``, ``T2 = T0 + a phi(a) - b phi(b)`` (beyond
  +-40 std there is less than 1e-340 of mass: dropped). Uniform: 2-point Gauss-Legendre on each
  piece, exact for the quadratic r^2. alpha and beta are r's value and u-derivative
  (``jax.jvp``) at the piece's midpoint, where r is affine.
- **composite Gauss-Legendre** otherwise (a smooth student or teacher: tanh, sigmoid, gelu, silu,
  softplus, elu, selu): ``GL_ORDER`` nodes on every interval between consecutive split points:
  the range (normal: mean +- ``RANGE_STD`` std in unit-std steps; uniform: [lo, hi] in
  ``UNIFORM_STEPS``), the kinks, and a geometric ladder ``c +- s * LADDER`` around each smooth
  centre c (the student's -b/w with s = 1/|w|; the teacher's 0 with s = 1), so that a transition
  of width ~1/|w| is resolved at any w. Measured in float64 against mpmath (30 digits): relative
  error <= 1e-14 over every student x teacher pair of the registry (bias and out_weight, both
  distributions, non-default mean/std and lo/hi, |w| from 1e-3 to 1e4); 3.5e-13 with 8 nodes,
  1e-9 with 6. tests/test_population.py checks 1e-10 against an independent Simpson rule.

Derivatives: ``jax.grad`` / ``jax.hessian`` of the expectation. Through the kinks the loss is
differentiated as written: the boundary terms of moving pieces cancel (r is continuous) and a
piece's affine form does not depend on where it is evaluated, so the gradient is exact and the
Hessian gets the terms of the moving kinks. The ladder points only refine the quadrature (r is
smooth across them) and are held fixed (``stop_gradient``), which keeps the backward pass cheap.
The split points are merged (``_merge``), not sorted: XLA's CPU sort is ~10x slower.
Everything here is pure ``jnp`` for ONE trajectory (the engine vmaps it).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

PIECEWISE_LINEAR = frozenset({"relu", "leaky_relu", "prelu", "relu6", "abs", "linear", "maxout"})
SMOOTH_WITH_KINK = frozenset({"elu", "selu"})  # smooth activations whose derivative jumps at 0
KINKS = {"relu6": (0.0, 6.0), "linear": ()}  # pre-activations where an activation is split; others: (0,)
TAIL_STD = 40.0  # closed form: pieces beyond mean +- 40 std are dropped (phi(40) underflows float64)
RANGE_STD = 12.0  # quadrature: the normal is truncated to mean +- 12 std (mass outside < 2e-32)
GL_ORDER = 10  # quadrature: Gauss-Legendre nodes per interval
UNIFORM_STEPS = 8  # quadrature: [lo, hi] is first cut into this many equal intervals
LADDER = 2.0 ** np.arange(-3, 13)  # quadrature: split points c +- s * LADDER around each smooth centre
NODES_BOUND = GL_ORDER * (int(2 * RANGE_STD) + 4 * len(LADDER) + 8)  # about the most nodes a neuron's rule uses


def kinks(activation: str) -> tuple[float, ...]:
    """Pre-activation values where ``activation`` is split: its kinks (piecewise linear) or its centre."""
    return KINKS.get(activation, (0.0,))


def _phi(u):
    return jnp.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


def _mass(a, b):
    """Phi(b) - Phi(a) for a <= b, accurate in both tails."""
    return jnp.where(a > 0, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))


def _merge(fixed, moving):
    """The sorted union of two sorted arrays, (n,) and (m,) -> (n + m,) (``fixed`` may be static).

    A merge, not a sort: XLA's CPU sort is ~10x slower than these searchsorted / cumsum / gathers."""
    a = jnp.asarray(fixed, moving.dtype)
    if moving.shape[0] == 0:
        return a
    n, m = a.shape[0], moving.shape[0]
    pos = jnp.arange(m) + jnp.searchsorted(a, moving, side="right")  # slots of the moving points
    taken = jnp.zeros(n + m, bool).at[pos].set(True)
    before = jnp.cumsum(taken)  # moving points in slots 0..k
    k = jnp.arange(n + m)
    return jnp.where(taken, moving[jnp.clip(before - 1, 0, m - 1)], a[jnp.clip(k - before, 0, n - 1)])


def _within(x, lo: float, hi: float):
    """x clipped to [lo, hi], nan (no such point) sent to hi: keeps a sorted array sorted (nan sort last).

    A point exactly at an end is already clipped: it has no derivative there (a kink on the edge of
    the support moves nothing, whichever way it goes), unlike ``jnp.clip``, which splits a tie."""
    return jnp.where(jnp.isnan(x) | (x >= hi), hi, jnp.where(x <= lo, lo, x))


def _gauss_legendre(edges, order: int):
    """Nodes and weights of ``order``-point Gauss-Legendre on each interval: (N,), (N,), N = order*(E-1)."""
    t, g = np.polynomial.legendre.leggauss(order)
    a, b = edges[:-1, None], edges[1:, None]
    h = 0.5 * (b - a)
    x = 0.5 * (a + b) + h * jnp.asarray(t, edges.dtype)[None, :]
    return x.ravel(), (h * jnp.asarray(g, edges.dtype)[None, :]).ravel()


def _fixed_points(lo: float, hi: float, inner) -> np.ndarray:
    """lo, hi and the points of ``inner`` strictly between them, sorted and distinct."""
    inner = np.asarray(list(inner), float)
    return np.unique(np.concatenate([[lo, hi], inner[(inner > lo) & (inner < hi)]]))


class Population(NamedTuple):
    """Expectations over the input distribution of one static ``data`` table.

    The residual's split points come in three parts: the static ones given to :func:`make_population`
    (the teacher's kinks and ladder), and two traced sorted arrays of x (nan: none; nan sorts last):
    ``kinks``, where r really has a kink (the student's; they move with the parameters and the
    loss is differentiated through them, which second derivatives need), and ``ladder``, split
    points that only refine the quadrature (the geometric ladder around a smooth student's centre;
    held fixed under differentiation: r is smooth across them, so nothing depends on where they are).

    mean_square(r, kinks, ladder=None) -> () float: E[r(x)^2]; ``r`` maps an array of x to residuals
      elementwise.
    nodes(kinks, ladder=None) -> ((N,) x, (N,) weights): sum weights * f(x) ~ E[f(x)] for f smooth
      between the split points (the uniform closed-form case: 2 nodes per piece, exact for piecewise
      cubics; otherwise the composite rule of ``mean_square``).
    prob(lo, hi) -> () float: P(lo < x < hi) (lo <= hi; either may be infinite).
    support: (lo, hi) of the uniform, or None for the normal.
    """

    mean_square: Callable
    nodes: Callable
    prob: Callable
    support: tuple[float, float] | None


def make_population(data: dict, exact: bool, fixed=(), fixed_centres=()) -> Population:
    """The expectations of the ``data`` table (static: dist, mean/std or lo/hi).

    Args:
      exact: every activation involved is piecewise linear: the closed form is used
        (otherwise composite Gauss-Legendre; see the module docstring).
      fixed: static split points in x (the teacher's kinks).
      fixed_centres: static (c, s) centres of smooth transitions (the teacher's), each given a ladder.
    """
    normal = data["dist"] == "normal"
    mean, std = float(data["mean"]), float(data["std"])
    lo, hi = float(data["lo"]), float(data["hi"])
    ladders = [c + s * np.concatenate([-LADDER, LADDER]) for c, s in fixed_centres]
    fixed = np.concatenate([np.asarray(fixed, float)] + ladders)
    if normal:  # quadrature in u = (x - mean) / std on [-RANGE_STD, RANGE_STD], unit steps
        q_lo, q_hi = -RANGE_STD, RANGE_STD
        q_fixed = _fixed_points(q_lo, q_hi, np.concatenate([np.arange(q_lo, q_hi + 1.0), (fixed - mean) / std]))
        c_fixed = _fixed_points(-TAIL_STD, TAIL_STD, (fixed - mean) / std)
    else:  # in x on [lo, hi]
        q_lo, q_hi = lo, hi
        q_fixed = _fixed_points(lo, hi, np.concatenate([np.linspace(lo, hi, UNIFORM_STEPS + 1), fixed]))
        c_fixed = _fixed_points(lo, hi, fixed)
    to_u = (lambda x: (x - mean) / std) if normal else (lambda x: x)
    to_x = (lambda u: mean + std * u) if normal else (lambda u: u)

    def quad_nodes(kinks, ladder):
        grid = q_fixed
        if ladder is not None:  # merged without a gradient: r is smooth across these points
            grid = jax.lax.stop_gradient(_merge(grid, _within(to_u(ladder), q_lo, q_hi)))
        u, w = _gauss_legendre(_merge(grid, _within(to_u(kinks), q_lo, q_hi)), GL_ORDER)
        return to_x(u), w * (_phi(u) if normal else 1.0 / (hi - lo))

    def uniform_pieces(kinks):
        """2-point Gauss-Legendre on each piece of [lo, hi] between the split points (exact for cubics)."""
        x, w = _gauss_legendre(_merge(c_fixed, _within(kinks, lo, hi)), 2)
        return x, w / (hi - lo)

    def normal_closed(r, kinks):
        e = _merge(c_fixed, _within(to_u(kinks), -TAIL_STD, TAIL_STD))
        a, b = e[:-1], e[1:]
        m = 0.5 * (a + b)
        val, slope = jax.jvp(lambda uu: r(to_x(uu)), (m,), (jnp.ones_like(m),))
        alpha, beta = val - slope * m, slope
        pa, pb = _phi(a), _phi(b)
        t0 = _mass(a, b)
        t1 = pa - pb
        t2 = t0 + a * pa - b * pb
        return jnp.sum(alpha * alpha * t0 + 2.0 * alpha * beta * t1 + beta * beta * t2)

    def mean_square(r, kinks, ladder=None):
        if exact and normal:
            return normal_closed(r, kinks)
        x, w = nodes(kinks, ladder)
        res = r(x)
        return jnp.sum(w * res * res)

    def nodes(kinks, ladder=None):
        return uniform_pieces(kinks) if exact and not normal else quad_nodes(kinks, ladder)

    def prob(a, b):
        if normal:
            return _mass((a - mean) / std, (b - mean) / std)
        return (jnp.clip(b, lo, hi) - jnp.clip(a, lo, hi)) / (hi - lo)

    return Population(mean_square, nodes, prob, None if normal else (lo, hi))


# --------------------------------------------------------------------------- the neuron's population problem
class NeuronPopulation(NamedTuple):
    """The population versions of the neuron's functions (the ``batch`` argument is ignored: None).

    loss(p, batch, v) -> () float: E[(student(x) - teacher(x))^2].
    residuals(p, batch, v) -> (N,) float: sqrt(2 w_i) * r(x_i) on the quadrature nodes (held fixed
      under differentiation), so that 0.5 * sum(r^2) is the loss (to the quadrature's accuracy; exact
      under the uniform for piecewise linear activations) and J^T J is the exact Gauss-Newton matrix's
      quadrature: what Gauss-Newton, Levenberg-Marquardt and the best-fit target need.
    metrics(p, batch, v) -> {"active_fraction": P(w*x + b > 0)} (maxout: P(piece 0 is the strict max)).
    inactive(p, batch, v) -> () bool: relu / relu6 students whose pre-activation is <= 0 almost surely
      (normal: w = 0 and b <= 0; uniform: w*x + b <= 0 at both ends); False for other activations.
    """

    loss: Callable
    residuals: Callable
    metrics: Callable
    inactive: Callable


def _safe_div(num, den):
    """num / den, nan where den == 0 (with a finite gradient everywhere)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.nan)


def neuron_population(o: dict, predict: Callable, teacher: Callable) -> NeuronPopulation:
    """The neuron's population functions for its static options ``o`` (``o["data"]`` is the table).

    Args:
      predict(p, x, v) -> student outputs for an array x; teacher(x) -> targets.
    """
    student, bias, maxout = o["activation"], o["bias"], o["activation"] == "maxout"
    k = o["pieces"] if maxout else 1
    exact = student in PIECEWISE_LINEAR and o["teacher"] in PIECEWISE_LINEAR
    t_kinks = kinks(o["teacher"]) if o["teacher"] not in ("linear",) else ()
    t_centres = () if o["teacher"] in PIECEWISE_LINEAR else ((0.0, 1.0),)
    pop = make_population(o["data"], exact, t_kinks, t_centres)
    s_kinks = np.asarray(kinks(student))
    smooth_student = student not in PIECEWISE_LINEAR
    kinked = student in SMOOTH_WITH_KINK  # its centre is a kink of the derivative
    ladder = np.concatenate([-LADDER[::-1], [] if kinked else [0.0], LADDER])

    def lines(p):
        """(slope, intercept) of each piece of the student's pre-activation (one unless maxout)."""
        return [(p["w" if j == 0 else f"w{j}"], p[("b" if j == 0 else f"b{j}")] if bias else jnp.zeros_like(p["w"]))
                for j in range(k)]

    def split(p):
        """The student's split points in x: (kinks, ladder or None), each sorted (nan: none, last)."""
        (w, b), dt = lines(p)[0], p["w"].dtype
        if maxout:  # where two pieces cross
            ls = lines(p)
            return jnp.sort(jnp.stack([_safe_div(ls[j][1] - ls[i][1], ls[i][0] - ls[j][0])
                                       for i in range(k) for j in range(i + 1, k)])), None
        if smooth_student:  # the centre -b/w and the ladder -b/w +- 2^j/|w| (increasing)
            centre = _safe_div(-b, w)[None] if kinked else jnp.zeros((0,), dt)
            return centre, _safe_div(jnp.asarray(ladder, dt) * jnp.sign(w) - b, w)
        if not s_kinks.size:
            return jnp.zeros((0,), dt), None
        xs = _safe_div(jnp.asarray(s_kinks, dt) - b, w)  # increasing in the kink for w > 0
        return jnp.where(w > 0, xs, xs[::-1]), None

    def residual(p, v):
        return lambda x: predict(p, x, v) - teacher(x)

    def loss(p, batch, v):
        return pop.mean_square(residual(p, v), *split(p))

    def residuals(p, batch, v):
        x, wts = jax.lax.stop_gradient(pop.nodes(*split(p)))
        return jnp.sqrt(2.0 * wts) * residual(p, v)(x)

    def metrics(p, batch, v):
        ls = lines(p)
        conds = [(ls[0][0] - s, ls[0][1] - c) for s, c in ls[1:]] if maxout else ls
        lo = jnp.full_like(p["w"], -jnp.inf)
        hi = jnp.full_like(p["w"], jnp.inf)
        ok = jnp.asarray(True)
        for s, c in conds:  # s*x + c > 0: x > -c/s, x < -c/s, everywhere or nowhere
            t = _safe_div(-c, s)
            lo = jnp.where(s > 0, jnp.maximum(lo, t), lo)
            hi = jnp.where(s < 0, jnp.minimum(hi, t), hi)
            ok = ok & ((s != 0) | (c > 0))
        frac = jnp.where(ok & (lo < hi), pop.prob(lo, jnp.maximum(lo, hi)), 0.0)
        return {"active_fraction": frac.astype(p["w"].dtype)}

    def inactive(p, batch, v):
        if student not in ("relu", "relu6"):
            return jnp.asarray(False)
        w, b = lines(p)[0]
        if pop.support is None:
            return (w == 0) & (b <= 0)
        lo, hi = pop.support
        return jnp.maximum(w * lo + b, w * hi + b) <= 0

    return NeuronPopulation(loss, residuals, metrics, inactive)
