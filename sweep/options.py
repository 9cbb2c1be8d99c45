"""Option schemas: the typed, documented keys of every spec section (no jax here)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple


@dataclasses.dataclass(frozen=True)
class Opt:
    """One spec key.

    kind: "float" | "int" | "bool" | "choice" | "str" | "floats" (a number or a list of numbers) |
      "ints" (an integer or a non-empty list of integers, e.g. layer widths; lo applies to each) |
      "table" (a table of name = finite number, e.g. a function loss's constants).
    traced: a number whose swept values are per-trajectory arrays (never recompiles); a traced "int"
      reaches the problem as a float array holding the integer (exact below 2**24; e.g. ``init_row``).
    Other options, swept as axes, are static: one compilation per value.
    """

    default: Any
    kind: str
    doc: str
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo is exclusive
    traced: bool = False
    units: str = ""
    infinite: bool = False  # a float that may also be +inf (e.g. a divergence bound switched off)

    def allowed(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        rng = ""
        if self.lo is not None and self.hi is not None:
            rng = f" in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}]"
        elif self.lo is not None:
            rng = f" {'>' if self.lo_open else '>='} {_num(self.lo)}"
        elif self.hi is not None:
            rng = f" <= {_num(self.hi)}"
        return {"float": "a number (inf allowed)" if self.infinite else "a finite number", "int": "an integer", "str": "a string",
                "floats": "a number or a list of numbers",
                "ints": "an integer or a list of integers",
                "table": "a table of name = number"}[self.kind] + rng

    def check(self, value: Any) -> Any:
        """Return the normalised value or raise ValueError with what is allowed."""
        k = self.kind
        if k == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.allowed())
            return value
        if k == "choice":
            if isinstance(value, bool) or value not in self.choices:
                raise ValueError(self.allowed())
            # keep the registry's own type (0 and 0.0 compare equal)
            return self.choices[self.choices.index(value)]
        if k == "str":  # "" only where it is the default (it means "none", e.g. no file)
            if not isinstance(value, str) or (not value and self.default != ""):
                raise ValueError(self.allowed())
            return value
        if k == "table":
            if not isinstance(value, dict) or not all(isinstance(n, str) for n in value):
                raise ValueError(self.allowed())
            return {n: Opt(0.0, "float", "").check(x) for n, x in value.items()}
        if k == "ints":
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if not items:
                raise ValueError(self.allowed())
            return tuple(Opt(0, "int", "", lo=self.lo, hi=self.hi).check(v) for v in items)
        if k == "floats":
            if isinstance(value, (list, tuple)):
                return tuple(Opt(0.0, "float", "").check(v) for v in value)
            return Opt(0.0, "float", "", lo=self.lo, hi=self.hi).check(value)
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise ValueError(self.allowed())
        elif k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(self.allowed())
            value = float(value)
            if not (math.isfinite(value) or (self.infinite and value == math.inf)):
                raise ValueError(self.allowed())
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise ValueError(self.allowed())
        if self.hi is not None and value > self.hi:
            raise ValueError(self.allowed())
        return value


def _num(x: float) -> str:
    """A bound as text: integers in full (2147483647, not 2.14748e+09), other numbers with %g."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


class EventSpec(NamedTuple):
    """One declarative event of a spec's ``[events]``: the first step at which a parameter crosses a level.

    ``<name>_step`` (int32) is the first k at which the condition holds after k updates (-1: never) and
    ``<name>`` (int8) whether it ever held.
    """

    name: str
    param: str  # a parameter of the problem (a scalar, or an array reduced with ``over``)
    level: float
    above: bool  # True: param > level; False: param < level
    over: str  # "any" | "all": over the entries of an array parameter
    stop: bool  # the run settles when the event fires
