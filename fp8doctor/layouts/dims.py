"""Real (unpadded) weight dims declared by config.json, for tensors stored with padded dims.

Deliberately conservative: a config dim only shrinks a stored dim when the tensor's name says
unambiguously which dim it is and the stored size looks like that dim rounded up for alignment.
Getting this wrong would make `fix` overwrite real scales, so anything unsure is left as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (name pattern, {axis counted from the end of the element shape: dim key or callable})
# Axis -1 is K (input features), -2 is N (output features), -3 the expert axis of fused experts.
_DimSpec = dict[int, Callable[[dict[str, int]], int | None]]


def _key(k: str, mul: int = 1) -> Callable[[dict[str, int]], int | None]:
    return lambda d: d[k] * mul if k in d else None


_RULES: list[tuple[re.Pattern[str], _DimSpec]] = [
    # routed experts, one module per expert (DeepSeek HF and native names)
    (re.compile(r"(^|\.)experts\.\d+\.(gate_proj|up_proj|w1|w3)\.(weight|weight_packed)$"),
     {-2: _key("moe_intermediate_size")}),
    (re.compile(r"(^|\.)experts\.\d+\.(down_proj|w2)\.(weight|weight_packed)$"),
     {-1: _key("moe_intermediate_size")}),
    # gpt-oss fused experts: [E, N, G, 16] blocks; element shape [E, N, K]
    (re.compile(r"(^|\.)experts\.gate_up_proj_blocks$"),
     {-3: _key("num_experts"), -2: _key("intermediate_size", 2), -1: _key("hidden_size")}),
    (re.compile(r"(^|\.)experts\.down_proj_blocks$"),
     {-3: _key("num_experts"), -2: _key("hidden_size"), -1: _key("intermediate_size")}),
]


def _looks_padded(stored: int, real: int) -> bool:
    """stored is real rounded up to a power-of-two multiple (16..1024), and not far above it."""
    if real >= stored:
        return False
    return any(stored == -(-real // a) * a for a in (16, 32, 64, 128, 256, 512, 1024))


def logical_weight_shape(weight_name: str, shape: tuple[int, ...], dims: dict[str, int]) -> tuple[int, ...]:
    """The weight's real element shape: `shape` with config-declared padded dims shrunk."""
    out = list(shape)
    for pattern, spec in _RULES:
        if not pattern.search(weight_name):
            continue
        for axis, getter in spec.items():
            if -axis > len(out):
                continue
            real = getter(dims)
            if real is not None and _looks_padded(out[axis], real):
                out[axis] = real
        break
    return tuple(out)


def dims_rule(weight_name: str) -> int:
    """Which of the rules `logical_weight_shape` applies to this name (-1: none): names with the
    same rule, stored shape and dims get the same logical shape."""
    if "experts" not in weight_name:  # every rule is about experts
        return -1
    for i, (pattern, _) in enumerate(_RULES):
        if pattern.search(weight_name):
            return i
    return -1
