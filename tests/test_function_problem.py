"""problem = "function" (any user loss) and the registered toy "uv": constants, start-value names, the module
search next to the spec, and the known GD facts of L(u, v) = (u v - y)^2 / 2."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sweep
from sweep import engine
from sweep.config import dumps_toml
from sweep.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[1]


def module(folder: Path, text: str, name: str = "mylosses") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text("import jax.numpy as jnp\n\n" + textwrap.dedent(text))
    return folder


SHIFTED = """
def shifted(x, c=0.0, *, k=1.0):
    return 0.5 * k * (x - c) ** 2
"""


def gd_quadratic(x0, c, k, lr, steps):
    """GD on 0.5 k (x - c)^2: x_t = c + (x0 - c) (1 - lr k)^t."""
    return c + (x0 - c) * (1.0 - lr * k) ** steps


# --------------------------------------------------------------------------- constants
def test_constants_reach_the_loss_and_are_traced(tmp_path):
    """A swept constant c (bare axis name) and a fixed keyword-only one k: final x follows the closed form of GD on
    0.5 k (x - c)^2; new values of c, k and the start never recompile."""
    folder = module(tmp_path / "losses", SHIFTED)
    steps, lr = 12, 0.05  # (1 - lr k)^12 >= 0.28: no run converges early, every run takes all the steps

    def spec(cs, k, x0):
        return {"problem": {"name": "function", "loss": "mylosses:shifted", "constants": {"c": 0.0, "k": k}},
                "train": {"steps": steps, "lr": lr}, "init": {"x": x0}, "axes": {"c": cs}}

    ds = sweep.run(sweep.parse_spec(spec([0.5, -1.0, 2.0], 1.0, 1.5), folder=folder), progress=False)
    assert ds.final_x.dims == ("constants.c",)
    np.testing.assert_array_equal(ds["constants.c"].values, [0.5, -1.0, 2.0])
    np.testing.assert_allclose(ds.final_x.values, gd_quadratic(1.5, np.array([0.5, -1.0, 2.0]), 1.0, lr, steps),
                               rtol=1e-5)
    n = engine.TRACE_COUNT["n"]
    ds = sweep.run(sweep.parse_spec(spec([0.25, 3.0, -2.0], 3.0, -0.5), folder=folder), progress=False)
    assert engine.TRACE_COUNT["n"] == n  # constants are per-trajectory values, like lr
    np.testing.assert_allclose(ds.final_x.values, gd_quadratic(-0.5, np.array([0.25, 3.0, -2.0]), 3.0, lr, steps),
                               rtol=1e-5)


def test_constant_axis_spellings_and_an_ambiguous_bare_name(tmp_path):
    """axes.c, axes."constants.c" and axes."problem.constants.c" are one option; a constant named like a train
    option (eps) must be spelt constants.eps, and the bare name is refused as ambiguous."""
    folder = module(tmp_path, SHIFTED + "\n\ndef with_eps(x, eps=0.0):\n    return 0.5 * x ** 2 + eps\n")
    base = {"problem": {"name": "function", "loss": "mylosses:shifted", "constants": {"c": 0.1}}}
    for key in ("c", "constants.c", "problem.constants.c"):
        s = sweep.parse_spec({**base, "axes": {key: [0.0, 1.0]}}, folder=folder)
        assert s.dims == ("constants.c",) and s.options["constants.c"][0] == "problem.constants"
    eps = {"problem": {"name": "function", "loss": "mylosses:with_eps", "constants": {"eps": 0.5}}}
    with pytest.raises(sweep.SpecError, match=r'axes.eps: ambiguous.*train.eps or constants.eps'):
        sweep.parse_spec({**eps, "axes": {"eps": [0.1, 0.2]}}, folder=folder)
    s = sweep.parse_spec({**eps, "axes": {"constants.eps": [0.1, 0.2], "train.eps": [1e-8, 1e-6]}}, folder=folder)
    assert s.dims == ("constants.eps", "eps")
    ds = sweep.run(s, progress=False)  # the constant reaches the loss: L(x) = x^2/2 + eps; x0 = 0 is a minimum
    np.testing.assert_allclose(ds.final_loss.values, [[0.1, 0.1], [0.2, 0.2]], rtol=1e-6)


# --------------------------------------------------------------------------- start values
WW = """
def ww(w, w0):
    return 0.5 * (w - 1.0) ** 2 + 0.5 * (w0 + 2.0) ** 2
"""


def test_arguments_w_and_w0_have_their_own_start_values(tmp_path):
    """[init] keys are the argument names, so f(w, w0) gets init.w and init.w0; GD on the separable quadratic moves
    each from its own start: w_t = 1 + (w(0) - 1) q^t, w0_t = -2 + (w0(0) + 2) q^t, q = 1 - lr."""
    folder = module(tmp_path, WW)
    steps, lr, q = 10, 0.05, 0.95
    spec = {"problem": {"name": "function", "loss": "mylosses:ww"}, "train": {"steps": steps, "lr": lr},
            "init": {"w": 0.5}, "axes": {"w0": [3.0, -4.0]}}
    ds = sweep.run(sweep.parse_spec(spec, folder=folder), progress=False)
    assert ds.final_w.dims == ("w0",)
    np.testing.assert_allclose(ds.final_w.values, [1 - 0.5 * q ** steps] * 2, rtol=1e-5)
    np.testing.assert_allclose(ds.final_w0.values, -2 + (np.array([3.0, -4.0]) + 2) * q ** steps, rtol=1e-5)
    # the old name of w0's start, w00, is still understood (it is not an argument); w0 + w00 is refused
    old = sweep.parse_spec({**spec, "init": {"w": 0.5, "w00": 3.0}, "axes": {}}, folder=folder)
    assert dict(old.init) == {"w": 0.5, "w0": 3.0}
    with pytest.raises(sweep.SpecError, match=r"init.w0 and init.w00 both give the start value of 'w0'"):
        sweep.parse_spec({**spec, "init": {"w0": 1.0, "w00": 2.0}}, folder=folder)


def test_old_arg0_specs_still_run_and_match_the_new_names():
    """x0 / y0 (the names before start values were named like the arguments) give the same run as x / y."""
    common = {"problem": {"name": "function", "loss": "math_losses:bowl"}, "train": {"steps": 40, "lr": 0.1}}
    old = sweep.run({**common, "init": {"x0": 1.5}, "axes": {"y0": [0.5, -1.0]}}, progress=False)
    new = sweep.run({**common, "init": {"x": 1.5}, "axes": {"y": [0.5, -1.0]}}, progress=False)
    assert old.final_x.dims == ("y",)
    for name in ("final_x", "final_y", "final_loss", "outcome"):
        np.testing.assert_array_equal(old[name].values, new[name].values)
    np.testing.assert_allclose(new.final_x.values, 1.5 * 0.9 ** 40, rtol=1e-5)  # bowl: x <- (1 - lr) x


def test_a_parameter_named_like_a_train_option_is_init_dot_name(tmp_path):
    """def f(lr, x): [init] lr is its start; the axis is init.lr (its dimension too), the bare name is ambiguous."""
    folder = module(tmp_path, "def f(lr, x):\n    return 0.5 * (lr - 2.0) ** 2 + 0.5 * x ** 2\n")
    base = {"problem": {"name": "function", "loss": "mylosses:f"}, "train": {"steps": 10, "lr": 0.05},
            "init": {"lr": 3.0, "x": 1.0}}
    with pytest.raises(sweep.SpecError, match=r"axes.lr: ambiguous.*train.lr or init.lr"):
        sweep.parse_spec({**base, "axes": {"lr": [0.1, 0.2]}}, folder=folder)
    ds = sweep.run(sweep.parse_spec({**base, "axes": {"init.lr": [3.0, 0.0], "train.lr": [0.05, 0.1]}},
                                    folder=folder), progress=False)
    assert ds.final_lr.dims == ("init.lr", "lr")
    want = 2.0 + (np.array([3.0, 0.0])[:, None] - 2.0) * (1 - np.array([0.05, 0.1])[None, :]) ** 10
    np.testing.assert_allclose(ds.final_lr.values, want, rtol=1e-5)


# --------------------------------------------------------------------------- the module search
def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_cli_finds_the_module_next_to_the_spec_from_another_folder(tmp_path):
    specs, other = module(tmp_path / "specs", SHIFTED), tmp_path / "other"
    other.mkdir()
    spec = {"problem": {"name": "function", "loss": "mylosses:shifted", "constants": {"c": 0.5}},
            "train": {"steps": 8, "lr": 0.1}, "init": {"x": 1.0}, "axes": {"c": [0.5, -0.5]}}
    (specs / "spec.toml").write_text(dumps_toml(spec))
    r = _cli(["run", "../specs/spec.toml", "--out", "out.nc", "--quiet"], other)
    assert r.returncode == 0, r.stderr
    ds = sweep.load(other / "out.nc")
    np.testing.assert_allclose(ds.final_x.values, gd_quadratic(1.0, np.array([0.5, -0.5]), 1.0, 0.1, 8),
                               rtol=1e-5)
    # without the module next to the spec: one error line naming the folders searched and PYTHONPATH
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "spec.toml").write_text(dumps_toml(spec))
    r = _cli(["run", "../lonely/spec.toml", "--out", "out2.nc", "--quiet"], other)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    for s in ("problem.loss", "'mylosses:shifted'", "cannot find module 'mylosses'", str(lonely), str(other),
              "PYTHONPATH"):
        assert s in lines[0], (s, lines[0])
    assert not (other / "out2.nc").exists()


def test_same_named_modules_in_two_folders_stay_apart(tmp_path):
    """Two specs, each next to its own mylosses.py (minimum at +1 and at -1): each run uses its own file."""
    a = module(tmp_path / "a", "def loss(x):\n    return 0.5 * (x - 1.0) ** 2\n")
    b = module(tmp_path / "b", "def loss(x):\n    return 0.5 * (x + 1.0) ** 2\n")
    spec = {"problem": {"name": "function", "loss": "mylosses:loss"}, "train": {"steps": 500, "lr": 0.2}}
    for folder in (a, b):
        (folder / "spec.toml").write_text(dumps_toml(spec))
    ra = sweep.run(str(a / "spec.toml"), progress=False)
    rb = sweep.run(str(b / "spec.toml"), progress=False)
    assert float(ra.final_x) == pytest.approx(1.0, abs=1e-3) and float(rb.final_x) == pytest.approx(-1.0, abs=1e-3)
    assert "mylosses" not in sys.modules  # loaded under a private name per file, nothing put on sys.path
    # the stored spec keeps what the user wrote; --set overrides do not change the folder
    assert 'loss = "mylosses:loss"' in ra.attrs["spec"]
    s = sweep.parse_spec(b / "spec.toml", ["train.steps=3"])
    assert s.folder == str(b.resolve()) and s.problem_options["loss"] == f"{(b / 'mylosses.py').resolve()}:loss"
    assert sweep.parse_spec(s).folder == s.folder  # a Spec passed on (sweep.run, refine) keeps its folder


def test_a_file_path_reference_is_relative_to_the_spec(tmp_path):
    module(tmp_path / "lib", "def loss(x):\n    return 0.5 * (x - 3.0) ** 2\n", name="pot")
    s = sweep.parse_spec({"problem": {"name": "function", "loss": "lib/pot.py:loss"}, "train": {"steps": 300,
                                                                                              "lr": 0.2}},
                         folder=tmp_path)
    assert float(sweep.run(s, progress=False).final_x) == pytest.approx(3.0, abs=1e-3)


# --------------------------------------------------------------------------- uv
def gd_uv(u, v, y, lr, n):
    """GD on (u v - y)^2 / 2 in float64 for n steps (arrays broadcast; n per element)."""
    u, v, y, lr = (np.array(a, np.float64) for a in np.broadcast_arrays(u, v, y, lr))
    n = np.broadcast_to(n, u.shape)
    for t in range(int(n.max())):
        r = u * v - y
        move = t < n
        u, v = np.where(move, u - lr * r * v, u), np.where(move, v - lr * r * u, v)
    return u, v


def test_uv_gd_converges_to_the_hyperbola_and_matches_a_float64_loop():
    """From a grid of starts, GD with a small lr reaches u v = y; in float64 the final (u, v) equal the NumPy GD
    map run for the same number of steps (stop_step for a settled run)."""
    steps = 600
    ds = sweep.run({"problem": {"name": "uv"}, "train": {"steps": steps, "lr": 0.05}, "run": {"dtype": "float64"},
                    "outcome": {"loss_atol": 1e-12},
                    "axes": {"u0": [0.3, 1.0, 2.0, -1.5], "v0": [0.1, 0.8, -0.6], "y": [1.0, 2.0]}}, progress=False)
    assert np.all(ds.outcome.values == Outcome.CONVERGED)
    # converged: 0.5 r^2 <= loss_atol, so |u v - y| <= sqrt(2e-12)
    np.testing.assert_allclose(ds.final_u.values * ds.final_v.values - ds.y.values, 0.0, atol=np.sqrt(2e-12))
    U, V, Y = np.meshgrid(ds.u0.values, ds.v0.values, ds.y.values, indexing="ij")
    u, v = gd_uv(U, V, Y, 0.05, ds.stop_step.values)
    np.testing.assert_allclose(ds.final_u.values, u, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ds.final_v.values, v, rtol=1e-10, atol=1e-12)


def test_uv_gd_settles_only_where_the_sharpness_is_below_two_over_lr():
    """At a minimum the Hessian is (v, u)(v, u)^T: sharpness u^2 + v^2. GD converges only to minima with u^2 + v^2 <=
    2/lr, so starts beyond it that converge were catapulted to a flatter minimum; balanced starts u0 = v0 stay
    balanced and end at u = v = sqrt(y), sharpness 2y (measured by power iteration)."""
    lr = 0.35
    ds = sweep.run({"problem": {"name": "uv"}, "train": {"steps": 400, "lr": lr}, "run": {"dtype": "float64"},
                    "outcome": {"sharpness_iters": 100},
                    "axes": {"u0": {"linspace": [0.1, 3.0, 12]}, "v0": [0.05, 0.5]}}, progress=False)
    conv = ds.outcome.values == Outcome.CONVERGED
    s2 = ds.final_u.values ** 2 + ds.final_v.values ** 2
    assert conv.sum() >= 12
    assert np.all(s2[conv] < 2 / lr * (1 + 1e-6))
    u, v = ds.final_u.values[conv], ds.final_v.values[conv]
    r = u * v - 1.0
    hess = np.stack([np.stack([v ** 2, 2 * u * v - 1.0], -1), np.stack([2 * u * v - 1.0, u ** 2], -1)], -2)
    top = np.linalg.eigvalsh(hess)[:, -1]
    np.testing.assert_allclose(ds.sharpness.values[conv], top, rtol=1e-6)
    assert np.all(np.abs(top - s2[conv]) <= np.abs(r) * (1 + 1e-9))  # u^2 + v^2 up to the residual's r [[0,1],[1,0]]
    start = ds.u0.values[:, None] ** 2 + ds.v0.values[None, :] ** 2
    assert np.any(conv & (start > 2 / lr))  # catapults: started too sharp, converged anyway
    u, v = gd_uv(ds.u0.values[:, None], ds.v0.values[None, :], 1.0, lr, np.where(conv, ds.stop_step.values, 400))
    np.testing.assert_allclose(ds.final_u.values, u, rtol=1e-9, atol=1e-12)

    y = np.array([0.5, 1.0, 2.0])
    bal = sweep.run({"problem": {"name": "uv"}, "train": {"steps": 3000, "lr": 0.05}, "run": {"dtype": "float64"},
                     "outcome": {"sharpness_iters": 100, "loss_atol": 1e-14},
                     "axes": {"pair": {"zip": {"u0": [0.2, 0.7, 1.1], "v0": [0.2, 0.7, 1.1]}}, "y": y.tolist()}},
                    progress=False)
    assert np.all(bal.outcome.values == Outcome.CONVERGED)
    np.testing.assert_allclose(bal.final_u.values, bal.final_v.values, rtol=1e-12)
    np.testing.assert_allclose(bal.final_u.values, np.broadcast_to(np.sqrt(y), (3, 3)), rtol=1e-6)
    np.testing.assert_allclose(bal.sharpness.values, np.broadcast_to(2 * y, (3, 3)), rtol=1e-5)


def test_uv_residuals_make_levenberg_marquardt_solve_it():
    """loss == 0.5 r^2 with r = u v - y, so the least-squares methods apply: LM reaches u v = y in a few steps
    (from starts with u v of the sign of y; crossing an axis, through the saddle at 0, takes longer)."""
    ds = sweep.run({"problem": {"name": "uv", "y": 2.0}, "train": {"steps": 30, "lr": 1.0,
                                                                   "optimizer": "levenberg_marquardt",
                                                                   "damping": 1e-3},
                    "axes": {"start": {"zip": {"u0": [0.5, 3.0, -0.7, 0.2], "v0": [0.4, 1.5, -2.0, 5.0]}}}},
                   progress=False)
    assert np.all(ds.outcome.values == Outcome.CONVERGED)
    np.testing.assert_allclose(ds.final_u.values * ds.final_v.values, 2.0, atol=np.sqrt(2e-6))
    assert np.all(ds.stop_step.values < 30)


def test_the_readme_example_parses_next_to_its_module(tmp_path):
    text = (ROOT / "README.md").read_text()
    start = text.index("# mylosses.py, next to the spec")
    (tmp_path / "mylosses.py").write_text(text[start: text.index("```", start)])
    toml = text.index("```toml", start) + len("```toml\n")
    (tmp_path / "spec.toml").write_text(text[toml: text.index("```", toml)])
    s = sweep.parse_spec(tmp_path / "spec.toml")
    assert s.dims == ("x", "constants.a") and s.shape == (201, 3) and dict(s.init) == {"x": 0.0, "y": 0.5}


def test_refine_a_swept_constant_next_to_its_module(tmp_path):
    """GD on k x^2 / 2 at lr = 1 multiplies x by 1 - k: it converges for k < 2 and diverges for k > 2 whatever the
    start. sweep.refine from the spec's path finds the module, and the bare constant axis k (dimension constants.k)
    can be refined."""
    folder = module(tmp_path, "def quad(x, k=1.0):\n    return 0.5 * k * x ** 2\n")
    spec = {"problem": {"name": "function", "loss": "mylosses:quad", "constants": {"k": 1.0}},
            "train": {"steps": 200, "lr": 1.0},
            "axes": {"x": {"linspace": [0.5, 2.0, 4]}, "k": {"linspace": [1.0, 5.0, 5]}}}
    (folder / "spec.toml").write_text(dumps_toml(spec))
    ds = sweep.refine(str(folder / "spec.toml"), "x", "constants.k", 2)
    k = ds["constants.k"].values
    out = ds.outcome.values
    assert np.all(out[k < 2] == Outcome.CONVERGED) and np.all(out[k > 2] == Outcome.DIVERGED)
    assert np.any(ds.level.values > 0)  # it did refine next to k = 2


def test_arguments_positional_only_keyword_only_and_defaults():
    """Positional-only arguments are passed by position (a constant between them keeps the others in place),
    keyword-only ones by name; one without a default must be a constant."""
    from sweep import user_loss

    def f(x, a=10.0, b=100.0, /, y=0.0, *, k):
        return x + a + b + y + k

    assert user_loss.params(f, ["b", "k"]) == ("x",)
    assert user_loss.caller(f)({"x": 1.0, "b": 2.0, "k": 3.0}) == 1.0 + 10.0 + 2.0 + 0.0 + 3.0
    with pytest.raises(ValueError, match="'k' is keyword-only without a default"):
        user_loss.params(f, ["b"])
    with pytest.raises(ValueError, match="no positional argument left to train"):
        user_loss.params(lambda x, c: x * c, ["x", "c"])
