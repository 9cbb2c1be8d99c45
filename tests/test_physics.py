"""Exact answers: outcomes must land where the mathematics says they do."""
import numpy as np
import pytest

import sweep
from sweep.engine import dataset
from sweep.outcomes import Outcome

from helpers import names


def test_quartic_basin_is_lr_x0_squared_below_half():
    """GD on x^4: x <- x(1 - 4 lr x^2) converges iff 0 < lr*x0^2 < 1/2, diverges above."""
    ds = sweep.run({
        "problem": {"name": "quartic"},
        "train": {"steps": 3000},
        "axes": {"x0": {"linspace": [0.05, 3.0, 60]}, "lr": {"logspace": [-2, 0, 25]}},
    }, progress=False)
    c = ds.x0.values[:, None] ** 2 * ds.lr.values[None, :]
    out = ds.outcome.values
    inside, outside = c < 0.5 * (1 - 1e-3), c > 0.5 * (1 + 1e-3)
    # never converged on the wrong side, never diverged inside
    assert not np.any(out[outside] == Outcome.CONVERGED)
    assert np.all(out[outside] == Outcome.DIVERGED)
    assert not np.any(out[inside] == Outcome.DIVERGED)
    # inside: converged, or still improving (sublinear rate x_k ~ 1/sqrt(8 lr k)) - never anything else
    assert set(np.unique(out[inside])) <= {Outcome.CONVERGED, Outcome.UNFINISHED}
    # well inside and with lr*steps large enough to reach |x| < (1e-6)^(1/4): converged
    easy = inside & (c < 0.4) & (ds.lr.values[None, :] * 3000 > 1 / (8 * 1e-3) * 1.5)
    assert easy.sum() > 100 and np.all(out[easy] == Outcome.CONVERGED)


def test_dead_relu_region_is_b_below_minus_abs_w():
    """On data in [-1, 1], relu(w x + b) is inactive on every point iff b <= -|w|: exactly zero gradient."""
    w = np.linspace(-2, 2, 21)
    ds = sweep.run({
        "problem": {"name": "neuron", "data": {"dist": "uniform", "lo": -1.0, "hi": 1.0, "n": 200}},
        "train": {"steps": 200, "lr": 0.05},
        "axes": {"w0": w.tolist(), "b0": np.linspace(-3, 1, 21).tolist()},
    }, progress=False)
    W, B = np.meshgrid(ds.w0.values, ds.b0.values, indexing="ij")
    x = np.asarray(dataset(sweep.parse_spec({"problem": {"name": "neuron", "data": {
        "dist": "uniform", "lo": -1.0, "hi": 1.0, "n": 200}}}))[0])
    # exact on this sample: dead iff w*x + b <= 0 for every data point
    inactive = np.all(W[..., None] * x + B[..., None] <= 0, axis=-1)
    out = ds.outcome.values
    assert np.all(out[inactive] == Outcome.DEAD)
    assert not np.any(out[~inactive] == Outcome.DEAD)
    assert np.all(ds.final_w.values[inactive] == W[inactive].astype(np.float32))  # nothing moved
    assert np.all(inactive[B <= -np.abs(W)])  # the analytic region is inside


def test_bias_free_neuron_converges_for_positive_w0_and_sticks_at_zero_minus_for_negative():
    """Seed 000: relu(w x) learning relu(x) on normal data. w0 > 0 -> w = 1; w0 < 0 -> w -> 0-, loss -> 1/2 E[x^2]."""
    ds = sweep.run({
        "problem": {"name": "neuron", "bias": False, "data": {"dist": "normal", "n": 4096}},
        "train": {"steps": 3000, "lr": 0.05},
        "axes": {"w0": [-10.0, -3.0, -1.0, -0.2, 0.2, 1.0, 3.0, 6.0]},
    }, progress=False)
    x = np.asarray(dataset(sweep.parse_spec({"problem": {"name": "neuron", "bias": False,
                                                          "data": {"dist": "normal", "n": 4096}}}))[0], np.float64)
    pos = ds.w0.values > 0
    assert np.all(names(ds.outcome.values[pos]) == "converged")
    # converged means loss = (w-1)^2 mean(x^2; x>0) <= 1e-6 (the default loss_atol): |w - 1| <= ~1.4e-3
    tol = np.sqrt(1e-6 / np.mean(np.where(x > 0, x, 0) ** 2)) * 1.01
    assert np.all(np.abs(ds.final_w.values[pos] - 1.0) <= tol)
    assert np.all(names(ds.outcome.values[~pos]) == "stuck")
    assert np.all(ds.final_w.values[~pos] < 0) and np.all(ds.final_w.values[~pos] > -1e-3)
    half = np.mean(np.where(x > 0, x, 0) ** 2)  # the loss at w = 0 on this sample (about 1/2)
    assert np.allclose(ds.final_loss.values[~pos], half, rtol=1e-3)
    assert abs(half - 0.5) < 0.05


def test_linear_regression_critical_lr_is_two_over_lambda_max():
    """Full-batch GD on mean((w x + b - y)^2) is stable iff lr < 2/lambda_max(Hessian)."""
    spec = {"problem": {"name": "neuron", "activation": "linear", "teacher": "linear",
                        "data": {"dist": "normal", "mean": 1.0, "std": 1.5, "n": 128}},
            "train": {"steps": 4000},
            "init": {"w0": 0.3, "b0": -0.2}}
    x = np.asarray(dataset(sweep.parse_spec(spec))[0], np.float64)
    H = 2 * np.array([[np.mean(x * x), np.mean(x)], [np.mean(x), 1.0]])
    lr_c = 2 / np.linalg.eigvalsh(H).max()
    lrs = lr_c * np.linspace(0.95, 1.05, 41)
    ds = sweep.run({**spec, "axes": {"lr": lrs.tolist()}}, dtype="float64", progress=False)
    out = ds.outcome.values
    below, above = lrs < lr_c * 0.995, lrs > lr_c * 1.005
    assert np.all(out[below] == Outcome.CONVERGED), names(out)
    assert np.all(out[above] == Outcome.DIVERGED), names(out)
    # the measured edge: last converged and first diverged lr bracket 2/lambda_max within 1%
    edge_lo, edge_hi = lrs[out == Outcome.CONVERGED].max(), lrs[out == Outcome.DIVERGED].min()
    assert edge_lo <= lr_c * 1.01 and edge_hi >= lr_c * 0.99 and edge_hi / edge_lo < 1.01


def test_sharpness_lr_mode_puts_the_gd_edge_at_lr_2_for_every_init():
    """train.lr_mode = "sharpness": the step is lr / lambda0, so on a quadratic loss GD is stable iff lr < 2,
    whatever the data's lambda_max; lambda0 is the exact top Hessian eigenvalue."""
    spec = {"problem": {"name": "neuron", "activation": "linear", "teacher": "linear",
                        "data": {"dist": "normal", "mean": 1.0, "std": 1.5, "n": 128}},
            "train": {"steps": 4000, "lr_mode": "sharpness"}}
    x = np.asarray(dataset(sweep.parse_spec(spec))[0], np.float64)
    H = 2 * np.array([[np.mean(x * x), np.mean(x)], [np.mean(x), 1.0]])
    lrs = np.array([1.8, 1.95, 1.99, 2.01, 2.05, 2.2])
    ds = sweep.run({**spec, "axes": {"lr": lrs.tolist(), "w0": [-1.0, 0.3, 2.0]}}, dtype="float64", progress=False)
    np.testing.assert_allclose(ds.lambda0.values, np.linalg.eigvalsh(H).max(), rtol=1e-6)
    out = ds.outcome.values  # (lr, w0)
    assert np.all(out[lrs < 2] == Outcome.CONVERGED), names(out)
    assert np.all(out[lrs > 2] == Outcome.DIVERGED), names(out)


def test_sharpness_lr_mode_makes_the_quartic_basin_independent_of_x0():
    """L = x^4: lambda0 = 12 x0^2, so lr_eff * x0^2 = lr / 12 and GD converges iff lr < 6, from any x0 != 0;
    at x0 = 0 lambda0 = 0 and the run is nan (documented)."""
    lrs = [5.0, 5.9, 6.1, 7.0]
    x0 = [-1.5, 0.25, 1.0, 3.0]
    ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 3000, "lr_mode": "sharpness"},
                    "axes": {"lr": lrs, "x0": x0}}, dtype="float64", progress=False)
    np.testing.assert_allclose(ds.lambda0.values, 12 * np.square(x0)[None, :] * np.ones((4, 1)), rtol=1e-9)
    out = ds.outcome.values
    assert np.all(out[:2] == Outcome.CONVERGED), names(out)
    assert np.all(out[2:] != Outcome.CONVERGED), names(out)
    zero = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 10, "lr_mode": "sharpness"},
                      "axes": {"x0": [0.0, 1.0]}}, progress=False)
    assert zero.outcome.values[0] == Outcome.NAN and zero.stop_step.values[0] == 1
    assert np.isnan(zero.final_x.values[0]) and zero.lambda0.values[0] == 0 and np.isfinite(zero.final_x.values[1])


@pytest.mark.parametrize("g0,expected", [(0.0, "dead"), (1.0, "converged")])
def test_relu_grad_at_zero_decides_a_run_that_starts_on_the_kink(g0, expected):
    """relu(w x) from w0 = 0: every pre-activation is exactly 0, so relu'(0) alone decides the run."""
    ds = sweep.run({"problem": {"name": "neuron", "bias": False, "relu_grad_at_zero": g0,
                                "data": {"dist": "normal", "n": 256}},
                    "train": {"steps": 2000, "lr": 0.1}, "init": {"w0": 0.0}}, progress=False)
    assert names(ds.outcome.values) == expected


def test_touching_the_target_at_an_unstable_fixed_point_is_not_convergence():
    """Bias-free ReLU neuron, full-batch GD with lr = 2.3 > 2/h: from w0 < 0 the first step flips w to
    w1 = w0 (1 - lr m-) and some w0 land within tolerance of w = 1, where (w - 1) then grows by |1 - lr m+| > 1
    per step. Such runs must not be reported converged."""
    spec = {"problem": {"name": "neuron", "bias": False, "data": {"dist": "normal", "n": 1024}},
            "train": {"steps": 400, "lr": 2.3}}
    x = np.asarray(dataset(sweep.parse_spec(spec))[0], np.float64)
    m_neg, m_pos = 2 * np.mean(np.where(x < 0, x * x, 0)), 2 * np.mean(np.where(x > 0, x * x, 0))
    assert abs(1 - 2.3 * m_pos) > 1  # w = 1 is unstable at this lr
    w_land = 1 / (1 - 2.3 * m_neg)  # the w0 whose first step lands exactly on w = 1
    # (an even count keeps the exact landing point out: from w = 1 to machine precision it takes about
    # log(1e-3/1e-16)/log(1.3) ~ 110 steps to leave, longer than converge_patience)
    ds = sweep.run({**spec, "axes": {"w0": (w_land + np.linspace(-1e-3, 1e-3, 20)).tolist()}},
                   dtype="float64", progress=False)
    assert ds.min_loss.min() < 1e-6  # some runs did touch the tolerance ...
    assert not np.any(ds.outcome.values == Outcome.CONVERGED)  # ... and left it again
    # w > 0 maps through (1 - lr m+) ~ -1.3 around 1, w < 0 through (1 - lr m-) ~ -1.3: bounded, chaotic
    assert set(np.unique(ds.outcome.values)) <= {Outcome.OSCILLATING, Outcome.UNFINISHED, Outcome.DIVERGED}


def test_target_of_a_non_realisable_student_is_its_best_fit():
    """leaky_relu(w x) learning relu(x): L(w) = (w-1)^2 S+ + alpha^2 w^2 S-, minimised at w* = S+/(S+ + alpha^2 S-)."""
    spec = {"problem": {"name": "neuron", "bias": False, "activation": "leaky_relu", "alpha": 0.3,
                        "data": {"dist": "normal", "n": 512}},
            "train": {"steps": 3000, "lr": 0.1}, "axes": {"w0": [0.5, 2.0]}}
    x = np.asarray(dataset(sweep.parse_spec(spec), dtype="float64")[0], np.float64)
    sp, sm = np.mean(np.where(x > 0, x * x, 0)), np.mean(np.where(x < 0, x * x, 0))
    w = sp / (sp + 0.09 * sm)
    best = (w - 1) ** 2 * sp + 0.09 * w * w * sm
    ds = sweep.run(spec, dtype="float64", progress=False)
    np.testing.assert_allclose(ds.target_loss.values, best, rtol=1e-9)
    assert np.all(ds.outcome.values == Outcome.CONVERGED)
    # converged = loss within 1e-6 + 1e-4*best of the minimum, i.e. |w - w*| <= sqrt(that / L''(w*)/2)
    tol = np.sqrt((1e-6 + 1e-4 * best) / (sp + 0.09 * sm))
    assert np.all(np.abs(ds.final_w.values - w) <= tol * 1.01)


def test_final_sharpness_is_the_top_hessian_eigenvalue():
    """Linear regression: the Hessian is 2 [[E x^2, E x], [E x, 1]] everywhere; power iteration must find its top
    eigenvalue, stored beside 2/lr (edge-of-stability analysis)."""
    spec = {"problem": {"name": "neuron", "activation": "linear", "teacher": "linear",
                        "data": {"dist": "normal", "mean": 1.0, "std": 1.5, "n": 128}},
            "train": {"steps": 100}, "outcome": {"sharpness_iters": 100}, "axes": {"lr": [0.01, 0.1]}}
    x = np.asarray(dataset(sweep.parse_spec(spec), dtype="float64")[0], np.float64)
    top = np.linalg.eigvalsh(2 * np.array([[np.mean(x * x), np.mean(x)], [np.mean(x), 1.0]])).max()
    ds = sweep.run(spec, dtype="float64", progress=False)
    np.testing.assert_allclose(ds.sharpness.values, top, rtol=1e-6)
    np.testing.assert_allclose(ds.two_over_lr.values, [200.0, 20.0])
    assert ds.sharpness.attrs["long_name"].startswith("top eigenvalue")
