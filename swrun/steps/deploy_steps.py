"""The deploy runbook's steps, as the notebook runs them: which inputs each takes from the
run (target, earlier results, acknowledgements)."""

from __future__ import annotations

from pathlib import Path

from .. import activity
from ..notebook import Runbook, register, rehearsal_overridden
from . import backup, guards, preflight, preview, rehearse, status, upgrade, verify, watch
from ..result import StepResult


@register("preflight")
def _preflight(rb: Runbook) -> StepResult:
    return preflight.run(rb.ctx, reports_dir=rb.reports_dir)


@register("status")
def _status(rb: Runbook) -> StepResult:
    return status.run(rb.ctx, target=rb.target)


@register("preview")
def _preview(rb: Runbook) -> StepResult:
    known = rb.result("status")
    current = tuple(known.data["current"]) if known and known.outcome == "ok" else None
    # the same SQL as a script a DBA can apply with psql; the record keeps its sha256
    sql_file = Path(rb.ctx.backup_dir) / f"{rb.ctx.run_id}_apply.sql"
    return preview.run(rb.ctx, target=rb.target, current=current, sql_file=sql_file)


@register("guards")
def _guards(rb: Runbook) -> StepResult:
    result = guards.run(rb.ctx, target=rb.target, status=rb.result("status"), preview=rb.result("preview"),
                        acknowledge=rb.acknowledge, override_gates=rb.override_gates, reports_dir=rb.reports_dir)
    result.data["environment"] = rb.ctx.environment  # whose gates these were: the runner checks it against the record's
    return result


@register("backup")
def _backup(rb: Runbook) -> StepResult:
    # --verify-restore full: the rehearsal's full copy restores everything; without a rehearsal, the backup step does
    full = rb.options.get("verify_restore") == "full" and "rehearse" not in rb.steps
    return backup.run(rb.ctx, mode=rb.options.get("backup_mode", "custom"), verify_restore="full" if full else "toc")


@register("rehearse")
def _rehearse(rb: Runbook) -> StepResult:
    dump = rb.result("backup")
    if dump is None or dump.outcome != "ok" or not dump.data.get("file"):
        raise rehearse.RehearsalError("the rehearsal restores this run's backup, and no backup was taken in this run",
                                      hint="run the backup step before rehearse")
    known = rb.result("status")
    start = tuple(known.data["current"]) if known and known.outcome == "ok" else None
    checked = rb.result("preflight")
    return rehearse.run(rb.ctx, backup_file=dump.data["file"], target=rb.target, start=start,
                        on=rb.options.get("rehearse_on", "embedded"), database_bytes=dump.data.get("database_bytes"),
                        copy=rb.options.get("rehearse_copy", "auto"), verify_restore=rb.options.get("verify_restore", "toc"),
                        activity_now=checked.data.get("activity") if checked is not None and checked.data else None)


@register("upgrade")
def _upgrade(rb: Runbook) -> StepResult:
    checked = rb.result("guards")
    passed = checked.data if checked is not None and checked.ok and checked.data else {}
    seconds = float(rb.options.get("watch_seconds") or 0)
    # the watch compares the window after the upgrade with one of the same length right before it
    before = activity.window(rb.ctx.engine, seconds) if seconds > 0 and "watch" in rb.steps else None
    result = upgrade.run(rb.ctx, target=rb.target, accept=tuple(passed.get("accept", ())), retire=tuple(passed.get("retire", ())))
    result.watch_before = before  # not part of as_dict: the watch step reads it
    if before is not None:
        result.summary += f"; {before.seconds:.1f}s of error signals sampled before it, for the watch"
    if rb.ctx.environment == "production" and rehearsal_overridden(rb):
        result.data["overridden"] = ["rehearsal"]
        result.summary += "; the rehearsal gate was overridden (override_gates): no successful rehearsal in this run"
    return result


@register("verify")
def _verify(rb: Runbook) -> StepResult:
    done = rb.result("upgrade")
    return verify.run(rb.ctx, target=rb.target, baseline=getattr(done, "baseline", None))


@register("watch")
def _watch(rb: Runbook) -> StepResult:
    done = rb.result("upgrade")
    return watch.run(rb.ctx, seconds=float(rb.options.get("watch_seconds") or 0), before=getattr(done, "watch_before", None),
                     fail_on_rise=bool(rb.options.get("watch_fail_on_rise", False)))
