"""Write experiments/sohl_dickstein_fractal.npz: the data and initial weights of Sohl-Dickstein (2024), "The
boundary of neural network trainability is fractal" (github.com/Sohl-Dickstein/fractal, the notebook), drawn the
way its notebook draws them, so experiments/sohl_dickstein_fractal.toml trains the paper's own network.

The notebook (width 16, depth 2, target_dim 1, dataset_param_multiple 1, float64 via jax_enable_x64):
  key = PRNGKey(0); key, k = split(key); W0, W1 = normal(split(k, 2)[i], (16, 16) and (16, 1))
  key, k = split(key); X = normal(k, (272, 16))      # 272 = the 16*16 + 16 parameters
  key, k = split(key); Y = normal(k, (272, 1))
It ran on JAX 0.4 (before 0.5.0 made jax_threefry_partitionable the default), so the draws here are made with that
flag off: the same keys give the notebook's numbers. Stored in the project's layout: W0 (width, d) = the notebook's
W0 transposed (it computes X @ W0), W1 (width,), y as the notebook's (272, 1) column.

Usage: python experiments/sohl_dickstein_fractal_data.py [--width 16] [--out PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_threefry_partitionable", False)

import numpy as np  # noqa: E402


def draw(width: int = 16, ratio: float = 1.0) -> dict[str, np.ndarray]:
    """x (n, width), y (n, 1), W0 (width, width), W1 (width,) as the notebook draws them (n = its batch_size)."""
    key = jax.random.PRNGKey(0)
    key, k = jax.random.split(key)
    k0, k1 = jax.random.split(k, 2)
    w0 = jax.random.normal(k0, (width, width))  # the notebook's (in, out)
    w1 = jax.random.normal(k1, (width, 1))
    n = int((w0.size + w1.size) * ratio / 1)  # n_params * dataset_param_multiple / target_dim
    key, k = jax.random.split(key)
    x = jax.random.normal(k, (n, width))
    key, k = jax.random.split(key)
    y = jax.random.normal(k, (n, 1))
    return {"x": np.asarray(x), "y": np.asarray(y), "W0": np.asarray(w0).T, "W1": np.asarray(w1)[:, 0]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).with_name("sohl_dickstein_fractal.npz")))
    a = ap.parse_args()
    arrays = draw(a.width)
    assert all(v.dtype == np.float64 for v in arrays.values())
    np.savez(a.out, **arrays)
    print(f"wrote {a.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
