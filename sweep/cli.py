"""Command line: ``sweep run | demo | info | plot | list``.

Exit codes: 0 success, 2 bad spec or bad arguments (one line, no traceback), 1 other failures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXAMPLES = {  # tests/test_cli.py runs every line (in this order of verbs), so they must all work
    "run": "example:\n"
           "  sweep run experiments/quickstart.toml --out results/quick.nc\n"
           "  sweep run experiments/quickstart.toml --out results/quick.nc --resume    # after Ctrl-C, SIGTERM, kill\n"
           "  sweep run experiments/quickstart.toml --out q2.nc --set train.steps=500 --set 'axes.optimizer=[\"adam\"]'\n"
           "  sweep run experiments/quickstart.toml --dry-run                         # the plan only",
    "plan": "example:\n  sweep plan experiments/quickstart.toml --out results/quick.nc",
    "info": "example:\n  sweep info results/quick.nc\n  sweep info results/quick.nc --check --spec",
    "plot": "example:\n"
            "  sweep plot results/quick.nc --x w0 --y b0 --facet optimizer -o quick.png\n"
            "  sweep plot results/quick.nc --x w0 --y b0 --facet optimizer --kind convergence -o conv.png\n"
            "  sweep plot results/quick.nc --x w0 --y b0 --sel optimizer=adam -o plots/adam.png\n"
            "  sweep plot results/quick.nc --x w0 --sel b0=0.5 --kind fractions -o plots/fractions.png",
    "merge": "example: one run per shard (e.g. one per SLURM array task), then one merge:\n"
             "  sweep run experiments/quickstart.toml --shard 0/2 --out parts/part0.nc\n"
             "  sweep run experiments/quickstart.toml --shard 1/2 --out parts/part1.nc\n"
             "  sweep merge parts/part*.nc -o results/merged.nc",
    "status": "example:\n  sweep status parts/              # which shards are done, and the commands for the rest",
    "refine": "example:\n  sweep refine experiments/quartic_basin.toml --x x0 --y lr --levels 6 --var diverged "
              "-o results/quartic_refined.nc",
    "demo": "example:\n  sweep demo --out sweep_demo",
    "report": "example:\n  sweep report results/quick.nc -o quick.html      # open quick.html#optimizer=adam for a facet\n"
              "  sweep report results/quick.nc -o quick.html --x w0 --y b0 --max-cells 1024 --overwrite",
    "list": "example:\n  sweep list            # problems, activations, optimizers, outcomes",
}

DEMO_SPEC = """\
description = "seed 000: a single ReLU neuron with bias learning ReLU, from every (w0, b0)"
seed = 0

[problem]
name = "neuron"
activation = "relu"
teacher = "relu"
bias = true
data = { dist = "normal", batch = 1000, fresh = true }

[train]
steps = 1000
optimizer = "sgd"
lr = 0.1

[axes]
w0 = { linspace = [-3.0, 3.0, 256] }
b0 = { linspace = [-3.0, 3.0, 256] }
"""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="sweep", description="Train millions of tiny networks at once; map how each run ended.",
                epilog="run 'sweep VERB --help' for each verb's options and an example")
    p.add_argument("--version", action="version", version=f"sweep {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    r = sub.add_parser("run", help="run a sweep from a TOML spec", epilog=EXAMPLES["run"], formatter_class=fmt)
    r.add_argument("spec", help="path to the TOML spec")
    r.add_argument("--out", "-o", help="netCDF output path (default: the spec's name with .nc, beside it)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key (repeatable)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run of the same spec")
    r.add_argument("--shard", metavar="I/N", help="run shard I of N (e.g. a SLURM array task) and write a part file "
                   "for 'sweep merge'")
    r.add_argument("--distributed", action="store_true", help="one process of a multi-process run: calls "
                   "jax.distributed.initialize() (auto-detected under SLURM, Open MPI, Cloud TPU; else set "
                   "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); each process writes OUT.partIofN.nc")
    r.add_argument("--chunk-size", type=int, help="trajectories per compiled call (default: automatic)")
    r.add_argument("--dtype", choices=("float32", "float64"), help="precision (default: the spec's, float32)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    r.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal "
                   "(default there: a plain progress line now and then, for batch logs)")
    r.add_argument("--dry-run", action="store_true", help="print the plan (as 'sweep plan') and exit without computing")

    pn = sub.add_parser("plan", help="what a run would do: sizes, the output's size and free disk, an ETA",
                        epilog=EXAMPLES["plan"], formatter_class=fmt)
    pn.add_argument("spec", help="path to the TOML spec")
    pn.add_argument("--out", "-o", help="the output the run would write (default: the spec's name with .nc)")
    pn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key (repeatable)")
    pn.add_argument("--chunk-size", type=int, help="trajectories per compiled call (default: automatic)")
    pn.add_argument("--dtype", choices=("float32", "float64"), help="precision (default: the spec's, float32)")
    pn.add_argument("--no-probe", action="store_true", help="no timed probe (and so no ETA): answers at once")

    d = sub.add_parser("demo", help="seed 000's (w0, b0) basin map of a ReLU neuron, as .nc and .png",
                       epilog=EXAMPLES["demo"], formatter_class=fmt)
    d.add_argument("--out", "-o", default="sweep_demo", help="output directory (default: ./sweep_demo)")
    d.add_argument("--overwrite", action="store_true", help="replace earlier demo files")
    d.add_argument("--quiet", "-q", action="store_true")

    i = sub.add_parser("info", help="dims, sizes, outcome fractions and provenance of a result",
                       epilog=EXAMPLES["info"], formatter_class=fmt)
    i.add_argument("path")
    i.add_argument("--spec", action="store_true", help="also print the full spec")
    i.add_argument("--check", action="store_true", help="read every variable in full (verifying the HDF5 "
                   "checksums) and name any damaged one; exit 1 if one is")

    pl = sub.add_parser("plot", help="draw a map from a result file", epilog=EXAMPLES["plot"], formatter_class=fmt)
    pl.add_argument("path")
    pl.add_argument("--x", required=True, help="dimension on the x axis")
    pl.add_argument("--y", help="dimension on the y axis")
    pl.add_argument("--var", default="outcome", help="variable to draw (default: outcome)")
    pl.add_argument("--facet", help="one panel per value of this dimension")
    pl.add_argument("--kind", default="basin", choices=("basin", "convergence", "fractions", "boundary",
                                                         "trajectories", "loss"))
    pl.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE",
                    help="select one value of another dimension (repeatable); a number outside the axis's range is "
                         "refused (exit 2), one between grid values draws the nearest (said on stderr and in the "
                         "title)")
    pl.add_argument("-o", "--output", help="image file (.png, .svg, .pdf); default: beside the result")
    pl.add_argument("--overwrite", action="store_true")

    rf = sub.add_parser("refine", help="adaptive refinement of an outcome boundary on two axes",
                        epilog=EXAMPLES["refine"], formatter_class=fmt)
    rf.add_argument("source", help="a TOML spec, or a result .nc (its stored spec is used)")
    rf.add_argument("--x", help="axis across (default: [refine] x)")
    rf.add_argument("--y", help="axis up (default: [refine] y)")
    rf.add_argument("--levels", type=int, help="halvings of boundary cells (default: [refine] levels or 4)")
    rf.add_argument("--var", help="variable or outcome name whose edge is refined (default: outcome)")
    rf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rf.add_argument("-o", "--out", help="netCDF output of every sample (default: SOURCE.refined.nc)")
    rf.add_argument("--plot", help="also draw the refined samples to this image")
    rf.add_argument("--overwrite", action="store_true")

    m = sub.add_parser("merge", help="combine shard part files into one result", epilog=EXAMPLES["merge"],
                       formatter_class=fmt)
    m.add_argument("parts", nargs="+", help="part files written by sweep run --shard I/N")
    m.add_argument("-o", "--out", required=True, help="merged netCDF output")
    m.add_argument("--overwrite", action="store_true")
    m.add_argument("--partial", action="store_true", help="merge the parts there are (by default missing shards "
                   "are refused and named); their trajectories get outcome -1 and NaN")

    st = sub.add_parser("status", help="which shards / chunks of a sweep are done or missing, and the commands "
                        "that finish it (exit 0: complete, 1: work left)", epilog=EXAMPLES["status"],
                        formatter_class=fmt)
    st.add_argument("paths", nargs="+", metavar="OUT_OR_PARTS", help="the run's output, its part files, or a folder "
                    "of them")

    rp = sub.add_parser("report", help="one self-contained HTML page of a result (opens offline)", formatter_class=fmt,
                        epilog=EXAMPLES["report"])
    rp.add_argument("path", help="result file written by sweep run (.nc)")
    rp.add_argument("-o", "--output", help="HTML file (default: the result's path with .html)")
    rp.add_argument("--x", help="dimension across the maps (default: the largest numeric one)")
    rp.add_argument("--y", help="dimension up the maps (default: the next largest)")
    rp.add_argument("--max-cells", type=int, default=None, help="cells shown before b x b blocks drawn in their most "
                    "common outcome are shown instead (default 262,144)")
    rp.add_argument("--overwrite", action="store_true", help="replace an existing page")
    sub.add_parser("list", help="registered problems, activations, optimizers, initialisers and outcomes",
                   epilog=EXAMPLES["list"], formatter_class=fmt)
    return p


def main(argv: list[str] | None = None) -> int:
    # the verbs import what they need (JAX is imported only by verbs that compute): --help and
    # --version answer without importing JAX
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    if args.verb is None:
        _parser().print_help()
        return 0
    from .config import SpecError
    from .io import StorageError

    try:
        return VERBS[args.verb](args)
    except (SpecError, UsageError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except StorageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - last resort: one line, exit 1
        if os.environ.get("SWEEP_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {_one_line(e)} (set SWEEP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    """An error message on one line (a user module's import error may span several)."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def _did_you_mean(name: str, choices) -> str:
    import difflib

    near = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _open_result(path: str):
    """``io.load`` with a clear refusal for a directory."""
    from .config import SpecError
    from .io import load

    if Path(path).is_dir():
        raise SpecError(f"{path!r} is a directory: give a result file written by sweep run (.nc)")
    return load(path)


def _summary_line(ds) -> str:
    import numpy as np

    from .outcomes import Outcome

    codes, counts = np.unique(np.asarray(ds["outcome"]), return_counts=True)
    n = counts.sum()
    name = lambda c: Outcome(c).name.lower() if 0 <= c <= max(Outcome) else "not run"  # noqa: E731 (-1: merge --partial)
    return ", ".join(f"{name(c)} {k / n:.1%}" for c, k in zip(codes, counts))


def _plan_line(spec, plan, out) -> str:
    return (f"{spec.n_trajectories:,} trajectories x {spec.train['steps']:,} steps "
            f"({spec.n_trajectories * spec.train['steps']:,} trajectory-steps), {plan.n_compiles} compile "
            f"group(s), {plan.n_chunks} chunk(s) of {plan.chunk:,} -> {out}")


def cmd_run(args) -> int:
    from .api import Interrupted, parse_shard, run
    from .config import SpecError, parse_spec
    from .engine import make_plan
    from .io import StorageError, check_writable

    if args.distributed and args.shard:
        raise SpecError("--distributed with --shard: choose one (under --distributed each process runs shard "
                        "process_index/process_count)")
    spec = parse_spec(args.spec, args.set)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise SpecError(f"--chunk-size {args.chunk_size}: must be an integer >= 1")
    shard = parse_shard(args.shard)
    out = args.out or str(Path(args.spec).with_suffix(".nc"))
    if args.distributed and not args.dry_run:
        from .api import distributed_part_path, start_distributed

        shard = start_distributed()
        out = str(distributed_part_path(out, shard)) if shard else out
    if args.dry_run:
        return _print_plan(spec, out, args.chunk_size, args.dtype, probe=True, where=args.spec)
    check_writable(out, overwrite=args.overwrite, resume=args.resume)
    if not args.quiet:
        from .api import shard_span

        print(_plan_line(spec, make_plan(spec, args.chunk_size, args.dtype, shard_span(spec.n_trajectories, shard)),
                         out) + (f" (shard {shard[0]}/{shard[1]})" if shard else ""), file=sys.stderr)
    progress = False if args.quiet else (True if args.progress else None)
    t = time.perf_counter()
    try:
        ds = run(spec, out=out, overwrite=args.overwrite, resume=args.resume, chunk_size=args.chunk_size,
                 dtype=args.dtype, progress=progress, shard=shard)
    except Interrupted as e:
        print(str(e).replace("sweep run SPEC ", f"sweep run {args.spec} "), file=sys.stderr)
        return 128 + e.signum
    except StorageError as e:
        raise StorageError(str(e).replace("sweep run SPEC ", f"sweep run {args.spec} ")) from None
    if not args.quiet:
        wall = time.perf_counter() - t
        print(f"wrote {out} in {wall:.1f} s ({ds.attrs['trajectory_steps_per_s'] / 1e6:.2f} M trajectory-steps/s)",
              file=sys.stderr)
        print(f"outcomes: {_summary_line(ds)}", file=sys.stderr)
    ds.close()  # no handle left open in this process (a second HDF5 handle on one file is fragile)
    return 0


def cmd_plan(args) -> int:
    from .config import SpecError, parse_spec

    spec = parse_spec(args.spec, args.set)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise SpecError(f"--chunk-size {args.chunk_size}: must be an integer >= 1")
    out = args.out or str(Path(args.spec).with_suffix(".nc"))
    return _print_plan(spec, out, args.chunk_size, args.dtype, probe=not args.no_probe, where=args.spec)


def _print_plan(spec, out, chunk_size, dtype, probe: bool, where: str) -> int:
    """``sweep plan`` / ``sweep run --dry-run``: exit 0, or 2 when the output would not fit on its disk."""
    from .api import plan_report
    from .io import human_bytes

    r = plan_report(spec, out=out, chunk_size=chunk_size, dtype=dtype, probe=probe)
    print(f"plan for {where} -> {out}")
    print(f"  {r['n_trajectories']:,} trajectories x {r['steps']:,} steps = "
          f"{r['n_trajectories'] * r['steps']:,} trajectory-steps")
    print(f"  {r['compile_groups']} compile group(s), {r['chunks']:,} chunk(s) of {r['chunk']:,} trajectories "
          f"on {r['devices']} device(s)")
    print(f"  output: up to {human_bytes(r['result_bytes'])} ({r['bytes_per_trajectory']} B per trajectory "
          "uncompressed; zlib makes the file smaller); the parts take about as much until the file is assembled")
    free = r.get("free_bytes")
    print(f"  disk: {human_bytes(free) if free is not None else 'unknown'} free in {r.get('disk_dir')!r}"
          + ("" if r.get("fits", True) else " - does not fit"))
    if "eta_s" in r:
        print(f"  probe: one chunk of {r['probe_chunk']:,} for {r['probe_steps']} steps: compile {r['compile_s']:.1f} s, "
              f"run {r['run_s']:.2f} s")
        print(f"  ETA: at most {_duration(r['eta_s'])} ({r['compile_groups']} compile(s) + {r['chunks']:,} chunk(s) x "
              f"{r['steps']:,} steps at the probe's speed; early exit and compaction make it shorter)")
    if not r.get("fits", True):
        print(f"error: {r['refusal']}", file=sys.stderr)
        return 2
    return 0


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def cmd_refine(args) -> int:
    from .config import SpecError, load_spec_dict, tomllib
    from .refine import refine

    src = Path(args.source)
    if src.suffix == ".nc":
        from .io import load

        spec = tomllib.loads(load(src).attrs["spec"])
    else:
        spec = load_spec_dict(src)
    conf = dict(spec.get("refine") or {}) if isinstance(spec.get("refine"), dict) else {}
    x, y = args.x or conf.get("x"), args.y or conf.get("y")
    if not x or not y:
        raise SpecError("refine: give --x and --y (or x and y under [refine] in the spec)")
    levels = args.levels if args.levels is not None else conf.get("levels", 4)
    var = args.var or conf.get("var", "outcome")
    out = args.out or str(src.with_suffix(".refined.nc"))
    ds = refine(spec if src.suffix == ".nc" else src, x, y, levels, var=var, set=args.set, out=out, overwrite=args.overwrite)
    a = ds.attrs
    print(f"{a['trajectories_used']:,} trajectories instead of {a['full_grid']:,} for the full finest grid "
          f"({a['ratio']:.1f}x fewer); boundary cells per level {a['boundary_cells']}; box-counting dimension "
          f"{a['dimension']:.3f} +- {a['dimension_stderr']:.3f}; wrote {out}")
    if args.plot:
        from . import plot

        plot.save(plot.basin_map(ds, x, y), args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_merge(args) -> int:
    from .merge import merge

    ds = merge(args.parts, args.out, overwrite=args.overwrite, partial=args.partial)
    print(f"merged {len(args.parts)} parts into {args.out}: {_summary_line(ds)}"
          + (f" (partial: shards {ds.attrs['missing_shards']})" if "missing_shards" in ds.attrs else ""))
    ds.close()
    return 0


def cmd_status(args) -> int:
    from .status import status

    lines, complete = status(args.paths)
    print("\n".join(lines))
    return 0 if complete else 1


def cmd_demo(args) -> int:
    from .api import run
    from .config import SpecError, parse_spec, tomllib
    from .io import check_writable

    out = Path(args.out)
    nc, png, toml = out / "demo.nc", out / "demo.png", out / "demo.toml"
    for f in (nc, png):
        if f.exists() and not args.overwrite:
            raise SpecError(f"{str(f)!r} already exists: pass --overwrite or choose another --out")
    check_writable(nc, overwrite=args.overwrite)
    spec = parse_spec(tomllib.loads(DEMO_SPEC))
    if not args.quiet:
        print(f"demo: {spec.description}", file=sys.stderr)
        print(f"{spec.n_trajectories:,} trajectories x {spec.train['steps']:,} SGD steps, fresh batch of 1,000 "
              "normal points per step", file=sys.stderr)
    t = time.perf_counter()
    ds = run(spec, out=nc, overwrite=args.overwrite, progress=None if not args.quiet else False)
    wall = time.perf_counter() - t
    toml.write_text(DEMO_SPEC)
    from .plot import basin_map, save

    fig = basin_map(ds, "w0", "b0", title="ReLU neuron learning ReLU (SGD lr=0.1, 1000 steps): outcome by start (w0, b0)")
    save(getattr(fig, "figure", fig), png)
    print(f"wrote {nc} and {png} in {wall:.1f} s ({ds.attrs['trajectory_steps_per_s'] / 1e6:.2f} M trajectory-steps/s)")
    print(f"outcomes: {_summary_line(ds)}")
    ds.close()
    return 0


def cmd_info(args) -> int:
    ds = _open_result(args.path)
    print(f"{args.path}: {ds.attrs.get('title', '')}")
    print("dims: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    for name, c in ds.coords.items():
        vals = c.values
        shown = ", ".join(map(str, vals[:6])) + (", ..." if vals.size > 6 else "")
        print(f"  {name}: [{shown}]" + (f" ({c.attrs['spacing']})" if "spacing" in c.attrs else ""))
    print("variables: " + ", ".join(ds.data_vars))
    try:
        print(f"outcomes: {_summary_line(ds)}")
    except (RuntimeError, OSError) as e:
        print(f"outcomes: unreadable ({type(e).__name__}: {_one_line(e)}): the file is damaged; "
              "sweep info --check names the damaged variables")
    for k in ("n_trajectories", "steps", "dtype", "backend", "devices", "created", "wall_time_s", "compute_time_s",
              "assemble_time_s", "trajectory_steps_per_s", "sweep_version", "jax_version", "spec_hash"):
        if k in ds.attrs:
            print(f"{k}: {ds.attrs[k]}")
    if args.spec:
        print(ds.attrs.get("spec", ""))
    ds.close()
    if args.check:
        from .io import check_file

        bad = check_file(args.path)
        for name, err in bad:
            print(f"damaged: variable {name!r} of {args.path} cannot be read ({err})", file=sys.stderr)
        if bad:
            print(f"check: {len(bad)} damaged variable(s): {', '.join(n for n, _ in bad)}; rerun the sweep "
                  "(sweep run SPEC --out ... --overwrite) to rewrite the file", file=sys.stderr)
            return 1
        print("check: every variable read in full; checksums match")
    return 0


def cmd_plot(args) -> int:
    from . import plot
    from .config import SpecError

    ds = opened = _open_result(args.path)
    try:
        return _plot(args, ds)
    finally:
        opened.close()  # ds below is a selection of it; closing that would leave the file open


def _plot(args, ds) -> int:
    from . import plot
    from .config import SpecError

    if args.kind in ("trajectories", "loss") and "rec_loss" not in ds:
        raise SpecError(f"--kind {args.kind}: {args.path} has no recorded trajectories (no rec_loss); record some "
                        "with a [record] section in the spec, e.g. [record] stride = 8, and run it again")
    for item in args.sel:
        if "=" not in item:
            raise SpecError(f"--sel {item!r}: expected DIM=VALUE, e.g. --sel lr=0.1")
        dim, val = item.split("=", 1)
        if dim not in ds.dims:
            raise SpecError(f"--sel {dim}: not a dimension{_did_you_mean(dim, ds.dims)}; "
                            f"dimensions: {', '.join(ds.dims)}")
        coord = ds[dim]
        shown = ", ".join(map(str, coord.values[:6])) + (", ..." if coord.size > 6 else "")
        if coord.dtype.kind in "USO":
            values = [v.decode() if isinstance(v, bytes) else str(v) for v in coord.values.tolist()]
            if val not in values:
                raise SpecError(f"--sel {dim}={val}: not a value of {dim}{_did_you_mean(val, values)}; "
                                f"values: {shown}")
            ds = ds.isel({dim: values.index(val)})
            continue
        try:
            sel = float(val)
        except ValueError:
            raise SpecError(f"--sel {dim}={val}: {dim} is numeric; give a number (values: {shown})") from None
        lo, hi = float(coord.min()), float(coord.max())
        slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
        if not lo - slack <= sel <= hi + slack:
            raise SpecError(f"--sel {dim}={val}: outside the values of {dim}, which span [{lo:g}, {hi:g}]; "
                            f"give a value in that range (the nearest grid value is drawn)")
        ds = ds.sel({dim: sel}, method="nearest")
        got = float(ds[dim].values)
        if got != sel:
            print(f"--sel {dim}={val}: not a grid value; drawing the nearest, {dim} = {got:g} (in the title)",
                  file=sys.stderr)
    for name, flag in ((args.x, "--x"), (args.y, "--y"), (args.facet, "--facet")):
        if name is not None and name not in ds.dims and args.kind not in ("trajectories", "loss"):
            raise SpecError(f"{flag} {name}: not a dimension of {args.path}{_did_you_mean(name, ds.dims)}; "
                            f"dimensions: {', '.join(ds.dims)}")
    if args.var not in ds:
        raise SpecError(f"--var {args.var}: not a variable{_did_you_mean(args.var, ds.data_vars)}; "
                        f"variables: {', '.join(ds.data_vars)}")
    if args.kind in ("basin", "convergence", "boundary") and args.y is None:
        raise SpecError(f"--kind {args.kind} needs --y (a second dimension)")
    if args.facet is not None and args.kind not in ("basin", "convergence"):
        raise SpecError(f"--facet: only --kind basin and --kind convergence draw facets, not --kind {args.kind}")
    out = Path(args.output or Path(args.path).with_suffix(f".{args.kind}.png"))
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise SpecError(f"-o {str(out)!r}: the image must end in .png, .svg or .pdf")
    if out.exists() and not args.overwrite:
        raise SpecError(f"{str(out)!r} already exists: pass --overwrite or choose another -o")
    drawn = "converge_step" if args.kind == "convergence" else args.var
    extra = [d for d in ds[drawn].dims if d not in (args.x, args.y, args.facet) and ds.sizes[d] > 1]
    if args.kind in ("basin", "convergence", "boundary") and extra:
        raise SpecError(f"dimensions {', '.join(extra)} are not drawn: pick one value each with --sel DIM=VALUE "
                        "or draw one with --facet")
    if args.kind in ("basin", "convergence", "boundary"):  # the grid only (recorded trajectories aside)
        grid_vars = [k for k in ds.data_vars if "traj" not in ds[k].dims and "step" not in ds[k].dims]
        ds = ds[grid_vars].squeeze(drop=False)
    if args.kind == "basin":
        art = plot.basin_map(ds, args.x, args.y, facet=args.facet, var=args.var)
    elif args.kind == "convergence":
        art = plot.convergence_map(ds, args.x, args.y, facet=args.facet)
    elif args.kind == "boundary":
        art = plot.boundary_plot(ds, args.x, args.y)
    elif args.kind == "fractions":
        art = plot.fractions_plot(ds, args.x)
    elif args.kind == "trajectories":
        art = plot.trajectories(ds, x=args.x, y=args.y or "b")
    else:
        art = plot.loss_curves(ds)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        plot.save(getattr(art, "figure", art), out)
    except OSError as e:
        from .io import StorageError
        from .store import write_error

        raise StorageError(write_error(out, e)) from None
    print(f"wrote {out}")
    return 0


def cmd_list(args) -> int:
    from .activations import ACTIVATIONS
    from .optimizers import OPTIMIZERS, SECOND_ORDER, default_lr
    from .outcomes import MESSAGES, Outcome
    from .problems import PROBLEMS

    print("problems:")
    for k, p in PROBLEMS.items():
        print(f"  {k:20s} {p.doc}")
    print("activations:")
    for k, a in ACTIVATIONS.items():
        print(f"  {k:20s} {a.doc}")
    print("optimizers:")
    for k, o in OPTIMIZERS.items():
        hp = ", ".join((f"lr (default {default_lr(k):g})",) + o.hyperparams)
        print(f"  {k:20s} {o.doc} [{hp}]")
    for k, doc in SECOND_ORDER.items():
        print(f"  {k:20s} {doc} [lr (default {default_lr(k):g}), damping]")
    print("initialisers:")
    print("  constant per parameter: [init] w0, b0, ... (any can be an axis)")
    print("outcomes:")
    for o in Outcome:
        print(f"  {int(o)} {o.name.lower():12s} {MESSAGES[o]}")
    return 0


def cmd_report(args) -> int:
    from .report import cmd_report as report

    return report(args)


VERBS = {"run": cmd_run, "plan": cmd_plan, "refine": cmd_refine, "merge": cmd_merge, "status": cmd_status,
         "demo": cmd_demo, "info": cmd_info, "plot": cmd_plot, "report": cmd_report, "list": cmd_list}


if __name__ == "__main__":
    sys.exit(main())
