"""sweep: train millions of tiny networks at once and map how each run ended.

``import sweep`` registers the ``ds.sweep`` accessor and asks JAX (not yet started) for one CPU
device per core; the public names below are imported on first use, so that a tool that only
needs a little of sweep (``sweep --help``) does not pay for importing JAX.
"""
__version__ = "0.1.0"

import importlib as _importlib
import sys as _sys
import types as _types

from .cores import use_all_cores as _use_all_cores

_use_all_cores()  # before anything starts JAX

from . import accessor as _accessor  # noqa: E402  registers ds.sweep (the analysis is imported on first use)

_EXPORTS = {
    "run": "api", "merge": "merge", "refine": "refine",
    "outcomes": "analysis", "summary": "analysis", "fractions": "analysis", "boundary": "analysis",
    "fractal_dimension": "analysis", "uncertainty_exponent": "analysis",
    "basin_entropy": "dynamics", "fractal_test": "dynamics", "wada": "dynamics", "tipping": "dynamics",
    "Spec": "config", "SpecError": "config", "parse_spec": "config",
    "load": "io", "save": "io",
    "Outcome": "outcomes", "Thresholds": "outcomes",
}

__all__ = ["run", "merge", "refine", "outcomes", "summary", "fractions", "boundary", "fractal_dimension",
           "uncertainty_exponent", "basin_entropy", "fractal_test", "wada", "tipping", "Spec", "SpecError", "parse_spec", "load", "save", "Outcome", "Thresholds",
           "__version__"]


# public functions named like a submodule: importing the submodule must not replace the function
_SHADOWED = frozenset({"merge", "refine", "outcomes"})


class _Package(_types.ModuleType):
    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, _types.ModuleType):
            return  # the import system binding sweep.merge (the module): sweep.merge stays the function
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # once
        return value
    if not name.startswith("_"):  # a submodule, as with an eager package (``sweep.engine.dataset``)
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
