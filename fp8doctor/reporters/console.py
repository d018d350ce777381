"""The console report: a summary table by rule, the worst findings, and one verdict line."""

from __future__ import annotations

import io
from collections import defaultdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fp8doctor.findings import Report, Severity
from fp8doctor.reporters import RenderContext
from fp8doctor.reporters.common import location, plain, plural

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render(report: Report, console: Console, max_findings: int = 20, quiet: bool = False,
           fail_on: Severity = Severity.ERROR, suppressed: int = 0, config: str | None = None,
           config_suppressed: int = 0) -> None:
    if not quiet:
        _render_tables(report, console, max_findings)
        if config is not None:
            console.print(Text(f"configuration: {plain(config)}", "dim"), soft_wrap=True)
    console.print(verdict(report, fail_on, suppressed, config_suppressed), soft_wrap=True)  # one line


def render_report(report: Report, ctx: RenderContext) -> str:
    """The console report as text (for --output FILE: no colour unless the context asks)."""
    buf = io.StringIO()
    console = Console(file=buf, no_color=not ctx.color, force_terminal=ctx.color, highlight=False, width=120,
                      soft_wrap=False)
    render(report, console, ctx.max_findings, ctx.quiet, ctx.fail_on, ctx.suppressed, ctx.config,
           ctx.config_suppressed)
    return buf.getvalue()


def _render_tables(report: Report, console: Console, max_findings: int) -> None:
    s = report.stats
    console.print(Text.assemble(("fp8doctor scan ", "bold"), (plain(report.target), "bold cyan"),
                                f"  {plural(s.files, 'file')}, {plural(s.tensors, 'tensor')}, "
                                f"{plural(s.scale_tensors, 'scale tensor')} ({s.scale_bytes_read:,} scale bytes)"))
    if s.requests is not None:
        console.print(Text(network_line(report), "dim"))
    if not report.findings:
        return
    by_rule: dict[str, list] = defaultdict(list)
    for f in report.findings:
        by_rule[f.rule].append(f)
    table = Table(title="Findings by rule", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("severity")
    table.add_column("rule", style="bold")
    table.add_column("findings", justify="right")
    table.add_column("entries", justify="right")
    table.add_column("fixable", justify="right")
    for rule, fs in sorted(by_rule.items(), key=lambda kv: (-kv[1][0].severity.rank, kv[0])):
        sev = fs[0].severity
        table.add_row(Text(sev.value, SEVERITY_STYLE[sev]), rule, f"{len(fs):,}", f"{sum(f.count for f in fs):,}",
                      f"{sum(1 for f in fs if f.fixable):,}" if any(f.fixable for f in fs) else "-")
    console.print(table)

    shown = report.findings[:max_findings]
    console.print(Text(f"\nFindings (worst {len(shown)} of {len(report.findings)})", "bold"))
    for f in shown:
        line = Text.assemble((f"{f.severity.value:<8}", SEVERITY_STYLE[f.severity]), (f"{f.rule}  ", "bold"),
                             (plain(f.tensor) if f.tensor else "", "cyan"))
        where = location(f)
        if where:
            line.append("  " + " ".join(where), "dim")
        console.print(line)
        console.print(Text(plain(f.message)), style="default", overflow="fold")
    if len(report.findings) > len(shown):
        console.print(Text(f"... {len(report.findings) - len(shown)} more (--max-findings, or --format json)", "dim"))


def verdict(report: Report, fail_on: Severity = Severity.ERROR, suppressed: int = 0,
            config_suppressed: int = 0) -> Text:
    """One line a person reads first; never says clean when something was not checked, and says what
    the configuration or the baseline hid."""
    text = _verdict(report, fail_on)
    if config_suppressed:
        text.append(f" ({plural(config_suppressed, 'finding')} suppressed by the configuration)", "dim")
    if suppressed:
        text.append(f" ({plural(suppressed, 'known finding')} suppressed by the baseline)", "dim")
    return text


def _verdict(report: Report, fail_on: Severity) -> Text:
    c = report.counts()
    s = report.stats
    skipped = f"; {plural(s.skipped, 'scale tensor')} could not be read" if s.skipped else ""
    if not report.findings:
        if s.skipped:
            return Text(f"! no findings, but {plural(s.skipped, 'scale tensor')} could not be read", "yellow")
        return Text(f"✓ no findings in {plural(s.scale_tensors_checked, 'scale tensor')} of "
                    f"{plural(s.files, 'file')}", "bold green")
    parts = [plural(c["error"], "error"), plural(c["warning"], "warning")]
    if c["info"]:
        parts.append(plural(c["info"], "info"))
    fixable = len(report.fixable)
    fix_cmd = "download it, then run `fp8doctor fix DIR`" if s.requests is not None else \
        f"run `fp8doctor fix {plain(report.target)}`"
    fix_hint = f" ({fixable} fixable: {fix_cmd})" if fixable else ""
    failed = report.failed(fail_on)
    style = "bold red" if failed else "yellow"
    mark = "✗" if failed else "!"
    return Text(f"{mark} {', '.join(parts)} in {plural(s.scale_tensors_checked, 'scale tensor')} of "
                f"{plural(s.files, 'file')}{skipped}{fix_hint}", style)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError


def network_line(report: Report) -> str:
    """What a remote scan cost: bytes fetched and requests, against the checkpoint's size."""
    s = report.stats
    fetched = s.bytes_fetched or 0
    share = f" ({fetched / s.checkpoint_bytes:.2%} of its {_size(s.checkpoint_bytes)})" if s.checkpoint_bytes else ""
    return f"fetched {_size(fetched)} in {plural(s.requests or 0, 'request')}{share}"
