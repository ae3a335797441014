"""Acknowledgements written in the migration file, where the reviewer sees them in the diff::

    # swrun: acknowledge SW302 the column has been unused since v2.3 (ticket OPS-112)

The id is a code (``SW302``), a name (``drop-column``) or a finding's key (``SW302:<detail>``,
as ``swrun check`` prints it). It accepts the findings of that id in the same file; a finding
on no migration file of the change (a file it deleted, the models) is accepted from any
migration file the change adds or modifies, by its key.
A reason is required: without one the line is itself a finding (SW001), and accepts nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .findings import BY_NAME, CODES, Finding
from .sources import Source

_LINE = re.compile(r"#\s*swrun:\s*acknowledge\b(?P<rest>.*)$", re.IGNORECASE)


@dataclass
class Acknowledgement:
    file: str
    line: int
    id: str
    reason: str
    used: bool = False

    def matches(self, finding: Finding, migration_files: set[str]) -> bool:
        ident = self.id
        if ident.upper() in CODES:
            ident = ident.upper()
        elif ident.lower() in BY_NAME:
            ident = BY_NAME[ident.lower()].code
        same_file = finding.file == self.file
        if ident == finding.key:  # the one finding: from its own file, or from any when its file is no migration of the change
            return same_file or finding.file not in migration_files
        return same_file and ident == finding.code


def parse(sources: dict[str, Source]) -> tuple[list[Acknowledgement], list[Finding]]:
    acks: list[Acknowledgement] = []
    errors: list[Finding] = []
    for path, src in sorted(sources.items()):
        for number, text in enumerate(src.text.splitlines(), 1):
            m = _LINE.search(text)
            if not m:
                continue
            words = m.group("rest").strip().split(None, 1)
            ident = words[0] if words else ""
            reason = words[1].strip() if len(words) > 1 else ""
            if not ident or not reason or len(reason) < 3:
                errors.append(Finding("SW001", f"line {number}: an acknowledgement needs a finding id and a reason: "
                                               f"'# swrun: acknowledge <id> <reason>' (got {text.strip()[:80]!r})",
                                      file=path, line=number, detail=f"{path}:{number}"))
                continue
            acks.append(Acknowledgement(path, number, ident, reason[:300]))
    return acks, errors


def apply(findings: list[Finding], acks: list[Acknowledgement], migration_files: set[str]) -> list[Finding]:
    """Mark the findings an acknowledgement accepts; return warnings for acknowledgements that accept none.
    ``migration_files``: the change's migration files (a finding elsewhere is accepted by its key from any of them)."""
    for finding in findings:
        if finding.code in ("SW001", "SW002"):
            continue
        for ack in acks:
            if ack.matches(finding, migration_files):
                finding.acknowledged = ack.reason
                ack.used = True
                break
    return [Finding("SW002", f"line {a.line}: the acknowledgement of {a.id!r} matches no finding of this check "
                             "(fixed since, or a typo in the id?)", file=a.file, line=a.line, severity="warning",
                    detail=f"{a.file}:{a.line}") for a in acks if not a.used]
