"""check_tensors / check_module: the scan's rules over scale tensors in memory.

Pairing, blocks and padding come from the checkpoint conventions (layouts/pairing.py) applied to
a name -> (dtype, shape) map; each scale tensor is judged by the scan's own judge of one tensor's
bytes (rules/judge.py's stable `judge_scale_tensor`, docs/architecture.md). CPU tensors and numpy
arrays are read in place. CUDA tensors are first decided on the device (runtime/cuda.py:
histograms in bounded chunks, a few numbers per tensor to the host); only a tensor that may have a
finding has its entries brought to the host, in row slabs of bounded size, through the same judge.
Findings name the tensor, the index and the device; `file` and `byte_offset` are None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fp8doctor.checkpoint.config import CONFIG_LIMIT, ModelConfig, parse_config, read_config
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding, Report, ScanStats
from fp8doctor.gcpause import gc_paused
from fp8doctor.layouts.model import DescribedLayouts, LayoutOverride, ScaleLayout
from fp8doctor.rules.content import (
    RULE_SLAB,
    ContentOptions,
    ReadWeight,
    TensorSummary,
    check_kinds,
    check_tensor_slabs,
    kind_of,
)
from fp8doctor.rules.judge import judge_scale_tensor
from fp8doctor.runtime.deepgemm import check_deepgemm
from fp8doctor.runtime.layout import RuntimeLayout, build_layouts
from fp8doctor.runtime.tensors import MemTensor, wrap
from fp8doctor.scanner import ScanOptions

if TYPE_CHECKING:
    from fp8doctor.runtime.cuda import DeviceOutcome

ConfigLike = Mapping[str, Any] | ModelConfig | str | os.PathLike[str] | Any
LayoutLike = RuntimeLayout | LayoutOverride


def _config(config: ConfigLike | None) -> tuple[ModelConfig | None, list[Finding]]:
    """A ModelConfig from a parsed config.json (dict or any JSON value: a bad one is a config-invalid
    finding, as in a scan), a path to config.json or its directory, an object with `to_dict()`
    (transformers' configs) or a ModelConfig."""
    if config is None or isinstance(config, ModelConfig):
        return config, []
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")

        def read() -> bytes:
            with open(path, "rb") as f:
                return f.read(CONFIG_LIMIT)

        return read_config(read)
    if not isinstance(config, Mapping) and callable(getattr(config, "to_dict", None)):
        config = config.to_dict()
    return parse_config(dict(config) if isinstance(config, Mapping) else config)


def _in_memory(f: Finding, tensors: dict[str, MemTensor]) -> Finding:
    t = tensors.get(f.tensor) if f.tensor is not None else None
    return replace(f, file=None, byte_offset=None, device=t.device if t is not None else None)


def check_tensors(named: Mapping[str, Any], *, config: ConfigLike | None = None,
                  layouts: Iterable[LayoutLike] | None = None, options: ScanOptions | None = None) -> Report:
    """Check the scale tensors among `named` (name -> torch tensor or numpy array, checkpoint-style
    names) with the scan's rules; returns a Report like `scan`'s.

    `config`: the model's config.json (dict, path, transformers config) for block sizes and real
    dims, as `scan` reads it from a checkpoint. `layouts`: RuntimeLayout (a runtime layout no
    convention knows) or LayoutOverride items. `options`: fill, select, ignore, outlier span as for
    `scan` (`workers` is not used). torch is never imported here: numpy arrays need no torch.
    """
    with gc_paused():  # tens of thousands of small acyclic objects, as in a scan
        return _check_tensors(named, config, layouts, options)


def _check_tensors(named: Mapping[str, Any], config: ConfigLike | None, layouts: Iterable[LayoutLike] | None,
                   options: ScanOptions | None) -> Report:
    t0 = time.perf_counter()
    options = options or ScanOptions()
    tensors: dict[str, MemTensor] = {}
    for name, obj in named.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, not {type(name).__name__}")
        tensors[name] = wrap(name, obj)
    model_config, findings = _config(config)
    mem = build_layouts(tensors, model_config, layouts or ())
    pairing = mem.pairing
    findings.extend(pairing.findings)
    by_name: dict[str, ScaleLayout] = {lay.scale.name: lay for lay in pairing.layouts}
    scales: list[TensorInfo] = [lay.scale for lay in pairing.layouts] + pairing.value_only
    quant = model_config.quant if model_config else None
    content = options.content_options(bool(quant and quant.ue8m0))

    def read_weight(w: TensorInfo, start: int, length: int) -> bytes:
        return tensors[w.name].weight_bytes(start, length)

    summaries: list[TensorSummary] = []
    cuda = [t for t in scales if tensors[t.name].on_cuda]
    device_state: dict[str, DeviceOutcome] = {}
    if cuda:
        from fp8doctor.runtime.cuda import device_tallies

        device_state = device_tallies([(tensors[t.name], by_name.get(t.name), t, t.name in mem.deepgemm)
                                       for t in cuda], content)
    checked = 0
    for t in scales:
        mt = tensors[t.name]
        layout = by_name.get(t.name)
        dg_suspect = t.name in mem.deepgemm
        if t.name in device_state:
            decided = device_state[t.name]
            dg_suspect = decided.deepgemm_bad > 0
            outcome = _from_device(decided, mt, t, layout, content, read_weight)
        else:
            outcome = judge_scale_tensor(t, mt.all_bytes(), layout, content, read_weight)
        found, summary = outcome
        findings.extend(found or ())
        if summary is not None:
            summaries.append(summary)
        if dg_suspect:
            findings.extend(check_deepgemm(t, layout, mt.rows))
        checked += 1
    findings.extend(check_kinds(summaries, options.outlier_span))
    out = tuple(sorted((_in_memory(f, tensors) for f in findings if options.wants(f)), key=lambda f: f.sort_key))
    scale_bytes = sum(t.nbytes for t in scales)
    stats = ScanStats(files=0, tensors=len(tensors), scale_tensors=len(scales), scale_tensors_checked=checked,
                      scale_bytes_read=scale_bytes, bytes_read=scale_bytes, seconds=time.perf_counter() - t0)
    devices = sorted({t.device for t in tensors.values()})
    target = f"{len(tensors)} tensors in memory ({', '.join(devices) or 'none'})"
    return Report(target=target, findings=out, stats=stats, layouts=DescribedLayouts(pairing.layouts))


def _from_device(decided: DeviceOutcome, mt: MemTensor, t: TensorInfo, layout: ScaleLayout | None,
                 content: ContentOptions, read_weight: ReadWeight) -> tuple[list[Finding], TensorSummary | None]:
    """The outcome of a CUDA tensor: clean from what the device counted, or judged on the host (in
    row slabs when large) when the device was unsure or its padding has entries that are not the fill."""
    if decided.clean:
        return [], TensorSummary(t.name, t.file, t.offset, decided.median, kind_of(t.name))  # type: ignore[arg-type]
    if t.nbytes <= RULE_SLAB or not t.shape or not t.shape[0]:
        return judge_scale_tensor(t, mt.all_bytes(), layout, content, read_weight)
    return check_tensor_slabs(layout, t, lambda r0, n: bytes(mt.rows(r0, n)), content, read_weight)


def _module_tensors(module: Any) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for name, p in module.named_parameters(remove_duplicate=True):
        named[name] = p.detach()
    for name, b in module.named_buffers(remove_duplicate=True):
        if b is not None:
            named.setdefault(name, b)
    return named


def check_module(module: Any, *, config: ConfigLike | None = None, layouts: Iterable[LayoutLike] | None = None,
                 options: ScanOptions | None = None) -> Report:
    """`check_tensors` over a torch.nn.Module's named parameters and buffers. `config` defaults to
    the module's own `config` (a transformers model's), when it has one."""
    if not callable(getattr(module, "named_parameters", None)) or not callable(getattr(module, "named_buffers", None)):
        raise TypeError(f"check_module needs a torch.nn.Module, not {type(module).__name__}")
    if config is None:
        config = getattr(module, "config", None)
        if config is not None and not (isinstance(config, Mapping) or callable(getattr(config, "to_dict", None))):
            config = None
    report = check_tensors(_module_tensors(module), config=config, layouts=layouts, options=options)
    return replace(report, target=f"{type(module).__name__} ({report.stats.tensors} parameters and buffers)")

