"""Time fp8doctor's scan against the floor and the peer on sparse full-shape checkpoints, and its
fix against the peer fix; write the table to benchmarks/RESULTS.md.

    python benchmarks/run.py          # `make bench`: small V4/gpt-oss, full V3, fix at MoE-export scale
    make bench-full                   # full-size V4-Flash and gpt-oss-120b (~13 GB of real scale bytes)

Every timed task runs in a fresh process (peak RSS is its own), in interleaved rounds: each ratio
is the median over rounds of the ratio of runs made back to back, so both sides saw the same load.
Times in-process (the task alone) and whole-process (spawn to exit). Warm: page cache filled by an
untimed round. Cold: caches dropped before each run (`/proc/sys/vm/drop_caches` when writable and
FP8DOCTOR_BENCH_DROP_CACHES=1, else posix_fadvise(DONTNEED) on every file).
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

from benchmarks import make_checkpoint  # noqa: E402  (SHAPES only: checkpoints are built in a child)

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def child(task: str, path: str, workers: int = 0) -> dict:
    """Run one task in a fresh process; returns its JSON plus peak RSS and CPU seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([PY, os.path.join(HERE, "child.py"), task, path, str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} on {path} failed ({proc.returncode}): {err.strip()[-800:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["rss_mb"] = usage.ru_maxrss / 1024
    res["cpu"] = usage.ru_utime + usage.ru_stime
    res["wall"] = wall  # the whole process, interpreter start-up and imports included
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


def rounds(tasks: list[tuple[str, str, int]], path: str, runs: int, cold: bool,
           warm_up: bool = True) -> dict[str, list[dict]]:
    """Run every task once per round, interleaved (label, task, workers), so each ratio compares runs
    made under the same load; warm: one untimed round first fills the page cache."""
    out: dict[str, list[dict]] = {label: [] for label, _, _ in tasks}
    if not cold and warm_up:
        for _, task, workers in tasks:
            child(task, path, workers)
    for _ in range(runs):
        for label, task, workers in tasks:
            if cold:
                drop_caches(path)
            out[label].append(child(task, path, workers))
    return out


def summary(results: list[dict]) -> dict:
    secs = [r["seconds"] for r in results]
    walls = [r["wall"] for r in results]
    return {"min": min(secs), "median": statistics.median(secs), "wall_min": min(walls),
            "wall_median": statistics.median(walls), "runs": len(results),
            "rss_mb": max(r["rss_mb"] for r in results), "cpu": statistics.median(r["cpu"] for r in results),
            "out": results[-1]["out"], "all": results}


def ratio(a: dict, b: dict, key: str = "seconds") -> float:
    """Median over rounds of a/b, each round's runs made back to back (the load they saw alike)."""
    return statistics.median(x[key] / max(1e-9, y[key]) for x, y in zip(a["all"], b["all"]))


def both(a: dict, b: dict, key: str = "seconds") -> str:
    """The ratio two ways: median over rounds, and best against best (min / min)."""
    lo = min(x[key] for x in a["all"]) / max(1e-9, min(y[key] for y in b["all"]))
    return f"**{ratio(a, b, key):.2f}x** ({lo:.2f}x)"


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
    s = build(shape, out, layers, moe_pad)
    print(f"  built {out} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return s


def startup(n: int = 5) -> dict:
    """Whole-process start-up, interleaved with `python -c pass` (the interpreter's own start-up):
    median wall and CPU seconds of n runs each."""
    cases = {"python": ["-c", "pass"], "version": ["-m", "fp8doctor", "--version"],
             "help": ["-m", "fp8doctor", "--help"], "scan_help": ["-m", "fp8doctor", "scan", "--help"]}
    walls: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(n):
        for k, args in cases.items():
            t0 = time.perf_counter()
            proc = subprocess.Popen([PY, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, _, usage = os.wait4(proc.pid, 0)
            walls[k].append(time.perf_counter() - t0)
            cpus[k].append(usage.ru_utime + usage.ru_stime)
    torch = subprocess.run([PY, "-c", "import sys, fp8doctor.cli.app, fp8doctor; print('torch' in sys.modules)"],
                           env=ENV, capture_output=True, text=True).stdout.strip()
    out: dict = {"torch_imported": torch, "n": n}
    for k in cases:
        out[k] = statistics.median(walls[k])
        out[k + "_cpu"] = statistics.median(cpus[k])
    return out


def fix_scale(a) -> dict:
    """scan, fix --dry-run, fix, fix --undo of a padded MoE export, interleaved in rounds; each
    figure as a ratio against the scan of the same round."""
    path = os.path.join(a.out, "v4-fix-scale")
    meta = os.path.join(path, "faults.json")
    s = None
    if os.path.isfile(meta):
        with open(meta) as f:
            s = json.load(f)
        want = (a.fix_layers, a.moe_pad, a.fix_garbage)
        if (s.get("layers"), s.get("moe_pad"), s.get("garbage")) != want:
            s = None
    if s is None:
        s = build("v4-flash", path, a.fix_layers, a.moe_pad, a.fix_garbage)
        s["garbage"] = a.fix_garbage
        with open(meta, "w") as f:
            json.dump(s, f)
    shutil.rmtree(os.path.join(path, ".fp8doctor-journal"), ignore_errors=True)
    changed = _changed_bytes(path)
    tasks = [("scan", "fp8doctor", 0), ("dry-run", "fix-dry-run", 0), ("fix", "fix", 0), ("undo", "fix-undo", 0)]
    res = {k: summary(v) for k, v in rounds(tasks, path, a.runs, False).items()}
    left = _changed_bytes(path)  # after the last undo: every garbage byte is back
    fixes = res["fix"]["all"]
    return {"summary": s, "changed": changed, "restored": left, "res": res,
            "journal": max(r["out"]["journal_own"] for r in fixes),
            "garbage_tensors": sum(1 for f in s["faults"] if f["fault"] == "garbage-padding")}


def fix_comparison(shape_args: tuple[str, int | None, int], base: str) -> dict:
    """fp8doctor fix vs load_file + patch + save_file, each on a fresh copy of the checkpoint."""
    shape, layers, pad = shape_args
    res: dict = {}
    path = os.path.join(base, "fix-copy")
    summary = build(shape, path, layers, pad)
    changed = _changed_bytes(path)
    res["changed"] = changed
    res["garbage_tensors"] = sum(1 for f in summary["faults"] if f["fault"] == "garbage-padding")
    res["shard_bytes"] = summary["logical_bytes"]
    r = child("fix", path)
    res["fp8doctor"] = {"seconds": r["seconds"], "written": r["written"], "rss_mb": r["rss_mb"],
                        "journal": r["out"]["journal_own"], "left_after": _changed_bytes(path)}
    build(shape, path, layers, pad)
    r = child("peer-fix", path)
    res["peer"] = {"seconds": r["seconds"], "written": r["written"], "rss_mb": r["rss_mb"],
                   "shards": r["out"]["shards"]}
    shutil.rmtree(path)  # the peer wrote its shards out in full: gigabytes of real disk
    return res


def _changed_bytes(path: str) -> int:
    """Bytes a correct fix must change: padded bytes that are not the fill (from a scan, in a child)."""
    return int(child("changed", path)["out"])


def build(shape: str, out: str, layers: int | None, moe_pad: int, garbage: int = 300) -> dict:
    """make_checkpoint in a child process: this process stays small, and a child's peak RSS starts
    from its parent's (Linux carries the high-water mark across fork and exec)."""
    args = [PY, os.path.join(HERE, "make_checkpoint.py"), shape, out, "--moe-pad", str(moe_pad), "--garbage",
            str(garbage)]
    if layers is not None:
        args += ["--layers", str(layers)]
    subprocess.run(args, env=ENV, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "faults.json")) as f:
        return json.load(f)


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
    ap.add_argument("--fix-layers", type=int, default=3, help="fix at scale: v4-flash layers (garbage in layer 0)")
    ap.add_argument("--fix-garbage", type=int, default=2000, help="fix at scale: padded scale tensors with garbage")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--render", metavar="JSON", help="only re-render RESULTS from the measurements a run saved "
                    "beside it (after editing ANALYSIS.md)")
    a = ap.parse_args(argv)
    raw = os.path.splitext(a.results)[0] + ".json"
    if a.render:
        with open(a.render) as f:
            saved = json.load(f)
        text = render(saved["rows"], saved["start"], saved["fix"], saved["scale"], saved["load0"], saved["load1"],
                      argparse.Namespace(**saved["args"]), saved["total"], saved["cmd"])
        with open(a.results, "w") as f:
            f.write(text)
        return 0

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
            tasks = [("floor", "floor", 0), ("pread", "pread", 0), ("fp8doctor", "fp8doctor", 0),
                     ("fp8doctor-1", "fp8doctor", 1)]
            if shape == "v3":
                tasks.append(("headers", "headers", 0))
            m = {k: summary(v) for k, v in rounds(tasks, path, a.runs, cold).items()}
            peer = (not cold or a.peer_cold) and a.peer_runs > 0
            # the page cache is already warm from the rounds above: no untimed warm-up run for the peer
            m["peer"] = (summary(rounds([("peer", "peer", 0)], path, a.peer_runs, cold, warm_up=False)["peer"])
                         if peer else None)
            row["modes"][mode] = m
            print(f"  {mode}: floor {m['floor']['min']:.2f}s fp8doctor {m['fp8doctor']['min']:.2f}s "
                  f"({ratio(m['fp8doctor'], m['floor']):.2f}x)", file=sys.stderr)
        rows.append(row)

    start = startup(a.runs + 2)
    fix = scale = None
    if not a.no_fix and "v4-flash" in a.shapes:
        print("fix at MoE-export scale:", file=sys.stderr)
        scale = fix_scale(a)
        print("fix comparison:", file=sys.stderr)
        fix = fix_comparison(("v4-flash", a.v4_layers, a.moe_pad), a.out)
    load1 = os.getloadavg()
    total = time.perf_counter() - t_start
    cmd = " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    with open(raw, "w") as f:  # the measurements, to re-render after editing ANALYSIS.md (--render)
        json.dump({"rows": rows, "start": start, "fix": fix, "scale": scale, "load0": load0, "load1": load1,
                   "args": {**vars(a), "drop": _DROP}, "total": total, "cmd": cmd}, f)
    text = render(rows, start, fix, scale, load0, load1, a, total, cmd)
    with open(a.results, "w") as f:
        f.write(text)
    print(text)
    return 0


def _x(v: float) -> str:
    return f"**{v:.2f}x**"


def render(rows, start, fix, scale, load0, load1, a, total, cmd) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    out = ["# Benchmark results", "",
           f"Command: `{cmd}`, {total / 60:.1f} minutes in all.  ",
           f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, {platform.system()} "
           f"{platform.release()}, Python {platform.python_version()}.  ",
           f"Load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at end "
           f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} (other engineers share the machine: read the ratios, "
           "not the seconds).  ",
           f"Cold runs drop the page cache with: {getattr(a, 'drop', None) or _DROP or 'n/a'}.  ",
           f"Every task runs in a fresh process, {a.runs} rounds (the peer: {a.peer_runs}); within a round the tasks "
           "run back to back, and each ratio is the median over rounds of that round's ratio, so both sides of it "
           "saw the same load; in brackets, the best run against the best run (min / min). *In-process*: the "
           "task's own time (imports and interpreter start-up excluded); "
           "*whole process*: from spawn to exit, what a user or CI pays. RSS is the process's peak. CPU is "
           "user+sys seconds of the whole process (start-up and imports included), the measure the machine's load "
           "disturbs least. `-j1`: one worker. *pread*: reading the scale bytes with "
           "pread alone (the I/O floor); *floor*: pread plus a byte histogram of each scale tensor.", ""]
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
                "| shape | floor s | pread s | fp8doctor s | fp8doctor -j1 s | fp8doctor / floor, in-process | "
                "fp8doctor / floor, whole process | fp8doctor / floor, CPU | fp8doctor / pread | peer / fp8doctor | "
                "RSS floor / fp8doctor / peer MB | CPU/wall |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            m = r["modes"].get(mode)
            if not m:
                continue
            fl, pr, fd, f1, pe = m["floor"], m["pread"], m["fp8doctor"], m["fp8doctor-1"], m["peer"]
            peer_x = f"**{pe['min'] / fd['min']:.1f}x** ({pe['min']:.1f} s)" if pe else "not run"
            out.append(f"| {r['shape']} | {fl['min']:.2f} | {pr['min']:.2f} | {fd['min']:.2f} / {fd['median']:.2f} | "
                       f"{f1['min']:.2f} | {both(fd, fl)} | {both(fd, fl, 'wall')} | {both(fd, fl, 'cpu')} | "
                       f"{both(fd, pr)} | "
                       f"{peer_x} | {fl['rss_mb']:.0f} / {fd['rss_mb']:.0f} / {pe['rss_mb'] if pe else 0:.0f} | "
                       f"{fd['cpu'] / max(1e-9, statistics.median(x['wall'] for x in fd['all'])):.2f} |")
    out += ["", "## Start-up and headers", "",
            f"Whole process, median of {start['n']} interleaved runs (wall / CPU seconds); ratio against "
            "`python -c pass` of the same rounds.", "",
            "| command | wall s | CPU s | wall / python |", "|---|---|---|---|"]
    for k, label in (("python", "python -c pass"), ("version", "fp8doctor --version"), ("help", "fp8doctor --help"),
                     ("scan_help", "fp8doctor scan --help")):
        out.append(f"| `{label}` | {start[k]:.3f} | {start[k + '_cpu']:.3f} | {start[k] / start['python']:.1f}x |")
    out.append(f"\ntorch imported by the CLI and the package: {start['torch_imported']}.")
    for r in rows:
        m = r["modes"].get("warm", {})
        h = m.get("headers")
        if h:
            out.append(f"\nHeader-only work on the {h['out']['shards']}-shard DeepSeek-V3 checkpoint (parse every "
                       f"header, index and config, pair {h['out']['layouts']:,} scales with their weights), warm: "
                       f"{fmt_s(h['min'])} (min), {fmt_s(h['median'])} (median) in-process; "
                       f"{ratio(h, m['floor']):.2f}x the floor scan of the same rounds.")
    if scale is not None:
        out += _render_scale(scale)
    out += ["", "## Fix against the peer", ""]
    if fix is None:
        out.append("Not run (`--no-fix`).")
    else:
        out.append(f"V4-Flash shape ({a.v4_layers} layers), garbage padding in {fix['garbage_tensors']} expert scale "
                   f"tensors; {fix['changed']:,} padded bytes differ from the fill.")
        out += ["", "| tool | seconds | bytes written (all files) | written / changed | peak RSS MB |",
                "|---|---|---|---|---|"]
        f = fix["fp8doctor"]
        per = f["written"] / max(1, fix["changed"])
        out.append(f"| fp8doctor fix | {f['seconds']:.2f} | {f['written']:,} | {per:.2f} | {f['rss_mb']:.0f} |")
        p = fix["peer"]
        out.append(f"| peer (load_file + patch + save_file, {p['shards']} shards) | {p['seconds']:.2f} | "
                   f"{p['written']:,} | {p['written'] / max(1, fix['changed']):,.0f} | {p['rss_mb']:.0f} |")
        out.append("")
        out.append(f"Peer bytes / fp8doctor bytes: **{p['written'] / max(1, f['written']):,.0f}x**; peer time / "
                   f"fp8doctor time: **{p['seconds'] / max(1e-9, f['seconds']):.1f}x**; padded bytes still wrong after "
                   f"fp8doctor fix: {f['left_after']}.")
    for name in ("ANALYSIS.md", "RUNTIME_CUDA.md"):  # hand-written notes and device figures, kept across runs
        notes = os.path.join(HERE, name)
        if os.path.isfile(notes):
            with open(notes) as fh:
                out += ["", fh.read().rstrip()]
    out.append("")
    return "\n".join(out)


def _render_scale(sc: dict) -> list[str]:
    s, res = sc["summary"], sc["res"]
    scan = res["scan"]
    out = ["", "## Fix at the scale of a padded MoE export", "",
           f"V4-Flash shape, {s['layers']} layers, {s['moe_pad']} padded expert channels declared in config.json, "
           f"garbage in the padding of {sc['garbage_tensors']:,} expert scale tensors: {sc['changed']:,} padded bytes "
           "differ from the fill. Each round runs scan, `fix --dry-run`, `fix`, `fix --undo` back to back (the undo "
           "restores the garbage for the next round).", "",
           "| task | in-process s (min / med) | whole process s (min) | / scan, in-process | / scan, whole process | "
           "/ scan, CPU | target | peak RSS MB | bytes written to shards | pwrite calls |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    targets = {"scan": "", "dry-run": "<= 1.2x", "fix": "<= 1.5x", "undo": "<= 1.2x"}
    for k in ("scan", "dry-run", "fix", "undo"):
        r = res[k]
        o = r["out"]
        written = f"{o['written']:,}" if isinstance(o, dict) and "written" in o else "-"
        writes = f"{o['writes']:,}" if isinstance(o, dict) and "writes" in o else "-"
        rel = ("1" if k == "scan" else both(r, scan))
        relw = ("1" if k == "scan" else both(r, scan, "wall"))
        relc = ("1" if k == "scan" else both(r, scan, "cpu"))
        out.append(f"| {k} | {r['min']:.2f} / {r['median']:.2f} | {r['wall_min']:.2f} | {rel} | {relw} | {relc} | "
                   f"{targets[k]} | {r['rss_mb']:.0f} | {written} | {writes} |")
    j = sc["journal"]
    bound = 1.2 * sc["changed"] + 1e6
    out += ["", f"Journal of one fix (ID.bin + ID.json): {j:,} bytes = **{j / max(1, sc['changed']):.3f}x** the bytes "
            f"changed (target <= 1.2x + 1 MB = {bound:,.0f} bytes: {'met' if j <= bound else 'NOT met'}). Padded "
            f"bytes still wrong after the last undo (should equal the bytes changed): {sc['restored']:,}."]
    return out


if __name__ == "__main__":
    sys.exit(main())
