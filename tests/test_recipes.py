"""examples/cluster/: each script run locally at a tiny size, with sbatch, srun and gcloud replaced by a
local launcher (fake commands on PATH), and the merged result compared with a single run."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

import sweep
from sweep.config import parse_spec

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "examples" / "cluster"
SPEC = {"problem": {"name": "quartic"}, "train": {"steps": 20, "lr": 0.05},
        "axes": {"x0": {"linspace": [0.2, 2.0, 5]}, "optimizer": ["sgd", "adam"]}}

# A local stand-in for SLURM and gcloud: runs the job's script (each array task in turn, or an srun /
# --worker=all command as several local processes joined by a jax.distributed coordinator on 127.0.0.1).
FAKE = r'''#!{python}
import os, re, socket, subprocess, sys
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]


def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes(cmd, n, shell=False):
    addr = f"127.0.0.1:{{port()}}"
    procs = [subprocess.Popen(cmd, shell=shell, env={{**os.environ, "JAX_COORDINATOR_ADDRESS": addr,
             "JAX_NUM_PROCESSES": str(n), "JAX_PROCESS_ID": str(i)}}) for i in range(n)]
    sys.exit(max(p.wait(timeout=240) for p in procs))


if tool == "sbatch":
    script = args[-1]
    text = open(script).read()
    m = re.search(r"^#SBATCH --array=(\d+)-(\d+)", text, re.M)
    if "--parsable" in args:
        print("4242")
    if m:  # the array: FAKE_ARRAY (e.g. "1-3") shrinks it to a tiny size; tasks run one after another
        lo, hi = (int(x) for x in os.environ.get("FAKE_ARRAY", f"{{m.group(1)}}-{{m.group(2)}}").split("-"))
        for t in range(lo, hi + 1):
            env = {{**os.environ, "SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_MIN": str(lo),
                   "SLURM_ARRAY_TASK_MAX": str(hi), "SLURM_ARRAY_TASK_COUNT": str(hi - lo + 1),
                   "SLURM_CPUS_PER_TASK": "1"}}
            subprocess.run(["bash", script], env=env, check=True, stdout=sys.stderr)
    else:
        subprocess.run(["bash", script], check=True, stdout=sys.stderr)
elif tool == "srun":
    processes(args, int(os.environ.get("FAKE_NTASKS", "2")))
elif tool == "gcloud":
    cmd = args[args.index("--command") + 1]
    workers = int(os.environ.get("FAKE_NTASKS", "2")) if "--worker=all" in args else 1
    cmd = cmd.replace("cd ~/sweep", "cd " + os.environ["FAKE_HOME"])
    processes(cmd, workers, shell=True) if workers > 1 else sys.exit(subprocess.run(cmd, shell=True).returncode)
'''


@pytest.fixture
def cluster(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("sbatch", "srun", "gcloud"):
        (bin_ / tool).write_text(FAKE.format(python=sys.executable))
        (bin_ / tool).chmod(0o755)
    (bin_ / "sweep").write_text(f"#!/bin/bash\nexec {sys.executable} -m sweep.cli \"$@\"\n")
    (bin_ / "sweep").chmod(0o755)
    spec = tmp_path / "tiny.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "SWEEP_NO_CACHE": "1",
           "JAX_PLATFORMS": "cpu", "SPEC": str(spec), "FAKE_HOME": str(ROOT), "SWEEP_CPU_DEVICES": "1"}
    return tmp_path, env


def _single():
    return sweep.run(SPEC, progress=False)


def _run(script, env, cwd, timeout=300):
    r = subprocess.run(["bash", str(HERE / script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_every_recipe_is_tested_and_linked():
    readme = (ROOT / "README.md").read_text()
    names = sorted(p.name for p in HERE.iterdir() if p.suffix in (".sh", ".sbatch"))
    assert names == ["array.sbatch", "distributed_gpu.sbatch", "merge.sbatch", "submit.sh", "tpu_pod.sh"]
    assert "examples/cluster" in readme
    for name in names:  # every script is valid bash, and every sweep flag it uses exists
        assert subprocess.run(["bash", "-n", str(HERE / name)]).returncode == 0
        for flags in re.findall(r"sweep (?:run|merge|status|info)[^\n\"]*", (HERE / name).read_text()):
            for flag in re.findall(r"(--[a-z-]+)", flags):
                assert flag in _help(flags.split()[1]), (name, flag)


def _help(verb):
    return subprocess.run([sys.executable, "-m", "sweep.cli", verb, "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


@pytest.mark.slow
def test_slurm_array_and_dependent_merge(cluster):
    tmp, env = cluster
    env = {**env, "PARTS": str(tmp / "parts"), "OUT": str(tmp / "res" / "tiny.nc"), "FAKE_ARRAY": "1-2"}
    r = _run("submit.sh", env, tmp)
    assert sorted(p.name for p in (tmp / "parts").glob("*.nc")) == ["part1.nc", "part2.nc"]
    assert "2 shards: done 0-1" in r.stderr + r.stdout
    xr.testing.assert_identical(_single().drop_attrs(), xr.load_dataset(tmp / "res" / "tiny.nc").drop_attrs())


@pytest.mark.slow
@pytest.mark.parametrize("script", ["distributed_gpu.sbatch", "tpu_pod.sh"])
def test_distributed_recipes(cluster, script):
    tmp, env = cluster
    out = tmp / "res" / "tiny.nc"
    out.parent.mkdir()
    _run(script, {**env, "OUT": str(out)}, tmp)
    assert sorted(p.name for p in out.parent.glob("tiny.part*")) == ["tiny.part0of2.nc", "tiny.part1of2.nc"]
    xr.testing.assert_identical(_single().drop_attrs(), xr.load_dataset(out).drop_attrs())
