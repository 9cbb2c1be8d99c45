"""Network problems of the seeds, registered into ``problems.PROBLEMS``.

- ``mlp`` (seed 001): an MLP classifier (softmax + MSE or cross-entropy) on synthetic data drawn
  from the data key, or on a user's ``.npz`` / ``.csv`` file.
- ``two_layer_1d`` (seed 003, Holzmueller & Steinwart): f(x) = c + s * sum_i w_i act(a_i x + b_i)
  on a fixed weighted set of 1-D points; compares the result with the best fit that is linear on
  each side of 0 (the bad local minimum of the paper) and tracks whether a kink ever reached the data.
- ``two_layer_lr`` (the trainability-boundary experiment): f(x) = W1 act(W0 x) without biases on
  fixed random data, one learning rate per layer (``lr0``, ``lr1``) and the classic criterion
  "trainable iff mean of the last k losses / initial loss < 1".

Written for ONE trajectory like every problem: parameters are a dict of arrays (weight matrices,
bias vectors); only scalar parameters are listed in ``Problem.params`` (stored as ``final_<name>``),
arrays are summarised by metrics. Random initial weights come from the trajectory key given to
``init``, so results do not depend on chunking. Files are read at build time on the host.
"""
from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .activations import ELEMENTWISE, GRAD_AT_ZERO_CHOICES, get_activation
from .options import Opt
from .problems import PROBLEMS, Problem, ProblemDef, _alpha

INIT_DISTS = ("uniform", "normal", "he", "glorot")
FLAT_LEFT = ("relu", "relu6")  # activations with an exactly zero derivative for z < 0: units can die


def _activation_options(default: str) -> dict[str, Opt]:
    return {
        "activation": Opt(default, "choice", "hidden activation (elementwise)", choices=ELEMENTWISE),
        "alpha": Opt(None, "float", "activation parameter (leaky_relu slope, elu scale); default: the activation's "
                     "own", traced=True),
        "relu_grad_at_zero": Opt(0.0, "choice", "derivative of the ReLU family at the kink",
                                 choices=GRAD_AT_ZERO_CHOICES),
    }


def _layer_lr_options(first: str, rest: str) -> dict[str, Opt]:
    return {
        "lr0": Opt(1.0, "float", f"multiplier of the learning rate of {first} (per-layer learning rate; the "
                   "step is train.lr * lr0 for a first-order optimizer)", lo=0.0, traced=True),
        "lr1": Opt(1.0, "float", f"multiplier of the learning rate of {rest}", lo=0.0, traced=True),
    }


def unit_draws(key, dist: str, n: int) -> jax.Array:
    """n standard draws (float32) for ``dist`` in ONE random call: U[-1, 1] for uniform and glorot,
    N(0, 1) for normal and he. (One call per trajectory keeps compile time low: each threefry call
    costs ~0.3 s of XLA compile time on CPU.)"""
    if dist in ("uniform", "glorot"):
        return jax.random.uniform(key, (n,), jnp.float32, -1.0, 1.0)
    return jax.random.normal(key, (n,), jnp.float32)


def init_factor(dist: str, fan_in: int, fan_out: int) -> float:
    """Multiplier of a unit draw: uniform U[-1, 1] and normal N(0, 1): 1; he: sqrt(2/fan_in);
    glorot: sqrt(6/(fan_in + fan_out)) (times the traced scale, by the caller)."""
    return {"uniform": 1.0, "normal": 1.0, "he": math.sqrt(2.0 / fan_in),
            "glorot": math.sqrt(6.0 / (fan_in + fan_out))}[dist]


# --------------------------------------------------------------------------- files
def load_table(path: str) -> dict[str, np.ndarray]:
    """Arrays of a user file: ``.npz`` (its arrays by name) or ``.csv`` (``columns``: (rows, cols) float64;
    a first row that is not numeric is a header and skipped). Raises ValueError naming the problem."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"file {path!r} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        except Exception as e:  # noqa: BLE001 - reported to the user
            raise ValueError(f"file {path!r} is not a readable .npz ({type(e).__name__}: {e})") from None
    if p.suffix == ".csv":
        lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
        if lines:
            try:
                [float(c) for c in lines[0].split(",")]
            except ValueError:
                lines = lines[1:]
        try:
            cols = np.array([[float(c) for c in ln.split(",")] for ln in lines], np.float64)
        except ValueError as e:
            raise ValueError(f"file {path!r}: not a numeric CSV ({e})") from None
        if cols.ndim != 2 or cols.shape[0] == 0:
            raise ValueError(f"file {path!r}: no data rows, or rows of different lengths")
        return {"columns": cols}
    raise ValueError(f"file {path!r}: expected a .npz or .csv file")


def _labelled(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, d) float32, labels (n,) int64) of a classification file."""
    t = load_table(path)
    if "columns" in t:
        c = t["columns"]
        if c.shape[1] < 2:
            raise ValueError(f"file {path!r}: a classification CSV needs feature columns and a label column")
        x, y = c[:, :-1], c[:, -1]
    else:
        if "x" not in t or "y" not in t:
            raise ValueError(f"file {path!r}: the .npz needs arrays 'x' (n, d) and 'y' (n,) of integer labels; "
                             f"it has {', '.join(t) or 'none'}")
        x, y = np.asarray(t["x"], np.float64), np.asarray(t["y"])
        x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"file {path!r}: x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError(f"file {path!r}: x must be finite and y integer labels 0, 1, ...")
    return x.astype(np.float32), y.astype(np.int64)


# --------------------------------------------------------------------------- mlp (seed 001)
SOURCES = ("spirals", "blobs", "moons", "xor", "circles", "file")

MLP_DATA: dict[str, Opt] = {
    "source": Opt("spirals", "choice", "synthetic data drawn from the data key (spirals, blobs, moons, xor, circles; "
                  "classes are balanced: point i has class i mod classes) or 'file'", choices=SOURCES),
    "file": Opt("", "str", "source = 'file': a .npz with x (n, d) and y (n,) integer labels, or a .csv with the "
                "features then the label on each row (path relative to the working directory)"),
    "n": Opt(256, "int", "points in the fixed dataset (source = 'file': the first n rows; 0: all)", lo=0),
    "batch": Opt(0, "int", "points per step: a fresh batch size, or a minibatch of the fixed dataset (0: all n)",
                 lo=0),
    "fresh": Opt(False, "bool", "draw a new synthetic batch every step (same batch for every trajectory of a seed)"),
    "noise": Opt(0.1, "float", "standard deviation of Gaussian noise added to synthetic inputs", lo=0.0),
    "classes": Opt(3, "int", "spirals and blobs: number of classes (moons, xor, circles have 2)", lo=2),
    "dim": Opt(2, "int", "blobs: input dimension (the others are 2-D)", lo=2),
}


def synthetic(source: str, key, n: int, classes: int = 3, dim: int = 2, noise: float = 0.1):
    """Draw n labelled points. Returns (x (n, d) float32, labels (n,) int32). Deterministic in ``key``.

    Point i has class i mod classes (balanced), except xor (the class is the quadrant's parity).
    One random call: N(0, 1) draws, two columns of which become U(0, 1) through the normal CDF.
    """
    d = dim if source == "blobs" else 2
    g = jax.random.normal(key, (n, 2 + d), jnp.float32)
    u = jax.scipy.special.ndtr(g[:, :2])  # (n, 2) uniform on (0, 1)
    i = jnp.arange(n)
    two_pi = 2.0 * math.pi
    if source in ("moons", "xor", "circles"):
        classes = 2
    c = i % classes
    if source == "blobs":  # centres on the unit circle of the first two coordinates
        ang = two_pi * jnp.arange(classes) / classes
        centres = jnp.zeros((classes, d), jnp.float32).at[:, 0].set(jnp.cos(ang)).at[:, 1].set(jnp.sin(ang))
        x = centres[c]
    elif source == "moons":
        t = math.pi * u[:, 0]
        x = jnp.stack([jnp.where(c == 0, jnp.cos(t), 1.0 - jnp.cos(t)),
                       jnp.where(c == 0, jnp.sin(t), 0.5 - jnp.sin(t))], axis=1)
    elif source == "xor":
        x = 2.0 * u - 1.0
        c = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(jnp.int32)
    elif source == "circles":
        t = two_pi * u[:, 0]
        r = jnp.where(c == 0, 1.0, 0.5)
        x = jnp.stack([r * jnp.cos(t), r * jnp.sin(t)], axis=1)
    elif source == "spirals":  # one arm per class, 1.5 turns, radius growing from 0 to 1
        t = u[:, 0]
        ang = two_pi * c / classes + 3.0 * math.pi * t
        x = jnp.stack([t * jnp.cos(ang), t * jnp.sin(ang)], axis=1)
    else:
        raise ValueError(f"unknown synthetic source {source!r}")
    x = x + noise * g[:, 2:]
    return x.astype(jnp.float32), c.astype(jnp.int32)


def _mlp_data_shape(d: dict) -> tuple[int, int]:
    """(input dim, classes) of the mlp's data (reads the file for source = 'file')."""
    if d["source"] == "file":
        x, y = _labelled(d["file"])
        return x.shape[1], int(y.max()) + 1
    if d["source"] in ("moons", "xor", "circles"):
        return 2, 2
    return (d["dim"] if d["source"] == "blobs" else 2), d["classes"]


def _validate_mlp(o: dict) -> None:
    d = o["data"]
    if d["source"] == "file":
        if not d["file"]:
            raise ValueError("problem.data.file: missing; source = 'file' needs a .npz or .csv path")
        try:
            x, y = _labelled(d["file"])
        except ValueError as e:
            raise ValueError(f"problem.data.file = {d['file']!r}: {e}") from None
        if d["n"] > x.shape[0]:
            raise ValueError(f"problem.data.n = {d['n']}: the file has only {x.shape[0]} rows")
        if d["fresh"]:
            raise ValueError("problem.data.fresh = true: a file has no fresh batches; use batch = k for minibatches")
        if d["batch"] and not d["n"]:
            raise ValueError(f"problem.data.batch = {d['batch']}: minibatches of a file need data.n (rows used)")
    elif d["n"] < 1:
        raise ValueError(f"problem.data.n = {d['n']}: synthetic data need n >= 1")


def _build_mlp(o: dict) -> Problem:
    d = o["data"]
    act_name = o["activation"]
    act = get_activation(act_name, o["relu_grad_at_zero"])
    widths = tuple(int(w) for w in o["widths"])
    n_in, n_cls = _mlp_data_shape(d)
    sizes = (n_in,) + widths + (n_cls,)
    L = len(widths)  # hidden layers; layer L is the output layer
    out_bias = o["out_bias"]
    xent = o["objective"] == "xent"
    file_data = None
    if d["source"] == "file":
        x, y = _labelled(d["file"])
        if d["n"]:
            x, y = x[: d["n"]], y[: d["n"]]
        file_data = (jnp.asarray(x), jax.nn.one_hot(jnp.asarray(y), n_cls, dtype=jnp.float32))

    has_b = [l < L or out_bias for l in range(L + 1)]
    like = o["bias_dist"] == "like_weights"
    n_draws = sum(sizes[l] * sizes[l + 1] + (sizes[l + 1] if like and has_b[l] else 0) for l in range(L + 1))

    def init(key, v):
        u, at, p = unit_draws(key, o["init_dist"], n_draws), 0, {}
        s = v["init_scale"]
        for l in range(L + 1):
            fan_in, fan_out = sizes[l], sizes[l + 1]
            f = init_factor(o["init_dist"], fan_in, fan_out)
            p[f"W{l}"] = s * f * u[at: at + fan_in * fan_out].reshape(fan_out, fan_in)
            at += fan_in * fan_out
            if has_b[l]:
                b = jnp.full((fan_out,), v["bias_init"], jnp.float32)
                if like:
                    b, at = b + s * f * u[at: at + fan_out], at + fan_out
                p[f"b{l}"] = b
        return p

    def forward(p, x, v):
        """One point x (d,) -> (hidden pre-activations [(width,)], logits (classes,))."""
        alpha = _alpha(v, act_name)
        zs, h = [], x
        for l in range(L):
            z = p[f"W{l}"] @ h + p[f"b{l}"]
            zs.append(z)
            h = act(z, alpha)
        logits = p[f"W{L}"] @ h
        return zs, (logits + p[f"b{L}"] if out_bias else logits)

    def point_loss(p, point, v):
        x, y = point
        logits = forward(p, x, v)[1]
        if xent:
            return -jnp.sum(y * jax.nn.log_softmax(logits))
        return jnp.mean((jax.nn.softmax(logits) - y) ** 2)

    def loss(p, batch, v):
        return jnp.mean(jax.vmap(point_loss, (None, 0, None))(p, batch, v))

    def residuals(p, batch, v):
        x, y = batch
        probs = jax.nn.softmax(jax.vmap(lambda xi: forward(p, xi, v)[1])(x))
        return (jnp.sqrt(jnp.asarray(2.0 / y.size, x.dtype)) * (probs - y)).reshape(-1)

    def sample(key, n):
        if file_data is not None:
            return file_data
        x, c = synthetic(d["source"], key, n, d["classes"], d["dim"], d["noise"])
        return x, jax.nn.one_hot(c, n_cls, dtype=jnp.float32)

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    flat_left = act_name in FLAT_LEFT

    def dead_units(p, x, v):
        """(units,) bool over every hidden layer: never active (z <= 0) on any point of x."""
        zs = jax.vmap(lambda xi: forward(p, xi, v)[0])(x)
        return jnp.concatenate([jnp.all(z <= 0, axis=0) for z in zs])

    def metrics(p, batch, v):
        x, y = batch
        logits = jax.vmap(lambda xi: forward(p, xi, v)[1])(x)
        acc = jnp.mean((jnp.argmax(logits, axis=1) == jnp.argmax(y, axis=1)).astype(x.dtype))
        dead = jnp.mean(dead_units(p, x, v).astype(x.dtype)) if flat_left and L else jnp.zeros((), x.dtype)
        return {"accuracy": acc, "dead_fraction": dead}

    def inactive(p, batch, v):
        if not flat_left or not L:
            return jnp.asarray(False)
        zs = jax.vmap(lambda xi: forward(p, xi, v)[0])(batch[0])
        return jnp.any(jnp.stack([jnp.all(z <= 0) for z in zs]))

    def update_scale(v):
        return {k: v["lr0"] if k in ("W0", "b0") else v["lr1"] for k in
                [f"W{l}" for l in range(L + 1)] + [f"b{l}" for l in range(L + int(out_bias))]}

    attrs = {
        "accuracy": {"long_name": "training accuracy at the end (argmax of the output)", "units": "1"},
        "dead_fraction": {"long_name": "fraction of hidden units never active (pre-activation <= 0) on any data "
                                       "point at the end (relu, relu6; 0 for other activations)", "units": "1"},
    }
    return Problem((), init, loss, point_loss, sample, target, metrics, attrs, inactive,
                   residuals if not xent else None, update_scale)


MLP = ProblemDef(
    _build_mlp,
    {
        "widths": Opt((16, 16), "ints", "hidden layer widths (static)", lo=1),
        **_activation_options("relu"),
        "objective": Opt("mse", "choice", "mse: mean over points and classes of (softmax - one-hot)^2 (seed 001); "
                         "xent: softmax cross-entropy", choices=("mse", "xent")),
        "out_bias": Opt(True, "bool", "the output layer has a bias"),
        "init_dist": Opt("uniform", "choice", "initial weights: uniform U[-s, s], normal N(0, s^2), he N(0, s^2 "
                         "2/fan_in), glorot U[-l, l] with l = s sqrt(6/(fan_in+fan_out)); s = init_scale",
                         choices=INIT_DISTS),
        "bias_dist": Opt("constant", "choice", "initial biases: constant (every bias = bias_init) or like_weights "
                         "(drawn like the weights, plus bias_init)", choices=("constant", "like_weights")),
        "target": Opt(0.01, "float", "converged = training loss <= target (+ tolerance); e.g. xent 0.01: on average "
                      "99% probability on the right class", lo=0.0, traced=True),
        **_layer_lr_options("the first layer (W0, b0)", "every later layer"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weight distribution (init_dist)", lo=0.0, traced=True),
        "bias_init": Opt(0.0, "float", "initial bias constant (0.1 is the seed-004 advice)", traced=True),
    },
    "MLP classifier (seed 001): softmax output, MSE or cross-entropy, on synthetic or file data; metrics accuracy "
    "and dead_fraction. converged: loss <= target; dead: exactly zero gradient with a whole hidden layer inactive on "
    "every point (with an output bias and unbalanced classes the bias still learns the class frequencies, so such runs "
    "end stuck with dead_fraction = 1)",
    has_data=True,
    data_options=MLP_DATA,
    validate=_validate_mlp,
    least_squares=lambda o: o["objective"] == "mse",
)


# --------------------------------------------------------------------------- two_layer_1d (seed 003)
DEFAULT_1D_X = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)
DEFAULT_1D_Y = tuple(x * x for x in DEFAULT_1D_X)


def points_1d(o: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted 1-D data (x, y, p) as float32, p normalised to sum 1 (reads the file if given)."""
    if o["file"]:
        t = load_table(o["file"])
        if "columns" in t:
            c = t["columns"]
            if c.shape[1] not in (2, 3):
                raise ValueError(f"file {o['file']!r}: a 1-D CSV has columns x, y[, p]")
            x, y = c[:, 0], c[:, 1]
            p = c[:, 2] if c.shape[1] == 3 else np.ones_like(x)
        else:
            if "x" not in t or "y" not in t:
                raise ValueError(f"file {o['file']!r}: the .npz needs arrays 'x' and 'y' (and optionally 'p')")
            x, y = np.ravel(t["x"]), np.ravel(t["y"])
            p = np.ravel(t["p"]) if "p" in t else np.ones_like(x, dtype=np.float64)
    else:
        x = np.asarray(o["x"] if o["x"] is not None else DEFAULT_1D_X, np.float64).ravel()
        y = np.asarray(o["y"] if o["y"] is not None else (DEFAULT_1D_Y if o["x"] is None else ()), np.float64).ravel()
        p = np.asarray(o["p"] if o["p"] is not None else np.ones_like(x), np.float64).ravel()
    if x.size == 0 or y.shape != x.shape or p.shape != x.shape:
        raise ValueError(f"x, y and p must have the same number of points (got {x.size}, {y.size}, {p.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        raise ValueError("x, y and p must be finite")
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError("the weights p must be >= 0 and not all 0")
    return x.astype(np.float32), y.astype(np.float32), (p / p.sum()).astype(np.float32)


def linear_fit_loss(x, y, p) -> float:
    """Loss 1/2 sum p_j (f(x_j) - y_j)^2 of the best f(x) = c + s+ max(x, 0) + s- min(x, 0) (exact, float64).

    This is what a two-layer ReLU network computes while every kink stays at 0: the bad local
    minimum of seed 003.
    """
    x, y, p = (np.asarray(a, np.float64) for a in (x, y, p))
    feats = np.stack([np.ones_like(x), np.maximum(x, 0.0), np.minimum(x, 0.0)], axis=1)
    sw = np.sqrt(p)
    coef = np.linalg.lstsq(feats * sw[:, None], y * sw, rcond=None)[0]
    r = feats @ coef - y
    return float(0.5 * np.sum(p * r * r))


def _validate_1d(o: dict) -> None:
    try:
        points_1d(o)
    except ValueError as e:
        key = "problem.file" if o["file"] else "problem.x / y / p"
        raise ValueError(f"{key}: {e}") from None


def _build_two_layer_1d(o: dict) -> Problem:
    x_np, y_np, p_np = points_1d(o)
    n_pts = x_np.size
    h = o["width"]
    act_name = o["activation"]
    act = get_activation(act_name, o["relu_grad_at_zero"])
    ntk = o["param"] == "ntk"
    out_s = math.sqrt(2.0 / h) if ntk else 1.0
    lin_loss = linear_fit_loss(x_np, y_np, p_np)
    support = p_np > 0
    margin = float(np.min(np.abs(x_np[support])))  # nearest data point to 0
    data = (jnp.asarray(x_np), jnp.asarray(y_np), jnp.asarray(p_np))

    fa, fw = (1.0, 1.0) if ntk else (math.sqrt(2.0), math.sqrt(2.0 / h))  # He: N(0, 2/fan_in) for both layers

    def init(key, v):
        g = jax.random.normal(key, (3 * h,), jnp.float32)
        s = v["init_scale"]
        return {"a": s * fa * g[:h], "b": v["bias_init"] + v["bias_std"] * g[h: 2 * h], "w": s * fw * g[2 * h:],
                "c": jnp.zeros((), jnp.float32)}

    def f(p, x, v):
        """Network output at one point x ()."""
        return p["c"] + out_s * jnp.sum(p["w"] * act(p["a"] * x + p["b"], _alpha(v, act_name)))

    def point_loss(p, point, v):  # the engine averages over the n points: n * 1/2 p_j r_j^2
        x, y, pj = point
        return 0.5 * n_pts * pj * (f(p, x, v) - y) ** 2

    def residuals(p, batch, v):
        x, y, pj = batch
        return jnp.sqrt(pj) * (jax.vmap(f, (None, 0, None))(p, x, v) - y)

    def loss(p, batch, v):
        return 0.5 * jnp.sum(residuals(p, batch, v) ** 2)

    def sample(key, n):  # fixed data: the key and n are ignored
        return data

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    def track(p, batch, v):
        reached = (jnp.abs(p["b"]) >= margin * jnp.abs(p["a"])) & (jnp.abs(p["b"]) > 0)
        return {"kink_reached_data": jnp.any(reached)}

    flat_left = act_name in FLAT_LEFT

    def dead(p, batch):
        x, _, pj = batch
        z = p["a"][None, :] * x[:, None] + p["b"][None, :]  # (points, units)
        return jnp.all((z <= 0) | (pj[:, None] == 0), axis=0)

    def metrics(p, batch, v):
        dt = batch[0].dtype
        final = loss(p, batch, v)
        lin = jnp.asarray(lin_loss, dt)
        a, b = p["a"], p["b"]
        kink = jnp.where(a != 0, jnp.abs(b) / jnp.where(a != 0, jnp.abs(a), 1.0), 0.0)
        return {
            "linear_fit_loss": lin,
            "beat_linear": (final < lin * (1 - 1e-3)).astype(jnp.int8),
            "max_abs_kink": jnp.max(kink),
            "max_abs_bias": jnp.max(jnp.abs(b)),
            "dead_fraction": jnp.mean(dead(p, batch).astype(dt)) if flat_left else jnp.zeros((), dt),
        }

    def inactive(p, batch, v):
        return jnp.all(dead(p, batch)) if flat_left else jnp.asarray(False)

    def update_scale(v):
        return {"a": v["lr0"], "b": v["lr0"], "w": v["lr1"], "c": v["lr1"]}

    attrs = {
        "linear_fit_loss": {"long_name": "loss of the best fit c + s1 max(x, 0) + s2 min(x, 0) (every kink at 0; "
                                         "exact)", "units": "1"},
        "beat_linear": {"long_name": "final loss below linear_fit_loss by more than 0.1% (1) or not (0)",
                        "units": "1"},
        "max_abs_kink": {"long_name": "largest |kink position| |b_i/a_i| at the end (units with a_i != 0)",
                         "units": "1"},
        "max_abs_bias": {"long_name": "largest |b_i| at the end (how far the biases moved from 0)", "units": "1"},
        "dead_fraction": {"long_name": "fraction of hidden units inactive on every data point at the end "
                                       "(relu, relu6; 0 for other activations)", "units": "1"},
        "kink_reached_data": {"long_name": "some kink -b_i/a_i reached the data (|b_i/a_i| >= min |x_j|) at some "
                                           "step", "units": "1"},
        "kink_reached_data_step": {"long_name": "first step at which a kink reached the data (-1: never)",
                                   "units": "steps"},
    }
    return Problem(("c",), init, loss, point_loss, sample, target, metrics, attrs, inactive, residuals,
                   update_scale, track, ("kink_reached_data",))


TWO_LAYER_1D = ProblemDef(
    _build_two_layer_1d,
    {
        "width": Opt(16, "int", "hidden units n (static)", lo=1),
        **_activation_options("relu"),
        "param": Opt("standard", "choice", "standard (He): a ~ N(0, 2 s^2), w ~ N(0, 2 s^2/n), f = c + sum_i w_i "
                     "act(a_i x + b_i); ntk: a, w ~ N(0, s^2), f = c + sqrt(2/n) sum_i w_i act(a_i x + b_i)",
                     choices=("standard", "ntk")),
        "x": Opt(None, "floats", "data inputs (default: -2, -1.5, -1, -0.5, 0.5, 1, 1.5, 2)"),
        "y": Opt(None, "floats", "data targets (default: x^2)"),
        "p": Opt(None, "floats", "data weights, normalised to sum 1 (default: equal)"),
        "file": Opt("", "str", "a .npz with arrays x, y[, p] or a .csv with columns x, y[, p] (replaces x, y, p)"),
        "target": Opt(0.0, "float", "converged = loss <= target (+ tolerance)", lo=0.0, traced=True),
        **_layer_lr_options("the first layer (a, b)", "the output layer (w, c)"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weights (see param)", lo=0.0, traced=True),
        "bias_init": Opt(0.0, "float", "initial hidden biases: bias_init + bias_std * N(0, 1)", traced=True),
        "bias_std": Opt(0.0, "float", "standard deviation of the initial hidden biases", lo=0.0, traced=True),
    },
    "two-layer 1-D network f(x) = c + s sum_i w_i act(a_i x + b_i) (seed 003), loss 1/2 sum_j p_j (f(x_j) - y_j)^2 "
    "on fixed weighted points; compares with the best fit linear on each side of 0 (linear_fit_loss, beat_linear) "
    "and records whether a kink ever reached the data",
    validate=_validate_1d,
    least_squares=lambda o: True,
)


# --------------------------------------------------------------------------- two_layer_lr (trainability)
def data_lr(o: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(x (n, d), y (n,), W0 (width, d) or None, W1 (width,) or None) as float32."""
    if o["file"]:
        t = load_table(o["file"])
        if "x" not in t or "y" not in t:
            raise ValueError(f"file {o['file']!r}: the .npz needs arrays 'x' (n, d) and 'y' (n,) "
                             "(optionally 'W0' (width, d) and 'W1' (width,))")
        x = np.asarray(t["x"], np.float64)
        x = x[:, None] if x.ndim == 1 else x
        y = np.ravel(t["y"]).astype(np.float64)
        w0 = np.asarray(t["W0"], np.float64) if "W0" in t else None
        w1 = np.ravel(t["W1"]).astype(np.float64) if "W1" in t else None
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"file {o['file']!r}: x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
        if w0 is not None and (w0.ndim != 2 or w0.shape[1] != x.shape[1]):
            raise ValueError(f"file {o['file']!r}: W0 must be (width, d = {x.shape[1]}), got {w0.shape}")
        width = w0.shape[0] if w0 is not None else o["width"]
        if w1 is not None and w1.shape != (width,):
            raise ValueError(f"file {o['file']!r}: W1 must have width = {width} entries, got {w1.shape}")
        arrays = [x, y, w0, w1]
        if not all(a is None or np.all(np.isfinite(a)) for a in arrays):
            raise ValueError(f"file {o['file']!r}: arrays must be finite")
        return tuple(None if a is None else a.astype(np.float32) for a in arrays)
    rng = np.random.default_rng(o["data_seed"])
    x = rng.standard_normal((o["n_data"], o["d"]))
    y = rng.standard_normal(o["n_data"])
    return x.astype(np.float32), y.astype(np.float32), None, None


def _validate_lr(o: dict) -> None:
    if o["file"]:
        try:
            data_lr(o)
        except ValueError as e:
            raise ValueError(f"problem.file = {o['file']!r}: {e}") from None


def _build_two_layer_lr(o: dict) -> Problem:
    x_np, y_np, w0_file, w1_file = data_lr(o)
    n_pts, d = x_np.shape
    width = w0_file.shape[0] if w0_file is not None else (w1_file.size if w1_file is not None else o["width"])
    act_name = o["activation"]
    act = get_activation(act_name, o["relu_grad_at_zero"])
    param = o["param"]
    in_s = 1.0 if param == "standard" else 1.0 / math.sqrt(d)
    out_s = {"standard": 1.0, "meanfield": 1.0 / width, "ntk": 1.0 / math.sqrt(width)}[param]
    data = (jnp.asarray(x_np), jnp.asarray(y_np))

    std0, std1 = (1.0 / math.sqrt(d), 1.0 / math.sqrt(width)) if param == "standard" else (1.0, 1.0)

    def init(key, v):
        s = v["init_scale"]
        if w0_file is not None and w1_file is not None:
            return {"W0": s * jnp.asarray(w0_file), "W1": s * jnp.asarray(w1_file)}
        g = jax.random.normal(key, (width * d + width,), jnp.float32)
        w0 = jnp.asarray(w0_file) if w0_file is not None else std0 * g[: width * d].reshape(width, d)
        w1 = jnp.asarray(w1_file) if w1_file is not None else std1 * g[width * d:]
        return {"W0": s * w0, "W1": s * w1}

    def f(p, x, v):
        """Output at one point x (d,)."""
        h = v["gain"] * act(in_s * (p["W0"] @ x), _alpha(v, act_name))
        return out_s * jnp.dot(p["W1"], h)

    def point_loss(p, point, v):
        x, y = point
        return 0.5 * (f(p, x, v) - y) ** 2

    def residuals(p, batch, v):
        x, y = batch
        return jnp.sqrt(jnp.asarray(1.0 / x.shape[0], x.dtype)) * (jax.vmap(f, (None, 0, None))(p, x, v) - y)

    def loss(p, batch, v):
        return 0.5 * jnp.sum(residuals(p, batch, v) ** 2)

    def sample(key, n):  # fixed data: the key and n are ignored
        return data

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    def metrics(p, batch, v):
        return {}

    def update_scale(v):
        return {"W0": v["lr0"], "W1": v["lr1"]}

    attrs = {
        "trainable": {"long_name": f"mean of the last {o['trainable_k']} losses / initial loss < 1 (1) or not (0); "
                                   "non-finite losses count as infinite, a run that settled early keeps its last "
                                   "loss (diverged and nan: infinite)", "units": "1"},
        "tail_loss_ratio": {"long_name": f"mean of the last {o['trainable_k']} losses / initial loss", "units": "1"},
    }
    return Problem((), init, loss, point_loss, sample, target, metrics, attrs, None, residuals, update_scale,
                   None, (), o["trainable_k"])


TWO_LAYER_LR = ProblemDef(
    _build_two_layer_lr,
    {
        "d": Opt(16, "int", "input dimension (static)", lo=1),
        "width": Opt(16, "int", "hidden units (static)", lo=1),
        "n_data": Opt(16, "int", "fixed random data points: x ~ N(0, I_d), y ~ N(0, 1) (static)", lo=1),
        "data_seed": Opt(0, "int", "seed of the fixed random data (numpy default_rng)", lo=0),
        "file": Opt("", "str", "a .npz with x (n, d), y (n,) and optionally initial W0 (width, d), W1 (width,) used "
                    "by every trajectory (times init_scale): replaces the random data and weights"),
        **_activation_options("tanh"),
        "param": Opt("standard", "choice", "standard: f = W1 gain*act(W0 x), W0 ~ N(0, s^2/d), W1 ~ N(0, s^2/width); "
                     "meanfield: f = (1/width) W1 gain*act(W0 x / sqrt(d)), weights N(0, s^2); ntk: as meanfield "
                     "with 1/sqrt(width)", choices=("standard", "meanfield", "ntk")),
        "gain": Opt(1.0, "float", "activation gain (e.g. sqrt(2) for relu)", traced=True),
        "trainable_k": Opt(20, "int", "the trainable criterion averages the last k losses", lo=1),
        "target": Opt(0.0, "float", "converged = loss <= target (+ tolerance)", lo=0.0, traced=True),
        **_layer_lr_options("W0", "W1"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weights (see param)", lo=0.0, traced=True),
    },
    "no-bias two-layer network f(x) = W1 act(W0 x), loss 1/2 mean (f - y)^2 on fixed random data, learning rate "
    "train.lr * lr0 for W0 and train.lr * lr1 for W1 (the fractal trainability boundary); adds trainable and "
    "tail_loss_ratio",
    validate=_validate_lr,
    least_squares=lambda o: True,
)

PROBLEMS.update({"mlp": MLP, "two_layer_1d": TWO_LAYER_1D, "two_layer_lr": TWO_LAYER_LR})
