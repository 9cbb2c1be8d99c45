"""The two published maps from the papers' own draws, run as plain specs (experiments/sohl_dickstein_fractal.toml,
experiments/holzmuller_inconsistency.toml), against independent NumPy float64 references (tests/reference_papers.py).
Gallery: results/sohl_dickstein.md, results/holzmuller.md (the same checks at larger sizes)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sweep

from reference_papers import (holzmueller_crossing, holzmueller_lambda_max, sohl_dickstein_losses,
                              sohl_dickstein_trainable)

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the specs name their .npz relative to the repository root


@pytest.mark.parametrize("name", ["sohl_dickstein_fractal", "holzmuller_inconsistency"])
def test_committed_paper_files_are_their_generators_output(tmp_path, name):
    """The .npz the specs read is what its generator writes (run in a subprocess: the Sohl-Dickstein generator
    switches JAX's threefry mode to the notebook's, which must not leak into this session)."""
    out = tmp_path / f"{name}.npz"
    subprocess.run([sys.executable, str(EXP / f"{name}_data.py"), "--out", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    with np.load(out) as new, np.load(EXP / f"{name}.npz") as old:
        assert sorted(new.files) == sorted(old.files)
        for k in new.files:
            assert new[k].dtype == np.float64, k
            np.testing.assert_array_equal(new[k], old[k], err_msg=k)


def test_the_paper_files_have_the_papers_shapes():
    with np.load(EXP / "sohl_dickstein_fractal.npz") as z:  # 272 = 16*16 + 16 points, one per parameter
        assert z["x"].shape == (272, 16) and z["y"].shape == (272, 1) and z["W0"].shape == (16, 16)
    with np.load(EXP / "holzmuller_inconsistency.npz") as z:
        assert z["p"].shape == (4096, 6) and np.all(z["p"].sum(1) == 1.0)
        np.testing.assert_array_equal(z["p"] * 256, np.round(z["p"] * 256))  # counts / 256, exact in float64
        assert z["a"].shape == z["w"].shape == (4096, 16)


VIEWS = {"full": (-3.0, 6.0, -3.0, 6.0), "zoom": (3.5, 5.5, 1.5, 2.3)}  # log10 of lr0 from, to; lr1 from, to


@pytest.mark.slow
@pytest.mark.parametrize("view", list(VIEWS))
def test_sohl_dickstein_map_is_the_references(view):
    """16 x 16 pixels, 100 steps (the notebook's default), tanh: the full view, and a window on the boundary where
    every run is chaotic. The two programs differ only by summation order (rounding, 1e-16 from the first step).
    Over the run that difference grows at most like exp(lyapunov * steps) (the engine's finite-time Lyapunov
    exponent): with lyapunov <= 0.1 to at most 1e-16 * e^10 ~ 1e-12, too little to move a tail ratio across 1 unless
    it is within 1e-12 of it; a verdict can differ only where lyapunov > 0.1 (a run far from the threshold needs
    about ln(1e16)/100 = 0.37). Where it is that chaotic the verdict is as fragile in the reference itself, which
    shows how fragile: the pixels it flips when W0 moves by one ulp. Bound: every differing pixel has
    lyapunov > 0.1, and at most twice the reference's own one-ulp flips plus one differ (measured: full view 0 and
    0; gallery 64 x 64 full view 6 and 6, zoom 107 and 106, every differing pixel with lyapunov > 0.35). Runs at
    rates below 1 (lyapunov ~ 1e-5: nothing grows) give the reference's tail ratio to 1e-12."""
    n, steps = 16, 100
    v = VIEWS[view]
    ds = sweep.run(EXP / "sohl_dickstein_fractal.toml", progress=False,
                   set=[f"train.steps={steps}", "outcome.lyapunov=true", f"axes.lr1={{logspace=[{v[2]}, {v[3]}, {n}]}}",
                        f"axes.lr0={{logspace=[{v[0]}, {v[1]}, {n}]}}"])
    assert ds.attrs["dtype"] == "float64" and dict(ds.sizes) == {"lr1": n, "lr0": n}
    with np.load(EXP / "sohl_dickstein_fractal.npz") as z:
        x, y, W0, W1 = z["x"], z["y"], z["W0"], z["W1"]
    L1, L0 = np.meshgrid(ds.lr1.values, ds.lr0.values, indexing="ij")
    losses = sohl_dickstein_losses(x, y, W0, W1, L0.ravel(), L1.ravel(), steps)
    ref = sohl_dickstein_trainable(losses).reshape(n, n)
    ulp = sohl_dickstein_trainable(sohl_dickstein_losses(x, y, np.nextafter(W0, np.inf), W1, L0.ravel(), L1.ravel(),
                                                         steps)).reshape(n, n)
    eng = ds.trainable.values == 1
    assert 0.2 < ref.mean() < 0.8  # both verdicts
    dis = eng != ref
    assert np.all(ds.lyapunov.values[dis] > 0.1)
    assert dis.sum() <= 2 * (ref != ulp).sum() + 1
    if view == "full":
        calm = (L0 < 1) & (L1 < 1)
        assert np.all(ds.lyapunov.values[calm] < 1e-3)
        r_ref = (np.mean(losses[:, -20:], axis=1) / losses[:, 0]).reshape(n, n)
        np.testing.assert_allclose(ds.tail_loss_ratio.values[calm], r_ref[calm], rtol=1e-12)


@pytest.mark.slow
def test_holzmueller_crossings_are_the_references():
    """The first 128 of the paper's width-16 networks, 2000 steps. Each network's step 1/lambda_max in the file
    (the paper's block formula) is the inverse top eigenvalue of the reference's Gauss-Newton Gram matrix to 1e-12.
    While every kink stays off the data GD at that step is a contraction towards the fit: the two programs stay
    within accumulated rounding of each other (at most steps x a few operations x 1.1e-16 ~ 1e-12 after 2000
    steps), so no verdict is near enough to its threshold (max |b/a| within 1e-12 of 1) to flip: the crossed map and
    every first crossing step are identical, and the final losses of the networks that never crossed agree to
    1e-12. After a crossing, units switch on and off at data points and each switch amplifies the rounding
    difference (measured 1e-7 at worst over 1,024 networks x 10,000 steps): those losses are only required to be
    the same minimum to 1e-6."""
    K, steps = 128, 2000
    ds = sweep.run(EXP / "holzmuller_inconsistency.toml", progress=False,
                   set=[f"train.steps={steps}", f"axes.init_row={{range={K}}}"])
    assert ds.attrs["dtype"] == "float64"
    with np.load(EXP / "holzmuller_inconsistency.npz") as z:
        x, y, p, a, w, lr = (z[k] for k in ("x", "y", "p", "a", "w", "lr"))
    lam = holzmueller_lambda_max(x, p[:K], a[:K], np.zeros_like(a[:K]), w[:K])
    np.testing.assert_allclose(1 / lam, lr[:K], rtol=1e-12)
    r = holzmueller_crossing(x, y, p[:K], a[:K], w[:K], lr[:K], steps)
    assert 0.1 < r["crossed"].mean() < 0.9
    np.testing.assert_array_equal(ds.kink_reached_data.values == 1, r["crossed"])
    np.testing.assert_array_equal(ds.kink_reached_data_step.values, r["cross_step"])
    c = r["crossed"]
    np.testing.assert_allclose(ds.final_loss.values[~c], r["final_loss"][~c], rtol=1e-12)
    np.testing.assert_allclose(ds.final_loss.values[c], r["final_loss"][c], rtol=1e-6)
