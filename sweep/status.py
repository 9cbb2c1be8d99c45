"""``sweep status``: which shards (and chunks) of a sweep are done, missing or from another spec, and the
commands that finish the job."""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from .config import SpecError
from .store import PartStore


class Found(NamedTuple):
    path: str
    spec_hash: str
    shard: int  # -1: a whole result
    n_shards: int
    trajectories: int


def _read(path: Path) -> Found | None:
    """A part file or a finished result (its attributes only), or None when it is neither."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            a = {k: nc.getncattr(k) for k in nc.ncattrs()}
    except OSError:
        return None
    if "spec_hash" not in a:
        return None
    if "sweep_part" in a:
        return Found(str(path), str(a["spec_hash"]), int(a["shard"]), int(a["n_shards"]),
                     int(a.get("part_trajectories", 0)))
    return Found(str(path), str(a["spec_hash"]), -1, 1, int(a.get("n_trajectories", 0)))


def part_path_for(example: str, shard: int, k: int) -> str:
    """The path shard ``k`` would have, by the naming of ``example`` (the part of ``shard``):
    ``parts/part3.nc`` -> ``parts/part7.nc``, ``big.part3of8.nc`` -> ``big.part7of8.nc``."""
    p = Path(example)
    m = re.search(rf"part{shard}of(\d+)", p.name)
    if m:
        return str(p.with_name(p.name[:m.start()] + f"part{k}of{m.group(1)}" + p.name[m.end():]))
    runs = [m for m in re.finditer(r"\d+", p.name) if int(m.group()) == shard]
    if not runs:
        return str(p.with_name(f"{p.stem}.shard{k}{p.suffix}"))
    m = runs[-1]
    width = len(m.group()) if m.group().startswith("0") else 0
    return str(p.with_name(p.name[:m.start()] + f"{k:0{width}d}" + p.name[m.end():]))


def status(paths: list[str]) -> tuple[list[str], bool]:
    """Report lines and whether the sweep is complete.

    paths: part files, a folder of them, or the output OUT of a run (its ``OUT.parts/`` of an
    interrupted run and the ``OUT.partIofN.nc`` files of a multi-process run are looked for too).
    """
    if not paths:
        raise SpecError("status: give the output or the part files, e.g. sweep status parts/*.nc")
    found: list[Found] = []
    stores: list[tuple[str, dict, int]] = []  # (output, meta, chunks done) of unfinished runs
    unknown: list[str] = []
    seen: set[str] = set()

    def add_file(p: Path) -> None:
        if str(p) in seen:
            return
        seen.add(str(p))
        f = _read(p)
        if f is None:
            unknown.append(str(p))
        else:
            found.append(f)

    def add_store(out: Path) -> None:
        st = PartStore(out)
        if st.exists and str(out) not in {s[0] for s in stores}:
            stores.append((str(out), st.meta(), len(st.done())))

    for raw in paths:
        p = Path(raw)
        if p.is_dir() and not p.name.endswith(".parts"):
            for q in sorted(p.glob("*.nc")):
                add_file(q)
            for q in sorted(p.glob("*.nc.parts")):
                add_store(q.with_name(q.name[: -len(".parts")]))
            continue
        if p.name.endswith(".parts"):
            p = p.with_name(p.name[: -len(".parts")])
        if p.exists():
            add_file(p)
        add_store(p)
        for q in sorted(p.parent.glob(f"{p.stem}.part*of*{p.suffix}")):  # a multi-process run's parts
            add_file(q)
        if not p.exists() and not PartStore(p).exists and not any(
                Path(f.path).name.startswith(p.stem + ".part") for f in found):
            unknown.append(str(p))
    return _report(found, stores, unknown)


def _report(found: list[Found], stores, unknown: list[str]) -> tuple[list[str], bool]:
    lines: list[str] = []
    hashes = [f.spec_hash for f in found] + [m.get("spec_hash") for _, m, _ in stores]
    if not hashes:
        lines.append("no sweep results or parts found in: " + ", ".join(unknown))
        return lines, False
    main_hash = max(dict.fromkeys(hashes), key=hashes.count)
    other = [f for f in found if f.spec_hash != main_hash]
    mine = [f for f in found if f.spec_hash == main_hash]
    whole = [f for f in mine if f.shard < 0]
    complete = False
    lines.append(f"spec {main_hash}:")
    if whole:
        lines.append(f"  complete: {whole[0].path} ({whole[0].trajectories:,} trajectories)")
        complete = True
    parts = [f for f in mine if f.shard >= 0]
    by_n: dict[int, list[Found]] = {}
    for f in parts:
        by_n.setdefault(f.n_shards, []).append(f)
    running = {(tuple(m.get("shard") or ()) or None): (out, m, k) for out, m, k in stores
               if m.get("spec_hash") == main_hash}
    for n, fs in sorted(by_n.items()):
        done = sorted({f.shard for f in fs})
        missing = [k for k in range(n) if k not in done]
        from .merge import _ranges

        lines.append(f"  {n} shards: done {_ranges(done) or 'none'} ({len(done)}/{n}, "
                     f"{sum(f.trajectories for f in fs):,} trajectories); missing {_ranges(missing) or 'none'}")
        example = next(f for f in fs)
        todo = []
        for k in missing:
            path = part_path_for(example.path, example.shard, k)
            r = running.pop((k, n), None)
            if r is not None:
                out, m, kdone = r
                lines.append(f"    shard {k}/{n}: interrupted, {kdone}/{m.get('n_chunks')} chunks done in {out}.parts")
                todo.append(f"sweep run SPEC --shard {k}/{n} --out {out} --resume")
            else:
                todo.append(f"sweep run SPEC --shard {k}/{n} --out {path}")
        all_parts = sorted({f.path for f in fs} | {part_path_for(example.path, example.shard, k) for k in missing})
        merged = re.sub(r"\.part\d+of\d+", "", Path(example.path).name)
        merged = str(Path(example.path).with_name(merged if merged != Path(example.path).name else "merged.nc"))
        if todo:
            lines.append("  to finish (SPEC: the spec file; its text is in any part: sweep info PART --spec):")
            lines += [f"    {c}" for c in todo]
        else:
            complete = True
        lines.append(("  then:" if todo else "  merge them:") + f" sweep merge {' '.join(all_parts)} -o {merged}")
    for key, (out, m, kdone) in running.items():
        what = f"shard {key[0]}/{key[1]}" if key else "run"
        lines.append(f"  {what}: interrupted, {kdone}/{m.get('n_chunks')} chunks done in {out}.parts; resume with")
        lines.append(f"    sweep run SPEC --out {out} --resume" + (f" --shard {key[0]}/{key[1]}" if key else ""))
    for out, m, _ in stores:
        if m.get("spec_hash") != main_hash:
            lines.append(f"  from another spec (hash {m.get('spec_hash')}): unfinished run {out}.parts")
    for f in other:
        lines.append(f"  from another spec (hash {f.spec_hash}), not part of this sweep: {f.path}")
    for u in unknown:
        lines.append(f"  not a sweep result or part file: {u}")
    return lines, complete
