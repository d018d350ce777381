"""The typer application: one module per command, mounted here. Never imports click or torch."""

from __future__ import annotations

import os
import signal
import sys

import typer

from fp8doctor.cli.dump import dump_command
from fp8doctor.cli.fix import fix_command
from fp8doctor.cli.output import EXIT_ERROR
from fp8doctor.cli.rules import rules_command
from fp8doctor.cli.scan import scan_command
from fp8doctor.cli.verify import verify_command
from fp8doctor.errors import EXIT_INTERRUPTED

app = typer.Typer(
    name="fp8doctor",
    help="Inspect and repair the E8M0/FP8/MXFP4 scale tensors of safetensors checkpoints.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    suggest_commands=False,  # click already says "Did you mean"; typer's would say it twice
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


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler. Not a KeyboardInterrupt: typer would turn that into a
    silent exit 130; this one reaches `main`, which says "interrupted"."""


def _on_sigint(signum: int, frame: object) -> None:
    raise Interrupted


class _PipeGuard:
    """stdout that survives a reader closing the pipe (`fp8doctor scan ... | head`): later writes
    are dropped (fd 1 now points at /dev/null), so the command finishes and its exit code keeps its
    meaning instead of click's 1 and Python's traceback at exit."""

    def __init__(self, stream, parent: _PipeGuard | None = None) -> None:
        self._stream = stream
        self._parent = parent
        self.broken = False
        buffer = getattr(stream, "buffer", None)
        self.buffer = _PipeGuard(buffer, self) if buffer is not None and parent is None else None

    def _broke(self) -> None:
        root = self._parent or self
        if not root.broken:
            root.broken = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, root._stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def _closed(self) -> bool:
        return (self._parent or self).broken

    def write(self, data):
        if self._closed():
            return len(data)
        try:
            return self._stream.write(data)
        except BrokenPipeError:
            self._broke()
            return len(data)

    def flush(self) -> None:
        if self._closed():
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._broke()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main() -> None:
    """Console entry point: no traceback ever reaches the user (FP8DOCTOR_DEBUG=1 shows it).

    Ctrl-C stops every command within a second (workers are told to stop and not waited for) with
    "interrupted" and exit 130; a closed stdout pipe does not change the exit code."""
    if sys.stdout is not None:
        sys.stdout = _PipeGuard(sys.stdout)  # type: ignore[assignment]
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread (embedded): leave Python's default
        pass
    try:
        app()
    except (Interrupted, KeyboardInterrupt):
        try:
            out = sys.stdout
            if out is not None:
                out.flush()
        except Exception:
            pass
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # scan workers may be inside a read: do not wait for them
    except BrokenPipeError:  # stderr closed, or a write around the guard: quiet, still not a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        sys.exit(EXIT_ERROR)
    except Exception as e:  # the last line of defence: one line, documented exit code
        if os.environ.get("FP8DOCTOR_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error ({type(e).__name__}: {e}); "
                         "set FP8DOCTOR_DEBUG=1 for a traceback and please report it\n")
        sys.exit(EXIT_ERROR)
