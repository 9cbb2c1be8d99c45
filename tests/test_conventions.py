"""Conventions of the network problems that papers fix: file arrays at their stored precision, target columns,
where the activation gain goes (gain_placement), the loss convention (loss_scale) and which losses the trainable
criterion averages (tail_window). Expected values are closed forms or hand-written NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import engine

from test_nets import built, one
from test_per_trajectory import final_params

HOLZ_X = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]  # the 6-point data of Holzmueller & Steinwart's mc_training.py
HOLZ_Y = [-1.0, 2.0, -1.0, 1.0, -2.0, 1.0]


def x64():
    jax.config.update("jax_enable_x64", True)  # what sweep.run(dtype="float64") does


def npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


# --------------------------------------------------------------------------- file precision
def test_init_file_values_are_exact_in_float64_and_rounded_once_in_float32(tmp_path):
    """two_layer_1d from an init file with 0.1 everywhere, no movement (lr0 = lr1 = 0): in float64 the parameters are
    0.1 to the bit (not float32(0.1) = 0.10000000149); in float32 they are float32(0.1); weights times init_scale = 3
    are one product in the run's dtype (3 * 0.1 rounded once)."""
    x64()
    h = 4
    f = npz(tmp_path, "init.npz", a=np.full(h, 0.1), b=np.full(h, 0.1), w=np.full(h, 0.1), c=np.array(0.1))
    for dtype in ("float64", "float32"):
        dt = np.dtype(dtype).type
        spec = {"problem": {"name": "two_layer_1d", "width": h, "init_file": f, "lr0": 0.0, "lr1": 0.0},
                "init": {"init_scale": 3.0}, "train": {"steps": 3, "lr": 0.1}, "run": {"dtype": dtype}}
        fin = final_params(spec)
        assert fin["c"].dtype == dtype and fin["c"][0] == dt(0.1)
        np.testing.assert_array_equal(fin["b"][0], np.full(h, dt(0.1)))
        np.testing.assert_array_equal(fin["a"][0], np.full(h, dt(3.0) * dt(0.1)))
        np.testing.assert_array_equal(fin["w"][0], np.full(h, dt(3.0) * dt(0.1)))
        ds = sweep.run(spec, dtype=dtype, progress=False)
        assert ds.final_c.dtype == dtype and float(ds.final_c) == float(dt(0.1))


@pytest.mark.parametrize("name", ["two_layer_lr", "mlp", "two_layer_1d"])
def test_file_data_and_weights_keep_their_precision(tmp_path, name):
    """The data a run trains on, and the initial weights from a file, are the file's float64 values in a float64 run
    and those values rounded once to float32 in a float32 run."""
    x64()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2)) / 3.0
    if name == "two_layer_lr":
        y = rng.standard_normal(6) / 7.0
        init = {"W0": rng.standard_normal((3, 2)) / 3.0, "W1": rng.standard_normal(3) / 3.0}
        prob = {"name": name, "width": 3, "file": npz(tmp_path, "d.npz", x=x, y=y)}
    elif name == "mlp":
        y = np.arange(6) % 2
        init = {"W0": rng.standard_normal((3, 2)) / 3.0, "b0": np.full(3, 0.1)}
        prob = {"name": name, "widths": [3], "data": {"source": "file", "file": npz(tmp_path, "d.npz", x=x, y=y),
                                                      "n": 0}}
    else:
        x, y = x[:, 0], rng.standard_normal(6) / 7.0
        init = {"a": np.full(3, 0.1), "w": rng.standard_normal(3) / 3.0}
        prob = {"name": name, "width": 3, "file": npz(tmp_path, "d.npz", x=x, y=y, p=np.arange(1.0, 7.0))}
    prob["init_file"] = npz(tmp_path, "i.npz", **init)
    for dtype in ("float64", "float32"):
        spec = sweep.parse_spec({"problem": prob, "train": {"steps": 1}, "run": {"dtype": dtype}})
        data = engine.dataset(spec, dtype=dtype)
        np.testing.assert_array_equal(np.asarray(data[0]).reshape(x.shape), x.astype(dtype))
        if name != "mlp":
            np.testing.assert_array_equal(np.asarray(data[1]), y.astype(dtype))
        if name == "two_layer_1d":  # p normalised in float64, then rounded once
            np.testing.assert_array_equal(np.asarray(data[2]), (np.arange(1.0, 7.0) / 21.0).astype(dtype))
        _, problem, v, keys, _ = built({"problem": prob, "train": {"steps": 1}, "run": {"dtype": dtype}})
        p0 = problem.init(keys[0], one(v))
        for k, a in init.items():
            assert p0[k].dtype == dtype
            np.testing.assert_array_equal(np.asarray(p0[k]), a.astype(dtype), err_msg=k)


def test_holzmueller_linear_fit_loss_is_exactly_one(tmp_path):
    """The 6-point data x = +-1, +-2, +-3 with y(-x) = -y(x) and equal weights 1/6: the loss is symmetric under
    (c, s+, s-) -> (-c, s-, s+) and strictly convex, so the best c + s+ max(x, 0) + s- min(x, 0) has c = 0 and
    s+ = s- = sum_{x>0} x y / sum_{x>0} x^2 = (1 - 4 + 3) / 14 = 0: f = 0 and the loss is 1/2 * 1/6 * sum y^2 =
    12/12 = 1. Float64 (options or a float64 file) gives 1 to 1e-15 (float32 weights 1/6 gave 1 + 3e-8)."""
    x64()
    f = npz(tmp_path, "holz.npz", x=np.array(HOLZ_X), y=np.array(HOLZ_Y), p=np.full(6, 1 / 6))
    for prob in ({"x": HOLZ_X, "y": HOLZ_Y}, {"file": f}):
        spec = {"problem": {"name": "two_layer_1d", "width": 4, **prob}, "train": {"steps": 2, "lr": 0.01}}
        ds = sweep.run(spec, dtype="float64", progress=False)
        assert ds.linear_fit_loss.dtype == "float64"
        assert abs(float(ds.linear_fit_loss) - 1.0) <= 1e-15
        ds32 = sweep.run(spec, dtype="float32", progress=False)
        assert float(ds32.linear_fit_loss) == 1.0  # 1 + 3e-8 rounds to 1 in float32


def test_drawn_data_weights_are_exact_counts_over_m_in_float64():
    """p_draw = multinomial in a float64 run: the weights are counts/m computed in float64 (1/6, not float32(1/6)),
    and the counts are the same as in a float32 run (drawn from float32 probabilities whatever the dtype)."""
    x64()
    spec = {"problem": {"name": "two_layer_1d", "width": 3, "x": HOLZ_X, "y": HOLZ_Y, "p_draw": "multinomial",
                        "p_samples": 6}, "train": {"steps": 1}, "axes": {"seed": {"range": 4}}}
    counts = {}
    for dtype in ("float64", "float32"):
        _, problem, v, keys, _ = built({**spec, "run": {"dtype": dtype}})
        w = np.stack([np.asarray(problem.init(keys[i], one(v, i))["data_weights"]) for i in range(4)])
        assert w.dtype == dtype
        counts[dtype] = np.round(w.astype(np.float64) * 6)
        np.testing.assert_array_equal(w, (counts[dtype] / 6).astype(dtype))
    np.testing.assert_array_equal(counts["float64"], counts["float32"])


# --------------------------------------------------------------------------- target columns
def test_a_target_column_is_one_dataset(tmp_path):
    """y stored as (n, 1) (a column, as Sohl-Dickstein's Y) is the same dataset as y (n,): the same run to the bit;
    for two_layer_1d likewise with x, y, p as columns."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    runs = [sweep.run({"problem": {"name": "two_layer_lr", "width": 4, "file": npz(tmp_path, f"{i}.npz", x=x, y=yy)},
                       "train": {"steps": 30, "lr": 0.5}, "axes": {"seed": {"range": 3}}}, progress=False)
            for i, yy in enumerate((y, y[:, None]))]
    for name in runs[0].data_vars:
        np.testing.assert_array_equal(runs[0][name].values, runs[1][name].values, err_msg=name)
    x1 = np.array([-2.0, -1.0, 0.5, 1.5])
    one_d = [sweep.run({"problem": {"name": "two_layer_1d", "width": 4, "file": npz(tmp_path, f"c{i}.npz", **arrs)},
                        "train": {"steps": 30, "lr": 0.05}, "axes": {"seed": {"range": 3}}}, progress=False)
             for i, arrs in enumerate(({"x": x1, "y": x1 ** 2, "p": np.arange(1.0, 5.0)},
                                       {"x": x1[:, None], "y": (x1 ** 2)[:, None], "p": np.arange(1.0, 5.0)[:, None]}))]
    assert "init_row" not in one_d[1].dims
    for name in one_d[0].data_vars:
        np.testing.assert_array_equal(one_d[0][name].values, one_d[1][name].values, err_msg=name)


@pytest.mark.parametrize("arrays, expect", [
    ({"x": np.ones((5, 3)), "y": np.ones((5, 2))}, ("'y' (5, 2)", "'x' has shape (5, 3)", "as stored", "(n, 1)")),
    ({"x": np.ones((5, 3)), "y": np.ones(4)}, ("'y' (4,)", "as stored", "(K, n, d)")),
    ({"x": np.ones((2, 5, 3)), "y": np.ones((3, 5))}, ("'x' has shape (2, 5, 3)", "'y' (3, 5)", "as stored")),
], ids=["y-two-columns", "y-too-short", "rows-disagree"])
def test_two_layer_lr_bad_data_shapes_name_the_file_and_the_stored_shapes(tmp_path, arrays, expect):
    f = npz(tmp_path, "bad.npz", **arrays)
    with pytest.raises(sweep.SpecError) as e:
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "file": f}})
    msg = str(e.value)
    assert msg.startswith("problem.file: file ") and "bad.npz" in msg and "\n" not in msg
    for part in expect:
        assert part in msg, (part, msg)


def test_two_layer_1d_bad_column_shapes_name_the_stored_shapes(tmp_path):
    f = npz(tmp_path, "bad.npz", x=np.ones(4), y=np.ones((4, 3)))
    with pytest.raises(sweep.SpecError, match=r"problem.file: .*bad.npz.*x \(4,\), y \(4, 3\) as stored"):
        sweep.parse_spec({"problem": {"name": "two_layer_1d", "file": f}})
    f = npz(tmp_path, "bad3.npz", x=np.ones((2, 2, 2)), y=np.ones(2))
    with pytest.raises(sweep.SpecError, match=r"array 'x' has shape \(2, 2, 2\) as stored"):
        sweep.parse_spec({"problem": {"name": "two_layer_1d", "file": f}})


# --------------------------------------------------------------------------- gain placement
def np_two_layer_lr(W0, W1, x, y, gain, inside, act, scale, in_s, out_s):
    """Loss loss_scale * 1/2 mean (f - y)^2 of f = out_s W1 . h, h = act(g z) or g act(z), z = in_s W0 x, and its
    gradients, by hand (float64)."""
    z = in_s * x @ W0.T  # (n, width)
    if act == "tanh":
        a, da = (np.tanh(gain * z), gain * (1 - np.tanh(gain * z) ** 2)) if inside else \
            (gain * np.tanh(z), gain * (1 - np.tanh(z) ** 2))
    else:
        a, da = (np.maximum(gain * z, 0), gain * (z > 0)) if inside else (gain * np.maximum(z, 0), gain * (z > 0))
    f = out_s * a @ W1
    r = f - y
    n = x.shape[0]
    gf = scale * r / n
    gW1 = out_s * gf @ a
    gz = out_s * gf[:, None] * W1[None, :] * da
    return scale * 0.5 * np.mean(r ** 2), {"W0": in_s * gz.T @ x, "W1": gW1}


@pytest.mark.parametrize("placement", ["inside", "outside"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_gain_placement_matches_numpy(placement, act):
    """gain_placement = inside is act(g z) (Sohl-Dickstein's tanh(sqrt(2) z)), outside g act(z); loss (with
    loss_scale = 2: mean (f - y)^2) and gradient against the hand-written reference, mean-field parametrisation."""
    x64()
    gain, d, width = np.sqrt(2.0), 5, 4
    spec = {"problem": {"name": "two_layer_lr", "d": d, "width": width, "n_data": 7, "param": "meanfield",
                        "activation": act, "gain": gain, "gain_placement": placement, "loss_scale": 2.0},
            "train": {"steps": 1}, "init": {"init_scale": 1.5}, "run": {"dtype": "float64"}}
    _, problem, v, keys, data = built(spec)
    p = problem.init(keys[0], one(v))
    vals = one(v)
    loss, grad = jax.jit(jax.value_and_grad(problem.loss))(p, data, vals)
    x, y = (np.asarray(a, np.float64) for a in data)
    want, wgrad = np_two_layer_lr(np.asarray(p["W0"]), np.asarray(p["W1"]), x, y, gain, placement == "inside", act,
                                  2.0, 1 / np.sqrt(d), 1 / width)
    assert float(loss) == pytest.approx(want, rel=1e-13)
    for k in ("W0", "W1"):
        np.testing.assert_allclose(np.asarray(grad[k]), wgrad[k], rtol=1e-11, atol=1e-14, err_msg=k)
    pl = jax.jit(lambda p, pt, v: problem.point_loss(p, pt, v))
    mean = np.mean([float(pl(p, (data[0][j], data[1][j]), vals)) for j in range(7)])
    assert mean == pytest.approx(want, rel=1e-13)
    other = {**spec, "problem": {**spec["problem"], "gain_placement": "outside" if placement == "inside" else "inside"}}
    _, q, _, _, _ = built(other)
    l2 = float(jax.jit(q.loss)(p, data, vals))
    if act == "relu":  # relu is positively homogeneous: max(g z, 0) and g max(z, 0) are the same bits for g > 0
        assert l2 == float(loss)
    else:
        assert abs(l2 - float(loss)) > 1e-3 * abs(float(loss))


# --------------------------------------------------------------------------- loss scale
SCALE_SPECS = {
    "two_layer_lr": {"problem": {"name": "two_layer_lr", "d": 4, "width": 8, "n_data": 8, "param": "meanfield"},
                     "train": {"steps": 40, "lr": 2.0}},
    "two_layer_1d": {"problem": {"name": "two_layer_1d", "width": 8, "x": HOLZ_X, "y": HOLZ_Y},
                     "train": {"steps": 40, "lr": 0.05}},
    "mlp": {"problem": {"name": "mlp", "widths": [6], "init_dist": "he", "data": {"source": "blobs", "n": 16}},
            "train": {"steps": 40, "lr": 0.5}},
}


@pytest.mark.parametrize("name", list(SCALE_SPECS))
def test_loss_scale_one_half_with_lr_is_loss_scale_one_with_half_lr_to_the_bit(name):
    """GD with loss_scale = 1/2 and lr equals loss_scale = 1 with lr/2, bit for bit (float32 and float64): a power of
    two multiplies every cotangent of the backward pass exactly (no rounding unless it underflows), so the gradient is
    exactly half, and lr * (g/2) = (lr/2) * g exactly. The reported losses are exactly half. (A factor that is not a
    power of two agrees only to rounding.)"""
    x64()
    base = SCALE_SPECS[name]
    for dtype in ("float32", "float64"):
        def with_(scale, lr):
            return {**base, "problem": {**base["problem"], "loss_scale": scale},
                    "train": {**base["train"], "lr": lr}, "axes": {"seed": {"range": 4}}, "run": {"dtype": dtype}}
        lr = base["train"]["lr"]
        a, b = final_params(with_(0.5, lr)), final_params(with_(1.0, lr / 2))
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{dtype} {k}")
        ra, rb = (sweep.run(s, dtype=dtype, progress=False) for s in (with_(0.5, lr), with_(1.0, lr / 2)))
        np.testing.assert_array_equal(ra.final_loss.values, 0.5 * rb.final_loss.values)
        assert np.all(rb.final_loss.values > 1e-3)  # far from every loss threshold: the same outcome either way
        np.testing.assert_array_equal(ra.outcome.values, rb.outcome.values)


def test_loss_scale_scales_the_linear_fit_loss_and_the_residuals():
    """two_layer_1d: linear_fit_loss is in the scaled units (beat_linear compares like with like) and the residuals
    keep loss = 1/2 sum r^2 (Gauss-Newton's system)."""
    x64()
    spec = {"problem": {"name": "two_layer_1d", "width": 4, "x": HOLZ_X, "y": HOLZ_Y, "loss_scale": 3.0},
            "train": {"steps": 2, "lr": 0.01}, "run": {"dtype": "float64"}}
    ds = sweep.run(spec, dtype="float64", progress=False)
    assert abs(float(ds.linear_fit_loss) - 3.0) <= 3e-15
    _, problem, v, keys, data = built(spec)
    p = problem.init(keys[0], one(v))
    assert float(problem.loss(p, data, one(v))) == pytest.approx(
        0.5 * float(jnp.sum(problem.residuals(p, data, one(v)) ** 2)), rel=1e-14)


# --------------------------------------------------------------------------- tail window
@pytest.mark.parametrize("window", ["post", "pre"])
def test_tail_window_averages_the_losses_it_names(window):
    """tail_loss_ratio = mean of k recorded losses / the initial loss: pre averages the losses at t = steps-k ..
    steps-1 (each before an update, Sohl-Dickstein's notebook), post those at t = steps-k+1 .. steps; trainable is
    ratio < 1. The losses come from the same runs' recordings (every step)."""
    x64()
    steps, k = 30, 5
    spec = {"problem": {"name": "two_layer_lr", "d": 4, "width": 6, "n_data": 6, "param": "meanfield",
                        "trainable_k": k, "tail_window": window},
            "train": {"steps": steps, "lr": 1.0},
            "outcome": {"diverge_loss": 1e300, "diverge_factor": 1e300, "diverge_param": 1e300},
            "axes": {"lr0": {"logspace": [0, 4, 9]}, "lr1": [1.0, 100.0]}, "record": {"stride": 1, "every": 1, "max": 64}}
    ds = sweep.run(spec, dtype="float64", progress=False)
    rec = ds.rec_loss.values  # (traj, steps + 1)
    lo = steps - k if window == "pre" else steps - k + 1
    seen = set()
    for j in range(rec.shape[0]):  # stride 1: recorded trajectory j is grid point j
        if not np.all(np.isfinite(rec[j])):
            continue  # settled early: the frozen-loss rule, tested in test_nets
        want = np.mean(rec[j, lo: lo + k]) / rec[j, 0]
        got = float(ds.tail_loss_ratio.values.reshape(-1)[j])
        assert got == pytest.approx(want, rel=1e-12)
        assert int(ds.trainable.values.reshape(-1)[j]) == int(want < 1)
        seen.add(int(want < 1))
    assert seen == {0, 1}  # both verdicts occur on this grid


def test_tail_window_pre_needs_k_at_most_steps():
    with pytest.raises(sweep.SpecError, match=r"problem.trainable_k = 25: must be <= train.steps = 20 with "
                                              r"tail_window = 'pre'"):
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "trainable_k": 25, "tail_window": "pre"},
                          "train": {"steps": 20}})
    with pytest.raises(sweep.SpecError, match=r"problem.trainable_k = 20: must be <= train.steps = 10"):
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "tail_window": "pre"}, "train": {"steps": 100},
                          "axes": {"steps": [10, 100]}})
    with pytest.raises(sweep.SpecError, match=r"problem.tail_window = 'before'.*'post', 'pre'"):
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "tail_window": "before"}})
    with pytest.raises(sweep.SpecError, match=r"problem.gain_placement = 'in'.*'outside', 'inside'"):
        sweep.parse_spec({"problem": {"name": "two_layer_lr", "gain_placement": "in"}})
    with pytest.raises(sweep.SpecError, match=r"problem.loss_scale = 0.0: must be a finite number > 0"):
        sweep.parse_spec({"problem": {"name": "two_layer_1d", "loss_scale": 0.0}})
