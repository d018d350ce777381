"""SARIF 2.1.0 for GitHub code scanning (and any SARIF viewer).

Every rule of the catalogue is described in `tool.driver.rules`; each finding is a result whose
location is its shard file relative to the repository root (`%SRCROOT%`). Shards are binary, so
the region is line 1 (GitHub requires a startLine) and the byte offset, tensor and index travel in
the message and the result's properties.

Identity across runs (`partialFingerprints`): `fp8doctor/v1` hashes rule + file + tensor (as in
0.1.0); `primaryLocationLineHash` hashes rule + repository path + tensor + region. Neither holds a
byte offset, a count or the message, so rewriting a shard (which moves every offset) or different
garbage in the same entries keeps the alert. Giving `primaryLocationLineHash` ourselves matters: the
upload-sarif action otherwise computes it from "line 1" of the binary shard, i.e. the header bytes,
which change whenever offsets move. `automationDetails.id` names the analysis per target, and the
invocation carries the exit code and the configuration the run used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fp8doctor.findings import Finding, Report, Severity
from fp8doctor.reporters import SLOT, RenderContext, TargetResult, stream_json, tool_version

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "fp8doctor/v1"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
PROBLEM_SEVERITY = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "recommendation"}


PRIMARY_KEY = "primaryLocationLineHash"
AUTOMATION_PREFIX = "fp8doctor/scan"


def fingerprint(rule: str, file: str | None, tensor: str | None) -> str:
    """A stable identity for a finding: the same rule on the same tensor of the same file."""
    key = json.dumps([rule, file, tensor], ensure_ascii=True)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def location_hash(rule: str, path: str, tensor: str | None, region: str) -> str:
    """GitHub's `primaryLocationLineHash` for a finding: rule + repository path + tensor + region,
    in GitHub's "HEX:OCCURRENCE" shape (one finding per rule and tensor, so occurrence 1)."""
    key = json.dumps([rule, path, tensor, region], ensure_ascii=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16] + ":1"


def fingerprints(f: Finding, ctx: RenderContext, paths: dict[str | None, tuple[str, bool]] | None = None
                 ) -> dict[str, str]:
    path, _ = _artifact_path(f, ctx, paths)
    return {FINGERPRINT_KEY: fingerprint(f.rule, f.file, f.tensor),
            PRIMARY_KEY: location_hash(f.rule, path, f.tensor, f.region.value)}


def automation_id(ctx: RenderContext) -> str:
    """`fp8doctor/scan/<target>/`: the category (trailing slash: no run id) code scanning keeps
    alerts under, one per scanned checkpoint, so scanning two checkpoints never closes the other's."""
    path, _ = ctx.artifact_path(None)
    return f"{AUTOMATION_PREFIX}/{path.strip('/') or '.'}/"


def _rule_descriptors() -> list[dict[str, Any]]:
    from fp8doctor.rules.catalog import RULES

    out = []
    for r in RULES.values():
        fix = "`fp8doctor fix` repairs it." if r.fixable else "`fp8doctor fix` cannot repair it."
        out.append({
            "id": r.id,
            "name": "".join(part.capitalize() for part in r.id.split("-")),
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.help},
            "help": {"text": f"{r.help} {fix.replace('`', '')}",
                     "markdown": f"**{r.id}** ({r.severity.value}): {r.title}.\n\n{r.help}\n\n{fix}"},
            "defaultConfiguration": {"level": LEVEL[r.severity]},
            "properties": {"tags": ["fp8doctor", r.region.value], "fixable": r.fixable,
                           "problem.severity": PROBLEM_SEVERITY[r.severity]},
        })
    return out


def _artifact_path(f: Finding, ctx: RenderContext, paths: dict[str | None, tuple[str, bool]] | None
                   ) -> tuple[str, bool]:
    """ctx.artifact_path of the finding's file, computed once per file when `paths` caches it."""
    got = paths.get(f.file) if paths is not None else None
    if got is None:
        got = ctx.artifact_path(f.file)
        if paths is not None:
            paths[f.file] = got
    return got


def _location(f: Finding, ctx: RenderContext, paths: dict[str | None, tuple[str, bool]] | None = None
              ) -> dict[str, Any]:
    path, inside = _artifact_path(f, ctx, paths)
    artifact: dict[str, Any] = ({"uri": quote(path, safe="/"), "uriBaseId": "%SRCROOT%"} if inside
                                else {"uri": path if "://" in path else "file://" + quote(path, safe="/")})
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}}}
    if f.tensor is not None:
        loc["logicalLocations"] = [{"name": f.tensor, "fullyQualifiedName": f.tensor, "kind": "variable"}]
    return loc


def _message(f: Finding) -> str:
    where = []
    if f.byte_offset is not None:
        where.append(f"byte offset 0x{f.byte_offset:x}")
    if f.index is not None:
        where.append(f"index [{', '.join(map(str, f.index))}]")
    suffix = f" ({', '.join(where)})" if where else ""
    fix = " Fixable: run `fp8doctor fix`." if f.fixable else ""
    return f"{f.message}{suffix}{fix}"


def _invocation(report: Report, ctx: RenderContext) -> dict[str, Any]:
    props: dict[str, Any] = {"target": report.target, "summary": report.summary(),
                             **({"hfCache": dict(report.hf_cache)} if report.hf_cache else {}),
                             "baseline": ctx.baseline,
                             "suppressedByBaseline": ctx.suppressed, "failOn": ctx.fail_on.value,
                             "rules": list(ctx.rules)}
    if ctx.configuration is not None:
        props["configuration"] = ctx.configuration
    invocation: dict[str, Any] = {"executionSuccessful": True, "properties": props}
    if ctx.exit_code is not None:
        failed = report.failed(ctx.fail_on)
        invocation["exitCode"] = ctx.exit_code
        invocation["exitCodeDescription"] = (f"findings at or above {ctx.fail_on.value}" if failed
                                             else f"no finding at or above {ctx.fail_on.value}")
    return invocation


def _results(report: Report, ctx: RenderContext) -> Iterator[dict[str, Any]]:
    index = {r: i for i, r in enumerate(_rule_ids())}
    paths: dict[str | None, tuple[str, bool]] = {}  # one path computation per shard, not per finding
    for f in report.findings:
        result: dict[str, Any] = {
            "ruleId": f.rule,
            "level": LEVEL[f.severity],
            "message": {"text": _message(f)},
            "locations": [_location(f, ctx, paths)],
            "partialFingerprints": fingerprints(f, ctx, paths),
            "properties": {k: v for k, v in f.to_dict().items() if k not in ("rule", "severity", "message")},
        }
        if f.rule in index:
            result["ruleIndex"] = index[f.rule]
        yield result


def _rule_ids() -> list[str]:
    from fp8doctor.rules.catalog import RULES

    return list(RULES)


def _run(report: Report, ctx: RenderContext, results: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "fp8doctor", "version": ctx.version, "semanticVersion": ctx.version,
                            "rules": _rule_descriptors()}},
        "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The repository root."}}},
        "automationDetails": {"id": automation_id(ctx),
                              "description": {"text": f"fp8doctor scan of {report.target}"}},
        "invocations": [_invocation(report, ctx)],
        "results": results,
        "properties": {"config": ctx.config, "suppressed": dict(sorted(ctx.suppressed_by_rule.items()))},
    }
    if not ctx.version:
        del run["tool"]["driver"]["version"], run["tool"]["driver"]["semanticVersion"]
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def sarif_dict(report: Report, ctx: RenderContext) -> dict[str, Any]:
    return _run(report, ctx, list(_results(report, ctx)))


def render_chunks(report: Report, ctx: RenderContext) -> Iterator[str]:
    """The SARIF log in pieces: results are built and encoded one at a time as they are written."""
    return stream_json(_run(report, ctx, SLOT), _results(report, ctx))


def render_report(report: Report, ctx: RenderContext) -> str:
    return "".join(render_chunks(report, ctx))


def _failed_run(target: str, error: str | None, version: str) -> dict[str, Any]:
    driver: dict[str, Any] = {"name": "fp8doctor", "rules": _rule_descriptors()}
    if version:
        driver.update(version=version, semanticVersion=version)
    return {"tool": {"driver": driver},
            "invocations": [{"executionSuccessful": False, "properties": {"target": target},
                             "toolExecutionNotifications": [{"level": "error", "message": {"text": error or ""}}]}],
            "results": []}


def render_many(results: list[TargetResult]) -> str:
    """Several checkpoints: one SARIF run per checkpoint, in order; one that could not be scanned is
    a run with executionSuccessful false and the reason as a notification."""
    version = tool_version(results)
    runs = [sarif_dict(r.report, r.ctx)["runs"][0] if r.report is not None and r.ctx is not None
            else _failed_run(r.target, r.error, version) for r in results]
    return json.dumps({"$schema": SCHEMA_URI, "version": "2.1.0", "runs": runs}, indent=2, ensure_ascii=True) + "\n"
