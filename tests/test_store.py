"""Streaming storage, resume after kill -9 / Ctrl-C, shards and merge."""
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.merge import merge
from sweep.store import range_boxes

SPEC = {"problem": {"name": "neuron", "data": {"dist": "normal", "n": 64}}, "train": {"steps": 100, "lr": 0.1},
        "axes": {"w0": {"linspace": [-2, 2, 9]}, "optimizer": ["sgd", "adam"], "b0": {"linspace": [-2, 2, 7]}}}


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (4, 1, 3)])
def test_range_boxes_cover_exactly_the_range(shape):
    n = int(np.prod(shape))
    for a, b in itertools.combinations(range(n + 1), 2):
        cells = []
        for starts, sizes in range_boxes(a, b, shape):
            block = np.arange(n).reshape(shape)[tuple(slice(s, s + z) for s, z in zip(starts, sizes))]
            cells.extend(block.ravel())
        assert cells == list(range(a, b))


def test_streamed_file_equals_in_memory_result(tmp_path):
    a = sweep.run(SPEC, progress=False)
    b = sweep.run(SPEC, out=tmp_path / "r.nc", chunk_size=5, progress=False)
    xr.testing.assert_identical(a.drop_attrs(), b.load().drop_attrs())
    assert not (tmp_path / "r.nc.parts").exists()
    assert sorted(os.listdir(tmp_path)) == ["r.nc"]


def test_shards_merge_into_the_single_run_file(tmp_path):
    a = sweep.run(SPEC, progress=False)
    parts = [tmp_path / f"p{i}.nc" for i in range(3)]
    for i, p in enumerate(parts):
        sweep.run(SPEC, out=p, chunk_size=4, shard=f"{i}/3", progress=False)
    m = merge(parts[::-1], tmp_path / "m.nc")
    xr.testing.assert_identical(a.drop_attrs(), m.load().drop_attrs())
    with pytest.raises(sweep.SpecError, match="missing"):
        merge(parts[:2], tmp_path / "m2.nc")
    with pytest.raises(sweep.SpecError, match="more than once"):
        merge(parts + [parts[0]], tmp_path / "m3.nc")
    other = tmp_path / "other.nc"
    sweep.run({**SPEC, "train": {"steps": 50}}, out=other, chunk_size=4, shard="0/3", progress=False)
    with pytest.raises(sweep.SpecError, match="different specs"):
        merge([other] + parts[1:], tmp_path / "m4.nc")
    assert not (tmp_path / "m2.nc").exists() and not (tmp_path / "m4.nc").exists()


def _spec_file(tmp_path, steps=3000, nw=24, nb=16):
    p = tmp_path / "spec.toml"
    p.write_text(f"""
[problem]
name = "neuron"
data = {{ dist = "normal", n = 128 }}
[train]
steps = {steps}
lr = 0.001
optimizer = "adam"
[run]
early_exit = false
[axes]
w0 = {{ linspace = [-3.0, 3.0, {nw}] }}
b0 = {{ linspace = [-3.0, 3.0, {nb}] }}
""")
    return p


def _cli(*args):
    return [sys.executable, "-m", "sweep.cli", *map(str, args)]


def _wait_parts(parts_dir: Path, k: int, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if parts_dir.exists() and len(list(parts_dir.glob("chunk_*.npz"))) >= k:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before {k} parts were written: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("timeout waiting for parts")


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_uninterrupted_result(tmp_path):
    spec = _spec_file(tmp_path)
    ref = tmp_path / "ref.nc"
    assert subprocess.run(_cli("run", spec, "--out", ref, "--chunk-size", 32, "--quiet")).returncode == 0
    out = tmp_path / "r.nc"
    for k in (1, 4, 9):  # kill at several points of the run
        proc = subprocess.Popen(_cli("run", spec, "--out", out, "--chunk-size", 32, "--quiet",
                                     *(["--resume"] if out.with_name("r.nc.parts").exists() else [])),
                                stderr=subprocess.PIPE, text=True)
        _wait_parts(tmp_path / "r.nc.parts", k, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not out.exists()
    # an existing partial run is refused without --resume, and continued with it
    r = subprocess.run(_cli("run", spec, "--out", out, "--chunk-size", 32, "--quiet"), capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run(_cli("run", spec, "--out", out, "--quiet", "--resume"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = xr.open_dataset(ref), xr.open_dataset(out)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert not (tmp_path / "r.nc.parts").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_a_chunk_and_says_how_to_resume(tmp_path, sig, code):
    """Ctrl-C or SIGTERM (a batch system's stop): the chunk in flight finishes, the resume command is
    printed, the exit status is 128 + the signal. stderr is not a terminal: plain progress lines."""
    spec = _spec_file(tmp_path)
    out = tmp_path / "r.nc"
    proc = subprocess.Popen(_cli("run", spec, "--out", out, "--chunk-size", 32), stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SWEEP_PROGRESS_EVERY": "0"})
    _wait_parts(tmp_path / "r.nc.parts", 2, proc)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == code, err
    name = signal.Signals(sig).name
    assert f"{name}: stopping after the current chunk" in err and "Traceback" not in err
    assert f"resume with  sweep run {spec} --out {out} --resume" in err
    progress = [line for line in err.splitlines() if line.startswith("sweep x3000 steps: ")]
    assert progress and all("/384 traj (" in line for line in progress), err  # lines, not a redrawn bar
    assert "\r" not in err
    assert len(list((tmp_path / "r.nc.parts").glob("chunk_*.npz"))) >= 2
    r = subprocess.run(_cli("run", spec, "--out", out, "--quiet", "--resume"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert xr.open_dataset(out).outcome.size == 24 * 16


def test_resume_refuses_a_different_spec(tmp_path):
    out = tmp_path / "r.nc"
    sweep.run(SPEC, out=out, progress=False)
    with pytest.raises(sweep.SpecError, match="different spec"):
        sweep.run({**SPEC, "train": {"steps": 99}}, out=out, resume=True, progress=False)
    ds = sweep.run(SPEC, out=out, resume=True, progress=False)  # complete: nothing to do
    assert ds.outcome.size == 9 * 2 * 7


def test_corrupt_output_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(sweep.SpecError, match="not a readable"):
        sweep.load(bad)


def test_variables_of_only_some_groups_survive_files_and_merge(tmp_path):
    """prelu adds final_alpha, maxout final_w1/final_b1, bias=false drops final_b: NaN where absent."""
    spec = {"problem": {"name": "neuron", "data": {"n": 64}}, "train": {"steps": 50},
            "axes": {"activation": ["relu", "prelu", "maxout"], "w0": [0.5, -0.5], "bias": [True, False]}}
    a = sweep.run(spec, progress=False)
    assert {"final_alpha", "final_w1", "final_b1", "final_b"} <= set(a.data_vars)
    assert np.isnan(a.final_alpha.sel(activation="relu")).all()
    assert np.isfinite(a.final_alpha.sel(activation="prelu")).all()
    b = sweep.run(spec, out=tmp_path / "r.nc", chunk_size=2, progress=False)
    xr.testing.assert_identical(a.drop_attrs(), b.load().drop_attrs())
    parts = [tmp_path / f"p{i}.nc" for i in range(2)]
    for i, p in enumerate(parts):
        sweep.run(spec, out=p, chunk_size=2, shard=f"{i}/2", progress=False)
    xr.testing.assert_identical(a.drop_attrs(), merge(parts, tmp_path / "m.nc").load().drop_attrs())


def _quickstart(optimizer_first: bool, n: int = 32, steps: int = 5):
    """The README quickstart spec, shrunk: a (w0, b0) grid and the categorical axis first or last."""
    grid = {"w0": {"linspace": [-3.0, 3.0, n]}, "b0": {"linspace": [-3.0, 3.0, n]}}
    opt = {"optimizer": ["sgd", "momentum", "adam"]}
    return {"problem": {"name": "neuron", "activation": "relu", "data": {"dist": "normal", "batch": 64, "fresh": True}},
            "train": {"steps": steps, "optimizer": "sgd", "lr": 0.1},
            "axes": {**opt, **grid} if optimizer_first else {**grid, **opt}}


def test_assembly_takes_the_same_time_whatever_the_axis_order(tmp_path, monkeypatch):
    """The quickstart's categorical axis last used to make each of its values a separate write (379 s
    against 42 s first at full size). Timed: the CPU time of assembling the file (this thread's, so
    other processes on the machine do not count), the least of 4 interleaved runs per order."""
    import dask  # noqa: F401 - xarray imports its duck-array modules once (seconds): not in the timing

    import sweep.api as api
    import sweep.store as store

    writes, cpu = {}, {"first": [], "last": []}
    real_write, real_assemble = store._write_slab, api.assemble

    def counted(variables, bufs, a, b, shape):
        writes[key] = writes.get(key, 0) + len(list(store.range_boxes(a, b, shape)))
        return real_write(variables, bufs, a, b, shape)

    def timed(*args, **kwargs):
        t = time.thread_time()
        try:
            return real_assemble(*args, **kwargs)
        finally:
            cpu[key].append(time.thread_time() - t)

    monkeypatch.setattr(store, "_write_slab", counted)
    monkeypatch.setattr(api, "assemble", timed)
    for rep in range(4):
        for key in ("first", "last"):
            ds = sweep.run(_quickstart(key == "first"), out=tmp_path / f"{key}.nc", overwrite=True, progress=False)
            assert 0 < ds.attrs["assemble_time_s"] < ds.attrs["wall_time_s"]
            assert ds.attrs["compute_time_s"] < ds.attrs["wall_time_s"]
            ds.close()
    # the grid is one slab: one box write per run, whatever the order
    assert writes["first"] == writes["last"] == 4
    best = {k: min(v) for k, v in cpu.items()}
    assert max(best.values()) < 1.5 * min(best.values()), cpu
    a, b = (xr.open_dataset(tmp_path / f"{k}.nc").load() for k in ("first", "last"))
    assert a.outcome.dims == ("optimizer", "w0", "b0") and b.outcome.dims == ("w0", "b0", "optimizer")
    xr.testing.assert_identical(a.drop_attrs().transpose(*b.outcome.dims), b.drop_attrs())


@pytest.mark.parametrize("slab_bytes", [1, 700, 5000])
def test_assembly_in_many_slabs_equals_the_in_memory_result(tmp_path, monkeypatch, slab_bytes):
    """Slabs smaller than a chunk, than a row, than the grid: the same file (parts kept between slabs)."""
    import sweep.store as store

    monkeypatch.setattr(store, "SLAB_BYTES", slab_bytes)
    a = sweep.run(SPEC, progress=False)
    b = sweep.run(SPEC, out=tmp_path / "r.nc", chunk_size=5, progress=False)
    xr.testing.assert_identical(a.drop_attrs(), b.load().drop_attrs())


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (4, 1, 3), (5, 70000)])
@pytest.mark.parametrize("elements", [1, 4, 12, 1000, 10 ** 6])
def test_slab_size_is_whole_rows_or_whole_chunks(shape, elements):
    from sweep.store import _hdf_chunks, slab_size

    n = int(np.prod(shape))
    chunks = _hdf_chunks(shape)
    s = slab_size(shape, chunks, elements)
    assert 1 <= s <= max(n, 1)
    if n <= elements:
        assert s == n
    else:  # a slab never cuts a row of the dimensions inside the one it advances along ...
        inner = [int(np.prod(shape[k:])) for k in range(len(shape))] + [1]
        assert any(s % r == 0 and (r <= elements or r == 1) for r in inner)
        # ... and is at most the budget unless one HDF5 chunk along that dimension is bigger
        assert s <= max(elements, int(np.prod(chunks)))


@pytest.mark.slow
def test_a_second_writer_of_a_live_run_is_refused_and_a_dead_ones_lock_is_taken(tmp_path):
    import socket

    from sweep.cli import main

    spec = _spec_file(tmp_path, steps=2_000_000, nw=2, nb=1)  # one chunk of tens of seconds
    out = tmp_path / "r.nc"
    lock = tmp_path / "r.nc.lock"
    first = subprocess.Popen(_cli("run", spec, "--out", out, "--quiet"), stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
            assert first.poll() is None and time.time() - t0 < 120, "the first run did not take the lock"
            time.sleep(0.05)
        other = subprocess.run(_cli("run", spec, "--out", out, "--quiet"), capture_output=True, text=True)
        assert other.returncode == 2, other.stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in other.stderr and "Traceback" not in other.stderr
        assert len(other.stderr.strip().splitlines()) == 1
        assert main(["run", str(spec), "--out", str(out), "--quiet", "--overwrite"]) == 2  # this process: a third
        for how in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(sweep.SpecError, match=f"pid {first.pid}"):
                sweep.run(str(spec), out=out, progress=False, **how)
        assert first.poll() is None  # the refused writers did not disturb it
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock.exists()  # left by the killed run: its pid is dead, so the lock is stale
    (tmp_path / "q").mkdir()
    quick = _spec_file(tmp_path / "q", steps=10, nw=2, nb=1)
    assert main(["run", str(quick), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert not lock.exists() and xr.open_dataset(out).outcome.size == 2


def test_lock_file_contents_decide_without_flock(tmp_path, monkeypatch):
    """Where flock is unavailable: a dead pid on this host is stale; a live one, or another host's, is refused."""
    import json
    import socket

    import sweep.lock as lock

    class NoFlock:
        LOCK_EX = LOCK_NB = 0

        @staticmethod
        def flock(fd, op):
            raise OSError(38, "Function not implemented")

    monkeypatch.setattr(lock, "fcntl", NoFlock)
    out = tmp_path / "r.nc"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid, host, refused in ((dead.pid, socket.gethostname(), False), (live.pid, socket.gethostname(), True),
                                   (dead.pid, "elsewhere.example", True)):
            lock.lock_path(out).write_text(json.dumps({"pid": pid, "host": host, "started": "t", "command": "c"}))
            if refused:
                with pytest.raises(lock.OutputLocked, match=f"pid {pid} on host {host}"):
                    lock.OutputLock(out).acquire()
            else:
                with lock.OutputLock(out):
                    assert json.loads(lock.lock_path(out).read_text())["pid"] == os.getpid()
                assert not lock.lock_path(out).exists()
    finally:
        live.kill()
        live.wait()


TIMING = ("created", "wall_time_s", "compute_time_s", "first_call_s", "assemble_time_s", "trajectory_steps_per_s",
          "compute_trajectory_steps_per_s", "trajectories_run", "compile_time_s",
          "run_trajectory_steps_per_s")


def _without_timing(ds):
    return ds.drop_attrs().assign_attrs({k: v for k, v in ds.attrs.items() if k not in TIMING})


def _interrupted_before_assembly(out, monkeypatch, spec=SPEC, chunk_size=6):
    """A run whose chunks are all written as parts but whose file is never assembled."""
    import sweep.api as api

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(api, "assemble", fail)
        with pytest.raises(KeyboardInterrupt):
            sweep.run(spec, out=out, chunk_size=chunk_size, progress=False)
    return sorted((out.parent / (out.name + ".parts")).glob("chunk_*.npz"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "zero"])
def test_a_damaged_part_is_named_deleted_and_recomputed_on_resume(tmp_path, monkeypatch, capsys, damage):
    from sweep.store import PartStore

    ref = sweep.run(SPEC, out=tmp_path / "ref.nc", chunk_size=6, progress=False)
    out = tmp_path / "r.nc"
    parts = _interrupted_before_assembly(out, monkeypatch)
    assert len(parts) == 2 * -(-9 * 7 // 6)  # (w0, b0) in chunks of 6, per optimizer
    bad = parts[3]
    data = bytearray(bad.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[100:4196] = bytes(min(4096, len(data) - 100))
    bad.write_bytes(bytes(data))
    written = []
    real = PartStore.write
    monkeypatch.setattr(PartStore, "write", lambda self, i, *a: (written.append(i), real(self, i, *a))[1])
    capsys.readouterr()
    ds = sweep.run(SPEC, out=out, resume=True, progress=False)
    err = capsys.readouterr().err
    assert bad.name in err and "damaged" in err
    assert written == [3]  # only the damaged chunk was computed again
    xr.testing.assert_identical(_without_timing(ref.load()), _without_timing(ds.load()))


def test_assembly_names_a_part_damaged_after_the_resume_check(tmp_path, monkeypatch):
    from sweep.store import DamagedPart, PartStore, read_part

    out = tmp_path / "r.nc"
    parts = _interrupted_before_assembly(out, monkeypatch)
    monkeypatch.setattr(PartStore, "verify", lambda self: [])  # damage that happens after the check
    data = bytearray(parts[5].read_bytes())
    data[-30] ^= 1
    parts[5].write_bytes(bytes(data))
    with pytest.raises(DamagedPart, match=parts[5].name):
        read_part(parts[5])
    with pytest.raises(sweep.io.StorageError, match=parts[5].name):
        sweep.run(SPEC, out=out, resume=True, progress=False)
    assert not out.exists()


def test_stale_temporary_files_are_removed(tmp_path, monkeypatch):
    out = tmp_path / "r.nc"
    _interrupted_before_assembly(out, monkeypatch)
    stale = [tmp_path / ".r.nc.k3j2.tmp", tmp_path / "r.nc.parts" / ".chunk_4.x8a.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = tmp_path / ".other.nc.k3j2.tmp"
    keep.write_bytes(b"someone else's")
    sweep.run(SPEC, out=out, resume=True, progress=False)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert sorted(os.listdir(tmp_path)) == [".other.nc.k3j2.tmp", "r.nc"]


def test_info_check_names_a_damaged_variable(tmp_path, capsys):
    """4 KiB zeroed inside a finished file's data: info --check reads everything and names what is damaged."""
    import netCDF4

    from sweep.cli import main

    src = tmp_path / "r.nc"
    sweep.run({**SPEC, "axes": {"w0": {"linspace": [-2, 2, 64]}, "b0": {"linspace": [-2, 2, 64]}}}, out=src,
              progress=False)
    with netCDF4.Dataset(src) as nc:  # every variable carries HDF5 Fletcher-32 checksums
        assert all(v.filters()["fletcher32"] for k, v in nc.variables.items() if k not in ("w0", "b0") or v.ndim)
    assert main(["info", str(src), "--check"]) == 0
    assert "checksums match" in capsys.readouterr().out
    size = src.stat().st_size
    for offset in range(size // 2 // 4096 * 4096, size, 4096):  # the data lie after the metadata
        bad = tmp_path / "bad.nc"
        data = bytearray(src.read_bytes())
        data[offset:offset + 4096] = bytes(len(data[offset:offset + 4096]))
        bad.write_bytes(bytes(data))
        try:
            ds = xr.open_dataset(bad)
        except Exception:  # noqa: BLE001 - metadata hit: look further on
            continue
        unreadable = set()
        for k in ds.variables:
            try:
                ds[k].load()
            except RuntimeError:
                unreadable.add(k)
        ds.close()
        if unreadable:
            break
    else:
        pytest.fail("no 4 KiB block of the data region damaged a variable")
    capsys.readouterr()
    assert main(["info", str(bad)]) == 0  # the metadata are fine ...
    assert main(["info", str(bad), "--check"]) == 1  # ... the data are not
    err = capsys.readouterr().err
    named = {line.split("'")[1] for line in err.splitlines() if line.startswith("damaged: variable")}
    assert named == unreadable, err
