"""`fp8doctor rules`: every rule id, its default severity, whether fix repairs it, and a paragraph on
what it means and what to do (`fp8doctor rules RULE` for one, `--json` for tools)."""

from __future__ import annotations

from typing import Annotated

import typer

from fp8doctor.cli.options import NoColorOpt
from fp8doctor.cli.output import fail, no_color, stdout_console


def rules_command(
    rule: Annotated[str | None, typer.Argument(help="Show one rule in full.", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """List the rules fp8doctor checks (or explain one)."""
    import json

    from rich.table import Table
    from rich.text import Text

    from fp8doctor.rules.catalog import RULES, validate_rule_ids

    if rule is not None:
        try:
            validate_rule_ids([rule])
        except ValueError as e:
            raise typer.Exit(fail(str(e))) from None
    chosen = [RULES[rule]] if rule else list(RULES.values())
    if json_out:
        typer.echo(json.dumps([{"id": r.id, "severity": r.severity.value, "fixable": r.fixable,
                                "region": r.region.value, "title": r.title, "help": r.help,
                                "accepted_severity": r.accepted_severity.value if r.accepted_severity else None}
                               for r in chosen],
                              indent=2))
        return
    console = stdout_console(color=not no_color(no_color_flag))
    if rule:
        r = chosen[0]
        console.print(f"[bold]{r.id}[/bold]  ({r.severity.value}, {'fixable' if r.fixable else 'not fixable'})")
        console.print(r.title)
        console.print()
        console.print(r.help)
        return
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    table.add_column("rule", style="bold", no_wrap=True, min_width=max(len(r.id) for r in chosen))
    table.add_column("severity", no_wrap=True)
    table.add_column("fix", no_wrap=True)
    table.add_column("meaning and what to do", overflow="fold", ratio=1)
    for r in chosen:
        table.add_row(r.id, r.severity.value, "yes" if r.fixable else "-",
                      Text.assemble((r.title, "bold"), "\n", r.help))
    console.print(table)
