"""Peak memory of `dump` on a 2^26-entry scale (issue 13, section 3): `dump --rows 0:1` (console,
marks on) and a full raw dump to /dev/null, on this tree and on a baseline revision (default
`main`, exported with git archive), in the same run. The scale is a sparse file (every entry
0x00, so every entry breaks a rule); each command runs in a child under an address-space cap and
reports its own peak RSS (ru_maxrss). Writes benchmarks/DUMP_MEMORY.md.

    .venv/bin/python benchmarks/dump_memory.py [--baseline REV] [--log2 26]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.unit.test_dump_memory import _CHILD, _sparse  # noqa: E402  (the same child as the memory test)

CAP = 8 << 30
"""Address-space cap of each child: the baseline's whole-tensor rules need ~1.5 GB at 2^26."""


def _site_packages() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def peak_rss(code_root: str, args: list[str]) -> tuple[int, int]:
    """(exit code, peak RSS in bytes) of `fp8doctor ARGS` run from the package at `code_root`."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out, open(os.devnull, "wb") as null:
        # -S: no site, so the editable install's finder cannot shadow `code_root`; the
        # dependencies come from this interpreter's site-packages, after the code
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([code_root, *_site_packages()]), "NO_COLOR": "1",
               "COLUMNS": "200"}
        subprocess.run([sys.executable, "-S", "-c", _CHILD.replace("CAP", str(CAP)), out.name, *args],
                       env=env, stdout=null, stderr=subprocess.DEVNULL, cwd=code_root, timeout=1800)
        code, peak = out.read().split()
    return int(code), int(peak)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--log2", type=int, default=26)
    ap.add_argument("--results", default=os.path.join(HERE, "DUMP_MEMORY.md"))
    a = ap.parse_args(argv)
    side = 1 << (a.log2 // 2)
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = os.path.join(tmp, "baseline")
        os.makedirs(base_tree)
        archive = subprocess.run(["git", "-C", ROOT, "archive", a.baseline], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_tree], input=archive, check=True)
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", a.baseline], capture_output=True,
                             text=True).stdout.strip()
        ck = os.path.join(tmp, "ck")
        _sparse(os.path.join(ck, "model.safetensors"), {
            "big.scale": ("F8_E8M0", (side, (1 << a.log2) // side)), "tiny.scale": ("F8_E8M0", (4, 4))})
        cases = [("imports only: dump of a 4x4 scale", ["dump", ck, "--tensor", "tiny.scale"]),
                 ("dump --rows 0:1 (console, marks)", ["dump", ck, "--tensor", "big.scale", "--rows", "0:1"]),
                 ("dump --rows 0:1 --format json", ["dump", ck, "--tensor", "big.scale", "--rows", "0:1",
                                                    "--format", "json"]),
                 ("full dump --format raw > /dev/null", ["dump", ck, "--tensor", "big.scale", "--format", "raw"]),
                 ("full dump --format json > /dev/null", ["dump", ck, "--tensor", "big.scale", "--format", "json"])]
        rows = []
        for label, args in cases:
            b_code, b_peak = peak_rss(base_tree, args)
            n_code, n_peak = peak_rss(ROOT, args)
            rows.append((label, b_code, b_peak, n_code, n_peak))
            print(label, b_code, b_peak >> 20, n_code, n_peak >> 20, flush=True)
    mib = 1 << 20
    lines = [
        f"# dump memory on a 2^{a.log2}-entry scale", "",
        f"Peak RSS (ru_maxrss of the child) of `fp8doctor dump` on a sparse F8_E8M0 [{side}, "
        f"{(1 << a.log2) // side}] scale (every entry 0x00: every entry breaks scale-zero), baseline `{a.baseline}` "
        f"({rev}) against this tree, measured in the same run by `benchmarks/dump_memory.py` (each child under an "
        f"address-space cap of {CAP >> 30} GiB). 'above imports' subtracts the 4x4 dump of the same run "
        "(interpreter, numpy, rich, typer).", "",
        "| command | baseline MiB | this tree MiB | ratio | baseline above imports | this tree above imports |",
        "|---|---:|---:|---:|---:|---:|"]
    b0, n0 = rows[0][2], rows[0][4]
    for label, b_code, b_peak, n_code, n_peak in rows:
        above_b, above_n = max(0, b_peak - b0), max(0, n_peak - n0)
        codes = f" (exit {b_code})" if b_code else ""
        codes_n = f" (exit {n_code})" if n_code else ""
        lines.append(f"| {label} | {b_peak / mib:.0f}{codes} | {n_peak / mib:.0f}{codes_n} | "
                     f"{b_peak / n_peak:.1f}x | {above_b / mib:.0f} | {above_n / mib:.0f} |")
    lines += ["", "ratio: baseline peak / this tree's peak, same run."]
    with open(a.results, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
