"""Per-trajectory data weights and initial weights: two_layer_1d's multinomial data weights (drawn from each
trajectory's key, never trained, used by every weight-dependent metric), the exact linear fit in JAX, and initial
weights / data given per trajectory by the rows of a file (``init_row``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import engine
from sweep.nets import DEFAULT_1D_X, DEFAULT_1D_Y, linear_fit_loss, linear_fit_loss_jax

from test_nets import assert_matches_reference, built, np_two_layer_lr, one, reference


def final_params(spec_dict, chunk=64):
    """{name: (T, ...)} final parameters of every trajectory (flat grid order), from the engine's compiled
    chunk functions (start, then every step), plus the run's outcome and stop_step."""
    spec = sweep.parse_spec(spec_dict)
    plan = engine.make_plan(spec, chunk)
    out = {}
    for c in engine.chunks(plan):
        v, keys, data_key = engine.chunk_inputs(plan, c)
        fns = engine.chunk_fn(plan, c.group)
        state = fns.advance(fns.start(v, keys, data_key), v, data_key, 0, spec.train["steps"] + 1)
        leaves = {**state.params, "outcome": state.code, "stop_step": state.stop_step}
        for k, a in leaves.items():
            a = np.asarray(a)[: c.valid]
            out.setdefault(k, np.zeros((spec.n_trajectories,) + a.shape[1:], a.dtype))[c.index[: c.valid]] = a
    return out


# --------------------------------------------------------------------------- the exact linear fit, in JAX
CASES = {"weights": None, "one-side-empty": [0, 0, 0, 1.0, 2.0, 1.0, 3.0],
         "one-point-left": [0, 0, 1.0, 2.0, 1.0, 0.5, 1.0], "one-point-a-side": [0, 0, 1.0, 0, 3.0, 0, 0],
         "all-on-one-point": [0, 0, 0, 0, 1.0, 0, 0],
         "uneven": [5.0, 1e-3, 0, 0, 2.0, 0, 1.0]}


@pytest.mark.parametrize("case", list(CASES))
def test_linear_fit_loss_jax_matches_numpy_lstsq(case):
    """The per-trajectory fit (SVD least squares) equals NumPy's lstsq in float64, also when the 3-column design is
    rank-deficient: no weight on one side of 0 (x- column zero), one point on each side, one point in all."""
    rng = np.random.default_rng(7)
    x = np.array([-2.0, -1.3, -0.6, 0.4, 0.9, 1.7, 2.5])
    y = rng.normal(size=7) + x ** 2
    p = rng.uniform(0.1, 1.0, 7) if CASES[case] is None else np.array(CASES[case])
    p = p / p.sum()
    want = linear_fit_loss(x, y, p)
    if case in ("one-point-a-side", "all-on-one-point"):
        assert want < 1e-20  # the fit passes through every weighted point
    got = float(jax.jit(linear_fit_loss_jax)(*(jnp.asarray(a, jnp.float32) for a in (x, y, p))))
    assert got == pytest.approx(want, rel=2e-5, abs=1e-6)
    assert got >= -1e-7


def test_linear_fit_loss_jax_of_the_default_data_is_one_32nd():
    p = jnp.full(8, 1 / 8, jnp.float32)
    got = jax.jit(linear_fit_loss_jax)(jnp.asarray(DEFAULT_1D_X, jnp.float32), jnp.asarray(DEFAULT_1D_Y, jnp.float32),
                                       p)
    assert float(got) == pytest.approx(1 / 32, rel=1e-6)


# --------------------------------------------------------------------------- multinomial data weights
DRAW = {"problem": {"name": "two_layer_1d", "width": 4, "p_draw": "multinomial", "p_samples": 6,
                    "p": [1.0, 1.0, 0.0, 2.0, 1.0, 0.0, 1.0, 2.0]},
        "train": {"steps": 200, "lr": 0.05}, "init": {"bias_std": 0.3}, "axes": {"seed": {"range": 8}}}


def test_drawn_weights_are_counts_over_m_from_each_trajectorys_key():
    _, problem, v, keys, data = built(DRAW)
    probs = np.asarray(data[2], np.float64)
    ws = []
    for i in range(8):
        w = np.asarray(problem.init(keys[i], one(v, i))["data_weights"], np.float64)
        counts = w * 6
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-5)  # counts / m, m = 6 draws
        assert np.round(counts).sum() == 6 and np.all(w[probs == 0] == 0)  # never a point with probability 0
        np.testing.assert_array_equal(w, np.asarray(problem.init(keys[i], one(v, i))["data_weights"]))
        ws.append(tuple(w))
    assert len(set(ws)) >= 6  # a new draw for (nearly) every seed value
    # m draws of the given probabilities: over many keys the mean weight is p
    many = jax.jit(jax.vmap(lambda k: problem.init(k, one(v))["data_weights"]))(jax.random.split(keys[0], 4000))
    np.testing.assert_allclose(np.asarray(many).mean(0), probs, atol=0.015)


def test_drawn_weights_are_never_trained_and_results_do_not_depend_on_chunking():
    """adamw with a large weight decay would shrink any parameter: the carried weights stay as drawn. (Chunking is
    compared with sgd: with adam-family optimizers this problem's last bits can depend on the chunk size, with or
    without drawn weights.)"""
    spec = {**DRAW, "train": {**DRAW["train"], "optimizer": "adamw", "weight_decay": 0.5, "lr": 0.02}}
    _, problem, v, keys, _ = built(spec)
    fin = final_params(spec, chunk=3)
    for i in range(8):
        drawn = np.asarray(problem.init(keys[i], one(v, i))["data_weights"])
        np.testing.assert_array_equal(fin["data_weights"][i], drawn)
    assert np.any(fin["stop_step"] > 0) and not np.allclose(fin["a"][0], problem.init(keys[0], one(v, 0))["a"])
    a, b = sweep.run(DRAW, chunk_size=3, progress=False), sweep.run(DRAW, chunk_size=8, progress=False)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_drawn_weights_vmap_equals_loop():
    assert_matches_reference(sweep.run(DRAW, progress=False), reference(DRAW))


@pytest.mark.parametrize("train", [{"optimizer": "sgd", "lr": 0.05, "steps": 200},
                                   {"optimizer": "newton", "lr": 0.5, "damping": 0.0, "steps": 6},
                                   {"optimizer": "gauss_newton", "lr": 0.5, "damping": 1e-3, "steps": 10}],
                         ids=["sgd", "newton", "gauss_newton"])
def test_a_drawn_trajectory_equals_a_fixed_run_on_its_weights(train):
    """Trajectory i with multinomial weights w_i trains exactly like the fixed-weight problem with p = w_i from the same
    key (same initial network): the loss, its second-order systems (the carried weights are not parameters) and every
    metric use the trajectory's own weights. m = 8 draws: counts/8 are binary fractions summing to exactly 1, so the
    fixed problem's normalised p is w_i to the bit (with m = 6 it differs from w_i by an ulp, which a degenerate
    two-point fit under Gauss-Newton amplifies past any tolerance)."""
    spec = {**DRAW, "problem": {**DRAW["problem"], "p_samples": 8}, "train": train, "axes": {"seed": {"range": 4}}}
    _, problem, v, keys, data = built(spec)
    drawn = sweep.run(spec, progress=False)
    x = np.asarray(data[0], np.float64)
    for i in range(4):
        w = np.asarray(problem.init(keys[i], one(v, i))["data_weights"], np.float64)
        fixed = sweep.run({**spec, "problem": {**spec["problem"], "p_draw": "fixed", "p": w.tolist()}}, progress=False)
        got, want = drawn.isel(seed=i), fixed.isel(seed=i)
        assert int(got.outcome) == int(want.outcome) and int(got.stop_step) == int(want.stop_step)
        if int(got.outcome) in (4, 5):  # diverged / nan: compare nothing else
            continue
        for name in ("final_loss", "final_c", "linear_fit_loss", "max_abs_kink", "dead_fraction"):
            np.testing.assert_allclose(got[name].values, want[name].values, rtol=2e-4, atol=1e-6, err_msg=name)
        for name in ("beat_linear", "kink_reached_data", "kink_reached_data_step"):
            assert int(got[name]) == int(want[name]), name
        assert float(got.linear_fit_loss) == pytest.approx(linear_fit_loss(x, DEFAULT_1D_Y, w), rel=2e-5, abs=1e-6)
        assert float(got.data_support) == (w > 0).sum()
        assert float(got.data_margin) == pytest.approx(np.abs(x[w > 0]).min())
    assert "data_support" not in fixed


def test_drawn_weights_metrics_see_a_side_without_data():
    """All the weight on x > 0 (p is 0 on the left): the linear-on-each-side fit is rank-deficient (no x- column) and
    still exact, the margin is the nearest point drawn, and a relu unit with a < 0 (zero bias) is dead on the data."""
    spec = {"problem": {"name": "two_layer_1d", "width": 3, "p_draw": "multinomial", "p_samples": 7,
                        "p": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]},
            "train": {"steps": 1, "lr": 1e-3}, "axes": {"seed": {"range": 6}}}
    _, problem, v, keys, data = built(spec)
    ds = sweep.run(spec, progress=False)
    x = np.asarray(data[0], np.float64)
    for i in range(6):
        p = problem.init(keys[i], one(v, i))
        w = np.asarray(p["data_weights"], np.float64)
        assert np.all(w[:4] == 0)
        assert float(ds.data_margin.values[i]) == np.abs(x[w > 0]).min()
        a = np.asarray(p["a"], np.float64)
        dead = [bool((a[u] * x[w > 0] <= 0).all()) for u in range(3)]  # zero biases: z = a x
        assert float(ds.dead_fraction.values[i]) == pytest.approx(np.mean(dead))
        assert float(ds.linear_fit_loss.values[i]) == pytest.approx(linear_fit_loss(x, DEFAULT_1D_Y, w), rel=2e-5,
                                                                     abs=1e-6)
    assert len(set(ds.data_margin.values.tolist())) > 1 or len(set(ds.data_support.values.tolist())) > 1


# --------------------------------------------------------------------------- rows of a file: initial weights
def np_gd_lr(w0, w1, x, y, lr, steps):
    """Plain gradient descent on two_layer_lr (standard param, tanh) by hand, float64."""
    p = {"W0": w0.astype(np.float64), "W1": w1.astype(np.float64)}
    for _ in range(steps):
        _, g = np_two_layer_lr(p, x, y, 1.0, 1.0)
        p = {k: p[k] - lr * g[k] for k in p}
    return p


def test_two_layer_lr_rows_of_an_init_file_are_used_exactly(tmp_path):
    """K = 3 weight sets in a file, one per init_row (the W1 row shared): the engine's final parameters equal a
    hand-written NumPy gradient descent from the same rows; a seed axis does not change them."""
    rng = np.random.default_rng(3)
    d, width, K = 3, 4, 3
    x, y = rng.normal(size=(6, d)), rng.normal(size=6)
    W0 = rng.normal(size=(K, width, d)) / np.sqrt(d)
    W1 = rng.normal(size=width) / 2
    np.savez(tmp_path / "init.npz", W0=W0, W1=W1)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    spec = {"problem": {"name": "two_layer_lr", "file": str(tmp_path / "data.npz"), "width": width,
                        "init_file": str(tmp_path / "init.npz")},
            "train": {"steps": 25, "lr": 0.2}, "axes": {"init_row": {"range": K}, "seed": {"range": 2}}}
    fin = final_params(spec)
    ds = sweep.run(spec, progress=False)
    assert np.all(ds.stop_step.values == 25)  # no run settled early: every step was taken
    for r in range(K):
        want = np_gd_lr(W0[r], W1, x, y, 0.2, 25)
        for s in range(2):
            i = r * 2 + s
            np.testing.assert_allclose(fin["W0"][i], want["W0"], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(fin["W1"][i], want["W1"], rtol=1e-4, atol=1e-6)
        _, problem, v, keys, data = built({**spec, "axes": {"init_row": [r]}})
        np.testing.assert_array_equal(problem.init(keys[0], one(v))["W0"], W0[r].astype(np.float32))
    loss_of = lambda p: 0.5 * np.mean((np.tanh(x @ p["W0"].T) @ p["W1"] - y) ** 2)  # noqa: E731
    np.testing.assert_allclose(ds.final_loss.values[:, 0], [loss_of(np_gd_lr(W0[r], W1, x, y, 0.2, 25))
                                                           for r in range(K)], rtol=1e-4)
    assert not np.allclose(fin["W0"][0], fin["W0"][2])


@pytest.mark.parametrize("name", ["mlp", "two_layer_1d"])
def test_rows_of_an_init_file_give_each_trajectory_its_start(name, tmp_path):
    """mlp and two_layer_1d: each init_row starts from its row (weights times init_scale, the rest as given; arrays
    without rows shared, parameters not in the file drawn as usual), then trains like a hand-written JAX gradient
    descent loop on the problem's loss from that start."""
    rng = np.random.default_rng(4)
    K = 3
    if name == "mlp":
        arrays = {"W0": rng.normal(size=(K, 5, 2)), "b0": rng.normal(size=(K, 5)), "W1": rng.normal(size=(2, 5))}
        problem_opts = {"name": "mlp", "widths": [5], "bias_dist": "like_weights",
                        "data": {"source": "moons", "n": 16}}
        weights, drawn, rowed = ("W0", "W1"), ("b1",), ("W0", "b0")
    else:
        arrays = {"a": rng.normal(size=(K, 4)), "b": rng.normal(size=(K, 4)) * 0.3, "c": np.array([0.1, -0.2, 0.3])}
        problem_opts = {"name": "two_layer_1d", "width": 4}
        weights, drawn, rowed = ("a",), ("w",), ("a", "b", "c")
    np.savez(tmp_path / "init.npz", **arrays)
    spec = {"problem": {**problem_opts, "init_file": str(tmp_path / "init.npz")},
            "train": {"steps": 20, "lr": 0.05}, "init": {"init_scale": 0.5},
            "axes": {"init_row": [2, 0, 1], "target": [0.0, 1e-3]}}  # (a seed axis would split the mlp's groups)
    _, problem, v, keys, data = built(spec)
    fin = final_params(spec)
    step = jax.jit(lambda p, vi: jax.tree_util.tree_map(lambda a, g: a - 0.05 * g, p,
                                                        jax.grad(problem.loss)(p, data, vi)))
    for i, r in enumerate([2, 2, 0, 0, 1, 1]):
        vi = one(v, i)
        p = problem.init(keys[i], vi)
        for k, a in arrays.items():
            row = a[r] if k in rowed else a
            np.testing.assert_allclose(p[k], (0.5 if k in weights else 1.0) * row.astype(np.float32), rtol=1e-7,
                                       err_msg=k)
        for k in drawn:  # not in the file: drawn from the trajectory's key, like without a file
            assert not np.array_equal(np.asarray(p[k]), np.asarray(problem.init(keys[i ^ 1], vi)[k]))
        for _ in range(20):
            p = step(p, vi)
        assert fin["stop_step"][i] == 20
        for k in p:
            np.testing.assert_allclose(fin[k][i], p[k], rtol=2e-4, atol=2e-6, err_msg=k)


def test_init_row_is_traced(tmp_path):
    """init_row values are per-trajectory (a float holding the integer): a new row grid adds no compile."""
    np.savez(tmp_path / "w.npz", a=np.random.default_rng(5).normal(size=(4, 3)))
    spec = {"problem": {"name": "two_layer_1d", "width": 3, "init_file": str(tmp_path / "w.npz")},
            "train": {"steps": 5, "lr": 0.01}, "axes": {"init_row": [0, 1]}}
    sweep.run(spec, progress=False)
    n = engine.TRACE_COUNT["n"]
    ds = sweep.run({**spec, "axes": {"init_row": [3, 2]}}, progress=False)
    assert engine.TRACE_COUNT["n"] == n
    assert list(ds.init_row.values) == [3, 2]


# --------------------------------------------------------------------------- rows of a file: data
def test_two_layer_1d_data_rows_give_each_trajectory_its_dataset(tmp_path):
    """x shared, y and p with K = 2 rows: each trajectory trains on its row and its metrics are its row's."""
    x = np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0])
    y = np.stack([x ** 2, np.abs(x) ** 3])
    p = np.array([[1, 1, 1, 1, 1, 1], [1, 2, 0, 0, 1, 3.0]])
    np.savez(tmp_path / "d.npz", x=x, y=y, p=p)
    spec = {"problem": {"name": "two_layer_1d", "width": 4, "file": str(tmp_path / "d.npz")},
            "train": {"steps": 100, "lr": 0.05}, "axes": {"init_row": {"range": 2}, "seed": {"range": 2}}}
    ds = sweep.run(spec, progress=False)
    assert_matches_reference(ds, reference(spec))
    for r in range(2):
        w = p[r] / p[r].sum()
        np.testing.assert_allclose(ds.linear_fit_loss.values[r], linear_fit_loss(x, y[r], w), rtol=2e-5, atol=1e-6)
        assert np.all(ds.data_margin.values[r] == (0.5 if r == 0 else 1.0))
        assert np.all(ds.data_support.values[r] == (w > 0).sum())
        _, problem, v, keys, data = built({**spec, "axes": {"init_row": [r]}})
        q = problem.init(keys[0], one(v))
        vi = one(v)
        a, b, ww, c = (np.asarray(q[k], np.float64) for k in "abwc")
        f = c + np.maximum(a[None, :] * x[:, None] + b[None, :], 0) @ ww
        want = 0.5 * np.sum(w * (f - y[r]) ** 2)
        assert float(jax.jit(problem.loss)(q, data, vi)) == pytest.approx(want, rel=1e-5)


def test_two_layer_lr_data_rows(tmp_path):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = {"problem": {"name": "two_layer_lr", "width": 4, "file": str(tmp_path / "d.npz"), "trainable_k": 3},
            "train": {"steps": 30, "lr": 0.3}, "axes": {"init_row": {"range": 3}, "seed": {"range": 2}}}
    ds = sweep.run(spec, progress=False)
    assert_matches_reference(ds, reference(spec))
    _, problem, v, keys, data = built(spec)
    for i in range(6):
        r = i // 2
        p = problem.init(keys[i], one(v, i))
        want, _ = np_two_layer_lr(p, x[r], y[r], 1.0, 1.0)
        assert float(jax.jit(problem.loss)(p, data, one(v, i))) == pytest.approx(want, rel=1e-5)
