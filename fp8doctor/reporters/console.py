"""The console report: a summary table by rule, the worst findings, and one verdict line."""

from __future__ import annotations

import io
from collections import defaultdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fp8doctor.findings import Report, Severity
from fp8doctor.reporters import RenderContext, TargetResult
from fp8doctor.reporters.common import capped, hidden_summary, human_bytes, location, plain, plural

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


def render_many(results: list[TargetResult], console: Console) -> None:
    """Several checkpoints: one section each (the single-checkpoint report), then one line for all."""
    for n, r in enumerate(results):
        if n:
            console.print()
        if r.report is None or r.ctx is None:
            console.print(Text.assemble(("fp8doctor scan ", "bold"), (plain(r.target), "bold cyan")))
            console.print(Text(f"✗ could not be scanned: {plain(r.error)}", "bold red"), soft_wrap=True)
            continue
        render(r.report, console, r.ctx.max_findings, r.ctx.quiet, r.ctx.fail_on, r.ctx.suppressed, r.ctx.config,
               r.ctx.config_suppressed)
    console.print()
    console.print(overall(results), soft_wrap=True)


def overall(results: list[TargetResult]) -> Text:
    """The last line of a several-checkpoint run: how many failed, which, and the exit code's reason."""
    failed = [r for r in results if r.failed]
    broken = [r for r in results if r.error is not None]
    clean = len(results) - len(failed) - len(broken)
    parts = [f"{len(failed)} failed", f"{clean} passed"] + ([f"{len(broken)} could not be scanned"] if broken else [])
    names = ", ".join(plain(r.target) for r in (broken + failed)[:5])
    more = len(broken) + len(failed) - 5
    tail = f": {names}" + (f" and {more} more" if more > 0 else "") if names else ""
    bad = bool(failed or broken)
    return Text(f"{'✗' if bad else '✓'} {plural(len(results), 'checkpoint')}: {', '.join(parts)}{tail}",
                "bold red" if bad else "bold green")


def _render_tables(report: Report, console: Console, max_findings: int) -> None:
    s = report.stats
    console.print(Text.assemble(("fp8doctor scan ", "bold"), (plain(report.target), "bold cyan"),
                                f"  {plural(s.files, 'file')}, {plural(s.tensors, 'tensor')}, "
                                f"{plural(s.scale_tensors, 'scale tensor')} "
                                f"({human_bytes(s.scale_bytes_read)} of scales)"))
    if report.hf_cache is not None:
        console.print(Text(f"Hugging Face cache: {plain(report.hf_cache['repo_id'])}, revision "
                           f"{plain(report.hf_cache['revision'])}", "dim"), soft_wrap=True)
    if s.requests is not None:
        console.print(Text(network_line(report), "dim"))
    if not report.findings:
        return
    by_rule: dict[str, list] = defaultdict(list)
    for f in report.findings:
        by_rule[f.rule].append(f)
    table = Table(title="Findings by rule", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("severity", no_wrap=True, min_width=8)
    # the id is what users copy into --ignore: never cut it, whatever the width
    table.add_column("rule", style="bold", no_wrap=True, min_width=max(len(r) for r in by_rule))
    table.add_column("findings", justify="right")
    table.add_column("entries", justify="right")
    table.add_column("fixable", justify="right")
    for rule, fs in sorted(by_rule.items(), key=lambda kv: (-kv[1][0].severity.rank, kv[0])):
        sev = fs[0].severity
        table.add_row(Text(sev.value, SEVERITY_STYLE[sev]), rule, f"{len(fs):,}", f"{sum(f.count for f in fs):,}",
                      f"{sum(1 for f in fs if f.fixable):,}" if any(f.fixable for f in fs) else "-")
    console.print(table)

    shown, hidden = capped(report.findings, max_findings)
    console.print(Text(f"\nFindings (worst {len(shown)} of {len(report.findings)})", "bold"))
    for f in shown:
        line = Text.assemble((f"{f.severity.value:<8}", SEVERITY_STYLE[f.severity]), (f"{f.rule}  ", "bold"),
                             (plain(f.tensor) if f.tensor else "", "cyan"))
        where = location(f)
        if where:
            line.append("  " + " ".join(where), "dim")
        console.print(line)
        console.print(Text(plain(f.message)), style="default", overflow="fold")
    if hidden:
        console.print(Text(f"... {hidden_summary(hidden)}; --max-findings N, or --format json", "dim"),
                      overflow="fold")


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


def network_line(report: Report) -> str:
    """What a remote scan cost: bytes fetched and requests, against the checkpoint's size."""
    s = report.stats
    fetched = s.bytes_fetched or 0
    total = s.checkpoint_bytes
    share = f" ({fetched / total:.2%} of its {human_bytes(total)})" if total else ""
    return f"fetched {human_bytes(fetched)} in {plural(s.requests or 0, 'request')}{share}"
