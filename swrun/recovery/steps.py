"""The recovery runbooks' steps, as their cells run them: which inputs each takes from the run.

The runbooks (rollback, stamp, doctor, start_fresh, enum_change) also use the deploy's
``backup`` step (and enum_change its ``guards`` and ``upgrade``), registered in
:mod:`swrun.steps.deploy_steps`.
"""

from __future__ import annotations

from ..notebook import Runbook, register
from ..result import StepResult
from . import doctor, enum_change, fresh, rollback, stamp


def _needs_backup(rb: Runbook, step: str) -> StepResult | None:
    """Production changes nothing without a verified backup from the same run (the guide: ALWAYS backup)."""
    if rb.ctx.environment != "production":
        return None
    backup = rb.result("backup")
    if backup is not None and backup.outcome == "ok" and backup.data.get("verified"):
        return None
    why = "production requires a verified backup from this run (the guide: ALWAYS backup production database before migrating)"
    return StepResult(step, outcome="blocked", summary=why, error=why)


# -- rollback -------------------------------------------------------------------------------------


@register("rollback-plan")
def _rollback_plan(rb: Runbook) -> StepResult:
    return rollback.plan(rb.ctx, to=rb.target, steps=int(rb.options.get("steps_back") or 0))


@register("rollback")
def _rollback(rb: Runbook) -> StepResult:
    planned = rb.result("rollback-plan")
    if planned is None or planned.outcome not in ("ok", "warning"):
        return StepResult("rollback", outcome="skipped", summary="not run: no rollback plan in this run")
    return _needs_backup(rb, "rollback") or rollback.run(rb.ctx, planned.data["target"], planned.data["current"])


@register("rollback-verify")
def _rollback_verify(rb: Runbook) -> StepResult:
    planned = rb.result("rollback-plan")
    return rollback.verify(rb.ctx, planned.data["target"], rb.result("rollback"), planned.data.get("after"))


# -- stamp ----------------------------------------------------------------------------------------------


@register("stamp-check")
def _stamp_check(rb: Runbook) -> StepResult:
    return stamp.check(rb.ctx, rb.target, where=rb.options.get("scratch", "embedded"), override=bool(rb.options.get("override")))


@register("stamp")
def _stamp(rb: Runbook) -> StepResult:
    checked = rb.result("stamp-check")
    if checked is None or not hasattr(checked, "expected"):
        return StepResult("stamp", outcome="skipped", summary="not run: no schema check in this run")
    return stamp.run(rb.ctx, checked, override=bool(rb.options.get("override")))


# -- doctor ---------------------------------------------------------------------------------------------


def _doctor(name: str):
    def step(rb: Runbook) -> StepResult:
        if name == "sync":
            return doctor.sync(rb.ctx, where=rb.options.get("scratch", "embedded"))
        return doctor.CHECKS[name](rb.ctx)
    return step


for _name in doctor.CHECKS:
    register(f"doctor-{_name}")(_doctor(_name))


# -- start fresh ---------------------------------------------------------------------------------------


@register("fresh-gate")
def _fresh_gate(rb: Runbook) -> StepResult:
    return fresh.gate(rb.ctx)


@register("start-fresh")
def _start_fresh(rb: Runbook) -> StepResult:
    return fresh.run(rb.ctx)


@register("fresh-verify")
def _fresh_verify(rb: Runbook) -> StepResult:
    from ..steps import verify

    result = verify.run(rb.ctx, target="head", baseline=getattr(rb.result("start-fresh"), "baseline", None))
    result.step = "fresh-verify"
    return result


# -- enum change ----------------------------------------------------------------------------------------


@register("enum-plan")
def _enum_plan(rb: Runbook) -> StepResult:
    o = rb.options
    return enum_change.plan(rb.ctx, enum=o.get("enum_name", ""), table=o.get("table", ""), column=o.get("column", ""),
                            mapping=o.get("mapping", ""))


@register("enum-generate")
def _enum_generate(rb: Runbook) -> StepResult:
    planned = rb.result("enum-plan")
    if planned is None:
        return StepResult("enum-generate", outcome="skipped", summary="not run: no enum plan in this run")
    result = enum_change.generate(rb.ctx, planned, rev_id=rb.options.get("rev_id", ""))
    rb.ctx.__dict__.pop("project", None)  # the project has a new revision: load it again
    rb.target = result.data["revision"]  # what the deploy's guards, backup and upgrade steps go to
    return result


@register("enum-check")
def _enum_check(rb: Runbook) -> StepResult:
    planned = rb.result("enum-plan")
    applied = rb.result("upgrade")
    if planned is None or applied is None or applied.outcome not in ("ok", "warning"):
        return StepResult("enum-check", outcome="skipped", summary="not run: the migration was not applied in this run")
    return enum_change.check(rb.ctx, planned, rb.result("enum-generate"))
