"""One layer of a DeepSeek V3.2- or V4-style checkpoint, run exact, quantized and as served.

exact:     logical weights and scales only, attention over valid candidates from the unquantized
           latent; the reference.
quantized: the exact path plus only the rounding the serving kernels add themselves (activations
           E4M3 per token group, the latent through the FP8 cache); it reads no padded byte. Its
           error against exact calibrates each stage's tolerance.
as served: per kernel profile (profiles.py): block-scaled GEMMs reading the scale blocks the
           profile's rule reads over the stored bytes, padded MoE channels carried through, the latent
           in a paged FP8 cache, -1 candidates handled as the profile's attention kernel does.
Each stage is also re-run on the *exact* inputs ("isolated"), so a failure is reported at the stage
whose weights (or cache) caused it; the last stage, `layer`, is the end-to-end run. A stage whose
exact path is itself non-finite, or that compared nothing, cannot be verified: it FAILs, naming the
real-scale cause. See docs/verify.md for the math, the tolerances and the public references.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from fp8doctor.checkpoint.dtypes import FP8_WEIGHT_DTYPES
from fp8doctor.checkpoint.loader import Checkpoint, open_checkpoint
from fp8doctor.errors import VerifyError
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.reference import attention as A
from fp8doctor.reference.cache import CacheLayout, PagedCache
from fp8doctor.reference.dequant import (
    FloatWeight,
    QuantWeight,
    decode_scales,
    linear_exact,
    linear_quantized,
    linear_served,
    unpack_fp4,
)
from fp8doctor.reference.profiles import PROFILES, KernelProfile

TOLERANCE_FACTOR = 2.0
TOLERANCE_FLOOR = 1e-3
"""A stage PASSes when max |served - exact| / max |exact| <= FACTOR * q + FLOOR, q being the same
measure for the quantized path (the error the kernels' own E4M3 rounding causes on these inputs).
On a clean checkpoint served and quantized differ by float32 summation order only (seen <= 1e-6),
so a clean checkpoint cannot FAIL; the floor covers that order, the factor leaves room for it."""

EXPERT_BYTES_AUTO = 1 << 30
"""--experts auto checks every expert when the layer's expert weights are at most this many bytes."""

POOL_NOTE = ("--cache-init empty simulates an uninitialised runtime KV pool (torch.empty): the -1 candidates "
             "this kernel clamps to slot 0 read its arbitrary bytes. That is a property of the serving stack's "
             "pool, not a checkpoint defect: with a zeroed pool the same checkpoint passes")


@dataclass(frozen=True)
class VerifyOptions:
    layer: int = 0
    tokens: int = 4
    context: int = 256
    device: str = "cpu"
    seed: int = 0
    cache_init: str = "zero"
    experts: str = "auto"  # auto | routed | all
    kernel: str | None = None  # one profile of profiles.PROFILES, or None for all of them
    worst_case: bool = False  # arbitrary codes under padded scale entries instead of the stored bytes


@dataclass(frozen=True)
class StageResult:
    name: str
    kind: str
    max_abs: float  # nan when no element compared finite
    max_rel: float
    nonfinite: int  # served values non-finite where exact is finite
    numel: int  # elements compared (exact finite)
    tolerance: float
    tensors: tuple[str, ...] = ()
    detail: str = ""
    exact_nonfinite: int = 0  # exact values NaN/inf (masked -inf of the indexer excluded)
    quantization_error: float = 0.0  # the quantized path's max_rel: what the tolerance is calibrated from
    cause: str = ""  # why the stage cannot be verified (or what the failure is a property of)

    @property
    def verdict(self) -> str:
        if self.numel == 0 or self.exact_nonfinite:
            return "cannot verify"
        if self.nonfinite == 0 and self.max_rel <= self.tolerance:
            return "PASS"
        return "FAIL"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


@dataclass(frozen=True)
class ProfileResult:
    profile: KernelProfile
    stages: tuple[StageResult, ...]
    refused: tuple[str, ...] = ()  # "tensor: grid [R, C], kernel expects [r, c]" when it would refuse to load

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def verdict(self) -> str:
        if self.refused:
            return "refuses"
        if any(s.verdict == "cannot verify" for s in self.stages):
            return "cannot verify"
        return "PASS" if all(s.passed for s in self.stages) else "FAIL"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if not s.passed), None)


SEVERITY = {"PASS": 0, "refuses": 1, "FAIL": 2, "cannot verify": 3}


@dataclass(frozen=True)
class VerifyResult:
    target: str
    layer: int
    arch: str
    options: VerifyOptions
    stages: tuple[StageResult, ...]  # those of `reported`
    assumptions: tuple[str, ...]
    quantized_tensors: int
    bytes_read: int
    seconds: float
    profiles: tuple[ProfileResult, ...] = ()
    reported: str = ""  # the profile whose stages are `stages`: --kernel, else the worst one

    @property
    def verdict(self) -> str:
        """--kernel's verdict; else the worst of the profiles that load (a refusal alone is no FAIL)."""
        if not self.profiles:
            return "PASS" if all(s.passed for s in self.stages) else "FAIL"
        if self.options.kernel:
            return self.profile(self.options.kernel).verdict
        loaded = [p.verdict for p in self.profiles if not p.refused] or ["refuses"]
        return max(loaded, key=SEVERITY.__getitem__)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if not s.passed), None)

    def profile(self, name: str) -> ProfileResult:
        return next(p for p in self.profiles if p.name == name)


def compare(exact: torch.Tensor, served: torch.Tensor, masked: bool = False) -> tuple[float, float, int, int, int]:
    """(max abs error, max abs error / max |exact|, non-finite served values where exact is finite,
    elements compared, non-finite exact values), over the exact tensor's shape. With `masked`, -inf
    in exact is a mask (the indexer's causal mask), neither compared nor counted as non-finite."""
    served = served[tuple(slice(0, n) for n in exact.shape)].float()
    exact = exact.float()
    ref = torch.isfinite(exact)
    exact_bad = ~ref & ~torch.isneginf(exact) if masked else ~ref
    bad = ref & ~torch.isfinite(served)
    ok = ref & ~bad
    diff = (served - exact).abs()[ok]
    max_abs = float(diff.max()) if diff.numel() else float("nan")
    scale = float(exact[ref].abs().max()) if ref.any() else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    return max_abs, max_rel, int(bad.sum()), int(ref.sum()), int(exact_bad.sum())


def _pow2(v: float) -> str:
    if math.isfinite(v) and v > 0 and math.log2(v) == int(math.log2(v)):
        return f"2^{int(math.log2(v))}"
    return f"{v:g}"


def real_scale_problem(w: QuantWeight) -> str | None:
    """A non-finite dequantized *logical* weight, named by the real scale entry (or code) causing it."""
    r, c = w.logical_grid
    s = w.scales[:r, :c]
    bad = ~torch.isfinite(s)
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        return f"{w.scale_name or w.name}[{i}, {j}] = {float(s[i, j])} is a real scale entry, not padding"
    ew = w.exact_weight()
    badw = ~torch.isfinite(ew)
    if bool(badw.any()):
        a, b = (int(v) for v in badw.nonzero()[0])
        if not math.isfinite(float(w.values()[a, b])):
            return f"{w.name}[{a}, {b}] holds a NaN code in the real weight region"
        i, j = a // w.block[0], b // w.block[1]
        return (f"{w.scale_name or w.name}[{i}, {j}] = {_pow2(float(s[i, j]))} is a real scale entry: code x scale "
                "overflows float32")
    return None


def largest_real_scale(w: QuantWeight) -> str:
    r, c = w.logical_grid
    s = w.scales[:r, :c].abs()
    flat = int(s.argmax())
    i, j = divmod(flat, c)
    return f"{w.scale_name or w.name}[{i}, {j}] = {_pow2(float(s[i, j]))}"


# -- loading ----------------------------------------------------------------------------------------


class LayerSource:
    """The tensors of one layer, read with pread on demand; layouts from the pairing model."""

    def __init__(self, ckpt: Checkpoint, prefix: str, device: torch.device) -> None:
        self.ckpt = ckpt
        self.prefix = prefix
        self.device = device
        self.tensors = {n: t for n, t in ckpt.tensors.items() if n.startswith(prefix)}
        pairing = LayoutBuilder(self.tensors, ckpt.config).build()
        self.layouts: dict[str, ScaleLayout] = {lay.weight.name: lay for lay in pairing.layouts if lay.weight}
        problems = [f.message for f in pairing.findings if f.rule in ("scale-missing", "scale-shape-mismatch",
                                                                        "layout-unknown")]
        if problems:
            raise VerifyError(f"layer tensors cannot be modelled: {problems[0]}")
        self.claimed: set[str] = set()
        self.problems: dict[str, str] = {}  # weight name -> non-finite real region, named
        self.largest: dict[str, str] = {}  # weight name -> its largest real scale entry
        self._cache: dict[str, QuantWeight | FloatWeight] = {}

    def name(self, rel: str) -> str:
        return self.prefix + rel

    def has(self, rel: str) -> bool:
        return self.name(rel) in self.tensors

    def _raw(self, name: str) -> torch.Tensor:
        t = self.tensors[name]
        if not self.ckpt.readable(t):
            raise VerifyError(f"{name} is not fully inside {t.file}")
        data = bytearray(self.ckpt.read(t))
        return torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)

    def float(self, rel: str) -> torch.Tensor | None:
        name = self.name(rel)
        t = self.tensors.get(name)
        if t is None:
            return None
        raw = self._raw(name)
        dtype = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}.get(t.dtype)
        if dtype is None:
            raise VerifyError(f"{name} has dtype {t.dtype}; expected BF16/F16/F32")
        return raw.view(dtype).float().reshape(t.shape).to(self.device)

    @property
    def quantized(self) -> list[str]:
        return sorted(self.layouts)

    def linear(self, rel: str, keep: bool = True) -> QuantWeight | FloatWeight:
        name = self.name(rel)
        if name in self._cache:
            return self._cache[name]
        if name not in self.tensors:
            raise VerifyError(f"{name} is missing from the checkpoint")
        self.claimed.add(name)
        lay = self.layouts.get(name)
        w: QuantWeight | FloatWeight
        if lay is None:
            f = self.float(rel)
            assert f is not None
            w = FloatWeight(name, f)
        else:
            w = self._quant(name, lay)
            problem = real_scale_problem(w)
            if problem:
                self.problems[name] = problem
            self.largest[name] = largest_real_scale(w)
        if keep:
            self._cache[name] = w
        return w

    def _quant(self, name: str, lay: ScaleLayout) -> QuantWeight:
        t = self.tensors[name]
        if len(lay.weight_shape) != 2:
            raise VerifyError(f"{name}: only 2-D weights are modelled, this one is {list(lay.weight_shape)}")
        n, k = lay.weight_shape
        raw = self._raw(name).to(self.device)
        if t.dtype in FP8_WEIGHT_DTYPES:
            if t.dtype != "F8_E4M3":
                raise VerifyError(f"{name}: {t.dtype} weights are not modelled (E4M3 and FP4 are)")
            codes, fmt = raw.reshape(n, k), "e4m3"
        else:
            codes, fmt = unpack_fp4(raw.reshape(n, k // 2)), "e2m1"
        sraw = self._raw(lay.scale.name).to(self.device)
        scales = decode_scales(sraw, lay.encoding)
        if lay.swizzle is not None:  # torchao's to_blocked tiles -> the row-major [rows, groups] grid
            order = torch.as_tensor(lay.swizzle.stored_of_canonical(), device=scales.device)
            scales = scales.reshape(-1)[order]
        logical = lay.logical_shape
        if len(logical) == 4 and len(lay.grid_shape) == 2:  # ModelOpt [N/128, 1, K/128, 1]
            logical = (logical[0], logical[2])
        grid, logical_grid = _as_grid(lay.grid_shape), _as_grid(logical)
        block = lay.block if lay.block is not None else (n, k)
        if lay.kind == "tensor":
            grid = logical_grid = (1, 1)
            block = (n, k)
        return QuantWeight(name, codes, fmt, scales.reshape(grid), block,
                           (lay.logical_weight_shape[0], lay.logical_weight_shape[1]), logical_grid,
                           scale_name=lay.scale.name)

    def refusals(self) -> list[str]:
        """Quantized weights whose stored scale grid is not cdiv(N, bn) x cdiv(K, bk) of the weight:
        what DeepGEMM's check_sf_layout and vLLM's w8a8_triton_block_scaled_mm refuse. From the headers."""
        out = []
        for _, lay in sorted(self.layouts.items()):
            if lay.kind == "tensor" or lay.block is None or len(lay.weight_shape) != 2:
                continue
            n, k = lay.weight_shape
            want = (-(-n // lay.block[0]), -(-k // lay.block[1]))
            have = _as_grid(lay.stored_shape)
            if have != want:
                out.append(f"{lay.scale.name}: scale grid {list(have)}, the kernel asserts {list(want)}")
        return out


def _as_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (shape[0], 1)
    return (math.prod(shape[:-1]), shape[-1])


# -- paths ------------------------------------------------------------------------------------------


class Path:
    """The exact, quantized or as-served arithmetic; every model function takes one."""

    def __init__(self, mode: str, options: VerifyOptions, device: torch.device, gemm: str = "shape",
                 minus_one: str = "zeroed", round_scale: bool = False) -> None:
        self.mode = mode  # "exact" | "quantized" | "served"
        self.options = options
        self.device = device
        self.gemm = gemm
        self.minus_one = minus_one
        self.round_scale = round_scale
        self.gen = torch.Generator().manual_seed(options.seed + 1)
        self._matrices: dict[str, torch.Tensor] = {}

    @property
    def served(self) -> bool:
        return self.mode == "served"

    def with_cache_init(self, init: str) -> Path:
        return Path(self.mode, dataclasses.replace(self.options, cache_init=init), self.device, self.gemm,
                    self.minus_one, self.round_scale)

    def lin(self, w: QuantWeight | FloatWeight, x: torch.Tensor) -> torch.Tensor:
        if isinstance(w, FloatWeight):
            return x[..., :w.weight.shape[1]] @ w.weight.t()
        if self.mode == "exact":
            return linear_exact(x, w)
        if self.mode == "quantized":
            return linear_quantized(x, w, self.round_scale)
        return linear_served(x, w, self.gen, rule=self.gemm, worst_case=self.options.worst_case,
                             round_scale=self.round_scale)

    def matrix(self, w: QuantWeight | FloatWeight) -> torch.Tensor:
        """The weight [n, k] as this path's GEMM applies it (served: the GEMM run on the identity,
        whose one-hot rows quantize losslessly)."""
        if isinstance(w, FloatWeight):
            return w.weight
        if not self.served:
            return w.exact_weight()
        if w.name not in self._matrices:
            n, k = w.logical
            eye = torch.eye(k, device=self.device)
            self._matrices[w.name] = linear_served(eye, w, self.gen, rule=self.gemm, worst_case=self.options.worst_case,
                                                   round_scale=self.round_scale).t()[:n]
        return self._matrices[w.name]

    def attention(self, q: torch.Tensor, kv: torch.Tensor, idx: torch.Tensor, q_pos: torch.Tensor,
                  sm_scale: float, d_v: int, sink: torch.Tensor | None, layout: CacheLayout) -> torch.Tensor:
        if self.mode == "exact":
            return A.sparse_attention_exact(q, kv, idx, q_pos, sm_scale, d_v, sink)
        if self.mode == "quantized":  # the cache's rounding of the valid tokens, nothing else
            cache = PagedCache(layout, kv.shape[0], "zero", torch.Generator(), self.device)
            cache.write(kv)
            kvq = cache.gather(cache.slots(torch.arange(kv.shape[0], device=self.device)))
            return A.sparse_attention_exact(q, kvq, idx, q_pos, sm_scale, d_v, sink)
        gen = torch.Generator().manual_seed(self.options.seed + 2)
        cache = PagedCache(layout, kv.shape[0], self.options.cache_init, gen, self.device)
        cache.write(kv)
        return A.sparse_attention_served(q, cache, idx, q_pos, kv.shape[0], sm_scale, d_v, sink, self.minus_one)


class Run:
    """Runs stage functions on one path and keeps (function, inputs, output) per stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log: dict[str, tuple[str, Callable[..., torch.Tensor], tuple[Any, ...], torch.Tensor,
                                  tuple[str, ...]]] = {}

    def __call__(self, name: str, kind: str, tensors: tuple[str, ...], fn: Callable[..., torch.Tensor],
                 *args: Any) -> torch.Tensor:
        out = fn(self.path, *args)
        self.log[name] = (kind, fn, args, out, tensors)
        return out


# -- configuration ----------------------------------------------------------------------------------


class Config:
    """config.json values with aliases; every default taken is written down as an assumption."""

    def __init__(self, ckpt: Checkpoint, assumptions: list[str]) -> None:
        raw = ckpt.config.raw if ckpt.config else {}
        self.sources = [raw] + [raw[s] for s in ("text_config", "language_config") if isinstance(raw.get(s), dict)]
        self.assumptions = assumptions
        if not raw:
            assumptions.append("no config.json: every dimension derived from tensor shapes or defaulted")

    def get(self, *keys: str, default: Any = None, derived: Any = None, why: str = "") -> Any:
        for src in self.sources:
            for k in keys:
                if k in src and src[k] is not None:
                    return src[k]
        if derived is not None:
            if why:
                self.assumptions.append(f"{keys[0]} not in config.json; {why}: {derived}")
            return derived
        if default is not None and why:
            self.assumptions.append(f"{keys[0]} not in config.json; assumed {default} ({why})")
        return default


# -- the model ----------------------------------------------------------------------------------------


def _mlp(path: Path, x: torch.Tensor, w1: Any, w3: Any, w2: Any, limit: float | None) -> torch.Tensor:
    g, u = path.lin(w1, x), path.lin(w3, x)
    if limit:
        g, u = g.clamp(max=limit), u.clamp(-limit, limit)
    return path.lin(w2, torch.nn.functional.silu(g) * u)


@dataclass
class Unit:
    name: str
    rels: tuple[str, str, str]  # gate (w1), up (w3), down (w2)
    expert: int | None  # routed expert id, None for shared/dense


@dataclass
class Model:
    src: LayerSource
    cfg: Config
    arch: str
    opts: VerifyOptions
    device: torch.device
    assumptions: list[str]
    attn_prefix: str = ""
    units: list[Unit] = field(default_factory=list)
    limit: float | None = None  # V4 swiglu clamp

    def __post_init__(self) -> None:
        c = self.cfg
        self.eps = float(c.get("rms_norm_eps", "norm_eps", default=1e-6))
        self.theta = float(c.get("rope_theta", default=10000.0))
        self._find_units()

    # experts ----------------------------------------------------------------------------------
    def _find_units(self) -> None:
        names = [n[len(self.src.prefix):] for n in self.src.tensors]
        pat = re.compile(r"^(?P<unit>(mlp|ffn)\.(experts\.(?P<e>\d+)|shared_experts?)|mlp)\."
                         r"(?P<w>gate_proj|up_proj|down_proj|w1|w3|w2)\.(weight|weight_packed)$")
        found: dict[str, dict[str, str]] = {}
        eids: dict[str, int | None] = {}
        for rel in names:
            m = pat.match(rel)
            if not m:
                continue
            found.setdefault(m["unit"], {})[m["w"]] = rel
            eids[m["unit"]] = int(m["e"]) if m["e"] is not None else None
        for unit, ws in sorted(found.items(), key=lambda kv: (eids[kv[0]] is None, eids[kv[0]] or 0, kv[0])):
            gate = ws.get("gate_proj") or ws.get("w1")
            up = ws.get("up_proj") or ws.get("w3")
            down = ws.get("down_proj") or ws.get("w2")
            if gate and up and down:
                self.units.append(Unit(unit, (gate, up, down), eids[unit]))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(weights [T, k], expert ids [T, k]) from the BF16 router, or None without routed experts."""
        routed = [u for u in self.units if u.expert is not None]
        if not routed:
            return None
        pre = routed[0].name.split(".experts.")[0]
        gate_w = self.src.float(f"{pre}.gate.weight")
        n_exp = 1 + max(u.expert for u in routed if u.expert is not None)
        k = int(self.cfg.get("num_experts_per_tok", "n_activated_experts", default=min(8, n_exp),
                             why="experts per token"))
        if gate_w is None:
            self.assumptions.append(f"no {pre}.gate.weight: every token routed to the first {k} experts, equal weights")
            ids = torch.arange(k, device=self.device).expand(x.shape[0], k)
            return torch.full(ids.shape, 1.0 / k, device=self.device), ids
        logits = x @ gate_w.t()
        func = str(self.cfg.get("scoring_func", default="softmax", why="router scoring")).lower()
        if func == "sigmoid":
            scores = torch.sigmoid(logits)
        elif func == "sqrtsoftplus":
            scores = torch.sqrt(torch.nn.functional.softplus(logits))
        else:
            scores = torch.softmax(logits, -1)
        bias = self.src.float(f"{pre}.gate.e_score_correction_bias")
        if bias is None:
            bias = self.src.float(f"{pre}.gate.bias")
        sel = scores + bias if bias is not None else scores
        ids = sel.topk(min(k, n_exp), -1).indices
        w = scores.gather(-1, ids)
        if func != "softmax" or self.cfg.get("norm_topk_prob", default=False):
            w = w / w.sum(-1, keepdim=True)
        w = w * float(self.cfg.get("routed_scaling_factor", "route_scale", default=1.0))
        return w, ids

    def moe(self, ex_in: torch.Tensor, exact: Path, others: dict[str, tuple[Path, torch.Tensor]],
            limit: float | None) -> tuple[list[tuple[Unit, tuple[str, ...], torch.Tensor, dict[str, torch.Tensor]]],
                                          torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every MLP unit of the layer, run exact and on every other path (the quantized one and each
        served semantics), both isolated (on the exact input) and end to end (on that path's own
        input). Returns ([(unit, tensors, exact out, {path: isolated out})], exact MoE output,
        {path: isolated MoE output}, {path: end-to-end MoE output}). Routing is decided once, on the
        exact input, and used by all paths."""
        routing = self.route(ex_in)
        routed = [u for u in self.units if u.expert is not None]
        mode = self.opts.experts
        if mode == "auto":
            total = sum(self.src.tensors[self.src.name(r)].nbytes for u in routed for r in u.rels)
            mode = "all" if total <= EXPERT_BYTES_AUTO else "routed"
        chosen = set(routing[1].flatten().tolist()) if routing else set()
        if routed and mode == "routed":
            skipped = [u for u in routed if u.expert not in chosen]
            if skipped:
                self.assumptions.append(
                    f"{len(routed) - len(skipped)} of {len(routed)} routed experts exercised (those the router "
                    f"picks for the {ex_in.shape[0]} tokens); {len(skipped)} not run: use --experts all")
                for u in skipped:
                    self.src.claimed.update(self.src.name(r) for r in u.rels)
        out_ex = torch.zeros_like(ex_in)
        out_iso = {k: torch.zeros_like(ex_in) for k in others}
        out_e2e = {k: torch.zeros_like(ex_in) for k in others}
        units = []
        for u in self.units:
            if u.expert is not None and mode == "routed" and u.expert not in chosen:
                continue
            ws = [self.src.linear(r, keep=False) for r in u.rels]
            w1, w3, w2 = ws
            e = _mlp(exact, ex_in, w1, w3, w2, limit)
            if u.expert is None:
                weight = torch.ones(ex_in.shape[0], 1, device=self.device)
            else:
                assert routing is not None
                weight = (routing[0] * (routing[1] == u.expert)).sum(-1, keepdim=True)
            used = bool((weight != 0).any())
            out_ex += weight * e
            isos = {}
            for key, (path, inp) in others.items():
                iso = _mlp(path, ex_in, w1, w3, w2, limit)
                isos[key] = iso
                out_iso[key] += weight * iso[:, :e.shape[1]]
                if used:
                    out_e2e[key] += weight * _mlp(path, inp, w1, w3, w2, limit)[:, :e.shape[1]]
            units.append((u, tuple(self.src.name(r) for r in u.rels), e, isos))
            for w in ws:
                w.release()
        return units, out_ex, out_iso, out_e2e


def _aggregate(name: str, kind: str, parts: list[StageResult]) -> StageResult:
    worst = max(parts, key=lambda s: (SEVERITY[s.verdict], s.nonfinite, s.max_rel))
    fails = [s.name for s in parts if not s.passed]
    detail = f"{len(parts)} units; worst {worst.name} (rel {worst.max_rel:.2e}, non-finite {worst.nonfinite})"
    if fails:
        detail += f"; failing: {', '.join(fails[:6])}" + (f" (+{len(fails) - 6})" if len(fails) > 6 else "")
    cause = next((s.cause for s in parts if s.verdict == "cannot verify" and s.cause), "")
    cause = cause or next((s.cause for s in parts if s.cause), "")
    # the unit furthest past (or closest to) its own tolerance speaks for the group
    ratio = max(parts, key=lambda s: -1.0 if math.isnan(s.max_rel) else s.max_rel / s.tolerance)
    return StageResult(name, kind, ratio.max_abs, ratio.max_rel, sum(s.nonfinite for s in parts),
                       sum(s.numel for s in parts) if all(s.numel for s in parts) else 0, ratio.tolerance,
                       tuple(t for s in parts for t in s.tensors), detail, sum(s.exact_nonfinite for s in parts),
                       ratio.quantization_error, cause)


def _expect(what: str, actual: int, expected: int, why: str) -> None:
    if actual != expected:
        raise VerifyError(f"{what} is {actual}, but the config implies {expected} ({why}); the checkpoint's dims "
                          "are not MLA-consistent, so the layer cannot be run")


def _v32(m: Model, run: Run, x: torch.Tensor, pos: torch.Tensor, q_pos: torch.Tensor,
         selection: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek V3.2 MLA (absorbed, as the sparse kernel runs it) with its indexer.
    Returns (moe input, residual after attention) for the query tokens."""
    src, c, a = m.src, m.cfg, m.attn_prefix
    T = q_pos.shape[0]
    kvl = int(c.get("kv_lora_rank", derived=src.tensors[src.name(f"{a}kv_b_proj.weight")].shape[-1],
                    why="taken from kv_b_proj's input width"))
    rd = int(c.get("qk_rope_head_dim", default=64, why="DeepSeek's value"))
    nope = int(c.get("qk_nope_head_dim", default=128, why="DeepSeek's value"))
    vd = int(c.get("v_head_dim", default=128, why="DeepSeek's value"))
    H = int(c.get("num_attention_heads", "n_heads",
                  derived=src.tensors[src.name(f"{a}q_b_proj.weight")].shape[0] // (nope + rd),
                  why="q_b_proj rows / (qk_nope_head_dim + qk_rope_head_dim)"))
    sm_scale = (nope + rd) ** -0.5
    rs = c.get("rope_scaling") or {}
    if isinstance(rs, dict) and float(rs.get("factor", 1) or 1) > 1:
        ms = 0.1 * float(rs.get("mscale_all_dim", rs.get("mscale", 1.0)) or 1.0) * math.log(float(rs["factor"])) + 1
        sm_scale *= ms * ms
    h = A.rms_norm(x, src.float("input_layernorm.weight"), m.eps)
    wqa, wqb = src.linear(f"{a}q_a_proj.weight"), src.linear(f"{a}q_b_proj.weight")
    wkva, wkvb = src.linear(f"{a}kv_a_proj_with_mqa.weight"), src.linear(f"{a}kv_b_proj.weight")
    wo = src.linear(f"{a}o_proj.weight")
    _expect("q_b_proj rows", wqb.logical[0], H * (nope + rd), "heads x (qk_nope_head_dim + qk_rope_head_dim)")
    _expect("q_b_proj columns", wqb.logical[1], wqa.logical[0], "q_a_proj rows")
    _expect("kv_a_proj_with_mqa rows", wkva.logical[0], kvl + rd, "kv_lora_rank + qk_rope_head_dim")
    _expect("kv_b_proj rows", wkvb.logical[0], H * (nope + vd), "heads x (qk_nope_head_dim + v_head_dim)")
    _expect("kv_b_proj columns", wkvb.logical[1], kvl, "kv_lora_rank")
    _expect("o_proj columns", wo.logical[1], H * vd, "heads x v_head_dim")
    _expect("q_a_proj columns", wqa.logical[1], x.shape[1], "hidden_size")
    qn, kvn = src.float(f"{a}q_a_layernorm.weight"), src.float(f"{a}kv_a_layernorm.weight")
    hq = h[-T:]
    qa = run("q_a_proj", "gemm", (wqa.name,), lambda p, v: p.lin(wqa, v), hq)
    qr = A.rms_norm(qa[:, :wqa.logical[0]], qn, m.eps)
    q = run("q_b_proj", "gemm", (wqb.name,), lambda p, v: p.lin(wqb, v), qr)
    q = q[:, :H * (nope + rd)].reshape(T, H, nope + rd)
    kva = run("kv_a_proj_with_mqa", "gemm", (wkva.name,), lambda p, v: p.lin(wkva, v), h)
    kv_c = A.rms_norm(kva[:, :kvl], kvn, m.eps)
    k_pe = A.rope(kva[:, kvl:kvl + rd], pos, m.theta)
    run("kv_b_proj", "gemm", (wkvb.name,), lambda p, v: p.lin(wkvb, v), kv_c[-T:])
    q_nope, q_pe = q[..., :nope], A.rope(q[..., nope:], q_pos, m.theta)
    latent = torch.cat([kv_c, k_pe], -1)
    L = x.shape[0]
    topk = int(c.get("index_topk", default=2048, why="DeepSeek V3.2's value"))
    if src.has(f"{a}indexer.wq_b.weight"):
        iq, ik = src.linear(f"{a}indexer.wq_b.weight"), src.linear(f"{a}indexer.wk.weight")
        ih = int(c.get("index_n_heads", default=64, why="DeepSeek V3.2's value"))
        idim = int(c.get("index_head_dim", derived=ik.logical[0], why="indexer.wk rows"))
        wproj = src.linear(f"{a}indexer.weights_proj.weight")
        knw, knb = src.float(f"{a}indexer.k_norm.weight"), src.float(f"{a}indexer.k_norm.bias")
        qi = run("indexer.wq_b", "gemm", (iq.name,), lambda p, v: p.lin(iq, v), qr)
        ki = run("indexer.wk", "gemm", (ik.name,), lambda p, v: p.lin(ik, v), h)

        def index_scores(p: Path, qi: torch.Tensor, ki: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
            qh = qi[:, :ih * idim].reshape(T, ih, idim)
            qh = torch.cat([A.rope(qh[..., :rd], q_pos, m.theta), qh[..., rd:]], -1)
            kk = A.layer_norm(ki[:, :idim], knw, knb, 1e-6)
            kk = torch.cat([A.rope(kk[:, :rd], pos, m.theta), kk[:, rd:]], -1)
            w = p.lin(wproj, hq) * ih ** -0.5 * idim ** -0.5
            s = torch.einsum("thd,ld->thl", qh, kk).relu()
            s = (s * w.unsqueeze(-1)).sum(1)
            causal = torch.arange(L, device=s.device).unsqueeze(0) > q_pos.unsqueeze(-1)
            return s.masked_fill(causal, float("-inf"))

        scores = run("indexer", "indexer", (), index_scores, qi, ki, hq)
        sel = A.topk_positions(scores, topk)
    else:
        m.assumptions.append("no indexer in this layer: top-k chosen by the exact path's attention scores")
        sel = selection[0] if selection else None  # type: ignore[assignment]
        if sel is None:
            wk = m.src.linear(f"{a}kv_b_proj.weight").exact_weight()
            qa_ = torch.einsum("thd,hdc->thc", q_nope, wk.reshape(H, nope + vd, kvl)[:, :nope])
            s = torch.einsum("thc,lc->thl", torch.cat([qa_, q_pe], -1), latent).amax(1)
            causal = torch.arange(L, device=s.device).unsqueeze(0) > q_pos.unsqueeze(-1)
            sel = A.topk_positions(s.masked_fill(causal, float("-inf")), topk)
    selection.append(sel)
    parts = [sel]
    win = c.get("sliding_window")
    if isinstance(win, int) and win > 0:
        parts.append(A.window(q_pos, win))
    idx = A.candidates(parts)
    layout = CacheLayout("v32", kvl, rd)

    def attend(p: Path, q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor, idx: torch.Tensor):
        wkv = p.matrix(wkvb).reshape(H, nope + vd, kvl)
        qf = torch.cat([torch.einsum("thd,hdc->thc", q_nope, wkv[:, :nope]), q_pe], -1)
        o = p.attention(qf, latent, idx, q_pos, sm_scale, kvl, None, layout)
        return torch.einsum("thc,hvc->thv", o, wkv[:, nope:]).reshape(T, H * vd)

    o = run("attention", "attention", (wkvb.name,), attend, q_nope, q_pe, latent, idx)
    out = run("o_proj", "gemm", (wo.name,), lambda p, v: p.lin(wo, v), o)
    h2 = x[-T:] + out[:, :x.shape[1]]
    return A.rms_norm(h2, src.float("post_attention_layernorm.weight"), m.eps), h2


def _v4(m: Model, run: Run, x: torch.Tensor, pos: torch.Tensor, q_pos: torch.Tensor,
        selection: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek V4 attention: MQA over a shared 512-d KV (K = V), sliding window, attention sink,
    inverse RoPE on the output, grouped low-rank output projection (wo_a per group, then wo_b)."""
    src, c, a = m.src, m.cfg, m.attn_prefix
    T = q_pos.shape[0]
    wqa, wqb, wkv = (src.linear(f"{a}{n}.weight") for n in ("wq_a", "wq_b", "wkv"))
    woa, wob = src.linear(f"{a}wo_a.weight"), src.linear(f"{a}wo_b.weight")
    hd = int(c.get("head_dim", derived=wkv.logical[0], why="wkv rows"))
    H = int(c.get("num_attention_heads", "n_heads", derived=wqb.logical[0] // hd, why="wq_b rows / head_dim"))
    rd = int(c.get("qk_rope_head_dim", "rope_head_dim", default=64, why="DeepSeek V4's value"))
    G = int(c.get("o_groups", derived=H * hd // woa.logical[1], why="heads x head_dim / wo_a columns"))
    if G <= 0 or (H * hd) % G or woa.logical[0] % G or hd <= rd:
        raise VerifyError(f"attention dims do not fit together (heads {H}, head_dim {hd}, rope {rd}, o_groups {G}, "
                          f"wo_a {list(woa.logical)}); the layer cannot be run")
    r = woa.logical[0] // G
    _expect("wq_b rows", wqb.logical[0], H * hd, "heads x head_dim")
    _expect("wq_b columns", wqb.logical[1], wqa.logical[0], "wq_a rows")
    _expect("wkv rows", wkv.logical[0], hd, "head_dim")
    _expect("wo_a columns", woa.logical[1], H * hd // G, "heads x head_dim / o_groups")
    _expect("wo_b columns", wob.logical[1], G * r, "o_groups x o_lora_rank")
    _expect("wq_a columns", wqa.logical[1], x.shape[1], "hidden_size")
    win = int(c.get("sliding_window", "window_size", default=128, why="DeepSeek V4's value"))
    limit = c.get("swiglu_limit")
    m.limit = float(limit) if limit else None
    sm_scale = hd ** -0.5
    sink = src.float(f"{a}attn_sink")
    if sink is None:
        m.assumptions.append("no attn.attn_sink: attention without a sink")
    h = A.rms_norm(x, src.float("attn_norm.weight"), m.eps)
    qa = run("wq_a", "gemm", (wqa.name,), lambda p, v: p.lin(wqa, v), h[-T:])
    qr = A.rms_norm(qa[:, :wqa.logical[0]], src.float(f"{a}q_norm.weight"), m.eps)
    q = run("wq_b", "gemm", (wqb.name,), lambda p, v: p.lin(wqb, v), qr)
    q = q[:, :H * hd].reshape(T, H, hd)
    q = A.rms_norm(q, None, m.eps)
    q = torch.cat([q[..., :hd - rd], A.rope(q[..., hd - rd:], q_pos, m.theta)], -1)
    kv = run("wkv", "gemm", (wkv.name,), lambda p, v: p.lin(wkv, v), h)
    kv = A.rms_norm(kv[:, :hd], src.float(f"{a}kv_norm.weight"), m.eps)
    kv = torch.cat([kv[:, :hd - rd], A.rope(kv[:, hd - rd:], pos, m.theta)], -1)
    idx = A.candidates([A.window(q_pos, win)])
    layout = CacheLayout("model1", hd - rd, rd)

    def attend(p: Path, q: torch.Tensor, kv: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        o = p.attention(q, kv, idx, q_pos, sm_scale, hd, sink, layout)
        return torch.cat([o[..., :hd - rd], A.rope(o[..., hd - rd:], q_pos, m.theta, inverse=True)], -1)

    o = run("attention", "attention", (), attend, q, kv, idx)

    def grouped(p: Path, o: torch.Tensor) -> torch.Tensor:
        xg = o.reshape(T, G, H * hd // G).transpose(0, 1).reshape(G * T, -1)
        y = p.lin(woa, xg).reshape(G, T, -1)
        return torch.stack([y[g, :, g * r:(g + 1) * r] for g in range(G)], 1).reshape(T, G * r)

    oa = run("wo_a", "gemm", (woa.name,), grouped, o)
    ob = run("wo_b", "gemm", (wob.name,), lambda p, v: p.lin(wob, v), oa)
    h2 = x[-T:] + ob[:, :x.shape[1]]
    return A.rms_norm(h2, src.float("ffn_norm.weight"), m.eps), h2


def _find_layer(ckpt: Checkpoint, layer: int) -> tuple[str, str, str]:
    """(architecture, layer prefix, attention prefix relative to it)."""
    for pre in (f"model.layers.{layer}.", f"layers.{layer}."):
        if pre + "attn.wkv.weight" in ckpt.tensors:
            return "deepseek_v4", pre, "attn."
        if pre + "self_attn.kv_a_proj_with_mqa.weight" in ckpt.tensors:
            return "deepseek_v32", pre, "self_attn."
    layers = sorted({int(m[1]) for n in ckpt.tensors if (m := re.match(r"^(?:model\.)?layers\.(\d+)\.", n))})
    if layers and layer not in layers:
        raise VerifyError(f"layer {layer} not in the checkpoint (layers {layers[0]}..{layers[-1]})")
    raise VerifyError(f"layer {layer} has neither DeepSeek V3.2 MLA tensors (self_attn.kv_a_proj_with_mqa) nor "
                      "DeepSeek V4 ones (attn.wkv); verify models only those two architectures")


def _round_scale(ckpt: Checkpoint) -> bool:
    """DeepSeek's scale_fmt "ue8m0": act_quant rounds activation scales up to powers of two."""
    raw = ckpt.config.raw if ckpt.config else {}
    q = raw.get("quantization_config") if isinstance(raw, dict) else None
    return isinstance(q, dict) and str(q.get("scale_fmt", "")).lower() == "ue8m0"


def _nonfinite(args: tuple[Any, ...]) -> bool:
    return any(isinstance(a, torch.Tensor) and a.is_floating_point() and not bool(torch.isfinite(a).all())
               for a in args)


class _Judge:
    """Turns (exact, quantized, served) outputs of one stage into a StageResult: the comparison,
    the tolerance calibrated from the quantized path, and the real-scale cause when the exact path
    cannot serve as a reference."""

    def __init__(self, src: LayerSource) -> None:
        self.src = src
        self.upstream = ""  # "stage: cause" of the first stage that could not be verified

    def cause(self, tensors: tuple[str, ...], args: tuple[Any, ...]) -> str:
        for t in tensors:
            if t in self.src.problems:
                return self.src.problems[t]
        if _nonfinite(args) or (self.upstream and not tensors):
            return "its exact input is already non-finite" + (f", from {self.upstream}" if self.upstream else "")
        big = "; ".join(self.src.largest[t] for t in tensors if t in self.src.largest)
        return "the exact output overflows float32" + (f" (largest real scale entry: {big})" if big else "")

    def stage(self, name: str, kind: str, exact: torch.Tensor, quantized: torch.Tensor, served: torch.Tensor,
              tensors: tuple[str, ...], args: tuple[Any, ...], detail: str = "") -> StageResult:
        masked = kind == "indexer"
        q = compare(exact, quantized, masked)
        r = compare(exact, served, masked)
        qerr = q[1] if math.isfinite(q[1]) else 0.0
        tol = TOLERANCE_FACTOR * qerr + TOLERANCE_FLOOR
        cause = ""
        if r[3] == 0 or r[4]:
            cause = self.cause(tensors, args) if r[4] else "nothing to compare: the exact output has no finite element"
            if not self.upstream:
                self.upstream = f"stage {name}: {cause}"
        return StageResult(name, kind, r[0], r[1], r[2], r[3], tol, tensors, detail, r[4], qerr, cause)


def _validate(opts: VerifyOptions) -> None:
    if opts.tokens < 1 or opts.context < opts.tokens:
        raise VerifyError(f"need 1 <= --tokens <= --context (got {opts.tokens} and {opts.context})")
    if opts.cache_init not in ("empty", "zero"):
        raise VerifyError(f"--cache-init must be empty or zero, not {opts.cache_init!r}")
    if opts.experts not in ("auto", "routed", "all"):
        raise VerifyError(f"--experts must be auto, routed or all, not {opts.experts!r}")
    if opts.kernel is not None and opts.kernel not in PROFILES:
        raise VerifyError(f"--kernel must be one of {', '.join(PROFILES)}, not {opts.kernel!r}")


def verify(path: str | os.PathLike[str], options: VerifyOptions | None = None) -> VerifyResult:
    """Run one layer exact, quantized and as served under each kernel profile (or `options.kernel`
    only); raises VerifyError / CheckpointError when it cannot run."""
    opts = options or VerifyOptions()
    _validate(opts)
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VerifyError("--device cuda asked for, but torch sees no CUDA device")
    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt, torch.no_grad():
        arch, prefix, attn = _find_layer(ckpt, opts.layer)
        assumptions: list[str] = []
        cfg = Config(ckpt, assumptions)
        src = LayerSource(ckpt, prefix, device)
        model = Model(src, cfg, arch, opts, device, assumptions, attn)
        rs = _round_scale(ckpt)
        assumptions.append("served and quantized paths quantize activations to E4M3 per 128-element token group "
                           "(DeepSeek kernel.py act_quant" + ("; scale_fmt ue8m0: power-of-two scales)" if rs else ")"))
        if opts.worst_case:
            assumptions.append("--worst-case: arbitrary finite codes under every padded scale entry a kernel reads "
                               "(default: the codes as stored)")
        if opts.cache_init == "empty":
            assumptions.append("--cache-init empty simulates an uninitialised runtime KV pool (torch.empty): only "
                               "profiles that gather slot 0 for -1 candidates read it; not a checkpoint property")
        profs = [PROFILES[opts.kernel]] if opts.kernel else list(PROFILES.values())
        refusals = tuple(src.refusals())
        sems = list(dict.fromkeys(p.semantics for p in profs if not (p.refuses_padded_grid and refusals)))
        gen = torch.Generator().manual_seed(opts.seed)
        hidden = int(cfg.get("hidden_size", "dim", derived=_hidden(src, arch, attn), why="from the q projection"))
        x = torch.randn(opts.context, hidden, generator=gen).to(device)
        pos = torch.arange(opts.context, device=device)
        q_pos = pos[-opts.tokens:]
        exact = Path("exact", opts, device)
        quant = Path("quantized", opts, device, round_scale=rs)
        served = {sem: Path("served", opts, device, sem[0], sem[1], rs) for sem in sems}
        fwd = _v4 if arch == "deepseek_v4" else _v32
        ex_run, q_run = Run(exact), Run(quant)
        sel: list[torch.Tensor] = []
        ex_in, ex_h = fwd(model, ex_run, x, pos, q_pos, sel)
        q_in, q_h = fwd(model, q_run, x, pos, q_pos, sel)
        se = {sem: fwd(model, Run(served[sem]), x, pos, q_pos, sel) for sem in sems}
        judge = _Judge(src)
        stages: dict[tuple[str, str], list[StageResult]] = {sem: [] for sem in sems}
        for name, (kind, fn, args, out, tensors) in ex_run.log.items():
            qo = fn(quant, *args)
            for sem in sems:
                st = judge.stage(name, kind, out, qo, fn(served[sem], *args), tensors, args)
                if kind == "attention" and st.verdict == "FAIL" and opts.cache_init == "empty" and sem[1] == "slot0":
                    pool0 = fn(served[sem].with_cache_init("zero"), *args)
                    zero = judge.stage(name, kind, out, qo, pool0, tensors, args)
                    if zero.passed:
                        st = dataclasses.replace(st, tensors=(), cause=POOL_NOTE,
                                                 detail="runtime KV pool, not the checkpoint: " + POOL_NOTE)
                stages[sem].append(st)
        ex_out, q_out = ex_h, q_h
        outs = {sem: se[sem][1] for sem in sems}
        if model.units:
            others = {"quantized": (quant, q_in), **{"|".join(sem): (served[sem], se[sem][0]) for sem in sems}}
            units, moe_ex, moe_iso, moe_e2e = model.moe(ex_in, exact, others, model.limit)
            for sem in sems:
                key = "|".join(sem)
                parts = [judge.stage(u.name, "experts", e, isos["quantized"], isos[key], tensors, (ex_in,))
                         for u, tensors, e, isos in units]
                stages[sem].append(_aggregate("experts", "experts", parts))
                stages[sem].append(judge.stage("moe", "moe", moe_ex, moe_iso["quantized"], moe_iso[key], (), (ex_in,),
                                               detail="routed + shared experts combined, isolated"))
                outs[sem] = outs[sem] + moe_e2e[key]
            ex_out, q_out = ex_h + moe_ex, q_h + moe_e2e["quantized"]
        else:
            assumptions.append("no MLP/expert tensors found in this layer: layer output = attention residual")
        for name in src.quantized:
            if name in src.claimed:
                continue
            rel = name[len(prefix):]
            w = src.linear(rel, keep=False)
            xin = torch.randn(opts.tokens, w.logical[1], generator=gen).to(device)
            e, qv = exact.lin(w, xin), quant.lin(w, xin)
            for sem in sems:
                stages[sem].append(judge.stage(f"probe {rel}", "probe", e, qv, served[sem].lin(w, xin), (name,), (xin,),
                                               "not part of the modelled architecture: checked as a standalone GEMM"))
            assumptions.append(f"{rel} is not modelled; checked as a standalone GEMM on random input")
            w.release()
        for sem in sems:
            st = judge.stage("layer", "layer", ex_out, q_out, outs[sem], (), (x,),
                             detail="end to end: every stage as served")
            if not st.passed and any(s.cause == POOL_NOTE for s in stages[sem]):
                st = dataclasses.replace(st, cause=POOL_NOTE)
            stages[sem].append(st)
        bytes_read = ckpt.bytes_read
        nq = len(src.quantized)
    results = tuple(ProfileResult(p, (), refusals) if p.refuses_padded_grid and refusals else
                    ProfileResult(p, tuple(stages[p.semantics])) for p in profs)
    if opts.kernel:
        reported = results[0]
    else:
        loaded = [r for r in results if not r.refused]
        reported = max(loaded, key=lambda r: SEVERITY[r.verdict]) if loaded else results[0]
    return VerifyResult(os.fspath(path), opts.layer, arch, opts, reported.stages, tuple(dict.fromkeys(assumptions)),
                        nq, bytes_read, time.perf_counter() - t0, results, reported.name)


def _hidden(src: LayerSource, arch: str, attn: str) -> int:
    rel = f"{attn}wq_a.weight" if arch == "deepseek_v4" else f"{attn}q_a_proj.weight"
    t = src.tensors[src.name(rel)]
    return t.shape[-1]
