"""Verdicts where users look: chaos, 2-cycles, slow descent, underflow, settle = false, events, Lyapunov.

Every expected code is derived from the map the optimizer iterates (closed forms on the fixed sample,
NumPy iterations), never copied from a run.
"""
import math

import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep.engine import dataset
from sweep.outcomes import Outcome, Thresholds, survivor_code

from helpers import names

O = Outcome


def _fn(loss, steps, lr, init, axes, **outcome):
    return {"problem": {"name": "function", "loss": f"math_losses:{loss}"},
            "train": {"steps": steps, "lr": lr}, "init": init, "outcome": outcome, "axes": axes}


def _bias_free(lr, steps, n=8192, axes=None, **outcome):
    return {"problem": {"name": "neuron", "bias": False, "data": {"dist": "normal", "n": n}},
            "train": {"steps": steps, "lr": lr}, "outcome": outcome,
            "axes": axes or {"w0": {"linspace": [-3.0, 3.0, 60]}}}


def _curvatures(spec):
    """h+ = 2 mean(x^2 [x > 0]), h- = 2 mean(x^2 [x < 0]) on the engine's own sample: the bias-free ReLU
    neuron's GD map is w' = 1 + (1 - lr h+)(w - 1) for w > 0 and w' = (1 - lr h-) w for w < 0."""
    x, _ = dataset(sweep.parse_spec(spec))
    x = np.asarray(x, np.float64)
    return 2 * np.mean(x ** 2 * (x > 0)), 2 * np.mean(x ** 2 * (x < 0))


def test_chaotic_band_of_the_bias_free_neuron_is_oscillating():
    lr, steps = 2.3, 400
    spec = _bias_free(lr, steps)
    ds = sweep.run(spec, progress=False)
    hp, hm = _curvatures(spec)
    w0 = ds.w0.values
    # NumPy iteration of the exact piecewise-linear map: bounded and never settling inside the band
    w = w0.astype(np.float64).copy()
    seen = np.zeros_like(w)
    for _ in range(steps):
        w = np.where(w > 0, 1 + (1 - lr * hp) * (w - 1), (1 - lr * hm) * w)
        seen = np.maximum(seen, np.abs(w))
    band = (w0 > -1 / (lr - 2)) & (w0 < (lr - 1) / (lr - 2))
    assert band.sum() == 60 and np.all(seen < 10)  # every start of the grid is in the band, orbits bounded
    assert np.all(names(ds.outcome.values) == "oscillating"), dict(zip(*np.unique(names(ds.outcome.values),
                                                                                   return_counts=True)))
    assert np.all(ds.final_loss.values > 10 * ds.min_loss.values)  # bounded, not improving


def test_an_exact_two_cycle_is_oscillating_and_its_neighbours_converge_or_diverge():
    # x' = x - lr x on x^2/2: lr = 2 is the exact 2-cycle x, -x (constant loss); below it converges, above it diverges
    ds = sweep.run(_fn("half_square", 200, 1.0, {"x0": 1.0}, {"lr": [1.9, 2.0, 2.1], "x0": [0.5, 1.0, -2.0]}),
                   progress=False)
    got = names(ds.outcome.values)
    assert np.all(got[0] == "converged") and np.all(got[1] == "oscillating") and np.all(got[2] == "diverged")


def test_slow_sublinear_quartic_descent_is_unfinished_never_oscillating():
    # x' = x (1 - 4 lr x^2): for lr x0^2 < 1/2 |x| and the loss x^4 fall monotonically (|1 - 4 lr x^2| < 1),
    # sublinearly (x_t ~ 1/sqrt(8 lr t)), so a short budget ends unfinished; never oscillating
    lrs = np.linspace(0.01, 0.49, 25)
    ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 300},
                    "axes": {"lr": lrs.tolist(), "x0": [1.0, -1.0]}}, progress=False)
    got = names(ds.outcome.values)
    assert set(got.ravel()) <= {"unfinished", "converged"}
    x_end = 1 / np.sqrt(8 * lrs * 300)  # asymptotic |x| after 300 steps; converged needs x^4 <= 1e-6
    assert np.all(got[x_end ** 4 > 1e-5] == "unfinished")


def test_large_steps_of_seed000_lr_jump_are_never_called_still_improving():
    # seed000_lr_jump's lr 2 - 2.5 band: a run whose final loss is more than twice its minimum is not improving
    spec = sweep.parse_spec("experiments/seed000_lr_jump.toml",
                            ["axes.lr={logspace=[0.30103, 0.39794, 6]}", "axes.w0={linspace=[-10,10,21]}"])
    ds = sweep.run(spec, progress=False)
    got = names(ds.outcome.values)
    assert not np.any((got == "unfinished") & (ds.final_loss.values > 2 * ds.min_loss.values))
    assert ds.outcome.dims == ("w0", "lr")
    w0, lr = ds.w0.values[:, None], ds.lr.values[None, :]
    with np.errstate(divide="ignore"):  # lr = 2: the whole line is in the band
        band = (lr < (1 + 5 ** 0.5) ** 2 / 4) & (w0 > -1 / (lr - 2) + 0.1) & (w0 < (lr - 1) / (lr - 2) - 0.1)
    # (edges shrunk by 0.1: they hold for the population, h = 1, and move by ~1% on the 1,024-point sample);
    band &= (w0 != 0) & (w0 != 1)  # the map's fixed points: w = 0 (no gradient: dead) and w = 1 (the minimum)
    assert band.sum() > 40 and np.all(got[band] == "oscillating")
    assert np.all(got[w0[:, 0] == 0] == "dead") and np.all(got[w0[:, 0] == 1] == "converged")


def test_fresh_batch_noise_on_a_smooth_descent_is_not_oscillation():
    # lr = 0.1 is far below the stability edge 2/lambda_max everywhere on the demo map (lambda_max <= 2 E[x^2 + 1]
    # = 4 for N(0, 1) data): nothing oscillates, whatever the batch noise
    spec = {"problem": {"name": "neuron", "data": {"dist": "normal", "batch": 256, "fresh": True}},
            "train": {"steps": 600, "lr": 0.1},
            "axes": {"w0": {"linspace": [-3, 3, 24]}, "b0": {"linspace": [-3, 3, 24]}}}
    got = names(sweep.run(spec, progress=False).outcome.values)
    assert not np.any(got == "oscillating")


def test_survivor_rule_table():
    th = Thresholds()

    def code(start, end, lo, hi, path, step=0.0, noisy=False):
        return Outcome(int(survivor_code(th, loss_start=jnp.float32(start), loss_end=jnp.float32(end),
                                         loss_min=jnp.float32(lo), loss_max=jnp.float32(hi), path=jnp.float32(path),
                                         step_norm=jnp.float32(step), param_norm=jnp.float32(1.0),
                                         target=jnp.float32(0.0), noisy=noisy)))

    assert code(1.0, 0.5, 0.5, 1.0, 0.5) == O.UNFINISHED  # monotone descent
    assert code(1.0, 0.5, 0.01, 1.2, 6.0) == O.OSCILLATING  # chaos that happens to end lower
    assert code(0.5, 1.0, 0.01, 1.2, 6.0) == O.OSCILLATING  # chaos that happens to end higher
    assert code(1.0, 0.5, 0.1, 1.0, 1.3) == O.OSCILLATING  # dipped far below where it ended: not improving
    assert code(0.5, 0.5, 0.5, 0.5, 0.0, step=0.5) == O.OSCILLATING  # 2-cycle at constant loss
    assert code(0.5, 0.5, 0.5, 0.5, 0.0, step=1e-6) == O.STUCK  # stationary
    assert code(0.5, 0.5, 0.4995, 0.5005, 0.004, step=0.5, noisy=True) == O.STUCK  # batch noise on a plateau
    assert code(0.5, 0.5, 0.2, 0.8, 2.0, noisy=True) == O.OSCILLATING  # a real swing under noise
    assert code(1.0, 0.5, 0.5, 1.0, 0.5, noisy=True) == O.UNFINISHED


def test_an_underflowing_gradient_is_not_dead_and_a_saddle_is_stuck():
    # (u v - 1)^2 / 2 from (-1.2, 1.2): u = -v shrinks geometrically to the saddle (0, 0), where the gradient is
    # exactly zero; the model has no units, so it is never dead - in float32 (where the gradient's sum of squares
    # underflows long before the gradient) as in float64
    for dtype in ("float32", "float64"):
        ds = sweep.run({**_fn("uv_loss", 400, 0.5, {"u0": -1.2, "v0": 1.2}, {"u0": [-1.2, 0.0], "v0": [1.2, 0.0]}),
                        "run": {"dtype": dtype}}, progress=False)
        got = names(ds.outcome.values)
        assert got[0, 0] == "stuck" and got[1, 1] == "stuck", (dtype, got)
        assert not np.any(got == "dead")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_registered_uv_model_ends_stuck_at_its_saddle(dtype):
    ds = sweep.run({"problem": {"name": "uv"}, "train": {"steps": 400, "lr": 0.5}, "run": {"dtype": dtype},
                    "axes": {"u0": [-1.2, 0.0], "v0": [1.2, 0.0]}}, progress=False)
    got = names(ds.outcome.values)
    assert got[0, 0] == "stuck" and got[1, 1] == "stuck" and not np.any(got == "dead")


def test_dead_needs_every_entry_of_the_gradient_exactly_zero():
    from sweep.step import all_zero, tree_norm

    g = {"w": jnp.float32(1e-30), "b": jnp.float32(0.0)}
    assert float(tree_norm(g)) == 0.0 and not bool(all_zero(g))  # the norm underflows, the gradient is not zero
    assert bool(all_zero({"w": jnp.zeros(3), "b": jnp.float32(0.0)}))


def test_settle_false_trains_to_the_end_with_the_same_codes():
    spec = _fn("half_square", 100, 0.5, {"x0": 1.0}, {"lr": [0.5, 2.0, 2.1], "x0": [1.0, 3.0]})
    a = sweep.run(spec, progress=False)
    b = sweep.run({**spec, "outcome": {"settle": False}}, progress=False)
    np.testing.assert_array_equal(a.outcome.values, b.outcome.values)
    np.testing.assert_array_equal(a.stop_step.values, b.stop_step.values)
    # converged at lr 0.5: x_t = x0 / 2^t; settle = false takes all 100 updates
    np.testing.assert_allclose(b.final_x.values[0], np.array([1.0, 3.0]) * 0.5 ** 100, rtol=1e-5)
    assert np.all(np.abs(a.final_x.values[0]) > np.abs(b.final_x.values[0]))


def test_infinite_divergence_bounds_switch_the_test_off():
    # lr = 2.1 on x^2/2: |x_t| = 1.1^t |x0|; with the bounds off the run ends nan when the loss overflows
    spec = _fn("half_square", 2000, 2.1, {"x0": 1.0}, {"x0": [1.0]}, diverge_loss=math.inf,
               diverge_factor=math.inf, diverge_param=math.inf)
    ds = sweep.run(spec, progress=False)
    assert names(ds.outcome.values)[0] == "nan"
    # the loss 0.5 * x ** 2 overflows when x ** 2 does: |x| > sqrt(max float32)
    t_over = math.ceil(0.5 * math.log(float(np.finfo(np.float32).max)) / math.log(1.1))
    assert abs(int(ds.stop_step.values[0]) - t_over) <= 1


def test_every_outcome_code_is_reachable():
    seen = set()
    seen |= set(names(sweep.run(_fn("half_square", 100, 0.5, {"x0": 1.0}, {"lr": [0.5, 2.0, 3.0]}),
                                progress=False).outcome.values))
    seen |= set(names(sweep.run(_fn("uv_loss", 50, 0.5, {"u0": 0.0, "v0": 0.0}, {"u0": [0.0]}),
                                progress=False).outcome.values))
    seen |= set(names(sweep.run(_fn("sqrt_loss", 50, 0.1, {"x0": -1.0}, {"x0": [-1.0]}),
                                progress=False).outcome.values))
    seen |= set(names(sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 50, "lr": 0.01},
                                 "axes": {"x0": [1.0]}}, progress=False).outcome.values))
    seen |= set(names(sweep.run(_bias_free(0.1, 50, n=64, axes={"w0": [0.0]}), progress=False).outcome.values))
    assert seen == {o.name.lower() for o in Outcome}, seen


# --------------------------------------------------------------------------- Lyapunov exponent
def test_lyapunov_of_gd_on_linear_regression_is_the_log_of_the_jacobian_growth():
    # linear student on a linear teacher: loss mean((w x + b - x)^2) is quadratic, H = 2 [[E x^2, E x], [E x, 1]];
    # the GD map is affine with Jacobian J = I - lr H, so the exponent after n updates is log|J^n u0| / n exactly
    steps, lrs = 300, [0.3, 0.6, 0.9]
    spec = {"problem": {"name": "neuron", "activation": "linear", "teacher": "linear", "data": {"n": 256}},
            "train": {"steps": steps}, "outcome": {"lyapunov": True, "settle": False},
            "run": {"dtype": "float64"}, "axes": {"lr": lrs, "w0": [0.3, 2.0]}}
    ds = sweep.run(spec, progress=False)
    x, _ = dataset(sweep.parse_spec(spec))
    x = np.asarray(x, np.float64)
    H = 2 * np.array([[np.mean(x ** 2), np.mean(x)], [np.mean(x), 1.0]])  # order (w, b)
    lam = np.linalg.eigvalsh(H)
    for i, lr in enumerate(lrs):
        J = np.eye(2) - lr * H
        u = np.array([1.0, 1.0]) / np.sqrt(2)
        logs = 0.0
        for _ in range(steps):
            u = J @ u
            logs += np.log(np.linalg.norm(u))
            u /= np.linalg.norm(u)
        np.testing.assert_allclose(ds.lyapunov.values[i], logs / steps, rtol=1e-9)
        top = np.log(np.max(np.abs(1 - lr * lam)))
        assert abs(ds.lyapunov.values[i, 0] - top) < 0.02  # the asymptotic value log|1 - lr lambda| of the top mode


def test_lyapunov_is_positive_in_the_chaotic_band_and_negative_inside_a_basin():
    spec = _bias_free(2.3, 400, axes={"w0": {"linspace": [-2.0, 2.0, 8]}}, lyapunov=True)  # (w = 0 is flat: 0)
    hp, hm = _curvatures(spec)
    chaos = sweep.run(spec, progress=False).lyapunov.values
    lo, hi = sorted([np.log(abs(1 - 2.3 * hp)), np.log(abs(1 - 2.3 * hm))])
    assert np.all(chaos > 0) and np.all(chaos > lo - 1e-4) and np.all(chaos < hi + 1e-4)
    basin = sweep.run(_bias_free(0.5, 400, axes={"w0": [0.5, 1.5, 3.0]}, lyapunov=True), progress=False).lyapunov.values
    np.testing.assert_allclose(basin, np.log(abs(1 - 0.5 * hp)), rtol=1e-3)  # w > 0 stays in the linear branch
    assert np.all(basin < 0)


# --------------------------------------------------------------------------- events
def test_event_step_is_the_first_crossing_of_the_map():
    # bias-free ReLU neuron from w0 < 0: w' = (1 - lr h-) w, so w is positive after one update iff lr h- > 1
    spec = _bias_free(0.5, 100, n=512, axes={"lr": [0.5, 1.5, 2.2], "w0": [-1.0, -0.3]})
    spec["events"] = {"crossed": {"param": "w", "above": 0.0}}
    ds = sweep.run(spec, progress=False)
    _, hm = _curvatures(spec)
    want = np.where(np.array([0.5, 1.5, 2.2]) * hm > 1, 1, -1)[:, None] * np.ones((1, 2), int)
    np.testing.assert_array_equal(ds.crossed_step.values, want)
    np.testing.assert_array_equal(ds.crossed.values, (want > 0).astype(np.int8))


def test_event_with_stop_settles_the_run_at_that_step():
    # quartic: x' = x - 4 lr x^3; the first k with x_k < 0.5, from a NumPy float64 iteration
    lr, x0 = 0.01, 1.0
    x, k = x0, 0
    while x >= 0.5:
        x, k = x - 4 * lr * x ** 3, k + 1
    spec = {"problem": {"name": "quartic"}, "train": {"steps": 500, "lr": lr}, "run": {"dtype": "float64"},
            "axes": {"x0": [x0]}, "events": {"half": {"param": "x", "below": 0.5, "stop": True}}}
    ds = sweep.run(spec, progress=False)
    assert int(ds.half_step.values[0]) == k and int(ds.stop_step.values[0]) == k
    np.testing.assert_allclose(ds.final_x.values[0], x, rtol=1e-12)
    assert names(ds.outcome.values)[0] == "unfinished"  # stopped while still falling monotonically
    free = sweep.run({**spec, "events": {"half": {"param": "x", "below": 0.5}}}, progress=False)
    assert int(free.half_step.values[0]) == k and int(free.stop_step.values[0]) == 500


def test_events_over_array_parameters_any_before_all():
    spec = {"problem": {"name": "mlp", "widths": [4], "data": {"n": 32}}, "train": {"steps": 60, "lr": 0.5},
            "axes": {"init_scale": [0.5, 1.0, 2.0]},
            "events": {"any_up": {"param": "b0", "above": 0.05}, "all_up": {"param": "b0", "above": 0.05,
                                                                               "over": "all"}}}
    ds = sweep.run(spec, progress=False)
    a, b = ds.any_up_step.values, ds.all_up_step.values
    assert np.all((b < 0) | (a <= b)) and np.all((a >= 0) | (b < 0))


@pytest.mark.parametrize("events, msg", [
    ({"e": {"param": "nope", "above": 0.0}}, "is not a parameter"),
    ({"e": {"param": "w", "above": 0.0, "below": 1.0}}, "exactly one of above"),
    ({"e": {"param": "w", "abov": 0.0}}, "abov"),
    ({"outcome": {"param": "w", "above": 0.0}}, "result variable"),
    ({"e": {"param": "w", "above": 0.0, "over": "most"}}, "over"),
])
def test_bad_events_are_refused_before_any_compute(events, msg):
    spec = _bias_free(0.5, 10, n=16, axes={"w0": [1.0]})
    spec["events"] = events
    with pytest.raises(sweep.SpecError, match=msg):
        sweep.run(spec, progress=False)
