"""Shared small specs for tests."""
import numpy as np

from sweep.outcomes import Outcome


def neuron_spec(steps=300, lr=0.1, n=64, bias=True, activation="relu", dist="normal", axes=None, **train):
    return {
        "problem": {"name": "neuron", "bias": bias, "activation": activation,
                    "data": {"dist": dist, "n": n}},
        "train": {"steps": steps, "lr": lr, **train},
        "axes": axes if axes is not None else {"w0": {"linspace": [-2, 2, 9]}, "b0": {"linspace": [-2, 2, 7]}},
    }


def names(codes) -> np.ndarray:
    return np.vectorize(lambda c: Outcome(int(c)).name.lower())(np.asarray(codes))
