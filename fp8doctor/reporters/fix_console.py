"""The console report of `fix`: a table of changed tensors, unfixable findings, one verdict line."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from fp8doctor.findings import Severity
from fp8doctor.repair.fix import FixResult
from fp8doctor.reporters.common import capped, hidden_summary, human_bytes, location, plain, plural
from fp8doctor.reporters.console import SEVERITY_STYLE

_TITLE = {"in-place": "in place", "dry-run": "dry run, nothing written", "output": "repaired copy",
          "undo": "undo"}


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def render(result: FixResult, console: Console, max_findings: int = 20, quiet: bool = False,
           fail_on: Severity = Severity.ERROR) -> None:
    if not quiet:
        _render_tables(result, console, max_findings)
    console.print(verdict(result, fail_on))


def _render_tables(r: FixResult, console: Console, max_findings: int) -> None:
    head = Text.assemble(("fp8doctor fix ", "bold"), (plain(r.target), "bold cyan"),
                         f"  ({_TITLE[r.mode]}, fill {r.fill})")
    console.print(head)
    for line in (*r.recovered, *r.notes):
        console.print(Text(plain(line), "yellow"))
    if r.changes:
        verb = "restored" if r.mode == "undo" else "would change" if r.mode == "dry-run" else "changed"
        # the biggest changes first, capped like findings (a padded MoE export changes thousands of tensors)
        listed = sorted(sorted(r.changes, key=lambda c: -c.nbytes)[:max(0, max_findings)],
                       key=lambda c: (c.file, c.first_offset))
        count = f" ({len(listed)} of {len(r.changes):,} tensors, largest first)" if len(listed) < len(r.changes) else ""
        console.print(Text(f"\nPadded scale entries {verb}{count}", "bold"))
        last_file = None
        for c in listed:
            if c.file != last_file:
                console.print(Text(f"  {plain(c.file)}", "dim"))
                last_file = c.file
            console.print(Text.assemble(("    ", ""), (plain(c.tensor), "cyan"),
                                        (f"  {plural(c.entries, 'entry')}, "
                                         f"{human_bytes(c.nbytes)} in {plural(c.runs, 'run')} @ 0x{c.first_offset:x}",
                                         "dim")))
            more = "…" if len(c.before) > 8 else ""  # the sample is the start of the first run
            console.print(Text.assemble(("      ", ""), (_hex(c.before[:8]) + more, "red"), (" → ", ""),
                                        (_hex(c.after[:8]) + more, "green")))
        if len(listed) < len(r.changes):
            n = len(r.changes) - len(listed)
            entries = r.entries_changed - sum(c.entries for c in listed)
            nbytes = r.bytes_changed - sum(c.nbytes for c in listed)
            console.print(Text(f"  ... {plural(n, 'more tensor')}: {entries:,} entries, {nbytes:,} bytes "
                               "(--max-findings, or --format json for every tensor)", "dim"))
    if r.unfixable:
        shown, hidden = capped(r.unfixable, max_findings)
        console.print(Text(f"\nNot fixed ({len(shown)} of {len(r.unfixable)}): fix never guesses real scale values",
                           "bold"))
        for f in shown:
            row = Text.assemble((f"{f.severity.value:<8}", SEVERITY_STYLE[f.severity]), (f"{f.rule}  ", "bold"),
                                (plain(f.tensor) if f.tensor else "", "cyan"))
            if f.file:
                row.append("  " + " ".join(location(f)), "dim")
            console.print(row)
            console.print(Text(plain(f.message)), overflow="fold")
        if hidden:
            console.print(Text(f"... {hidden_summary(hidden)}; --max-findings N, or --format json", "dim"),
                          overflow="fold")


def verdict(r: FixResult, fail_on: Severity = Severity.ERROR) -> Text:
    n_shards = len({c.file for c in r.changes})
    entries = "entry" if r.entries_changed == 1 else "entries"
    what = f"{r.entries_changed:,} padded {entries} in {plural(len(r.changes), 'tensor')}"
    remain = ""
    if r.unfixable:
        bad = sum(1 for f in r.unfixable if f.severity.rank >= fail_on.rank)
        remain = f"; {plural(len(r.unfixable), 'unfixable finding')} left" + (f" ({bad} at or above {fail_on.value})"
                                                                               if bad else "")
    failed = r.failed(fail_on)
    mark, style = ("✗", "bold red") if failed else ("✓", "bold green")
    if r.mode == "undo":
        return Text(f"{mark} restored the original bytes of {what}: {human_bytes(r.bytes_changed)} in "
                    f"{plural(r.shards_touched, 'shard')} ({_written(r)}) in {r.seconds:.2f} s, verified (journal "
                    f"{plain(r.journal)})", style)
    if not r.changes and any(f.rule == "nothing-checked" for f in r.unfixable):
        return Text(f"✗ nothing fixed: nothing was checked{remain}", "bold red")
    if not r.changes:
        return Text(f"{mark} nothing to fix: no padded scale entry differs from the fill{remain}", style)
    if r.mode == "dry-run":
        return Text(f"{'✗' if failed else '!'} dry run: would change {human_bytes(r.bytes_changed)} ({what}) in "
                    f"{plural(n_shards, 'shard')}; nothing was written{remain}", "bold red" if failed else "yellow")
    where = f"; source untouched, copy in {plain(r.output)}" if r.mode == "output" else (
        f"; journal {plain(r.journal)} (undo: fp8doctor fix --undo {plain(r.target)}){_kept(r)}")
    return Text(f"{mark} fixed {what}: {human_bytes(r.bytes_changed)} changed in {plural(r.shards_touched, 'shard')} "
                f"({_written(r)}) in {r.seconds:.2f} s, verified{where}{remain}", style)


def _written(r: FixResult) -> str:
    calls = f" in {plural(r.writes, 'write')}" if r.writes else ""
    return f"{human_bytes(r.bytes_written)} written{calls}"


def _kept(r: FixResult) -> str:
    """Where the journals are and what they cost: they sit inside the checkpoint, and upload tools take
    hidden directories along."""
    if not r.journal_dir:
        return ""
    return (f". Journals kept in {plain(r.journal_dir)}: {human_bytes(r.journal_bytes)}; once the fix is accepted, "
            f"remove them before uploading: rm -r {plain(r.journal_dir)}")
