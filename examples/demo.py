"""`make demo`: write a small DeepSeek-V4-style checkpoint whose padded scales hold garbage (what
torch.empty leaves behind), scan it, show the findings, show with `verify` that the garbage reaches
the layer's outputs, fix it, and show scan and verify clean. Exits 0 when the demo ran as intended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from fp8doctor.testing import synth

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(os.path.dirname(HERE), "demo-checkpoint")


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def fp8doctor(*args: str) -> int:
    print("$ fp8doctor " + " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "fp8doctor", *args])


def write_checkpoint(root: str) -> None:
    """The demo's checkpoint, clean (the GitHub Action's test scans it too)."""
    synth.deepseek_v4_mla(root, layers=2, shards=2)


def break_padding(root: str) -> int:
    """Leftover-memory bytes in every padded scale entry of layer 0, as torch.empty leaves them."""
    return synth.garble_padding(root, "layers.0.")


def main() -> int:
    shutil.rmtree(TARGET, ignore_errors=True)
    step("1. write a small DeepSeek-V4-style checkpoint (FP8 attention, FP4 experts, padded E8M0 scales)")
    write_checkpoint(TARGET)
    print(f"wrote {TARGET}")
    step("2. a clean scan")
    if fp8doctor("scan", TARGET) != 0:
        print("demo failed: the clean checkpoint did not scan clean")
        return 1
    step("3. simulate torch.empty: garbage in the padded scale entries of layer 0")
    print(f"overwrote {break_padding(TARGET)} padded scale bytes")
    step("4. scan again: the findings")
    if fp8doctor("scan", TARGET) != 1:
        print("demo failed: the broken checkpoint was not flagged")
        return 1
    step("5. verify: one layer through a reference sparse-MLA forward, exact vs as served")
    if fp8doctor("verify", TARGET, "--layer", "0", "--tokens", "8", "--context", "64") != 1:
        print("demo failed: verify did not show the garbage leaking into outputs")
        return 1
    step("6. fix: rewrite only the padded entries to 0x00 (journaled, crash-safe)")
    if fp8doctor("fix", TARGET) != 0:
        print("demo failed: fix did not repair the checkpoint")
        return 1
    step("7. scan again: clean")
    if fp8doctor("scan", TARGET) != 0:
        print("demo failed: the repaired checkpoint did not scan clean")
        return 1
    step("8. verify again: the served layer matches the exact one")
    if fp8doctor("verify", TARGET, "--layer", "0", "--tokens", "8", "--context", "64") != 0:
        print("demo failed: verify still fails after fix")
        return 1
    print("\ndemo ran as intended: garbage padding found, shown to leak NaN into the layer, fixed, "
          "and both the re-scan and verify are clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
