"""The command line: plan / dry run, every --help example, plot arguments, errors that name the path."""
import errno
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.cli import main

SMALL = {"problem": {"name": "neuron", "activation": "relu", "data": {"dist": "normal", "n": 16}},
         "train": {"steps": 40, "lr": 0.1},
         "axes": {"w0": {"linspace": [-3, 3, 5]}, "b0": {"linspace": [-3, 3, 3]}, "optimizer": ["sgd", "adam"]}}


def _toml(tmp_path, d=SMALL, name="spec.toml") -> Path:
    from sweep.config import dumps_toml

    p = tmp_path / name
    p.write_text(dumps_toml(d))
    return p


# ----------------------------------------------------------------------------- plan / --dry-run
def _grid_bytes(ds) -> int:
    return sum(ds[v].dtype.itemsize for v in ds.data_vars if ds[v].dims == ds.outcome.dims)


@pytest.mark.parametrize("spec", [SMALL, {"problem": {"name": "quartic"}, "outcome": {"sharpness_iters": 2},
                                          "train": {"steps": 10, "lr": 0.1, "lr_mode": "sharpness"},
                                          "axes": {"x0": [0.5, 1.0, 2.0]}}])
def test_plan_counts_and_the_output_size_are_the_run_s(spec, tmp_path):
    from sweep.api import plan_report

    r = plan_report(spec, out=tmp_path / "r.nc", chunk_size=4, probe=False)
    ds = sweep.run(spec, progress=False, chunk_size=4)
    n = int(np.prod(list(ds.outcome.shape)))
    assert r["n_trajectories"] == n and r["steps"] == spec["train"]["steps"]
    groups = len(spec["axes"].get("optimizer", [None]))
    assert r["compile_groups"] == groups and r["chunk"] == 4
    assert r["chunks"] == groups * math.ceil(n / groups / 4)
    assert r["bytes_per_trajectory"] == _grid_bytes(ds)  # exact here: every variable's dtype is known
    assert r["result_bytes"] == n * _grid_bytes(ds)
    assert r["fits"] and r["free_bytes"] > 0 and r["disk_dir"] == str(tmp_path)


def test_plan_probe_gives_an_eta(tmp_path, capsys):
    spec = _toml(tmp_path)
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "30 trajectories x 40 steps = 1,200 trajectory-steps" in out
    assert "2 compile group(s)" in out and "ETA: at most" in out and "probe: one chunk" in out
    assert main(["run", str(spec), "--dry-run"]) == 0  # the same, and nothing is written
    assert "ETA: at most" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["spec.toml"]


def test_plan_of_the_largest_sweep_states_its_size(tmp_path, capsys):
    """2^32 trajectories (the limit): ~160 GB of results, said before anything runs."""
    big = {**SMALL, "axes": {"w0": {"linspace": [-3, 3, 65536]}, "b0": {"linspace": [-3, 3, 65536]}}}
    from sweep.api import plan_report

    r = plan_report(big, out=tmp_path / "r.nc", probe=False)
    assert r["n_trajectories"] == 2 ** 32
    assert r["result_bytes"] == 2 ** 32 * r["bytes_per_trajectory"]
    assert 150e9 < r["result_bytes"] < 250e9


def test_a_run_that_does_not_fit_on_the_disk_is_refused_before_any_compute(tmp_path, monkeypatch, capsys):
    from sweep import engine

    real = shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(real(p).total, real(p).used, 1000))
    spec = _toml(tmp_path)
    traces = engine.TRACE_COUNT["n"]
    out = tmp_path / "new" / "r.nc"
    assert main(["run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    from sweep.api import plan_report

    per = plan_report(SMALL, probe=False)["bytes_per_trajectory"]  # the run's own (test above)
    assert f"30 trajectories x {per} B" in err and "1.0 kB is free" in err and str(out) in err
    assert engine.TRACE_COUNT["n"] == traces and not (tmp_path / "new").exists()
    assert main(["plan", str(spec), "--out", str(out), "--no-probe"]) == 2
    cap = capsys.readouterr()
    assert "does not fit" in cap.out and "free" in cap.err
    with pytest.raises(sweep.SpecError, match="free"):
        sweep.run(SMALL, out=tmp_path / "r.nc", progress=False)
    assert engine.TRACE_COUNT["n"] == traces


# ----------------------------------------------------------------------------- every --help example
REPO = Path(__file__).resolve().parents[1]
ORDER = ["run", "plan", "info", "plot", "merge", "status", "refine", "report", "demo", "list"]


def _shrunk(src: Path, dst: Path) -> None:
    """A spec with the same keys and axes, on a grid of at most 6 values per axis and 20 steps."""
    from sweep.config import dumps_toml, tomllib

    d = tomllib.loads(src.read_text())
    d.setdefault("train", {})["steps"] = min(int(d["train"].get("steps", 1000)), 20)
    for name, ax in d.get("axes", {}).items():
        for form in ("linspace", "logspace"):
            if isinstance(ax, dict) and form in ax:
                ax[form][2] = min(ax[form][2], 6)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(dumps_toml(d))


def _example_lines(verb: str) -> list[str]:
    from sweep.cli import EXAMPLES

    lines = [ln.split("  #")[0].strip() for ln in EXAMPLES[verb].splitlines()[1:]]
    return [ln for ln in lines if ln]


def test_every_help_example_runs(tmp_path, monkeypatch, capsys):
    """Each line of each verb's --help example, in a folder holding the experiments (shrunk: few values,
    20 steps) - the commands exactly as written, on small sweeps."""
    import glob

    import sweep.cli as cli

    parser = cli._parser()
    verbs = set(parser._subparsers._group_actions[0].choices)
    assert verbs == set(ORDER) == set(cli.EXAMPLES)
    for p in (REPO / "experiments").glob("*.toml"):
        _shrunk(p, tmp_path / "experiments" / p.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "DEMO_SPEC", cli.DEMO_SPEC.replace("256]", "12]").replace("steps = 1000", "steps = 20"))
    for verb in ORDER:
        for line in _example_lines(verb):
            argv = shlex.split(line)
            assert argv[0] == "sweep", line
            argv = [a for tok in argv[1:] for a in (sorted(glob.glob(tok)) if "*" in tok else [tok])]
            code = main(argv)
            cap = capsys.readouterr()
            assert code == 0, f"{line}\n{cap.err}"
            assert "error" not in cap.err.lower(), f"{line}\n{cap.err}"
    for made in ("results/quick.nc", "q2.nc", "quick.png", "conv.png", "plots/adam.png", "plots/fractions.png",
                 "results/merged.nc", "results/quartic_refined.nc", "sweep_demo/demo.png"):
        assert (tmp_path / made).exists(), made
    a, b = xr.open_dataset(tmp_path / "results/quick.nc"), xr.open_dataset(tmp_path / "results/merged.nc")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())  # merged shards == the single run


def test_help_of_every_verb_shows_its_example(capsys):
    import sweep.cli as cli

    for verb in ORDER:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert all(line in out for line in _example_lines(verb))


# ----------------------------------------------------------------------------- plot arguments
@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "r.nc"
    sweep.run(SMALL, out=path, progress=False)
    return path


def test_plot_sel_outside_the_axis_is_refused(result, tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["plot", str(result), "--x", "w0", "--y", "b0", "--sel", "optimizer=adam", "--sel", "w0=1000",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "w0=1000" in err and "[-3, 3]" in err and not out.exists()
    # inside the range: the nearest value, said on stderr and in the title
    assert main(["plot", str(result), "--x", "b0", "--sel", "optimizer=adam", "--sel", "w0=1.2", "--kind", "fractions",
                 "-o", str(out)]) == 0
    assert "nearest, w0 = 1.5" in capsys.readouterr().err  # linspace(-3, 3, 5) = -3, -1.5, 0, 1.5, 3


@pytest.mark.parametrize("kind", ["loss", "trajectories"])
def test_plot_of_recorded_runs_without_any_is_a_usage_error(result, tmp_path, capsys, kind):
    assert main(["plot", str(result), "--x", "w", "--kind", kind, "-o", str(tmp_path / "p.png")]) == 2
    assert "[record]" in capsys.readouterr().err


def test_plot_creates_the_output_folder(result, tmp_path):
    out = tmp_path / "a" / "b" / "conv.pdf"
    assert main(["plot", str(result), "--x", "w0", "--y", "b0", "--facet", "optimizer", "--kind", "convergence",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


# ----------------------------------------------------------------------------- I/O errors
def test_disk_full_while_assembling_names_the_path_and_keeps_the_parts(tmp_path, monkeypatch, capsys):
    import sweep.store as store

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    spec = _toml(tmp_path)
    out = tmp_path / "r.nc"
    with monkeypatch.context() as m:
        m.setattr(store, "_write_slab", full)
        assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"writing '{out}' failed: No space left on device - the disk is full" in err
    assert "free in" in err and "resume with  sweep run" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["r.nc.parts", "spec.toml"]  # no temporary file, parts kept
    assert main(["run", str(spec), "--out", str(out), "--quiet", "--resume"]) == 0  # space freed: assemble
    xr.testing.assert_identical(sweep.run(SMALL, progress=False).drop_attrs(), xr.open_dataset(out).drop_attrs())


def test_a_bare_hdf_error_on_a_full_disk_is_called_so(tmp_path, monkeypatch):
    """netCDF reports a full disk as 'NetCDF: HDF error': the free space decides what it was."""
    import sweep.store as store

    real = shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")

    def hdf(*args, **kwargs):
        monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(real(p).total, real(p).used, 0))
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(store, "_write_slab", hdf)
    with pytest.raises(sweep.io.StorageError, match=r"r.nc' failed: NetCDF: HDF error - the disk is full \(0 B free"):
        sweep.run(SMALL, out=tmp_path / "r.nc", progress=False)


# ----------------------------------------------------------------------------- fast --help, --version
@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["plot", "--help"], ["--version"]])
def test_help_and_version_do_not_import_jax(argv):
    code = ("import sys\nimport sweep.cli as c\ntry:\n    c.main(%r)\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint('jax imported:', 'jax' in sys.modules)" % argv)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "jax imported: False" in r.stdout
    if argv == ["--version"]:
        assert r.stdout.startswith(f"sweep {sweep.__version__}")


def test_import_sweep_registers_the_accessor_without_importing_jax_and_keeps_every_core():
    code = ("import os, sys, sweep, xarray as xr\nprint(hasattr(xr.Dataset, 'sweep'), 'jax' in sys.modules)\n"
            "import jax\nprint(len(jax.devices('cpu')))\n"
            "sweep.run  # the API imports JAX and forgets the variable it set for it\n"
            "print(os.environ.get('JAX_NUM_CPU_DEVICES'))")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**env, "SWEEP_CPU_DEVICES": "3"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "3", "None"]


def test_the_import_hint_of_a_function_loss_does_not_say_run_from_its_directory(tmp_path, capsys):
    spec = _toml(tmp_path, {"problem": {"name": "function", "loss": "no_such_module_xyz:bowl"},
                            "train": {"steps": 5}})
    assert main(["run", str(spec), "--out", str(tmp_path / "r.nc")]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_xyz" in err and "run from its directory" not in err


def test_a_signal_while_assembling_stops_at_once_and_keeps_the_parts(tmp_path, monkeypatch, capsys):
    import signal

    import sweep.store as store

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the run's handler at the next bytecode

    spec = _toml(tmp_path)
    out = tmp_path / "r.nc"
    with monkeypatch.context() as m:
        m.setattr(store, "_write_slab", interrupted)
        assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 143
    err = capsys.readouterr().err
    assert "SIGTERM: stopped while assembling the file" in err and f"resume with  sweep run {spec} --out {out}" in err
    assert sorted(os.listdir(tmp_path)) == ["r.nc.parts", "spec.toml"]  # no temporary file, no lock
    assert main(["run", str(spec), "--out", str(out), "--quiet", "--resume"]) == 0


def test_lazy_public_names_are_the_functions_even_after_their_modules_are_imported():
    code = ("import sweep, sweep.merge, sweep.refine, sweep.outcomes, sweep.analysis\n"
            "print(all(callable(f) and not isinstance(f, type(sweep)) for f in (sweep.merge, sweep.refine, "
            "sweep.outcomes, sweep.run)), sweep.engine.__name__, sweep.Outcome.CONVERGED.name)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "sweep.engine", "CONVERGED"]
