"""Second-order optimizers (seed 002): exact one-step answers, honest failure on singular systems."""
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import jax
import numpy as np
import pytest

import sweep
from sweep import engine
from sweep.engine import dataset
from sweep.second_order import make_direction

from helpers import names
from test_nets import assert_matches_reference, built, one, reference


def test_newton_on_the_bias_free_relu_neuron_lands_on_w_1_in_one_step():
    """relu(w x) learning relu(x): for w > 0, L = (w - 1)^2 mean(x+^2), a parabola: one Newton step is exact."""
    w0 = [0.05, 0.3, 1.7, 10.0, 200.0]
    ds = sweep.run({"problem": {"name": "neuron", "bias": False, "data": {"n": 20000}},
                    "train": {"steps": 5, "lr": 1.0, "optimizer": "newton"}, "axes": {"w0": w0}}, progress=False)
    assert np.all(names(ds.outcome.values) == "converged")
    assert np.all(ds.converge_step.values == 1)
    assert np.all(np.abs(ds.final_w.values - 1) <= 1e-6 + 2e-7 * np.array(w0))  # float32 rounding of w0 - g/H


def test_a_singular_hessian_is_nan_at_that_step_and_touches_no_other_run():
    """A dead ReLU (every pre-activation <= 0: zero gradient, zero Hessian) gives Newton's 0/0. The run is
    recorded as nan at step 0 with its parameters frozen; its neighbours are bit-identical to a sweep without it.
    Plain GD on the same point is dead, not nan."""
    pts = {"w0": [0.5, 1.5, 0.5, 2.0, 0.0], "b0": [0.2, -0.3, -6.0, 0.1, 0.0]}
    spec = {"problem": {"name": "neuron", "data": {"n": 512}}, "train": {"steps": 20, "lr": 1.0, "optimizer": "newton"},
            "axes": {"point": {"zip": pts}}}
    ds = sweep.run(spec, progress=False)
    out = names(ds.outcome.values)
    assert list(out[[2, 4]]) == ["nan", "nan"]  # b0 = -6: dead; (0, 0): every z = 0 and relu'(0) = 0
    assert np.all(ds.stop_step.values[[2, 4]] == 0)
    assert ds.final_w.values[2] == 0.5 and ds.final_b.values[2] == -6.0
    assert np.all(np.isfinite(ds.final_loss.values))
    live = {"w0": [0.5, 1.5, 0.7, 2.0, 0.9], "b0": [0.2, -0.3, 0.1, 0.1, 0.3]}
    other = sweep.run({**spec, "axes": {"point": {"zip": live}}}, progress=False)
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values[[0, 1, 3]], other[name].values[[0, 1, 3]], err_msg=name)
    gd = sweep.run({**spec, "train": {"steps": 20, "lr": 0.1}}, progress=False)
    assert names(gd.outcome.values[2]) == "dead"


def _one_step(spec, optimizer, damping):
    ds = sweep.run({**spec, "train": {"steps": 1, "lr": 1.0, "optimizer": optimizer, "damping": damping}},
                   dtype="float64", progress=False)
    return np.array([float(ds.final_w.values), float(ds.final_b.values)])


@pytest.mark.parametrize("optimizer", ["newton", "gauss_newton", "levenberg_marquardt"])
def test_on_linear_least_squares_one_undamped_step_is_the_least_squares_solution(optimizer):
    """Linear student w x + b fitting relu(x): a quadratic loss, so Newton = Gauss-Newton = LM (damping 0)
    jump to the lstsq solution in one step; with damping the step is the damped solve, in closed form."""
    spec = {"problem": {"name": "neuron", "activation": "linear", "teacher": "relu", "data": {"n": 300}},
            "init": {"w0": -1.3, "b0": 0.7}}
    x, y = (np.asarray(a, np.float64) for a in dataset(sweep.parse_spec(spec)))
    A = np.stack([x, np.ones_like(x)], axis=1)
    np.testing.assert_allclose(_one_step(spec, optimizer, 0.0), np.linalg.lstsq(A, y, rcond=None)[0], rtol=1e-9)
    p0 = np.array([-1.3, 0.7])
    J = np.sqrt(2 / len(x)) * A  # residuals sqrt(2/n) (f - y): loss = 1/2 |r|^2
    g = J.T @ (J @ p0 - np.sqrt(2 / len(x)) * y)
    JtJ = J.T @ J
    lam = 0.3
    damped = JtJ + lam * (np.diag(np.diag(JtJ)) if optimizer == "levenberg_marquardt" else np.eye(2))
    np.testing.assert_allclose(_one_step(spec, optimizer, lam), p0 - np.linalg.solve(damped, g), rtol=1e-9)


def test_levenberg_marquardt_converges_in_one_step_on_a_realisable_linear_problem():
    ds = sweep.run({"problem": {"name": "neuron", "activation": "linear", "teacher": "linear", "data": {"n": 128}},
                    "train": {"steps": 10, "lr": 1.0, "optimizer": "levenberg_marquardt"},
                    "axes": {"w0": [-3.0, 0.2, 5.0], "b0": [-1.0, 2.0]}}, progress=False)
    assert np.all(names(ds.outcome.values) == "converged") and np.all(ds.converge_step.values == 1)


def test_newton_on_the_quartic_shrinks_x_by_two_thirds_per_step():
    """x^4: x - 4x^3 / 12x^2 = 2x/3. A problem without residuals: Newton only."""
    ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 6, "lr": 1.0, "optimizer": "newton"},
                    "outcome": {"loss_atol": 1e-30}, "axes": {"x0": [0.5, -2.0, 3.0]}}, progress=False)
    np.testing.assert_allclose(ds.final_x.values, np.array([0.5, -2.0, 3.0]) * (2 / 3) ** 6, rtol=1e-5)


def test_least_squares_methods_need_residuals():
    with pytest.raises(sweep.SpecError, match="train.optimizer = 'gauss_newton'.*least-squares"):
        sweep.parse_spec({"problem": {"name": "quartic"}, "train": {"optimizer": "gauss_newton"}})
    with pytest.raises(sweep.SpecError, match="levenberg_marquardt"):
        sweep.parse_spec({"problem": {"name": "mlp", "objective": "xent"},
                          "axes": {"optimizer": ["sgd", "levenberg_marquardt"]}})
    sweep.parse_spec({"problem": {"name": "mlp", "objective": "mse"}, "train": {"optimizer": "levenberg_marquardt"}})
    with pytest.raises(ValueError, match="needs a least-squares problem"):
        make_direction(built({"problem": {"name": "quartic"}})[1], "gauss_newton")


def test_damping_is_traced_and_the_methods_agree_with_the_loop():
    """damping and lr are per-trajectory values: a new damping grid adds no compile; vmap == loop."""
    spec = {"problem": {"name": "two_layer_1d", "width": 3}, "train": {"steps": 15, "lr": 0.5,
                                                                       "optimizer": "levenberg_marquardt"},
            "axes": {"seed": {"range": 3}, "damping": [0.01, 1.0]}}
    ds = sweep.run(spec, progress=False)
    assert_matches_reference(ds, reference(spec), rtol=1e-3)
    n = engine.TRACE_COUNT["n"]
    sweep.run({**spec, "train": {**spec["train"], "lr": 0.9}, "axes": {"seed": {"range": 3},
                                                                       "damping": [0.1, 3.0]}}, progress=False)
    assert engine.TRACE_COUNT["n"] == n


def test_newton_step_of_a_network_matches_the_dense_solve():
    """The step is -lr (H + damping I)^-1 g over the flattened parameters (here a two-layer 1-D net)."""
    _, problem, v, keys, data = built({"problem": {"name": "two_layer_1d", "width": 3},
                                       "init": {"bias_std": 0.3}, "train": {"lr": 0.7, "damping": 0.2}})
    vi = one(v)
    p = problem.init(keys[0], vi)
    loss, grad, step = jax.jit(make_direction(problem, "newton"))(p, data, vi)
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    H = np.asarray(jax.jit(jax.hessian(lambda q: problem.loss(unravel(q), data, vi)))(flat), np.float64)
    g = np.asarray(jax.flatten_util.ravel_pytree(grad)[0], np.float64)
    want = -0.7 * np.linalg.solve(H + 0.2 * np.eye(len(g)), g)
    np.testing.assert_allclose(np.asarray(jax.flatten_util.ravel_pytree(step)[0]), want, rtol=2e-3, atol=1e-6)
    assert float(loss) == pytest.approx(float(jax.jit(problem.loss)(p, data, vi)), rel=1e-6)


def test_gauss_newton_on_a_dead_mlp_is_nan_undamped_and_dead_damped():
    """Every hidden ReLU off: J = 0 and g = 0. Undamped, J^T J = 0 is singular (0/0: nan at step 0); damped, the
    step is exactly 0 and the run is dead. A live network trains."""
    ds = sweep.run({"problem": {"name": "mlp", "widths": [3], "out_bias": False, "data": {"source": "blobs", "n": 30}},
                    "train": {"steps": 12, "lr": 1.0, "optimizer": "gauss_newton"}, "init": {"init_scale": 0.1},
                    "axes": {"bias_init": [0.1, -5.0], "damping": [0.0, 1e-3]}}, progress=False)
    out = names(ds.outcome.values)
    assert out[1, 0] == "nan" and ds.stop_step.values[1, 0] == 0
    assert out[1, 1] == "dead"
    assert ds.final_loss.values[0, 1] < 0.5 * ds.final_loss.values[1, 1]


# --------------------------------------------------------------------------- per-optimizer lr defaults
NEURON = {"problem": {"name": "neuron", "bias": False, "data": {"n": 4096}}, "axes": {"w0": [0.3, 1.7, 10.0]}}


def test_newton_without_lr_takes_the_full_step_and_lr_0_01_does_not():
    """relu(w x) learning relu(x) with w > 0: L = (w - 1)^2 m, m = mean(x+^2), a parabola. Newton with no lr takes
    its default lr = 1: w0 - L'/L'' = 1 exactly, converged at step 1. An explicit lr = 0.01 still wins: each step
    keeps 99% of the error, w_t = 1 + (w0 - 1) 0.99^t, far from converged after 5 steps."""
    w0 = np.array(NEURON["axes"]["w0"])
    for optimizer in ("newton", "gauss_newton", "levenberg_marquardt"):
        spec = {**NEURON, "train": {"steps": 5, "optimizer": optimizer}}
        assert sweep.parse_spec(spec).train["lr"] == 1.0  # written into the stored spec
        ds = sweep.run(spec, progress=False)
        assert np.all(names(ds.outcome.values) == "converged") and np.all(ds.converge_step.values == 1), optimizer
        assert np.all(np.abs(ds.final_w.values - 1) <= 1e-6 + 2e-7 * w0)
        slow = sweep.run({**spec, "train": {**spec["train"], "lr": 0.01}}, dtype="float64", progress=False)
        np.testing.assert_allclose(slow.final_w.values, 1 + (w0 - 1) * 0.99 ** 5, rtol=1e-12)
        assert not np.any(names(slow.outcome.values) == "converged")


def test_a_sweep_over_optimizers_without_lr_gives_each_its_own_default():
    """sgd keeps 0.01 (GD on the parabola: w_t = 1 + (w0 - 1)(1 - 2 lr m)^t, m from the run's own data), newton
    gets 1; an lr axis overrides both."""
    spec = {**NEURON, "train": {"steps": 5}, "axes": {**NEURON["axes"], "optimizer": ["sgd", "newton"]}}
    parsed = sweep.parse_spec(spec)
    assert parsed.train["lr"] is None and "lr" not in parsed.raw["train"]
    assert sweep.parse_spec(tomllib.loads(parsed.to_toml())).hash() == parsed.hash()  # the stored spec re-parses
    ds = sweep.run(spec, dtype="float64", progress=False)
    x = np.asarray(dataset(parsed, dtype="float64")[0], np.float64)
    m = np.mean(np.maximum(x, 0) ** 2)
    w0 = np.array(NEURON["axes"]["w0"])
    np.testing.assert_allclose(ds.final_w.sel(optimizer="sgd").values, 1 + (w0 - 1) * (1 - 2 * 0.01 * m) ** 5,
                               rtol=1e-12)
    np.testing.assert_allclose(ds.final_w.sel(optimizer="newton").values, 1.0, rtol=0, atol=1e-12)
    fixed = sweep.run({**spec, "axes": {**spec["axes"], "lr": [0.5]}}, dtype="float64", progress=False)
    np.testing.assert_allclose(fixed.final_w.sel(optimizer="newton", lr=0.5).values, 1 + (w0 - 1) * 0.5 ** 5,
                               rtol=1e-12)
    with pytest.raises(sweep.SpecError, match=r"train.lr = 0.0: must be a finite number > 0"):
        sweep.parse_spec({**spec, "train": {"lr": 0.0}})
