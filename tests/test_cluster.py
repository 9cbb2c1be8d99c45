"""Shards by trajectories, mixed hosts, merge's checks, --shard auto, status and cluster recipes."""
import os
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.api import shard_from_env, shard_span
from sweep.cli import main
from sweep.config import parse_spec
from sweep.merge import merge

ROOT = Path(__file__).resolve().parents[1]
# 12 trajectories; the categorical axis last, so the run order (compile groups one after another) is not C order
SPEC = {"problem": {"name": "quartic"}, "train": {"steps": 20, "lr": 0.05},
        "axes": {"x0": {"linspace": [0.2, 2.0, 6]}, "optimizer": ["sgd", "adam"]}}
N_TRAJ = 12


def _run_order_flat(p: np.ndarray) -> np.ndarray:
    """Flat (C-order) index of run-order position p for SPEC: group (optimizer) p // 6, x0 p % 6."""
    return (p % 6) * 2 + p // 6


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "one.nc"
    return sweep.run(SPEC, out=out, progress=False).load()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_shards_are_balanced_ranges_and_merge_identical(tmp_path, single, n):
    parts = [tmp_path / f"s{i}.nc" for i in range(n)]
    sizes = []
    for i, p in enumerate(parts):
        sweep.run(SPEC, out=p, shard=f"{i}/{n}", progress=False)
        with xr.open_dataset(p) as ds:
            lo, hi = int(ds.attrs["shard_start"]), int(ds.attrs["shard_stop"])
            sizes.append(hi - lo)
            # exactly the run-order positions [lo, hi), independently recomputed
            assert sorted(ds["index"].values.tolist()) == sorted(_run_order_flat(np.arange(lo, hi)).tolist())
            assert ds.sizes["trajectory"] == hi - lo
    assert sum(sizes) == N_TRAJ and max(sizes) - min(sizes) <= 1
    if n > N_TRAJ:
        assert min(sizes) == 0  # empty shards are valid parts
    m = merge(parts[::-1], tmp_path / "m.nc").load()
    xr.testing.assert_identical(single.drop_attrs(), m.drop_attrs())


def test_shard_span_partitions():
    for total in (0, 1, 5, 12, 8192):
        for n in (1, 2, 3, 7, 16, 9000):
            spans = [shard_span(total, (i, n)) for i in range(n)]
            assert spans[0][0] == 0 and spans[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            sizes = [b - a for a, b in spans]
            assert max(sizes) - min(sizes) <= 1


def test_empty_shard_cli_and_merge(tmp_path, single):
    """More shards than trajectories: the empty ones still write parts that merge accepts (exit 0)."""
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    n = 13
    for i in range(n):
        assert main(["run", str(spec), "--shard", f"{i}/{n}", "--out", str(tmp_path / f"p{i}.nc"), "-q"]) == 0
    with xr.open_dataset(tmp_path / "p12.nc") as ds:
        assert ds.sizes["trajectory"] == 0 and int(ds.attrs["part_trajectories"]) == 0
    assert main(["merge", *[str(tmp_path / f"p{i}.nc") for i in range(n)], "-o", str(tmp_path / "m.nc")]) == 0
    xr.testing.assert_identical(single.drop_attrs(), xr.load_dataset(tmp_path / "m.nc").drop_attrs())


def _cli(args, env=None, timeout=180):
    e = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_NO_CACHE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], env=e, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_mixed_hosts_merge_identical(tmp_path, single):
    """Shards on hosts with different device counts (and so different default chunk sizes) merge."""
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    for i, devices in ((0, "1"), (1, "2")):
        r = _cli(["run", str(spec), "--shard", f"{i}/2", "--out", str(tmp_path / f"p{i}.nc"), "-q"],
                 env={"SWEEP_CPU_DEVICES": devices, "XLA_FLAGS": ""})
        assert r.returncode == 0, r.stderr
    with xr.open_dataset(tmp_path / "p0.nc") as a, xr.open_dataset(tmp_path / "p1.nc") as b:
        assert int(a.attrs["device_count"]) == 1 and int(b.attrs["device_count"]) == 2
    m = merge([tmp_path / "p0.nc", tmp_path / "p1.nc"], tmp_path / "m.nc").load()
    xr.testing.assert_identical(single.drop_attrs(), m.drop_attrs())


@pytest.fixture(scope="module")
def two_parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("parts")
    parts = [d / f"p{i}.nc" for i in range(2)]
    for i, p in enumerate(parts):
        sweep.run(SPEC, out=p, shard=f"{i}/2", progress=False)
    return parts


def test_merge_refuses_a_part_of_another_dtype(tmp_path, two_parts):
    p64 = tmp_path / "p1_64.nc"
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    # in a subprocess: float64 turns on jax_enable_x64 for the rest of a process
    r = _cli(["run", str(spec), "--shard", "1/2", "--dtype", "float64", "--out", str(p64), "-q"])
    assert r.returncode == 0, r.stderr
    with pytest.raises(sweep.SpecError, match=r"p1_64\.nc.*dtype = 'float64'.*float32"):
        merge([two_parts[0], p64], tmp_path / "m.nc")
    assert not (tmp_path / "m.nc").exists()


@pytest.mark.parametrize("attr", ["jax_version", "sweep_version", "backend", "jaxlib_version", "device_kind"])
def test_merge_refuses_parts_from_other_software_or_devices(tmp_path, two_parts, attr):
    edited = tmp_path / "edited.nc"
    edited.write_bytes(two_parts[1].read_bytes())
    with netCDF4.Dataset(edited, "a") as nc:
        nc.setncattr(attr, "edited-" + str(nc.getncattr(attr)))
    with pytest.raises(sweep.SpecError, match=rf"edited\.nc.*{attr} = 'edited-"):
        merge([two_parts[0], edited], tmp_path / "m.nc")
    assert main(["merge", str(two_parts[0]), str(edited), "-o", str(tmp_path / "m.nc")]) == 2
    assert not (tmp_path / "m.nc").exists()


def test_merge_refuses_a_truncated_part(tmp_path, two_parts):
    edited = tmp_path / "short.nc"
    edited.write_bytes(two_parts[1].read_bytes())
    with netCDF4.Dataset(edited, "a") as nc:
        nc.setncattr("shard_start", int(nc.getncattr("shard_start")) + 1)
    with pytest.raises(sweep.SpecError, match=r"short\.nc.*shard 1/2.*expected 6"):
        merge([two_parts[0], edited], tmp_path / "m.nc")


def test_merge_partial(tmp_path, two_parts, single):
    with pytest.raises(sweep.SpecError, match=r"shard\(s\) 1 of 2 missing.*--partial"):
        merge([two_parts[0]], tmp_path / "m.nc")
    m = merge([two_parts[0]], tmp_path / "m.nc", partial=True).load()
    assert "1 of 2" in m.attrs["missing_shards"]
    mine = np.zeros(N_TRAJ, bool)
    mine[_run_order_flat(np.arange(6))] = True
    flat = lambda v: m[v].transpose("x0", "optimizer").values.ravel()  # noqa: E731
    ref = lambda v: single[v].transpose("x0", "optimizer").values.ravel()  # noqa: E731
    assert (flat("outcome")[~mine] == -1).all() and np.isnan(flat("final_loss")[~mine]).all()
    np.testing.assert_array_equal(flat("outcome")[mine], ref("outcome")[mine])
    np.testing.assert_array_equal(flat("final_loss")[mine], ref("final_loss")[mine])


# --------------------------------------------------------------------------- --shard auto

@pytest.mark.parametrize("env, want", [
    ({"SWEEP_SHARD": "3/8"}, (3, 8)),
    ({"SWEEP_SHARD": "1/2", "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}, (1, 2)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}, (5, 8)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "16", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "16"}, (0, 16)),
    ({"SLURM_ARRAY_TASK_ID": "16", "SLURM_ARRAY_TASK_COUNT": "16", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "16"}, (15, 16)),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_STEP": "2"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}, (2, 4)),
])
def test_shard_auto_reads_the_environment(env, want):
    assert shard_from_env(env) == want


@pytest.mark.parametrize("env, words", [
    ({}, ("SWEEP_SHARD", "SLURM_ARRAY_TASK_ID", "--shard I/N")),
    ({"SWEEP_SHARD": "4/4"}, ("SWEEP_SHARD", "0 <= I < N")),
    ({"SWEEP_SHARD": "x"}, ("SWEEP_SHARD", "'x'")),
    ({"SLURM_ARRAY_TASK_ID": "3"}, ("SLURM_ARRAY_TASK_COUNT",)),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "7"}, ("not evenly spaced",)),
])
def test_shard_auto_refusals(env, words):
    with pytest.raises(sweep.SpecError) as e:
        shard_from_env(env)
    for w in words:
        assert w in str(e.value)


def test_shard_auto_cli(tmp_path, monkeypatch, capsys, single):
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    for k in list(os.environ):
        if k.startswith("SLURM_") or k == "SWEEP_SHARD":
            monkeypatch.delenv(k)
    assert main(["run", str(spec), "--shard", "auto", "--out", str(tmp_path / "p.nc"), "-q"]) == 2
    assert "SLURM_ARRAY_TASK_ID" in capsys.readouterr().err and not (tmp_path / "p.nc").exists()
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    for task in (1, 2):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        assert main(["run", str(spec), "--shard", "auto", "--out", str(tmp_path / f"p{task}.nc"), "-q"]) == 0
    with xr.open_dataset(tmp_path / "p2.nc") as ds:
        assert (int(ds.attrs["shard"]), int(ds.attrs["n_shards"])) == (1, 2)
    m = merge([tmp_path / "p1.nc", tmp_path / "p2.nc"], tmp_path / "m.nc").load()
    xr.testing.assert_identical(single.drop_attrs(), m.drop_attrs())


# --------------------------------------------------------------------------- sweep status

def test_status_names_missing_shards_and_the_commands(tmp_path, capsys):
    d = tmp_path / "parts"
    d.mkdir()
    for i in (0, 2):
        sweep.run(SPEC, out=d / f"part{i}.nc", shard=f"{i}/4", progress=False)
    other = {**SPEC, "train": {"steps": 7}}
    sweep.run(other, out=tmp_path / "stray.nc", shard="0/2", progress=False)
    assert main(["status", str(d), str(tmp_path / "stray.nc")]) == 1
    out = capsys.readouterr().out
    assert "4 shards: done 0, 2 (2/4" in out and "missing 1, 3" in out
    assert f"sweep run SPEC --shard 1/4 --out {d / 'part1.nc'}" in out
    assert f"sweep run SPEC --shard 3/4 --out {d / 'part3.nc'}" in out
    assert "another spec" in out and "stray.nc" in out
    assert main(["merge", str(d / "part0.nc"), str(d / "part2.nc"), "-o", str(tmp_path / "m.nc")]) == 2
    assert "shard(s) 1, 3 of 4 missing" in capsys.readouterr().err
    for i in (1, 3):  # the printed commands, run as printed (SPEC -> the spec), finish the job
        spec = tmp_path / "s.toml"
        spec.write_text(parse_spec(SPEC).to_toml())
        cmd = next(line.strip() for line in out.splitlines() if f"--shard {i}/4" in line)
        assert main(cmd.replace("SPEC", str(spec)).split()[1:] + ["-q"]) == 0
    assert main(["status", str(d)]) == 0
    out = capsys.readouterr().out
    merge_cmd = next(line.split(":", 1)[1].strip() for line in out.splitlines() if "sweep merge" in line)
    assert main(merge_cmd.split()[1:]) == 0


def test_status_of_an_interrupted_run_and_a_complete_one(tmp_path, capsys):
    out = tmp_path / "r.nc"
    sweep.run(SPEC, out=out, chunk_size=4, progress=False)
    assert main(["status", str(out)]) == 0
    assert "complete" in capsys.readouterr().out
    # an unfinished run: its parts folder with some chunks (the store of a run killed half-way)
    from sweep.store import PartStore

    st = PartStore(tmp_path / "u.nc")
    st.create({"spec_hash": parse_spec(SPEC).hash(), "chunk": 4, "n_chunks": 4, "shard": None})
    st.write(0, np.arange(4), {"outcome": np.zeros(4, np.int8)})
    assert main(["status", str(tmp_path / "u.nc")]) == 1
    text = capsys.readouterr().out
    assert "1/4 chunks done" in text and f"sweep run SPEC --out {tmp_path / 'u.nc'} --resume" in text


# --------------------------------------------------------------------------- jax.distributed

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_two_processes_merge_identical(tmp_path, single):
    """The README's recipe on one machine: 2 processes (2 and 1 CPU devices), a coordinator on 127.0.0.1."""
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    port = _free_port()
    procs = []
    for pid, devices in ((0, "2"), (1, "1")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_NO_CACHE": "1", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
               "SWEEP_CPU_DEVICES": devices, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(pid)}
        procs.append(subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(spec), "--out",
                                       str(tmp_path / "big.nc"), "--distributed", "-q"], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    parts = sorted(tmp_path.glob("big.part*of2.nc"))
    assert [p.name for p in parts] == ["big.part0of2.nc", "big.part1of2.nc"]
    assert not (tmp_path / "big.nc").exists()
    m = merge(parts, tmp_path / "big.nc").load()
    xr.testing.assert_identical(single.drop_attrs(), m.drop_attrs())


def test_multi_process_run_needs_out(monkeypatch):
    monkeypatch.setattr(sweep.api.jax, "process_count", lambda: 2)
    with pytest.raises(sweep.SpecError, match="multi-process run .* needs out"):
        sweep.run(SPEC, progress=False)


def test_distributed_refuses_shard_and_reports_a_failed_start(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    assert main(["run", str(spec), "--distributed", "--shard", "0/2", "--out", str(tmp_path / "r.nc")]) == 2
    assert "--distributed with --shard" in capsys.readouterr().err
    r = _cli(["run", str(spec), "--distributed", "--out", str(tmp_path / "r.nc")],
             env={"JAX_NUM_PROCESSES": "two", "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"})
    assert r.returncode == 2 and "JAX_NUM_PROCESSES='two'" in r.stderr


def test_merge_refuses_one_device_and_several_for_networks(tmp_path):
    """Networks' blocked products differ in the last bits on one CPU device (README): such parts are refused."""
    spec = {"problem": {"name": "mlp", "widths": [4], "data": {"n": 16}}, "train": {"steps": 5},
            "axes": {"seed": [0, 1, 2, 3]}}
    parts = [tmp_path / f"p{i}.nc" for i in range(2)]
    for i, p in enumerate(parts):
        sweep.run(spec, out=p, shard=f"{i}/2", progress=False)
    for p, count in zip(parts, (1, 2)):
        with netCDF4.Dataset(p, "a") as nc:
            nc.setncattr("device_count", count)
    with pytest.raises(sweep.SpecError, match=r"p0\.nc.*one CPU device.*p1\.nc.*SWEEP_CPU_DEVICES=2"):
        merge(parts, tmp_path / "m.nc")
    with netCDF4.Dataset(parts[0], "a") as nc:
        nc.setncattr("device_count", 4)
    assert merge(parts, tmp_path / "m.nc").sizes["seed"] == 4


def test_an_interrupted_shard_resumes_and_merges(tmp_path, monkeypatch, single):
    from sweep.store import PartStore

    real = PartStore.write
    calls = {"n": 0}

    def write_then_die(self, i, index, res):
        real(self, i, index, res)
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed")

    parts = [tmp_path / f"p{i}.nc" for i in range(2)]
    monkeypatch.setattr(PartStore, "write", write_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        sweep.run(SPEC, out=parts[1], shard="1/2", chunk_size=2, progress=False)
    monkeypatch.setattr(PartStore, "write", real)
    assert len(PartStore(parts[1]).done()) == 1
    with pytest.raises(sweep.SpecError, match="belongs to shard"):
        sweep.run(SPEC, out=parts[1], shard="0/2", resume=True, progress=False)
    sweep.run(SPEC, out=parts[1], shard="1/2", resume=True, progress=False)
    sweep.run(SPEC, out=parts[0], shard="0/2", progress=False)
    xr.testing.assert_identical(single.drop_attrs(), merge(parts, tmp_path / "m.nc").load().drop_attrs())


@pytest.mark.slow
def test_distributed_peer_killed_before_joining_fails_the_other_in_bounded_time(tmp_path):
    """Process 1 is SIGKILLed at once: process 0 must not wait forever (SWEEP_DISTRIBUTED_TIMEOUT) and exits non-zero."""
    import time

    spec = tmp_path / "s.toml"
    spec.write_text(parse_spec(SPEC).to_toml())
    port = _free_port()
    procs = []
    for pid in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_NO_CACHE": "1", "JAX_PLATFORMS": "cpu",
               "SWEEP_CPU_DEVICES": "1", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
               "JAX_PROCESS_ID": str(pid), "SWEEP_DISTRIBUTED_TIMEOUT": "5"}
        procs.append(subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(spec), "--out",
                                       str(tmp_path / "big.nc"), "--distributed", "-q"], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    procs[1].kill()
    try:
        _, err = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode != 0, err
    assert time.monotonic() - t0 < 120
    assert not list(tmp_path.glob("big.part*"))
