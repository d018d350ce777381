"""The typer application: one module per command, mounted here. Never imports click or torch."""

from __future__ import annotations

import os
import sys

import typer

from fp8doctor.cli.dump import dump_command
from fp8doctor.cli.fix import fix_command
from fp8doctor.cli.output import EXIT_ERROR
from fp8doctor.cli.rules import rules_command
from fp8doctor.cli.scan import scan_command
from fp8doctor.cli.verify import verify_command

app = typer.Typer(
    name="fp8doctor",
    help="Inspect and repair the E8M0/FP8/MXFP4 scale tensors of safetensors checkpoints.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("scan")(scan_command)
app.command("rules")(rules_command)
app.command("fix")(fix_command)
app.command("dump")(dump_command)
app.command("verify")(verify_command)


def _version_callback(value: bool) -> None:
    if value:
        from fp8doctor import __version__

        typer.echo(f"fp8doctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Inspect and repair the E8M0/FP8/MXFP4 scale tensors of safetensors checkpoints."""


def main() -> None:
    """Console entry point: no traceback ever reaches the user (FP8DOCTOR_DEBUG=1 shows it)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except Exception as e:  # the last line of defence: one line, documented exit code
        if os.environ.get("FP8DOCTOR_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error ({type(e).__name__}: {e}); "
                         "set FP8DOCTOR_DEBUG=1 for a traceback and please report it\n")
        sys.exit(EXIT_ERROR)
