"""Consoles and exit codes shared by every command. Data goes to stdout, everything else to stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from fp8doctor.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK

__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "fail", "no_color", "stderr_console", "stdout_console"]


def no_color(flag: bool = False) -> bool:
    return flag or "NO_COLOR" in os.environ


def stdout_console(color: bool = True) -> Console:
    return Console(file=sys.stdout, no_color=not color, highlight=False, soft_wrap=False)


def stderr_console(color: bool = True) -> Console:
    return Console(file=sys.stderr, stderr=True, no_color=not color, highlight=False)


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Print one line to stderr and return the exit code (commands `raise typer.Exit(fail(...))`)."""
    from rich.markup import escape

    # the message may hold paths, TOML table names or tensor names: never markup
    Console(file=sys.stderr, stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}",
                                                                    markup=True, soft_wrap=True)
    return code
