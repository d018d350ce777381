"""Project configuration: `fp8doctor.toml`, or `[tool.fp8doctor]` in `pyproject.toml`.

Discovery: starting at the current directory and walking up to the filesystem root (as ruff and
pytest do), the first directory holding `fp8doctor.toml`, or a `pyproject.toml` with a
`[tool.fp8doctor]` table, wins (`fp8doctor.toml` first within one directory). Directories inside
the checkpoint (or the checkpoint directory itself) are skipped: a checkpoint is untrusted input and
must never configure, let alone silence, its own check. `--config FILE` skips discovery; `--isolated`
uses no configuration at all. Command-line flags override file values. Every report names the file
used and counts what it suppressed.

Keys are checked strictly: a misspelt key is an error naming the key and the file, never silently
ignored, because a CI check that quietly ignores its configuration passes for the wrong reason.

```toml
[tool.fp8doctor]
fail-on = "warning"                  # error | warning | info
select = ["scale-padding-nonzero"]   # only these rules (default: all)
ignore = ["scale-outlier"]           # never these rules
fill = "zero"                        # zero | one | 0xNN
baseline = "fp8doctor-baseline.json" # relative to this file

[[tool.fp8doctor.layout]]            # layout overrides, in order (later wins)
pattern = "model.layers.*.mlp.experts.*"
block = [128, 128]                   # or "128x128"
logical = [2000, 7168]               # the weight's real element dims

[[tool.fp8doctor.ignore-tensors]]    # per-tensor-glob ignores
pattern = "model.layers.0.self_attn.o_proj.*"
rules = ["scale-not-power-of-two"]   # leave out for every rule
reason = "DeepSeek V3.1 ships these"
```
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.errors import Fp8DoctorError
from fp8doctor.findings import Finding, Severity
from fp8doctor.layouts.model import LayoutOverride, parse_fill
from fp8doctor.rules.catalog import validate_rule_ids
from fp8doctor.userfiles import read_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_FILE = "fp8doctor.toml"
PYPROJECT = "pyproject.toml"
TOP_KEYS = ("fail-on", "select", "ignore", "fill", "baseline", "layout", "ignore-tensors")
LAYOUT_KEYS = ("pattern", "block", "logical")
IGNORE_KEYS = ("pattern", "rules", "reason")
CONFIG_LIMIT = 4 << 20
"""A configuration file (or a pyproject.toml looked at during discovery) is read up to this many bytes."""


class ConfigError(Fp8DoctorError, ValueError):
    """A configuration file that cannot be used; the message is one line naming the file (exit 2)."""


@dataclass(frozen=True)
class TensorIgnore:
    """Findings of `rules` (every rule when empty) on tensors whose name matches the glob `pattern`."""

    pattern: str
    rules: tuple[str, ...] = ()
    reason: str = ""

    def matches(self, f: Finding) -> bool:
        return (f.tensor is not None and fnmatch.fnmatchcase(f.tensor, self.pattern)
                and (not self.rules or f.rule in self.rules))


@dataclass(frozen=True)
class FileConfig:
    """What a configuration file says; None means "not set here" (a flag or the default decides)."""

    path: str | None = None
    fail_on: Severity | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    fill: str | int | None = None
    baseline: str | None = None
    layouts: tuple[LayoutOverride, ...] = ()
    ignore_tensors: tuple[TensorIgnore, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Settings:
    """File values merged with command-line flags: everything a scan (or fix) run needs."""

    options: Any  # fp8doctor.scanner.ScanOptions (imported lazily)
    fail_on: Severity
    ignore_tensors: tuple[TensorIgnore, ...]
    baseline: str | None
    config_path: str | None

    def keep(self, findings: Iterable[Finding]) -> tuple[Finding, ...]:
        """Findings not matched by a per-tensor-glob ignore."""
        return filter_findings(findings, self.ignore_tensors)

    def apply(self, findings: Iterable[Finding]) -> tuple[tuple[Finding, ...], Counter[str]]:
        """(findings kept, suppressed count by rule): select/ignore, then the per-tensor-glob ignores."""
        kept, suppressed = [], Counter[str]()
        ignores = self.ignore_tensors
        for f in findings:
            if self.options.wants(f) and not any(i.matches(f) for i in ignores):
                kept.append(f)
            else:
                suppressed[f.rule] += 1
        return tuple(kept), suppressed

    def describe(self) -> dict[str, Any]:
        """The configuration a run used, as plain JSON data (SARIF `invocations`): the file it came
        from (None: no file) and every value after flags were merged in."""
        o = self.options
        return {
            "file": self.config_path,
            "fail_on": self.fail_on.value,
            "select": list(o.select),
            "ignore": list(o.ignore),
            "fill": o.fill if isinstance(o.fill, str) else f"0x{o.fill:02x}",
            "layouts": [{"pattern": x.pattern, "block": list(x.block) if x.block else None,
                         "logical": list(x.logical_shape) if x.logical_shape else None} for x in o.overrides],
            "ignore_tensors": [{"pattern": i.pattern, "rules": list(i.rules), "reason": i.reason}
                               for i in self.ignore_tensors],
            "baseline": self.baseline,
        }


def filter_findings(findings: Iterable[Finding], ignores: Iterable[TensorIgnore]) -> tuple[Finding, ...]:
    ignores = tuple(ignores)
    return tuple(f for f in findings if not any(i.matches(f) for i in ignores))


def _read_toml(path: str) -> dict[str, Any]:
    """A TOML file as a dict (bounded read, regular files only); ConfigError naming the file."""
    try:
        text = read_file(path, CONFIG_LIMIT).decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None


def _tool_table(data: dict[str, Any]) -> Any:
    tool = data.get("tool")
    return tool.get("fp8doctor") if isinstance(tool, dict) else None


def _has_tool_table(path: str) -> bool:
    try:
        head = read_file(path, CONFIG_LIMIT)
    except OSError:
        return False
    if b"fp8doctor" not in head:
        return False
    return isinstance(_tool_table(_read_toml(path)), dict)


def _inside(d: str, root: str | None) -> bool:
    return root is not None and (d == root or d.startswith(root.rstrip(os.sep) + os.sep))


def find_config(start: str, exclude: str | None = None) -> str | None:
    """The closest configuration file at or above directory `start`, or None; directories at or
    below `exclude` (the checkpoint's) are skipped."""
    d = os.path.realpath(start)
    skip = os.path.realpath(exclude) if exclude is not None else None
    while True:
        if not _inside(d, skip):
            candidate = os.path.join(d, CONFIG_FILE)
            if os.path.isfile(candidate):
                return candidate
            candidate = os.path.join(d, PYPROJECT)
            if os.path.isfile(candidate) and _has_tool_table(candidate):
                return candidate
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def discover(checkpoint_path: str, cwd: str | None = None) -> str | None:
    """The closest configuration at or above the current directory, outside the checkpoint."""
    from fp8doctor.checkpoint.target import Target

    # the local checkpoint's directory: discovery never looks inside it (a URL has none)
    return find_config(cwd or os.getcwd(), exclude=Target.parse(checkpoint_path).local_dir)


def _dims(value: Any, where: str, rank: int | None = None) -> tuple[int, ...]:
    if isinstance(value, str):
        try:
            dims = tuple(int(x) for x in value.lower().split("x"))
        except ValueError:
            dims = ()
    elif isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        dims = tuple(value)
    else:
        dims = ()
    if not dims or any(d <= 0 for d in dims) or (rank is not None and len(dims) != rank):
        shape = "[R, C] or \"RxC\"" if rank == 2 else "a list of positive integers or \"AxB\""
        raise ConfigError(f"{where} must be {shape}, not {value!r}")
    return dims


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return tuple(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _tables(value: Any, where: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ConfigError(f"{where} must be an array of tables ([[...{where.rsplit('.', 1)[-1]}]])")
    for i, table in enumerate(value):
        for key in table:
            if key not in keys:
                raise ConfigError(f"unknown key {key!r} in {where}[{i}] (known: {', '.join(keys)})")
        if "pattern" not in table:
            raise ConfigError(f"{where}[{i}] needs a 'pattern'")
    return value


def parse_table(data: dict[str, Any], path: str | None = None, section: str = "[tool.fp8doctor]") -> FileConfig:
    """Validate one configuration table; ConfigError (without the file name) on the first problem.
    Relative `baseline` paths are made absolute against the directory of `path`."""
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key {key!r} in {section} (known: {', '.join(TOP_KEYS)})")
    fail_on = select = ignore = fill = baseline = None
    if "fail-on" in data:
        try:
            fail_on = Severity.parse(_string(data["fail-on"], "fail-on"))
        except ValueError as e:
            raise ConfigError(f"fail-on: {e}") from None
    try:
        if "select" in data:
            select = tuple(validate_rule_ids(_strings(data["select"], "select")))
        if "ignore" in data:
            ignore = tuple(validate_rule_ids(_strings(data["ignore"], "ignore")))
        if "fill" in data:
            raw = data["fill"]
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = hex(raw)
            fill = parse_fill(_string(raw, "fill"))
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if "baseline" in data:
        baseline = _string(data["baseline"], "baseline")
        if path is not None and not os.path.isabs(baseline):
            baseline = os.path.join(os.path.dirname(os.path.abspath(path)), baseline)
    layouts = []
    for i, t in enumerate(_tables(data.get("layout", []), "layout", LAYOUT_KEYS)):
        pattern = _string(t["pattern"], f"layout[{i}].pattern")
        block = _dims(t["block"], f"layout[{i}].block", 2) if "block" in t else None
        logical = _dims(t["logical"], f"layout[{i}].logical") if "logical" in t else None
        if block is None and logical is None:
            raise ConfigError(f"layout[{i}] needs 'block' and/or 'logical'")
        layouts.append(LayoutOverride(pattern, (block[0], block[1]) if block else None, logical))
    ignores = []
    for i, t in enumerate(_tables(data.get("ignore-tensors", []), "ignore-tensors", IGNORE_KEYS)):
        rules = _strings(t.get("rules", []), f"ignore-tensors[{i}].rules")
        try:
            validate_rule_ids(rules)
        except ValueError as e:
            raise ConfigError(f"ignore-tensors[{i}].rules: {e}") from None
        reason = t.get("reason", "")
        if not isinstance(reason, str):
            raise ConfigError(f"ignore-tensors[{i}].reason must be a string")
        ignores.append(TensorIgnore(_string(t["pattern"], f"ignore-tensors[{i}].pattern"), rules, reason))
    return FileConfig(path=path, fail_on=fail_on, select=select, ignore=ignore, fill=fill, baseline=baseline,
                      layouts=tuple(layouts), ignore_tensors=tuple(ignores))


def load_config(path: str) -> FileConfig:
    """Read and validate one file: `pyproject.toml` (its [tool.fp8doctor]) or any other name (top level)."""
    data = _read_toml(path)
    section = "the top level"
    if os.path.basename(path) == PYPROJECT:
        data = _tool_table(data)
        section = "[tool.fp8doctor]"
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: no [tool.fp8doctor] table")
    try:
        return parse_table(data, path, section)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_for(checkpoint_path: str, config: str | None = None, isolated: bool = False) -> FileConfig:
    """The configuration that applies to a checkpoint: none when `isolated`, `config` if given, else
    the discovered file, else an empty FileConfig."""
    if isolated:
        if config is not None:
            raise ConfigError("--config and --isolated together: --isolated uses no configuration file")
        return FileConfig()
    path = config if config is not None else discover(checkpoint_path)
    return load_config(path) if path is not None else FileConfig()


def settings(cfg: FileConfig, *, fill: str | None = None, select: list[str] | None = None,
             ignore: list[str] | None = None, layout: list[str] | None = None, fail_on: str | None = None,
             baseline: str | None = None) -> Settings:
    """Merge file values with command-line strings (a flag given wins; --layout ones come after the
    file's, so they win where both match). ValueError carries a one-line message."""
    from fp8doctor.scanner import ScanOptions

    fill_value = parse_fill(fill) if fill is not None else cfg.fill if cfg.fill is not None else "zero"
    options = ScanOptions(
        fill=fill_value, fill_explicit=fill is not None or cfg.fill is not None,
        select=tuple(select) if select else (cfg.select or ()),
        ignore=tuple(ignore) if ignore else (cfg.ignore or ()),
        overrides=cfg.layouts + tuple(LayoutOverride.parse(x) for x in layout or ()),
    )
    threshold = Severity.parse(fail_on) if fail_on is not None else cfg.fail_on or Severity.ERROR
    return Settings(options=options, fail_on=threshold, ignore_tensors=cfg.ignore_tensors,
                    baseline=baseline if baseline is not None else cfg.baseline, config_path=cfg.path)


def scan_options(checkpoint_path: str, *, config: str | None = None, fill: str | None = None,
                 layout: list[str] | None = None, isolated: bool = False) -> Any:
    """ScanOptions for commands that take no select/ignore: fill and layout overrides from the
    configuration that applies to `checkpoint_path`, with command-line values on top."""
    return settings(load_for(checkpoint_path, config, isolated), fill=fill, layout=layout).options
