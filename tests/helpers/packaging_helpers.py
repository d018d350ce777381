"""Build the sdist and wheel from a copy of the source tree (the tree itself stays untouched)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from tests.helpers.repo import ROOT

SOURCES = ("pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in", "docs", "fp8doctor")


def build_dist(out: str) -> tuple[str, str]:
    src = os.path.join(out, "src")
    os.makedirs(src)
    for name in SOURCES:
        a, b = os.path.join(ROOT, name), os.path.join(src, name)
        if os.path.isdir(a):
            shutil.copytree(a, b, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(a, b)
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", os.path.join(out, "dist"), src],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [sdist] = glob.glob(os.path.join(out, "dist", "*.tar.gz"))
    [wheel] = glob.glob(os.path.join(out, "dist", "*.whl"))
    return sdist, wheel
