"""Every finding's severity and region come from its rule in the catalogue (no emit site has its own)."""

from __future__ import annotations

import os
import shutil

import pytest

from fp8doctor import CheckpointError, scan
from fp8doctor.rules.catalog import RULES
from fp8doctor.testing import synth
from tests.helpers.corpus import HEADER_CASES, INDEX_CASES, make_template


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(str(tmp_path_factory.mktemp("tpl") / "ck"))


def _check(report) -> None:
    for f in report.findings:
        assert f.severity in (RULES[f.rule].severity, RULES[f.rule].accepted_severity), (f.rule, f.message)
        assert f.region == RULES[f.rule].region, (f.rule, f.message)


def test_every_corpus_finding_has_its_rules_severity_and_region(template, tmp_path):
    seen = set()
    for name, case in HEADER_CASES + INDEX_CASES:
        root = str(tmp_path / name)
        shutil.copytree(template, root, symlinks=True)
        try:
            report = scan(case(root))
        except (CheckpointError, OSError):
            continue
        _check(report)
        seen |= {f.rule for f in report.findings}
    assert {"header-invalid", "index-mismatch", "index-shard-missing"} <= seen


def test_content_and_layout_findings_have_their_rules_severity(tmp_path):
    root = str(tmp_path / "v4")
    synth.deepseek_v4(root, with_config=False)
    synth.garble_padding(root, prefix="")
    report = scan(root)
    assert report.findings
    _check(report)


def test_a_stray_shard_is_an_index_mismatch_error_as_the_catalogue_says(template, tmp_path):
    root = str(tmp_path / "ck")
    shutil.copytree(template, root)
    shutil.copy(os.path.join(root, "model-00001-of-00002.safetensors"), os.path.join(root, "extra.safetensors"))
    report = scan(root)
    stray = [f for f in report.findings if f.rule == "index-mismatch" and f.file == "extra.safetensors"]
    assert stray and all(f.severity.value == "error" for f in stray)
