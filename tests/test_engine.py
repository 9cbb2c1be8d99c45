"""Invariants of the batched engine: it must equal the one-trajectory reference, whatever the layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import sweep
from sweep import engine
from sweep.activations import ACTIVATIONS, get_activation
from sweep.optimizers import OPTIMIZERS
from sweep.outcomes import Outcome
from sweep.step import make_trajectory, run_one

from helpers import neuron_spec


def _reference(spec_dict, dtype="float32"):
    """Every trajectory of a spec run one at a time through step.run_one (no vmap over trajectories)."""
    spec = sweep.parse_spec(spec_dict)
    plan = engine.make_plan(spec, 1, dtype)
    out = {}
    for c in engine.chunks(plan):
        v, keys, data_key = engine.chunk_inputs(plan, c)
        problem = engine.problem_for(plan, c.group)
        traj = make_trajectory(problem, spec.train["optimizer"], spec.train["steps"], spec.thresholds(),
                               jnp.dtype(dtype), spec.train["lr_mode"])
        data = engine.dataset(spec)
        for j in range(c.valid):  # a chunk holds one trajectory per device
            one = {k: x[j] for k, x in v.items()}
            res = jax.jit(lambda key, one: run_one(problem, traj, spec.train["steps"], key, one, data))(keys[j], one)
            for k, x in res.items():
                out.setdefault(k, np.zeros(spec.n_trajectories, np.asarray(x).dtype))[c.index[j]] = x
    return {k: x.reshape(spec.shape) for k, x in out.items()}


def test_vmapped_sweep_equals_loop_over_single_trajectories():
    spec = neuron_spec(steps=600, lr=0.3, axes={"w0": {"linspace": [-2, 2, 5]}, "b0": {"linspace": [-1, 1, 4]}})
    ds = sweep.run(spec, progress=False)
    ref = _reference(spec)
    np.testing.assert_array_equal(ds.outcome.values, ref["outcome"])
    np.testing.assert_array_equal(ds.stop_step.values, ref["stop_step"])
    ok = ds.outcome.values == Outcome.CONVERGED
    assert ok.sum() >= 5
    for name in ("final_w", "final_b", "final_loss"):
        np.testing.assert_allclose(ds[name].values[ok], ref[name][ok], rtol=1e-4, atol=1e-6)


def test_results_identical_for_any_chunk_size():
    spec = neuron_spec(steps=120, axes={"w0": {"linspace": [-2, 2, 11]}, "b0": {"linspace": [-2, 2, 7]},
                                        "lr": [0.05, 0.2]})
    a = sweep.run(spec, chunk_size=7, progress=False)
    b = sweep.run(spec, chunk_size=64, progress=False)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_early_exit_does_not_change_results():
    spec = neuron_spec(steps=200)
    a = sweep.run(spec, progress=False)
    b = sweep.run({**spec, "run": {"early_exit": False}}, progress=False)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_same_spec_same_bits():
    spec = {**neuron_spec(steps=80), "problem": {"name": "neuron", "data": {"dist": "normal", "batch": 32,
                                                                             "fresh": True}}}
    a, b = sweep.run(spec, progress=False), sweep.run(spec, progress=False)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_netcdf_round_trip_is_identical(tmp_path):
    spec = neuron_spec(steps=60, axes={"w0": [-1.0, 0.5], "optimizer": ["sgd", "adam"], "lr": {"logspace": [-2, -1, 3]}})
    path = tmp_path / "r.nc"
    ds = sweep.run(spec, out=path, progress=False)
    back = xr.open_dataset(path)
    xr.testing.assert_identical(ds, back.load())
    for name in ds.data_vars:
        assert back[name].dtype == ds[name].dtype
    assert back.outcome.attrs["flag_meanings"].split() == [o.name.lower() for o in Outcome]
    assert list(back.optimizer.values) == ["sgd", "adam"]
    assert back.lr.attrs["spacing"] == "log"
    assert "[problem]" in back.attrs["spec"] and back.attrs["dtype"] == "float32"


def test_existing_output_is_never_overwritten(tmp_path):
    path = tmp_path / "r.nc"
    path.write_text("precious")
    with pytest.raises(sweep.SpecError, match="already exists"):
        sweep.run(neuron_spec(steps=5), out=path, progress=False)
    assert path.read_text() == "precious"
    sweep.run(neuron_spec(steps=5), out=path, overwrite=True, progress=False)
    assert xr.open_dataset(path).outcome.size == 63


def test_new_continuous_values_do_not_recompile():
    base = neuron_spec(steps=40, axes={"w0": {"linspace": [-1, 1, 8]}, "lr": [0.1, 0.2]}, optimizer="adam")
    sweep.run(base, chunk_size=16, progress=False)
    n = engine.TRACE_COUNT["n"]
    changed = neuron_spec(steps=40, axes={"w0": {"linspace": [-3, 2, 8]}, "lr": [0.01, 0.5]}, optimizer="adam",
                          b1=0.5, b2=0.9, eps=1e-6)
    changed["init"] = {"b0": 0.3}
    sweep.run(changed, chunk_size=16, progress=False)
    assert engine.TRACE_COUNT["n"] == n
    sgd = {**changed, "train": {**changed["train"], "optimizer": "sgd"}}
    sweep.run(sgd, chunk_size=16, progress=False)
    n2 = engine.TRACE_COUNT["n"]
    assert n2 > n  # a categorical change compiles (its start/advance/finish functions) ...
    sweep.run({**sgd, "axes": {"w0": {"linspace": [-2, 2, 8]}, "lr": [0.3, 0.03]}}, chunk_size=16, progress=False)
    assert engine.TRACE_COUNT["n"] == n2  # ... once


def test_a_nan_trajectory_leaves_its_neighbours_bit_identical():
    """x0 = 1e30 makes x^4 overflow to inf at step 0; the other runs must not notice."""
    grid = [0.1, 0.5, 1.0, 1e30, 1.2]
    spec = {"problem": {"name": "quartic"}, "train": {"steps": 100, "lr": 0.1}, "axes": {"x0": grid}}
    a = sweep.run(spec, progress=False)
    b = sweep.run({**spec, "axes": {"x0": [0.1, 0.5, 1.0, 0.7, 1.2]}}, progress=False)
    assert a.outcome.values[3] in (Outcome.NAN, Outcome.DIVERGED)
    keep = [0, 1, 2, 4]
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values[keep], b[name].values[keep], err_msg=name)


def test_nan_is_frozen_at_the_step_it_happened():
    spec = {"problem": {"name": "function", "loss": "math_losses:sqrt_loss"}, "train": {"steps": 50, "lr": 0.3},
            "init": {"x0": 1.0}, "axes": {"x0": [1.0, 0.04]}}
    ds = sweep.run(spec, progress=False)
    assert ds.outcome.values[1] == Outcome.NAN  # sqrt(x) steps past 0 -> sqrt(negative) = nan
    assert np.isfinite(ds.final_x.values[1]) and ds.stop_step.values[1] > 0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains_the_neuron(name):
    lr = {"adadelta": 1.0, "adagrad": 0.3}.get(name, 0.05)
    ds = sweep.run(neuron_spec(steps=800, lr=lr, optimizer=name, axes={"w0": [0.5, 1.5], "b0": [0.3, -0.2]}),
                   progress=False)
    assert np.all(ds.min_loss.values < ds.final_loss.values.max() + 1.0)
    assert np.all(ds.min_loss.values < 0.05), (name, ds.min_loss.values)
    assert not np.any(np.isin(ds.outcome.values, [Outcome.NAN, Outcome.DIVERGED]))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_runs_and_is_finite(name):
    ds = sweep.run(neuron_spec(steps=50, activation=name, axes={"w0": [0.5, -0.5]}), progress=False)
    assert np.all(np.isfinite(ds.final_loss.values))
    f = get_activation(name)
    z = jnp.linspace(-2, 2, 9)
    g = jax.vmap(jax.grad(lambda t: f(t, 0.1)))(z)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("g0", [0.0, 0.5, 1.0])
def test_relu_derivative_at_zero_is_the_chosen_one(g0):
    relu = get_activation("relu", g0)
    assert float(jax.grad(lambda z: relu(z, 0.0))(0.0)) == g0
    assert float(jax.grad(lambda z: relu(z, 0.0))(1e-30)) == 1.0
    assert float(jax.grad(lambda z: relu(z, 0.0))(-1e-30)) == 0.0
    assert float(jax.grad(jax.grad(lambda z: relu(z, 0.0)))(0.0)) == 0.0  # zero curvature everywhere
    leaky = get_activation("leaky_relu", g0)
    assert np.isclose(float(jax.grad(lambda z: leaky(z, 0.1))(0.0)), (1 - g0) * 0.1 + g0)


def test_float64_end_to_end():
    ds = sweep.run({"problem": {"name": "quartic"}, "train": {"steps": 50}, "axes": {"x0": [0.5, 2.0]}},
                   dtype="float64", progress=False)
    assert ds.final_x.dtype == np.float64 and ds.attrs["dtype"] == "float64"


@pytest.mark.parametrize("extra", [
    {},
    {"problem": {"name": "neuron", "data": {"dist": "normal", "batch": 16, "fresh": True}}},
    {"train": {"steps": 300, "lr": 0.1, "optimizer": "momentum"}, "record": {"stride": 3}},
])
def test_compaction_gives_identical_results(extra):
    """Packing live runs together between segments must not change a single bit."""
    spec = {**neuron_spec(steps=300, lr=0.3, axes={"b0": {"linspace": [-1, 2, 9]}, "w0": {"linspace": [-1, 2, 13]},
                                                   "activation": ["relu", "leaky_relu"]}), **extra}
    a = sweep.run({**spec, "run": {"compact": False}}, chunk_size=16, progress=False)
    b = sweep.run({**spec, "run": {"compact": True, "segments": 7, "window": 3}}, chunk_size=16, progress=False)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_programs_with_batched_linalg_run_on_one_device():
    """Batched LAPACK kernels wait on the CPU thread pool that the devices' programs occupy: with one CPU device
    per core that deadlocks, so such programs (Newton's solve here) are never split over devices."""
    def fns(spec_dict):
        plan = engine.make_plan(sweep.parse_spec(spec_dict))
        return engine.chunk_fn(plan, plan.groups[0])

    newton = fns(neuron_spec(steps=5, optimizer="newton", axes={"w0": {"linspace": [0.5, 2, 8]}}))
    sgd = fns(neuron_spec(steps=5, axes={"w0": {"linspace": [0.5, 2, 8]}}))
    assert newton.sharding is None
    assert (sgd.sharding is None) == (len(engine.local_devices()) == 1)
    closed = jax.make_jaxpr(lambda a, b: jnp.linalg.solve(a, b))(jnp.eye(3), jnp.ones(3))
    assert "lu" in engine.primitives(closed) and not engine.primitives(closed) <= {"jit"}


def test_compile_time_is_reported_apart_from_the_run():
    import sweep

    spec = {"problem": {"name": "quartic"}, "train": {"steps": 100, "lr": 0.01},
            "axes": {"x0": {"linspace": [-1.0, 1.0, 17]}}, "run": {"check_every": 7}}  # a new program
    first = sweep.run(spec, progress=False).attrs
    again = sweep.run({**spec, "axes": {"x0": {"linspace": [-1.5, 1.0, 17]}}}, progress=False).attrs
    assert 0 < first["compile_time_s"] <= first["compute_time_s"]
    assert again["compile_time_s"] < 0.5 * first["compile_time_s"]  # same program, new values: no compile
    assert first["run_trajectory_steps_per_s"] >= first["compute_trajectory_steps_per_s"]
