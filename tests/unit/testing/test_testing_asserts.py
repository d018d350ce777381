"""fp8doctor.testing.assert_scales_clean: an engine test suite's one-line check."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fp8doctor import RuntimeLayout
from fp8doctor.testing import assert_scales_clean


class Linear(torch.nn.Module):
    """An FP8 linear as engines build it: weight + a padded E8M0 scale parameter from torch.empty."""

    def __init__(self, n: int = 200, k: int = 512, zero: bool = False) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n, k).to(torch.float8_e4m3fn), requires_grad=False)
        scale = torch.empty(4, 4, dtype=torch.float8_e8m0fnu)
        scale.view(torch.uint8).fill_(0xFF)  # what the allocator left, deterministically
        if zero:
            scale[:] = 0
        scale[:2, :4] = torch.full((2, 4), 2.0 ** -8).to(torch.float8_e8m0fnu)
        self.weight_scale = torch.nn.Parameter(scale, requires_grad=False)


class Model(torch.nn.Module):
    def __init__(self, zero: bool) -> None:
        super().__init__()
        self.proj = Linear(zero=zero)
        self.config = {"quantization_config": {"weight_block_size": [128, 128]}}  # as a transformers model has


def test_assert_scales_clean_fails_with_the_findings_as_text():
    with pytest.raises(AssertionError) as e:
        assert_scales_clean(Model(zero=False))
    text = str(e.value)
    assert text.startswith("1 scale finding in Model")
    assert "error scale-padding-nonzero: proj.weight_scale [2, 0] on cpu:" in text
    assert "0xFF (NaN) x8" in text


def test_assert_scales_clean_passes_after_zeroing_and_returns_the_report():
    report = assert_scales_clean(Model(zero=True))
    assert report.findings == () and report.stats.scale_tensors_checked == 1


def test_assert_scales_clean_on_a_dict_with_layouts_and_levels():
    s = torch.zeros(8, 2, dtype=torch.float32) + 2.0 ** -7
    s[3, 1] = 0.3
    named = {"act.sf": s}
    assert_scales_clean(named)  # not a scale by any convention: nothing checked, nothing wrong
    with pytest.raises(AssertionError, match="scale-deepgemm-invalid"):
        assert_scales_clean(named, layouts=[RuntimeLayout("act.sf", deepgemm=True)])
    assert_scales_clean(named, layouts=[RuntimeLayout("act.sf", deepgemm=True)], ignore=("scale-deepgemm-invalid",))
    w = {"x.weight": torch.ones(256, 256).to(torch.float8_e4m3fn),
         "x.weight_scale_inv": torch.tensor([[2.0 ** -7, 2.0 ** 40], [2.0 ** -7, 2.0 ** -7]])}
    with pytest.raises(AssertionError, match="scale-outlier"):
        assert_scales_clean(w)
    assert_scales_clean(w, fail_on="error")  # an outlier is a warning


def test_works_under_pytest_without_plugins(tmp_path):
    test = tmp_path / "test_engine.py"
    test.write_text(
        "import torch\n"
        "from fp8doctor.testing import assert_scales_clean\n"
        "def test_scales():\n"
        "    s = torch.empty(4, 4, dtype=torch.float8_e8m0fnu)\n"
        "    s.view(torch.uint8).fill_(0x99)\n"
        "    s[:2] = torch.full((2, 4), 1.0).to(torch.float8_e8m0fnu)\n"
        "    assert_scales_clean({'l.weight': torch.ones(200, 512).to(torch.float8_e4m3fn), 'l.weight_scale': s},\n"
        "                        config={'quantization_config': {'weight_block_size': [128, 128]}})\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert "AssertionError: 1 scale finding" in out.stdout and "scale-padding-nonzero" in out.stdout


def test_importing_the_testing_package_does_not_import_torch():
    code = "import sys, fp8doctor.testing; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
