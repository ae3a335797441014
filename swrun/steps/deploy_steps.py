"""The deploy runbook's steps, as the notebook runs them: which inputs each takes from the
run (target, earlier results, acknowledgements)."""

from __future__ import annotations

from ..notebook import Runbook, register
from . import backup, guards, preflight, preview, status, upgrade, verify
from .base import StepResult


@register("preflight")
def _preflight(rb: Runbook) -> StepResult:
    return preflight.run(rb.ctx)


@register("status")
def _status(rb: Runbook) -> StepResult:
    return status.run(rb.ctx, target=rb.target)


@register("preview")
def _preview(rb: Runbook) -> StepResult:
    known = rb.result("status")
    current = tuple(known.data["current"]) if known and known.outcome == "ok" else None
    return preview.run(rb.ctx, target=rb.target, current=current)


@register("guards")
def _guards(rb: Runbook) -> StepResult:
    return guards.run(rb.ctx, target=rb.target, status=rb.result("status"), preview=rb.result("preview"),
                      acknowledge=rb.acknowledge, override_gates=rb.override_gates, reports_dir=rb.reports_dir)


@register("backup")
def _backup(rb: Runbook) -> StepResult:
    return backup.run(rb.ctx, mode=rb.options.get("backup_mode", "custom"))


@register("upgrade")
def _upgrade(rb: Runbook) -> StepResult:
    checked = rb.result("guards")
    passed = checked.data if checked is not None and checked.ok and checked.data else {}
    return upgrade.run(rb.ctx, target=rb.target, accept=tuple(passed.get("accept", ())), retire=tuple(passed.get("retire", ())))


@register("verify")
def _verify(rb: Runbook) -> StepResult:
    done = rb.result("upgrade")
    return verify.run(rb.ctx, target=rb.target, baseline=getattr(done, "baseline", None))
