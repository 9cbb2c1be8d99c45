"""``sweep.merge`` and ``sweep.refine`` name both a function of the public API and the module that
defines it. The package exports its functions lazily (``sweep/__init__.py``), so importing the module
``sweep.merge`` binds the module, not the function, to ``sweep.merge``; such a module is made callable,
forwarding to its function, so ``sweep.merge(...)`` works whichever was bound first."""
from __future__ import annotations

import sys
import types
from typing import Callable


def callable_module(name: str, func: Callable) -> None:
    """Make the module ``name`` callable as ``func``."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return func(*args, **kwargs)

    sys.modules[name].__class__ = _CallableModule
