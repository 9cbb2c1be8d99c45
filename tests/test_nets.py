"""The network problems (mlp, two_layer_1d, two_layer_lr) and the neuron's prelu / maxout students:
hand-written NumPy references, vmap == loop, and known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import engine, layout
from sweep.nets import DEFAULT_1D_X, DEFAULT_1D_Y, linear_fit_loss
from sweep.outcomes import Outcome
from sweep.step import make_trajectory, run_one

from helpers import names


def built(spec_dict):
    """(spec, plan, problem of the first group, traced values v, trajectory keys, data) for a spec."""
    spec = sweep.parse_spec(spec_dict)
    plan = engine.make_plan(spec, 64)
    c = next(engine.chunks(plan))
    v, keys, data_key = engine.chunk_inputs(plan, c)
    problem = engine.problem_for(plan, c.group)
    n = spec.problem_options.get("data", {}).get("n", 0)
    data = None if problem.sample is None else problem.sample(data_key, n)
    if data is not None:  # in the run's dtype, as the engine casts it (file data are float64 while x64 is on)
        data = jax.tree_util.tree_map(lambda a: a.astype(plan.dtype), data)
    return spec, problem._replace(init=jax.jit(problem.init)), v, keys, data


def one(v, i=0):
    return {k: x[i] for k, x in v.items()}


def point_mean(problem):
    """The mean of the per-point losses (what the engine's points layout averages)."""
    return jax.jit(lambda p, data, v: jnp.mean(jax.vmap(problem.point_loss, (None, 0, None))(p, data, v)))


def half_r2(problem):
    return jax.jit(lambda p, data, v: 0.5 * jnp.sum(problem.residuals(p, data, v) ** 2))


def reference(spec_dict, dtype="float32"):
    """Every trajectory run alone through step.run_one (no vmap over trajectories), one jit per group."""
    spec = sweep.parse_spec(spec_dict)
    plan = engine.make_plan(spec, 1, dtype)
    out, fns = {}, {}
    for c in engine.chunks(plan):
        v, keys, data_key = engine.chunk_inputs(plan, c)
        skey = engine._static_key(plan, c.group)
        if skey not in fns:
            problem = engine.problem_for(plan, c.group)
            static = {**spec.train, **c.group.static}
            traj = make_trajectory(problem, static["optimizer"], spec.train["steps"], spec.thresholds(),
                                   jnp.dtype(dtype), static["lr_mode"])
            n = spec.problem_options.get("data", {}).get("n", 0)

            def run(key, vals, data_key, problem=problem, traj=traj, n=n):
                data = jax.tree_util.tree_map(lambda a: a.astype(dtype), problem.sample(data_key, n))
                return run_one(problem, traj, spec.train["steps"], key, vals, data)

            fns[skey] = jax.jit(run)
        for j in range(c.valid):  # a chunk holds one trajectory per device
            res = fns[skey](keys[j], one(v, j), data_key)
            for k, x in res.items():
                out.setdefault(k, np.zeros(spec.n_trajectories, np.asarray(x).dtype))[c.index[j]] = x
    return {k: x.reshape(spec.shape) for k, x in out.items()}


def assert_matches_reference(ds, ref, rtol=1e-4):
    np.testing.assert_array_equal(ds.outcome.values, ref["outcome"])
    np.testing.assert_array_equal(ds.stop_step.values, ref["stop_step"])
    ok = ~np.isin(ds.outcome.values, [Outcome.DIVERGED, Outcome.NAN, Outcome.OSCILLATING])
    assert ok.sum() >= 2
    for name in ds.data_vars:
        if ds[name].dtype.kind == "f":
            np.testing.assert_allclose(ds[name].values[ok], ref[name][ok], rtol=rtol, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(ds[name].values[ok], ref[name][ok], err_msg=name)


# --------------------------------------------------------------------------- NumPy references
def np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_mlp(p, x, y, L, out_bias, objective):
    """Loss and gradients of a ReLU MLP (softmax output), by hand."""
    W = [np.asarray(p[f"W{l}"], np.float64) for l in range(L + 1)]
    b = [np.asarray(p[f"b{l}"], np.float64) if f"b{l}" in p else 0.0 for l in range(L + 1)]
    hs, zs, h = [x], [], x
    for l in range(L):
        z = h @ W[l].T + b[l]
        zs.append(z)
        h = np.maximum(z, 0.0)
        hs.append(h)
    prob = np_softmax(h @ W[L].T + b[L])
    n, C = y.shape
    if objective == "mse":
        loss = np.mean((prob - y) ** 2)
        gp = 2 * (prob - y) / (n * C)
        g = prob * (gp - (gp * prob).sum(1, keepdims=True))
    else:
        loss = -np.mean((y * np.log(prob)).sum(1))
        g = (prob - y) / n
    grads = {}
    for l in range(L, -1, -1):
        grads[f"W{l}"] = g.T @ hs[l]
        if l < L or out_bias:
            grads[f"b{l}"] = g.sum(0)
        if l > 0:
            g = (g @ W[l]) * (zs[l - 1] > 0)
    return loss, grads


@pytest.mark.parametrize("objective", ["mse", "xent"])
def test_mlp_loss_and_gradient_match_numpy(objective):
    spec, problem, v, keys, data = built({
        "problem": {"name": "mlp", "widths": [4, 3], "objective": objective, "init_dist": "he",
                    "data": {"source": "blobs", "dim": 3, "classes": 4, "n": 7, "noise": 0.3}},
        "init": {"bias_init": 0.05}})
    x, y = (np.asarray(a, np.float64) for a in data)
    assert x.shape == (7, 3) and y.shape == (7, 4) and np.all(y.sum(1) == 1)
    for i in range(3):
        p = problem.init(keys[i], one(v, i))
        assert {k: a.shape for k, a in p.items()} == {"W0": (4, 3), "b0": (4,), "W1": (3, 4), "b1": (3,),
                                                     "W2": (4, 3), "b2": (4,)}
        loss, grad = jax.jit(jax.value_and_grad(problem.loss))(p, data, one(v, i))
        ref_loss, ref_grad = np_mlp(p, x, y, 2, True, objective)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        for k in ref_grad:
            np.testing.assert_allclose(grad[k], ref_grad[k], rtol=1e-4, atol=1e-7, err_msg=k)
        np.testing.assert_allclose(point_mean(problem)(p, data, one(v, i)), loss, rtol=1e-6)
        if objective == "mse":  # least squares: loss = 1/2 |r|^2
            np.testing.assert_allclose(half_r2(problem)(p, data, one(v, i)), loss, rtol=1e-5)
    assert problem.residuals is None if objective == "xent" else problem.residuals is not None


@pytest.mark.parametrize("dist", ["uniform", "normal", "he", "glorot"])
def test_mlp_init_distributions(dist):
    spec, problem, v, keys, _ = built({
        "problem": {"name": "mlp", "widths": [64], "init_dist": dist, "bias_dist": "like_weights",
                    "data": {"source": "blobs", "dim": 4}},
        "init": {"bias_init": 0.1}, "axes": {"init_scale": [0.5, 2.0]}})
    for i, s in enumerate([0.5, 2.0]):
        p = problem.init(keys[i], one(v, i))
        w = np.asarray(p["W0"])
        assert w.shape == (64, 4) and p["W1"].shape == (3, 64)
        if dist == "uniform":
            assert np.abs(w).max() <= s and np.abs(w).max() > 0.9 * s
        if dist == "glorot":
            lim = s * np.sqrt(6 / (4 + 64))
            assert np.abs(w).max() <= lim and np.abs(w).max() > 0.9 * lim
        if dist in ("normal", "he"):
            std = s * (np.sqrt(2 / 4) if dist == "he" else 1.0)
            assert 0.8 * std < w.std() < 1.2 * std
        assert abs(np.asarray(p["b0"]).mean() - 0.1) < 0.5 * s  # bias_init plus a draw like the weights
    again = problem.init(keys[0], one(v, 0))
    np.testing.assert_array_equal(again["W0"], problem.init(keys[0], one(v, 0))["W0"])
    assert not np.array_equal(np.asarray(problem.init(keys[1], one(v, 0))["W0"]), np.asarray(again["W0"]))


def np_two_layer_1d(p, x, y, w8, s):
    a, b, w, c = (np.asarray(p[k], np.float64) for k in "abwc")
    z = a[None, :] * x[:, None] + b[None, :]
    h = np.maximum(z, 0)
    r = c + s * h @ w - y
    pr = w8 * r
    dz = s * pr[:, None] * w[None, :] * (z > 0)
    return 0.5 * np.sum(w8 * r * r), {"a": (dz * x[:, None]).sum(0), "b": dz.sum(0), "w": s * h.T @ pr,
                                      "c": pr.sum()}


@pytest.mark.parametrize("param", ["standard", "ntk"])
def test_two_layer_1d_loss_and_gradient_match_numpy(param):
    xs, ys, ps = [-1.5, -0.4, 0.3, 0.9, 2.0], [1.0, -0.2, 0.5, 0.1, 3.0], [1.0, 2.0, 1.0, 0.5, 0.5]
    spec, problem, v, keys, data = built({
        "problem": {"name": "two_layer_1d", "width": 6, "param": param, "x": xs, "y": ys, "p": ps},
        "init": {"bias_std": 0.5}, "axes": {"seed": {"range": 3}}})
    x, y, w8 = (np.asarray(a, np.float64) for a in data)
    np.testing.assert_allclose(w8, np.array(ps) / sum(ps), rtol=1e-6)
    s = np.sqrt(2 / 6) if param == "ntk" else 1.0
    for i in range(3):
        p = problem.init(keys[i], one(v, i))
        assert p["a"].shape == (6,) and p["c"].shape == () and float(p["c"]) == 0.0
        loss, grad = jax.jit(jax.value_and_grad(problem.loss))(p, data, one(v, i))
        ref_loss, ref_grad = np_two_layer_1d(p, x, y, w8, s)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        for k in "abwc":
            np.testing.assert_allclose(grad[k], ref_grad[k], rtol=1e-4, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(point_mean(problem)(p, data, one(v, i)), loss, rtol=1e-5)
        np.testing.assert_allclose(half_r2(problem)(p, data, one(v, i)), loss, rtol=1e-5)


def np_two_layer_lr(p, x, y, in_s, out_s):
    W0, W1 = np.asarray(p["W0"], np.float64), np.asarray(p["W1"], np.float64)
    u = in_s * x @ W0.T
    h = np.tanh(u)
    r = out_s * h @ W1 - y
    n = len(y)
    dh = out_s * r[:, None] * W1[None, :] / n
    return 0.5 * np.mean(r * r), {"W1": out_s * h.T @ r / n, "W0": in_s * (dh * (1 - h * h)).T @ x}


@pytest.mark.parametrize("param", ["standard", "meanfield"])
def test_two_layer_lr_loss_and_gradient_match_numpy(param):
    spec, problem, v, keys, data = built({
        "problem": {"name": "two_layer_lr", "d": 3, "width": 5, "n_data": 6, "param": param},
        "axes": {"seed": {"range": 2}}})
    x, y = (np.asarray(a, np.float64) for a in data)
    assert x.shape == (6, 3) and y.shape == (6,)
    in_s, out_s = (1.0, 1.0) if param == "standard" else (1 / np.sqrt(3), 1 / 5)
    for i in range(2):
        p = problem.init(keys[i], one(v, i))
        assert p["W0"].shape == (5, 3) and p["W1"].shape == (5,)
        loss, grad = jax.jit(jax.value_and_grad(problem.loss))(p, data, one(v, i))
        ref_loss, ref_grad = np_two_layer_lr(p, x, y, in_s, out_s)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        for k in ("W0", "W1"):
            np.testing.assert_allclose(grad[k], ref_grad[k], rtol=1e-4, atol=1e-7, err_msg=k)


# --------------------------------------------------------------------------- vmap == loop, chunking
def test_mlp_vmap_equals_loop():
    spec = {"problem": {"name": "mlp", "widths": [6], "data": {"source": "moons", "n": 32}},
            "train": {"steps": 60, "lr": 0.5},
            "axes": {"init_scale": [0.3, 1.0], "seed": {"range": 2}, "lr0": [1.0, 0.5]}}
    assert_matches_reference(sweep.run(spec, progress=False), reference(spec))


def test_two_layer_1d_vmap_equals_loop_and_chunking_does_not_matter():
    """Initial weights come from each trajectory's own key: any chunk size gives the same bits."""
    spec = {"problem": {"name": "two_layer_1d", "width": 5}, "train": {"steps": 300, "lr": 0.05},
            "axes": {"seed": {"range": 6}, "bias_init": [0.0, 0.3]}}
    ds = sweep.run(spec, chunk_size=4, progress=False)
    assert_matches_reference(ds, reference(spec))
    other = sweep.run(spec, chunk_size=5, progress=False)
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values, other[name].values, err_msg=name)


def test_two_layer_lr_vmap_equals_loop():
    spec = {"problem": {"name": "two_layer_lr", "d": 4, "width": 6, "n_data": 6, "trainable_k": 5},
            "train": {"steps": 80, "lr": 1.0},
            "axes": {"lr0": {"logspace": [-2, 0, 3]}, "lr1": {"logspace": [-2, 0.5, 3]}}}
    assert_matches_reference(sweep.run(spec, progress=False), reference(spec))


@pytest.mark.parametrize("problem", [
    {"name": "mlp", "widths": [8, 8], "objective": "xent", "data": {"source": "spirals", "n": 96, "classes": 3}},
    {"name": "two_layer_lr", "activation": "tanh", "d": 8, "width": 8, "n_data": 40},
])
def test_networks_give_the_same_bits_for_any_chunk_size(problem):
    """Networks with weight matrices run the vmap layout in fixed-size blocks: the chunk size (one
    block padded, several blocks, a ragged tail) and compaction never change a bit. Without the
    blocks XLA compiles the matrix products and reductions differently for different chunk sizes
    (seen as last-bit differences at chunks of 4,096 and at chunks smaller than a block)."""
    axes = ({"lr": {"logspace": [-1.5, 1, 9]}, "init_scale": {"logspace": [-1, 0.5, 11]}} if problem["name"] == "mlp"
            else {"lr0": {"logspace": [-2, 1, 9]}, "lr1": {"logspace": [-2, 1, 11]}})
    spec = {"problem": problem, "train": {"steps": 40, "lr": 1.0}, "axes": axes}
    ref = sweep.run(spec, chunk_size=6, progress=False)
    assert len(set(names(ref.outcome.values).ravel())) >= 2  # a sweep across a boundary
    for chunk, run in ((128, {}), (50, {"compact": True, "segments": 4}), (99, {"compact": False})):
        other = sweep.run({**spec, "run": run}, chunk_size=chunk, progress=False)
        for name in ref.data_vars:
            np.testing.assert_array_equal(ref[name].values, other[name].values, err_msg=f"{name} chunk {chunk}")


@pytest.mark.parametrize("spec, expected", [
    ({"problem": {"name": "neuron"}}, "points"),  # elementwise: a loop over points, trajectories on the vector axis
    ({"problem": {"name": "mlp", "widths": [4], "data": {"source": "moons", "n": 16}}}, "vmap"),
    ({"problem": {"name": "two_layer_lr", "d": 4, "width": 4, "n_data": 8}}, "vmap"),
])
def test_auto_layout_loops_over_points_only_without_matrix_products(spec, expected):
    _, problem, v, keys, data = built({**spec, "train": {"steps": 2}})
    p = problem.init(keys[0], one(v))
    assert layout.resolve(problem, p, data, one(v)) == expected
    assert layout.resolve(problem, p, data, one(v), "vmap") == "vmap"
    if expected == "vmap":  # ~ BLOCK_BYTES of temporaries per block, a power of two
        size = layout.block_size(problem, p, data, one(v))
        ws = layout.working_set_bytes(problem, p, data, one(v))
        assert size & (size - 1) == 0 and 1 <= size <= layout.MAX_BLOCK
        assert size == layout.MAX_BLOCK or size * ws <= 2 * layout.BLOCK_BYTES


@pytest.mark.parametrize("n", [1, 5, 8, 13, 40])
def test_in_blocks_applies_the_function_to_every_trajectory_once(n):
    x = {"a": jnp.arange(n * 3, dtype=jnp.float32).reshape(n, 3), "b": jnp.arange(n, dtype=jnp.float32)}
    f = lambda t: {"s": t["a"].sum(1) + t["b"], "m": t["a"] * 2}  # noqa: E731
    got = jax.jit(layout.in_blocks(f, n, 4))(x)
    want = f(x)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


# --------------------------------------------------------------------------- known answers
def test_mlp_with_every_hidden_unit_dead_has_zero_gradient_and_is_dead():
    """bias -5 and weights in [-0.1, 0.1] on data of norm < 2: every ReLU is off on every point."""
    spec = {"problem": {"name": "mlp", "widths": [4], "data": {"source": "blobs", "n": 50}},  # 17/17/16 points
            "train": {"steps": 100, "lr": 0.5}, "init": {"init_scale": 0.1, "bias_init": -5.0},
            "axes": {"out_bias": [False, True]}}
    _, problem, v, keys, data = built({**spec, "problem": {**spec["problem"], "out_bias": False}, "axes": {}})
    p = problem.init(keys[0], one(v))
    grad = jax.jit(jax.grad(problem.loss))(p, data, one(v))
    assert all(np.all(np.asarray(g) == 0) for g in grad.values())
    ds = sweep.run(spec, progress=False)
    out = names(ds.outcome.values)
    assert out[0] == "dead" and ds.stop_step.values[0] == sweep.Thresholds().dead_patience - 1  # steps 0..9
    assert ds.final_grad_norm.values[0] == 0 and ds.dead_fraction.values[0] == 1.0
    # with an output bias and unbalanced classes the bias still learns the class frequencies: a constant
    # predictor, not exactly dead
    assert out[1] in ("stuck", "unfinished") and ds.dead_fraction.values[1] == 1.0
    assert np.isclose(ds.accuracy.values[1], 1 / 3, atol=0.05)


def test_linear_fit_loss_of_the_default_data_is_one_32nd():
    """y = x^2 at |x| = 0.5, 1, 1.5, 2 (both sides): by symmetry the fit is c + s|x| with s = 2.5, c = -1.25;
    residuals are +-1/4 at every point, so 1/2 mean(r^2) = 1/32."""
    assert DEFAULT_1D_Y == tuple(x * x for x in DEFAULT_1D_X)
    assert linear_fit_loss(DEFAULT_1D_X, DEFAULT_1D_Y, np.full(8, 1 / 8)) == pytest.approx(1 / 32, abs=1e-14)
    x = np.array([-2.0, -1.0, 0.5, 3.0])  # exactly linear on each side of 0: nothing left
    assert linear_fit_loss(x, 1 + np.where(x > 0, 2 * x, -0.5 * x), np.full(4, 0.25)) < 1e-25


def test_two_layer_1d_ends_at_the_linear_fit_or_beats_it():
    """Seed 003 in small: from zero biases, GD either stays at the linear-on-each-side fit (loss 1/32, a
    bad local minimum: stuck) or moves a kink into the data and beats it."""
    ds = sweep.run({"problem": {"name": "two_layer_1d", "width": 8}, "train": {"steps": 3000, "lr": 0.05},
                    "axes": {"seed": {"range": 16}}}, progress=False)
    assert np.all(ds.linear_fit_loss.values == np.float32(1 / 32))
    loss, beat = ds.final_loss.values, ds.beat_linear.values
    np.testing.assert_array_equal(beat, (loss < (1 - 1e-3) / 32).astype(np.int8))
    at_linear = np.isclose(loss, 1 / 32, rtol=1e-4)
    assert at_linear.sum() >= 2 and beat.sum() >= 2
    out = names(ds.outcome.values[at_linear])
    assert (out == "stuck").sum() >= 2  # (a run on its way out of the plateau, a saddle, can wobble instead)
    assert set(out) <= {"stuck", "oscillating", "unfinished"}
    assert np.all(at_linear | (beat == 1))  # nothing else on this data
    assert np.all(ds.kink_reached_data.values[beat == 1] == 1)  # beating it needs a kink inside the data


def test_frozen_first_layer_is_linear_least_squares_on_the_initial_features():
    """lr0 = 0 with zero biases: GD on (w, c) is linear least squares on the features relu(a_i x), which span
    c + s1 x+ + s2 x- (only x+ if every a_i > 0, ...): it ends at that fit exactly (1/32 when both signs
    occur). Biases never move and no kink reaches the data. lr1 = 0 freezes c at 0."""
    spec = {"problem": {"name": "two_layer_1d", "width": 8}, "train": {"steps": 4000, "lr": 0.03},
            "axes": {"seed": {"range": 4}, "lr0": [0.0, 1.0], "lr1": [1.0, 0.0]}}
    ds = sweep.run(spec, progress=False)
    _, problem, v, keys, data = built(spec)
    x, y, w8 = (np.asarray(a, np.float64) for a in data)
    frozen = ds.sel(lr0=0.0, lr1=1.0)
    for s in range(4):
        i = s * 4  # flat index of (seed s, lr0 = 0, lr1 = 1)
        a = np.asarray(problem.init(keys[i], one(v, i))["a"], np.float64)
        feats = np.concatenate([np.ones((8, 1)), np.maximum(a[None, :] * x[:, None], 0)], axis=1)
        coef = np.linalg.lstsq(feats * np.sqrt(w8)[:, None], y * np.sqrt(w8), rcond=None)[0]
        best = 0.5 * np.sum(w8 * (feats @ coef - y) ** 2)
        if (a > 0).any() and (a < 0).any():
            assert best == pytest.approx(1 / 32, rel=1e-9)
        np.testing.assert_allclose(frozen.final_loss.values[s], best, rtol=1e-4)
    assert np.all(frozen.max_abs_bias.values == 0) and np.all(frozen.kink_reached_data.values == 0)
    assert np.all(frozen.kink_reached_data_step.values == -1) and np.all(frozen.beat_linear.values == 0)
    assert np.all(ds.sel(lr1=0.0).final_c.values == 0)


def test_kink_event_at_step_zero_is_read_from_the_initial_weights():
    spec = {"problem": {"name": "two_layer_1d", "width": 2}, "train": {"steps": 3, "lr": 0.01},
            "init": {"bias_init": 0.3}, "axes": {"seed": {"range": 24}}}
    ds = sweep.run(spec, progress=False)
    _, problem, v, keys, _ = built(spec)
    for i in range(24):
        p = problem.init(keys[i], one(v, i))
        reached = bool(np.any(np.abs(np.asarray(p["b"])) >= 0.5 * np.abs(np.asarray(p["a"]))))
        assert (ds.kink_reached_data_step.values[i] == 0) == reached
        assert ds.kink_reached_data.values[i] == int(ds.kink_reached_data_step.values[i] >= 0)
    assert 0 < (ds.kink_reached_data_step.values == 0).sum() < 24


def test_trainable_is_the_mean_of_the_last_k_losses_over_the_first():
    spec = {"problem": {"name": "two_layer_lr", "d": 4, "width": 6, "n_data": 6, "trainable_k": 5},
            "train": {"steps": 30, "lr": 1.0}, "axes": {"lr0": [0.05, 0.5], "lr1": [0.05, 0.5, 300.0]}}
    ds = sweep.run(spec, progress=False)
    _, problem, v, keys, data = built(spec)
    vg = jax.jit(jax.value_and_grad(problem.loss))
    for i in range(6):
        vi = one(v, i)
        p, losses = problem.init(keys[i], vi), []
        for t in range(31):
            loss, g = vg(p, data, vi)
            losses.append(float(loss))
            p = {"W0": p["W0"] - vi["lr0"] * g["W0"], "W1": p["W1"] - vi["lr1"] * g["W1"]}
        got = ds.isel(lr0=i // 3, lr1=i % 3)
        if got.outcome.values in (Outcome.DIVERGED, Outcome.NAN):
            assert got.trainable.values == 0 and np.isinf(got.tail_loss_ratio.values)
            continue
        assert got.stop_step.values == 30
        ratio = np.mean(losses[-5:]) / losses[0]
        np.testing.assert_allclose(got.tail_loss_ratio.values, ratio, rtol=1e-3)  # float32, other summation order
        assert got.trainable.values == int(ratio < 1)
    assert np.all(ds.trainable.sel(lr1=0.05).values == 1) and np.all(ds.trainable.sel(lr1=300.0).values == 0)


# --------------------------------------------------------------------------- files
def test_mlp_reads_npz_and_csv_alike(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    rows = ["f1,f2,f3,label"] + [",".join(f"{v:.9g}" for v in r) + f",{c}" for r, c in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    runs = []
    for f in ("d.npz", "d.csv"):
        spec = {"problem": {"name": "mlp", "widths": [5], "data": {"source": "file", "file": str(tmp_path / f),
                                                                     "n": 0}},
                "train": {"steps": 20, "lr": 0.3}, "axes": {"init_scale": [0.5, 1.0]}}
        runs.append(sweep.run(spec, progress=False))
        _, problem, _, _, data = built(spec)
        assert data[0].shape == (20, 3) and data[1].shape == (20, 3)  # 3 classes from labels 0..2
        np.testing.assert_array_equal(np.argmax(np.asarray(data[1]), 1), y)
    for name in runs[0].data_vars:
        np.testing.assert_array_equal(runs[0][name].values, runs[1][name].values, err_msg=name)


def test_bad_files_are_spec_errors(tmp_path):
    base = {"problem": {"name": "mlp", "data": {"source": "file"}}}
    with pytest.raises(sweep.SpecError, match="problem.data.file: missing"):
        sweep.parse_spec(base)
    with pytest.raises(sweep.SpecError, match="does not exist"):
        sweep.parse_spec({"problem": {"name": "mlp", "data": {"source": "file", "file": str(tmp_path / "no.npz")}}})
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0.5, 1]))
    with pytest.raises(sweep.SpecError, match="integer labels"):
        sweep.parse_spec({"problem": {"name": "mlp", "data": {"source": "file", "file": str(tmp_path / "bad.npz")}}})
    with pytest.raises(sweep.SpecError, match="same number of points"):
        sweep.parse_spec({"problem": {"name": "two_layer_1d", "x": [1.0, 2.0], "y": [1.0]}})
    np.savez(tmp_path / "w.npz", x=np.zeros((4, 2)), y=np.zeros(4), W0=np.zeros((3, 5)))
    with pytest.raises(sweep.SpecError, match=r"problem.file: .*'W0' has shape \(3, 5\); expected \(3, 2\)"):
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "file": str(tmp_path / "w.npz")}})


def test_two_layer_lr_data_and_weights_from_a_file_are_used_exactly(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    w0, w1 = rng.normal(size=(4, 3)), rng.normal(size=4)
    np.savez(tmp_path / "pub.npz", x=x, y=y, W0=w0, W1=w1)
    spec = {"problem": {"name": "two_layer_lr", "file": str(tmp_path / "pub.npz")}, "init": {"init_scale": 0.5}}
    _, problem, v, keys, data = built({**spec, "axes": {"seed": {"range": 2}}})
    np.testing.assert_array_equal(data[0], x.astype(np.float32))
    for i in range(2):  # every trajectory starts from the file's weights (times init_scale)
        p = problem.init(keys[i], one(v, i))
        np.testing.assert_array_equal(p["W0"], 0.5 * w0.astype(np.float32))
        np.testing.assert_array_equal(p["W1"], 0.5 * w1.astype(np.float32))
    ds = sweep.run({**spec, "train": {"steps": 20, "lr": 0.5}, "axes": {"seed": {"range": 3}}}, progress=False)
    assert np.all(ds.final_loss.values == ds.final_loss.values[0])


# --------------------------------------------------------------------------- neuron: prelu and maxout
def test_prelu_learns_the_teachers_slope():
    """prelu student from alpha = 0 learning leaky(x, 0.25) ('prelu' teacher): alpha -> 0.25."""
    spec = {"problem": {"name": "neuron", "activation": "prelu", "teacher": "prelu", "alpha": 0.0,
                        "data": {"n": 256}},
            "train": {"steps": 2000, "lr": 0.2}, "init": {"w0": 0.8, "b0": 0.0}}
    _, problem, v, keys, data = built(spec)
    p = problem.init(keys[0], one(v))
    assert float(p["alpha"]) == 0.0
    x, y = (np.asarray(a, np.float64) for a in data)
    loss, g = jax.jit(jax.value_and_grad(problem.loss))(p, data, one(v))
    z = 0.8 * x
    f = np.where(z > 0, z, 0.0)
    np.testing.assert_allclose(loss, np.mean((f - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(g["alpha"], np.mean(2 * (f - y) * np.where(z > 0, 0, z)), rtol=1e-4)
    np.testing.assert_allclose(g["w"], np.mean(2 * (f - y) * np.where(z > 0, 1, 0) * x), rtol=1e-4)
    ds = sweep.run(spec, progress=False)
    assert names(ds.outcome.values) == "converged"
    # converged = loss <= 1e-6, so the parameters are within a few 1e-3
    assert abs(float(ds.final_alpha.values) - 0.25) < 5e-3 and abs(float(ds.final_w.values) - 1) < 5e-3


def test_maxout_with_two_pieces_starts_as_relu_and_escapes_where_relu_is_stuck():
    grid = {"w0": [-1.0, 0.7], "b0": [-0.3, 0.2]}
    base = {"problem": {"name": "neuron", "data": {"n": 256}}, "train": {"steps": 1500, "lr": 0.2}, "axes": grid}
    _, relu, v, keys, data = built(base)
    _, mo, _, _, _ = built({**base, "problem": {**base["problem"], "activation": "maxout"}})
    for i in range(4):
        pr, pm = relu.init(keys[i], one(v, i)), mo.init(keys[i], one(v, i))
        assert float(pm["w1"]) == 0.0 and float(pm["b1"]) == 0.0
        assert float(jax.jit(relu.loss)(pr, data, one(v, i))) == float(jax.jit(mo.loss)(pm, data, one(v, i)))
    ds_relu = sweep.run(base, progress=False)
    ds_mo = sweep.run({**base, "problem": {**base["problem"], "activation": "maxout"}}, progress=False)
    assert np.all(names(ds_mo.outcome.values) == "converged")
    assert np.any(names(ds_relu.outcome.values) != "converged")  # w0 < 0: relu is stuck there


def test_maxout_gradient_goes_to_the_winning_piece():
    spec = {"problem": {"name": "neuron", "activation": "maxout", "pieces": 3, "teacher": "abs",
                        "data": {"n": 64}}, "init": {"w0": 0.4, "b0": 0.1, "piece_scale": 0.5}}
    _, problem, v, keys, data = built(spec)
    p = problem.init(keys[0], one(v))
    assert set(p) == {"w", "b", "w1", "b1", "w2", "b2"}
    x, y = (np.asarray(a, np.float64) for a in data)
    W = np.array([float(p["w"]), float(p["w1"]), float(p["w2"])])
    B = np.array([float(p["b"]), float(p["b1"]), float(p["b2"])])
    z = W[None, :] * x[:, None] + B[None, :]
    win = np.argmax(z, axis=1)
    r = z[np.arange(len(x)), win] - y
    loss, g = jax.jit(jax.value_and_grad(problem.loss))(p, data, one(v))
    np.testing.assert_allclose(loss, np.mean(r ** 2), rtol=1e-5)
    for j, (wn, bn) in enumerate([("w", "b"), ("w1", "b1"), ("w2", "b2")]):
        np.testing.assert_allclose(g[wn], np.mean(2 * r * (win == j) * x), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(g[bn], np.mean(2 * r * (win == j)), rtol=1e-4, atol=1e-7)
    ds = sweep.run({**spec, "train": {"steps": 20, "lr": 0.05}}, progress=False)
    assert {"final_w1", "final_b1", "final_w2", "final_b2"} <= set(ds.data_vars)
