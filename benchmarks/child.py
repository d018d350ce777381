"""One timed task in a fresh process (so peak RSS is the task's own): prints a JSON line with the
seconds the task took (interpreter start-up excluded) and bytes the process wrote."""

from __future__ import annotations

import json
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wchar() -> int:
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))
    except (OSError, StopIteration):
        return -1


def run(task: str, path: str, workers: int) -> dict:
    if task == "floor":
        from benchmarks.floor import floor_scan as fn
    elif task == "pread":
        from benchmarks.floor import pread_only as fn
    elif task == "peer":
        from benchmarks.peer import peer_scan as fn
    elif task == "fp8doctor":
        import fp8doctor

        scan, options = fp8doctor.scan, fp8doctor.ScanOptions  # imports (lazy exports) before the clock starts

        def fn(p):
            r = scan(p, options(workers=workers))
            return {"findings": len(r.findings), "checked": r.stats.scale_tensors_checked}
    elif task == "headers":
        from fp8doctor.checkpoint.loader import open_checkpoint
        from fp8doctor.layouts.pairing import LayoutBuilder

        def fn(p):
            with open_checkpoint(p) as ck:
                res = LayoutBuilder(ck.tensors, ck.config).build()
                return {"shards": len(ck.shards), "layouts": len(res.layouts)}
    elif task in ("fix", "fix-dry-run", "fix-undo"):
        import fp8doctor

        fix = fp8doctor.fix
        kw = {"fix": {}, "fix-dry-run": {"dry_run": True}, "fix-undo": {"undo": True}}[task]

        def fn(p):
            r = fix(p, **kw)
            own = 0
            if r.journal and r.mode == "in-place":  # this fix's own journal (ID.json + ID.bin)
                own = os.path.getsize(r.journal) + os.path.getsize(r.journal[:-len(".json")] + ".bin")
            return {"changed": r.bytes_changed, "written": r.bytes_written, "writes": r.writes,
                    "journal_bytes": r.journal_bytes, "journal_own": own, "tensors": len(r.changes)}
    elif task == "changed":
        import fp8doctor

        scan, options = fp8doctor.scan, fp8doctor.ScanOptions

        def fn(p):  # padded bytes that differ from the fill (1-byte E8M0 entries)
            return sum(f.count for f in scan(p, options(select=("scale-padding-nonzero",))).findings)
    elif task == "peer-fix":
        from benchmarks.peer_fix import peer_fix as fn
    else:
        raise SystemExit(f"unknown task {task}")
    w0 = _wchar()
    t0 = time.perf_counter()
    out = fn(path)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "written": _wchar() - w0, "out": out}


if __name__ == "__main__":
    res = run(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(json.dumps(res))
