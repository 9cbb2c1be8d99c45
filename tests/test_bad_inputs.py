"""The bad-input corpus: every malformed spec or invocation is refused cleanly.

Each case must give exit code 2 and exactly one stderr line starting with ``error:`` that
names the offending key (and, for misspelt names, a "did you mean"), no traceback, and
leave no output (nor temporary) file behind; an existing output is left untouched. Spec
cases are also checked through the Python API: ``sweep.parse_spec`` and ``sweep.run`` raise
``sweep.SpecError`` before any compute.
"""
from __future__ import annotations

import atexit
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep import engine
from sweep.cli import main
from sweep.config import dumps_toml
from sweep.outcomes import outcome_attrs

ROOT = Path(__file__).resolve().parents[1]
DELETE = object()


def base() -> dict:
    """A small valid spec; each case breaks one thing in it."""
    return {
        "seed": 0,
        "problem": {"name": "neuron", "bias": True, "activation": "relu",
                    "data": {"dist": "normal", "n": 16}},
        "train": {"steps": 5, "optimizer": "sgd", "lr": 0.1},
        "axes": {"w0": [0.5, 1.0], "b0": {"linspace": [-1.0, 1.0, 3]}},
    }


def edit(**changes) -> Callable[[], dict]:
    """Spec factory: ``base()`` with dotted keys ("__" for ".") set to values (DELETE removes)."""
    def make():
        d = base()
        for key, value in changes.items():
            path = key.split("__")
            node = d
            for p in path[:-1]:
                node = node.setdefault(p, {})
            if value is DELETE:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = copy.deepcopy(value)
        return d
    return make


class SpecCase(NamedTuple):
    id: str
    make: Callable[[], dict]  # the malformed spec as a dict
    expect: tuple[str, ...]  # substrings of the one error line
    toml: str | None = None  # write this TOML text instead of the dict (TOML-only syntax: nan, inf)


NAN, INF = float("nan"), float("inf")
_NPZ_DIR: list[Path] = []


def npz(**arrays) -> str:
    """Write ``arrays`` to a new .npz outside every test's tmp_path (so the 'nothing written' checks hold) and
    return its path; the directory is removed when the session ends."""
    if not _NPZ_DIR:
        _NPZ_DIR.append(Path(tempfile.mkdtemp(prefix="sweep-bad-inputs-")))
        atexit.register(shutil.rmtree, _NPZ_DIR[0], True)
    fd, path = tempfile.mkstemp(suffix=".npz", dir=_NPZ_DIR[0])
    os.close(fd)
    np.savez(path, **arrays)
    return path


def with_npz(problem: dict, key: str = "init_file", file_arrays: dict | None = None, **sections) -> Callable[[], dict]:
    """Spec factory for file cases: ``problem`` with ``key`` set to a fresh .npz of ``file_arrays``."""
    def make():
        return {"problem": {**problem, key: npz(**file_arrays)}, "train": {"steps": 5, "lr": 0.1}, **sections}
    return make


LR = {"name": "two_layer_lr", "d": 2, "width": 4, "n_data": 5}
SHIFTED = {"name": "function", "loss": "math_losses:shifted"}  # 0.5 (x - c)^2, c = 0 by default
ROWS = {"W0": np.zeros((3, 4, 2)), "W1": np.zeros(4)}  # K = 3 rows of W0, W1 shared

SPEC_CASES = [
    # ---- missing sections / keys
    SpecCase("missing-problem-section", edit(problem=DELETE), ("[problem]", "missing")),
    SpecCase("missing-problem-name", edit(problem__name=DELETE), ("problem.name", "missing", "neuron")),
    SpecCase("problem-not-a-table", edit(problem="neuron"), ("problem", "'neuron'", "table")),
    SpecCase("function-without-loss", edit(problem={"name": "function"}, axes={}), ("problem.loss", "missing")),
    # ---- unknown keys at every level, with did-you-mean
    SpecCase("unknown-top-key", edit(trian={"steps": 5}), ("trian", "did you mean 'train'")),
    SpecCase("unknown-problem-key", edit(problem__activaton="relu"),
             ("problem.activaton", "did you mean 'activation'")),
    SpecCase("unknown-data-key", edit(problem__data__bacth=4), ("problem.data.bacth", "did you mean 'batch'")),
    SpecCase("unknown-train-key", edit(train__stpes=5), ("train.stpes", "did you mean 'steps'")),
    SpecCase("unknown-init-key", edit(init={"w": 0.5}), ("init.w", "did you mean 'w0'")),
    SpecCase("unknown-outcome-key", edit(outcome={"loss_tol": 1e-6}), ("outcome.loss_tol", "did you mean")),
    SpecCase("unknown-run-key", edit(run={"chunksize": 64}), ("run.chunksize", "did you mean 'chunk_size'")),
    SpecCase("unknown-record-key", edit(record={"evry": 2}), ("record.evry", "did you mean 'every'")),
    SpecCase("unknown-axis-name", edit(axes={"lrr": [0.1, 0.2]}), ("axes.lrr", "did you mean 'lr'")),
    SpecCase("unknown-axis-form", edit(axes={"w0": {"linspce": [0, 1, 3]}}), ("axes.w0", "linspce",
                                                                               "did you mean 'linspace'")),
    SpecCase("unknown-zip-member", edit(axes={"pair": {"zip": {"lr": [0.1, 0.2], "momentun": [0.5, 0.9]}}}),
             ("momentun", "did you mean 'momentum'")),
    # ---- wrong types
    SpecCase("string-for-int", edit(train__steps="100"), ("train.steps", "'100'", "integer")),
    SpecCase("string-for-float", edit(train__lr="0.1"), ("train.lr", "'0.1'", "number")),
    SpecCase("list-for-scalar", edit(train__lr=[0.1, 0.2]), ("train.lr", "[0.1, 0.2]", "[axes]")),
    SpecCase("bool-for-int", edit(train__steps=True), ("train.steps", "True", "integer")),
    SpecCase("int-for-bool", edit(problem__bias=1), ("problem.bias", "true or false")),
    SpecCase("seed-negative", edit(seed=-1), ("seed", "-1")),
    SpecCase("axis-not-list-or-table", edit(axes={"w0": "wide"}), ("axes.w0", "'wide'", "linspace")),
    # ---- bad ranges
    SpecCase("zero-steps", edit(train__steps=0), ("train.steps = 0", "integer in [1,")),
    SpecCase("steps-past-int32", edit(train__steps=2 ** 31), ("train.steps", "2147483648", "2147483647")),
    SpecCase("negative-steps", edit(train__steps=-5), ("train.steps", "-5")),
    SpecCase("fractional-steps", edit(train__steps=1.5), ("train.steps", "1.5", "integer")),
    SpecCase("zero-lr", edit(train__lr=0.0), ("train.lr = 0.0", "> 0")),
    SpecCase("nan-lr", edit(train__lr=NAN), ("train.lr", "nan", "finite"),
             toml='[problem]\nname = "neuron"\n[train]\nlr = nan\n'),
    SpecCase("negative-axis-value", edit(axes={"lr": [0.1, -1.0]}), ("axes.lr", "-1.0")),
    SpecCase("negative-threshold", edit(outcome={"loss_atol": -1.0}), ("outcome.loss_atol", "-1.0")),
    SpecCase("run-dtype-float16", edit(run={"dtype": "float16"}), ("run.dtype", "'float16'", "float32")),
    # ---- axes
    SpecCase("empty-axis", edit(axes={"w0": []}), ("axes.w0", "empty")),
    SpecCase("nan-in-axis", edit(axes={"w0": [0.5, NAN]}), ("axes.w0", "nan", "finite"),
             toml='[problem]\nname = "neuron"\n[axes]\nw0 = [0.5, nan]\n'),
    SpecCase("inf-in-linspace", edit(axes={"w0": {"linspace": [-INF, 1.0, 5]}}), ("axes.w0.linspace", "inf"),
             toml='[problem]\nname = "neuron"\n[axes]\nw0 = { linspace = [-inf, 1.0, 5] }\n'),
    SpecCase("logspace-bad-bounds", edit(axes={"lr": {"logspace": [-3, 400, 4]}}), ("axes.lr.logspace", "400")),
    SpecCase("logspace-overflow-bounds", edit(axes={"lr": {"logspace": [-400, -390, 4]}}),
             ("axes.lr.logspace", "-400")),
    SpecCase("logspace-fractional-count", edit(axes={"lr": {"logspace": [-3, 0, 2.5]}}),
             ("axes.lr.logspace", "2.5", "integer count")),
    SpecCase("linspace-count-zero", edit(axes={"w0": {"linspace": [-1, 1, 0]}}), ("axes.w0.linspace", "count")),
    SpecCase("linspace-two-numbers", edit(axes={"w0": {"linspace": [-1, 1]}}), ("axes.w0.linspace", "3 numbers")),
    SpecCase("range-empty", edit(axes={"seed": {"range": 0}}), ("axes.seed.range", "no values")),
    SpecCase("range-zero-step", edit(axes={"seed": {"range": [0, 4, 0]}}), ("axes.seed.range", "step")),
    SpecCase("axis-too-long", edit(axes={"w0": {"linspace": [-1, 1, 10 ** 12]}}),
             ("axes.w0.linspace", "1,000,000,000,000 values", "at most")),
    SpecCase("samples-too-many", edit(axes={"w0": {"uniform": [-1.0, 1.0], "samples": 10 ** 10}}),
             ("axes.w0.samples", "10000000000", "at most")),
    SpecCase("too-many-trajectories", edit(axes={"w0": {"linspace": [-1, 1, 2 ** 17]},
                                                  "b0": {"linspace": [-1, 1, 2 ** 16]}}),
             ("axes", "w0=131,072", "trajectories", "split")),
    SpecCase("repeated-axis-values", edit(axes={"w0": [0.5, 0.5]}), ("axes.w0", "distinct")),
    SpecCase("swept-twice-zip", edit(axes={"lr": [0.1, 0.2], "pair": {"zip": {"lr": [0.3, 0.4],
                                                                                  "momentum": [0.5, 0.9]}}}),
             ("lr", "swept twice")),
    SpecCase("swept-twice-alias", edit(axes={"lr": [0.1, 0.2], "train.lr": [0.3, 0.4]}), ("lr", "swept twice")),
    SpecCase("zip-unequal-lengths", edit(axes={"pair": {"zip": {"lr": [0.1, 0.2, 0.3], "momentum": [0.5, 0.9]}}}),
             ("axes.pair.zip", "same length")),
    SpecCase("random-without-samples", edit(axes={"w0": {"uniform": [-1.0, 1.0]}}), ("axes.w0", "samples")),
    SpecCase("uniform-low-ge-high", edit(axes={"w0": {"uniform": [1.0, 1.0], "samples": 8}}),
             ("axes.w0.uniform", "low < high")),
    SpecCase("normal-std-nonpositive", edit(axes={"w0": {"normal": [0.0, -1.0], "samples": 8}}),
             ("axes.w0.normal", "std > 0")),
    SpecCase("samples-zero", edit(axes={"samples": 0, "w0": {"uniform": [-1.0, 1.0]}}), ("axes.samples", "0")),
    # ---- registry names (did you mean)
    SpecCase("unknown-optimizer", edit(train__optimizer="adma"), ("train.optimizer", "'adma'",
                                                                  "did you mean 'adam'")),
    SpecCase("unknown-activation", edit(problem__activation="rleu"), ("problem.activation", "'rleu'",
                                                                       "did you mean 'relu'")),
    SpecCase("unknown-problem", edit(problem__name="nueron"), ("problem.name", "'nueron'", "did you mean 'neuron'")),
    SpecCase("unknown-optimizer-in-axis", edit(axes={"optimizer": ["sgd", "adma"]}),
             ("axes.optimizer", "'adma'", "did you mean 'adam'")),
    # ---- conflicts
    SpecCase("fixed-data-batch-gt-n", edit(problem__data={"n": 16, "batch": 64}), ("problem.data.batch", "64",
                                                                                    "fresh = true")),
    SpecCase("uniform-data-lo-ge-hi", edit(problem__data={"dist": "uniform", "lo": 1.0, "hi": -1.0}),
             ("problem.data.hi", "-1.0")),
    SpecCase("second-order-needs-residuals", edit(problem={"name": "quartic"}, train__optimizer="gauss_newton",
                                                  axes={}), ("train.optimizer", "'gauss_newton'", "newton")),
    SpecCase("data-for-dataless-problem", edit(problem={"name": "quartic", "data": {"n": 4}}, axes={}),
             ("problem.data", "quartic")),
    # ---- user functions
    SpecCase("function-missing-module", edit(problem={"name": "function", "loss": "no_such_module_xyz:f"}, axes={}),
             ("problem.loss", "no_such_module_xyz", "no no_such_module_xyz.py in", "PYTHONPATH")),
    SpecCase("function-missing-function", edit(problem={"name": "function", "loss": "math:no_such_fn"}, axes={}),
             ("problem.loss", "no_such_fn")),
    SpecCase("function-not-module-colon-function", edit(problem={"name": "function", "loss": "math.sqrt"}, axes={}),
             ("problem.loss", "module:function")),
    SpecCase("function-without-arguments", edit(problem={"name": "function", "loss": "os:getcwd"}, axes={}),
             ("problem.loss", "'os:getcwd'", "positional")),
    SpecCase("function-misspelt", edit(problem={"name": "function", "loss": "math_losses:rosenbrok"}, axes={}),
             ("problem.loss", "rosenbrok", "did you mean 'rosenbrock'")),
    SpecCase("function-unknown-constant", edit(problem={**SHIFTED, "constants": {"d": 1.0}}, axes={}),
             ("problem.constants.d", "not an argument", "x, c")),
    SpecCase("function-misspelt-constant", edit(problem={**SHIFTED, "constants": {"cc": 1.0}}, axes={}),
             ("problem.constants.cc", "did you mean 'c'")),
    SpecCase("function-constant-not-a-number", edit(problem={**SHIFTED, "constants": {"c": "big"}}, axes={}),
             ("problem.constants.c = 'big'", "finite number")),
    SpecCase("function-constants-not-a-table", edit(problem={**SHIFTED, "constants": 3}, axes={}),
             ("problem.constants = 3", "table of name = number")),
    SpecCase("function-constants-elsewhere", edit(problem__constants={"c": 1.0}), ("problem.constants",
                                                                                   "unknown key")),
    SpecCase("function-start-given-twice", edit(problem=SHIFTED, init={"x": 1.0, "x0": 2.0}, axes={}),
             ("init.x and init.x0", "start value of 'x'", "give it once")),
    SpecCase("function-start-of-a-constant", edit(problem={**SHIFTED, "constants": {"c": 1.0}}, init={"c": 1.0},
                                                  axes={}), ("init.c", "constant", "no start value")),
    SpecCase("function-ambiguous-axis", edit(problem={"name": "function", "loss": "math_losses:with_eps",
                                                      "constants": {"eps": 0.1}}, axes={"eps": [0.1, 0.2]}),
             ("axes.eps", "ambiguous", "train.eps or constants.eps")),
    SpecCase("axis-of-the-wrong-section", edit(axes={"init.lr": [0.1, 0.2]}), ("axes.init.lr", "not an option")),
    # ---- memory: the data a trajectory trains on cannot fit
    SpecCase("data-too-large-for-memory", edit(problem__data={"n": 10 ** 12}), ("problem.data.n", "1000000000000",
                                                                                  "memory")),
    SpecCase("fresh-batch-too-large-for-memory", edit(problem__data={"fresh": True, "batch": 10 ** 12}),
             ("problem.data.batch", "1000000000000", "memory")),
    SpecCase("mlp-data-too-large-for-memory", edit(problem={"name": "mlp", "data": {"n": 10 ** 12}}, axes={}),
             ("problem.data.n", "1000000000000", "memory")),
    SpecCase("swept-data-n-too-large", edit(axes={"data.n": [16, 10 ** 13]}), ("data.n", "10000000000000",
                                                                               "memory")),
    # ---- network layers and per-trajectory files
    SpecCase("mlp-maxout-one-piece", edit(problem={"name": "mlp", "activation": "maxout", "pieces": 1}, axes={}),
             ("problem.pieces = 1", ">= 2")),
    SpecCase("p-draw-misspelt", edit(problem={"name": "two_layer_1d", "p_draw": "multinomal"}, axes={}),
             ("problem.p_draw", "'multinomal'", "did you mean 'multinomial'")),
    SpecCase("p-samples-negative", edit(problem={"name": "two_layer_1d", "p_draw": "multinomial", "p_samples": -1},
                                        axes={}), ("problem.p_samples = -1", ">= 0")),
    SpecCase("init-row-negative", edit(problem=LR, axes={"init_row": [-1, 0]}), ("axes.init_row", "-1", ">= 0")),
    SpecCase("init-row-without-rows", edit(problem=LR, init={"init_row": 2}, axes={}),
             ("init.init_row = 2", "no file array", "leading K dimension")),
    SpecCase("init-row-past-the-rows", with_npz(LR, file_arrays=ROWS, axes={"init_row": {"range": 4}}),
             ("axes.init_row = 3", "array 'W0'", "(3, 4, 2)", "K = 3", "[0, 2]", "range = 3")),
    SpecCase("init-row-past-the-rows-zipped", with_npz(LR, file_arrays=ROWS,
                                                       axes={"pair": {"zip": {"init_row": [0, 5], "lr": [0.1, 0.2]}}}),
             ("axes.pair.zip.init_row = 5", "K = 3")),
    SpecCase("init-file-wrong-shape", with_npz(LR, file_arrays={"W0": np.zeros((5, 2))}),
             ("problem.init_file", ".npz", "array 'W0' has shape (5, 2)", "expected (4, 2)", "(K, 4, 2)",
              "width = 4")),
    SpecCase("init-file-rows-wrong-shape", with_npz(LR, file_arrays={"W0": np.zeros((3, 4, 5))}),
             ("problem.init_file", "'W0' has shape (3, 4, 5)", "expected (4, 2)", "d = 2")),
    SpecCase("init-file-unknown-array", with_npz(LR, file_arrays={"W2": np.zeros(4)}),
             ("problem.init_file", "'W2'", "not a parameter", "W0 (4, 2)")),
    SpecCase("init-file-rows-disagree", with_npz(LR, file_arrays={"W0": np.zeros((3, 4, 2)), "W1": np.zeros((2, 4))}),
             ("problem.init_file", "K = 3", "K = 2", "same K")),
    SpecCase("init-file-not-finite", with_npz(LR, file_arrays={"W1": np.array([0.0, NAN, 0.0, 0.0])}),
             ("problem.init_file", "'W1'", "finite")),
    SpecCase("init-file-missing", edit(problem={**LR, "init_file": "no_such_weights.npz"}, axes={}),
             ("problem.init_file", "no_such_weights.npz", "does not exist")),
    SpecCase("init-file-not-npz", edit(problem={**LR, "init_file": "tests/helpers.py"}, axes={}),
             ("problem.init_file", ".npz")),
    SpecCase("mlp-init-file-maxout-shape", with_npz({"name": "mlp", "widths": [3], "activation": "maxout"},
                                                    file_arrays={"W0": np.zeros((3, 2))}),
             ("problem.init_file", "'W0'", "expected (3, 2, 2)", "pieces = 2")),
    SpecCase("two-layer-1d-data-and-init-rows-disagree",
             with_npz({"name": "two_layer_1d", "width": 2, "init_file": npz(a=np.ones((2, 2)))}, key="file",
                      file_arrays={"x": np.array([-1.0, 1.0]), "y": np.ones((3, 2))}),
             ("problem.init_file", "K = 3", "K = 2", "same K")),
    SpecCase("two-layer-1d-data-rows-disagree", with_npz({"name": "two_layer_1d"}, key="file",
                                                         file_arrays={"x": np.ones((2, 3)), "y": np.ones((3, 3))}),
             ("problem.file", "different numbers of rows")),
]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*"))}


def _check_refused(capsys, argv: list[str], root: Path, expect: tuple[str, ...]) -> str:
    """Run the CLI in-process; assert exit 2, one 'error:' line with ``expect``, nothing written."""
    before = _files(root)
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}, stderr: {err!r}"
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error:"), f"want one 'error:' line, got {err!r}"
    for s in expect:
        assert s in lines[0], f"{s!r} not in {lines[0]!r}"
    assert _files(root) == before, "files were created, removed or changed"
    return lines[0]


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.id for c in SPEC_CASES])
def test_bad_spec_cli(case: SpecCase, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(case.toml if case.toml is not None else dumps_toml(case.make()))
    _check_refused(capsys, ["run", str(path), "--out", str(tmp_path / "out.nc"), "--quiet"], tmp_path, case.expect)


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.id for c in SPEC_CASES])
def test_bad_spec_api(case: SpecCase, tmp_path):
    d = case.make()
    with pytest.raises(sweep.SpecError) as e:
        sweep.parse_spec(d)
    msg = str(e.value)
    assert "\n" not in msg
    for s in case.expect:
        assert s in msg, f"{s!r} not in {msg!r}"
    # sweep.run refuses it too, before any compute and without writing
    traced = engine.TRACE_COUNT["n"]
    with pytest.raises(sweep.SpecError):
        sweep.run(d, out=tmp_path / "out.nc")
    assert engine.TRACE_COUNT["n"] == traced
    assert list(tmp_path.iterdir()) == []


def test_base_spec_is_valid():
    """The corpus breaks one thing at a time in a spec that is itself fine."""
    s = sweep.parse_spec(base())
    assert s.shape == (2, 3)


# --------------------------------------------------------------------------- CLI invocations
def _result(path: Path) -> Path:
    """A small (w0, b0) result file written with plain xarray (no compute)."""
    attrs = dict(outcome_attrs())
    attrs["flag_values"] = np.asarray(attrs["flag_values"], np.int8)
    ds = xr.Dataset({"outcome": (("w0", "b0"), np.zeros((3, 2), np.int8), attrs),
                     "final_loss": (("w0", "b0"), np.zeros((3, 2)))},
                    coords={"w0": [-1.0, 0.0, 1.0], "b0": [0.0, 1.0]})
    ds.to_netcdf(path, engine="netcdf4")
    return path


def _good_spec(root: Path) -> Path:
    p = root / "spec.toml"
    p.write_text(dumps_toml(base()))
    return p


class CliCase(NamedTuple):
    id: str
    argv: Callable[[Path], list[str]]  # builds the invocation (and any files it needs) under tmp_path
    expect: tuple[str, ...]


def _readonly_dir(t: Path) -> list[str]:
    d = t / "ro"
    d.mkdir()
    d.chmod(0o555)
    if os.access(d, os.W_OK):
        d.chmod(0o755)
        pytest.skip("running as root: a read-only directory is still writable")
    return ["run", str(_good_spec(t)), "--out", str(d / "out.nc")]


def _existing(t: Path) -> list[str]:
    (t / "out.nc").write_bytes(b"an earlier result, must survive")
    return ["run", str(_good_spec(t)), "--out", str(t / "out.nc")]


def _corrupt(t: Path) -> Path:
    p = t / "corrupt.nc"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(200))
    return p


def _truncated(t: Path) -> Path:
    good = _result(t / "whole.nc").read_bytes()
    (t / "whole.nc").unlink()
    p = t / "truncated.nc"
    p.write_bytes(good[: len(good) // 3])
    return p


def _spec_file(t: Path, text: str) -> Path:
    p = t / "spec.toml"
    p.write_text(text)
    return p


def _dir_spec(t: Path) -> list[str]:
    (t / "specdir.toml").mkdir()
    return ["run", str(t / "specdir.toml"), "--out", str(t / "out.nc")]


def _out_is_dir(name):
    def argv(t: Path) -> list[str]:
        (t / name).mkdir()
        return ["run", str(_good_spec(t)), "--out", str(t / name)]
    return argv


def _out_under_file(t: Path) -> list[str]:
    """The parent of --out is a regular file: unwritable even for root."""
    (t / "f").write_text("a file, not a directory")
    return ["run", str(_good_spec(t)), "--out", str(t / "f" / "out.nc")]


def _run(*extra, out="out.nc"):
    return lambda t: ["run", str(_good_spec(t)), "--out", str(t / out), *extra]


CLI_CASES = [
    CliCase("spec-not-toml", lambda t: ["run", str(_spec_file(t, "[problem\nname = neuron\n")), "--out",
                                        str(t / "out.nc")], ("spec.toml", "not valid TOML")),
    CliCase("spec-binary", lambda t: ["run", str(_corrupt(t)), "--out", str(t / "out.nc")], ("corrupt.nc",)),
    CliCase("spec-is-directory", _dir_spec, ("specdir.toml", "directory")),
    CliCase("spec-missing", lambda t: ["run", str(t / "nope.toml"), "--out", str(t / "out.nc")],
            ("nope.toml", "does not exist")),
    CliCase("out-under-a-file", _out_under_file, ("--out", "out.nc", "not a directory")),
    CliCase("out-deep-under-a-file", lambda t: _out_under_file(t)[:-1] + [str(t / "f" / "a" / "b" / "out.nc")],
            ("--out", "not a directory")),
    CliCase("out-readonly-dir", _readonly_dir, ("--out", "not writable")),
    CliCase("out-is-directory", _out_is_dir("result.nc"), ("--out", "directory")),
    CliCase("out-is-plain-directory", _out_is_dir("results"), ("--out", "results")),
    CliCase("out-exists", _existing, ("--out", "already exists", "--overwrite")),
    CliCase("out-not-nc", _run(out="result.csv"), ("--out", "result.csv", ".nc")),
    CliCase("set-no-equals", _run("--set", "train.steps"), ("--set", "train.steps", "key=value")),
    CliCase("set-empty-key", _run("--set", "=5"), ("--set", "'=5'")),
    CliCase("set-unknown-key", _run("--set", "train.stepz=5"), ("train.stepz", "did you mean 'steps'")),
    CliCase("set-unknown-section", _run("--set", "trian.steps=5"), ("trian", "did you mean 'train'")),
    CliCase("set-into-scalar", _run("--set", "train.steps.x=1"), ("--set", "train.steps.x", "steps")),
    CliCase("set-bad-value", _run("--set", "train.steps=many"), ("train.steps", "'many'")),
    CliCase("chunk-size-zero", _run("--chunk-size", "0"), ("--chunk-size", "0")),
    CliCase("chunk-size-negative", _run("--chunk-size", "-3"), ("--chunk-size", "-3")),
    CliCase("chunk-size-not-int", _run("--chunk-size", "lots"), ("--chunk-size", "lots")),
    CliCase("shard-out-of-range", _run("--shard", "5/2"), ("--shard", "5/2", "0 <= I < N")),
    CliCase("shard-not-i-over-n", _run("--shard", "x"), ("--shard", "'x'", "I/N")),
    CliCase("resume-and-overwrite", _run("--resume", "--overwrite"), ("--overwrite", "--resume")),
    CliCase("merge-missing-part", lambda t: ["merge", str(t / "p0.nc"), "-o", str(t / "m.nc")], ("p0.nc",
                                                                                               "does not exist")),
    CliCase("merge-part-not-netcdf", lambda t: ["merge", str(_good_spec(t)), "-o", str(t / "m.nc")],
            ("spec.toml", "not a readable")),
    CliCase("merge-without-parts", lambda t: ["merge", "-o", str(t / "m.nc")], ("parts",)),
    CliCase("demo-out-is-a-file", lambda t: ["demo", "--out", str(_good_spec(t))], ("--out", "not a directory")),
    CliCase("refine-unknown-axis", lambda t: ["refine", str(_good_spec(t)), "--x", "w1", "--y", "b0", "--levels",
                                              "2"], ("--x w1", "w0")),
    CliCase("refine-negative-levels", lambda t: ["refine", str(_good_spec(t)), "--x", "w0", "--y", "b0", "--levels",
                                                 "-1"], ("--levels", "-1")),
    CliCase("dtype-float16", _run("--dtype", "float16"), ("--dtype", "float16", "float32")),
    CliCase("run-without-spec", lambda t: ["run"], ("spec",)),
    CliCase("unknown-verb", lambda t: ["rnu"], ("rnu",)),
    CliCase("unknown-flag", _run("--resumee"), ("--resumee",)),
    CliCase("plot-unknown-dim", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w1", "--y", "b0", "-o",
                                           str(t / "p.png")], ("--x", "w1", "w0")),
    CliCase("plot-unknown-var", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--y", "b0", "--var",
                                           "outcme", "-o", str(t / "p.png")], ("--var", "outcme",
                                                                               "did you mean 'outcome'")),
    CliCase("plot-unknown-facet", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--y", "b0", "--facet",
                                             "lr", "-o", str(t / "p.png")], ("--facet", "lr")),
    CliCase("plot-bad-sel", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--sel", "b0",
                                       "-o", str(t / "p.png")], ("--sel", "b0")),
    CliCase("plot-sel-unknown-dim", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--sel", "b=1",
                                               "-o", str(t / "p.png")], ("--sel b", "did you mean 'b0'")),
    CliCase("plot-sel-not-a-number", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--y", "b0", "--sel",
                                                "b0=high", "-o", str(t / "p.png")], ("--sel b0=high", "number")),
    CliCase("plot-bad-image-suffix", lambda t: ["plot", str(_result(t / "r.nc")), "--x", "w0", "--y", "b0",
                                                "-o", str(t / "p.txt")], ("-o", "p.txt", ".png")),
    CliCase("plot-missing-file", lambda t: ["plot", str(t / "nope.nc"), "--x", "w0"], ("nope.nc", "does not exist")),
    CliCase("info-missing-file", lambda t: ["info", str(t / "nope.nc")], ("nope.nc", "does not exist")),
    CliCase("info-corrupt-file", lambda t: ["info", str(_corrupt(t))], ("corrupt.nc", "not a readable")),
    CliCase("info-truncated-file", lambda t: ["info", str(_truncated(t))], ("truncated.nc", "not a readable")),
    CliCase("info-directory", lambda t: ["info", str(t)], ("is a directory",)),
    CliCase("info-not-a-result", lambda t: ["info", str(_plain_nc(t))], ("plain.nc", "not a sweep result")),
]


def _plain_nc(t: Path) -> Path:
    p = t / "plain.nc"
    xr.Dataset({"x": ("i", np.arange(3))}).to_netcdf(p, engine="netcdf4")
    return p


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_invocation(case: CliCase, tmp_path, capsys):
    argv = case.argv(tmp_path)
    _check_refused(capsys, argv, tmp_path, case.expect)


def test_existing_output_is_untouched(tmp_path, capsys):
    argv = _existing(tmp_path)
    _check_refused(capsys, argv, tmp_path, ("already exists",))
    assert (tmp_path / "out.nc").read_bytes() == b"an earlier result, must survive"


def test_corpus_size():
    assert len(SPEC_CASES) + len(CLI_CASES) >= 40


# --------------------------------------------------------------------------- real subprocesses
def _sub(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("SWEEP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "sweep.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("argv_of, expect", [
    (lambda t: ["run", str(_spec_file(t, dumps_toml(edit(train__optimizer="adma")()))), "--out", str(t / "o.nc")],
     ("train.optimizer", "did you mean 'adam'")),
    (lambda t: ["run", str(_spec_file(t, dumps_toml(edit(problem__data={"n": 10 ** 12})()))), "--out",
                str(t / "o.nc")], ("problem.data.n", "memory")),
    (lambda t: ["run", str(_spec_file(t, "[problem\n")), "--out", str(t / "o.nc")], ("not valid TOML",)),
    (_existing, ("already exists",)),
    (lambda t: ["info", str(_corrupt(t))], ("not a readable",)),
], ids=["unknown-optimizer", "data-too-large", "not-toml", "out-exists", "info-corrupt"])
def test_bad_input_in_a_real_process(argv_of, expect, tmp_path):
    argv = argv_of(tmp_path)
    before = _files(tmp_path)
    r = _sub(argv, tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for s in expect:
        assert s in lines[0]
    assert _files(tmp_path) == before


def test_memory_estimate_is_a_pure_rule():
    """The refusal rule: the data one group trains on must fit in the memory budget."""
    from sweep.config import data_bytes, memory_budget

    # a fixed dataset is held whole, even when minibatches are drawn from it
    assert data_bytes({"n": 1000, "batch": 0, "fresh": False}) == 1000 * 2 * 8
    assert data_bytes({"n": 1000, "batch": 10, "fresh": False}) == 1000 * 2 * 8
    # fresh data: one batch plus the engine's reference sample of max(4 * batch, 4096) points
    assert data_bytes({"n": 1000, "batch": 10, "fresh": True}) == (10 + 4096) * 2 * 8
    assert data_bytes({"n": 1000, "batch": 0, "fresh": True}) == (1000 + 4096) * 2 * 8
    assert data_bytes({"n": 1000, "batch": 2000, "fresh": True}) == (2000 + 8000) * 2 * 8
    # mlp data: dim inputs and one-hot classes per point
    assert data_bytes({"n": 100, "batch": 0, "fresh": False, "dim": 2, "classes": 3}) == 100 * 5 * 8
    assert data_bytes({"n": 10 ** 12, "batch": 0, "fresh": False}) > memory_budget() > 2 ** 20
    # the seed-000 workload (fresh batches of 1000) is far inside the budget
    sweep.parse_spec(edit(problem__data={"fresh": True, "batch": 1000})())
