"""``ds.sweep.*``: the analysis and plot functions as methods of result Datasets.

Importing this module registers the accessor. Every method only forwards to the function of
the same name in ``sweep.analysis``, ``sweep.dynamics``, ``sweep.plot`` or ``sweep.report`` with the Dataset as first argument;
see those for arguments and return values.
"""
from __future__ import annotations

import importlib
import inspect
import types

import xarray as xr


def _forward(func):
    """A method calling ``func(self._ds, *args, **kwargs)``, with func's name, doc and
    signature (first parameter shown as ``self``)."""

    def method(self, *args, **kwargs):
        return func(self._ds, *args, **kwargs)

    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    method.__name__ = method.__qualname__ = func.__name__
    method.__doc__ = func.__doc__
    method.__signature__ = sig.replace(
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                    *params[1:]])
    return method


_METHODS = {  # method -> the module of the function it forwards to (imported on first use: it imports JAX)
    "outcomes": "analysis", "summary": "analysis", "fractions": "analysis", "boundary": "analysis",
    "fractal_dimension": "analysis", "uncertainty_exponent": "analysis",
    "basin_entropy": "dynamics", "fractal_test": "dynamics", "wada": "dynamics", "tipping": "dynamics",
    "tipping_plot": "plot", "report": "report", "basin_map": "plot", "convergence_map": "plot", "fractions_plot": "plot", "boundary_plot": "plot",
    "trajectories": "plot", "loss_curves": "plot",
}


@xr.register_dataset_accessor("sweep")
class SweepAccessor:
    """Analysis and plots of a sweep result: ``ds.sweep.fractions()``, ``ds.sweep.basin_map(
    "w0", "b0")``, ... (forwards to ``sweep.analysis`` and ``sweep.plot``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def __getattr__(self, name: str):
        module = _METHODS.get(name)
        if module is None:
            raise AttributeError(f"ds.sweep has no method {name!r}; methods: {', '.join(_METHODS)}")
        func = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return types.MethodType(_forward(func), self)

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(_METHODS))
