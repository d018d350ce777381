"""config.json: the quantization config and the model dims the layout model needs.

Both HF-style configs (`quantization_config`) and DeepSeek's native inference configs (top-level
`scale_fmt`, `moe_inter_dim`, ...) are understood. Anything unexpected is a `config-invalid`
finding, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.findings import Finding
from fp8doctor.rules.catalog import emit

# Model dims the layout model uses, with the aliases different configs spell them with.
_DIM_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "dim"),
    "intermediate_size": ("intermediate_size", "inter_dim"),
    "moe_intermediate_size": ("moe_intermediate_size", "moe_inter_dim"),
    "num_experts": ("num_local_experts", "n_routed_experts", "num_experts"),
    "num_attention_heads": ("num_attention_heads", "n_heads"),
    "q_lora_rank": ("q_lora_rank",),
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "v_head_dim": ("v_head_dim",),
    "head_dim": ("head_dim",),
    "index_n_heads": ("index_n_heads",),
    "index_head_dim": ("index_head_dim",),
    "index_topk": ("index_topk",),
    "sliding_window": ("sliding_window", "window_size"),
    "num_hidden_layers": ("num_hidden_layers", "n_layers"),
}


@dataclass(frozen=True)
class QuantConfig:
    """The parts of a quantization config that decide scale layouts."""

    quant_method: str | None = None
    fmt: str | None = None
    block_size: tuple[int, int] | None = None
    scale_fmt: str | None = None
    group_size: int | None = None
    modules_to_not_convert: tuple[str, ...] = ()
    static_input: bool | None = None
    """Activations quantized with calibrated (static) scales: every quantized weight then needs its
    input scale. None: the config does not say."""
    num_bits: int | None = None
    """Bits per weight element (compressed-tensors `num_bits`): how many elements an I32 packs."""
    algo: str | None = None
    """ModelOpt `quant_algo` (hf_quant_config.json or quantization_config), torchao's config type."""

    @property
    def ue8m0(self) -> bool:
        return (self.scale_fmt or "").lower() == "ue8m0"

    @property
    def global_scale_required(self) -> bool:
        """NVFP4 formats keep a second-level (per-tensor) scale beside each block scale."""
        names = ((self.fmt or "") + " " + (self.algo or "")).lower()
        return "nvfp4" in names and "nvfp4weightonly" not in names


@dataclass(frozen=True)
class ModelConfig:
    quant: QuantConfig = field(default_factory=QuantConfig)
    dims: dict[str, int] = field(default_factory=dict)
    model_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _as_pos_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _block(v: Any) -> tuple[int, int] | None:
    if isinstance(v, list) and len(v) == 2 and all(_as_pos_int(x) for x in v):
        return (v[0], v[1])
    return None


def parse_config(obj: Any, file: str = "config.json") -> tuple[ModelConfig, list[Finding]]:
    """Extract the quantization config and dims from a parsed config.json object."""
    findings: list[Finding] = []

    def warn(msg: str) -> None:
        findings.append(emit("config-invalid", file, None, msg))

    if not isinstance(obj, dict):
        warn(f"{file} is a JSON {type(obj).__name__}, not an object; layouts inferred from shapes")
        return ModelConfig(), findings
    dims: dict[str, int] = {}
    sources = [obj]
    for sub in ("text_config", "language_config"):
        if isinstance(obj.get(sub), dict):
            sources.append(obj[sub])
    for canon, aliases in _DIM_ALIASES.items():
        for src in sources:
            val = next((src[a] for a in aliases if a in src), None)
            if val is not None:
                if _as_pos_int(val):
                    dims[canon] = val
                else:
                    warn(f"{canon} is {val!r:.40}, not a positive integer")
                break

    qc = obj.get("quantization_config")
    if qc is None:  # multimodal wrappers keep it in the text model's config
        qc = next((src["quantization_config"] for src in sources[1:] if "quantization_config" in src), None)
    if qc is None:
        qc = {}
    if not isinstance(qc, dict):
        warn("quantization_config is not an object; ignored")
        qc = {}
    block = None
    if "weight_block_size" in qc:
        block = _block(qc["weight_block_size"])
        if block is None:
            warn(f"quantization_config.weight_block_size {qc['weight_block_size']!r:.60} is not [rows, cols]")
    group = _as_pos_int(qc.get("group_size"))
    static_input: bool | None = None
    num_bits: int | None = None
    groups = qc.get("config_groups")
    if isinstance(groups, dict):
        for gname, g in groups.items():
            w = g.get("weights") if isinstance(g, dict) else None
            if not isinstance(w, dict):
                if not (isinstance(g, dict) and w is None):
                    warn(f"quantization_config.config_groups.{gname} has no 'weights' object; ignored")
                continue
            block = block or _block(w.get("block_structure"))
            if w.get("strategy") in ("group", "tensor_group") or "group_size" in w:
                group = group or _as_pos_int(w.get("group_size"))
            num_bits = num_bits or _as_pos_int(w.get("num_bits"))
            act = g.get("input_activations")
            if isinstance(act, dict) and isinstance(act.get("dynamic"), bool):
                static_input = bool(static_input) or not act["dynamic"]
    elif groups is not None:
        warn("quantization_config.config_groups is not an object; ignored")
    not_convert = (qc.get("modules_to_not_convert") or qc.get("ignore") or qc.get("exclude_modules")
                   or [])
    if not isinstance(not_convert, list) or not all(isinstance(m, str) for m in not_convert):
        warn("quantization_config.modules_to_not_convert is not a list of strings; ignored")
        not_convert = []
    scale_fmt = qc.get("scale_fmt", obj.get("scale_fmt"))
    algo = qc.get("quant_algo")
    quant_type = qc.get("quant_type")
    if algo is None and isinstance(quant_type, dict):  # torchao: {"default": {"_type": "NVFP4WeightOnlyConfig"}}
        default = quant_type.get("default")
        algo = default.get("_type") if isinstance(default, dict) else None
    if not isinstance(algo, str):
        algo = None
    if static_input is None and algo is not None:
        upper = algo.upper()  # ModelOpt: FP8 / NVFP4 calibrate input scales; weight-only and MX do not
        static_input = True if upper in ("FP8", "NVFP4", "W4A8_AWQ", "NVFP4_AWQ") else None
    quant = QuantConfig(
        quant_method=qc.get("quant_method") if isinstance(qc.get("quant_method"), str) else None,
        fmt=(qc.get("fmt") or qc.get("format")) if isinstance(qc.get("fmt") or qc.get("format"), str) else None,
        block_size=block,
        scale_fmt=scale_fmt if isinstance(scale_fmt, str) else None,
        group_size=group,
        modules_to_not_convert=tuple(not_convert),
        static_input=static_input,
        num_bits=num_bits,
        algo=algo,
    )
    model_type = obj.get("model_type") if isinstance(obj.get("model_type"), str) else None
    return ModelConfig(quant=quant, dims=dims, model_type=model_type, raw=obj), findings


CONFIG_LIMIT = 64 << 20
"""config.json is read up to this many bytes."""


def read_config(read: Callable[[], bytes | None],
                read_hf_quant: Callable[[], bytes | None] | None = None) -> tuple[ModelConfig | None, list[Finding]]:
    """Parse config.json from `read()` (None: there is none), and ModelOpt's hf_quant_config.json
    from `read_hf_quant()` where there is one. Shared by local and remote checkpoints."""
    try:
        data = read()
        obj = json.loads(data.decode("utf-8")) if data is not None else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        msg = f"config.json could not be read ({reason}); layouts inferred from tensor shapes"
        return None, [emit("config-invalid", "config.json", None, msg)]
    qc = obj.get("quantization_config") if isinstance(obj, dict) else None
    # only ModelOpt writes it: read when config.json says ModelOpt, or says nothing about
    # quantization (older exports kept it all there); no extra request for other checkpoints
    modelopt = (isinstance(qc, dict) and qc.get("quant_method") == "modelopt") or (
        isinstance(obj, dict) and "quantization_config" not in obj)
    hf_quant, findings = _read_hf_quant(read_hf_quant if modelopt else None)
    if obj is None and hf_quant is None:
        return None, findings
    if hf_quant is not None:
        obj = merge_hf_quant(obj if isinstance(obj, dict) else {}, hf_quant)
    config, more = parse_config(obj)
    return config, findings + more


def _read_hf_quant(read: Callable[[], bytes | None] | None) -> tuple[dict[str, Any] | None, list[Finding]]:
    if read is None:
        return None, []
    try:
        data = read()
        obj = json.loads(data.decode("utf-8")) if data is not None else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        return None, [emit("config-invalid", "hf_quant_config.json", None,
                           f"hf_quant_config.json could not be read ({reason}); ignored")]
    if obj is None:
        return None, []
    quant = obj.get("quantization") if isinstance(obj, dict) else None
    if not isinstance(quant, dict):
        return None, [emit("config-invalid", "hf_quant_config.json", None,
                           "hf_quant_config.json has no 'quantization' object; ignored")]
    return quant, []


def merge_hf_quant(obj: dict[str, Any], hf_quant: dict[str, Any]) -> dict[str, Any]:
    """config.json with ModelOpt's hf_quant_config.json `quantization` folded into its
    quantization_config (config.json's own keys win: it is what loaders read first)."""
    qc = obj.get("quantization_config")
    merged = dict(hf_quant)
    if isinstance(qc, dict):
        merged.update(qc)
    merged.setdefault("quant_method", "modelopt")
    return {**obj, "quantization_config": merged}
