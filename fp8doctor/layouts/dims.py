"""Real (unpadded) weight dims declared by config.json, for tensors stored with padded dims.

Deliberately conservative: a config dim only shrinks a stored dim when the tensor's name says
unambiguously which dim it is and the stored size looks like that dim rounded up for alignment.
Getting this wrong would make `fix` overwrite real scales, so anything unsure is left as stored.
"""

from __future__ import annotations

from fp8doctor.layouts.conventions import DIM_RULES

# The rules (name pattern -> config dims per axis) live with their conventions (layouts/conventions/):
# a weight's name picks the first rule whose pattern it matches, whatever convention paired it.
_ALL_EXPERTS = all("experts" in r.pattern.pattern for r in DIM_RULES)


def _looks_padded(stored: int, real: int) -> bool:
    """stored is real rounded up to a power-of-two multiple (16..1024), and not far above it."""
    if real >= stored:
        return False
    return any(stored == -(-real // a) * a for a in (16, 32, 64, 128, 256, 512, 1024))


def logical_weight_shape(weight_name: str, shape: tuple[int, ...], dims: dict[str, int]) -> tuple[int, ...]:
    """The weight's real element shape: `shape` with config-declared padded dims shrunk."""
    out = list(shape)
    for rule in DIM_RULES:
        if not rule.pattern.search(weight_name):
            continue
        for axis, getter in rule.axes.items():
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
    if _ALL_EXPERTS and "experts" not in weight_name:  # one C call decides for most names
        return -1
    for i, rule in enumerate(DIM_RULES):
        if rule.pattern.search(weight_name):
            return i
    return -1
