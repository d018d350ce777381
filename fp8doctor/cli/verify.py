"""`fp8doctor verify`: run one layer exact and as served; PASS proves padded scales are harmless."""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import typer

from fp8doctor.cli.options import NoColorOpt, PathArg, QuietOpt
from fp8doctor.cli.output import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, fail, no_color, stdout_console
from fp8doctor.reference.profiles import PROFILES


class VerifyFormat(str, enum.Enum):
    console = "console"
    json = "json"


class CacheInit(str, enum.Enum):
    zero = "zero"
    empty = "empty"


Kernel = enum.Enum("Kernel", {name.replace("-", "_"): name for name in PROFILES}, type=str)  # type: ignore[misc]
"""--kernel choices, from the profile registry."""


class Experts(str, enum.Enum):
    auto = "auto"
    routed = "routed"
    all = "all"


def verify_command(
    path: PathArg,
    layer: Annotated[int, typer.Option("--layer", help="Layer index to run.")] = 0,
    tokens: Annotated[int, typer.Option("--tokens", help="Query tokens (the last T positions of the context).")] = 4,
    context: Annotated[int, typer.Option("--context", help="Context length L (keys/values).")] = 256,
    device: Annotated[str, typer.Option("--device", help="torch device: cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the inputs and the arbitrary padding data.")] = 0,
    cache_init: Annotated[CacheInit, typer.Option("--cache-init", help="KV cache pool as torch.zeros (zero) or "
                                                  "torch.empty (empty: arbitrary bytes).")] = CacheInit.zero,
    experts: Annotated[Experts, typer.Option("--experts", help="Experts run: all, the routed ones, or auto (all "
                                             "when the layer's experts are <= 1 GiB).")] = Experts.auto,
    kernel: Annotated[Kernel | None, typer.Option("--kernel", help="Judge one kernel profile only (default: every "
                                                  "profile, a table, exit code from the worst).",
                                                  show_default=False)] = None,
    worst_case: Annotated[bool, typer.Option("--worst-case", help="Arbitrary codes under padded scale entries "
                                             "instead of the stored bytes.")] = False,
    format: Annotated[VerifyFormat, typer.Option("--format", "-f", help="Report format on stdout.")] = (
        VerifyFormat.console),
    quiet: QuietOpt = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """Run one layer exact and as each kernel profile serves it; exit 0 PASS, 1 FAIL or cannot verify (or --kernel
    would refuse to load it), 2 could not run."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise typer.Exit(fail(f"--device must be cpu or cuda, not {device!r}"))
    try:
        import torch  # noqa: F401
    except ImportError:
        raise typer.Exit(fail("verify needs torch: pip install 'fp8doctor[verify]'")) from None
    from fp8doctor import __version__
    from fp8doctor.errors import Fp8DoctorError
    from fp8doctor.reference.layer import VerifyOptions, verify
    from fp8doctor.reporters import RenderContext
    from fp8doctor.reporters.presenters import emit

    options = VerifyOptions(layer=layer, tokens=tokens, context=context, device=device, seed=seed,
                            cache_init=cache_init.value, experts=experts.value,
                            kernel=kernel.value if kernel is not None else None, worst_case=worst_case)
    from fp8doctor.interrupt import hold

    try:
        hold("verify-layer")
        result = verify(path, options)
    except Fp8DoctorError as e:  # VerifyError, CheckpointError: one line
        raise typer.Exit(fail(str(e), e.exit_code)) from None
    color = not no_color(no_color_flag)
    ctx = RenderContext(version=__version__, quiet=quiet, color=color, target=path)
    emit("verify", format.value, result, ctx, stdout_console(color=color), sys.stdout)
    raise typer.Exit(EXIT_OK if result.passed else EXIT_FINDINGS)


__all__ = ["EXIT_ERROR", "verify_command"]
