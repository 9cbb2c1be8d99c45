"""Option schemas: the typed, documented keys of every spec section (no jax here)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class Opt:
    """One spec key.

    kind: "float" | "int" | "bool" | "choice" | "str" | "floats" (a number or a list of numbers).
    traced: a float whose swept values are per-trajectory arrays (never recompiles).
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

    def allowed(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        rng = ""
        if self.lo is not None or self.hi is not None:
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            hi = "inf" if self.hi is None else f"{self.hi:g}"
            rng = f" in {'(' if self.lo_open else '['}{lo}, {hi}]"
        return {"float": "a finite number", "int": "an integer", "str": "a string",
                "floats": "a number or a list of numbers"}[self.kind] + rng

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
        if k == "str":
            if not isinstance(value, str) or not value:
                raise ValueError(self.allowed())
            return value
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
            if not math.isfinite(value):
                raise ValueError(self.allowed())
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise ValueError(self.allowed())
        if self.hi is not None and value > self.hi:
            raise ValueError(self.allowed())
        return value
