"""sweep: train millions of tiny networks at once and map how each run ended."""
__version__ = "0.1.0"

from .cores import use_all_cores as _use_all_cores

_use_all_cores()  # before anything starts JAX

from . import accessor as _accessor  # registers ds.sweep
from .analysis import (boundary as boundary, fractal_dimension as fractal_dimension, fractions as fractions,
                       outcomes as outcomes, summary as summary, uncertainty_exponent as uncertainty_exponent)
from .dynamics import (basin_entropy as basin_entropy, fractal_test as fractal_test, tipping as tipping,
                       wada as wada)
from .api import run as run
from .merge import merge as merge
from .refine import refine as refine
from .config import Spec as Spec, SpecError as SpecError, parse_spec as parse_spec
from .io import load as load, save as save
from .outcomes import Outcome as Outcome, Thresholds as Thresholds

__all__ = ["run", "merge", "refine", "outcomes", "summary", "fractions", "boundary", "fractal_dimension", "uncertainty_exponent", "basin_entropy", "fractal_test", "wada", "tipping", "Spec", "SpecError", "parse_spec", "load", "save", "Outcome", "Thresholds", "__version__"]
