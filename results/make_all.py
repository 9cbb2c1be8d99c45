"""Regenerate the gallery: every seed question answered by a spec, a figure and findings.

Usage: python results/make_all.py [ENTRY ...]   (default: all; see ENTRIES)
Writes results/<entry>*.png, small .nc files (< 5 MB), results/<entry>.md and results/README.md.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

import sweep
from sweep import plot
from sweep.analysis import fractions
from sweep.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "results"
EXP = ROOT / "experiments"
ENTRIES: dict = {}


def entry(name, title):
    def deco(fn):
        ENTRIES[name] = (title, fn)
        return fn
    return deco


def run(spec, name=None, **kw):
    """Run a spec; keep the .nc beside the figures when it is small."""
    t = time.perf_counter()
    ds = sweep.run(spec, progress=False, **kw)
    wall = time.perf_counter() - t
    if name:
        path = RES / f"{name}.nc"
        path.unlink(missing_ok=True)
        sweep.save(ds, path)
        if path.stat().st_size > 5 * 2 ** 20:
            path.unlink()
    return ds.load(), wall


def frac_line(ds, code_names=None, over=None) -> str:
    """Outcome fractions with Wilson 95% intervals (every outcome that occurs, unless names are given)."""
    fr = fractions(ds, over=over).load()
    parts = []
    for name in code_names or [o.name.lower() for o in Outcome]:
        if name in fr.outcome.values and (code_names or float(fr.sel(outcome=name).fraction) > 0):
            f = fr.sel(outcome=name)
            parts.append(f"{name} {float(f.fraction):.1%} [{float(f.lower):.1%}, {float(f.upper):.1%}]")
    return ", ".join(parts)


def save(fig_or_artist, name):
    path = RES / f"{name}.png"
    plot.save(fig_or_artist, path)
    return path.name


def add_to_legend(ax, *artists):
    """Append artists to the outcome legend that the basin map put beside the axes."""
    leg = ax.get_legend()
    handles = list(leg.legend_handles) if leg is not None else []
    ax.legend(handles=handles + list(artists), loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              fontsize="small", title="outcome", title_fontsize="small")


def neuron_loss_surface(n=20000, seed=0):
    """L(w, b) = E[(relu(w x + b) - relu(x))^2], x ~ N(0, 1) (Monte Carlo, numpy)."""
    x = np.random.default_rng(seed).standard_normal(n)
    y = np.maximum(x, 0)

    def loss(W, B):
        out = np.empty(W.shape)
        for idx in np.ndindex(W.shape):
            out[idx] = np.mean((np.maximum(W[idx] * x + B[idx], 0) - y) ** 2)
        return out
    return loss


def crossing_text(ds) -> str:
    """Which recorded paths from w0 < 0 cross w = 0, and where the converging w0 < 0 starts lie."""
    W, B = np.meshgrid(ds.w0.values, ds.b0.values, indexing="ij")
    o = ds.outcome.values
    conv = (W < 0) & (o == Outcome.CONVERGED)
    neg = ds.traj_w0.values < 0
    crossed = np.nanmax(ds.rec_w.values, axis=1) > 0
    rec = {c: (neg & (ds.rec_outcome.values == c)) for c in (Outcome.CONVERGED, Outcome.STUCK, Outcome.DEAD)}
    sign = "all with b0 > 0" if np.all(B[conv] > 0) else f"{np.mean(B[conv] > 0):.0%} with b0 > 0"
    fw = ds.final_w.values
    rest = (W < 0) & np.isin(o, [Outcome.STUCK, Outcome.DEAD])
    return (f"Paths from w0 < 0 cross w = 0 exactly when they converge: {np.mean(o[W < 0] == Outcome.CONVERGED):.1%} "
            f"of the w0 < 0 starts converge, {sign} (median b0/|w0| = {np.median(B[conv] / -W[conv]):.2f}: "
            "the unit then starts active on x < b0/|w0|, positive inputs included, where the target pulls w up); "
            f"{int(crossed[rec[Outcome.CONVERGED]].sum())} of the {int(rec[Outcome.CONVERGED].sum())} recorded "
            f"converged paths from w0 < 0 cross it, {int(crossed[rec[Outcome.STUCK]].sum())} of the "
            f"{int(rec[Outcome.STUCK].sum())} stuck and {int(crossed[rec[Outcome.DEAD]].sum())} of the "
            f"{int(rec[Outcome.DEAD].sum())} dead ones do (right panel); on the whole grid every converged run from "
            f"w0 < 0 ends at w in [{fw[conv].min():.3f}, {fw[conv].max():.3f}] and every stuck or dead one at w < 0 "
            f"({int((fw[rest] < 0).sum()):,} of {int(rest.sum()):,}).")


MOMENTA = [0.5, 0.7, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95]


def momentum_scan_spec() -> dict:
    """The w0 = -10 run of the question with momentum swept (relu, lr 0.01)."""
    from sweep.config import tomllib

    d = tomllib.loads((EXP / "seed000_w0_minus10.toml").read_text())
    d["train"]["optimizer"] = "momentum"
    d["axes"] = {"momentum": MOMENTA}
    d.pop("record", None)
    return d


def momentum_text(dz, dm) -> str:
    """Why momentum (0.9) converges from w0 = -10 although the seed answer says it does not help."""
    lr = float(sweep.parse_spec(EXP / "seed000_w0_minus10.toml").train["lr"])
    m = 0.9  # the momentum default
    w, v, t = -10.0, 0.0, 0  # heavy ball on L = (w^2 + 1)/2 (w < 0, x ~ N(0, 1)): v = m v + w; w -= lr v
    while w < 0 and t < 10 ** 6:
        v, t = m * v + w, t + 1
        w -= lr * v
    j = [k for k in range(dz.sizes["traj"]) if str(dz.traj_optimizer.values[k]) == "momentum"
         and str(dz.traj_activation.values[k]) == "relu"][0]
    seen = int(dz.step.values[np.flatnonzero(dz.rec_w.values[j] > 0)[0]])
    scan = ", ".join(f"{float(k):g}: {Outcome(int(dm.outcome.sel(momentum=k))).name.lower()}" for k in dm.momentum.values)
    return (f"- Momentum + relu converges from w0 = -10, against the seed answer's report that momentum does not help "
            f"there. On the w < 0 side the loss is exactly (w^2 + 1)/2 in expectation (x ~ N(0, 1)), so heavy-ball "
            f"momentum m at step lr is a linear oscillator in w (curvature 1): w(t+1) = (1 + m - lr) w(t) - m w(t-1), underdamped "
            f"iff lr > (1 - sqrt(m))^2. With the default m = 0.9 and lr = {lr:g} ({lr:g} > "
            f"{(1 - m ** 0.5) ** 2:.4f}) w overshoots 0 whatever w0 < 0 is: the recursion crosses at step {t}, the "
            f"recorded run at step {seen}; on the w > 0 side the loss pulls w to 1. At lr = {lr:g} that needs "
            f"m > (1 - sqrt(lr))^2 = {(1 - lr ** 0.5) ** 2:.2f}; swept from w0 = -10 (relu, 2000 steps): {scan}. "
            "The answer does not say which momentum it tried at w0 = -10 (its w0 = -1 code uses 0.9, and Keras's "
            "SGD momentum is this same recursion): any m <= 0.81 gives its result, 0.9 does not (the 'dead' runs are "
            "the stuck branch reaching float32 underflow, as in the lr map below).")


@entry("seed000", "Why can't a single ReLU learn a ReLU? (seed 000)")
def seed000():
    import matplotlib.pyplot as plt

    md, times = [], {}
    ds, times["basin"] = run(EXP / "seed000_relu_neuron.toml", "seed000_basin",
                             set=["record.stride=37", "record.every=5"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    plot.basin_map(ds, "w0", "b0", ax=axes[0], title="outcome by start (w0, b0): SGD lr 0.1, 1000 steps")
    small = neuron_loss_surface(4000)
    plot.trajectories(ds, "w", "b", ax=axes[1], loss_fn=lambda W, B: small(W, B), levels=25)
    axes[1].set_title("recorded paths over the loss surface (contours)")
    fig.suptitle("ReLU neuron relu(w x + b) learning relu(x), fresh batches of 1000 normal points")
    fig.tight_layout()
    f1 = save(fig, "seed000_basin")
    W, B = np.meshgrid(ds.w0.values, ds.b0.values, indexing="ij")
    o = ds.outcome.values
    wedge = B <= -3 * np.abs(W)
    md.append(f"![basin]({f1})\n")
    md.append(f"- 65,536 starts on a 256 x 256 grid over [-3, 3]^2 ({times['basin']:.0f} s): "
              f"{frac_line(ds)} (Wilson 95% intervals).")
    md.append(f"- **Dead** exactly where no input activates the unit: {np.mean(o[wedge] == Outcome.DEAD):.1%} of "
              f"starts with b0 <= -3|w0| are dead (x ~ N(0,1) rarely exceeds 3), and "
              f"{np.mean(o[~wedge & (B < -np.abs(W))] == Outcome.DEAD):.1%} of those with -3|w0| < b0 < -|w0|.")
    st = ds.where(ds.outcome == Outcome.STUCK)
    md.append(f"- **Stuck** = the question's 'upside-down' starts: "
              f"{np.mean(o[(W < 0) & (B > -np.abs(W))] == Outcome.STUCK):.1%} of starts with w0 < 0 and b0 > -|w0| "
              f"end stationary with w = {np.nanmedian(st.final_w):.2f} (median; 90% in "
              f"[{np.nanpercentile(st.final_w, 5):.2f}, {np.nanpercentile(st.final_w, 95):.2f}]) and "
              f"b = {np.nanmedian(st.final_b):.2f}: the unit slides towards the dead wedge (active on "
              f"{np.nanmedian(st.active_fraction):.2%} of inputs at the end) and its loss settles at the loss of a "
              f"silent unit, mean relu(x)^2 = {np.nanmedian(st.final_loss):.3f} on the last batch (1/2 in expectation). "
              + crossing_text(ds))

    # w(t) and loss(t) from w0 = -10
    dz, times["w0"] = run(EXP / "seed000_w0_minus10.toml", "seed000_w0_minus10")
    dm, times["momentum"] = run(momentum_scan_spec())
    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for j in range(dz.sizes["traj"]):
        lab = f"{dz.traj_optimizer.values[j]}, {dz.traj_activation.values[j]}"
        ls = "-" if dz.traj_activation.values[j] == "relu" else "--"
        axes[0].plot(dz.step, dz.rec_w[j], ls, label=lab)
        axes[1].semilogy(dz.step, dz.rec_loss[j], ls, label=lab)
    axes[0].set_ylabel("w")
    axes[1].set_ylabel("loss (batch)")
    axes[1].set_xlabel("step")
    axes[0].legend(fontsize="small", ncol=2)
    axes[0].set_title("bias-free neuron from w0 = -10, lr 0.01, fresh batch of 1000 per step")
    fig.tight_layout()
    f2 = save(fig, "seed000_w0_minus10")
    md.append(f"\n![w0=-10]({f2})\n")
    for j in range(dz.sizes["traj"]):
        sel = dz.isel(traj=j)
        full = dz.sel(optimizer=str(sel.traj_optimizer.values), activation=str(sel.traj_activation.values))
        md.append(f"- {sel.traj_optimizer.values} + {sel.traj_activation.values}: "
                  f"{Outcome(int(full.outcome)).name.lower()}, final w = {float(full.final_w):.4g}, "
                  f"loss {float(full.final_loss):.3g}" +
                  (f", converged at step {int(full.converge_step)}" if int(full.converge_step) >= 0 else ""))
    md.append(momentum_text(dz, dm))
    # can a large step jump over?
    dj, times["jump"] = run(EXP / "seed000_lr_jump.toml", "seed000_lr_jump")
    art = plot.basin_map(dj, "w0", "lr", title="bias-free ReLU neuron, full-batch GD: outcome by (w0, lr)")
    f3 = save(art, "seed000_lr_jump")
    neg = dj.where(dj.w0 < 0, drop=True)
    jump = neg.outcome.values == Outcome.CONVERGED
    lrs = np.broadcast_to(neg.lr.values[None, :], jump.shape)[jump]
    md.append(f"\n![jump]({f3})\n")
    md.append(f"- The answer's claim that a large step can jump over the flat region holds: with w0 < 0, GD "
              f"converges exactly when lr lies in ({lrs.min():.3f}, {lrs.max():.3f}) on this grid — the first step "
              "multiplies w by (1 - lr * mean(2x^2; x<0)) ~ (1 - lr), so 1 < lr < 2 flips w to the positive side "
              "(and lr < 2 keeps w = 1 stable).")
    band = dj.where((dj.lr > 2) & (dj.lr < (1 + 5 ** 0.5) ** 2 / 4), drop=True)
    lam = band.w0 * 0 + band.lr  # (w0, lr)
    inside = (band.w0 > -1 / (lam - 2) + 0.1) & (band.w0 < (lam - 1) / (lam - 2) - 0.1) & (band.w0 != 0) & (band.w0 != 1)
    osc = float((band.outcome.where(inside) == Outcome.OSCILLATING).sum() / inside.sum())
    md.append(f"- lr > 2 does not always diverge: for 2 < lr < phi^2 = 2.618 every start with -1/(lr-2) < w0 < "
              f"(lr-1)/(lr-2) stays bounded for ever without converging (the map has slope 1 - lr < -1 on both "
              f"sides of the kink: a chaotic band). {100 * osc:.1f}% of those starts on this grid are labelled "
              "*oscillating* (w0 = 0 and w0 = 1, fixed points of the map, excluded); the rest of lr > 2 diverges. "
              "Earlier versions called most of this band *unfinished* because they compared the loss at the two "
              "ends of the final window, a coin flip in chaos.")
    md.append("- For lr >= ~0.2 the w -> 0- decay reaches float32 underflow within the budget; then every "
              "pre-activation is exactly 0 and relu'(0) = 0 makes the unit *dead* — a float artefact of the stuck "
              "branch, kept visible on purpose (relu_grad_at_zero decides runs that land on the kink).")
    md.append(f"\nRun times: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())}.")
    return "\n".join(md)


@entry("seed001_quartic", "x^4 toy of seed 001: the basin 0 < lr x0^2 < 1/2")
def quartic():
    import matplotlib.pyplot as plt

    ds, wall = run({"problem": {"name": "quartic"}, "train": {"steps": 10000},
                    "axes": {"x0": {"linspace": [0.02, 3.0, 300]}, "lr": {"logspace": [-3, 0, 300]}}},
                   "seed001_quartic")
    fig, ax = plt.subplots(figsize=(7, 5))
    plot.basin_map(ds, "x0", "lr", ax=ax, title="GD on L = x^4, 10,000 steps: outcome by (x0, lr)")
    add_to_legend(ax, *ax.plot(np.linspace(0.4, 3.0, 200), 0.5 / np.linspace(0.4, 3.0, 200) ** 2, "k--", lw=1.5,
                               label="lr x0^2 = 1/2 (exact)"))
    ax.set_ylim(ds.lr.values.min(), ds.lr.values.max())
    f = save(fig, "seed001_quartic")
    c = ds.x0.values[:, None] ** 2 * ds.lr.values[None, :]
    o = ds.outcome.values
    wrong = np.sum((o == Outcome.CONVERGED) & (c > 0.5)) + np.sum((o == Outcome.DIVERGED) & (c < 0.5))
    r = sweep.refine(EXP / "quartic_basin.toml", "x0", "lr", 6, var="diverged")
    return "\n".join([
        f"![quartic]({f})\n",
        f"- 90,000 runs ({wall:.1f} s): every diverged run has lr x0^2 > 1/2 and every converged one < 1/2 "
        f"({wrong} exceptions). Near the edge from inside, x_k ~ 1/sqrt(8 lr k) is slow and oscillating "
        "runs show up as `unfinished`, never `converged` on the wrong side.",
        f"- The `unfinished` floor is the sublinear rate: reaching x^4 <= 1e-6 (x^2 <= 1e-3) from x_k^2 ~ 1/(8 lr k) "
        f"takes k ~ 125/lr steps, more than the 10,000 budget exactly when lr < 0.0125; measured: the smallest lr "
        f"that converges from x0 = 1 is {float(ds.lr.where(ds.outcome.sel(x0=1.0, method='nearest') == 0).min()):.4f}.",
        f"- `sweep refine` locates the edge with {r.attrs['trajectories_used']:,} runs instead of "
        f"{r.attrs['full_grid']:,} ({r.attrs['ratio']:.0f}x fewer); box-counting dimension "
        f"{r.attrs['dimension']:.3f} +- {r.attrs['dimension_stderr']:.3f} (a smooth curve: 1).",
    ])


def binary_ci(da, over):
    """Fraction of a 0/1 variable over dims ``over`` with its Wilson 95% interval."""
    from sweep.analysis import wilson_interval

    k = (da == 1).sum(over)
    n = da.notnull().sum(over)
    lo, hi = wilson_interval(k, n)
    return k / n, lo, hi


@entry("seed001_mlp", "Why does my ReLU MLP fail with uniform[-1, 1] init? (seed 001)")
def seed001_mlp():
    import matplotlib.pyplot as plt

    ds, wall = run(EXP / "seed001_mlp_init.toml", "seed001_mlp")
    cases = [f"{d} {s:g}" for d, s in zip(ds.init_dist.values, ds.init_scale.values)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    md = []
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, label in enumerate(cases):
        sub = ds.isel(init_case=i)
        conv = (sub.outcome == Outcome.CONVERGED).astype(int)
        f, lo, hi = binary_ci(conv, "seed")
        # the series coincide where none converges: each is shifted sideways (x 10^(+-0.06)) so all stay visible
        shift = 10 ** (0.04 * (i - (len(cases) - 1) / 2))
        axes[0].errorbar(sub.lr * shift, f, yerr=[f - lo, hi - f], marker=markers[i % 6], capsize=3, label=label,
                         alpha=0.85)
        acc = sub.accuracy.mean("seed")
        axes[1].plot(sub.lr, acc, marker=markers[i % 6], label=label)
        best = int(np.argmax(f.values))
        md.append(f"- {label}: converged (loss <= 0.01) in {float(f[best]):.0%} "
                  f"[{float(lo[best]):.0%}, {float(hi[best]):.0%}] of 8 seeds at its best lr = {float(sub.lr[best]):g}; "
                  f"mean final accuracy {float(acc.max()):.0%} at best, dead hidden units "
                  f"{float(sub.dead_fraction.mean()):.0%} on average.")
    for ax, lab in zip(axes, ("fraction converged (Wilson 95%)", "mean final accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[0].legend(title="initial weights")
    axes[0].set_xlabel("learning rate (each series shifted slightly sideways)")
    fig.suptitle("MLP 16-32-32-4 (ReLU, softmax + MSE), full-batch GD 2000 steps, 8 seeds per point")
    fig.tight_layout()
    f = save(fig, "seed001_mlp")
    conv = (ds.outcome == Outcome.CONVERGED).mean("seed")
    at = float(ds.lr.sel(lr=0.1, method="nearest"))
    c = {lab: float(conv.isel(init_case=i).sel(lr=at)) for i, lab in enumerate(cases)}
    slow = float(conv.where(ds.lr < 0.05, drop=True).max())
    return "\n".join([f"![mlp]({f})\n", f"- 224 networks trained in {wall:.0f} s."] + md + [
        f"- What holds: the wider uniform init trains worse than the narrower one at the same lr (at lr = {at:g}: "
        f"{c[cases[0]]:.0%} vs {c[cases[1]]:.0%} converged), and normal(0, 1), the widest, never reaches the target "
        "(its logits saturate the softmax).",
        f"- What does not reproduce here: 'error constant at lr 0.01 with uniform[-1, 1] but fine at 1e-4'. In this "
        f"16-32-32-4 net on blobs no init reaches loss 0.01 within 2000 steps at lr < 0.05 (best {slow:.0%}), and "
        "smaller learning rates only train slower. The answer's mechanism (a larger init needs a smaller lr) is exact "
        "in the x^4 toy below: the basin is lr x0^2 < 1/2."])


def damping_text(ds) -> str:
    """Where damping 1e-3 loses Newton's convergence, and why."""
    W, B = np.meshgrid(ds.w0.values, ds.b0.values, indexing="ij")
    nt = ds.sel(damping=0.0).isel(method=1)
    und, dmp = nt.outcome.values, ds.sel(damping=1e-3).isel(method=1).outcome.values
    lost = (und == Outcome.CONVERGED) & (dmp != Outcome.CONVERGED)
    q = (W < 0) & (B < 0)
    nan0 = q & (und == Outcome.NAN) & (nt.stop_step.values == 0)
    share = lambda codes, c: f"{np.mean(codes[q] == c):.0%}"  # noqa: E731
    return (f"- Why damping 1e-3 costs Newton {lost.mean():.0%} of the grid in convergence: {np.mean(q[lost]):.0%} of "
            "those starts have w0 < 0 and b0 < 0, where every active input is negative and the target relu(x) is 0 "
            "on all of them. The least-squares fit to those points is w = b = 0, and the undamped Newton step lands "
            "on it exactly, up to rounding (e.g. (w, b) = (1.4e-6, 1.4e-6) after one step from (-2, -0.5)); the "
            "rounding residue then decides: positive, the unit is active on most inputs and Newton converges "
            f"({share(und, Outcome.CONVERGED)} of this quadrant; the {share(und, Outcome.NAN)} nan are mostly starts "
            f"with no active input at all, 0/0 at step 0: {int(nan0.sum())} of {int((q & (und == Outcome.NAN)).sum())}). "
            "A damped step stops short of the fit: it leaves damping (H + damping I)^-1 (w0, b0), a short vector in "
            "the start's own direction (the matrix is positive definite), so every step shrinks (w, b) towards 0 "
            f"from the upside-down side, like GD: {share(dmp, Outcome.STUCK)} stuck, {share(dmp, Outcome.DEAD)} dead. "
            "The undamped convergence from this quadrant goes through the kink w = b = 0 and rests on the sign of a "
            "rounding error; it is not a property of the method. Elsewhere damping changes little (converged "
            f"{np.mean(und[~q] == Outcome.CONVERGED):.1%} vs {np.mean(dmp[~q] == Outcome.CONVERGED):.1%}).")


@entry("seed002", "Does Newton's method break on ReLU? (seed 002)")
def seed002():
    ds, wall = run(EXP / "seed002_newton.toml", "seed002")
    ds = ds.assign_coords(method=[str(o) for o in ds.optimizer.values])  # facet titles by method name
    figs = []
    for damp in ds.damping.values:
        art = plot.basin_map(ds.sel(damping=damp), "w0", "b0", facet="method")
        figs.append(save(art, f"seed002_damping_{damp:g}"))
    md = [f"![newton]({figs[0]})\n", f"![damped]({figs[1]})\n", f"- 32,768 runs in {wall:.0f} s (panels: method; "
          "first figure undamped, second damping 1e-3)."]
    W, B = np.meshgrid(ds.w0.values, ds.b0.values, indexing="ij")
    for damp in ds.damping.values:
        for i, opt in enumerate(ds.optimizer.values):
            sub = ds.sel(damping=damp).isel(method=i)
            line = frac_line(sub)
            md.append(f"- damping {damp:g}, {opt}: {line}")
    nt = ds.sel(damping=0.0).isel(method=1)
    nan = nt.outcome.values == Outcome.NAN
    gd_dead = ds.sel(damping=0.0).isel(method=0).outcome.values == Outcome.DEAD
    md.append(f"- Where Newton gives nan: {np.mean(gd_dead[nan]):.0%} of its nan starts are exactly the starts where GD is "
              "dead — every pre-activation <= 0, so gradient AND Hessian vanish (ReLU'' = 0 and relu'(z<=0) = 0) "
              "and the Newton step is 0/0. Elsewhere the Hessian is the data's second moment over the active "
              "inputs, not zero: the answer's point that the network loss, unlike the activation, has curvature.")
    md.append(damping_text(ds))
    # relu'(0) convention on the kink
    k, _ = run({"problem": {"name": "neuron", "bias": False, "data": {"dist": "normal", "n": 1000}},
                "train": {"steps": 50, "lr": 1.0}, "init": {"w0": 0.0},
                "axes": {"optimizer": ["sgd", "newton"], "relu_grad_at_zero": [0.0, 0.5, 1.0]}})
    rows = [f"{o}/relu'(0)={g:g}: {Outcome(int(k.outcome.sel(optimizer=o, relu_grad_at_zero=g))).name.lower()}"
            for o in k.optimizer.values for g in k.relu_grad_at_zero.values]
    md.append("- relu'(0) decides a start exactly on the kink (w0 = 0, bias-free, every pre-activation 0): "
              + "; ".join(rows) + ".")
    return "\n".join(md)


@entry("seed003", "Is GD on two-layer ReLU nets consistent? (seed 003)")
def seed003():
    import matplotlib.pyplot as plt

    ds, wall = run(EXP / "seed003_two_layer_1d.toml", "seed003")
    fig, axes = plt.subplots(1, ds.sizes["bias_std"], figsize=(12, 4.6), sharey=True)
    md = [f"- {ds.sizes['seed'] * ds.sizes['width'] * ds.sizes['method'] * ds.sizes['bias_std']:,} runs in {wall:.0f} s; "
          f"the best fit linear on each side of 0 has loss {float(ds.linear_fit_loss.max()):.5f} (exact 1/32)."]
    for ax, bs in zip(np.atleast_1d(axes), ds.bias_std.values):
        for i, opt in enumerate(ds.optimizer.values):
            sub = ds.sel(bias_std=bs).isel(method=i)
            bad = (sub.beat_linear == 0).astype(int)
            f, lo, hi = binary_ci(bad, "seed")
            ax.errorbar(sub.width, f, yerr=[f - lo, hi - f], marker="o", capsize=3, label=str(opt))
            md.append(f"- bias std {bs:g}, {opt}: P(end at the linear fit) = " + ", ".join(
                f"width {int(w)}: {float(f.sel(width=w)):.2f} [{float(lo.sel(width=w)):.2f}, {float(hi.sel(width=w)):.2f}]"
                for w in sub.width.values))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width")
        ax.set_title(f"initial bias std {bs:g}")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("P(no better than the linear fit), Wilson 95%")
    np.atleast_1d(axes)[0].legend(title="optimizer")
    fig.suptitle("two-layer ReLU net on y = x^2 (8 points), He init, 3000 steps, 1000 seeds per point")
    fig.tight_layout()
    return "\n".join([f"![seed003]({save(fig, 'seed003')})\n"] + md)


@entry("seed003_mc", "Seed 003 as the paper's Monte Carlo: data weights drawn per run, step sizes relative to sharpness")
def seed003_mc():
    import matplotlib.pyplot as plt

    ds, wall = run(EXP / "seed003_monte_carlo.toml", "seed003_mc")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    n = ds.sizes["seed"]
    md = [f"- {ds.outcome.size:,} runs in {wall:.0f} s; every run draws its own data weights (64 multinomial draws "
          "over the 8 points) and its own He init; step = lr / lambda0 (lambda0 = top Hessian eigenvalue at init, "
          "stored per run); 'bad' = final loss not below the run's own best linear-on-each-side fit."]
    for lr in ds.lr.values:
        sub = ds.sel(lr=lr)
        f, lo, hi = binary_ci((sub.beat_linear == 0).astype(int), "seed")
        ax.errorbar(sub.width, f, yerr=[f - lo, hi - f], marker="o", capsize=3, label=f"lr = {lr:g} / lambda0")
        md.append(f"- lr = {lr:g}/lambda0: P(bad) = " + ", ".join(
            f"width {int(w)}: {float(f.sel(width=w)):.2f} [{float(lo.sel(width=w)):.2f}, {float(hi.sel(width=w)):.2f}]"
            for w in sub.width.values))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel("P(no better than the linear fit), Wilson 95%")
    ax.set_title(f"{n} runs per point")
    ax.grid(alpha=0.3)
    ax.legend()
    finite = ds.lambda0.values[np.isfinite(ds.lambda0.values) & (ds.lambda0.values > 0)]
    bins = np.geomspace(finite.min(), finite.max(), 61)  # equal widths on the log axis
    for w in ds.width.values:
        lam = ds.lambda0.sel(width=w).values.ravel()
        ax2.hist(lam[np.isfinite(lam) & (lam > 0)], bins=bins, histtype="step", label=f"width {int(w)}")
    ax2.set_xscale("log")
    ax2.set_xlabel("lambda0 (top Hessian eigenvalue at init)")
    ax2.set_ylabel("runs")
    ax2.set_title("initial sharpness sets each run's step")
    ax2.legend()
    md.append("- median lambda0 by width: " + ", ".join(
        f"{int(w)}: {float(ds.lambda0.sel(width=w).median()):.3g}" for w in ds.width.values))
    fig.suptitle("two-layer ReLU net, y = x^2, multinomial data weights per run, He init, 4000 GD steps")
    fig.tight_layout()
    return "\n".join([f"![seed003_mc]({save(fig, 'seed003_mc')})\n"] + md)


@entry("seed004", "Which ReLU variant avoids dead units? (seed 004)")
def seed004():
    ds, wall = run(EXP / "seed004_relu_family.toml", "seed004")
    art = plot.basin_map(ds, "w0", "b0", facet="activation")
    f = save(art, "seed004")
    md = [f"![family]({f})\n", f"- {ds.outcome.size:,} runs in {wall:.0f} s, SGD lr 0.1, 1000 steps, same grid for every "
          "student. For students that cannot represent relu exactly (abs, leaky, elu, softplus) 'converged' means "
          "reaching the best fit of their own family (a Levenberg-Marquardt fit from the teacher's parameters, "
          "`target_loss`)."]
    for a in ds.activation.values:
        sub = ds.sel(activation=a)
        md.append(f"- {a}: " + frac_line(sub) + f"; target (best fit) loss {float(sub.target_loss.max()):.3g}")
    b0 = ds.b0.values
    z, p1 = int(np.argmin(np.abs(b0))), int(np.argmin(np.abs(b0 - 0.1)))
    for a in ("relu",):
        r0 = ds.sel(activation=a).isel(b0=z)
        r1 = ds.sel(activation=a).isel(b0=p1)
        md.append(f"- Bias init 0.1 vs 0 ({a}, over the w0 axis): converged {np.mean(r1.outcome.values == 0):.0%} vs "
                  f"{np.mean(r0.outcome.values == 0):.0%}, dead {np.mean(r1.outcome.values == 2):.0%} vs "
                  f"{np.mean(r0.outcome.values == 2):.0%}: the positive bias keeps the unit active at the start, "
                  "but the flip of w0 < 0 is what decides the run.")
    return "\n".join(md)


@entry("trainability", "Per-layer learning rates: the trainability boundary")
def trainability():
    from sweep.analysis import fractal_dimension

    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ds, wall = run(EXP / "trainability_lr.toml", "trainability")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["#e7298a", "#2c7fb8"]
    axes[0].pcolormesh(ds.lr0, ds.lr1, ds.trainable.T, cmap=ListedColormap(colors), vmin=0, vmax=1, shading="nearest")
    axes[0].set(xscale="log", yscale="log", xlabel="lr0 (first layer)", ylabel="lr1 (second layer)",
                title="trainable: mean of the last 20 losses < initial loss")
    axes[0].legend(handles=[Patch(color=colors[1], label="trainable"), Patch(color=colors[0], label="not trainable")],
                   loc="lower left")
    plot.basin_map(ds, "lr0", "lr1", ax=axes[1], title="outcome codes of the same runs")
    fig.suptitle("two-layer tanh network (d = width = 16, 16 points, mean-field), full-batch GD 500 steps, "
                 "one learning rate per layer")
    fig.tight_layout()
    f = save(fig, "trainability")
    fd = fractal_dimension(ds, "lr0", "lr1", var="trainable")
    return "\n".join([f"![trainability]({f})\n",
                      f"- 16,384 networks in {wall:.0f} s; trainable fraction {float(ds.trainable.mean()):.1%}.",
                      f"- Box-counting dimension of the trainable/untrainable boundary on this 128 x 128 grid: "
                      f"{fd['dimension']:.3f} +- {fd['stderr']:.3f} (box sides {[int(v) for v in fd['sizes']]}, counts "
                      f"{[int(v) for v in fd['counts']]}); a smooth edge gives 1. Zoom with narrower logspace ranges or "
                      f"`sweep refine experiments/trainability_lr.toml --x lr0 --y lr1 --var trainable` to resolve finer scales."])


def _reference_module():
    sys.path.insert(0, str(ROOT / "tests"))
    import reference_papers

    return reference_papers


def sohl_dickstein_check(n: int, steps: int, act: str = "tanh", ulp: bool = False, view=(-3.0, 6.0, -3.0, 6.0)
                         ) -> dict:
    """The engine's map of experiments/sohl_dickstein_fractal.toml on an n x n grid of ``view`` (log10 of lr0 from,
    to, lr1 from, to; default the full view) and the NumPy reference's, pixel by pixel (optionally also the reference
    from W0 moved by one ulp)."""
    ref_mod = _reference_module()
    spec = EXP / "sohl_dickstein_fractal.toml"
    ds, wall = run(spec, set=[f"train.steps={steps}", f'problem.activation="{act}"', "outcome.lyapunov=true",
                              f"axes.lr1={{logspace=[{view[2]}, {view[3]}, {n}]}}",
                              f"axes.lr0={{logspace=[{view[0]}, {view[1]}, {n}]}}"])
    z = np.load(EXP / "sohl_dickstein_fractal.npz")
    L1, L0 = np.meshgrid(ds.lr1.values, ds.lr0.values, indexing="ij")
    t = time.perf_counter()
    losses = ref_mod.sohl_dickstein_losses(z["x"], z["y"], z["W0"], z["W1"], L0.ravel(), L1.ravel(), steps, act)
    ref_wall = time.perf_counter() - t
    ref = ref_mod.sohl_dickstein_trainable(losses).reshape(n, n)
    eng = ds.trainable.values == 1
    out = {"ds": ds, "eng": eng, "ref": ref, "wall": wall, "ref_wall": ref_wall}
    r_ref = np.mean(losses[:, -20:], axis=1) / losses[:, 0]
    r_eng = ds.tail_loss_ratio.values.ravel()
    ok = np.isfinite(r_ref) & np.isfinite(r_eng)
    out["ratio_equal"] = float(np.mean(r_eng[ok] == r_ref[ok]))
    out["ratio_median_rel"] = float(np.median(np.abs(r_eng[ok] - r_ref[ok]) / np.abs(r_ref[ok])))
    if ulp:
        lp = ref_mod.sohl_dickstein_losses(z["x"], z["y"], np.nextafter(z["W0"], np.inf), z["W1"], L0.ravel(),
                                           L1.ravel(), steps, act)
        out["ulp"] = ref_mod.sohl_dickstein_trainable(lp).reshape(n, n)
    return out


def _sd_panel(ax, c, title):
    from matplotlib.colors import ListedColormap

    ds = c["ds"]
    colors = ["#e7298a", "#2c7fb8"]
    ax.pcolormesh(ds.lr0, ds.lr1, c["eng"], cmap=ListedColormap(colors), vmin=0, vmax=1, shading="nearest")
    bad = np.argwhere(c["eng"] != c["ref"])
    if bad.size:
        ax.plot(ds.lr0.values[bad[:, 1]], ds.lr1.values[bad[:, 0]], "o", mfc="none", mec="k", ms=7, mew=1.5,
                label="engine != reference")
        ax.legend(loc="lower left", fontsize="small")
    ax.set(xscale="log", yscale="log", xlabel="input-layer lr (lr0)", ylabel="output-layer lr (lr1)", title=title)


ZOOM = (3.5, 5.5, 1.5, 2.3)  # log10 lr0 from, to, lr1 from, to: a window on the tanh boundary


@entry("sohl_dickstein", "The paper's own fractal: Sohl-Dickstein (2024), from its own data, checked pixel by pixel")
def sohl_dickstein():
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tanh = sohl_dickstein_check(64, 100, "tanh", ulp=True)
    relu = sohl_dickstein_check(64, 100, "relu")
    long = sohl_dickstein_check(32, 500, "tanh")
    zoom = sohl_dickstein_check(64, 100, "tanh", ulp=True, view=ZOOM)
    fig, axes = plt.subplots(2, 2, figsize=(12, 10.5))
    _sd_panel(axes[0, 0], tanh, "tanh(sqrt(2) z), 100 steps, 64 x 64")
    _sd_panel(axes[0, 1], relu, "sqrt(2) relu(z), 100 steps, 64 x 64")
    _sd_panel(axes[1, 0], long, "tanh(sqrt(2) z), 500 steps (the paper's), 32 x 32")
    _sd_panel(axes[1, 1], zoom, "tanh, 100 steps: zoom on the boundary, 64 x 64")
    fig.legend(handles=[Patch(color="#2c7fb8", label="trainable"), Patch(color="#e7298a", label="not trainable")],
               loc="lower center", ncol=2, frameon=False)
    fig.suptitle("experiments/sohl_dickstein_fractal.toml: the notebook's width-16 mean-field net on its own 272\n"
                 "points and initial weights, float64; both learning rates on logspace(-3, 6) (zoom: the box)")
    for ax in axes.ravel()[:3]:
        ax.add_patch(plt.Rectangle((10 ** ZOOM[0], 10 ** ZOOM[2]), 10 ** ZOOM[1] - 10 ** ZOOM[0],
                                   10 ** ZOOM[3] - 10 ** ZOOM[2], fill=False, ec="k", lw=1, ls=":"))
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    f = save(fig, "sohl_dickstein")

    def line(name, c):
        dis = c["eng"] != c["ref"]
        lam = c["ds"].lyapunov.values
        why = (f"; every one has lyapunov >= {lam[dis].min():.2f}, " if dis.any() else "; ")
        why += f"{np.mean(lam > 0.1):.1%} of all pixels have lyapunov > 0.1"
        if "ulp" in c:
            flip = c["ref"] != c["ulp"]
            why += (f"; the reference flips {int(flip.sum())} of its own pixels when W0 moves by one ulp "
                    f"({int((flip & dis).sum())} of them among those where the engine differs)")
        return (f"- {name}: engine {c['wall']:.0f} s, reference {c['ref_wall']:.0f} s; the verdicts agree on "
                f"{np.mean(~dis):.2%} of {dis.size:,} pixels ({int(dis.sum())} differ{why}); trainable "
                f"{c['eng'].mean():.1%}; tail ratios equal to the bit in {c['ratio_equal']:.0%} of the runs "
                f"(median relative difference {c['ratio_median_rel']:.1e})")

    return "\n".join([
        f"![sohl_dickstein]({f})\n",
        "What is run: `experiments/sohl_dickstein_fractal.toml`, every convention of the paper's notebook as an "
        "option (no translation): `param = \"meanfield\"` (f = W1 . h / 16, h = act(W0 x / 4)), `gain = sqrt(2)` "
        "with `gain_placement = \"inside\"` (tanh(sqrt(2) z); for relu inside and outside are the same bits), "
        "`loss_scale = 2` (mean (f - y)^2), per-layer rates `lr0`, `lr1` on a log grid with `train.lr = 1`, "
        "`tail_window = \"pre\"` with k = 20 (the notebook records the loss before each update), float64, "
        "`[outcome] settle = false` and infinite divergence bounds (every run trained to the end). The data, targets "
        "(a (272, 1) column) and initial weights are the notebook's own draws from PRNGKey(0) "
        "(`experiments/sohl_dickstein_fractal_data.py`; threefry as in the JAX 0.4 the notebook ran on).",
        "",
        "How it was checked: `tests/reference_papers.py` re-implements the notebook's training and criterion in "
        "NumPy float64 (its order of operations: X @ W0 / 4, tanh(z sqrt 2), (h @ W1) / 4 / 4, mean of r^2, "
        "hand-written gradients, each loss divided by the first, clipped at 1e6, mean of the last 20 < 1).",
        "",
        line("tanh, 100 steps, 64 x 64", tanh),
        line("relu, 100 steps, 64 x 64", relu),
        line("tanh, 500 steps, 32 x 32", long),
        line(f"tanh, 100 steps, zoom lr0 in 10^[{ZOOM[0]}, {ZOOM[1]}], lr1 in 10^[{ZOOM[2]}, {ZOOM[3]}], 64 x 64", zoom),
        "- Why pixels differ: NumPy's BLAS and XLA sum the 16- and 272-term products in different orders, so the "
        "two implementations differ by rounding (1e-16) from the first step. That difference grows like "
        "exp(lyapunov x steps), lyapunov being the finite-time Lyapunov exponent of the training map (`[outcome] "
        "lyapunov = true`): far from the threshold a verdict can flip only if it grows to O(1), which in 100 steps "
        "needs lyapunov of about ln(1e16)/100 = 0.37. Every differing pixel is that chaotic, and there the verdict "
        "is a property of the rounding, not of the network: the reference disagrees with itself under a one-ulp "
        "change of W0 about as often as with the engine. In the zoomed window every run is chaotic (even the "
        "trainable ones oscillate, with mean loss below the first), so no float64 program can draw it pixel for "
        "pixel; the full view is drawn the same by both except at a handful of chaotic pixels on the boundary, "
        "and where no run is chaotic enough (16 x 16 of the full view, tests/test_papers.py) the maps are "
        "identical.",
    ])


def holzmueller_check(K: int, steps: int) -> dict:
    """The engine's crossing map of experiments/holzmuller_inconsistency.toml for the first K networks and the NumPy
    reference's."""
    ref_mod = _reference_module()
    ds, wall = run(EXP / "holzmuller_inconsistency.toml", set=[f"train.steps={steps}", f"axes.init_row={{range={K}}}"])
    z = np.load(EXP / "holzmuller_inconsistency.npz")
    t = time.perf_counter()
    r = ref_mod.holzmueller_crossing(z["x"], z["y"], z["p"][:K], z["a"][:K], z["w"][:K], z["lr"][:K], steps)
    lam = ref_mod.holzmueller_lambda_max(z["x"], z["p"][:K], z["a"][:K], 0 * z["a"][:K], z["w"][:K])
    return {"ds": ds, "ref": r, "wall": wall, "ref_wall": time.perf_counter() - t,
            "lr_rel": float(np.max(np.abs(1 / lam - z["lr"][:K]) * lam))}


@entry("holzmuller", "The paper's own Monte Carlo: Holzmueller & Steinwart (2020), width 16, checked net by net")
def holzmuller():
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    K, steps = 1024, 10000
    c = holzmueller_check(K, steps)
    ds, r = c["ds"], c["ref"]
    crossed = ds.kink_reached_data.values == 1
    step = ds.kink_reached_data_step.values
    side = int(np.sqrt(K))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    img = np.where(crossed, step, np.nan).reshape(side, side).astype(float)
    axes[0].imshow(np.where(crossed, np.nan, 1.0).reshape(side, side), cmap="Greys", vmin=0, vmax=2)
    im = axes[0].imshow(img, norm=LogNorm(1, steps), cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="first step a kink reached the data")
    axes[0].set(title=f"the paper's networks 0..{K - 1} (row-major)\ngrey: no kink reached the data in {steps:,} "
                      "steps", xticks=[], yticks=[])
    ts = np.unique(np.geomspace(1, steps, 200).astype(int))
    axes[1].plot(ts, [np.mean(crossed & (step <= t)) for t in ts], lw=3, alpha=0.5, label="engine")
    rs = r["cross_step"]
    axes[1].plot(ts, [np.mean((rs > 0) & (rs <= t)) for t in ts], "k--", label="NumPy reference")
    axes[1].set(xscale="log", xlabel="GD step (lr = 1/lambda_max per network)", ylabel="fraction crossed",
                title="a kink crossed the data by step t")
    axes[1].legend()
    fig.suptitle("experiments/holzmuller_inconsistency.toml: f = c + sum_i w_i relu(a_i x + b_i), 16 units, 6 points,\n"
                 "per-network multinomial weights (256 draws) and step 1/lambda_max, full-batch GD, float64")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    f = save(fig, "holzmuller")
    dis = crossed != r["crossed"]
    rel = np.abs(ds.final_loss.values - r["final_loss"]) / r["final_loss"]
    rel_in, rel_x = np.max(rel[~r["crossed"]]), np.max(rel[r["crossed"]])
    never = ~crossed
    at_fit = never & (ds.beat_linear.values == 0)
    from sweep.analysis import wilson_interval

    lo, hi = wilson_interval(int(never.sum()), K)
    return "\n".join([
        f"![holzmuller]({f})\n",
        "What is run: `experiments/holzmuller_inconsistency.toml`, the conventions of the paper's mc_training.py as "
        "options: f(x) = c + sum w_i relu(a_i x + b_i) with relu'(0) = 1 (`relu_grad_at_zero = 1`: a unit is off "
        "only where a x + b < 0), loss 1/2 sum_j p_j (f(x_j) - y_j)^2, full-batch GD, float64, every run to the end "
        "(`settle = false`), the paper's `crossed` event as `kink_reached_data` (max_i |b_i/a_i| >= min |x_j| = 1). "
        "The networks are the paper's own: `experiments/holzmuller_inconsistency_data.py` replays its seeds "
        "(np.random.seed(1234567890), the per-worker seeds) and writes each network's He init (a, w; b = c = 0), "
        "its data weights p = counts/256 (rows of `problem.file`, one per `init_row`) and its step "
        "1/lambda_max(A_ref M) (the file's `lr` array, a per-row learning-rate multiplier).",
        "",
        f"How it was checked: `tests/reference_papers.py` re-implements the paper's train_one_epoch in NumPy float64 "
        f"(same order: -lr p_j (f_j - y_j) first, then the c, b, a, w steps, the kink after each update), and "
        f"computes lambda_max independently as the top eigenvalue of the weighted Jacobian Gram matrix "
        f"P^(1/2) J J^T P^(1/2): it equals the file's 1/lr (the paper's block formula) to {c['lr_rel']:.0e} "
        "relative.",
        "",
        f"- {K:,} networks x {steps:,} steps: engine {c['wall']:.0f} s, reference {c['ref_wall']:.0f} s. The crossed "
        f"map agrees on {np.mean(~dis):.2%} of the networks ({int(dis.sum())} differ) and the first crossing step "
        f"is the same in {np.mean(step == r['cross_step']):.2%}. Final losses: bit-equal in "
        f"{np.mean(ds.final_loss.values == r['final_loss']):.0%} of the networks; where no kink reached the data "
        f"they agree to {rel_in:.1e} relative (GD at lr = 1/lambda_max contracts towards the fit, so the two "
        f"programs' different rounding stays at a few ulps); where one did, to {rel_x:.1e}: once a kink is among "
        "the data, units switch on and off at points along the way, and each switch amplifies the rounding "
        "difference (the later the crossing, the fewer switches before the end). No verdict came close enough to "
        "its threshold (max |b/a| within that rounding of 1) to flip.",
        f"- No kink reached the data within {steps:,} steps in {never.mean():.1%} [{lo:.1%}, {hi:.1%}] of the "
        f"networks ({at_fit.mean():.1%} also end at or above the best fit linear on each side of 0 with a shared "
        "bias, `beat_linear = 0`; the others beat it with a different intercept on each side, which a network "
        "whose kinks stay inside (-1, 1) can do). Crossings are early: "
        f"{np.mean(crossed & (step <= 1000)) / max(crossed.mean(), 1e-12):.0%} of them by step 1,000.",
        "- Not reproduced here: the paper's sufficient criterion (TrainingSetup.check_convergence), which proves "
        "that a kink never crosses later; runs are instead trained a fixed budget.",
    ])


def main(names):
    names = names or list(ENTRIES)
    for name in names:
        title, fn = ENTRIES[name]
        t = time.perf_counter()
        text = fn()
        load = ""
        if hasattr(os, "getloadavg"):  # wall times depend on what else the machine runs
            load = f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        (RES / f"{name}.md").write_text(f"## {title}\n\n{text}\n\n(generated by results/make_all.py in "
                                        f"{time.perf_counter() - t:.0f} s{load})\n")
        print(f"{name}: done in {time.perf_counter() - t:.0f} s", flush=True)
    index = ["# Gallery", "", "Each seed question answered by a spec in `experiments/`, a figure and findings. "
             "Regenerate with `python results/make_all.py`.", ""]
    for name, (title, _) in ENTRIES.items():
        md = RES / f"{name}.md"
        if md.exists():
            index += [md.read_text(), ""]
    (RES / "README.md").write_text("\n".join(index))



def _md_html(md: str) -> str:
    """The gallery's markdown (headings, images, bullets, paragraphs, `code`, **bold**, links) as HTML."""
    import html
    import re

    def inline(t):
        t = html.escape(t, quote=False)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
        return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', t)

    out, in_list = [], False
    for line in md.splitlines():
        img = re.fullmatch(r"!\[([^\]]*)\]\(([^)\s]+)\)\s*", line)
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif img:
            out.append(f'<a href="{html.escape(img[2])}"><img src="{html.escape(img[2])}" alt="{html.escape(img[1])}"></a>')
        elif line.startswith("- "):
            out.append(("" if in_list else "<ul>") + f"<li>{inline(line[2:])}</li>")
            in_list = True
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out + (["</ul>"] if in_list else []))


def gallery_index():
    """results/index.html: every entry's findings and figures on one local page, and an offline
    ``sweep report`` page (results/reports/<file>.html) of each of its result files."""
    import html

    from sweep.report import report

    (RES / "reports").mkdir(exist_ok=True)
    owner = {}
    for nc in sorted(RES.glob("*.nc")):
        names = [n for n in ENTRIES if nc.stem == n or nc.stem.startswith(n + "_")]
        owner.setdefault(max(names, key=len) if names else None, []).append(nc)
    parts, toc = [], []
    for name, (title, _) in ENTRIES.items():
        md = RES / f"{name}.md"
        if not md.exists():
            continue
        links = []
        for nc in owner.get(name, []):
            try:
                page = report(nc, RES / "reports" / f"{nc.stem}.html", source=nc.name)
                ds = sweep.load(nc)
                dims = " x ".join(f"{d} {n}" for d, n in ds.sizes.items() if d not in ("traj", "step"))
                links.append(f'<li><a href="reports/{page.name}">{nc.name}</a>: {html.escape(dims)} '
                             f"(interactive report, {page.stat().st_size / 2 ** 20:.2f} MB, opens offline)</li>")
            except (ValueError, KeyError) as e:
                links.append(f"<li>{nc.name}: no report ({html.escape(str(e))})</li>")
        toc.append(f'<li><a href="#{name}">{html.escape(title)}</a></li>')
        parts.append(f'<section id="{name}">{_md_html(md.read_text())}'
                     + (f"<p>Result files:</p><ul>{''.join(links)}</ul>" if links else "") + "</section>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>sweep gallery</title><style>"
            "body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:20px auto;padding:0 12px;color:#222}"
            "img{max-width:100%;border:1px solid #ddd}section{border-top:2px solid #ccc;margin-top:28px}"
            "code{background:#f3f3f3;padding:0 3px}</style></head><body><h1>sweep gallery</h1>"
            "<p>Each seed question answered by a spec in <code>experiments/</code>, a figure and findings; "
            "regenerate with <code>python results/make_all.py</code> (this page alone: "
            "<code>python results/make_all.py index</code>). Images and reports are local files beside this page.</p>"
            f"<ul>{''.join(toc)}</ul>{''.join(parts)}</body></html>")
    (RES / "index.html").write_text(page)
    return RES / "index.html"


if __name__ == "__main__":
    if sys.argv[1:] == ["index"]:
        print(f"wrote {gallery_index()}")
    else:
        main(sys.argv[1:])
        gallery_index()
