"""guards: the guide's NEVER rules and the production gates, checked before anything changes.

1. Integrity: the migration files on disk against the ledger of what this database applied
   (NEVER rename / delete / modify an applied migration) and the naming convention.
2. Review of what is about to run: swrun's Alembic-aware rules over the pending revisions'
   source, squawk over their SQL (taken from the preview step when it ran), the models'
   enum values against the database and the pending migrations.
3. Gates: a NEVER finding blocks in every environment; in production also a missing staging
   record of the same migration set, an unacknowledged danger finding, lock holders on the
   touched tables, long transactions, too little disk for the backup.

Read-only. Runs even when status or preview failed: a deleted or renamed file is often why.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import RunContext
from ..database import connect
from ..errors import SwrunError
from ..guards import Finding, count, enums, frame, gates, ledger, lint, parse_ids
from ..migrations import Project
from ..result import StepResult, Timer


def run(ctx: RunContext, target: str = "head", *, status: StepResult | None = None, preview: StepResult | None = None,
        acknowledge: str = "", override_gates: str = "", reports_dir: Path | str = "reports") -> StepResult:
    ack_ids = parse_ids(acknowledge)
    overrides = gates.parse_overrides(override_gates)
    notes: list[str] = []
    unreviewed: list[tuple[str, str]] = []  # (what, why): a review that did not run is never "ok"
    with Timer() as t:
        found = ledger.scan(Project.locate(ctx.project_path))  # works on a project a deleted file has broken
        try:
            project: Project | None = ctx.project
        except SwrunError as exc:
            project = None
            notes.append(f"lint not run: {exc.line()}")
            unreviewed.append(("lint", f"the project does not load: {exc.line()}"))
        with connect(ctx.engine) as conn:
            entries = ledger.read(conn)
            db_enums = enums.database(conn)
            raw_current = ledger.database_revisions(conn)
        status_ok = status is not None and status.outcome == "ok"
        current = tuple(status.data["current"]) if status_ok else raw_current
        applied = None
        if project is not None and all(rev in project.revisions for rev in current):
            applied = project.ancestors(current)

        findings: list[Finding] = ledger.check(found, entries, current, applied) + ledger.naming(found)

        # what is about to run
        pending: list[str] | None = None
        sql_texts: list[str] = []
        if project is not None:
            if status_ok:
                pending = list(status.data["pending"])
            elif status is None:
                pending = project.pending(current, target)
            else:
                notes.append(f"lint not run: status {status.outcome}")
                unreviewed.append(("lint", f"the status step {status.outcome}, so the pending range is unknown"))
        if pending is not None and preview is not None and preview.outcome not in ("ok", "warning"):
            notes.append(f"lint not run: preview {preview.outcome}")
            unreviewed.append(("sql", f"the preview step {preview.outcome}: {preview.summary}"))
            pending = None
        if pending is not None:
            source, state = lint.lint_revisions(project, pending, db_enums)
            findings += source
            missing: list[dict] = []
            if preview is not None:
                findings += [Finding.from_dict(f) for f in preview.data.get("squawk", [])]
                sql_texts = list(preview.code.values())
                missing = list(preview.data.get("no_offline_sql") or [])
            elif pending:
                rendered = project.offline_sql(ctx.url, current, target)
                missing = [{"revision": r.revision, "reason": r.offline_error, "where": getattr(r, "where", "")}
                           for r in rendered if getattr(r, "offline_error", None)]
                rendered = [r for r in rendered if not getattr(r, "offline_error", None)]
                try:
                    findings += lint.squawk(rendered, exclude=lint.squawk_exclusions(project), lock_timeout_set=bool(ctx.lock_timeout))
                except lint.LintError as exc:
                    unreviewed.append(("squawk", exc.line()))
                sql_texts = [r.sql for r in rendered]
            findings += gates.no_offline_sql_findings(missing)
            wanted = project.resolve(target)
            if set(wanted) == set(project.heads) and project.option("metadata"):
                findings += enums.findings(enums.drift(enums.declared(project.metadata()), state.values), when="deploy")

        findings += [gates.not_reviewed(what, why) for what, why in unreviewed]
        # ids of findings the rehearsal's executed SQL may raise are checked against them before the upgrade
        acknowledged, deferred = gates.apply_acknowledgements(findings, ack_ids, later=set(pending or ()), split=True)
        tables = lint.touched_tables(sql_texts)

        def reached(after: list[str]) -> bool:
            try:
                return set(pending or ()) <= project.ancestors(after)
            except SwrunError:
                return False

        with connect(ctx.engine) as conn:
            results = gates.evaluate(
                environment=ctx.environment, findings=findings, overrides=overrides,
                fingerprint=project.fingerprint() if project is not None else None,
                target=_resolved(project, target), reports_dir=Path(reports_dir),
                reached=reached, conn=conn, tables=tables, long_tx_s=ctx.long_transaction_s, backup_dir=ctx.backup_dir)

    blocked = gates.blocking(results)
    overridden = [g.gate for g in results if g.result == "overridden"]
    open_findings = [f for f in findings if not f.acknowledged and f.severity in ("warning", "danger")] + unreviewed
    outcome = "blocked" if blocked else ("warning" if open_findings else "ok")
    result = StepResult("guards", outcome=outcome, seconds=t.seconds)
    result.data = {
        "findings": [f.as_dict() for f in findings],
        "counts": {s: sum(1 for f in findings if f.severity == s) for s in ("danger", "warning", "info")},
        "acknowledged": acknowledged,
        "deferred_acknowledgements": deferred,
        "not_reviewed": [{"what": what, "why": why} for what, why in unreviewed],
        "overrides": overrides,
        "gates": [g.as_dict() for g in results],
        "ledger": {"entries": sum(1 for e in entries.values() if e.state == "applied"), "files": len(found.files)},
        "pending": pending,
        "tables": tables,
        # what the upgrade writes into the ledger because an acknowledgement let it through
        "accept": sorted({f.revision for f in findings if f.acknowledged and f.rule in ("modified", "renamed")}),
        "retire": sorted({f.revision for f in findings if f.acknowledged and f.rule == "deleted"}),
        "notes": notes,
    }
    result.tables["findings"] = frame(findings)
    result.tables["gates"] = pd.DataFrame([g.as_dict() for g in results], columns=["gate", "result", "detail", "proceed"])
    checked = f"ledger: {result.data['ledger']['entries']} applied file(s) recorded, {len(found.files)} on disk"
    if blocked:
        never = [f for f in findings if f.never and not f.acknowledged]
        held = [g.gate for g in blocked if g.gate != "never"]
        result.summary = "blocked: " + (never[0].message if never else
                                        f"the {', '.join(held)} gate{'s' if len(held) > 1 else ''}: {blocked[0].detail}")
        if never and held:
            result.summary += f" (and the {', '.join(held)} gate{'s' if len(held) > 1 else ''})"
        reasons = [f.message + f" (to go on regardless: --acknowledge {f.id})" for f in never]
        reasons += [f"{g.gate}: {g.detail}" + (f" ({g.proceed})" if g.proceed else "") for g in blocked if g.gate != "never"]
        result.error = "; ".join(reasons)
    else:
        passed = [g.gate for g in results if g.result == "pass" and g.gate != "never"]
        if passed:
            checked += f"; production gates passed: {', '.join(passed)}"
        result.summary = f"{len(findings)} finding(s) ({count(findings)}); {checked}" + \
            (f"; acknowledged: {', '.join(acknowledged)}" if acknowledged else "") + \
            (f"; not reviewed: {'; '.join(f'{w} ({why})' for w, why in unreviewed)}" if unreviewed else "") + \
            (f"; overridden: {', '.join(overridden)}" if overridden else "") + \
            (f"; {'; '.join(notes)}" if notes else "")
    return result


def _resolved(project: Project | None, target: str) -> tuple[str, ...]:
    if project is None:
        return ()
    try:
        return project.resolve(target)
    except SwrunError:
        return ()
