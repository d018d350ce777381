"""Option definitions shared by several commands (one place, so help texts never drift)."""

from __future__ import annotations

from typing import Annotated

import typer

PathArg = Annotated[str, typer.Argument(help="Checkpoint directory, a .safetensors file, or an index .json; or a "
                                        "URL: hf://ORG/MODEL[@REV], http(s)://BASE/, s3://... (needs the "
                                        "'remote' extra).", show_default=False)]
PathsArg = Annotated[list[str], typer.Argument(
    help="Checkpoints: directories, .safetensors files or index .json files; ORG/NAME[@REV] in the local Hugging "
    "Face cache; or URLs (hf://ORG/MODEL[@REV], http(s)://BASE/, s3://...; the 'remote' extra). Several may be "
    "given; a directory that is not a checkpoint is searched for checkpoints below it; file names are grouped by "
    "checkpoint.", show_default=False)]
FillOpt = Annotated[str, typer.Option("--fill", help="Byte padded entries must hold: zero (0x00), one (0x7F), "
                                      "or 0xNN. Float scales use 0.0 / 1.0.")]
SelectOpt = Annotated[list[str] | None, typer.Option("--select", help="Only report these rule ids (repeatable).")]
IgnoreOpt = Annotated[list[str] | None, typer.Option("--ignore", help="Never report these rule ids (repeatable).")]
LayoutOpt = Annotated[list[str] | None, typer.Option(
    "--layout", help="Override a layout: 'GLOB:block=128x128' and/or 'GLOB:logical=2000x7168' "
    "(weight element dims). Repeatable; later ones win.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No colour (NO_COLOR is honoured too).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only the verdict line and the exit code.")]
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", help="Configuration file (fp8doctor.toml, or a pyproject.toml with \\[tool.fp8doctor]); "
    "default: the closest one at or above the current directory, never one inside the checkpoint.",
    show_default=False)]
IsolatedOpt = Annotated[bool, typer.Option("--isolated", help="Use no configuration file at all.")]
