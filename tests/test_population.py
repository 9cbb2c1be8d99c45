"""data.population = true: the neuron trains on the exact expected loss over its input distribution.

Expected values are derived here by hand (truncated-normal moments, polynomial integrals, the
closed-form GD map of a bias-free neuron), or computed by an independent NumPy composite Simpson
rule split at the kinks; none is copied from a run.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import SpecError
from sweep.engine import dataset
from sweep.outcomes import Outcome
from sweep.problems import NEURON_DATA, PROBLEMS

jax.config.update("jax_enable_x64", True)  # the population loss is checked to 1e-10 in float64


def build(activation="relu", teacher="relu", bias=True, out_weight=False, pieces=2, **data):
    d = {k: o.default for k, o in NEURON_DATA.items()}
    d.update(population=True, **data)
    o = {k: op.default for k, op in PROBLEMS["neuron"].options.items()}
    o.update(activation=activation, teacher=teacher, bias=bias, out_weight=out_weight, pieces=pieces, data=d)
    return PROBLEMS["neuron"].build(o)


def loss_at(pr, **p):
    return float(jax.jit(lambda q: pr.loss(q, None, {}))(f64(**p)))


def f64(**p):
    return {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}


def Phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def phi(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def relu_normal(w, b):
    """E[(relu(w x + b) - relu(x))^2], x ~ N(0, 1), by hand:
    E[relu(z)^2] for z ~ N(b, w^2) is (b^2 + w^2) Phi(b/|w|) + b |w| phi(b/|w|); the cross term
    E[(w x + b) x; x > 0, w x + b > 0] is an integral of (w x^2 + b x) phi over x > max(0, -b/w)
    (w > 0) or 0 < x < -b/w (w < 0, b > 0), with int x phi = -phi and int x^2 phi = Phi - x phi."""
    s = abs(w)
    e2 = max(b, 0.0) ** 2 if w == 0 else (b * b + s * s) * Phi(b / s) + b * s * phi(b / s)
    if w > 0:
        t = max(0.0, -b / w)
        cross = w * (t * phi(t) + 1.0 - Phi(t)) + b * phi(t)
    elif w < 0:
        t = -b / w
        cross = w * (Phi(t) - 0.5 - t * phi(t)) + b * (phi(0) - phi(t)) if b > 0 else 0.0
    else:
        cross = b * phi(0) if b > 0 else 0.0
    return e2 - 2.0 * cross + 0.5


def relu_uniform(w, b):
    """E[(relu(w x + b) - relu(x))^2], x ~ U[-1, 1], by hand: (1/2) [int_A (w x + b)^2 - 2 int_{A, x > 0}
    (w x + b) x + int_0^1 x^2] over the active interval A = {x in [-1, 1]: w x + b > 0}."""
    if w == 0:
        lo, hi = (-1.0, 1.0) if b > 0 else (0.0, 0.0)
    elif w > 0:
        lo, hi = min(max(-1.0, -b / w), 1.0), 1.0
    else:
        lo, hi = -1.0, max(min(1.0, -b / w), -1.0)
    sq = 2 * b * b * (hi > lo) if w == 0 else ((w * hi + b) ** 3 - (w * lo + b) ** 3) / (3 * w)
    c_lo, c_hi = max(lo, 0.0), max(hi, 0.0)
    cross = w * (c_hi ** 3 - c_lo ** 3) / 3 + b * (c_hi ** 2 - c_lo ** 2) / 2
    return 0.5 * (sq - 2 * cross + 1.0 / 3.0)


GRID = [(w, b) for w in (-3.0, -1.0, -0.4, 0.0, 0.3, 1.0, 2.5) for b in (-2.0, -0.7, -0.1, 0.0, 0.2, 1.1)]


@pytest.mark.parametrize("dist,hand", [("normal", relu_normal), ("uniform", relu_uniform)])
def test_relu_expected_loss_matches_the_hand_closed_form(dist, hand):
    pr = build(dist=dist)
    loss = jax.jit(lambda p: pr.loss(p, None, {}))
    for w, b in GRID:
        got, want = float(loss(f64(w=w, b=b))), hand(w, b)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (w, b)


# --------------------------------------------------------------------------- an independent quadrature
NP_ACT = {
    "relu": lambda z: np.maximum(z, 0.0), "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "abs": np.abs, "relu6": lambda z: np.clip(z, 0.0, 6.0), "linear": lambda z: z, "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0.0, z), "sigmoid": lambda z: 0.5 * (1 + np.tanh(0.5 * z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
}
NP_KINKS = {"relu6": (0.0, 6.0), "linear": ()}


def simpson(f, edges, n=200_000):
    """Composite Simpson on each interval between consecutive edges (n subintervals each)."""
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        x = np.linspace(a, b, n + 1)
        c = np.ones(n + 1)
        c[1:-1:2], c[2:-1:2] = 4.0, 2.0
        total += (b - a) / (3 * n) * np.dot(c, f(x))
    return total


def reference(student, teacher, p, dist, out_weight=False):
    """E[(student(x) - teacher(x))^2] by Simpson's rule split at every kink (normal: on mean +- 12 std)."""
    w, b = p["w"], p.get("b", 0.0)
    if student == "maxout":
        w1, b1 = p["w1"], p.get("b1", 0.0)
        s = lambda x: np.maximum(w * x + b, w1 * x + b1)  # noqa: E731
        kinks = [(b1 - b) / (w - w1)]
    else:
        s = lambda x: NP_ACT[student](w * x + b)  # noqa: E731
        kinks = [(k - b) / w for k in NP_KINKS.get(student, (0.0,))]
    if out_weight:
        inner = s
        s = lambda x: p["a"] * inner(x) + p["c"]  # noqa: E731
    kinks += list(NP_KINKS.get(teacher, (0.0,)))
    lo, hi = (-12.0, 12.0) if dist == "normal" else (-1.0, 1.0)
    edges = np.unique([lo, hi] + [k for k in kinks if lo < k < hi])
    dens = (lambda x: np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)) if dist == "normal" else (lambda x: 0.5)
    return simpson(lambda x: (s(x) - NP_ACT[teacher](x)) ** 2 * dens(x), edges)


CASES = [  # (student, teacher, options, parameters)
    ("relu", "relu", {}, {"w": -0.8, "b": 0.45}),
    ("leaky_relu", "relu", {}, {"w": -1.7, "b": 0.3}),
    ("leaky_relu", "relu", {"bias": False}, {"w": -10.0}),
    ("abs", "relu", {}, {"w": 0.6, "b": -0.25}),
    ("relu6", "abs", {}, {"w": 4.0, "b": 1.0}),
    ("linear", "relu6", {}, {"w": 1.3, "b": -0.2}),
    ("relu", "relu", {"bias": False, "out_weight": True}, {"w": -0.5, "a": 1.5, "c": 0.2}),
    ("maxout", "abs", {}, {"w": 0.9, "b": 0.1, "w1": -0.7, "b1": 0.3}),
    ("tanh", "relu", {}, {"w": 3.0, "b": -0.5}),
    ("tanh", "relu", {}, {"w": -0.2, "b": 0.9}),
    ("softplus", "tanh", {}, {"w": 1.4, "b": 0.6}),
    ("sigmoid", "leaky_relu", {"out_weight": True}, {"w": -2.2, "b": 0.4, "a": 2.0, "c": -0.5}),
    ("elu", "relu", {}, {"w": 1.1, "b": -0.3}),
    ("relu", "tanh", {}, {"w": 0.7, "b": 0.35}),
]


@pytest.mark.parametrize("dist", ["normal", "uniform"])
@pytest.mark.parametrize("student,teacher,opts,params", CASES)
def test_expected_loss_matches_simpson(student, teacher, opts, params, dist):
    pr = build(student, teacher, dist=dist, **opts)
    got = float(jax.jit(lambda p: pr.loss(p, None, {}))(f64(**params)))
    want = reference(student, teacher, params, dist, opts.get("out_weight", False))
    assert got == pytest.approx(want, rel=1e-10)


def test_normal_mean_std_and_uniform_bounds_are_used():
    """x ~ N(m, s^2): E over x of relu(w x + b) vs relu(x) equals the standard-normal loss of the
    rescaled student relu(w s u + (w m + b)) against relu(s u + m); checked via Simpson on u."""
    pr = build("tanh", "relu", dist="normal", mean=0.5, std=2.0)
    w, b = 0.8, -0.3
    want = simpson(lambda u: (np.tanh(w * (0.5 + 2 * u) + b) - np.maximum(0.5 + 2 * u, 0)) ** 2
                   * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi), np.array([-12.0, -0.25, (-b / w - 0.5) / 2, 12.0]))
    assert loss_at(pr, w=w, b=b) == pytest.approx(want, rel=1e-10)
    pr = build("relu", "relu", dist="uniform", lo=0.5, hi=3.0)  # kinks outside: relu(w x + b) - x, a polynomial
    w, b = 1.5, -1.0  # kink at x = 2/3, inside
    want = (((w - 1) * 3 + b) ** 3 - ((w - 1) * (2 / 3) + b) ** 3) / (3 * (w - 1)) + ((2 / 3) ** 3 - 0.5 ** 3) / 3
    assert loss_at(pr, w=w, b=b) == pytest.approx(want / 2.5, rel=1e-12)


# --------------------------------------------------------------------------- derivatives
GRAD_CASES = [("relu", "relu"), ("leaky_relu", "relu"), ("relu6", "relu"), ("maxout", "relu"), ("tanh", "relu"),
              ("relu", "tanh"), ("elu", "relu"), ("gelu", "abs")]


def _params(student, rng):
    p = {"w": rng.uniform(0.4, 1.6) * rng.choice([-1, 1]), "b": rng.uniform(-0.8, 0.8)}
    if student == "maxout":
        p.update(w1=rng.uniform(-1, 1), b1=rng.uniform(-0.5, 0.5))
    return f64(**p)


@pytest.mark.parametrize("dist", ["normal", "uniform"])
@pytest.mark.parametrize("student,teacher", GRAD_CASES)
def test_gradient_and_hessian_match_finite_differences(student, teacher, dist):
    pr = build(student, teacher, dist=dist)
    f = jax.jit(lambda p: pr.loss(p, None, {}))
    grad, hess = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    rng = np.random.default_rng(7)
    for _ in range(3):
        p = _params(student, rng)
        g, H = grad(p), hess(p)
        for n in p:
            h = 1e-5
            up, dn = {**p, n: p[n] + h}, {**p, n: p[n] - h}
            fd = (f(up) - f(dn)) / (2 * h)
            assert float(g[n]) == pytest.approx(float(fd), rel=1e-7, abs=1e-9), (n, p)
            gu, gd = grad(up), grad(dn)
            for m in p:  # second derivatives: the kinks move with the parameters
                assert float(H[m][n]) == pytest.approx(float((gu[m] - gd[m]) / (2 * h)), rel=1e-6, abs=1e-8), (m, n, p)


def test_gradient_is_right_when_the_kinks_meet():
    """b = 0: the student's kink -b/w sits on the teacher's kink at 0 (a zero-width piece)."""
    for dist in ("normal", "uniform"):
        pr = build(dist=dist)
        f = jax.jit(lambda p: pr.loss(p, None, {}))
        for w in (-0.6, 0.8):
            p = f64(w=w, b=0.0)
            g = jax.jit(jax.grad(f))(p)
            h = 1e-6
            for n in p:
                fd = (f({**p, n: p[n] + h}) - f({**p, n: p[n] - h})) / (2 * h)
                assert float(g[n]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9), (dist, w, n)


# --------------------------------------------------------------------------- exact dynamics
def leaky_grad(w, c):
    """d/dw E[(leaky_c(w x) - relu(x))^2], x ~ N(0, 1), by hand: for w > 0 the residual is (w - 1) x on
    x > 0 and c w x on x < 0, so L = ((w - 1)^2 + c^2 w^2) / 2; for w < 0 it is (c w - 1) x and w x,
    L = ((c w - 1)^2 + w^2) / 2."""
    return np.where(w > 0, (w - 1) + c * c * w, c * (c * w - 1) + w)


def population_spec(**over):
    spec = {"problem": {"name": "neuron", "bias": False, "activation": "leaky_relu", "teacher": "relu",
                        "data": {"dist": "normal", "population": True}},
            "train": {"steps": 800, "lr": 0.01},
            "init": {"w0": -10.0},
            "axes": {"alpha": [0.3, 0.01]},
            "record": {"stride": 1, "every": 1},
            "run": {"early_exit": False}}
    for k, v in over.items():
        spec[k] = v
    return spec


def test_leaky_student_first_positive_step_is_the_closed_form():
    """Seed 000's leaky student from w0 = -10, lr 0.01: while w < 0 the GD map is affine,
    w - w* -> (1 - lr (1 + c^2)) (w - w*) with w* = c / (1 + c^2), so w first turns positive after
    k = ceil(log(w* / (w* - w0)) / log(1 - lr (1 + c^2))) updates: 331 for c = 0.3, 688 for c = 0.01."""
    ds = sweep.run(population_spec(), progress=False, dtype="float64")
    lr, w0 = 0.01, -10.0
    for i, c in enumerate((0.3, 0.01)):
        ws = c / (1 + c * c)
        k = math.ceil(math.log(ws / (ws - w0)) / math.log(1 - lr * (1 + c * c)))
        rec = ds["rec_w"].values[i]
        assert int(np.argmax(rec > 0)) == k
        ref = [w0]
        for _ in range(800):
            ref.append(ref[-1] - lr * float(leaky_grad(ref[-1], c)))
        np.testing.assert_allclose(rec, ref, rtol=1e-12, atol=1e-14)
    assert [331, 688] == [int(np.argmax(ds["rec_w"].values[i] > 0)) for i in range(2)]
    # the best fit of the family (w = 1/(1 + c^2) on w > 0): loss c^2 / (2 (1 + c^2))
    c = np.array([0.3, 0.01])
    np.testing.assert_allclose(ds["target_loss"].values, c * c / (2 * (1 + c * c)), rtol=1e-10)


def test_relu_neuron_population_gd_is_the_closed_form_map():
    """Bias-free relu learning relu on N(0, 1): L(w) = (w - 1)^2 / 2 (w > 0), (w^2 + 1) / 2 (w < 0), so
    GD gives w_S = 1 + (w0 - 1)(1 - lr)^S from w0 > 0 and w_S = w0 (1 - lr)^S from w0 < 0 (stuck at 0-)."""
    w0 = [-2.0, -0.5, 0.25, 3.0]
    spec = {"problem": {"name": "neuron", "bias": False, "activation": "relu",
                        "data": {"dist": "normal", "population": True}},
            "train": {"steps": 50, "lr": 0.1}, "run": {"early_exit": False}, "axes": {"w0": w0}}
    ds = sweep.run(spec, progress=False, dtype="float64")
    w0 = np.array(w0)
    want = np.where(w0 > 0, 1 + (w0 - 1) * 0.9 ** 50, w0 * 0.9 ** 50)
    np.testing.assert_allclose(ds["final_w"].values, want, rtol=1e-12)
    np.testing.assert_allclose(ds["final_loss"].values, np.where(want > 0, (want - 1) ** 2 / 2, (want ** 2 + 1) / 2),
                               rtol=1e-12)
    np.testing.assert_allclose(ds["active_fraction"].values, 0.5)


def test_uniform_dead_boundary_is_b_equal_minus_abs_w():
    """relu(w x + b) on U[-1, 1] is dead (w x + b <= 0 on the whole support) exactly when b <= -|w|;
    a start just inside the boundary still trains (the active sliver grows) and converges to (1, 0)."""
    w0, eps = [1.0, -1.0, 0.5], 1e-3
    b0 = [-abs(w) + d for w in w0 for d in (-0.3, -eps, 0.0, eps)]
    spec = {"problem": {"name": "neuron", "activation": "relu",
                        "data": {"dist": "uniform", "lo": -1.0, "hi": 1.0, "population": True}},
            "train": {"steps": 3000, "lr": 0.5},
            "axes": {"start": {"zip": {"w0": [w for w in w0 for _ in range(4)], "b0": b0}}}}
    ds = sweep.run(spec, progress=False, dtype="float64")
    codes = ds["outcome"].values.reshape(3, 4)
    assert (codes[:, :3] == int(Outcome.DEAD)).all()
    w1 = np.array(w0)
    assert (codes[w1 > 0, 3] == int(Outcome.CONVERGED)).all()
    # w0 = -1 just inside: the active sliver x < -1 + d/|w| (d = b + |w|) is where the teacher is 0; GD
    # shrinks it but never to 0: alive, not dead (the exact map is checked below)
    assert codes[1, 3] != int(Outcome.DEAD)
    np.testing.assert_allclose(ds["active_fraction"].values.reshape(3, 4)[:, :3], 0.0)


def test_uniform_sliver_dynamics_is_the_closed_form_map():
    """relu(w x + b), w < 0, 0 < d = b - w small, on U[-1, 1]: the unit is active on the sliver
    -1 <= x < b/|w| = -1 + d/|w| only, where the teacher relu(x) is 0; with t = b/|w| - x there,
    z = |w| t, so L = 1/6 + d^3 / (6|w|), dL/db = d^2 / (2|w|), dL/dw = b d^2 / (2 w^2) - d^3 / (3 w^2)."""
    w0, b0, lr, steps = -1.0, -0.999, 0.5, 3000
    spec = {"problem": {"name": "neuron", "activation": "relu",
                        "data": {"dist": "uniform", "lo": -1.0, "hi": 1.0, "population": True}},
            "train": {"steps": steps, "lr": lr}, "init": {"w0": w0, "b0": b0}, "run": {"early_exit": False}}
    ds = sweep.run(spec, progress=False, dtype="float64")
    w, b = w0, b0
    for _ in range(steps):
        d = b - w
        gb, gw = d * d / (2 * -w), b * d * d / (2 * w * w) - d ** 3 / (3 * w * w)
        w, b = w - lr * gw, b - lr * gb
    assert float(ds["final_w"]) == pytest.approx(w, rel=1e-12)
    assert float(ds["final_b"]) == pytest.approx(b, rel=1e-12)
    assert float(ds["final_loss"]) == pytest.approx(1 / 6 + (b - w) ** 3 / (6 * -w), rel=1e-12)
    assert float(ds["active_fraction"]) == pytest.approx((b - w) / (-w) / 2, rel=1e-10)
    assert int(ds["outcome"]) != int(Outcome.DEAD)


# --------------------------------------------------------------------------- metrics, checks, spec level
def test_active_fraction_and_dead_check_are_exact():
    pr = build(dist="normal")
    for w, b in [(0.7, 0.2), (-1.3, 0.5), (2.0, -3.0)]:
        got = float(pr.metrics(f64(w=w, b=b), None, {})["active_fraction"])
        assert got == pytest.approx(Phi(b / abs(w)), rel=1e-13)
        assert not bool(pr.inactive(f64(w=w, b=b), None, {}))
    assert float(pr.metrics(f64(w=0.0, b=0.1), None, {})["active_fraction"]) == 1.0
    assert bool(pr.inactive(f64(w=0.0, b=-0.1), None, {})) and bool(pr.inactive(f64(w=0.0, b=0.0), None, {}))
    assert not bool(pr.inactive(f64(w=1e-6, b=-5.0), None, {}))  # the normal's tail is still active
    pr = build(dist="uniform", lo=-1.0, hi=3.0)
    assert float(pr.metrics(f64(w=2.0, b=-1.0), None, {})["active_fraction"]) == pytest.approx(2.5 / 4)
    assert float(pr.metrics(f64(w=-1.0, b=0.0), None, {})["active_fraction"]) == pytest.approx(1 / 4)
    assert bool(pr.inactive(f64(w=0.5, b=-1.5), None, {})) and not bool(pr.inactive(f64(w=0.5, b=-1.4), None, {}))
    pr = build("maxout", "relu", dist="uniform")  # piece 0 strictly above piece 1: 2x > -x + 0.3 -> x > 0.1
    got = pr.metrics(f64(w=2.0, b=0.0, w1=-1.0, b1=0.3), None, {})["active_fraction"]
    assert float(got) == pytest.approx(0.45)


def test_spec_level_run_matches_the_closed_form_at_the_final_parameters():
    spec = {"problem": {"name": "neuron", "activation": "relu", "data": {"dist": "normal", "population": True}},
            "train": {"steps": 40, "lr": 0.2},
            "axes": {"w0": [-1.5, 0.5, 2.0], "b0": [-0.5, 0.4], "optimizer": ["sgd", "newton"]}}
    ds = sweep.run(spec, progress=False, dtype="float64")
    assert dataset(sweep.parse_spec(spec)) is None  # no data is drawn
    for w, b, loss, frac in zip(ds["final_w"].values.ravel(), ds["final_b"].values.ravel(),
                                ds["final_loss"].values.ravel(), ds["active_fraction"].values.ravel()):
        # (the hand formula sums O(1) terms: near the minimum it is good to ~1e-15 absolute, not relative)
        assert loss == pytest.approx(relu_normal(w, b), rel=1e-12, abs=1e-14)
        assert frac == pytest.approx(Phi(b / abs(w)), rel=1e-12)
    newton = ds.sel(optimizer="newton", w0=2.0)["outcome"].values
    assert (newton == int(Outcome.CONVERGED)).all()


def test_float32_is_as_good_as_float32_allows():
    spec = population_spec(train={"steps": 400, "lr": 0.01}, record={"stride": 0})
    d64 = sweep.run(spec, progress=False, dtype="float64")
    d32 = sweep.run(spec, progress=False, dtype="float32")
    assert d32["final_w"].dtype == np.float32
    np.testing.assert_allclose(d32["final_w"].values, d64["final_w"].values, rtol=1e-5)
    np.testing.assert_allclose(d32["final_loss"].values, d64["final_loss"].values, rtol=1e-5)


def test_levenberg_marquardt_uses_quadrature_residuals():
    """0.5 * sum(residuals^2) is the loss; LM from a start near the teacher converges to it."""
    for dist in ("normal", "uniform"):
        pr = build(dist=dist)
        p = f64(w=0.7, b=0.3)
        r = pr.residuals(p, None, {})
        assert float(0.5 * jnp.sum(r * r)) == pytest.approx(loss_at(pr, w=0.7, b=0.3), rel=1e-10)
    spec = {"problem": {"name": "neuron", "activation": "relu", "data": {"dist": "uniform", "population": True}},
            "train": {"steps": 100, "optimizer": "levenberg_marquardt", "lr": 1.0},
            "axes": {"w0": [0.5, 1.5], "b0": [-0.2, 0.3]}}
    ds = sweep.run(spec, progress=False, dtype="float64")
    assert (ds["outcome"].values == int(Outcome.CONVERGED)).all()


@pytest.mark.parametrize("data,key", [
    ({"population": True, "fresh": True, "batch": 100}, "problem.data.fresh"),
    ({"population": True, "batch": 100}, "problem.data.batch"),
])
def test_population_refuses_batches(data, key):
    spec = {"problem": {"name": "neuron", "data": data}}
    with pytest.raises(SpecError, match=key.replace(".", r"\.") + ".*population"):
        sweep.parse_spec(spec)


def test_population_refuses_swept_fresh_batches():
    spec = {"problem": {"name": "neuron", "data": {"batch": 10}}, "axes": {"data.population": [False, True]}}
    with pytest.raises(SpecError, match=r"problem\.data\.batch = 10: must be 0 with data\.population"):
        sweep.parse_spec(spec)
    spec = {"problem": {"name": "neuron", "data": {"population": True}}, "axes": {"data.fresh": [False, True]}}
    with pytest.raises(SpecError, match=r"axes\.data\.fresh = True"):
        sweep.parse_spec(spec)


def test_population_ignores_n_and_holds_no_data():
    from sweep.config import data_points

    spec = sweep.parse_spec({"problem": {"name": "neuron", "data": {"population": True, "n": 10 ** 12}}})
    assert data_points(spec.problem_options["data"]) == 0
