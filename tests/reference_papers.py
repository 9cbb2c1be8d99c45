"""Independent NumPy float64 implementations of two published procedures, written from the papers' code (read for
its conventions, not copied), to check the engine's maps pixel by pixel:

- ``sohl_dickstein_map``: Sohl-Dickstein (2024), "The boundary of neural network trainability is fractal"
  (github.com/Sohl-Dickstein/fractal, the notebook): a mean-field two-layer network, one learning rate per layer,
  full-batch GD, trainable iff the mean of the last 20 recorded losses, each divided by the first, is < 1.
- ``holzmueller_crossing``: Holzmueller & Steinwart (2020), "Training two-layer ReLU networks with gradient descent
  is inconsistent" (github.com/dholzmueller/nn_inconsistency, mc_training.py): GD on c + sum w_i relu(a_i x + b_i)
  with per-network data weights and step sizes; has a kink |b_i/a_i| reached min |x_j|?

Both batch over networks with NumPy only (no JAX), in the order of operations the papers' code uses.
"""
from __future__ import annotations

import numpy as np

SQRT2 = np.sqrt(2.0)


# --------------------------------------------------------------------------- Sohl-Dickstein 2024
def sohl_dickstein_losses(x, y, W0, W1, lr0, lr1, steps: int, act: str = "tanh", block: int = 512) -> np.ndarray:
    """Loss before each of ``steps`` GD updates, for every pair of per-layer learning rates.

    Args:
      x: (n, d) inputs; y: (n,) or (n, 1) targets; W0: (width, d), W1: (width,) the initial weights (the project's
        layout: the notebook's W0 transposed); lr0, lr1: (B,) learning rates of the input and output layer.
    Returns:
      (B, steps) float64: L(theta_0) .. L(theta_{steps-1}), L = mean (f - y)^2,
      f = (1/width) W1 . act(W0 x / sqrt(d)) with act = tanh(sqrt(2) z) or sqrt(2) relu(z).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(-1, 1)
    n, d = x.shape
    width = W1.shape[0]
    out = np.empty((len(lr0), steps))
    for s in range(0, len(lr0), block):
        e = slice(s, s + block)
        a0 = np.asarray(lr0[e], np.float64)[:, None, None]
        a1 = np.asarray(lr1[e], np.float64)[:, None, None]
        B = a0.shape[0]
        V0 = np.broadcast_to(np.asarray(W0, np.float64).T, (B, d, width)).copy()  # (in, out) as the notebook
        V1 = np.broadcast_to(np.asarray(W1, np.float64)[:, None], (B, width, 1)).copy()
        with np.errstate(all="ignore"):
            for t in range(steps):
                z = (x @ V0) / np.sqrt(d)  # (B, n, width)
                if act == "tanh":
                    h = np.tanh(z * SQRT2)
                    dh_dz = SQRT2 * (1.0 - h * h)
                else:
                    h = np.maximum(z, 0.0) * SQRT2
                    dh_dz = SQRT2 * (z > 0)
                f = ((h @ V1) / np.sqrt(width)) / np.sqrt(width)  # (B, n, 1)
                r = f - y
                out[e, t] = np.mean(r * r, axis=(1, 2))
                g = ((2.0 / n) * r) / np.sqrt(width) / np.sqrt(width)  # d loss / d (h V1)
                g1 = np.swapaxes(h, 1, 2) @ g  # (B, width, 1)
                gz = (g @ np.swapaxes(V1, 1, 2)) * dh_dz  # (B, n, width)
                g0 = (x.T @ gz) / np.sqrt(d)  # (B, d, width)
                V0 = V0 - a0 * g0
                V1 = V1 - a1 * g1
    return out


def sohl_dickstein_trainable(losses: np.ndarray, k: int = 20, max_val: float = 1e6) -> np.ndarray:
    """The notebook's criterion on (B, steps) losses: non-finite losses become nan (the notebook's v*fin + max*(1-fin)
    gives inf*0 = nan for an infinite loss), every loss is divided by the first and clipped at max_val, and a run is
    trainable iff the mean of the last k is < 1 (nan: not). Returns (B,) bool."""
    with np.errstate(all="ignore"):
        fin = np.isfinite(losses)
        v = losses * fin + max_val * (1 - fin)
        v = v / v[:, :1]
        v = np.where(v > max_val, max_val, v)
        return np.mean(v[:, -k:], axis=1) < 1


# --------------------------------------------------------------------------- Holzmueller & Steinwart 2020
def holzmueller_lambda_max(x, p, a, b, w) -> np.ndarray:
    """(K,) top eigenvalue of the Gauss-Newton matrix J^T P J of 1/2 sum_j p_j (f(x_j) - y_j)^2 at (a, b, c, w):
    that of the weighted kernel P^(1/2) J J^T P^(1/2) (n x n), J_j = d f(x_j) / d(a, b, c, w) by hand with
    relu'(0) = 1 (a unit is active where a x + b >= 0). At b = 0 this is lambda_max(A_ref M) of the paper."""
    x = np.asarray(x, np.float64)
    z = a[:, None, :] * x[None, :, None] + b[:, None, :]  # (K, n, width)
    on = z >= 0
    da = w[:, None, :] * x[None, :, None] * on
    db = w[:, None, :] * on
    dw = np.where(on, z, 0.0)
    J = np.concatenate([da, db, dw, np.ones(z.shape[:2] + (1,))], axis=2)  # (K, n, 3 width + 1)
    sp = np.sqrt(p)[:, :, None]
    G = (sp * J) @ np.swapaxes(sp * J, 1, 2)
    return np.linalg.eigvalsh(G)[:, -1]


def holzmueller_crossing(x, y, p, a, w, lr, steps: int, b=None, c=None):
    """Full-batch GD of mc_training.py's CheckingNN.train_one_epoch for ``steps`` updates, every network at once.

    Args:
      x, y: (n,) data; p: (K, n) data weights; a, w: (K, width) initial weights (b, c: zeros unless given);
      lr: (K,) step sizes.
    Returns:
      dict of (K,) arrays: crossed (some |b_i/a_i| >= min |x| after some update), cross_step (first such update
      count, -1: never), final_loss (1/2 sum p (f - y)^2 at the end), max_kink (the largest |b_i/a_i| seen).
    """
    x = np.asarray(x, np.float64)[None, :, None]  # (1, n, 1)
    y = np.asarray(y, np.float64)[None, :, None]
    pw = np.asarray(p, np.float64)[:, :, None]  # (K, n, 1)
    a = np.asarray(a, np.float64)[:, None, :].copy()  # (K, 1, width)
    w = np.asarray(w, np.float64)[:, None, :].copy()
    b = np.zeros_like(a) if b is None else np.asarray(b, np.float64)[:, None, :].copy()
    c = np.zeros((a.shape[0], 1, 1)) if c is None else np.asarray(c, np.float64).reshape(-1, 1, 1).copy()
    neg_lr = -np.asarray(lr, np.float64)[:, None, None]
    margin = np.min(np.abs(x))
    K = a.shape[0]
    max_kink = np.zeros(K)
    cross_step = np.full(K, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            act = a * x + b  # (K, n, width)
            off = act < 0
            act[off] = 0.0
            res = np.sum(w * act, axis=2, keepdims=True) + c - y  # f - y, (K, n, 1)
            res = res * pw * neg_lr  # -lr p_j (f_j - y_j)
            c = c + np.sum(res, axis=1, keepdims=True)
            back = res * w  # -lr p_j r_j w_i, zero where the unit is off
            back[off] = 0.0
            b = b + np.sum(back, axis=1, keepdims=True)
            a = a + np.sum(back * x, axis=1, keepdims=True)
            w = w + np.sum(res * act, axis=1, keepdims=True)
            kink = np.max(np.abs(b / a), axis=2)[:, 0]
            max_kink = np.maximum(max_kink, kink)
            cross_step = np.where((cross_step < 0) & (max_kink >= margin), t, cross_step)
    act = np.maximum(a * x + b, 0.0)
    f = np.sum(w * act, axis=2, keepdims=True) + c
    loss = 0.5 * np.sum(pw * (f - y) ** 2, axis=(1, 2))
    return {"crossed": cross_step >= 0, "cross_step": cross_step, "final_loss": loss, "max_kink": max_kink}
