"""Network problems of the seeds, registered into ``problems.PROBLEMS``.

- ``mlp`` (seed 001): an MLP classifier (softmax + MSE or cross-entropy) on synthetic data drawn
  from the data key, or on a user's ``.npz`` / ``.csv`` file.
- ``two_layer_1d`` (seed 003, Holzmueller & Steinwart): f(x) = c + s * sum_i w_i act(a_i x + b_i)
  on a weighted set of 1-D points; compares the result with the best fit that is linear on each
  side of 0 (the bad local minimum of the paper) and tracks whether a kink ever reached the data.
  The data weights can be drawn per trajectory (multinomial counts, the paper's Monte Carlo).
- ``two_layer_lr`` (the trainability-boundary experiment): f(x) = W1 act(W0 x) without biases on
  fixed random data, one learning rate per layer (``lr0``, ``lr1``) and the classic criterion
  "trainable iff mean of the last k losses / initial loss < 1".

Papers' conventions are options, not folded into lr: ``loss_scale`` (every network problem),
``gain_placement`` and ``tail_window`` (two_layer_lr), a per-row ``lr`` array in two_layer_1d's data file.
File arrays are read in float64 and rounded once to the run's dtype (exact in float64 runs).

Written for ONE trajectory like every problem: parameters are a dict of arrays (weight matrices,
bias vectors); only scalar parameters are listed in ``Problem.params`` (stored as ``final_<name>``),
arrays are summarised by metrics. Random initial weights come from the trajectory key given to
``init``, so results do not depend on chunking. Files are read at build time on the host.

Hidden layers may be elementwise activations, ``prelu`` (one learnable slope per hidden unit,
parameter ``alpha<l>`` / ``alpha``) or ``maxout`` (each hidden unit the max of ``pieces`` linear
pieces: its weights gain a pieces axis before the input axis, its biases a last pieces axis).

Files (``init_file``, and the data files) may give arrays with one extra leading dimension K: one
row per trajectory, chosen by the traced ``[init] init_row`` (sweep it to start from K given weight
sets); arrays of the plain shape are shared by every trajectory.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .activations import ACTIVATIONS, GRAD_AT_ZERO_CHOICES, get_activation
from .options import Opt
from .problems import PROBLEMS, Problem, ProblemDef, _alpha

INIT_DISTS = ("uniform", "normal", "he", "glorot")
FLAT_LEFT = ("relu", "relu6")  # activations with an exactly zero derivative for z < 0: units can die
DATA_NAMES = ("x", "y", "p", "lr")  # data arrays: ignored in an init file, so one .npz may hold data and weights


def _activation_options(default: str) -> dict[str, Opt]:
    return {
        "activation": Opt(default, "choice", "hidden activation: elementwise, or prelu (a learnable slope per hidden "
                          "unit, starting at alpha) or maxout (each hidden unit the max of `pieces` linear pieces)",
                          choices=tuple(ACTIVATIONS)),
        "alpha": Opt(None, "float", "activation parameter (leaky_relu slope, elu scale; prelu: the initial slope of "
                     "every hidden unit, default 0.25); default: the activation's own", traced=True),
        "relu_grad_at_zero": Opt(0.0, "choice", "derivative of the ReLU family at the kink",
                                 choices=GRAD_AT_ZERO_CHOICES),
        "pieces": Opt(2, "int", "maxout: linear pieces per hidden unit, each with its own weights and bias (static); "
                      "ties go to the first piece", lo=2),
    }


def _layer_init_options() -> dict[str, Opt]:
    return {
        "piece_scale": Opt(1.0, "float", "maxout: piece 0 of every hidden unit starts like any hidden unit, pieces "
                           "1..k-1 as piece_scale times an independent draw of the same (weights and biases; 1: every "
                           "piece a standard draw; 0: they start at 0, so maxout with 2 pieces starts as relu of "
                           "piece 0)", lo=0.0, traced=True),
        "init_row": Opt(0, "int", "the row used by this trajectory of every file array with a leading K dimension "
                        "(problem.init_file, and data given that way): sweep it, e.g. axes.init_row = { range = K }, "
                        "to start from K given weight sets", lo=0, traced=True),
    }


def _init_file_option(params: str) -> dict[str, Opt]:
    return {"init_file": Opt("", "str", f"a .npz of initial parameters by name ({params}): each array of the "
                             "parameter's shape (shared by every trajectory) or with a leading K dimension (row "
                             "init_row of each trajectory); weights are multiplied by init_scale, other arrays used as "
                             "given, parameters not in the file drawn as usual; arrays x, y, p are ignored")}


def _layer_lr_options(first: str, rest: str) -> dict[str, Opt]:
    return {
        "lr0": Opt(1.0, "float", f"multiplier of the learning rate of {first} (per-layer learning rate; the "
                   "step is train.lr * lr0 for a first-order optimizer)", lo=0.0, traced=True),
        "lr1": Opt(1.0, "float", f"multiplier of the learning rate of {rest}", lo=0.0, traced=True),
    }


def _loss_scale_option(loss: str, examples: str) -> dict[str, Opt]:
    return {"loss_scale": Opt(1.0, "float", f"multiplier of the training loss, which is loss_scale * {loss}: a "
                              "paper's loss convention given as it is instead of folded into lr (for plain GD, "
                              f"loss_scale = c with lr is the same run as loss_scale = 1 with c*lr); {examples}. "
                              "Every loss-valued result (final_loss, min_loss, targets) is in these units", lo=0.0,
                              lo_open=True, traced=True)}


# --------------------------------------------------------------------------- hidden layers
class Hidden(NamedTuple):
    """A hidden layer's activation, resolved from the static options.

    apply(z, alpha) -> h: z (units,) pre-activations, or (units, k) pieces for maxout -> h (units,);
      alpha is the units' slopes (prelu: a (units,) parameter) or the traced activation parameter.
    """

    name: str
    pieces: int  # k for maxout, else 1
    prelu: bool  # one learnable slope per unit
    flat_left: bool  # zero derivative for z < 0: units can die (relu, relu6)
    apply: Callable


def hidden(o: dict) -> Hidden:
    """The hidden activation of a network problem's options (``activation``, ``pieces``, ``relu_grad_at_zero``)."""
    name = o["activation"]
    k = o["pieces"] if name == "maxout" else 1
    return Hidden(name, k, name == "prelu", name in FLAT_LEFT, get_activation(name, o["relu_grad_at_zero"]))


def unit_shapes(act: Hidden, units: int, fan_in: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(weight shape, bias shape) of a hidden layer: (units, fan_in) and (units,); maxout (units, k, fan_in)
    and (units, k)."""
    if act.pieces > 1:
        return (units, act.pieces, fan_in), (units, act.pieces)
    return (units, fan_in), (units,)


def with_pieces(first: jax.Array, extra: jax.Array, piece_scale) -> jax.Array:
    """Maxout pieces (units, k, ...): piece 0 is ``first`` (units, ...), pieces 1..k-1 are
    ``piece_scale * extra`` (units, k-1, ...)."""
    return jnp.concatenate([first[:, None], piece_scale * extra], axis=1)


# --------------------------------------------------------------------------- rows (per-trajectory file arrays)
def row_of(v: dict) -> jax.Array:
    """() int32: the trajectory's file row (the traced ``init_row``, a float holding an integer)."""
    return jnp.asarray(v.get("init_row", 0)).astype(jnp.int32)


def pick(a, row, axis: int) -> jax.Array:
    """Row ``row`` of ``a`` along ``axis`` (the K axis), that axis removed."""
    return jax.lax.dynamic_index_in_dim(jnp.asarray(a), row, axis, keepdims=False)


class Rows(NamedTuple):
    """Rows of a problem's files: K (0: no array has rows) and a phrase naming where they come from."""

    k: int
    where: str


def merge_rows(a: Rows, b: Rows) -> Rows:
    """The rows of two sources; every array with rows must have the same K."""
    if a.k and b.k and a.k != b.k:
        raise ValueError(f"{a.where} but {b.where}: every array with rows (a leading K dimension) needs the same K, "
                         "one row per init_row value")
    return a if a.k else b


def _shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


def _rows_shape(s: tuple[int, ...]) -> str:
    return "(K" + "".join(f", {n}" for n in s) + ")"


def init_arrays(path: str, table: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], fix: str,
                strict: bool = True) -> tuple[dict[str, tuple[np.ndarray, bool]], Rows]:
    """Initial parameters of a file, by parameter name.

    Args:
      table: the file's arrays (``load_table``); shapes: parameter name -> its shape (one trajectory's).
      fix: what to change when a shape is wrong (e.g. which options set it).
      strict: an array that is neither a parameter nor data (x, y, p) is an error (else ignored).
    Returns:
      ({name: (float64 array of the parameter's shape or (K, *shape), has rows)}, Rows): kept in float64 on the
      host and rounded once, to the run's dtype, when a trajectory starts (``put_file``).
    Raises:
      ValueError naming the file, the array, the expected shapes and the fix.
    """
    if strict:
        for k in table:
            if k not in shapes and k not in DATA_NAMES:
                have = ", ".join(f"{n} {_shape(s)}" for n, s in shapes.items())
                raise ValueError(f"file {path!r}: array {k!r} is not a parameter of this network; its parameters are "
                                 f"{have} (rename or remove the array)")
    out, rows = {}, Rows(0, "")
    for name, s in shapes.items():
        if name not in table:
            continue
        a = np.asarray(table[name])
        if a.dtype.kind not in "fiu":
            raise ValueError(f"file {path!r}: array {name!r} must be numeric, got dtype {a.dtype}")
        if a.shape == tuple(s):
            has = False
        elif a.ndim == len(s) + 1 and a.shape[1:] == tuple(s) and a.shape[0] >= 1:
            has = True
            rows = merge_rows(rows, Rows(a.shape[0], f"array {name!r} of {path!r} has shape {_shape(a.shape)} "
                                                      f"(K = {a.shape[0]} rows)"))
        else:
            raise ValueError(f"file {path!r}: array {name!r} has shape {_shape(a.shape)}; expected {_shape(s)} (shared "
                             f"by every trajectory) or {_rows_shape(s)} (one row per trajectory, chosen by init_row); "
                             f"{fix}: change those options or the array")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"file {path!r}: array {name!r} must be finite")
        out[name] = (a.astype(np.float64), has)
    return out, rows


def _init_file(o: dict, shapes: dict[str, tuple[int, ...]], fix: str) -> tuple[dict, Rows]:
    """The arrays of ``problem.init_file`` (none when it is not given)."""
    if not o.get("init_file"):
        return {}, Rows(0, "")
    path = o["init_file"]
    if Path(path).suffix != ".npz":
        raise ValueError(f"file {path!r}: initial parameters need a .npz file (arrays named as the parameters)")
    return init_arrays(path, load_table(path), shapes, fix)


def run_dtype(v: dict):
    """The run's float dtype: that of the traced values (the engine gives them the run's dtype)."""
    return jnp.asarray(v["init_scale"]).dtype


def put_file(p: dict, arrays: dict, v: dict, weights: tuple[str, ...]) -> dict:
    """``p`` with the file's arrays put in: row ``init_row`` of arrays with rows; ``weights`` times init_scale.
    Each array is rounded once, from the file's float64 to the run's dtype (exact in float64 runs)."""
    row, dt = row_of(v), run_dtype(v)
    for name, (a, has_rows) in arrays.items():
        x = jnp.asarray(a, dt)
        x = pick(x, row, 0) if has_rows else x
        p[name] = v["init_scale"] * x if name in weights else x
    return p


def _row_checker(rows_of_options: Callable[[dict], Rows]) -> Callable[[dict, str, list], None]:
    """``ProblemDef.check_values`` for ``init_row``: every value must be a row of the files."""

    def check(o: dict, name: str, values: list) -> None:
        if name != "init_row":
            return
        rows = rows_of_options(o)
        bad = [r for r in values if (r >= rows.k if rows.k else r != 0)]
        if not bad:
            return
        if not rows.k:
            raise ValueError(bad[0], "no file array of this problem has rows (a leading K dimension): init_row picks "
                                     "row i of arrays shaped (K, ...) in problem.init_file (or the data file); give "
                                     "such arrays, or leave init_row at 0")
        raise ValueError(bad[0], f"{rows.where}, numbered 0 to {rows.k - 1}; use init_row values in [0, {rows.k - 1}], "
                                 f"e.g. axes.init_row = {{ range = {rows.k} }}")

    return check



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
    """(x, labels) of a classification file: x (n, d) float64 (the file's values) and labels (n,) int64, or (.npz only) one dataset per
    trajectory row, x (K, n, d) and labels (K, n) (an array without the K dimension is shared by the rows)."""
    t = load_table(path)
    if "columns" in t:
        c = t["columns"]
        if c.shape[1] < 2:
            raise ValueError(f"file {path!r}: a classification CSV needs feature columns and a label column")
        x, y = c[:, :-1], c[:, -1]
    else:
        if "x" not in t or "y" not in t:
            raise ValueError(f"file {path!r}: the .npz needs arrays 'x' (n, d) and 'y' (n,) of integer labels "
                             f"(or (K, n, d) and (K, n): one dataset per init_row); it has {', '.join(t) or 'none'}")
        x, y = np.asarray(t["x"], np.float64), np.asarray(t["y"])
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim == 3 or y.ndim == 2:  # rows: broadcast a shared array to the others' K
            k = x.shape[0] if x.ndim == 3 else y.shape[0]
            if x.ndim == 3 and y.ndim == 2 and x.shape[0] != y.shape[0]:
                raise ValueError(f"file {path!r}: x has {x.shape[0]} rows and y {y.shape[0]}; give both the same K")
            if x.ndim == 2:
                x = np.broadcast_to(x, (k,) + x.shape)
            if y.ndim == 1:
                y = np.broadcast_to(y, (k,) + y.shape)
    if x.ndim not in (2, 3) or y.shape != x.shape[:-1]:
        raise ValueError(f"file {path!r}: x must be (n, d) and y (n,) (or (K, n, d) and (K, n)), got {x.shape} and "
                         f"{y.shape}")
    if not np.all(np.isfinite(x)) or np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError(f"file {path!r}: x must be finite and y integer labels 0, 1, ...")
    return x.astype(np.float64), y.astype(np.int64)


# --------------------------------------------------------------------------- mlp (seed 001)
SOURCES = ("spirals", "blobs", "moons", "xor", "circles", "file")

MLP_DATA: dict[str, Opt] = {
    "source": Opt("spirals", "choice", "synthetic data drawn from the data key (spirals, blobs, moons, xor, circles; "
                  "classes are balanced: point i has class i mod classes) or 'file'", choices=SOURCES),
    "file": Opt("", "str", "source = 'file': a .npz with x (n, d) and y (n,) integer labels, or a .csv with the "
                "features then the label on each row (path relative to the working directory); in a .npz, x (K, n, "
                "d) and/or y (K, n) give one dataset per init_row"),
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




def _mlp_data(d: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The file data of an mlp (x (n, d) or (K, n, d), labels (n,) or (K, n); the first data.n points), or None."""
    if d["source"] != "file":
        return None
    x, y = _labelled(d["file"])
    if d["n"]:
        x, y = x[..., : d["n"], :], y[..., : d["n"]]
    return x, y


def _mlp_data_shape(d: dict) -> tuple[int, int]:
    """(input dim, classes) of the mlp's data (reads the file for source = 'file')."""
    if d["source"] == "file":
        x, y = _labelled(d["file"])
        return x.shape[-1], int(y.max()) + 1
    if d["source"] in ("moons", "xor", "circles"):
        return 2, 2
    return (d["dim"] if d["source"] == "blobs" else 2), d["classes"]


def mlp_shapes(o: dict, n_in: int, n_cls: int) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of one mlp: W<l>, b<l> (hidden layers per ``unit_shapes``), alpha<l> (prelu), and
    the output layer W<L> (classes, width), b<L> (with out_bias)."""
    act = hidden(o)
    sizes = (n_in,) + tuple(int(w) for w in o["widths"]) + (n_cls,)
    L = len(sizes) - 2
    shapes = {}
    for l in range(L + 1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        if l < L:
            shapes[f"W{l}"], shapes[f"b{l}"] = unit_shapes(act, fan_out, fan_in)
            if act.prelu:
                shapes[f"alpha{l}"] = (fan_out,)
        else:
            shapes[f"W{l}"] = (fan_out, fan_in)
            if o["out_bias"]:
                shapes[f"b{l}"] = (fan_out,)
    return shapes


def _mlp_files(o: dict) -> tuple[dict, Rows]:
    """(init file arrays, rows of the data and init files) of an mlp; ValueError prefixed with the key."""
    d = o["data"]
    rows = Rows(0, "")
    if d["source"] == "file":
        try:
            x, y = _mlp_data(d)
        except ValueError as e:
            raise ValueError(f"problem.data.file = {d['file']!r}: {e}") from None
        if x.ndim == 3:
            rows = Rows(x.shape[0], f"the data of {d['file']!r} have K = {x.shape[0]} rows (x {_shape(x.shape)})")
    n_in, n_cls = _mlp_data_shape(d)
    fix = (f"the shapes follow widths = {list(o['widths'])}, the data's {n_in} inputs and {n_cls} classes"
           + (f" and pieces = {o['pieces']}" if o["activation"] == "maxout" else ""))
    try:
        arrays, init_rows = _init_file(o, mlp_shapes(o, n_in, n_cls), fix)
        rows = merge_rows(rows, init_rows)
    except ValueError as e:
        raise ValueError(f"problem.init_file: {e}") from None
    return arrays, rows


def _validate_mlp(o: dict) -> None:
    d = o["data"]
    if d["source"] == "file":
        if not d["file"]:
            raise ValueError("problem.data.file: missing; source = 'file' needs a .npz or .csv path")
        try:
            x, y = _labelled(d["file"])
        except ValueError as e:
            raise ValueError(f"problem.data.file = {d['file']!r}: {e}") from None
        if d["n"] > x.shape[-2]:
            raise ValueError(f"problem.data.n = {d['n']}: the file has only {x.shape[-2]} rows")
        if d["fresh"]:
            raise ValueError("problem.data.fresh = true: a file has no fresh batches; use batch = k for minibatches")
        if d["batch"] and not d["n"]:
            raise ValueError(f"problem.data.batch = {d['batch']}: minibatches of a file need data.n (rows used)")
    elif d["n"] < 1:
        raise ValueError(f"problem.data.n = {d['n']}: synthetic data need n >= 1")
    _mlp_files(o)


def _build_mlp(o: dict) -> Problem:
    d = o["data"]
    act = hidden(o)
    k = act.pieces
    widths = tuple(int(w) for w in o["widths"])
    n_in, n_cls = _mlp_data_shape(d)
    sizes = (n_in,) + widths + (n_cls,)
    L = len(widths)  # hidden layers; layer L is the output layer
    out_bias = o["out_bias"]
    xent = o["objective"] == "xent"
    arrays, _ = _mlp_files(o)
    file_data, rowed = None, False
    if d["source"] == "file":
        x, y = _mlp_data(d)
        rowed = x.ndim == 3
        hot = jax.nn.one_hot(jnp.asarray(y), n_cls, dtype=jnp.float32)
        if rowed:  # points first, then the K rows: the engine slices and minibatches axis 0
            file_data = (jnp.moveaxis(jnp.asarray(x), 0, 1), jnp.moveaxis(hot, 0, 1))
        else:
            file_data = (jnp.asarray(x), hot)

    has_b = [l < L or out_bias for l in range(L + 1)]
    like = o["bias_dist"] == "like_weights"
    n_draws = sum(sizes[l] * sizes[l + 1] + (sizes[l + 1] if like and has_b[l] else 0) for l in range(L + 1))
    n_extra = sum((k - 1) * sizes[l + 1] * (sizes[l] + (1 if like else 0)) for l in range(L))

    def init(key, v):
        u, at, p, dt = unit_draws(key, o["init_dist"], n_draws), 0, {}, run_dtype(v)
        e, et = (unit_draws(jax.random.fold_in(key, 1), o["init_dist"], n_extra) if k > 1 else None), 0
        s = v["init_scale"]
        for l in range(L + 1):
            fan_in, fan_out = sizes[l], sizes[l + 1]
            f = init_factor(o["init_dist"], fan_in, fan_out)
            p[f"W{l}"] = s * f * u[at: at + fan_in * fan_out].reshape(fan_out, fan_in)
            at += fan_in * fan_out
            if has_b[l]:
                b = jnp.full((fan_out,), v["bias_init"], dt)
                if like:
                    b, at = b + s * f * u[at: at + fan_out], at + fan_out
                p[f"b{l}"] = b
            if l < L and k > 1:  # maxout: pieces 1..k-1 are piece_scale times another draw of the same
                n = (k - 1) * fan_out * fan_in
                ew = s * f * e[et: et + n].reshape(fan_out, k - 1, fan_in)
                et += n
                eb = jnp.full((fan_out, k - 1), v["bias_init"], dt)
                if like:
                    eb, et = eb + s * f * e[et: et + (k - 1) * fan_out].reshape(fan_out, k - 1), et + (k - 1) * fan_out
                p[f"W{l}"] = with_pieces(p[f"W{l}"], ew, v["piece_scale"])
                p[f"b{l}"] = with_pieces(p[f"b{l}"], eb, v["piece_scale"])
            if l < L and act.prelu:
                p[f"alpha{l}"] = jnp.full((fan_out,), _alpha(v, "prelu"), dt)
        return put_file(p, arrays, v, tuple(f"W{l}" for l in range(L + 1)))

    def forward(p, x, v):
        """One point x (d,) -> (hidden pre-activations [(width,) or (width, k)], logits (classes,))."""
        alpha = _alpha(v, act.name)
        zs, h = [], x
        for l in range(L):
            z = p[f"W{l}"] @ h + p[f"b{l}"]
            zs.append(z)
            h = act.apply(z, p[f"alpha{l}"] if act.prelu else alpha)
        logits = p[f"W{L}"] @ h
        return zs, (logits + p[f"b{L}"] if out_bias else logits)

    def own(batch, v, axis=1):
        """This trajectory's data: row init_row of data with rows (axis 1 of a batch, axis 0 of a point)."""
        if not rowed:
            return batch
        row = row_of(v)
        return tuple(pick(a, row, axis) for a in batch)

    def point_loss(p, point, v):
        x, y = own(point, v, 0)
        logits = forward(p, x, v)[1]
        if xent:
            return v["loss_scale"] * -jnp.sum(y * jax.nn.log_softmax(logits))
        return v["loss_scale"] * jnp.mean((jax.nn.softmax(logits) - y) ** 2)

    def loss(p, batch, v):
        return jnp.mean(jax.vmap(point_loss, (None, 0, None))(p, batch, v))

    def residuals(p, batch, v):
        x, y = own(batch, v)
        probs = jax.nn.softmax(jax.vmap(lambda xi: forward(p, xi, v)[1])(x))
        return (jnp.sqrt(2.0 * v["loss_scale"] / y.size) * (probs - y)).reshape(-1)

    def sample(key, n):
        if file_data is not None:
            return file_data
        x, c = synthetic(d["source"], key, n, d["classes"], d["dim"], d["noise"])
        return x, jax.nn.one_hot(c, n_cls, dtype=jnp.float32)

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    flat_left = act.flat_left

    def dead_units(p, x, v):
        """(units,) bool over every hidden layer: never active (z <= 0) on any point of x."""
        zs = jax.vmap(lambda xi: forward(p, xi, v)[0])(x)
        return jnp.concatenate([jnp.all(z <= 0, axis=0) for z in zs])

    def metrics(p, batch, v):
        x, y = own(batch, v)
        logits = jax.vmap(lambda xi: forward(p, xi, v)[1])(x)
        acc = jnp.mean((jnp.argmax(logits, axis=1) == jnp.argmax(y, axis=1)).astype(x.dtype))
        dead = jnp.mean(dead_units(p, x, v).astype(x.dtype)) if flat_left and L else jnp.zeros((), x.dtype)
        return {"accuracy": acc, "dead_fraction": dead}

    def inactive(p, batch, v):
        if not flat_left or not L:
            return jnp.asarray(False)
        zs = jax.vmap(lambda xi: forward(p, xi, v)[0])(own(batch, v)[0])
        return jnp.any(jnp.stack([jnp.all(z <= 0) for z in zs]))

    def update_scale(v):
        names = ([f"W{l}" for l in range(L + 1)] + [f"b{l}" for l in range(L + int(out_bias))]
                 + ([f"alpha{l}" for l in range(L)] if act.prelu else []))
        return {n: v["lr0"] if n in ("W0", "b0", "alpha0") else v["lr1"] for n in names}

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
        **_loss_scale_option("the objective's mean over points", "e.g. 0.5 for 1/2 mean over points and classes "
                             "of the squared error"),
        **_init_file_option("W0 (width, d) [maxout (width, pieces, d)], b0 (width,) [(width, pieces)], alpha0 (width,) "
                            "for prelu, W1, b1, ..., the output layer W<L> (classes, width), b<L>"),
        **_layer_lr_options("the first layer (W0, b0, alpha0)", "every later layer"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weight distribution (init_dist)", lo=0.0, traced=True),
        "bias_init": Opt(0.0, "float", "initial bias constant (0.1 is the seed-004 advice)", traced=True),
        **_layer_init_options(),
    },
    "MLP classifier (seed 001): softmax output, MSE or cross-entropy, on synthetic or file data; metrics accuracy "
    "and dead_fraction. converged: loss <= target; dead: exactly zero gradient with a whole hidden layer inactive on "
    "every point (with an output bias and unbalanced classes the bias still learns the class frequencies, so such runs "
    "end stuck with dead_fraction = 1). prelu hidden layers train one slope per unit (alpha<l>), maxout units take "
    "the max of `pieces` pieces",
    has_data=True,
    data_options=MLP_DATA,
    validate=_validate_mlp,
    least_squares=lambda o: o["objective"] == "mse",
    check_values=_row_checker(lambda o: _mlp_files(o)[1]),
)


# --------------------------------------------------------------------------- two_layer_1d (seed 003)
DEFAULT_1D_X = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)
DEFAULT_1D_Y = tuple(x * x for x in DEFAULT_1D_X)


def points_1d(o: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted 1-D data (x, y, p) in float64 (a file's values as stored), p normalised to sum 1 (reads the file
    if given).

    Each is (n,), or (K, n) when a .npz array is 2-D: one dataset per trajectory row (init_row); a 1-D
    array is then shared by the K rows, and each row's p is normalised on its own. A column (n, 1) is one
    dataset of n points, like (n,) (a dataset of one point per row is not given that way).
    """
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
                raise ValueError(f"file {o['file']!r}: the .npz needs arrays 'x' and 'y' (and optionally 'p'), each "
                                 "(n,) or (K, n)")
            given = {k: np.asarray(t[k]) for k in ("x", "y", "p") if k in t}
            stored = ", ".join(f"{k} {_shape(a.shape)}" for k, a in given.items())
            for k, a in given.items():
                if a.dtype.kind not in "fiu":
                    raise ValueError(f"file {o['file']!r}: array {k!r} must be numeric, got dtype {a.dtype}")
                if a.ndim not in (1, 2) or a.size == 0:
                    raise ValueError(f"file {o['file']!r}: array {k!r} has shape {_shape(a.shape)} as stored; x, y and "
                                     "p must each be (n,) or (n, 1) (one dataset) or (K, n) (one row per init_row)")
            # columns (n, 1) are one dataset of n points
            cols = {k: a[:, 0] if a.ndim == 2 and a.shape[1] == 1 and a.shape[0] > 1 else a for k, a in given.items()}
            x, y = (np.asarray(cols[k], np.float64) for k in ("x", "y"))
            p = np.asarray(cols["p"], np.float64) if "p" in cols else np.ones(x.shape[-1:], np.float64)
            ks = {a.shape[0] for a in (x, y, p) if a.ndim == 2}
            if len(ks) > 1:
                raise ValueError(f"file {o['file']!r}: the 2-D arrays among {stored} (as stored) have different "
                                 "numbers of rows K; give them the same K")
            if len({a.shape[-1] for a in (x, y, p)}) > 1:
                raise ValueError(f"file {o['file']!r}: arrays {stored} as stored do not fit together; expected each "
                                 "of x, y, p as (n,) or (n, 1) with the same n, or (K, n) with the same K and n (an "
                                 "array of shape (n,) is shared by the K rows)")
            if ks:
                k = ks.pop()
                x, y, p = (np.broadcast_to(a, (k, a.shape[-1])) for a in (x, y, p))
    else:
        x = np.asarray(o["x"] if o["x"] is not None else DEFAULT_1D_X, np.float64).ravel()
        y = np.asarray(o["y"] if o["y"] is not None else (DEFAULT_1D_Y if o["x"] is None else ()), np.float64).ravel()
        p = np.asarray(o["p"] if o["p"] is not None else np.ones_like(x), np.float64).ravel()
    if x.size == 0 or y.shape != x.shape or p.shape != x.shape:
        raise ValueError(f"x, y and p must have the same number of points (got {x.shape[-1]}, {y.shape[-1]}, "
                         f"{p.shape[-1]})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        raise ValueError("x, y and p must be finite")
    if np.any(p < 0) or np.any(p.sum(axis=-1) <= 0):
        raise ValueError("the weights p must be >= 0 and not all 0" + (" in any row" if p.ndim == 2 else ""))
    return x, y, p / p.sum(axis=-1, keepdims=True)


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


def linear_fit_loss_jax(x: jax.Array, y: jax.Array, p: jax.Array) -> jax.Array:
    """``linear_fit_loss`` of ONE trajectory's data in JAX (its own weights p).

    Args:
      x, y, p: (n,) float, p >= 0.
    Returns:
      () float in x's dtype. The sqrt(p)-weighted 3-column least-squares problem is solved by SVD
      (``jnp.linalg.lstsq``, minimum norm), so a rank-deficient fit - no weight on one side of 0, one
      point on a side - still gives the exact minimum loss.
    """
    feats = jnp.stack([jnp.ones_like(x), jnp.maximum(x, 0.0), jnp.minimum(x, 0.0)], axis=1)
    sw = jnp.sqrt(p)
    coef = jnp.linalg.lstsq(feats * sw[:, None], y * sw)[0]
    r = feats @ coef - y
    return 0.5 * jnp.sum(p * r * r)


def one_d_shapes(o: dict) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a two_layer_1d net: a, b (width,) [maxout (width, pieces)], w (width,), c (),
    alpha (width,) for prelu."""
    h = o["width"]
    act = hidden(o)
    ab = unit_shapes(act, h, 1)[1]
    return {"a": ab, "b": ab, "w": (h,), "c": (), **({"alpha": (h,)} if act.prelu else {})}


def _one_d_files(o: dict) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict, Rows]:
    """(data (x, y, p), init file arrays, rows) of a two_layer_1d; ValueError prefixed with the key."""
    try:
        x, y, p = points_1d(o)
    except ValueError as e:
        raise ValueError(f"{'problem.file' if o['file'] else 'problem.x / y / p'}: {e}") from None
    rows = Rows(x.shape[0], f"the data of {o['file']!r} have K = {x.shape[0]} rows (x, y, p "
                            f"{_shape(x.shape)})") if x.ndim == 2 else Rows(0, "")
    try:
        rows = merge_rows(rows, one_d_lr(o)[1])
    except ValueError as e:
        raise ValueError(f"problem.file: {e}") from None
    fix = f"the shapes follow width = {o['width']}" + (f" and pieces = {o['pieces']}"
                                                        if o["activation"] == "maxout" else "")
    try:
        arrays, init_rows = _init_file(o, one_d_shapes(o), fix)
        rows = merge_rows(rows, init_rows)
    except ValueError as e:
        raise ValueError(f"problem.init_file: {e}") from None
    return (x, y, p), arrays, rows


def one_d_lr(o: dict) -> tuple[np.ndarray | None, Rows]:
    """The optional array ``lr`` of a two_layer_1d's data file: () or (K,) float64 learning-rate multipliers (one per
    init_row), or None. Raises ValueError naming the file and the array's shape as stored."""
    if not o["file"] or Path(o["file"]).suffix != ".npz":
        return None, Rows(0, "")
    t = load_table(o["file"])
    if "lr" not in t:
        return None, Rows(0, "")
    a = np.asarray(t["lr"])
    if a.dtype.kind not in "fiu" or a.ndim > 1 or a.size == 0:
        raise ValueError(f"file {o['file']!r}: array 'lr' has shape {_shape(a.shape)} and dtype {a.dtype} as stored; "
                         "expected a number () or one per init_row (K,)")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"file {o['file']!r}: array 'lr' must be finite and > 0 (a learning-rate multiplier)")
    return a, (Rows(a.shape[0], f"array 'lr' of {o['file']!r} has shape {_shape(a.shape)} (K = {a.shape[0]} rows)")
               if a.ndim == 1 else Rows(0, ""))


def _validate_1d(o: dict) -> None:
    _one_d_files(o)


def _build_two_layer_1d(o: dict) -> Problem:
    (x_np, y_np, p_np), arrays, _ = _one_d_files(o)
    lr_np = one_d_lr(o)[0]
    rowed = x_np.ndim == 2  # one dataset per init_row
    n_pts = x_np.shape[-1]
    h = o["width"]
    act = hidden(o)
    k = act.pieces
    ntk = o["param"] == "ntk"
    out_s = math.sqrt(2.0 / h) if ntk else 1.0
    draw = o["p_draw"] == "multinomial"
    m = o["p_samples"] or n_pts
    own_weights = draw or rowed  # every weight-dependent metric is the trajectory's own
    # known data: the exact fit (float64, of the data as a run of each dtype holds them) and the nearest weighted
    # point to 0, per row when the data have rows
    rows_np = list(zip(x_np, y_np, p_np)) if rowed else [(x_np, y_np, p_np)]
    lin_loss = {name: np.array([linear_fit_loss(*(a.astype(name) for a in r)) for r in rows_np])
                for name in ("float32", "float64")}
    margins = np.array([np.min(np.abs(xr[pr > 0])) for xr, _, pr in rows_np])
    data = tuple(jnp.asarray(a.T if rowed else a) for a in (x_np, y_np, p_np))  # points first: (n,) or (n, K)
    probs32 = jnp.asarray(p_np, jnp.float32)  # the draw's probabilities: the same counts in every dtype
    if draw:
        data = data + (jnp.arange(n_pts, dtype=jnp.float32),)  # point indices: a point's own drawn weight
    pairs = np.triu_indices(k, 1)

    fa, fw = (1.0, 1.0) if ntk else (math.sqrt(2.0), math.sqrt(2.0 / h))  # He: N(0, 2/fan_in) for both layers

    def init(key, v):
        g = jax.random.normal(key, (3 * h,), jnp.float32)
        s = v["init_scale"]
        a, b = s * fa * g[:h], v["bias_init"] + v["bias_std"] * g[h: 2 * h]
        if k > 1:  # maxout: pieces 1..k-1 are piece_scale times another draw of the same
            e = jax.random.normal(jax.random.fold_in(key, 1), (2, h, k - 1), jnp.float32)
            a = with_pieces(a, s * fa * e[0], v["piece_scale"])
            b = with_pieces(b, v["bias_init"] + v["bias_std"] * e[1], v["piece_scale"])
        p = {"a": a, "b": b, "w": s * fw * g[2 * h:], "c": jnp.zeros((), jnp.float32)}
        if act.prelu:
            p["alpha"] = jnp.full((h,), _alpha(v, "prelu"), run_dtype(v))
        p = put_file(p, arrays, v, ("a", "w"))
        if draw:  # counts of m draws with the data's probabilities, from the trajectory's own key
            probs = pick(probs32, row_of(v), 0) if rowed else probs32
            idx = jax.random.choice(jax.random.fold_in(key, 2), n_pts, (m,), p=probs)
            p["data_weights"] = jnp.zeros((n_pts,), jnp.int32).at[idx].add(1).astype(run_dtype(v)) / m
        return p

    def own(p, batch, v):
        """This trajectory's data (x, y, weights), each (n,): its row of data with rows; its drawn weights."""
        x, y, w = batch[:3]
        if rowed:
            row = row_of(v)
            x, y, w = (pick(a, row, 1) for a in (x, y, w))
        if draw:
            w = jax.lax.stop_gradient(p["data_weights"])
        return x, y, w

    def own_point(p, point, v):
        x, y, w = point[:3]
        if rowed:
            row = row_of(v)
            x, y, w = (pick(a, row, 0) for a in (x, y, w))
        if draw:
            w = jax.lax.stop_gradient(p["data_weights"])[point[3].astype(jnp.int32)]
        return x, y, w

    def f(p, x, v):
        """Network output at one point x ()."""
        z = p["a"] * x + p["b"]  # (width,) or (width, k)
        return p["c"] + out_s * jnp.sum(p["w"] * act.apply(z, p["alpha"] if act.prelu else _alpha(v, act.name)))

    def point_loss(p, point, v):  # the engine averages over the n points: n * 1/2 p_j r_j^2
        x, y, w = own_point(p, point, v)
        return v["loss_scale"] * (0.5 * n_pts * w * (f(p, x, v) - y) ** 2)

    def residuals(p, batch, v):
        x, y, w = own(p, batch, v)
        return jnp.sqrt(v["loss_scale"] * w) * (jax.vmap(f, (None, 0, None))(p, x, v) - y)

    def loss(p, batch, v):  # loss_scale * 1/2 sum_j p_j r_j^2: the p_j multiply the squares (no sqrt(p_j)^2)
        x, y, w = own(p, batch, v)
        return v["loss_scale"] * (0.5 * jnp.sum(w * (jax.vmap(f, (None, 0, None))(p, x, v) - y) ** 2))

    def sample(key, n):  # fixed data: the key and n are ignored
        return data

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    def known(values, v, dt):
        """A float64 host value of the data (one per row when the data have rows) as the trajectory's own."""
        return pick(jnp.asarray(values, dt), row_of(v), 0) if rowed else jnp.asarray(values[0], dt)

    def margin(x, w, v):
        """() min |x_j| over the trajectory's points with weight > 0."""
        if draw:
            return jnp.min(jnp.where(w > 0, jnp.abs(x), jnp.inf))
        return known(margins, v, x.dtype)

    def kinks(p):
        """(num, den, real), each (width, q): kink positions |num| / |den| of every unit (q = 1: -b/a; maxout: the
        k(k-1)/2 crossings of two pieces) and whether each is a kink of the network (maxout: the two pieces are
        not parallel and meet on the unit's upper envelope)."""
        a, b = p["a"], p["b"]
        if k == 1:
            return jnp.abs(b)[:, None], jnp.abs(a)[:, None], jnp.ones((h, 1), bool)
        j, l = pairs
        da, db = a[:, j] - a[:, l], b[:, l] - b[:, j]
        real = da != 0
        if k > 2:
            xs = db / jnp.where(real, da, 1.0)
            env = jnp.max(a[:, None, :] * xs[:, :, None] + b[:, None, :], axis=-1)
            real = real & (a[:, j] * xs + b[:, j] >= env - 1e-5 * (1.0 + jnp.abs(env)))
        return jnp.abs(db), jnp.abs(da), real

    def track(p, batch, v):
        x, _, w = own(p, batch, v)
        num, den, real = kinks(p)
        reached = real & (num >= margin(x, w, v) * den) & (num > 0)
        return {"kink_reached_data": jnp.any(reached)}

    flat_left = act.flat_left

    def dead(p, batch, v):
        x, _, w = own(p, batch, v)
        z = p["a"][None, :] * x[:, None] + p["b"][None, :]  # (points, units)
        return jnp.all((z <= 0) | (w[:, None] == 0), axis=0)

    def metrics(p, batch, v):
        x, y, w = own(p, batch, v)
        dt = x.dtype
        final = loss(p, batch, v)
        lin = v["loss_scale"] * (linear_fit_loss_jax(x, y, w) if draw else known(lin_loss[np.dtype(dt).name], v, dt))
        num, den, real = kinks(p)
        pos = jnp.where(real & (den != 0), num / jnp.where(den != 0, den, 1.0), 0.0)
        out = {
            "linear_fit_loss": lin,
            "beat_linear": (final < lin * (1 - 1e-3)).astype(jnp.int8),
            "max_abs_kink": jnp.max(pos),
            "max_abs_bias": jnp.max(jnp.abs(p["b"])),
            "dead_fraction": jnp.mean(dead(p, batch, v).astype(dt)) if flat_left else jnp.zeros((), dt),
        }
        if own_weights:
            out["data_margin"] = margin(x, w, v)
            out["data_support"] = jnp.sum((w > 0).astype(dt))
        return out

    def inactive(p, batch, v):
        return jnp.all(dead(p, batch, v)) if flat_left else jnp.asarray(False)

    def update_scale(v):
        first, out = v["lr0"], v["lr1"]
        if lr_np is not None:  # the file's per-row learning rate multiplies both layers'
            r = jnp.asarray(lr_np, run_dtype(v))
            r = pick(r, row_of(v), 0) if r.ndim else r
            first, out = first * r, out * r
        return {"a": first, "b": first, "alpha": first, "w": out, "c": out}

    per = ("; for this trajectory's own drawn weights, in the run's dtype" if draw else
           "; for this trajectory's row of the data" if rowed else "")
    attrs = {
        "linear_fit_loss": {"long_name": "loss of the best fit c + s1 max(x, 0) + s2 min(x, 0) (every kink at 0; "
                                         f"exact{per})", "units": "1"},
        "beat_linear": {"long_name": "final loss below linear_fit_loss by more than 0.1% (1) or not (0)",
                        "units": "1"},
        "max_abs_kink": {"long_name": "largest |kink position| at the end: |b_i/a_i| over units with a_i != 0 "
                                      "(maxout: crossings of two pieces on the unit's max)", "units": "1"},
        "max_abs_bias": {"long_name": "largest |b_i| at the end (how far the biases moved from 0)", "units": "1"},
        "dead_fraction": {"long_name": "fraction of hidden units inactive on every data point with weight > 0 at "
                                       "the end (relu, relu6; 0 for other activations)", "units": "1"},
        "kink_reached_data": {"long_name": "some kink reached the data (|kink| >= min |x_j| over points with weight "
                                           "> 0) at some step", "units": "1"},
        "kink_reached_data_step": {"long_name": "first step at which a kink reached the data (-1: never)",
                                   "units": "steps"},
    }
    if own_weights:
        attrs["data_margin"] = {"long_name": "min |x_j| over this trajectory's points with weight > 0 (the distance "
                                             "a kink must travel to reach the data)", "units": "1"}
        attrs["data_support"] = {"long_name": "number of this trajectory's data points with weight > 0", "units": "1"}
    return Problem(("c",), init, loss, point_loss, sample, target, metrics, attrs, inactive, residuals,
                   update_scale, track, ("kink_reached_data",), 0, ("data_weights",) if draw else ())


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
        "file": Opt("", "str", "a .npz with arrays x, y[, p] or a .csv with columns x, y[, p] (replaces x, y, p); in "
                    "a .npz each may be (n,), (n, 1) or (K, n): a 2-D array gives one dataset per init_row, each "
                    "row's p normalised on its own; a .npz may also hold lr, () or (K,): a learning-rate multiplier "
                    "of every parameter per init_row (e.g. each network's own 1/lambda_max, as in Holzmueller & "
                    "Steinwart), times train.lr and lr0 / lr1; values are used at the file's float64 precision"),
        "p_draw": Opt("fixed", "choice", "fixed: every trajectory trains on the weights p; multinomial: each "
                      "trajectory draws its own weights counts/m from m = p_samples draws over the points with "
                      "probabilities p, from its own key (new weights for every seed value and grid point, "
                      "reproducible bit for bit; float32). They are kept with the parameters, never trained, and "
                      "every weight-dependent metric (linear_fit_loss, beat_linear, kink_reached_data, dead_fraction) "
                      "uses them; data_margin and data_support are added. Not stored: the weights themselves",
                      choices=("fixed", "multinomial")),
        "p_samples": Opt(0, "int", "p_draw = multinomial: the number of draws m (0: one per data point; static)",
                         lo=0),
        **_init_file_option("a, b (width,) [maxout (width, pieces)], w (width,), c (), alpha (width,) for prelu; "
                            "weights: a, w"),
        "target": Opt(0.0, "float", "converged = loss <= target (+ tolerance)", lo=0.0, traced=True),
        **_loss_scale_option("1/2 sum_j p_j (f(x_j) - y_j)^2", "1 is the loss of Holzmueller & Steinwart (2020, "
                             "'Training two-layer ReLU networks with gradient descent is inconsistent'), 2 the "
                             "weighted sum of squares"),
        **_layer_lr_options("the first layer (a, b, alpha)", "the output layer (w, c)"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weights (see param)", lo=0.0, traced=True),
        "bias_init": Opt(0.0, "float", "initial hidden biases: bias_init + bias_std * N(0, 1)", traced=True),
        "bias_std": Opt(0.0, "float", "standard deviation of the initial hidden biases", lo=0.0, traced=True),
        **_layer_init_options(),
    },
    "two-layer 1-D network f(x) = c + s sum_i w_i act(a_i x + b_i) (seed 003), loss loss_scale * 1/2 sum_j p_j "
    "(f(x_j) - y_j)^2 "
    "on weighted points (fixed, from a file per init_row, or drawn per trajectory: p_draw); compares with the best "
    "fit linear on each side of 0 (linear_fit_loss, beat_linear) and records whether a kink ever reached the data",
    validate=_validate_1d,
    least_squares=lambda o: True,
    check_values=_row_checker(lambda o: _one_d_files(o)[2]),
)


# --------------------------------------------------------------------------- two_layer_lr (trainability)
class LrData(NamedTuple):
    """What a two_layer_lr's options and files resolve to."""

    x: np.ndarray  # (n, d) or (K, n, d): a file's float64 values, or the random data (float32 values)
    y: np.ndarray  # (n,) or (K, n), likewise
    width: int
    arrays: dict  # initial parameters from files: name -> (float64 array, has rows)
    rows: Rows


def lr_shapes(o: dict, width: int, d: int) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape: W0 (width, d) [maxout (width, pieces, d)], W1 (width,), alpha (width,) for prelu."""
    act = hidden(o)
    return {"W0": unit_shapes(act, width, d)[0], "W1": (width,), **({"alpha": (width,)} if act.prelu else {})}


def regression_arrays(path: str, t: dict) -> tuple[np.ndarray, np.ndarray, Rows]:
    """x (n, d) or (K, n, d) and y (n,) or (K, n) of a regression file, float64 as stored, and their rows.

    x may be (n,) (d = 1); y may be a column, (n, 1) with x (n, d) [(K, n, 1) with x (K, n, d)]: one target per
    point. An array without the K dimension is shared by the other's K rows. Raises ValueError naming the file and
    the arrays' shapes as stored.
    """
    xs, ys = np.shape(t["x"]), np.shape(t["y"])
    for name in ("x", "y"):
        if np.asarray(t[name]).dtype.kind not in "fiu":
            raise ValueError(f"file {path!r}: array {name!r} must be numeric, got dtype {np.asarray(t[name]).dtype}")
    x, y = np.asarray(t["x"], np.float64), np.asarray(t["y"], np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if y.ndim == x.ndim and y.ndim >= 2 and y.shape[-1] == 1 and y.shape[:-1] == x.shape[:-1]:
        y = y[..., 0]  # a column of targets
    bad = x.ndim not in (2, 3) or y.ndim not in (1, 2) or y.shape[-1] != x.shape[-2]
    if not bad and (x.ndim == 3 or y.ndim == 2):
        k = x.shape[0] if x.ndim == 3 else y.shape[0]
        bad = x.ndim == 3 and y.ndim == 2 and x.shape[0] != y.shape[0]
        x = np.broadcast_to(x, (k,) + x.shape) if x.ndim == 2 else x
        y = np.broadcast_to(y, (k,) + y.shape) if y.ndim == 1 else y
        rows = Rows(k, f"the data of {path!r} have K = {k} rows (x {_shape(xs)}, y {_shape(ys)} as stored)")
    else:
        rows = Rows(0, "")
    if bad:
        raise ValueError(f"file {path!r}: array 'x' has shape {_shape(xs)} and 'y' {_shape(ys)} as stored; expected "
                         "x (n, d) [or (n,) for d = 1] with y (n,) or (n, 1): one dataset of n points, or x (K, n, d) "
                         "with y (K, n) [or (K, n, 1)]: one dataset per init_row (either may leave out K to be shared "
                         "by every row); reshape the arrays")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"file {path!r}: arrays must be finite")
    return x, y, rows


def data_lr(o: dict) -> LrData:
    """The data (the file's, or fixed random data from data_seed), the width and the initial weights given by files
    (``file``'s W0, W1 and ``init_file``). Raises ValueError prefixed with the key."""
    arrays, rows = {}, Rows(0, "")
    if o["file"]:
        path = o["file"]
        try:
            t = load_table(path)
            if "x" not in t or "y" not in t:
                raise ValueError(f"file {path!r}: the .npz needs arrays 'x' (n, d) and 'y' (n,) (or (K, n, d) and "
                                 "(K, n): one dataset per init_row; optionally initial W0 (width, d), W1 (width,))")
            x, y, rows = regression_arrays(path, t)
            width, nd = o["width"], 3 if o["activation"] == "maxout" else 2  # the file's weights set the width
            if "W0" in t and np.ndim(t["W0"]) >= nd:
                width = int(np.shape(t["W0"])[-nd])
            elif "W1" in t and np.ndim(t["W1"]) >= 1:
                width = int(np.shape(t["W1"])[-1])
            fix = (f"W0 must have d = {x.shape[-1]} inputs (the data's), as many rows as W1 has entries"
                   + (f" and pieces = {o['pieces']} pieces" if o["activation"] == "maxout" else ""))
            arrays, w_rows = init_arrays(path, t, {k: s for k, s in lr_shapes(o, width, x.shape[-1]).items()
                                                   if k in ("W0", "W1")}, fix, strict=False)
            rows = merge_rows(rows, w_rows)
        except ValueError as e:
            raise ValueError(f"problem.file: {e}") from None
    else:
        rng = np.random.default_rng(o["data_seed"])
        x = rng.standard_normal((o["n_data"], o["d"])).astype(np.float32)
        y = rng.standard_normal(o["n_data"]).astype(np.float32)
        width = o["width"]
    fix = (f"the shapes follow width = {width}, d = {x.shape[-1]}" + (" (the data file's)" if o["file"] else "")
           + (f" and pieces = {o['pieces']}" if o["activation"] == "maxout" else ""))
    try:
        more, init_rows = _init_file(o, lr_shapes(o, width, x.shape[-1]), fix)
        twice = sorted(set(more) & set(arrays))
        if twice:
            raise ValueError(f"array {twice[0]!r} is also in problem.file {o['file']!r}; give each parameter once")
        rows = merge_rows(rows, init_rows)
    except ValueError as e:
        raise ValueError(f"problem.init_file: {e}") from None
    return LrData(x, y, width, {**arrays, **more}, rows)


def _validate_lr(o: dict) -> None:
    data_lr(o)


def _build_two_layer_lr(o: dict) -> Problem:
    x_np, y_np, width, arrays, _ = data_lr(o)
    rowed = x_np.ndim == 3  # one dataset per init_row
    d = x_np.shape[-1]
    act = hidden(o)
    k = act.pieces
    param = o["param"]
    in_s = 1.0 if param == "standard" else 1.0 / math.sqrt(d)
    out_s = {"standard": 1.0, "meanfield": 1.0 / width, "ntk": 1.0 / math.sqrt(width)}[param]
    # points first: (n, d) or (n, K, d), and (n,) or (n, K)
    data = (jnp.asarray(np.moveaxis(x_np, 0, 1) if rowed else x_np), jnp.asarray(y_np.T if rowed else y_np))

    std0, std1 = (1.0 / math.sqrt(d), 1.0 / math.sqrt(width)) if param == "standard" else (1.0, 1.0)

    def init(key, v):
        s = v["init_scale"]
        g = jax.random.normal(key, (width * d + width,), jnp.float32)
        w0 = std0 * g[: width * d].reshape(width, d)
        if k > 1:  # maxout: pieces 1..k-1 are piece_scale times another draw of the same
            w0 = with_pieces(w0, std0 * jax.random.normal(jax.random.fold_in(key, 1), (width, k - 1, d), jnp.float32),
                             v["piece_scale"])
        p = {"W0": s * w0, "W1": s * std1 * g[width * d:]}
        if act.prelu:
            p["alpha"] = jnp.full((width,), _alpha(v, "prelu"), run_dtype(v))
        return put_file(p, arrays, v, ("W0", "W1"))

    def own(batch, v, axis=1):
        """This trajectory's data: row init_row of data with rows (axis 1 of a batch, axis 0 of a point)."""
        if not rowed:
            return batch
        row = row_of(v)
        return tuple(pick(a, row, axis) for a in batch)

    inside = o["gain_placement"] == "inside"

    def f(p, x, v):
        """Output at one point x (d,)."""
        z = in_s * (p["W0"] @ x)  # (width,) or (width, k)
        alpha = p["alpha"] if act.prelu else _alpha(v, act.name)
        h = act.apply(v["gain"] * z, alpha) if inside else v["gain"] * act.apply(z, alpha)
        return out_s * jnp.dot(p["W1"], h)

    def point_loss(p, point, v):
        x, y = own(point, v, 0)
        return v["loss_scale"] * (0.5 * (f(p, x, v) - y) ** 2)

    def residuals(p, batch, v):
        x, y = own(batch, v)
        return jnp.sqrt(v["loss_scale"] / x.shape[0]) * (jax.vmap(f, (None, 0, None))(p, x, v) - y)

    def loss(p, batch, v):  # loss_scale * 1/2 mean_j (f(x_j) - y_j)^2
        x, y = own(batch, v)
        return v["loss_scale"] * (0.5 * jnp.mean((jax.vmap(f, (None, 0, None))(p, x, v) - y) ** 2))

    def sample(key, n):  # fixed data: the key and n are ignored
        return data

    def target(batch, v):
        return jnp.asarray(v["target"], batch[0].dtype)

    def metrics(p, batch, v):
        return {}

    def update_scale(v):
        return {"W0": v["lr0"], "alpha": v["lr0"], "W1": v["lr1"]}

    k_tail, pre = o["trainable_k"], o["tail_window"] == "pre"
    which = (f"the losses before each of the last {k_tail} updates" if pre else
             f"the last {k_tail} losses (the last after the final update)")
    attrs = {
        "trainable": {"long_name": f"mean of {which} / initial loss < 1 (1) or not (0); non-finite losses count as "
                                   "infinite, a run that settled early keeps its last loss (diverged and nan: "
                                   "infinite)", "units": "1"},
        "tail_loss_ratio": {"long_name": f"mean of {which} / initial loss", "units": "1"},
    }
    return Problem((), init, loss, point_loss, sample, target, metrics, attrs, None, residuals, update_scale,
                   None, (), k_tail, tail_pre=pre)


TWO_LAYER_LR = ProblemDef(
    _build_two_layer_lr,
    {
        "d": Opt(16, "int", "input dimension (static)", lo=1),
        "width": Opt(16, "int", "hidden units (static)", lo=1),
        "n_data": Opt(16, "int", "fixed random data points: x ~ N(0, I_d), y ~ N(0, 1) (static)", lo=1),
        "data_seed": Opt(0, "int", "seed of the fixed random data (numpy default_rng)", lo=0),
        "file": Opt("", "str", "a .npz with x (n, d), y (n,) and optionally initial W0 (width, d) [maxout (width, "
                    "pieces, d)], W1 (width,) (times init_scale; they set the width): replaces the random data and "
                    "weights; any of them may have a leading K dimension (row init_row of each trajectory)"),
        **_init_file_option("W0 (width, d) [maxout (width, pieces, d)], W1 (width,), alpha (width,) for prelu; "
                            "weights: W0, W1"),
        **_activation_options("tanh"),
        "param": Opt("standard", "choice", "standard: f = W1 gain*act(W0 x), W0 ~ N(0, s^2/d), W1 ~ N(0, s^2/width); "
                     "meanfield: f = (1/width) W1 gain*act(W0 x / sqrt(d)), weights N(0, s^2); ntk: as meanfield "
                     "with 1/sqrt(width)", choices=("standard", "meanfield", "ntk")),
        "gain": Opt(1.0, "float", "activation gain g (e.g. sqrt(2) for relu); where it goes: gain_placement",
                    traced=True),
        "gain_placement": Opt("outside", "choice", "outside: the hidden units are g*act(z); inside: act(g*z), e.g. "
                              "tanh(sqrt(2) z) of Sohl-Dickstein (2024, 'The boundary of neural network trainability "
                              "is fractal'; for relu both are the same function)", choices=("outside", "inside")),
        "trainable_k": Opt(20, "int", "the trainable criterion averages k losses (tail_window says which)", lo=1),
        "tail_window": Opt("post", "choice", "the k losses of the trainable criterion: post: those at steps "
                           "steps-k+1 .. steps (the last one after the final update); pre: those at steps-k .. "
                           "steps-1, each before an update, as Sohl-Dickstein (2024) records them (needs k <= steps)",
                           choices=("post", "pre")),
        "target": Opt(0.0, "float", "converged = loss <= target (+ tolerance)", lo=0.0, traced=True),
        **_loss_scale_option("1/2 mean_j (f(x_j) - y_j)^2", "2 gives mean (f - y)^2, the loss of Sohl-Dickstein "
                             "(2024)"),
        **_layer_lr_options("W0 (and prelu's alpha)", "W1"),
    },
    {
        "init_scale": Opt(1.0, "float", "scale s of the initial weights (see param)", lo=0.0, traced=True),
        **_layer_init_options(),
    },
    "no-bias two-layer network f(x) = W1 act(W0 x), loss loss_scale * 1/2 mean (f - y)^2 on fixed random or file data, learning rate "
    "train.lr * lr0 for W0 and train.lr * lr1 for W1 (the fractal trainability boundary); adds trainable and "
    "tail_loss_ratio",
    validate=_validate_lr,
    least_squares=lambda o: True,
    check_values=_row_checker(lambda o: data_lr(o).rows),
)

PROBLEMS.update({"mlp": MLP, "two_layer_1d": TWO_LAYER_1D, "two_layer_lr": TWO_LAYER_LR})
