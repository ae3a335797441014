"""What CI systems read: plain text, GitHub workflow commands and step summary, JSON, JUnit XML.

The JUnit file is written with ``xml.etree`` (no dependency): one ``testcase`` per check, one
``failure`` per finding that fails it, an ``error`` for a check that could not run, ``skipped``
for one that did not apply; warnings and acknowledged findings go to its ``system-out``.
GitLab, Jenkins and the GitHub test reporters read it.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .findings import Finding, Report

MARK = {"error": "✗", "warning": "!", "notice": "·"}


def _where(f: Finding) -> str:
    return f"{f.file}:{f.line}" if f.file else "(no file)"


def text(report: Report, *, notices: bool = False) -> str:
    lines = [f"swrun check {report.project}: base {report.base} ({report.base_commit[:12]}), merge base "
             f"{report.fork_commit[:12]}, change {report.change}",
             f"new revisions: {', '.join(report.new_revisions) or 'none'}; heads: base {len(report.heads_base)}, "
             f"after the merge {len(report.heads_merged)} ({', '.join(report.heads_merged) or 'none'})", ""]
    for check in report.checks.values():
        failing = [f for f in check.findings if f.fails]
        if check.error:
            lines.append(f"✗ {check.name}: could not run: {check.error}")
        elif check.skipped:
            lines.append(f"- {check.name}: skipped ({check.skipped})")
        else:
            lines.append(f"{'✗' if failing else '✓'} {check.name} ({check.seconds:.2f}s): {check.title}"
                         + (f" - {len(failing)} finding(s)" if failing else ""))
        for f in check.findings:
            if f.severity == "notice" and not notices and not f.acknowledged:
                continue
            state = f"acknowledged ({f.acknowledged})" if f.acknowledged else f.severity
            lines.append(f"    {MARK[f.severity] if not f.acknowledged else '~'} {f.title()} {_where(f)} [{state}]")
            lines.append(f"      {f.message}")
            if f.rule:
                lines.append(f"      the guide: {f.rule}")
            if f.fix:
                lines.append(f"      fix: {f.fix}")
            if not f.acknowledged and f.severity == "error":
                lines.append(f"      acknowledge (in {f.ack_in or 'any migration file the change adds or modifies'}): "
                             f"# swrun: acknowledge {f.key} <reason>")
    acked = sum(1 for f in report.findings if f.acknowledged)
    warned = sum(1 for f in report.findings if f.severity == "warning" and not f.acknowledged)
    lines += ["", f"swrun check: {len(report.failing)} finding(s) fail the check, {acked} acknowledged, {warned} warning(s); "
                  f"{report.seconds:.1f}s" + (f"; runbook record: {report.record}" if report.record else "")]
    return "\n".join(lines)


def _data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(value: str) -> str:
    return _data(value).replace(":", "%3A").replace(",", "%2C")


def github(report: Report) -> str:
    """``::error file=...,line=...,title=...::message`` per finding (warning/notice for the others)."""
    out = []
    for f in report.findings:
        level = "notice" if f.acknowledged else f.severity
        props = ([f"file={_prop(f.file)}", f"line={f.line}"] if f.file else []) + [f"title={_prop(f.title())}"]
        body = f.text() + (f" (acknowledged: {f.acknowledged})" if f.acknowledged else
                           (f"\nacknowledge: # swrun: acknowledge {f.key} <reason>" if f.fails else ""))
        out.append(f"::{level} {','.join(props)}::{_data(body)}")
    return "\n".join(out)


def markdown(report: Report) -> str:
    icon = "❌" if report.failing else "✅"
    lines = [f"## {icon} swrun check: {len(report.failing)} finding(s) fail the check", "",
             f"`{report.project}` against **{report.base}** (`{report.base_commit[:12]}`, merge base `{report.fork_commit[:12]}`); "
             f"new revisions: {', '.join(f'`{r}`' for r in report.new_revisions) or 'none'}; heads after the merge: "
             f"{len(report.heads_merged)}", "", "| check | result | seconds |", "|---|---|---|"]
    for c in report.checks.values():
        failing = sum(1 for f in c.findings if f.fails)
        result = (f"could not run: {c.error}" if c.error else f"skipped: {c.skipped}" if c.skipped
                  else f"❌ {failing} finding(s)" if failing else "✅ passed")
        lines.append(f"| {c.name} | {result.replace('|', '/')} | {c.seconds:.2f} |")
    shown = [f for f in report.findings if f.severity != "notice" or f.acknowledged]
    if shown:
        lines += ["", "| finding | where | status | message |", "|---|---|---|---|"]
        for f in shown:
            status = f"acknowledged: {f.acknowledged}" if f.acknowledged else f.severity
            lines.append(f"| `{f.key}` {f.name} | `{_where(f)}` | {status.replace('|', '/')} | {f.text().replace('|', '/')} |")
    if report.record:
        lines += ["", f"The executed deploy runbook: `{report.record}`"]
    return "\n".join(lines) + "\n"


def write_step_summary(report: Report) -> Path | None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown(report))
    return Path(target)


def as_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _safe(value: str) -> str:
    """XML 1.0 has no place for most control characters (a file name may hold them)."""
    return _NOT_XML.sub("\ufffd", value)


def junit(report: Report) -> bytes:
    suites = ET.Element("testsuites", name="swrun check")
    suite = ET.SubElement(suites, "testsuite", name="swrun check", timestamp="", hostname="")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for c in report.checks.values():
        counts["tests"] += 1
        case = ET.SubElement(suite, "testcase", classname="swrun.check", name=c.name, time=f"{c.seconds:.3f}",
                             file=report.project)
        if c.error:
            counts["errors"] += 1
            ET.SubElement(case, "error", message=c.error[:500], type="could-not-check").text = c.error
        elif c.skipped:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=c.skipped)
        for f in c.findings:
            if f.fails:
                counts["failures"] += 1
                el = ET.SubElement(case, "failure", message=f"{f.title()} {_where(f)}: {f.message}"[:500], type=f.code)
                el.text = f"{_where(f)}\n{f.text()}\nacknowledge: # swrun: acknowledge {f.key} <reason>"
        rest = [f"{f.title()} {_where(f)} [{'acknowledged: ' + f.acknowledged if f.acknowledged else f.severity}]: {f.text()}"
                for f in c.findings if not f.fails]
        if c.output or rest:
            ET.SubElement(case, "system-out").text = "\n".join(c.output + rest)
    suite.attrib.update({k: str(v) for k, v in counts.items()}, time=f"{report.seconds:.3f}")
    suite.attrib.pop("timestamp")
    suite.attrib.pop("hostname")
    suites.attrib.update({k: str(counts[k]) for k in ("tests", "failures", "errors")}, time=f"{report.seconds:.3f}")
    for el in suites.iter():
        el.attrib.update({k: _safe(v) for k, v in el.attrib.items()})
        if el.text:
            el.text = _safe(el.text)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_junit(report: Report, path: Path) -> Path:
    from ..records import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, junit(report).decode("utf-8"), mode=0o644)
    return path
