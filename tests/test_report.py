"""sweep report: the page's payload against the result, block modes against a loop reference, and
the rendered page in headless Chromium (pixels at known cells, facet switching, no requests)."""
from __future__ import annotations

import base64
import collections
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep.outcomes import COLORS, Outcome, outcome_attrs
from sweep.report import block_mode

SPEC = {"problem": {"name": "neuron", "data": {"n": 64}}, "train": {"steps": 50, "lr": 0.1},
        "axes": {"w0": {"linspace": [-2, 2, 16]}, "b0": {"linspace": [-2, 2, 16]}, "optimizer": ["sgd", "adam"]},
        "record": {"stride": 4}, "events": {"crossed": {"param": "w", "above": 0.0}}}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    nc = d / "small.nc"
    sweep.save(sweep.run(SPEC, progress=False), nc)
    ds = sweep.load(nc).load()
    return ds, nc, ds.sweep.report(d / "small.html")


def payload(page: str) -> dict:
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def decode(field) -> np.ndarray:
    raw = base64.b64decode(field["data"] if isinstance(field, dict) else field)
    return np.frombuffer(raw, {"f4": "<f4", "i2": "<i2", "i4": "<i4"}[field["type"]] if isinstance(field, dict)
                         else np.uint8)


def test_block_mode_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    codes = rng.choice(7, size=(2, 23, 17), p=[.4, .1, .1, .1, .1, .1, .1]).astype(np.uint8)
    for f in (1, 2, 5):
        mode, rep = block_mode(codes, f)
        assert mode.shape == (2, -(-23 // f), -(-17 // f))
        for k in range(2):
            for by in range(mode.shape[1]):
                for bx in range(mode.shape[2]):
                    cells = [(iy, ix) for iy in range(by * f, min(by * f + f, 23))
                             for ix in range(bx * f, min(bx * f + f, 17))]  # row-major inside the block
                    cnt = collections.Counter(int(codes[k, iy, ix]) for iy, ix in cells)
                    top = max(cnt.values())
                    want = min(c for c, n in cnt.items() if n == top)  # ties: the lower code
                    assert mode[k, by, bx] == want
                    first = next(iy * 17 + ix for iy, ix in cells if codes[k, iy, ix] == want)
                    assert rep[k, by, bx] == first


def test_page_is_self_contained_and_its_payload_is_the_result(small):
    ds, nc, html_path = small
    page = html_path.read_text()
    assert re.search(r"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';", page)
    assert not re.search(r"https?://", page), "a URL in the page"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page), "an external resource"
    p = payload(page)
    g = p["grid"]
    assert (g["x"], g["y"], g["facets"], g["block"]) == ("w0", "b0", ["optimizer"], 1)
    want = ds.outcome.transpose("optimizer", "b0", "w0").values.astype(np.uint8).ravel()
    np.testing.assert_array_equal(decode(g["outcome"]), want)
    for k, opt in enumerate(["sgd", "adam"]):
        assert g["counts"][k] == [int((ds.outcome.sel(optimizer=opt) == o).sum()) for o in Outcome] + [0]
    fields = {f["name"]: decode(f) for f in g["fields"]}
    assert set(fields) == {"final_loss", "converge_step", "stop_step", "crossed_step"}
    np.testing.assert_array_equal(fields["final_loss"], ds.final_loss.transpose("optimizer", "b0", "w0").values.ravel())
    np.testing.assert_array_equal(fields["crossed_step"], ds.crossed_step.transpose("optimizer", "b0", "w0").values.ravel())
    assert [o["color"] for o in p["outcomes"]][:len(Outcome)] == [COLORS[o] for o in Outcome]
    # fractions: the page's numbers are the counts of the file's codes (Wilson bounds are tested in analysis)
    n_adam = int((ds.outcome.sel(optimizer="adam") == Outcome.DEAD).sum())
    assert f"<b style='color:{COLORS[Outcome.DEAD]}'>dead</b> {n_adam / 256:.1%}" in page.split("optimizer=adam")[1]
    fd = sweep.fractal_dimension(ds.outcome.sel(optimizer="sgd"), "w0", "b0")
    assert p["dimension"][0]["counts"] == [int(c) for c in fd["counts"]]
    assert p["trajectories"]["n"] == ds.sizes["traj"] and p["trajectories"]["px"] == "w"
    assert ds.attrs["spec"].strip() in p["prov"]["command"] and "sweep run spec.toml --out small.nc" in p["prov"]["command"]


def test_large_grid_is_blocked_by_mode_and_stays_small(tmp_path):
    rng = np.random.default_rng(1)
    n = 1024  # 2**20 cells
    w = np.linspace(-3, 3, n)
    codes = np.where(np.add.outer(w, w) > 0, 0, 2).astype(np.int8)
    codes[rng.random((n, n)) < 0.2] = 4
    ds = xr.Dataset({"outcome": (("w0", "b0"), codes, outcome_attrs()),
                     "final_loss": (("w0", "b0"), rng.random((n, n)).astype(np.float32)),
                     "converge_step": (("w0", "b0"), np.where(codes == 0, 7, -1).astype(np.int32))},
                    coords={"w0": ("w0", w, {"spacing": "linear"}), "b0": ("b0", w, {"spacing": "linear"})})
    page = ds.sweep.report(tmp_path / "big.html").read_text()
    assert len(page.encode()) < 5 * 2 ** 20
    g = payload(page)["grid"]
    assert g["block"] == 2 and "blocks of 2 x 2 cells" in page
    mode, _ = block_mode(codes.T[None].astype(np.uint8), 2)  # (y, x) = (b0, w0)
    np.testing.assert_array_equal(decode(g["outcome"]), mode.ravel())
    off = np.frombuffer(base64.b64decode(g["rep"]["data"]), np.uint8).reshape(512, 512)  # the hover's cell
    by, bx = np.mgrid[:512, :512]
    shown = codes.T[by * 2 + off // 2, bx * 2 + off % 2]
    np.testing.assert_array_equal(shown, mode[0])
    loss = decode(g["fields"][0]).reshape(512, 512)
    np.testing.assert_array_equal(loss, ds.final_loss.values.T[by * 2 + off // 2, bx * 2 + off % 2])


def test_cli_report_refuses_bad_input(small, tmp_path, capsys):
    from sweep.cli import main

    _, nc, _ = small
    assert main(["report", str(nc), "-o", str(tmp_path / "r.html"), "--x", "lr"]) == 2
    assert "x='lr' is not a dimension" in capsys.readouterr().err
    assert main(["report", str(nc), "-o", str(tmp_path / "r.png")]) == 2
    assert main(["report", str(nc), "-o", str(tmp_path / "r.html")]) == 0
    assert main(["report", str(nc), "-o", str(tmp_path / "r.html")]) == 2  # exists


# ----------------------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
           "--window-size=1200,1400", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
           "--no-first-run", "--disable-extensions", "--disable-background-networking"]


def browse(url: str, tmp_path, what: str):
    """Open url in headless Chromium: its DOM after the scripts ran, or a screenshot (PIL image)."""
    if what == "dom":
        r = subprocess.run([CHROMIUM, *OFFLINE, "--dump-dom", url],  # real time: data-ready-ms is wall time
                           capture_output=True, text=True, timeout=60)
        return r.stdout
    png = tmp_path / f"shot{abs(hash(url))}.png"
    subprocess.run([CHROMIUM, *OFFLINE, "--virtual-time-budget=3000", f"--screenshot={png}", url],
                   capture_output=True, timeout=60)
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB"))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium); "
                    "the browser checks of the report did not run")
def test_report_in_headless_chromium(small, tmp_path):
    ds, _, html_path = small
    url = html_path.resolve().as_uri()
    codes = {o: ds.outcome.sel(optimizer=o).transpose("b0", "w0").values for o in ("sgd", "adam")}
    differ = np.argwhere(codes["sgd"] != codes["adam"])
    assert differ.size, "the test result should differ between optimizers"
    cells = [tuple(differ[0]), tuple(differ[len(differ) // 2]), (0, 0), (15, 15)]
    rgb = {o: tuple(int(COLORS[o][i:i + 2], 16) for i in (1, 3, 5)) for o in Outcome}
    for opt in ("sgd", "adam"):
        dom = browse(f"{url}#optimizer={opt}", tmp_path, "dom")
        body = re.search(r"<body([^>]*)>", dom).group(1)
        assert 'data-violations="0"' in body, body
        assert int(re.search(r'data-ready-ms="(\d+)"', body).group(1)) < 2000
        canvas = re.search(r'<canvas id="map"([^>]*)>', dom).group(1)
        left, top, scale, facet = (int(re.search(f'data-{k}="(\\d+)"', canvas).group(1))
                                   for k in ("left", "top", "scale", "facet"))
        assert facet == ["sgd", "adam"].index(opt)
        assert not re.search(r"https?://", dom)
        shot = browse(f"{url}#optimizer={opt}", tmp_path, "png")
        for iy, ix in cells:  # row iy counts up from the bottom of the map
            px = shot[top + (15 - iy) * scale + scale // 2, left + ix * scale + scale // 2]
            assert tuple(px) == rgb[Outcome(int(codes[opt][iy, ix]))], (opt, iy, ix, px)
    dom = browse(f"{url}#optimizer=adam&region=2,3,9,12&hover=5,11", tmp_path, "dom")
    tip = re.search(r'<div id="tip"[^>]*>(.*?)</div>', dom, re.S).group(1)
    cell = ds.sel(optimizer="adam").isel(w0=5, b0=11)
    assert f"w0 = {float(cell.w0):.4g}" in tip and f"b0 = {float(cell.b0):.4g}" in tip
    assert f"outcome: {Outcome(int(cell.outcome)).name.lower()}" in tip
    for name in ("converge_step", "crossed_step", "stop_step"):
        v = int(cell[name])
        assert f"{name.replace('_', ' ')}: {v if v >= 0 else 'never (-1)'}" in tip
    assert f"final loss: {float(np.float32(cell.final_loss)):.4g}" in tip
    cmd = re.search(r'<pre id="cmd">(.*?)</pre>', dom, re.S).group(1).replace("&#39;", "'")
    w, b = ds.w0.values, ds.b0.values
    assert f"--set 'axes.w0={{ linspace = [{w[2]:.6g}, {w[9]:.6g}, 16] }}'" in cmd
    assert f"--set 'axes.b0={{ linspace = [{b[3]:.6g}, {b[12]:.6g}, 16] }}'" in cmd
    assert "--set 'axes.optimizer=[\"adam\"]'" in cmd.replace("&quot;", '"')


def test_missing_codes_are_their_own_colour_and_axes_default_to_the_largest(tmp_path):
    codes = np.zeros((3, 10, 12), np.int8)  # (seed, lr, w0)
    codes[1, 4, 5] = -1  # not a flag value
    ds = xr.Dataset({"outcome": (("seed", "lr", "w0"), codes, outcome_attrs())},
                    coords={"seed": [0, 1, 2], "lr": np.linspace(0.1, 1, 10), "w0": np.linspace(-1, 1, 12)})
    g = payload(ds.sweep.report(tmp_path / "m.html").read_text())["grid"]
    assert (g["x"], g["y"], g["facets"]) == ("w0", "lr", ["seed"])
    assert g["counts"][1] == [119, 0, 0, 0, 0, 0, 0, 1]
    assert decode(g["outcome"]).reshape(3, 10, 12)[1, 4, 5] == len(Outcome)
    with pytest.raises(ValueError, match="two different dimensions"):
        ds.isel(lr=0, seed=0).sweep.report(tmp_path / "n.html")
