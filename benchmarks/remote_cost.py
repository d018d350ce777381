"""What a remote scan costs: bytes fetched and requests, against the checkpoint's size and a
local scan of the same files, measured in one run on a checkpoint served from 127.0.0.1.

    python benchmarks/remote_cost.py [--layers 32] [--hidden 1024] [--shards 32] [--delay-ms 20]

`--delay-ms` adds a server-side delay per request, a stand-in for network latency: it shows what
the concurrent header probes and prefetched ranges buy over one request at a time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fp8doctor import scan
from fp8doctor.checkpoint import remote
from fp8doctor.testing import synth
from tests.helpers.fakehub import FakeServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ckpt = os.path.join(d, "ckpt")
        # DeepSeek-V3 style: FP8 weights with F32 128x128 block scales, the scales far apart
        synth.deepseek_v3(ckpt, layers=args.layers, hidden=args.hidden, inter=2 * args.hidden,
                          experts=args.experts, moe_inter=args.hidden // 2, shards=args.shards)
        t0 = time.perf_counter()
        local = scan(ckpt)
        t_local = time.perf_counter() - t0
        srv = FakeServer(root=d, delay=args.delay_ms / 1000)
        try:
            t0 = time.perf_counter()
            rep = scan(f"{srv.url}/ckpt")
            t_remote = time.perf_counter() - t0
            default = remote.RemoteOptions()
            os.environ["FP8DOCTOR_HTTP_CONCURRENCY"] = "1"
            try:
                t0 = time.perf_counter()
                serial = scan(f"{srv.url}/ckpt")
                t_serial = time.perf_counter() - t0
            finally:
                del os.environ["FP8DOCTOR_HTTP_CONCURRENCY"]
        finally:
            srv.close()
    s = rep.stats
    assert [f.to_dict() for f in rep.findings] == [f.to_dict() for f in local.findings]
    print(f"checkpoint: {s.files} shards, {s.checkpoint_bytes:,} bytes, {s.scale_tensors} scale tensors "
          f"({s.scale_bytes_read:,} scale bytes, {s.header_bytes_read:,} header bytes)")
    print(f"local scan:  read {local.stats.bytes_read:,} bytes in {t_local:.3f} s")
    print(f"remote scan: fetched {s.bytes_fetched:,} bytes in {s.requests} requests "
          f"= {s.bytes_fetched / s.checkpoint_bytes:.2%} of the checkpoint, "
          f"{s.bytes_fetched / local.stats.bytes_read:.2f}x the local scan's reads; {t_remote:.3f} s "
          f"(concurrency {default.concurrency})")
    print(f"  concurrency 1: {serial.stats.requests} requests, {t_serial:.3f} s "
          f"-> concurrent/serial time ratio {t_remote / t_serial:.2f}")


if __name__ == "__main__":
    main()
