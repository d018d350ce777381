"""The one place the in-memory checks reach into the scan: the stable entry point that judges one
scale tensor's bytes given its layout (rules/judge.py, docs/architecture.md), and the histogram
tally that decides a clean tensor (what the device computes for CUDA tensors). Everything else
(rules, messages, pairing) is the scan's own code, so `check_tensors` and `scan` cannot drift apart."""

from __future__ import annotations

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.rules.content import ContentOptions, ReadWeight
from fp8doctor.rules.judge import Judgement, judge_scale_tensor
from fp8doctor.rules.judge import tally_for as new_tally


def judge_scale(t: TensorInfo, layout: ScaleLayout | None, data: bytes | memoryview, content: ContentOptions,
                read_weight: ReadWeight | None) -> Judgement:
    return judge_scale_tensor(t, data, layout, content, read_weight)


__all__ = ["judge_scale", "new_tally"]
