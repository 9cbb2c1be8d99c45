"""Result files follow the CF conventions (checked by cfchecker) and merge keeps every attribute."""
import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.merge import merge

SPEC = {"problem": {"name": "neuron", "data": {"dist": "normal", "n": 32}},
        "train": {"steps": 20, "lr": 0.1},
        "record": {"stride": 1},
        "axes": {"w0": [0.5, 1.0], "optimizer": ["sgd", "adam"], "lr": {"logspace": [-2, -1, 2]},
                 "pair": {"zip": {"momentum": [0.1, 0.9], "activation": ["relu", "tanh"]}}}}

# cfchecker reads the CF standard-name, area-type and region tables from the web by default; these
# files use none of them, so empty tables (the format cfchecker parses) keep the check offline.
STANDARD_NAMES = """<?xml version="1.0"?>
<standard_name_table><version_number>0</version_number><last_modified>none</last_modified>
</standard_name_table>
"""
NAME_LIST = """<?xml version="1.0"?>
<standard_list><version_number>0</version_number><date>none</date></standard_list>
"""


def _cf_messages(path, tmp_path) -> dict:
    try:
        from cfchecker.cfchecks import CFChecker
    except (ImportError, OSError) as e:  # OSError: cfunits could not load the UDUNITS-2 C library
        pytest.skip(f"cfchecker unusable here ({type(e).__name__}: {e}); install it with "
                    "'pip install cfchecker' and the UDUNITS-2 library (Debian: apt-get install libudunits2-0)")
    (tmp_path / "names.xml").write_text(STANDARD_NAMES)
    (tmp_path / "list.xml").write_text(NAME_LIST)
    checker = CFChecker(cfStandardNamesXML=str(tmp_path / "names.xml"), cfAreaTypesXML=str(tmp_path / "list.xml"),
                        cfRegionNamesXML=str(tmp_path / "list.xml"), silent=True)
    checker.checker(str(path))
    found = {"FATAL": [], "ERROR": [], "WARN": []}
    for scope, entries in next(iter(checker.all_results.values())).items():
        items = entries.items() if scope == "variables" else [(scope, entries)]
        for name, cats in items:
            for cat in found:
                found[cat] += [f"{name}: {m}" for m in (cats.get(cat, []) if isinstance(cats, dict) else [])]
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cf")
    single = d / "r.nc"
    sweep.run(SPEC, out=single, progress=False).close()
    parts = [d / f"p{i}.nc" for i in range(2)]
    for i, p in enumerate(parts):
        sweep.run(SPEC, out=p, chunk_size=2, shard=f"{i}/2", progress=False).close()
    merge(parts, d / "m.nc").close()
    return single, d / "m.nc"


@pytest.mark.parametrize("which", ["single", "merged"])
def test_result_files_pass_the_cf_checker(files, tmp_path, which):
    path = files[0] if which == "single" else files[1]
    found = _cf_messages(path, tmp_path)
    assert not found["FATAL"] and not found["ERROR"], found
    # the one warning left: a categorical axis is a character array named as its dimension (so that
    # xarray reads it back as the axis' index); CF's coordinate variables are numeric
    assert all(w.startswith(("optimizer:", "activation:")) for w in found["WARN"]), found["WARN"]


def test_units_are_cf_and_categorical_axes_are_character_arrays(files):
    import netCDF4

    with netCDF4.Dataset(files[0]) as nc:
        assert nc.variables["optimizer"].dtype == "S1" and nc.variables["optimizer"].ndim == 2
        for name in ("converge_step", "stop_step", "step", "w0", "lr", "final_w"):
            assert nc.variables[name].units == "1", name
        assert all(getattr(v, "units", "1") != "steps" for v in nc.variables.values())
    ds = xr.open_dataset(files[0])
    assert list(ds.optimizer.values) == ["sgd", "adam"] and ds.sel(optimizer="adam").outcome.ndim == 3


def test_merge_keeps_every_attribute(files):
    a, m = xr.open_dataset(files[0]), xr.open_dataset(files[1])
    assert m.active_fraction.attrs["long_name"] and m.active_fraction.attrs["units"] == "1"
    def plain(attrs):
        return {k: np.asarray(v).tolist() for k, v in attrs.items()}

    for name in a.variables:
        assert plain(m[name].attrs) == plain(a[name].attrs), name
    timing = {"created", "wall_time_s", "compute_time_s", "first_call_s", "assemble_time_s", "trajectory_steps_per_s",
              "compute_trajectory_steps_per_s", "trajectories_run", "compile_time_s",
          "run_trajectory_steps_per_s", "chunk_size"}  # (the shards ran chunks of 2)
    assert set(m.attrs) == set(a.attrs)
    assert {k: v for k, v in m.attrs.items() if k not in timing} == {k: v for k, v in a.attrs.items() if k not in timing}
