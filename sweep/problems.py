"""Problem registry: what is trained, written for ONE trajectory.

A problem is built from its static options (``build(opts) -> Problem``) and exposes pure
functions of one trajectory's parameters: ``init``, ``loss``, optionally ``point_loss``
(so the engine can loop over data points with trajectories on the vector axis), a target
loss and extra metrics. Parameters are a dict of arrays: scalars for the single-neuron
problems (structure of arrays once batched), weight matrices for the networks of ``nets.py``.
Traced per-trajectory values (init values, activation alpha, ...) arrive in ``v``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import user_loss
from .activations import ACTIVATIONS, GRAD_AT_ZERO_CHOICES, get_activation
from .options import Opt
from .population import neuron_population


class Problem(NamedTuple):
    """A built problem (static choices resolved; everything else traced).

    params: names of the scalar parameters, in order (each stored as ``final_<name>``); array
      parameters are not listed (metrics summarise them).
    init(key, v) -> {name: float array}: one trajectory's initial parameters; random ones are
      drawn from ``key``, the trajectory's own key (so they do not depend on chunking).
    loss(params, batch, v) -> () float: the training loss on a batch (a mean over points).
    point_loss(params, point, v) -> () float or None: loss of one data point; when given,
      ``loss`` is the mean of it over the batch and the engine may loop over points.
    sample(key, n) -> batch or None: draw n data points (None: the problem has no data).
    target(batch, v) -> () float: the loss that counts as "converged" (plus tolerance).
    metrics(params, batch, v) -> {name: () float}: extra per-trajectory results.
    metric_attrs: {name: {"long_name":..., "units":...}}.
    inactive(params, batch, v) -> () bool or None: every unit is inactive on every data point
      (checked only once the gradient has been exactly zero for ``dead_patience`` steps; a
      zero gradient with an active unit, e.g. an underflow, is ``stuck``, not ``dead``).
      None: an exactly zero gradient alone means ``dead``.
    residuals(params, batch, v) -> (n,) float or None: least-squares residuals with
      ``loss == 0.5 * sum(residuals**2)`` (Gauss-Newton and Levenberg-Marquardt need them).
    update_scale(v) -> {name: () float} or None: per-parameter multipliers of the optimizer's
      updates (per-layer learning rates); a name left out is scaled by 1.
    track(params, batch, v) -> {event: () bool} or None: evaluated at every step while the run is
      alive; the first step each event holds is stored as ``<event>_step`` (-1: never) and
      whether it ever held as ``<event>`` (int8). ``events`` lists the names.
    tail: k > 0 adds ``trainable`` (int8: mean of the last k losses / initial loss < 1, non-finite
      losses counting as infinite) and ``tail_loss_ratio`` to the results.
    constants: names of entries of the parameter dict that are per-trajectory constants drawn by
      ``init`` (e.g. data weights drawn from the trajectory's key): the loss reads them through
      ``stop_gradient``, optimizers never move them and second-order systems leave them out.
    tail_pre: the ``tail`` losses are those before each of the last k updates (steps t = steps-k .. steps-1)
      instead of the last k evaluated (t = steps-k+1 .. steps, the last one after the final update).
    """

    params: tuple[str, ...]
    init: Callable
    loss: Callable
    point_loss: Callable | None
    sample: Callable | None
    target: Callable
    metrics: Callable
    metric_attrs: dict
    inactive: Callable | None = None
    residuals: Callable | None = None
    update_scale: Callable | None = None
    track: Callable | None = None
    events: tuple[str, ...] = ()
    tail: int = 0
    constants: tuple[str, ...] = ()
    tail_pre: bool = False


class ProblemDef(NamedTuple):
    """A registered problem: its option schemas and its builder.

    has_data: the problem draws random data from the data key (one dataset per value of the seed
      axis; the ``[problem] data`` table holds its options, ``data_options`` or DATA_OPTIONS).
    validate(options) -> None: raises ValueError with a one-line message naming the key when the
      problem's resolved options (``data`` included) cannot be built; run at spec time.
    least_squares(options) -> bool: the built problem has ``residuals`` (Gauss-Newton, LM).
    check_values(options, name, values) -> None: raises ``ValueError(bad_value, message)`` (a one-line
      message saying what is allowed) when a traced ``[init]`` option takes a value the resolved options
      cannot use (e.g. ``init_row`` past the rows of a file); called at spec time with every value the
      option takes.
    """

    build: Callable[[dict], Problem]
    options: dict[str, Opt]
    init: dict[str, Opt]
    doc: str
    has_data: bool = False
    data_options: dict[str, Opt] | None = None
    validate: Callable[[dict], None] | None = None
    least_squares: Callable[[dict], bool] | None = None
    check_values: Callable[[dict, str, list], None] | None = None


ACT_NAMES = tuple(ACTIVATIONS)

DATA_OPTIONS: dict[str, Opt] = {
    "dist": Opt("normal", "choice", "input distribution", choices=("normal", "uniform")),
    "n": Opt(1000, "int", "points in the fixed dataset (ignored when fresh = true)", lo=1),
    "batch": Opt(0, "int", "points per step: a fresh batch size, or a minibatch of the fixed dataset (0: all n)", lo=0),
    "fresh": Opt(False, "bool", "draw a new batch every step (same batch for every trajectory of a seed)"),
    "lo": Opt(-1.0, "float", "uniform: lower bound"),
    "hi": Opt(1.0, "float", "uniform: upper bound"),
    "mean": Opt(0.0, "float", "normal: mean"),
    "std": Opt(1.0, "float", "normal: standard deviation", lo=0.0, lo_open=True),
}

NEURON_DATA: dict[str, Opt] = {
    **DATA_OPTIONS,
    "n": Opt(1000, "int", "points in the fixed dataset (ignored when fresh = true or population = true)", lo=1),
    "population": Opt(False, "bool", "train on the expected loss over the input distribution instead of a sample: "
                      "exact (closed form for piecewise-linear activations, Gauss-Legendre split at the kinks "
                      "for smooth ones; see sweep.population), so no data are drawn and n is ignored; "
                      "excludes fresh and batch"),
}


def _activation_options(default: str) -> dict[str, Opt]:
    return {
        "activation": Opt(default, "choice", "the student's activation", choices=ACT_NAMES),
        "alpha": Opt(None, "float", "activation parameter (leaky/prelu slope, elu scale); default: the activation's own",
                     traced=True),
        "relu_grad_at_zero": Opt(0.0, "choice", "derivative of the ReLU family at the kink", choices=GRAD_AT_ZERO_CHOICES),
    }


def _float_dtype(v: dict):
    """The float dtype of a trajectory's traced values (the run's dtype), for problems without data."""
    floats = [x for x in jax.tree_util.tree_leaves(v) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _alpha(v: dict, activation: str):
    a = v.get("alpha")
    if a is None:
        a = ACTIVATIONS[activation].alpha_default or 0.0
    return a


# --------------------------------------------------------------------------- neuron
FIT_ITERS = 30  # Levenberg-Marquardt iterations of the best-fit target of a non-realisable neuron


def _build_neuron(o: dict) -> Problem:
    act_name = o["activation"]
    maxout, prelu = act_name == "maxout", act_name == "prelu"
    act = get_activation("leaky_relu" if prelu else act_name, o["relu_grad_at_zero"])
    teacher = get_activation(o["teacher"], o["relu_grad_at_zero"])
    k = o["pieces"] if maxout else 1
    extra = tuple(n for j in range(1, k) for n in ((f"w{j}", f"b{j}") if o["bias"] else (f"w{j}",)))
    names = (("w",) + (("b",) if o["bias"] else ()) + (("a", "c") if o["out_weight"] else ())
             + (("alpha",) if prelu else ()) + extra)
    d = o["data"]

    def init(key, v):
        p = {n: jnp.asarray(v[n + "0"]) for n in names if n in ("w", "b", "a", "c")}
        if prelu:
            p["alpha"] = jnp.asarray(_alpha(v, "prelu"))
        if extra:  # maxout's other pieces: (0, 0) plus piece_scale * N(0, 1) from the trajectory's key
            noise = jax.random.normal(key, (len(extra),), jnp.float32)
            for i, n in enumerate(extra):
                p[n] = v["piece_scale"] * noise[i]
        return p

    def pieces(p, x):
        """(k, ...) pre-activations; piece 0 is w*x + b."""
        b = (lambda j: p["b" if j == 0 else f"b{j}"]) if o["bias"] else (lambda j: 0.0)
        return jnp.stack([p["w" if j == 0 else f"w{j}"] * x + b(j) for j in range(k)])

    def predict(p, x, v):
        if maxout:
            h = act(jnp.moveaxis(pieces(p, x), 0, -1), 0.0)
        else:
            z = p["w"] * x + (p["b"] if o["bias"] else 0.0)
            h = act(z, p["alpha"] if prelu else _alpha(v, act_name))
        return p["a"] * h + p["c"] if o["out_weight"] else h

    def point_loss(p, point, v):
        x, y = point
        return (predict(p, x, v) - y) ** 2

    def loss(p, batch, v):
        x, y = batch
        return jnp.mean((predict(p, x, v) - y) ** 2)

    def residuals(p, batch, v):
        x, y = batch
        return jnp.sqrt(jnp.asarray(2.0 / x.shape[0], x.dtype)) * (predict(p, x, v) - y)

    def sample(key, n):  # drawn in float32 whatever the run's dtype: the same data for every dtype
        if d["dist"] == "normal":
            x = d["mean"] + d["std"] * jax.random.normal(key, (n,), jnp.float32)
        else:
            x = jax.random.uniform(key, (n,), jnp.float32, minval=d["lo"], maxval=d["hi"])
        return x, teacher(x, _alpha({}, o["teacher"]))

    population = bool(d.get("population"))
    if population:  # the expected loss over the input distribution: no data (see sweep.population)
        pop = neuron_population(o, predict, lambda x: teacher(x, _alpha({}, o["teacher"])))
        loss, residuals = pop.loss, pop.residuals
        point_loss = sample = None

    realisable = o["activation"] == o["teacher"]
    ref = {"w": 1.0, "b": 0.0, "a": 1.0, "c": 0.0}

    def target(batch, v):
        """0 when the student can realise the teacher (same activation; prelu / maxout, which realise any
        teacher piecewise linear with one kink at 0); otherwise the best fit of the student family near
        the teacher's parameters: ``FIT_ITERS`` Levenberg-Marquardt iterations on the reference data
        (population: on the quadrature nodes, with the exact expected loss) from (w, b, a, c) = (1, 0, 1, 0),
        each accepted only if it lowers the loss."""
        dt = _float_dtype(v) if batch is None else batch[0].dtype
        if realisable or prelu or maxout:
            return jnp.zeros((), dt)
        p0 = {n: jnp.asarray(ref[n], dt) for n in names}

        def lm(_, p):
            r = residuals(p, batch, v)
            jac = jax.jacfwd(lambda q: residuals(q, batch, v))(p)
            J = jnp.stack([jac[n] for n in names], axis=1)  # (points, P)
            A = J.T @ J
            step = jnp.linalg.solve(A + jnp.diag(1e-3 * jnp.diag(A) + 1e-12), J.T @ r)
            new = {n: p[n] - step[i] for i, n in enumerate(names)}
            better = loss(new, batch, v) < loss(p, batch, v)
            return {n: jnp.where(better, new[n], p[n]) for n in names}

        return loss(jax.lax.fori_loop(0, FIT_ITERS, lm, p0), batch, v)

    def active(p, x):
        if maxout:  # piece 0 is the strict maximum
            z = pieces(p, x)
            return jnp.all(z[:1] > z[1:], axis=0)
        return p["w"] * x + (p["b"] if o["bias"] else 0.0) > 0

    def metrics(p, batch, v):
        x, _ = batch
        return {"active_fraction": jnp.mean(active(p, x).astype(x.dtype))}

    flat_left = o["activation"] in ("relu", "relu6")

    def inactive(p, batch, v):
        if not flat_left:
            return jnp.asarray(False)
        x, _ = batch
        z = p["w"] * x + (p["b"] if o["bias"] else 0.0)
        return jnp.all(z <= 0)

    attrs = {"active_fraction": {"long_name": "fraction of data points with positive pre-activation at the end "
                                              "(maxout: where piece 0 is the strict maximum)", "units": "1"}}
    if population:
        metrics, inactive = pop.metrics, pop.inactive
        attrs = {"active_fraction": {"long_name": "probability of a positive pre-activation at the end, over the "
                                                  "input distribution (maxout: of piece 0 being the strict maximum)",
                                     "units": "1"}}
    return Problem(names, init, loss, point_loss, sample, target, metrics, attrs, inactive, residuals)


NEURON = ProblemDef(
    _build_neuron,
    {
        **_activation_options("relu"),
        "teacher": Opt("relu", "choice", "the teacher's activation: y = teacher(x) (prelu: leaky with alpha 0.25)",
                       choices=tuple(n for n in ACT_NAMES if n != "maxout")),
        "bias": Opt(True, "bool", "student has a bias b: act(w*x + b)"),
        "out_weight": Opt(False, "bool", "student has an output weight and bias: a*act(w*x + b) + c"),
        "pieces": Opt(2, "int", "maxout: the student is max_j (w_j*x + b_j) over this many pieces; piece 0 is "
                      "(w, b), the others (w1, b1), ...", lo=2),
    },
    {
        "w0": Opt(0.5, "float", "initial w", traced=True),
        "b0": Opt(0.0, "float", "initial b (with bias = true)", traced=True),
        "a0": Opt(1.0, "float", "initial output weight a (with out_weight = true)", traced=True),
        "c0": Opt(0.0, "float", "initial output bias c (with out_weight = true)", traced=True),
        "piece_scale": Opt(0.0, "float", "maxout: pieces 1..k-1 start at (0, 0) plus this times N(0, 1) noise "
                           "from the trajectory's key (0: maxout with 2 pieces starts as relu(w*x + b))",
                           lo=0.0, traced=True),
    },
    "single neuron act(w*x + b) [a*...+c] learning teacher(x); loss = mean squared error (no 1/2). "
    "prelu: alpha is trained (final_alpha; its initial value is the alpha option, default 0.25); "
    "maxout: max over `pieces` linear pieces",
    has_data=True,
    data_options=NEURON_DATA,
    least_squares=lambda o: True,
)


# --------------------------------------------------------------------------- quartic / uv / function
def _scalar_problem(fn: Callable, names: tuple[str, ...], target_value: float, start: dict[str, str] | None = None,
                    residuals: Callable | None = None) -> Problem:
    """A problem of scalar parameters ``names`` and no data: ``fn(params, v)`` is the loss; ``start[name]`` is the
    traced option holding the parameter's initial value (default ``<name>0``)."""
    start = start or {n: n + "0" for n in names}

    def init(key, v):
        return {n: jnp.asarray(v[start[n]]) for n in names}

    def loss(p, batch, v):
        return fn(p, v)

    def target(batch, v):
        return jnp.asarray(target_value)

    res = None if residuals is None else (lambda p, batch, v: residuals(p, v))
    return Problem(names, init, loss, None, None, target, lambda p, b, v: {}, {}, residuals=res)


QUARTIC = ProblemDef(
    lambda o: _scalar_problem(lambda p, v: p["x"] ** 4, ("x",), 0.0),
    {},
    {"x0": Opt(1.0, "float", "initial x", traced=True)},
    "L(x) = x^4 (seed 001's toy): GD converges iff 0 < lr*x0^2 < 1/2",
)


def _uv_residuals(p, v):
    return jnp.reshape(p["u"] * p["v"] - v["y"], (1,))


UV = ProblemDef(
    lambda o: _scalar_problem(lambda p, v: 0.5 * (p["u"] * p["v"] - v["y"]) ** 2, ("u", "v"), 0.0,
                              residuals=_uv_residuals),
    {"y": Opt(1.0, "float", "the target of the product u*v", traced=True)},
    {"u0": Opt(1.0, "float", "initial u", traced=True), "v0": Opt(0.5, "float", "initial v", traced=True)},
    "L(u, v) = (u*v - y)^2 / 2, the smallest model with edge-of-stability / catapult dynamics under GD: the "
    "minima u*v = y form a hyperbola; the Hessian there has eigenvalues u^2 + v^2 (the sharpness) and 0, so GD "
    "at lr can only settle where u^2 + v^2 < 2/lr (for y > 0 the flattest, balanced minimum u = v = sqrt(y) "
    "has sharpness 2y); gradient flow conserves u^2 - v^2, GD multiplies it by 1 - lr^2 (u*v - y)^2 each step. "
    "Residual r = u*v - y (gauss_newton, levenberg_marquardt)",
    least_squares=lambda o: True,
)

START_PREFIX = "init."


def _other_option_names() -> set[str]:
    """Option names a function spec has besides the start values (a start value of that name is 'init.<name>')."""
    from .config import TRAIN_OPTIONS  # (config imports this module; by the time a spec exists both are loaded)

    return set(TRAIN_OPTIONS) | {"seed"} | set(FUNCTION.options)


def function_start_keys(params: tuple[str, ...]) -> dict[str, str]:
    """The option name of each parameter's start value (a traced value in ``v`` and the name of its axis): the
    parameter's own name, or ``init.<name>`` when another option has that name (e.g. a parameter ``lr``)."""
    taken = _other_option_names()
    return {n: START_PREFIX + n if n in taken else n for n in params}


def constant_key(name: str) -> str:
    """The option name of the constant ``name`` (its traced value in ``v``, and its axis)."""
    return "constants." + name


def load_function(ref: str) -> Callable:
    """The user's loss of a resolved ``module:function`` reference (raises ValueError with the reason);
    ``user_loss.resolve`` makes a reference from what the user wrote and the spec's folder."""
    return user_loss.load(ref)


def function_params(f: Callable, constants=()) -> tuple[str, ...]:
    """Parameter names of a user loss: its positional arguments without a default, less the constants."""
    return user_loss.params(f, constants)


def _build_function(o: dict) -> Problem:
    f = load_function(o["loss"])
    consts = tuple(o.get("constants") or ())
    names = function_params(f, consts)
    call = user_loss.caller(f)

    def fn(p, v):
        return call({**{n: p[n] for n in names}, **{c: v[constant_key(c)] for c in consts}})

    return _scalar_problem(fn, names, o["target"], function_start_keys(names))


FUNCTION = ProblemDef(
    _build_function,
    {
        "loss": Opt(None, "str", "a scalar loss 'module:function' (or 'path/to/file.py:function'); the module is "
                    "looked for next to the spec file, then in the working directory, then on PYTHONPATH; each "
                    "positional argument without a default is a trained scalar parameter"),
        "target": Opt(0.0, "float", "the minimum loss (converged = reached it within tolerance)"),
        "constants": Opt({}, "table", "values of other arguments of the loss, e.g. { c = 0.3 }: passed by name, "
                         "never trained (one may override an argument's default); each is traced: sweep it as "
                         "axes.c (or axes.\"constants.c\"), its dimension is constants.c", traced=True),
    },
    {},  # one key per trained argument, named like it (the config reads them from the loss)
    "any user loss f(x, y, ...) -> scalar given as 'module:function'",
)

PROBLEMS: dict[str, ProblemDef] = {"neuron": NEURON, "quartic": QUARTIC, "uv": UV, "function": FUNCTION}


def problem_init_options(name: str, options: dict[str, Any]) -> dict[str, Opt]:
    """Init keys of a problem (for ``function``: one per trained argument of the user's loss, named like it;
    ``options["loss"]`` must be resolved)."""
    pdef = PROBLEMS[name]
    if name == "function":
        names = function_params(load_function(options["loss"]), tuple(options.get("constants") or ()))
        return {n: Opt(0.0, "float", f"initial {n}", traced=True) for n in names}
    return pdef.init


from . import nets  # noqa: E402,F401  (registers the network problems into PROBLEMS)
