"""Time fp8doctor's scan against the floor and the peer on sparse full-shape checkpoints, and its
fix against the peer fix; write the table to benchmarks/RESULTS.md.

    python benchmarks/run.py                      # the `make bench` default (~5-8 minutes)
    python benchmarks/run.py --v4-layers 43 --oss-layers 36   # full size (~13 GB of real scale bytes)

Every timed task runs in a fresh process (peak RSS is its own; interpreter start-up is not
counted in the time). Warm: page cache filled by a previous run. Cold: caches dropped before each
run (`/proc/sys/vm/drop_caches` when writable, else posix_fadvise(DONTNEED) on every file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks import make_checkpoint  # noqa: E402

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def child(task: str, path: str, workers: int = 0) -> dict:
    """Run one task in a fresh process; returns its JSON plus peak RSS and CPU seconds."""
    proc = subprocess.Popen([PY, os.path.join(HERE, "child.py"), task, path, str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} on {path} failed ({proc.returncode}): {err.strip()[-800:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["rss_mb"] = usage.ru_maxrss / 1024
    res["cpu"] = usage.ru_utime + usage.ru_stime
    return res


_DROP = None


def drop_caches(path: str) -> str:
    """Evict the checkpoint's files from the page cache with posix_fadvise(DONTNEED): targeted, so
    other work on a shared machine keeps its cache (FP8DOCTOR_BENCH_DROP_CACHES=1 drops them all
    through /proc/sys/vm/drop_caches instead, where writable)."""
    global _DROP
    os.sync()
    if os.environ.get("FP8DOCTOR_BENCH_DROP_CACHES") == "1":
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1\n")
            _DROP = "/proc/sys/vm/drop_caches"
            return _DROP
        except OSError:
            pass
    _DROP = "posix_fadvise(POSIX_FADV_DONTNEED) on every file of the checkpoint"
    for name in os.listdir(path):
        fd = os.open(os.path.join(path, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return _DROP


def timed(task: str, path: str, runs: int, cold: bool, workers: int = 0) -> dict:
    results = []
    if not cold:
        child(task, path, workers)  # fill the page cache
    for _ in range(runs):
        if cold:
            drop_caches(path)
        results.append(child(task, path, workers))
    secs = [r["seconds"] for r in results]
    return {"min": min(secs), "median": statistics.median(secs), "runs": runs,
            "rss_mb": max(r["rss_mb"] for r in results), "cpu": statistics.median(r["cpu"] for r in results),
            "out": results[-1]["out"]}


def ensure(shape: str, out: str, layers: int | None, moe_pad: int) -> dict:
    """Build the checkpoint unless one with the same parameters is already there."""
    meta = os.path.join(out, "faults.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            s = json.load(f)
        full = make_checkpoint.SHAPES[shape][1]
        if s.get("layers") == (layers or full) and s.get("moe_pad") == moe_pad:
            return s
    t0 = time.perf_counter()
    s = make_checkpoint.build(shape, out, layers, None, moe_pad, quiet=False)
    print(f"  built {out} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return s


def startup() -> dict:
    def best(args: list[str], n: int = 5) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", "fp8doctor", *args], env=ENV, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        return min(times)

    torch = subprocess.run([PY, "-c", "import sys, fp8doctor.cli.app, fp8doctor; print('torch' in sys.modules)"],
                           env=ENV, capture_output=True, text=True).stdout.strip()
    base = best(["-c", "pass"][:0] or ["--version"])
    return {"help": best(["--help"]), "scan_help": best(["scan", "--help"]), "version": base,
            "python": min(_py_start() for _ in range(5)), "torch_imported": torch}


def _py_start() -> float:
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", "pass"], env=ENV, check=True)
    return time.perf_counter() - t0


def fix_comparison(shape_args: tuple[str, int | None, int], base: str) -> dict:
    """fp8doctor fix vs load_file + patch + save_file, each on a fresh copy of the checkpoint."""
    import fp8doctor

    shape, layers, pad = shape_args
    res: dict = {}
    path = os.path.join(base, "fix-copy")
    summary = make_checkpoint.build(shape, path, layers, None, pad)
    changed = _changed_bytes(path)
    res["changed"] = changed
    res["garbage_tensors"] = sum(1 for f in summary["faults"] if f["fault"] == "garbage-padding")
    res["shard_bytes"] = summary["logical_bytes"]
    if hasattr(fp8doctor, "fix"):
        r = child("fix", path)
        res["fp8doctor"] = {"seconds": r["seconds"], "written": r["written"], "rss_mb": r["rss_mb"]}
        after = _changed_bytes(path)
        res["fp8doctor"]["left_after"] = after
        summary = make_checkpoint.build(shape, path, layers, None, pad)
    else:
        res["fp8doctor"] = None
    r = child("peer-fix", path)
    res["peer"] = {"seconds": r["seconds"], "written": r["written"], "rss_mb": r["rss_mb"],
                   "shards": r["out"]["shards"]}
    shutil.rmtree(path)  # the peer wrote its shards out in full: gigabytes of real disk
    return res


def _changed_bytes(path: str) -> int:
    """Bytes a correct fix must change: padded bytes that are not the fill (from a scan)."""
    import fp8doctor

    r = fp8doctor.scan(path, fp8doctor.ScanOptions(select=("scale-padding-nonzero",)))
    return sum(f.count for f in r.findings)  # 1-byte E8M0 entries


def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--v4-layers", type=int, default=2)
    ap.add_argument("--v3-layers", type=int, default=None, help="default: full (61 layers, 163 shards)")
    ap.add_argument("--oss-layers", type=int, default=2)
    ap.add_argument("--moe-pad", type=int, default=64, help="v4-flash: padded expert channels (see make_checkpoint)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peer-runs", type=int, default=1)
    ap.add_argument("--shapes", default="v4-flash,v3,gpt-oss-120b")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--peer-cold", action="store_true", help="also time the peer cold (slow; off by default: "
                    "the peer's warm time is already its best case)")
    ap.add_argument("--no-fix", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    a = ap.parse_args(argv)

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    layers = {"v4-flash": a.v4_layers, "v3": a.v3_layers, "gpt-oss-120b": a.oss_layers}
    rows = []
    for shape in a.shapes.split(","):
        path = os.path.join(a.out, shape)
        print(f"{shape}:", file=sys.stderr)
        s = ensure(shape, path, layers[shape], a.moe_pad if shape == "v4-flash" else 0)
        row = {"shape": shape, "summary": s, "modes": {}}
        for mode in ("warm", "cold"):
            if mode == "cold" and a.no_cold:
                continue
            cold = mode == "cold"
            m = {"floor": timed("floor", path, a.runs, cold), "fp8doctor": timed("fp8doctor", path, a.runs, cold),
                 "fp8doctor-1": timed("fp8doctor", path, a.runs, cold, workers=1),
                 "peer": timed("peer", path, a.peer_runs, cold) if not cold or a.peer_cold else None}
            row["modes"][mode] = m
            print(f"  {mode}: floor {m['floor']['min']:.2f}s fp8doctor {m['fp8doctor']['min']:.2f}s", file=sys.stderr)
        rows.append(row)

    v3_path = os.path.join(a.out, "v3")
    headers = timed("headers", v3_path, a.runs, False) if os.path.isdir(v3_path) else None
    start = startup()
    fix = None
    if not a.no_fix and "v4-flash" in a.shapes:
        print("fix comparison:", file=sys.stderr)
        fix = fix_comparison(("v4-flash", a.v4_layers, a.moe_pad), a.out)
    load1 = os.getloadavg()
    text = render(rows, headers, start, fix, load0, load1, a, time.perf_counter() - t_start)
    with open(a.results, "w") as f:
        f.write(text)
    print(text)
    return 0


def render(rows, headers, start, fix, load0, load1, a, total) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cmd = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    out = ["# Benchmark results", "",
           f"Command: `{cmd}` (what `make bench` runs), {total / 60:.1f} minutes in all.  ",
           f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, {platform.system()} "
           f"{platform.release()}, Python {platform.python_version()}.  ",
           f"Load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at end "
           f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} (other engineers share the machine).  ",
           f"Cold runs drop the page cache with: {_DROP or 'n/a'}.  ",
           f"Times are min/median of {a.runs} runs (the peer: {a.peer_runs}), in a fresh process each, interpreter "
           "start-up excluded. RSS is the process's peak. CPU is user+sys seconds (above the wall time: more than "
           "one core busy). `fp8doctor -j1` is the same scan with one worker.", ""]
    out += ["## Checkpoints", "", "| shape | layers | shards | tensors | scale tensors | scale bytes (real) | "
            "logical size | faults |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        out.append(f"| {s['shape']} | {s['layers']} | {s['shards']} | {s['tensors']:,} | {s['scale_tensors']:,} | "
                   f"{s['scale_bytes'] / 1e6:,.0f} MB | {s['logical_bytes'] / 1e9:,.0f} GB | {len(s['faults'])} |")
    for mode in ("warm", "cold"):
        if not any(mode in r["modes"] for r in rows):
            continue
        out += ["", f"## Scan, {mode} page cache", "",
                "| shape | floor s (min/med) | fp8doctor s | fp8doctor -j1 s | peer s | fp8doctor / floor | "
                "peer / fp8doctor | RSS floor / fp8doctor / peer MB | CPU/wall fp8doctor |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            m = r["modes"].get(mode)
            if not m:
                continue
            fl, fd, f1, pe = m["floor"], m["fp8doctor"], m["fp8doctor-1"], m["peer"]
            peer_s, peer_x, peer_rss = ((f"{pe['min']:.2f}", f"**{pe['min'] / fd['min']:.1f}x**", f"{pe['rss_mb']:.0f}")
                                        if pe else ("not run", "-", "-"))
            out.append(f"| {r['shape']} | {fl['min']:.2f} / {fl['median']:.2f} | {fd['min']:.2f} / {fd['median']:.2f} "
                       f"| {f1['min']:.2f} / {f1['median']:.2f} | {peer_s} | **{fd['min'] / fl['min']:.2f}x** | "
                       f"{peer_x} | {fl['rss_mb']:.0f} / {fd['rss_mb']:.0f} / {peer_rss} | "
                       f"{fd['cpu'] / fd['median']:.2f} |")
    out += ["", "## Start-up and headers", "",
            f"- `python -c pass`: {fmt_s(start['python'])}; `fp8doctor --version`: {fmt_s(start['version'])}; "
            f"`fp8doctor --help`: {fmt_s(start['help'])}; `fp8doctor scan --help`: {fmt_s(start['scan_help'])} "
            "(min of 5, whole process). torch imported by the CLI and the package: "
            f"{start['torch_imported']}."]
    if headers:
        out.append(f"- Header-only work on the {headers['out']['shards']}-shard DeepSeek-V3 checkpoint (parse every "
                   f"header, index and config, pair {headers['out']['layouts']:,} scales with their weights): "
                   f"{fmt_s(headers['min'])} (min), {fmt_s(headers['median'])} (median), warm.")
    out += ["", "## Fix", ""]
    if fix is None:
        out.append("Not run (`--no-fix`).")
    else:
        out.append(f"V4-Flash shape ({a.v4_layers} layers), garbage padding in {fix['garbage_tensors']} expert scale "
                   f"tensors; {fix['changed']:,} padded bytes differ from the fill.")
        out += ["", "| tool | seconds | bytes written | written / changed | peak RSS MB |", "|---|---|---|---|---|"]
        if fix["fp8doctor"] is None:
            out.append("| fp8doctor fix | not run: `fp8doctor.fix` does not exist on this branch (built on branch "
                       "`fix`; run `make bench` after merging) | | | |")
        else:
            f = fix["fp8doctor"]
            ratio = f["written"] / max(1, fix["changed"])
            out.append(f"| fp8doctor fix | {f['seconds']:.2f} | {f['written']:,} | {ratio:.2f} | {f['rss_mb']:.0f} |")
        p = fix["peer"]
        out.append(f"| peer (load_file + patch + save_file, {p['shards']} shards) | {p['seconds']:.2f} | "
                   f"{p['written']:,} | {p['written'] / max(1, fix['changed']):,.0f} | {p['rss_mb']:.0f} |")
        if fix["fp8doctor"] is not None:
            out.append("")
            out.append(f"Peer bytes / fp8doctor bytes: **{p['written'] / max(1, fix['fp8doctor']['written']):,.0f}x**; "
                       f"padded bytes still wrong after fp8doctor fix: {fix['fp8doctor']['left_after']}.")
    for name in ("ANALYSIS.md", "RUNTIME_CUDA.md"):  # hand-written notes and device figures, kept across runs
        notes = os.path.join(HERE, name)
        if os.path.isfile(notes):
            with open(notes) as f:
                out += ["", f.read().rstrip()]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
