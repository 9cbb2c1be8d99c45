"""Several local devices: the trajectory batch is sharded over a 1-D mesh; results must not change."""
import os
import subprocess
import sys

import pytest
import xarray as xr

SCRIPT = r"""
import sys, jax, sweep
spec = {"problem": {"name": "neuron", "data": {"dist": "normal", "batch": 32, "fresh": True}},
        "train": {"steps": 150, "lr": 0.1, "optimizer": "momentum"},
        "axes": {"w0": {"linspace": [-2, 2, 13]}, "b0": {"linspace": [-2, 2, 9]}, "seed": {"range": 2}}}
ds = sweep.run(spec, chunk_size=%d, progress=False)
ds.attrs = {"device_count": len(jax.devices())}
ds.to_netcdf(sys.argv[1])
"""


def _run(tmp_path, n_dev, chunk):
    out = tmp_path / f"d{n_dev}_{chunk}.nc"
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_dev}", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SCRIPT % chunk, str(out)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return xr.open_dataset(out)


@pytest.mark.slow
def test_four_devices_give_the_single_device_result(tmp_path):
    one = _run(tmp_path, 1, 64)
    four = _run(tmp_path, 4, 64)
    assert one.attrs["device_count"] == 1 and four.attrs["device_count"] == 4
    xr.testing.assert_identical(one.drop_attrs(), four.drop_attrs())
    odd = _run(tmp_path, 4, 30)  # rounded up to a multiple of 4
    xr.testing.assert_identical(one.drop_attrs(), odd.drop_attrs())


MLP_SCRIPT = r"""
import sys, jax, sweep
spec = {"problem": {"name": "mlp", "widths": [8], "data": {"n": 64}}, "train": {"steps": 40},
        "axes": {"optimizer": ["sgd", "adam"], "lr": {"logspace": [-3, 0, 8]}, "init_scale": {"linspace": [0.2, 2, 8]}}}
ds = sweep.run(spec, chunk_size=%d, progress=False)
ds.attrs = {"device_count": len(jax.devices())}
ds.to_netcdf(sys.argv[1])
"""


@pytest.mark.slow
def test_networks_give_the_same_bits_on_two_and_four_devices(tmp_path):
    # (a single CPU device can differ in the last bits: the README's stated limit)
    def run(n_dev, chunk):
        out = tmp_path / f"mlp{n_dev}_{chunk}.nc"
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_dev}", "JAX_PLATFORMS": "cpu"}
        r = subprocess.run([sys.executable, "-c", MLP_SCRIPT % chunk, str(out)], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        return xr.open_dataset(out)

    two, four = run(2, 32), run(4, 64)
    assert two.attrs["device_count"] == 2 and four.attrs["device_count"] == 4
    xr.testing.assert_identical(two.drop_attrs(), four.drop_attrs())
