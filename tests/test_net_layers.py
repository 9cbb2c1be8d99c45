"""PReLU (a learnable slope per hidden unit) and maxout (k pieces per hidden unit) inside the network problems
(mlp, two_layer_1d, two_layer_lr): gradients against hand-written NumPy references, vmap == loop, known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep

from test_nets import assert_matches_reference, built, half_r2, one, point_mean, reference


# --------------------------------------------------------------------------- NumPy references
def np_act(z, act, alpha=None):
    """Hidden activation by hand. z: (n, units) [maxout: (n, units, k)]. Returns (h (n, units), back) where
    back(dL/dh) -> (dL/dz, dL/dalpha (units,) or None)."""
    if act == "prelu":
        h = np.where(z > 0, z, alpha * z)
        return h, lambda gh: (gh * np.where(z > 0, 1.0, alpha), (gh * np.where(z > 0, 0.0, z)).sum(0))
    if act == "maxout":
        win = np.argmax(z, axis=-1)  # the first maximal piece
        h = np.take_along_axis(z, win[..., None], -1)[..., 0]
        return h, lambda gh: (gh[..., None] * (np.arange(z.shape[-1]) == win[..., None]), None)
    h = np.maximum(z, 0.0)
    return h, lambda gh: (gh * (z > 0), None)


def np_dense(W, h):
    """W (out, in) or maxout (out, k, in) times every row of h (n, in)."""
    return np.einsum("oki,ni->nok", W, h) if W.ndim == 3 else h @ W.T


def np_dense_back(W, h, gz):
    """(dL/dW, dL/dh) of np_dense given dL/dz."""
    if W.ndim == 3:
        return np.einsum("nok,ni->oki", gz, h), np.einsum("nok,oki->ni", gz, W)
    return gz.T @ h, gz @ W


def np_mlp(p, x, y, L, act, objective):
    """Loss and gradients of an MLP with softmax output (mse or xent), hidden activation ``act``, by hand."""
    p = {k: np.asarray(a, np.float64) for k, a in p.items()}
    hs, backs, h = [x], [], x
    for l in range(L):
        hn, back = np_act(np_dense(p[f"W{l}"], h) + p[f"b{l}"], act, p.get(f"alpha{l}"))
        backs.append(back)
        h = hn
        hs.append(h)
    logits = h @ p[f"W{L}"].T + p[f"b{L}"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    n, C = y.shape
    if objective == "mse":
        loss = np.mean((prob - y) ** 2)
        gp = 2 * (prob - y) / (n * C)
        g = prob * (gp - (gp * prob).sum(1, keepdims=True))
    else:
        loss = -np.mean((y * np.log(prob)).sum(1))
        g = (prob - y) / n
    grads = {f"W{L}": g.T @ hs[L], f"b{L}": g.sum(0)}
    gh = g @ p[f"W{L}"]
    for l in range(L - 1, -1, -1):
        gz, galpha = backs[l](gh)
        grads[f"W{l}"], gh = np_dense_back(p[f"W{l}"], hs[l], gz)
        grads[f"b{l}"] = gz.sum(0)
        if galpha is not None:
            grads[f"alpha{l}"] = galpha
    return loss, grads


def np_two_layer_1d(p, x, y, w8, s, act):
    """Loss 1/2 sum p_j r_j^2 and gradients of f = c + s sum_i w_i act(a_i x + b_i), by hand."""
    a, b, w, c = (np.asarray(p[k], np.float64) for k in "abwc")
    alpha = np.asarray(p["alpha"], np.float64) if "alpha" in p else None
    z = (a[None] * x[:, None, None] + b[None]) if a.ndim == 2 else a[None, :] * x[:, None] + b[None, :]
    h, back = np_act(z, act, alpha)
    r = c + s * h @ w - y
    pr = w8 * r
    gz, galpha = back(s * pr[:, None] * w[None, :])
    xs = x[:, None, None] if a.ndim == 2 else x[:, None]
    grads = {"a": (gz * xs).sum(0), "b": gz.sum(0), "w": s * h.T @ pr, "c": pr.sum()}
    if galpha is not None:
        grads["alpha"] = galpha
    return 0.5 * np.sum(w8 * r * r), grads


def np_two_layer_lr(p, x, y, in_s, out_s, gain, act):
    """Loss 1/2 mean r^2 and gradients of f = out_s W1 . gain*act(in_s W0 x), by hand."""
    W0, W1 = np.asarray(p["W0"], np.float64), np.asarray(p["W1"], np.float64)
    alpha = np.asarray(p["alpha"], np.float64) if "alpha" in p else None
    h, back = np_act(in_s * np_dense(W0, x), act, alpha)
    r = out_s * gain * h @ W1 - y
    n = len(y)
    gz, galpha = back(out_s * gain * r[:, None] * W1[None, :] / n)
    grads = {"W1": out_s * gain * h.T @ r / n, "W0": in_s * np_dense_back(W0, x, gz)[0]}
    if galpha is not None:
        grads["alpha"] = galpha
    return 0.5 * np.mean(r * r), grads


def spread_slopes(p, rng):
    """prelu: give every unit its own slope (the init gives them all the alpha option's value)."""
    return {k: (jnp.asarray(rng.uniform(-0.5, 0.8, a.shape), a.dtype) if k.startswith("alpha") else a)
            for k, a in p.items()}


def check_grads(problem, p, data, vi, ref_loss, ref_grad, rtol=1e-5):
    loss, grad = jax.jit(jax.value_and_grad(problem.loss))(p, data, vi)
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    assert set(grad) == set(ref_grad)
    for k in ref_grad:
        np.testing.assert_allclose(grad[k], ref_grad[k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(point_mean(problem)(p, data, vi), loss, rtol=1e-5)  # the points layout's loss
    if problem.residuals is not None:
        np.testing.assert_allclose(half_r2(problem)(p, data, vi), loss, rtol=1e-5)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("act", ["prelu", "maxout"])
@pytest.mark.parametrize("objective", ["mse", "xent"])
def test_mlp_layers_loss_and_gradient_match_numpy(act, objective):
    spec, problem, v, keys, data = built({
        "problem": {"name": "mlp", "widths": [4, 3], "objective": objective, "init_dist": "he", "activation": act,
                    "pieces": 3, "alpha": 0.2, "data": {"source": "blobs", "dim": 3, "classes": 4, "n": 9,
                                                        "noise": 0.3}},
        "init": {"bias_init": 0.05}})
    x, y = (np.asarray(a, np.float64) for a in data)
    rng = np.random.default_rng(0)
    for i in range(2):
        p = problem.init(keys[i], one(v, i))
        want = {"W0": (4, 3), "b0": (4,), "W1": (3, 4), "b1": (3,), "W2": (4, 3), "b2": (4,)}
        if act == "maxout":
            want.update({"W0": (4, 3, 3), "b0": (4, 3), "W1": (3, 3, 4), "b1": (3, 3)})
        else:
            want.update({"alpha0": (4,), "alpha1": (3,)})
            assert np.all(np.asarray(p["alpha0"]) == np.float32(0.2))
            p = spread_slopes(p, rng)
        assert {k: a.shape for k, a in p.items()} == want
        ref_loss, ref_grad = np_mlp(p, x, y, 2, act, objective)
        check_grads(problem, p, data, one(v, i), ref_loss, ref_grad)


@pytest.mark.parametrize("act", ["prelu", "maxout"])
@pytest.mark.parametrize("param", ["standard", "ntk"])
def test_two_layer_1d_layers_loss_and_gradient_match_numpy(act, param):
    xs, ys, ps = [-1.5, -0.4, 0.3, 0.9, 2.0], [1.0, -0.2, 0.5, 0.1, 3.0], [1.0, 2.0, 1.0, 0.5, 0.5]
    spec, problem, v, keys, data = built({
        "problem": {"name": "two_layer_1d", "width": 6, "param": param, "x": xs, "y": ys, "p": ps,
                    "activation": act, "pieces": 3},
        "init": {"bias_std": 0.5}, "axes": {"seed": {"range": 2}}})
    x, y, w8 = (np.asarray(a, np.float64) for a in data)
    s = np.sqrt(2 / 6) if param == "ntk" else 1.0
    rng = np.random.default_rng(1)
    for i in range(2):
        p = problem.init(keys[i], one(v, i))
        assert p["a"].shape == p["b"].shape == ((6, 3) if act == "maxout" else (6,))
        if act == "prelu":
            assert np.all(np.asarray(p["alpha"]) == np.float32(0.25))  # prelu's default initial slope
            p = spread_slopes(p, rng)
        ref_loss, ref_grad = np_two_layer_1d(p, x, y, w8, s, act)
        check_grads(problem, p, data, one(v, i), ref_loss, ref_grad)


@pytest.mark.parametrize("act", ["prelu", "maxout"])
@pytest.mark.parametrize("param", ["standard", "meanfield"])
def test_two_layer_lr_layers_loss_and_gradient_match_numpy(act, param):
    spec, problem, v, keys, data = built({
        "problem": {"name": "two_layer_lr", "d": 3, "width": 5, "n_data": 7, "param": param, "activation": act,
                    "pieces": 2, "gain": 1.3},
        "axes": {"seed": {"range": 2}}})
    x, y = (np.asarray(a, np.float64) for a in data)
    in_s, out_s = (1.0, 1.0) if param == "standard" else (1 / np.sqrt(3), 1 / 5)
    rng = np.random.default_rng(2)
    for i in range(2):
        p = problem.init(keys[i], one(v, i))
        assert p["W0"].shape == ((5, 2, 3) if act == "maxout" else (5, 3))
        if act == "prelu":
            p = spread_slopes(p, rng)
        ref_loss, ref_grad = np_two_layer_lr(p, x, y, in_s, out_s, 1.3, act)
        check_grads(problem, p, data, one(v, i), ref_loss, ref_grad)


# --------------------------------------------------------------------------- vmap == loop
LAYER_SPECS = {
    "mlp": {"problem": {"name": "mlp", "widths": [5], "data": {"source": "moons", "n": 24}},
            "train": {"steps": 60, "lr": 0.5}, "axes": {"seed": {"range": 2}, "init_scale": [0.5, 1.0]}},
    "two_layer_1d": {"problem": {"name": "two_layer_1d", "width": 4}, "train": {"steps": 200, "lr": 0.05},
                     "init": {"bias_std": 0.3}, "axes": {"seed": {"range": 4}}},
    "two_layer_lr": {"problem": {"name": "two_layer_lr", "d": 3, "width": 5, "n_data": 6, "trainable_k": 5},
                     "train": {"steps": 80, "lr": 0.3}, "axes": {"seed": {"range": 2}, "lr1": [0.3, 1.0]}},
}


@pytest.mark.parametrize("act", ["prelu", "maxout"])
@pytest.mark.parametrize("name", list(LAYER_SPECS))
def test_layers_vmap_equals_loop(name, act):
    """The engine's batched run equals each trajectory run alone (step.run_one); prelu's slopes are swept as the
    alpha option (traced), maxout's extra pieces by piece_scale (traced)."""
    spec = LAYER_SPECS[name]
    spec = {**spec, "problem": {**spec["problem"], "activation": act, "pieces": 3},
            "axes": {**spec["axes"], **({"alpha": [0.0, 0.3]} if act == "prelu" else {"piece_scale": [0.5, 1.0]})}}
    assert_matches_reference(sweep.run(spec, progress=False), reference(spec))


# --------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("name", list(LAYER_SPECS))
def test_maxout_with_two_pieces_and_piece_scale_zero_starts_as_relu(name):
    """piece_scale = 0: piece 1 of every unit starts at 0 and piece 0 is the relu net's unit from the same key, so
    max(z, 0) = relu(z): the same initial loss. (prelu with slope 0 is relu too.)"""
    spec = LAYER_SPECS[name]
    spec = {**spec, "problem": {**spec["problem"], "activation": "relu"}}
    _, relu, v, keys, data = built(spec)
    _, mo, vm, _, _ = built({**spec, "problem": {**spec["problem"], "activation": "maxout"},
                             "init": {**spec.get("init", {}), "piece_scale": 0.0}})
    _, pre, vp, _, _ = built({**spec, "problem": {**spec["problem"], "activation": "prelu", "alpha": 0.0}})
    for i in range(2):
        pr, pm, pp = relu.init(keys[i], one(v, i)), mo.init(keys[i], one(vm, i)), pre.init(keys[i], one(vp, i))
        for k, w in pr.items():
            np.testing.assert_array_equal(np.asarray(pm[k])[:, 0] if pm[k].ndim > w.ndim else pm[k], w, err_msg=k)
            if pm[k].ndim > w.ndim:
                assert np.all(np.asarray(pm[k])[:, 1:] == 0)
        want = float(jax.jit(relu.loss)(pr, data, one(v, i)))
        assert float(jax.jit(mo.loss)(pm, data, one(vm, i))) == pytest.approx(want, rel=1e-6)
        assert float(jax.jit(pre.loss)(pp, data, one(vp, i))) == pytest.approx(want, rel=1e-6)
        assert float(jax.jit(mo.loss)(mo.init(keys[i], {**one(vm, i), "piece_scale": jnp.float32(1.0)}),
                                      data, one(vm, i))) != want  # the extra pieces matter once they are drawn


def np_envelope_kinks(a, b):
    """Breakpoints of max_j (a_j x + b_j) for one unit, by brute force in float64: crossings of two pieces where
    both are maximal."""
    out = []
    for j in range(len(a)):
        for l in range(j + 1, len(a)):
            if a[j] == a[l]:
                continue
            x = (b[l] - b[j]) / (a[j] - a[l])
            vals = a * x + b
            if vals[j] >= vals.max() - 1e-9 * (1 + abs(vals.max())):
                out.append(x)
    return out


def test_two_layer_1d_maxout_kinks_are_the_breakpoints_of_each_units_max():
    """max_abs_kink and kink_reached_data for maxout units of 3 pieces: only crossings on the upper envelope count."""
    spec = {"problem": {"name": "two_layer_1d", "width": 5, "activation": "maxout", "pieces": 3},
            "init": {"bias_std": 1.0}, "axes": {"seed": {"range": 6}}}
    _, problem, v, keys, data = built(spec)
    margin = 0.5  # min |x| of the default data
    reached_any = []
    for i in range(6):
        vi = one(v, i)
        p = problem.init(keys[i], vi)
        a, b = np.asarray(p["a"], np.float64), np.asarray(p["b"], np.float64)
        kinks = [x for u in range(5) for x in np_envelope_kinks(a[u], b[u])]
        assert len(kinks) < 5 * 3  # some crossings are under the envelope (3 pairs per unit, at most 2 kinks)
        m = jax.jit(problem.metrics)(p, data, vi)
        np.testing.assert_allclose(m["max_abs_kink"], max(abs(x) for x in kinks), rtol=1e-5)
        reached = any(abs(x) >= margin for x in kinks)
        assert bool(jax.jit(problem.track)(p, data, vi)["kink_reached_data"]) == reached
        reached_any.append(reached)
        assert float(m["dead_fraction"]) == 0.0  # a maxout unit has no flat side
    ds = sweep.run({**spec, "train": {"steps": 2, "lr": 0.01}}, progress=False)
    np.testing.assert_array_equal(ds.kink_reached_data_step.values == 0, reached_any)
