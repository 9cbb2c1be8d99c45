"""Write experiments/holzmuller_inconsistency.npz: the width-16 networks of Holzmueller & Steinwart (2020),
"Training two-layer ReLU networks with gradient descent is inconsistent" (github.com/dholzmueller/nn_inconsistency,
mc_training.py), drawn with the paper's own seeds, so experiments/holzmuller_inconsistency.toml trains the paper's
own Monte Carlo networks.

What mc_training.py does for n_hidden = 16 (the first network size of its Monte Carlo):
  np.random.seed(1234567890); np.random.randn(1000)   # get_param_combinations: warm-up draws
  one seed = np.random.randint(2**30) per worker configuration, in order; width 16 has configurations of
  4096, 4096 and 1808 networks (10,000 in all), each run as
    np.random.seed(seed)
    x_weights = multinomial(n^2 = 256, [1/6]*6, size=K) / 256   # each network's own data weights
    (a second multinomial draw, the validation weights, unused by gradient descent)
    a = sqrt(2) * randn(K, 1, 16); b = 0; c = 0; w = sqrt(2/16) * randn(K, 1, 16)   # He
    lr = 1 / lambda_max(M^(1/2) A_ref M^(1/2)) per network (TrainingSetup.compute_lr)
  on x = (-1, -2, -3, 1, 2, 3), y = (-1, 2, -1, 1, -2, 1) (+ an offset 0, 0.01 or 0.1), loss
  1/2 sum_j p_j (f(x_j) - y_j)^2 with f(x) = c + sum_i w_i relu(a_i x + b_i), full-batch GD.
The legacy np.random stream is stable across NumPy versions, so these are the paper's networks.

lambda_max here is computed from the paper's block form (derived in the gallery entry): with every kink at 0
(b = 0), unit i acts only on the points of the sign of a_i, and the Gauss-Newton matrix J^T P J has the nonzero
spectrum of A_ref M, A_ref = C + blockdiag(G_+, G_-), G_s = [[sum a_i^2 + sum w_i^2, sum a_i b_i],
[sum a_i b_i, sum b_i^2 + sum w_i^2]] over units with sign(a_i) = s, C the output bias c's all-ones block on the
(bias) entries, M = blockdiag(M_+, M_-), M_s = sum over points of sign s of p_j (x_j, 1)(x_j, 1)^T.

Usage: python experiments/holzmuller_inconsistency_data.py [--configs 1] [--offset 0] [--out PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

X = np.array([-1.0, -2.0, -3.0, 1.0, 2.0, 3.0])
Y = np.array([-1.0, 2.0, -1.0, 1.0, -2.0, 1.0])
WIDTH = 16


def worker_seeds(width: int = WIDTH, runs: int = 10000, first_log: int = 4, last_log: int = 11):
    """(seed, networks) of every worker configuration of ``width``, in the paper's order of seed draws."""
    state = np.random.RandomState()
    state.seed(1234567890)
    state.randn(1000)
    out = []
    for k in range(first_log, last_log + 1):
        n_parallel = min(2 ** max(16 - k, 3), runs)
        left = runs
        while left > 0:
            here = min(n_parallel, left)
            seed = state.randint(2 ** 30)
            if 2 ** k == width:
                out.append((int(seed), here))
            left -= here
    return out


def networks(seed: int, count: int, width: int = WIDTH):
    """(p (count, 6), a (count, width), w (count, width)) of one worker configuration."""
    state = np.random.RandomState()
    state.seed(seed)
    m = width ** 2
    p = state.multinomial(m, [1.0 / 6.0] * 6, size=count) / m
    state.multinomial(m, [1.0 / 6.0] * 6, size=count)  # the validation weights: drawn, not used
    a = np.sqrt(2.0 / 1) * state.randn(count, 1, width)
    w = np.sqrt(2.0 / width) * state.randn(count, 1, width)
    return p, a[:, 0, :], w[:, 0, :]


def lambda_max(p: np.ndarray, a: np.ndarray, w: np.ndarray, x: np.ndarray = X) -> np.ndarray:
    """(K,) top eigenvalue of A_ref M (b = 0) per network, from its symmetric form M^(1/2) A_ref M^(1/2)."""
    K = p.shape[0]
    out = np.empty(K)
    for i in range(K):
        mats, gs = [], []
        for s in (1.0, -1.0):
            on = np.sign(x) == s
            f = np.stack([x[on], np.ones(on.sum())], axis=1)
            mats.append(f.T @ (p[i, on][:, None] * f))
            u = np.sign(a[i]) == s
            aa, ww = np.sum(a[i, u] ** 2), np.sum(w[i, u] ** 2)
            gs.append(np.array([[aa + ww, 0.0], [0.0, ww]]))  # sum a b = sum b^2 = 0 at b = 0
        A = np.zeros((4, 4))
        A[:2, :2], A[2:, 2:] = gs
        A[np.ix_([1, 3], [1, 3])] += 1.0  # the output bias c
        M = np.zeros((4, 4))
        M[:2, :2], M[2:, 2:] = mats
        ev, vec = np.linalg.eigh(M)
        root = (vec * np.sqrt(np.clip(ev, 0, None))) @ vec.T
        out[i] = np.linalg.eigvalsh(root @ A @ root).max()
    return out


def draw(configs: int = 1, offset: float = 0.0) -> dict[str, np.ndarray]:
    ps, as_, ws = zip(*(networks(seed, n) for seed, n in worker_seeds()[:configs]))
    p, a, w = np.concatenate(ps), np.concatenate(as_), np.concatenate(ws)
    return {"x": X, "y": Y + offset, "p": p, "a": a, "w": w, "lr": 1.0 / lambda_max(p, a, w)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=1, help="worker configurations of width 16 (1: 4096 networks, "
                    "3: all 10,000)")
    ap.add_argument("--offset", type=float, default=0.0, help="added to y (the paper: 0, 0.01, 0.1)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("holzmuller_inconsistency.npz")))
    args = ap.parse_args()
    arrays = draw(args.configs, args.offset)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
