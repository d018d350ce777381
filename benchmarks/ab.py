"""Interleaved A/B of two code trees on the bench checkpoints: A = a baseline tree (--baseline DIR, or
a `git archive` of --baseline-rev), B = this tree, plus A' = A again (the A/A pair measures the noise).

    .venv/bin/python benchmarks/ab.py --baseline-rev 5bd02a8 [--rounds 5] [--results benchmarks/AB.md]

Every command runs as `python -S -m fp8doctor ...` in a fresh process with PYTHONPATH = the tree, then
this interpreter's site-packages (-S: the editable install's finder cannot shadow the tree), from an
empty working directory (no configuration file is found). One untimed round first fills the page
cache, compiles each tree's bytecode and checks that A and B print the same output (seconds and the
checkpoint path left out). Then N rounds: in each, every command runs on A, B and A' back to back, the
order rotated from round to round. Per run: wall seconds, CPU seconds (user+sys of the child, from
getrusage(RUSAGE_CHILDREN) deltas) and peak RSS (the child's ru_maxrss, from wait4). Per command: the
median over rounds of the per-round B/A ratios (CPU: the least load-sensitive), min/min, and the same
for A'/A. Verdict: within noise when the CPU ratio is inside [0.9, 1.1] or inside the A'/A spread.
`fix` and `fix --undo` run on a copy of the garbage-padded checkpoint for each side (the undo restores
the garbage for the next round). --profile LABEL runs that command under cProfile on both trees and
prints the functions whose own time differs most.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable

# (directory under --out, make_checkpoint shape, layers (None: full), moe_pad, garbage): `make bench`'s own
CHECKPOINTS = {
    "v4-flash": ("v4-flash", 2, 64, 300),
    "v3": ("v3", None, 0, 300),
    "gpt-oss-120b": ("gpt-oss-120b", 2, 0, 300),
    "v4-fix-scale": ("v4-flash", 3, 64, 2000),
}
FULL_LAYERS = {"v4-flash": 43, "v3": 61, "gpt-oss-120b": 36}

# (label, checkpoint, fp8doctor arguments after the path, how stdout is kept). "copy": the side's own copy
# of the checkpoint. stdout "null": /dev/null when timed; "file": kept (fix reports, to check each round).
COMMANDS = [
    ("scan v4-flash --format json", "v4-flash", ["scan", "{ck}", "--format", "json"], "null"),
    ("scan v3 (163 shards) --format json", "v3", ["scan", "{ck}", "--format", "json"], "null"),
    ("scan gpt-oss-120b --format json", "gpt-oss-120b", ["scan", "{ck}", "--format", "json"], "null"),
    ("dump --tensor (one) --format raw", "v4-flash",
     ["dump", "{ck}", "--tensor", "layers.0.attn.wq_a.scale", "--format", "raw"], "null"),
    ("dump --tensor (512 expert scales) --format raw", "v4-flash",
     ["dump", "{ck}", "--tensor", "layers.*.ffn.experts.*.w1.scale", "--format", "raw"], "null"),
    ("fix --dry-run --format json", "copy", ["fix", "{ck}", "--dry-run", "--format", "json"], "file"),
    ("fix --format json", "copy", ["fix", "{ck}", "--format", "json"], "file"),
    ("fix --undo --format json", "copy", ["fix", "{ck}", "--undo", "--format", "json"], "file"),
]
SIDES = ("A", "B", "A'")
DIRS = {"A": "A1", "B": "B1", "A'": "A2"}
"""Each side's name in file names: its copy of the checkpoint, its outputs (names of one length)."""
VOLATILE = {"seconds", "journal", "journal_bytes"}
"""Report fields that differ from run to run (timings; the journal's file name, which holds a pid, and so its
size by a byte or two): left out of the check."""


def ensure(out: str, name: str) -> str:
    """The checkpoint `name` under `out`, built with make_checkpoint (in a child: this process stays small,
    and a child's ru_maxrss starts from its parent's) unless one with the same parameters is there."""
    shape, layers, moe_pad, garbage = CHECKPOINTS[name]
    path = os.path.join(out, name)
    meta = os.path.join(path, "faults.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            s = json.load(f)
        if (s.get("layers"), s.get("moe_pad"), s.get("garbage", 300)) == (layers or FULL_LAYERS[shape], moe_pad,
                                                                           garbage):
            return path
    args = [PY, os.path.join(HERE, "make_checkpoint.py"), shape, path, "--moe-pad", str(moe_pad), "--garbage",
            str(garbage)]
    if layers is not None:
        args += ["--layers", str(layers)]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(meta) as f:
        s = json.load(f)
    s["garbage"] = garbage
    with open(meta, "w") as f:
        json.dump(s, f)
    print(f"built {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def side_env(tree: str) -> dict[str, str]:
    sp = [p for p in site.getsitepackages() if os.path.isdir(p)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([tree, *sp]), "NO_COLOR": "1", "COLUMNS": "200",
            "PYTHONHASHSEED": "0"}


def check_tree(tree: str, cwd: str) -> str:
    """The fp8doctor package a child run from `tree` imports (refuses one from elsewhere)."""
    got = subprocess.run([PY, "-S", "-c", "import fp8doctor; print(fp8doctor.__file__)"], env=side_env(tree),
                         cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.realpath(got).startswith(os.path.realpath(tree) + os.sep):
        raise SystemExit(f"{tree}: the child imports fp8doctor from {got}")
    return got


def run_one(tree: str, args: list[str], cwd: str, stdout_path: str | None) -> dict:
    """One fresh process: wall, CPU (RUSAGE_CHILDREN delta), peak RSS (wait4), exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = open(stdout_path or os.devnull, "wb")
    err = tempfile.TemporaryFile()
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([PY, "-S", "-m", "fp8doctor", *args], env=side_env(tree), cwd=cwd, stdout=out,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 1):
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)} from {tree}: exit {proc.returncode}: "
                               f"{err.read().decode(errors='replace')[-800:]}")
    finally:
        out.close()
        err.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_mb": usage.ru_maxrss / 1024, "rc": proc.returncode}


def normalized(path: str, ck: str) -> str:
    """A digest of one run's stdout: JSON with its volatile fields and the checkpoint path left out, else
    the bytes (hashed in chunks: this process must stay small, its peak RSS is where a child's starts)."""
    with open(path, "rb") as f:
        if f.read(1) != b"{":
            h = hashlib.sha256(b"")
            f.seek(0)
            while chunk := f.read(1 << 20):
                h.update(chunk)
            return h.hexdigest()
        f.seek(0)
        doc = json.load(f)

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x.replace(ck, "<CK>") if isinstance(x, str) else x

    return hashlib.sha256(json.dumps(strip(doc), sort_keys=True).encode()).hexdigest()


def fix_summary(path: str) -> dict:
    with open(path) as f:
        s = json.load(f)["summary"]
    return {k: s.get(k) for k in ("tensors_changed", "bytes_changed", "bytes_written", "writes")}


def measure(a, trees: dict[str, str], cks: dict[str, str], copies: dict[str, str], work: str) -> dict:
    """The warm-up round (checks the outputs) and N interleaved rounds; every run's figures."""
    cmds = [c for c in COMMANDS if not a.commands or c[0] in a.commands]
    res: dict = {label: {s: [] for s in SIDES} | {"same": None, "fix": {s: [] for s in SIDES}}
                 for label, *_ in cmds}
    for r in range(-1, a.rounds):
        order = SIDES[(r % 3):] + SIDES[:(r % 3)] if r >= 0 else SIDES
        for label, ck_name, argv, keep in cmds:
            digests, outs = {}, {}
            for side in order:
                ck = copies[side] if ck_name == "copy" else cks[ck_name]
                args = [x.replace("{ck}", ck) for x in argv]
                if argv[0] == "fix" and "--undo" not in argv and "--dry-run" not in argv:
                    shutil.rmtree(os.path.join(ck, ".fp8doctor-journal"), ignore_errors=True)  # each fix alike
                out = os.path.join(work, f"stdout-{DIRS[side]}") if (r < 0 or keep == "file") else None
                m = run_one(trees[side], args, work, out)
                if out:
                    if argv[0] == "fix":
                        res[label]["fix"][side].append(fix_summary(out))
                    if r < 0:
                        digests[side], outs[side] = normalized(out, ck), out
                    else:
                        os.unlink(out)
                if r >= 0:
                    res[label][side].append(m)
            if r < 0:
                res[label]["same"] = same = digests["A"] == digests["B"] == digests["A'"]
                keep_dir = os.path.join(a.out, "ab-differ", label.replace(" ", "_").replace("/", "_"))
                for side, out in outs.items():  # kept only when they differ, to compare by hand
                    if same:
                        os.unlink(out)
                    else:
                        os.makedirs(keep_dir, exist_ok=True)
                        shutil.move(out, os.path.join(keep_dir, DIRS[side]))
                print(f"warm-up {label}: outputs {'identical' if same else 'DIFFER (kept in ' + keep_dir + ')'}",
                      file=sys.stderr)
        if r >= 0:
            print(f"round {r + 1}/{a.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return res


def ratios(xs: list[dict], ys: list[dict], key: str) -> tuple[float, float, list[float]]:
    """(median over rounds of x/y, min x / min y, every round's x/y)."""
    per = [x[key] / max(1e-9, y[key]) for x, y in zip(xs, ys)]
    return statistics.median(per), min(x[key] for x in xs) / max(1e-9, min(y[key] for y in ys)), per


def verdict(cpu: float, aa: list[float]) -> str:
    lo, hi = min(aa), max(aa)
    if 0.9 <= cpu <= 1.1:
        return f"within noise (CPU {cpu:.3f}x, inside [0.9, 1.1])"
    if lo <= cpu <= hi:
        return f"within noise (CPU {cpu:.3f}x, inside the A'/A spread {lo:.2f}-{hi:.2f})"
    if cpu > 1.1:
        return f"**slower beyond noise** (CPU {cpu:.3f}x, A'/A spread {lo:.2f}-{hi:.2f})"
    return f"faster beyond noise (CPU {cpu:.3f}x, A'/A spread {lo:.2f}-{hi:.2f})"


def render(res: dict, meta: dict) -> str:
    l0, l1 = meta["load0"], meta["load1"]
    rounds = len(next(iter(res.values()))["A"])
    lines = [
        "# A/B: this tree against a baseline, interleaved (benchmarks/ab.py)", "",
        f"Command: `{meta['cmd']}`, {meta['total'] / 60:.1f} minutes in all.  ",
        f"A (baseline): {meta['base_desc']}. B (this tree): {meta['tree_desc']}. A' = A again (noise).  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}.  ",
        f"Load average (1/5/15 min) at start {l0[0]:.2f}/{l0[1]:.2f}/{l0[2]:.2f}, at end "
        f"{l1[0]:.2f}/{l1[1]:.2f}/{l1[2]:.2f}.", "",
        f"Each command: a fresh `python -S -m fp8doctor` process per run, {rounds} rounds after one untimed "
        "warm-up round; in each round A, B and A' back to back, the order rotated every round. Ratios are "
        "B/A (above 1: B slower): the median over rounds of the per-round ratio, then min B / min A in "
        "brackets. CPU = user+sys of the child process (the least load-sensitive figure); wall = spawn to exit; "
        "RSS = peak of the child (its median over rounds, the largest in brackets). A'/A: the same tree "
        "against itself, the noise of this run. 'same output': "
        "A's and B's stdout identical in the warm-up round (JSON without `seconds`/`journal`, the checkpoint "
        f"path replaced). This process's own peak RSS: {meta['parent_rss_mb']:.0f} MB (Linux starts a child's "
        "peak from its parent's, so no child reads below it).", "",
        "| command | CPU s A / B (median) | CPU B/A | wall s A / B (median) | wall B/A | A'/A CPU (spread) | "
        "peak RSS MB A / B, median (max) | same output |",
        "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for label, r in res.items():
        A, B, A2 = r["A"], r["B"], r["A'"]
        cpu, cpu_mm, _ = ratios(B, A, "cpu")
        wall, wall_mm, _ = ratios(B, A, "wall")
        aa, _, aa_per = ratios(A2, A, "cpu")
        med = statistics.median
        rss_a, rss_b = med(x["rss_mb"] for x in A), med(x["rss_mb"] for x in B)
        top_a, top_b = max(x["rss_mb"] for x in A), max(x["rss_mb"] for x in B)
        lines.append(
            f"| {label} | {med(x['cpu'] for x in A):.2f} / {med(x['cpu'] for x in B):.2f} | **{cpu:.2f}x** "
            f"({cpu_mm:.2f}x) | {med(x['wall'] for x in A):.2f} / {med(x['wall'] for x in B):.2f} | {wall:.2f}x "
            f"({wall_mm:.2f}x) | {aa:.2f}x ({min(aa_per):.2f}-{max(aa_per):.2f}) | {rss_a:.0f} ({top_a:.0f}) / "
            f"{rss_b:.0f} ({top_b:.0f}) | "
            f"{'yes' if r['same'] else '**no**'} |")
        v = verdict(cpu, aa_per) + ("" if r["same"] else "; **A and B print different output**")
        if rss_b > 1.1 * rss_a:
            v += f"; peak RSS {rss_b / rss_a:.2f}x (medians)"
        fixes = {json.dumps(f, sort_keys=True) for side in SIDES for f in r["fix"][side]}
        if len(fixes) > 1:
            v += f"; fix summaries differ between runs: {sorted(fixes)}"
        verdicts.append(f"- {label}: {v}.")
    lines += ["", "Verdicts:", "", *verdicts]
    fx = next((r["fix"]["B"][0] for label, r in res.items() if label.startswith("fix --format") and r["fix"]["B"]),
              None)
    if fx:
        lines += ["", f"fix, every run of every side: {fx['tensors_changed']} tensors, {fx['bytes_changed']:,} "
                  f"bytes changed, {fx['bytes_written']:,} bytes written in {fx['writes']} writes (the undo of the "
                  "same round restores them)."]
    return "\n".join(lines) + "\n"


def profile(a, trees: dict[str, str], cks: dict[str, str], copies: dict[str, str], work: str) -> str:
    """cProfile of one command on A and B (one run each after a warm-up): the functions whose own time
    differs most, by module path inside the tree and function name."""
    import pstats

    label, ck_name, argv, _ = next(c for c in COMMANDS if c[0] == a.profile)
    tot: dict[str, dict[tuple[str, str], list[float]]] = {}
    for side in ("A", "B"):
        ck = copies[side] if ck_name == "copy" else cks[ck_name]
        args = [x.replace("{ck}", ck) for x in argv]
        prof = os.path.join(work, f"{side}.prof")
        env = side_env(trees[side])
        cmd = [PY, "-S", "-m", "cProfile", "-o", prof, "-m", "fp8doctor", *args]
        for _ in range(2):  # the first fills the caches
            if argv[0] == "fix" and "--undo" not in argv:
                shutil.rmtree(os.path.join(ck, ".fp8doctor-journal"), ignore_errors=True)
            subprocess.run(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        root = os.path.realpath(trees[side]) + os.sep
        agg: dict[tuple[str, str], list[float]] = {}
        for (file, _, fn), (_, nc, tt, ct, _) in pstats.Stats(prof).stats.items():
            f = os.path.realpath(file)
            key = (f[len(root):] if f.startswith(root) else os.path.basename(file), re.sub(r" at 0x[0-9a-f]+", "", fn))
            v = agg.setdefault(key, [0, 0.0, 0.0])
            v[0] += nc
            v[1] += tt
            v[2] += ct
        tot[side] = agg
    keys = set(tot["A"]) | set(tot["B"])
    z = [0, 0.0, 0.0]
    diff = sorted(keys, key=lambda k: -abs(tot["B"].get(k, z)[1] - tot["A"].get(k, z)[1]))[:a.profile_top]
    lines = [f"cProfile of `{label}`: own time (tottime) A / B, calls A / B; functions differing most", "",
             "| function | own s A | own s B | B - A | calls A | calls B |", "|---|---|---|---|---|---|"]
    for k in diff:
        x, y = tot["A"].get(k, z), tot["B"].get(k, z)
        lines.append(f"| `{k[0]}:{k[1]}` | {x[1]:.3f} | {y[1]:.3f} | {y[1] - x[1]:+.3f} | {x[0]} | {y[0]} |")
    ta, tb = (sum(v[1] for v in tot[s].values()) for s in ("A", "B"))
    lines += ["", f"Total own time: A {ta:.2f} s, B {tb:.2f} s."]
    return "\n".join(lines) + "\n"


def describe(tree: str) -> str:
    """The tree, its commit, and the commit that last changed its package (uncommitted package changes named)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", tree, *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return f"`{tree}`"
    pkg = git("log", "-1", "--format=%h", "--", "fp8doctor")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "fp8doctor")
    return f"`{tree}` at {head} (fp8doctor/ last changed in {pkg}{', plus uncommitted changes' if dirty else ''})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="DIR", help="baseline code tree (default: git archive of --baseline-rev)")
    ap.add_argument("--baseline-rev", default="main")
    ap.add_argument("--tree", default=ROOT, help="the B tree (default: the one this script is in)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (at least 1)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="checkpoints (reused when their "
                    "parameters match, else built) and the copies for fix")
    ap.add_argument("--command", dest="commands", action="append", metavar="LABEL",
                    help="only this command (repeatable); labels as in the table")
    ap.add_argument("--results", default=os.path.join(HERE, "AB.md"))
    ap.add_argument("--profile", metavar="LABEL", help="instead of the A/B: cProfile this command on A and B")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--render", metavar="JSON", help="only write --results again from the measurements a run "
                    "saved under --out")
    a = ap.parse_args(argv)
    if a.render:
        with open(a.render) as f:
            saved = json.load(f)
        with open(a.results, "w") as f:
            f.write(render(saved["res"], saved["meta"]))
        return 0
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    labels = [c[0] for c in COMMANDS]
    for x in [*(a.commands or []), *([a.profile] if a.profile else [])]:
        if x not in labels:
            ap.error(f"unknown command {x!r}; one of: {', '.join(labels)}")
    pair = {"fix --format json", "fix --undo --format json"}  # the undo needs the fix; the next fix, the undo
    if a.commands and pair & set(a.commands):
        a.commands = [*a.commands, *sorted(pair - set(a.commands))]
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fp8doctor-ab-") as tmp:
        if a.baseline:
            base, base_desc = os.path.abspath(a.baseline), describe(os.path.abspath(a.baseline))
        else:
            base = os.path.join(tmp, "baseline")
            os.makedirs(base)
            archive = subprocess.run(["git", "-C", ROOT, "archive", a.baseline_rev], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", a.baseline_rev], capture_output=True, text=True,
                                 check=True).stdout.strip()
            base_desc = f"`git archive {a.baseline_rev}` ({rev})"
        tree = os.path.abspath(a.tree)
        trees = {"A": base, "B": tree, "A'": base}
        work = os.path.join(tmp, "cwd")
        os.makedirs(work)
        for t in (base, tree):
            check_tree(t, work)
        names = {c[1] for c in COMMANDS if not a.commands or c[0] in a.commands} | {"v4-fix-scale"}
        cks = {n: ensure(a.out, n) for n in sorted(names - {"copy"})}
        copies = {}
        for side in SIDES:  # fix's own copy per side, from the garbage-padded checkpoint
            dst = os.path.join(a.out, "ab-copies", DIRS[side])
            shutil.rmtree(dst, ignore_errors=True)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            subprocess.run(["cp", "-r", "--sparse=always", cks["v4-fix-scale"], dst], check=True)
            copies[side] = dst
        if a.profile:
            print(profile(a, trees, cks, copies, work))
        else:
            res = measure(a, trees, cks, copies, work)
        shutil.rmtree(os.path.join(a.out, "ab-copies"))  # ~1.7 GB; made again by the next run
    if a.profile:
        return 0
    load1 = os.getloadavg()
    meta = {"load0": load0, "load1": load1, "total": time.perf_counter() - t_start,
            "cmd": " ".join(["python benchmarks/ab.py", *(sys.argv[1:] if argv is None else argv)]),
            "base_desc": base_desc, "tree_desc": describe(tree),
            "parent_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    raw = os.path.join(a.out, os.path.splitext(os.path.basename(a.results))[0] + ".json")  # to re-read
    with open(raw, "w") as f:
        json.dump({"meta": meta, "res": res}, f)
    text = render(res, meta)
    with open(a.results, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
