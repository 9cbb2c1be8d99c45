"""The spec: parse a TOML file / dict into a frozen, validated ``Spec`` before any compute.

Sections: ``seed`` (top level), ``[problem]`` (name, options, ``data`` table), ``[train]``
(steps, optimizer, hyperparameters), ``[init]`` (initial parameter values), ``[outcome]``
(classification thresholds), ``[run]`` (chunk size, dtype, early exit), ``[record]``
(recorded trajectories) and ``[axes]`` (swept options, in dimension order). Every error is a
``SpecError`` naming the key, the bad value and what is allowed.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import math
import os
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
import types
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from .options import EventSpec, Opt
from .optimizers import ALL_OPTIMIZERS, HYPER_DEFAULTS, LR_DEFAULTS, SECOND_ORDER, default_lr
from .outcomes import Thresholds
from . import user_loss
from .problems import DATA_OPTIONS, PROBLEMS, constant_key, function_start_keys, load_function, problem_init_options


class SpecError(ValueError):
    """A bad spec or bad argument: names the key, the value and what is allowed."""


def _fail(key: str, value: Any, allowed: str, choices=()) -> SpecError:
    msg = f"{key} = {_show(value)}: {allowed}"
    if choices and isinstance(value, str):
        near = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.5)
        if near:
            msg += f" (did you mean {near[0]!r}?)"
    return SpecError(msg)


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _unknown(section: str, key: str, known) -> SpecError:
    near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    where = f"[{section}]" if section else "the top level"
    return SpecError(f"{(section + '.') if section else ''}{key}: unknown key in {where}{hint}; "
                     f"allowed: {', '.join(sorted(known)) or 'none'}")


# --------------------------------------------------------------------------- size limits
MAX_STEPS = 2 ** 31 - 1  # step counters are int32 on the device
MAX_TRAJECTORIES = 2 ** 32  # a trajectory's random key folds in its global index as uint32
MAX_AXIS_VALUES = 2 ** 24  # an axis's values (coordinates) are held in host memory as Python numbers
MEMORY_FRACTION = 0.5  # the data of one compile group may use at most this fraction of physical memory
BYTES_PER_VALUE = 8  # float64 at worst
REF_POINTS_MIN = 4096  # fresh data: the engine also keeps a reference sample of max(4 * batch, 4096) points


def points_per_step(data: Mapping[str, Any]) -> int:
    """Data points one optimizer step sees: the minibatch (``batch``), or the whole ``n`` when batch = 0."""
    return int(data.get("batch") or data.get("n", 0) or 0)


def data_points(data: Mapping[str, Any]) -> int:
    """Data points one compile group holds on the device at once.

    A fixed dataset is held whole (``n`` points, even when minibatches are drawn from it); fresh
    batches hold one batch (``batch``, or ``n`` when batch = 0) plus the reference sample on
    which the final-window statistics are measured (max(4 * batch, 4096) points); the neuron's
    ``population = true`` holds none (its loss is an expectation over the distribution).
    """
    if data.get("population", False):
        return 0  # the expected loss over the distribution: no data held
    if not data.get("fresh", False):
        return int(data["n"])
    per_step = points_per_step(data)
    return per_step + max(4 * per_step, REF_POINTS_MIN)


def data_values_per_point(data: Mapping[str, Any]) -> int:
    """Numbers stored per data point: the inputs (``dim``, default 1) and the targets (one-hot
    ``classes``, default 1): 2 for the neuron's (x, y), dim + classes for the mlp's."""
    return int(data.get("dim", 1) or 1) + int(data.get("classes", 1) or 1)


def data_bytes(data: Mapping[str, Any]) -> int:
    """Bytes of data one compile group holds at once: ``data_points`` x values per point x 8 bytes.

    The vmapped layout also makes (trajectories x points) temporaries, so the same figure is the
    least any one trajectory needs: a spec whose data alone exceeds ``memory_budget()`` cannot run.
    """
    return data_points(data) * data_values_per_point(data) * BYTES_PER_VALUE


def physical_memory() -> int | None:
    """Bytes of physical memory on this host (None if the OS does not say)."""
    try:
        n = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return n if n > 0 else None


def memory_budget() -> int:
    """Bytes the data of one compile group may take: ``MEMORY_FRACTION`` of physical memory."""
    total = physical_memory()
    return int(total * MEMORY_FRACTION) if total else 2 ** 62


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


TRAIN_OPTIONS: dict[str, Opt] = {
    "steps": Opt(1000, "int", "optimizer steps per trajectory", lo=1, hi=MAX_STEPS),
    "optimizer": Opt("sgd", "choice", "the optimizer", choices=ALL_OPTIMIZERS),
    "lr": Opt(None, "float", "learning rate; default: the optimizer's own, "
              + ", ".join(f"{v:g} for {k}" for k, v in LR_DEFAULTS.items())
              + f" (a full second-order step), {HYPER_DEFAULTS['lr']:g} for the others (a sweep over optimizers "
              "without lr runs each at its own)", lo=0.0, lo_open=True, traced=True),
    "lr_mode": Opt("absolute", "choice", "absolute: the step size is lr; sharpness: each trajectory's step size is "
                   "lr / lambda0, lambda0 = the top Hessian eigenvalue of the loss at its initial parameters (power "
                   "iteration, stored as lambda0), so lr = 2 is GD's stability edge on a quadratic and lr > 2 a "
                   "'large' learning rate; a lambda0 <= 0 or non-finite makes that run nan",
                   choices=("absolute", "sharpness")),
    "momentum": Opt(HYPER_DEFAULTS["momentum"], "float", "momentum / nesterov coefficient", lo=0.0, hi=1.0, traced=True),
    "b1": Opt(HYPER_DEFAULTS["b1"], "float", "Adam-family first-moment decay", lo=0.0, hi=1.0, traced=True),
    "b2": Opt(HYPER_DEFAULTS["b2"], "float", "Adam-family second-moment decay", lo=0.0, hi=1.0, traced=True),
    "eps": Opt(HYPER_DEFAULTS["eps"], "float", "denominator epsilon", lo=0.0, traced=True),
    "weight_decay": Opt(HYPER_DEFAULTS["weight_decay"], "float", "adamw decoupled weight decay", lo=0.0, traced=True),
    "decay": Opt(HYPER_DEFAULTS["decay"], "float", "rmsprop squared-gradient decay", lo=0.0, hi=1.0, traced=True),
    "rho": Opt(HYPER_DEFAULTS["rho"], "float", "adadelta decay", lo=0.0, hi=1.0, traced=True),
    "initial_accumulator_value": Opt(HYPER_DEFAULTS["initial_accumulator_value"], "float",
                                     "adagrad initial accumulator", lo=0.0, traced=True),
    "damping": Opt(HYPER_DEFAULTS["damping"], "float", "second-order damping: newton and gauss_newton add "
                   "damping*I, levenberg_marquardt damping*diag(J^T J) (0: undamped)", lo=0.0, traced=True),
}

_THRESHOLD_DOCS = {
    "loss_atol": "converged: absolute tolerance on the loss above the target",
    "loss_rtol": "converged: tolerance relative to |target|",
    "converge_patience": "converged: consecutive steps within tolerance (without the loss growing)",
    "diverge_loss": "diverged: the loss exceeds max(diverge_loss, diverge_factor x |initial loss|) (inf: off)",
    "diverge_factor": "diverged: see diverge_loss (inf: off)",
    "diverge_param": "diverged: a parameter's magnitude exceeds this (inf: off)",
    "dead_patience": "dead: consecutive steps with every gradient entry exactly zero and every unit inactive",
    "window": "survivors are judged on this final fraction of the steps",
    "improve_rtol": "unfinished: the loss fell by more than this fraction of its excess over the target",
    "osc_factor": "oscillating: the window's loss path exceeds osc_factor x |net change| + osc_rtol x loss",
    "osc_rtol": "oscillating: see osc_factor",
    "move_rtol": "oscillating (deterministic data): the last update moved the parameters by more than "
                 "move_rtol x (1 + |params|)",
    "noise_rtol": "oscillating (noisy batches): the reference loss must also swing by more than noise_rtol x loss "
                  "over the window, so batch noise is not read as oscillation",
}
OUTCOME_OPTIONS: dict[str, Opt] = {
    name: Opt(default, "int" if isinstance(default, int) else "float", _THRESHOLD_DOCS[name],
              lo=1 if isinstance(default, int) else 0.0, hi=1.0 if name == "window" else None,
              lo_open=name == "window", infinite=name.startswith("diverge_"))
    for name, default in Thresholds._field_defaults.items() if name in _THRESHOLD_DOCS
}
OUTCOME_OPTIONS["sharpness_iters"] = Opt(0, "int", "power iterations (Hessian-vector products) for the final "
                                         "sharpness, stored with 2/lr; 0: off", lo=0, hi=10000)
OUTCOME_OPTIONS["settle"] = Opt(True, "bool", "false: train every run to the end of its budget (no early "
                                "settling; the outcome codes are the same, final values are those of the last "
                                "step) - as papers that average the losses of every step do")
OUTCOME_OPTIONS["lyapunov"] = Opt(False, "bool", "store `lyapunov`: the finite-time Lyapunov exponent of the training "
                                  "map (natural log per step; one tangent vector pushed through every update with "
                                  "jax.jvp and renormalised; > 0 chaos, < 0 inside a basin); costs about one more "
                                  "gradient evaluation per step")
OUTCOME_OPTIONS["target_loss"] = Opt(None, "float", "override the problem's target loss")

RUN_OPTIONS: dict[str, Opt] = {
    "chunk_size": Opt(0, "int", "trajectories per compiled call (0: automatic)", lo=0),
    "dtype": Opt("float32", "choice", "floating point precision", choices=("float32", "float64")),
    "early_exit": Opt(True, "bool", "stop a chunk once every trajectory in it has settled"),
    "layout": Opt("auto", "choice", "how trajectories meet the data: points (loop over data points, trajectories on the "
                  "vector axis: best for elementwise problems such as the neuron), vmap (vmap over trajectories in "
                  "cache-sized blocks of a fixed size: matrix products over the block, best for networks), auto (points "
                  "when the problem's per-point loss has no matrix product, else vmap); every layout gives the same "
                  "bits for any chunk size", choices=("auto", "points", "vmap")),
    "compact": Opt(True, "bool", "pack live trajectories together between segments so settled ones stop costing "
                   "compute (results are identical)"),
    "segments": Opt(16, "int", "compaction segments per run (steps per segment = steps / segments)", lo=1),
    "window": Opt(16, "int", "chunks compacted together (host memory: window x chunk trajectory states)", lo=1),
    "check_every": Opt(32, "int", "steps between 'all settled?' checks inside the compiled loop", lo=1),
}

RECORD_OPTIONS: dict[str, Opt] = {
    "every": Opt(1, "int", "record parameters and loss every k steps", lo=1),
    "stride": Opt(0, "int", "record every stride-th value along each axis (0: none recorded)", lo=0),
    "max": Opt(1024, "int", "at most this many recorded trajectories", lo=1),
}

TOP_KEYS = ("seed", "description", "problem", "train", "init", "outcome", "events", "run", "record", "axes", "refine")

REFINE_OPTIONS: dict[str, Opt] = {
    "x": Opt(None, "str", "axis drawn across (a linspace or logspace axis)"),
    "y": Opt(None, "str", "axis drawn up (a linspace or logspace axis)"),
    "levels": Opt(4, "int", "halvings of the coarse cells next to an outcome change", lo=0, hi=20),
    "var": Opt("outcome", "str", "variable whose changes mark the boundary, or an outcome name (e.g. diverged)"),
}
AXIS_FORMS = ("values", "linspace", "logspace", "range", "uniform", "normal", "zip")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One result dimension.

    name: dimension name. members: the option names it sets (one, or several when zipped or
    when random samples share the ``sample`` dimension). values: per member, a tuple of values
    (all the same length). spacing: "linear", "log", "list" or "random".
    """

    name: str
    members: tuple[str, ...]
    values: tuple[tuple, ...]
    spacing: str

    @property
    def size(self) -> int:
        return len(self.values[0])


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated sweep: every section resolved with its defaults (read-only)."""

    seed: int
    description: str
    problem: str
    problem_options: Mapping[str, Any]  # incl. "data" (a mapping) for data problems
    train: Mapping[str, Any]
    init: Mapping[str, Any]
    outcome: Mapping[str, Any]
    run: Mapping[str, Any]
    record: Mapping[str, Any]
    axes: tuple[Axis, ...]
    raw: Mapping[str, Any]  # the user's spec (after --set overrides), normalised
    options: Mapping[str, tuple[str, Opt]]  # every settable name -> (section, Opt)
    folder: str | None = None  # the spec file's folder (where a function problem's module is looked for first)
    events: tuple[EventSpec, ...] = ()  # the declarative [events]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def n_trajectories(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.axes else 1

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def swept(self) -> dict[str, Axis]:
        """Option name -> the axis that sweeps it."""
        return {m: a for a in self.axes for m in a.members}

    def to_toml(self) -> str:
        """The full spec, defaults filled in, as TOML text (stored in result files)."""
        return dumps_toml(self.raw)

    def hash(self) -> str:
        """sha256 of the normalised spec: identifies a sweep for resume and merge."""
        return hashlib.sha256(self.to_toml().encode()).hexdigest()[:16]

    def thresholds(self) -> Thresholds:
        return Thresholds(**{k: v for k, v in self.outcome.items() if k in Thresholds._fields})


# --------------------------------------------------------------------------- TOML writing
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def dumps_toml(d: Mapping[str, Any]) -> str:
    """Serialise a spec-shaped dict (scalars at top, then one level of tables)."""
    lines = [f"{_key(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, Mapping)]
    for k, v in d.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- loading
def load_spec_dict(source: Any) -> dict:
    """A path to a TOML file, TOML text is not accepted (ambiguous): path or dict only."""
    if isinstance(source, Spec):
        return copy.deepcopy(dict(source.raw))
    if isinstance(source, Mapping):
        return _plain(source)
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.exists():
            raise SpecError(f"spec file {str(p)!r} does not exist: give the path to a .toml spec")
        if p.is_dir():
            raise SpecError(f"spec file {str(p)!r} is a directory: give the path to a .toml spec")
        try:
            return tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"spec file {str(p)!r} is not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise SpecError(f"spec file {str(p)!r} is not a text file: give the path to a .toml spec") from None
    raise SpecError(f"spec: expected a dict, a sweep.Spec or a path to a TOML file, got {type(source).__name__}")


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def apply_overrides(d: dict, sets: list[str] | None) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as TOML, else a bare string)."""
    for item in sets or []:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: expected key=value, e.g. --set train.steps=500")
        key, text = item.split("=", 1)
        key = key.strip()
        path = key.split(".")
        if not key or any(not p for p in path):
            raise SpecError(f"--set {item!r}: expected a dotted key such as train.lr")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        node = d
        for p in path[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {key}: {p!r} is not a table")
            node = nxt
        node[path[-1]] = value
    return d


def _table(d: dict, key: str, required: bool = False) -> dict:
    v = d.get(key, None)
    if v is None:
        if required:
            raise SpecError(f"[{key}]: missing section; add it, e.g. [{key}] name = \"neuron\"")
        return {}
    if not isinstance(v, dict):
        raise SpecError(f"{key} = {_show(v)}: must be a table ([{key}] section)")
    return v


def _check(section: str, key: str, opt: Opt, value: Any) -> Any:
    try:
        return opt.check(value)
    except ValueError as e:
        hint = ""
        axis = {"train": key, "init": key, "problem": key, "problem.data": "data." + key,
                "problem.constants": key}.get(section)
        if isinstance(value, list) and axis and axis != "loss" and opt.kind not in ("ints", "floats"):
            hint = f"; to sweep it, make it an axis instead: [axes] {_key(axis)} = {_toml_value(value)}"
        raise _fail(f"{section}.{key}", value, f"must be {e}{hint}", opt.choices) from None


def _section(section: str, given: dict, schema: dict[str, Opt]) -> dict:
    out = {}
    for k, v in given.items():
        if k not in schema:
            raise _unknown(section, k, schema)
        out[k] = _check(section, k, schema[k], v)
    return out


def spec_folder(source: Any) -> str | None:
    """The folder of a spec given as a path (resolved), the ``folder`` of a ``Spec``; None for a dict."""
    if isinstance(source, Spec):
        return source.folder
    if isinstance(source, (str, Path)):
        return str(Path(source).resolve().parent)
    return None


def parse_spec(source: Any, overrides: list[str] | None = None, *, folder: str | os.PathLike | None = None) -> Spec:
    """Validate a spec (path, dict or Spec) plus ``--set`` overrides into a frozen ``Spec``.

    folder: where a function problem's loss module is looked for first (default: the spec file's folder, a
    Spec's own ``folder``; for a dict, only the working directory and sys.path are searched).
    """
    folder = str(Path(folder).resolve()) if folder is not None else spec_folder(source)
    d = apply_overrides(load_spec_dict(source), overrides)
    for k in d:
        if k not in TOP_KEYS:
            raise _unknown("", k, TOP_KEYS)
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise _fail("seed", seed, "must be an integer in [0, 2**32)")
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise _fail("description", desc, "must be a string")

    # ---- problem
    prob = dict(_table(d, "problem", required=True))
    name = prob.pop("name", None)
    if name is None:
        raise SpecError(f"problem.name: missing; add name = \"neuron\" (or one of {', '.join(PROBLEMS)}) "
                        "under [problem]")
    if not isinstance(name, str) or name not in PROBLEMS:
        raise _fail("problem.name", name, "must be one of " + ", ".join(PROBLEMS), tuple(PROBLEMS))
    pdef = PROBLEMS[name]
    data_schema = pdef.data_options or DATA_OPTIONS
    data_given = prob.pop("data", None)
    consts_given = prob.pop("constants", None) if "constants" in pdef.options else None
    popts = _section("problem", prob, pdef.options)
    if data_given is not None and not pdef.has_data:
        raise SpecError(f"problem.data: the {name!r} problem has no data; remove the data table")
    data = {}
    if pdef.has_data:
        if data_given is not None and not isinstance(data_given, dict):
            raise _fail("problem.data", data_given, "must be a table, e.g. data = { n = 256 }")
        data = _section("problem.data", data_given or {}, data_schema)
    for k, opt in pdef.options.items():
        if k not in popts:
            if opt.default is None and opt.kind == "str":
                example = ' = "mymodule:myloss"' if k == "loss" else ""
                raise SpecError(f"problem.{k}: missing; {opt.doc}; add {k}{example} under [problem]")
            popts[k] = opt.default
    fn = None
    if name == "function":
        fn = _function(popts, consts_given, folder)
    try:
        init_schema = problem_init_options(name, popts)
    except ValueError as e:
        raise _fail("problem.loss", fn.ref if fn else popts.get("loss"), str(e)) from None
    if pdef.has_data:
        data = {k: data.get(k, o.default) for k, o in data_schema.items()}
        if data.get("dist") == "uniform" and not data["lo"] < data["hi"]:
            raise _fail("problem.data.hi", data["hi"], f"must be greater than data.lo = {data['lo']}")
        popts["data"] = data
    if pdef.validate is not None:
        try:
            pdef.validate(popts)
        except ValueError as e:
            raise SpecError(str(e)) from None

    train = _section("train", _table(d, "train"), TRAIN_OPTIONS)
    train = {k: train.get(k, o.default) for k, o in TRAIN_OPTIONS.items()}
    lr_given = train["lr"] is not None
    init_given = _table(d, "init")
    start = {k: k for k in init_schema}  # [init] key -> its option name (the traced value, the axis)
    if fn is not None:
        init_given = _function_init(init_given, fn, tuple(init_schema))
        start = function_start_keys(tuple(init_schema))
    init = _section("init", init_given, init_schema)
    init = {k: init.get(k, o.default) for k, o in init_schema.items()}
    outcome = _section("outcome", _table(d, "outcome"), OUTCOME_OPTIONS)
    outcome = {k: outcome.get(k, o.default) for k, o in OUTCOME_OPTIONS.items()}
    run = _section("run", _table(d, "run"), RUN_OPTIONS)
    run = {k: run.get(k, o.default) for k, o in RUN_OPTIONS.items()}
    record = _section("record", _table(d, "record"), RECORD_OPTIONS)
    record = {k: record.get(k, o.default) for k, o in RECORD_OPTIONS.items()}
    refine = _section("refine", _table(d, "refine"), REFINE_OPTIONS) if "refine" in d else None
    events = _parse_events(_table(d, "events"))

    # ---- every settable name
    options: dict[str, tuple[str, Opt]] = {"seed": ("seed", Opt(0, "int", "replicate seed", lo=0))}
    for sec, schema in (("train", TRAIN_OPTIONS), ("init", init_schema), ("problem", pdef.options)):
        for k, o in schema.items():
            options[start[k] if sec == "init" else k] = (sec, o)
    if pdef.has_data:
        for k, o in data_schema.items():
            options["data." + k] = ("problem.data", o)
    for k in ("loss", "constants"):
        options.pop(k, None)  # a different module per trajectory is not a sweep; constants are swept one by one
    aliases: dict[str, Any] = {}
    if fn is not None:
        for c, value in fn.constants.items():
            options[constant_key(c)] = ("problem.constants", Opt(value, "float", f"constant {c} of the loss",
                                                                 traced=True))
        aliases = _function_aliases(fn, start)

    axes = _parse_axes(_table(d, "axes"), options, seed, aliases)
    swept = {m for a in axes for m in a.members}
    if not lr_given and "lr" not in swept:  # each optimizer's own default (one value: written into the spec)
        lrs = {default_lr(o) for o in _optimizers_used(train, axes)}
        train["lr"] = lrs.pop() if len(lrs) == 1 else None
    if len(set(a.name for a in axes)) != len(axes):
        raise SpecError("axes: two axes share a dimension name")
    # normalised raw spec (what is stored in files): defaults filled in, axes as given
    raw = {"seed": seed}
    if desc:
        raw["description"] = desc
    raw["problem"] = {"name": name, **{k: v for k, v in popts.items() if v is not None}}
    if fn is not None:  # as the user wrote them; the Spec holds the resolved module and the constants' names
        raw["problem"]["loss"] = fn.ref
        if fn.constants:
            raw["problem"]["constants"] = dict(fn.constants)
        else:
            raw["problem"].pop("constants", None)
        popts["constants"] = tuple(fn.constants)
    raw["train"] = {k: v for k, v in train.items() if v is not None}
    raw["init"] = init
    init = {start[k]: v for k, v in init.items()}
    raw["outcome"] = {k: v for k, v in outcome.items() if v is not None}
    raw["run"] = run
    raw["record"] = record
    if events:
        raw["events"] = {e.name: {"param": e.param, "above" if e.above else "below": e.level, "over": e.over,
                                  "stop": e.stop} for e in events}
    raw["axes"] = _plain(_table(d, "axes"))
    if refine is not None:
        raw["refine"] = {k: refine.get(k, o.default) for k, o in REFINE_OPTIONS.items()
                         if refine.get(k, o.default) is not None}
    _check_conflicts(train, popts, swept, axes)
    _check_problem_values(pdef, popts, init, axes)
    _check_least_squares(name, pdef, train, popts, axes)
    _check_tail_window(popts, train, axes)
    _check_size(popts, axes)
    return Spec(seed=seed, description=desc, problem=name, problem_options=types.MappingProxyType(popts),
                train=types.MappingProxyType(train), init=types.MappingProxyType(init),
                outcome=types.MappingProxyType(outcome), run=types.MappingProxyType(run),
                record=types.MappingProxyType(record), axes=tuple(axes), raw=types.MappingProxyType(raw),
                options=types.MappingProxyType(options), folder=folder, events=events)


EVENT_KEYS = ("param", "above", "below", "over", "stop")
RESERVED_NAMES = ("outcome", "final_loss", "min_loss", "converge_step", "stop_step", "final_grad_norm", "target_loss",
                  "lambda0", "lyapunov", "sharpness", "two_over_lr", "trainable", "tail_loss_ratio")


def _parse_events(given: dict) -> tuple[EventSpec, ...]:
    """``[events]``: name = { param = "w", above = 0.0 | below = ..., over = "any" | "all", stop = false }."""
    out = []
    for name, t in given.items():
        key = f"events.{name}"
        if not name.isidentifier() or name in RESERVED_NAMES or name.startswith(("final_", "rec_", "traj_")):
            raise _fail(key, name, "an event name must be a plain identifier that is not a result variable "
                        "(outcome, final_*, ...); e.g. crossed = { param = \"w\", above = 0.0 }")
        if not isinstance(t, dict):
            raise _fail(key, t, 'must be a table, e.g. { param = "w", above = 0.0 }')
        for k in t:
            if k not in EVENT_KEYS:
                raise _unknown(key, k, EVENT_KEYS)
        param = t.get("param")
        if not isinstance(param, str) or not param:
            raise SpecError(f"{key}.param: missing or not a string; name the parameter, e.g. param = \"w\"")
        if ("above" in t) == ("below" in t):
            raise SpecError(f"{key}: give exactly one of above = LEVEL or below = LEVEL")
        side = "above" if "above" in t else "below"
        level = _check(key, side, Opt(0.0, "float", ""), t[side])
        over = _check(key, "over", Opt("any", "choice", "", choices=("any", "all")), t.get("over", "any"))
        stop = _check(key, "stop", Opt(False, "bool", ""), t.get("stop", False))
        out.append(EventSpec(name=name, param=param, level=level, above=side == "above", over=over, stop=stop))
    return tuple(out)


class _Loss(NamedTuple):
    """A function problem's loss as the spec gives it."""

    ref: str  # as written (stored in the spec)
    f: Callable
    constants: dict[str, float]
    args: dict  # argument name -> inspect.Parameter


def _function(popts: dict, consts_given: Any, folder: str | None) -> _Loss:
    """Resolve ``problem.loss`` (spec folder, working directory, sys.path) and check ``problem.constants``;
    ``popts`` gets the resolved reference and the constants."""
    ref = popts["loss"]
    if consts_given is None:
        consts_given = {}
    if not isinstance(consts_given, dict):
        raise _fail("problem.constants", consts_given, "must be a table of name = number, e.g. "
                    "constants = { c = 0.3 }")
    consts = {c: _check("problem.constants", c, Opt(0.0, "float", ""), v) for c, v in consts_given.items()}
    try:
        resolved = user_loss.resolve(ref, folder)
        f = load_function(resolved)
        args = user_loss.arguments(f)
    except ValueError as e:
        raise _fail("problem.loss", ref, str(e)) from None
    try:
        user_loss.check_constants(f, consts)
    except ValueError as e:
        c, msg = e.args
        raise SpecError(f"problem.constants.{c}: {msg} ({ref})") from None
    popts["loss"], popts["constants"] = resolved, consts
    return _Loss(ref, f, consts, args)


def _function_init(given: dict, fn: _Loss, params: tuple[str, ...]) -> dict:
    """``[init]`` of a function problem with every key named like its argument: ``<arg>0``, the old name of the
    start value of ``arg``, is accepted where it is not itself an argument of the loss."""
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for k, value in given.items():
        if k in params:
            canon = k
        elif k in fn.args:
            what = "a constant" if k in fn.constants else "an argument with a default"
            old = (f"; it is also the old name of the start value of {k[:-1]!r}: write init.{k[:-1]}"
                   if k.endswith("0") and k[:-1] in params else "")
            raise SpecError(f"init.{k}: {k!r} is {what} of the loss, not a trained parameter, so it has no start "
                            f"value (its value goes under [problem] constants){old}")
        elif k.endswith("0") and k[:-1] in params:
            canon = k[:-1]
        else:
            raise _unknown("init", k, params)
        if canon in out:
            raise SpecError(f"init.{source[canon]} and init.{k} both give the start value of {canon!r} "
                            f"(init.{canon}0 is its old name); give it once, as init.{canon}")
        out[canon], source[canon] = value, k
    return out


def _function_aliases(fn: _Loss, start: dict[str, str]) -> dict[str, Any]:
    """Other names an axis may give a function problem's options: a constant's bare name (for constants.<c>),
    a start value's bare name where it is init.<name>, and the old ``<arg>0``. Value: the option names it may
    mean (two or more: ambiguous), or a message refusing it."""
    aliases: dict[str, Any] = {}
    for c in fn.constants:
        aliases.setdefault(c, []).append(constant_key(c))
    for n, key in start.items():
        if key != n:
            aliases.setdefault(n, []).append(key)
        old = n + "0"
        if old in start:
            continue  # an argument of its own (e.g. w and w0): the name means that argument
        if old in fn.args and old not in fn.constants:
            aliases[old] = (f"{old!r} is an argument with a default of the loss (not swept unless it is a "
                            f"constant) and the old name of the start value of {n!r}: write init.{n}")
        else:
            aliases.setdefault(old, []).append(key)
    return aliases


def _check_conflicts(train, popts, swept, axes):
    data = popts.get("data")  # (fresh with batch 0 means batches of n points: allowed)
    if data and "population" in data:
        _check_population(data, axes)
    if data and not data["fresh"] and data["batch"] > data["n"]:
        raise _fail("problem.data.batch", data["batch"], f"must be <= data.n = {data['n']} for a fixed dataset "
                    "(or set fresh = true)")


def _check_population(data: Mapping[str, Any], axes: list[Axis]) -> None:
    """data.population = true trains on the exact expected loss: there is no batch to draw, fresh or not."""

    def values(name):  # every value a data option takes, and the key that gives them
        for a in axes:
            for m, vals in zip(a.members, a.values):
                if m == "data." + name:
                    key = f"axes.{a.name}" if a.members == (a.name,) else (
                        f"axes.{m}" if a.spacing == "random" else f"axes.{a.name}.zip.{m}")
                    return list(vals), key
        return [data[name]], f"problem.data.{name}"

    if not any(values("population")[0]):
        return
    for name, bad, allowed in (("fresh", lambda x: x is True, "false"), ("batch", lambda x: x != 0, "0")):
        vals, key = values(name)
        hit = [x for x in vals if bad(x)]
        if hit:
            raise _fail(key, hit[0], f"must be {allowed} with data.population = true (the expected loss over the "
                        "input distribution has no batches: its gradient is exact); remove data."
                        f"{name}, or set population = false to train on a sample")


def _check_problem_values(pdef, popts, init, axes) -> None:
    """Every value an ``[init]`` option takes (its own, or each value of its axis) must be usable by the
    problem's resolved options (``ProblemDef.check_values``, e.g. a file row that exists)."""
    if pdef.check_values is None:
        return
    given = {name: (f"init.{name}", [value]) for name, value in init.items()}
    for a in axes:
        for m, vals in zip(a.members, a.values):
            if m in given:
                key = f"axes.{a.name}" if a.members == (a.name,) else (
                    f"axes.{m}" if a.spacing == "random" else f"axes.{a.name}.zip.{m}")
                given[m] = (key, list(vals))
    for name, (key, values) in given.items():
        try:
            pdef.check_values(popts, name, values)
        except ValueError as e:
            bad, msg = e.args if len(e.args) == 2 else (values, str(e))
            raise _fail(key, bad, msg) from None


def _check_size(popts: Mapping[str, Any], axes: list[Axis]) -> None:
    """Refuse, before any compute, a sweep that cannot run: too many trajectories for the
    engine's per-trajectory random keys, or data that cannot fit in memory (``data_bytes``)."""
    n = 1
    for a in axes:
        n *= a.size
    if n > MAX_TRAJECTORIES:
        sizes = " x ".join(f"{a.name}={a.size:,}" for a in axes)
        raise SpecError(f"axes: {sizes} = {n:,} trajectories; at most {MAX_TRAJECTORIES:,} per sweep: "
                        "split it into several sweeps (e.g. one per value of an axis) or use coarser axes")
    data = popts.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("n"), int):
        return  # no generated data (e.g. a user's data file: its size is the file's)
    members = {m: vals for a in axes for m, vals in zip(a.members, a.values)}

    def worst(name):
        vals = members.get("data." + name)
        if vals:
            return (any(vals) if name == "fresh" else max(vals)), True
        return data.get(name, False if name == "fresh" else 0), False

    (n_pts, n_swept), (batch, b_swept), (fresh, _) = worst("n"), worst("batch"), worst("fresh")
    worst_data = {**data, "n": n_pts, "batch": batch, "fresh": fresh,
                  **{k: worst(k)[0] for k in ("dim", "classes") if k in data}}
    need = data_bytes(worst_data)
    budget = memory_budget()
    if need <= budget:
        return
    total = physical_memory()
    of = f", {MEMORY_FRACTION:.0%} of this machine's {_bytes(total)}" if total else ""
    if fresh and batch:
        key, value = ("axes.data.batch" if b_swept else "problem.data.batch"), batch
        fix = "use a smaller batch"
    else:
        key, value = ("axes.data.n" if n_swept else "problem.data.n"), n_pts
        fix = ("use fewer points, or fresh = true with a batch size (a new batch each step)" if not fresh
               else "set a batch size smaller than n")
    raise SpecError(f"{key} = {_show(value)}: the data held per compile group ({data_points(worst_data):,} points "
                    f"x {data_values_per_point(worst_data)} values x {BYTES_PER_VALUE} bytes = {_bytes(need)}) "
                    "exceeds the memory budget "
                    f"({_bytes(budget)}{of}); {fix}")


def _count(key: str, v: Any, n: float) -> int:
    """An axis's value count: an integer in [1, MAX_AXIS_VALUES], checked before any value is built."""
    if not float(n).is_integer() or n < 1:
        raise _fail(key, v, "the count must be an integer >= 1")
    if n > MAX_AXIS_VALUES:
        raise _fail(key, v, f"{int(n):,} values; an axis has at most {MAX_AXIS_VALUES:,} (its values are held "
                    "in memory): use a coarser axis, or several axes (e.g. a seed axis) whose product is the size")
    return int(n)


def _optimizers_used(train, axes) -> set[str]:
    """Every optimizer of a sweep: ``train.optimizer`` and the values of an optimizer axis."""
    return {train["optimizer"]} | {v for a in axes for m, vals in zip(a.members, a.values) if m == "optimizer"
                                   for v in vals}


def _check_tail_window(popts, train, axes):
    """tail_window = "pre" averages the losses before each of the last k updates: k <= steps."""
    if popts.get("tail_window") != "pre":
        return
    members = {m: vals for a in axes for m, vals in zip(a.members, a.values)}
    steps = min(members.get("steps", [train["steps"]]))
    k = max(members.get("trainable_k", [popts["trainable_k"]]))
    if k > steps:
        raise _fail("problem.trainable_k", k, f"must be <= train.steps = {steps} with tail_window = 'pre' (the "
                    "losses before each of the last k updates); use a smaller trainable_k or more steps")


def _check_least_squares(name, pdef, train, popts, axes):
    """Gauss-Newton and Levenberg-Marquardt need residuals: refuse them early on other problems."""
    used = _optimizers_used(train, axes)
    ls = [o for o in sorted(used) if o in SECOND_ORDER and o != "newton"]
    if ls and not (pdef.least_squares is not None and pdef.least_squares(popts)):
        raise _fail("train.optimizer", ls[0], f"needs a least-squares problem; {name!r} with these options has no "
                    "residuals (use 'newton')")


def _num_list(key: str, v: Any, n: int) -> list[float]:
    if not isinstance(v, list) or len(v) != n or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
        raise _fail(key, v, f"must be a list of {n} numbers")
    if any(not math.isfinite(x) for x in v):
        raise _fail(key, v, "must be finite numbers (no nan or inf)")
    return v


def _axis_values(key: str, form: dict, opt: Opt, rng: np.random.Generator | None, samples: int | None):
    """Values of one axis member from its form. Returns (values, spacing)."""
    forms = [f for f in form if f in AXIS_FORMS]
    extra = [f for f in form if f not in AXIS_FORMS and f not in ("samples", "units")]
    if extra:
        raise _unknown(key, extra[0], AXIS_FORMS + ("samples", "units"))
    if len(forms) != 1:
        raise _fail(key, form, "must give exactly one of " + ", ".join(AXIS_FORMS[:-1]))
    f = forms[0]
    v = form[f]
    if f == "values":
        return _list_values(key, v, opt), "list"
    if opt.kind not in ("float", "int"):
        raise _fail(key, form, f"{f} needs a numeric option; give a list of values ({opt.allowed()})")
    if f == "linspace":
        a, b, n = _num_list(f"{key}.linspace", v, 3)
        if not float(n).is_integer() or n < 1:
            raise _fail(f"{key}.linspace", v, "must be [start, stop, count] with an integer count >= 1")
        vals = np.linspace(a, b, _count(f"{key}.linspace", v, n)).tolist()
        sp = "linear"
    elif f == "logspace":
        a, b, n = _num_list(f"{key}.logspace", v, 3)
        if not float(n).is_integer() or n < 1:
            raise _fail(f"{key}.logspace", v, "must be [start_exponent, stop_exponent, count] with an integer count >= 1")
        if abs(a) > 300 or abs(b) > 300:
            raise _fail(f"{key}.logspace", v, "[start_exponent, stop_exponent, count] gives 10**start to 10**stop; "
                        "the exponents must be within [-300, 300], e.g. logspace = [-3, 0, 4]")
        vals = np.logspace(a, b, _count(f"{key}.logspace", v, n)).tolist()
        sp = "log"
    elif f == "range":
        if isinstance(v, int) and not isinstance(v, bool):
            args = [v]
        elif isinstance(v, list) and 1 <= len(v) <= 3:
            args = v
        else:
            raise _fail(f"{key}.range", v, "must be a count N or [start, stop] or [start, stop, step] of integers")
        if any(isinstance(x, bool) or not isinstance(x, int) for x in args) or (len(args) == 3 and args[2] == 0):
            raise _fail(f"{key}.range", v, "must be integers with a non-zero step")
        r = range(*args)
        if len(r) == 0:
            raise _fail(f"{key}.range", v, "gives no values; e.g. range = 4 gives 0, 1, 2, 3")
        _count(f"{key}.range", v, len(r))
        vals = list(r)
        sp = "linear"
    elif f in ("uniform", "normal"):
        a, b = _num_list(f"{key}.{f}", v, 2)
        if f == "uniform" and not a < b:
            raise _fail(f"{key}.uniform", v, "must be [low, high] with low < high")
        if f == "normal" and not b > 0:
            raise _fail(f"{key}.normal", v, "must be [mean, std] with std > 0")
        if samples is None:
            raise _fail(key, form, "random samples need a count: add samples = N to the axis or to [axes]")
        samples = _count(f"{key}.samples", samples, samples)
        draw = rng.uniform(a, b, samples) if f == "uniform" else rng.normal(a, b, samples)
        vals = draw.tolist()
        sp = "random"
    else:
        raise _fail(key, form, "zip is only allowed at the top of an axis")
    if not vals:
        raise _fail(key, form, "gives no values; an axis needs at least one")
    if opt.kind == "int":
        vals = [int(round(x)) for x in vals]
    for x in vals:
        _check_axis_value(key, opt, x)
    return vals, sp


def _check_axis_value(key, opt, x):
    try:
        return opt.check(x)
    except ValueError as e:
        raise _fail(key, x, f"axis value must be {e}", opt.choices) from None


def _list_values(key: str, v: Any, opt: Opt, distinct: bool = True) -> list:
    if not isinstance(v, list):
        raise _fail(key, v, "must be a list of values")
    if not v:
        raise _fail(key, v, "is empty; an axis needs at least one value")
    out = [_check_axis_value(key, opt, x) for x in v]
    if distinct and len(set(map(repr, out))) != len(out):
        raise _fail(key, v, "has repeated values; each value of an axis must be distinct")
    return out


_SECTIONS = {"train": ("train",), "init": ("init",), "problem": ("problem", "problem.data", "problem.constants")}


def _qualified(name: str, options: dict) -> str:
    """The unambiguous spelling of an option name (train.lr, init.x, constants.c, data.n, seed)."""
    sec = options[name][0]
    if sec in ("train", "problem"):
        return f"{sec}.{name}"
    if sec == "init":
        return name if name.startswith("init.") else "init." + name
    return name


def _candidates(key: str, options: dict, aliases: dict, where: str) -> list[str]:
    alias = aliases.get(key, ())
    if isinstance(alias, str):
        raise SpecError(f"{where}: {alias}")
    return list(dict.fromkeys(([key] if key in options else []) + list(alias)))


def _resolve(key: str, options: dict, where: str | None = None, aliases: dict | None = None) -> tuple[str, Opt]:
    """The option an axis key names: an option name, a ``section.name`` of the right section (train., init.,
    problem.), or an alias (a function problem's bare constant names, old ``<arg>0`` names)."""
    where = where or "axes." + key
    aliases = aliases or {}
    found = _candidates(key, options, aliases, where)
    if not found and "." in key and key.split(".", 1)[0] in _SECTIONS:
        sec, short = key.split(".", 1)
        found = [n for n in _candidates(short, options, aliases, where) if options[n][0] in _SECTIONS[sec]]
    if len(found) == 1:
        return found[0], options[found[0]][1]
    if found:
        names = [_qualified(n, options) for n in found]
        raise SpecError(f"{where}: ambiguous, it may mean {' or '.join(names)}; write the one you mean, e.g. "
                        f"axes.{_key(names[-1])}")
    near = difflib.get_close_matches(key, list(options) + [a for a, v in aliases.items() if not isinstance(v, str)],
                                     n=1, cutoff=0.5)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise SpecError(f"{where}: not an option of this spec{hint}; "
                    f"sweepable: {', '.join(sorted(options))}")


def _parse_axes(given: dict, options: dict, seed: int, aliases: dict | None = None) -> list[Axis]:
    samples = given.get("samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise _fail("axes.samples", samples, "must be an integer >= 1")
    rng = np.random.default_rng([seed, 0x5A3])
    axes: list[Axis] = []
    random_members: list[tuple[str, list]] = []
    random_pos = None
    seen: dict[str, str] = {}  # option -> the axis key that sweeps it
    for key, form in given.items():
        if key == "samples":
            continue
        if isinstance(form, dict) and "zip" in form:
            members = form["zip"]
            if set(form) - {"zip", "units"} or not isinstance(members, dict) or not members:
                raise _fail(f"axes.{key}", form, "zip must be a table of option = [values], e.g. "
                            "{ zip = { lr = [0.1, 0.2], momentum = [0.9, 0.5] } }")
            names, vals = [], []
            for m, mv in members.items():
                name, opt = _resolve(m, options, f"axes.{key}.zip.{m}", aliases)
                vals.append(tuple(_list_values(f"axes.{key}.zip.{m}", mv, opt, distinct=False)))
                names.append(name)
            if len({len(v) for v in vals}) != 1:
                lens = ", ".join(f"{m} has {len(v)}" for m, v in zip(members, vals))
                raise SpecError(f"axes.{key}.zip: zipped lists vary together, so they must have the same length "
                                f"({lens}); give each list the same number of values")
            if key in options and key not in names:
                raise SpecError(f"axes.{key}: a zipped axis needs a dimension name that is not an option")
            rows = list(zip(*vals))
            if len(set(map(repr, rows))) != len(rows):
                raise SpecError(f"axes.{key}.zip: two positions repeat the same combination of values; "
                                "each point of a zipped axis must be distinct")
            axes.append(Axis(key, tuple(names), tuple(vals), "list"))
            new = names
        else:
            name, opt = _resolve(key, options, aliases=aliases)
            if isinstance(form, list):
                vals, sp = _list_values(f"axes.{key}", form, opt), "list"
            elif isinstance(form, dict):
                n = form.get("samples", samples)
                if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                    raise _fail(f"axes.{key}.samples", n, "must be an integer >= 1")
                vals, sp = _axis_values(f"axes.{key}", form, opt, rng, n)
            else:
                raise _fail(f"axes.{key}", form, "must be a list of values or a table such as "
                            "{ linspace = [start, stop, count] }")
            if sp == "random":
                if random_pos is None:
                    random_pos = len(axes)
                random_members.append((name, vals))
                new = [name]
            else:
                axes.append(Axis(name, (name,), (tuple(vals),), sp))
                new = [name]
        for m in new:
            if m in seen:
                both = f"axes.{seen[m]} and axes.{key}" if seen[m] != key else f"axes.{key}"
                raise SpecError(f"axes.{key}: option {m!r} swept twice ({both}); give each option one axis "
                                "(to vary options together, use one zip axis)")
            seen[m] = key
    if random_members:
        lens = {len(v) for _, v in random_members}
        if len(lens) != 1:
            raise SpecError("axes: random axes must all have the same number of samples (they share the "
                            "'sample' dimension)")
        if "sample" in seen:
            raise SpecError("axes.sample: the name 'sample' is reserved for random axes")
        axes.insert(random_pos, Axis("sample", tuple(m for m, _ in random_members),
                                     tuple(tuple(v) for _, v in random_members), "random"))
    return axes
