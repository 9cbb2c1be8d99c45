"""``ds.sweep.*``: the analysis and plot functions as methods of result Datasets.

Importing this module registers the accessor. Every method only forwards to the function of
the same name in ``sweep.analysis``, ``sweep.plot`` or ``sweep.report`` with the Dataset as first argument;
see those for arguments and return values.
"""
from __future__ import annotations

import inspect

import xarray as xr

from . import analysis, plot, report as _report


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


@xr.register_dataset_accessor("sweep")
class SweepAccessor:
    """Analysis and plots of a sweep result: ``ds.sweep.fractions()``, ``ds.sweep.basin_map(
    "w0", "b0")``, ... (forwards to ``sweep.analysis`` and ``sweep.plot``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    outcomes = _forward(analysis.outcomes)
    summary = _forward(analysis.summary)
    fractions = _forward(analysis.fractions)
    boundary = _forward(analysis.boundary)
    fractal_dimension = _forward(analysis.fractal_dimension)
    uncertainty_exponent = _forward(analysis.uncertainty_exponent)
    basin_map = _forward(plot.basin_map)
    convergence_map = _forward(plot.convergence_map)
    fractions_plot = _forward(plot.fractions_plot)
    boundary_plot = _forward(plot.boundary_plot)
    trajectories = _forward(plot.trajectories)
    loss_curves = _forward(plot.loss_curves)
    report = _forward(_report.report)
