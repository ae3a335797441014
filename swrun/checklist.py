"""The guide's Production Deployment Checklist, ticked from a run's step results.

Each item names the steps that satisfy it. An item is ticked (``- [x]``) when every one of its
steps that ran passed (ok or warning); otherwise it stays unticked and says why: which step
failed or was blocked, skipped, or was not part of this run. The runbook's checklist cell
displays :func:`ticked` as Markdown, so the record shows what the run proved, not the template's
empty boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .display import mark_md
from .result import StepResult

GUIDE = "docs/migration-guide.md"


@dataclass(frozen=True)
class Item:
    text: str  # the guide's wording
    steps: tuple[str, ...]  # the deploy steps that satisfy it
    anchor: str  # its section in docs/migration-guide.md


ITEMS: tuple[Item, ...] = (
    Item("Reviewed the migration file", ("preview", "guards"), "checklist-reviewed-the-migration-file"),
    Item("Tested migration on local database", ("rehearse",), "checklist-tested-on-a-local-database"),
    Item("Tested migration on staging environment", ("guards",), "checklist-tested-on-staging"),
    Item("Backed up production database", ("backup",), "checklist-backed-up"),
    Item("Scheduled deployment during low-traffic period", ("preflight",), "checklist-low-traffic-period"),
    Item("Have rollback plan ready", ("rehearse",), "checklist-rollback-plan-ready"),
    Item("Run `alembic upgrade head` on production", ("upgrade",), "checklist-run-the-upgrade"),
    Item("Verify application works", ("verify",), "checklist-verify-the-application"),
    Item("Monitor for errors", ("watch",), "checklist-monitor-for-errors"),
)

PASSED = ("ok", "warning")


@dataclass
class Tick:
    item: Item
    done: bool
    state: str  # ok, warning, failed, blocked, skipped, n/a
    why: str


def evaluate(results: Iterable[StepResult | dict], environment: str = "") -> list[Tick]:
    """Each checklist item with whether this run satisfied it, from its steps' results."""
    by_step = {}
    for r in results:
        d = r.as_dict() if isinstance(r, StepResult) else r
        by_step[d["step"]] = d
    ticks = []
    for item in ITEMS:
        ticks.append(_tick(item, by_step, environment))
    return ticks


def _tick(item: Item, by_step: dict, environment: str) -> Tick:
    ran = [by_step[s] for s in item.steps if s in by_step]
    if not ran:
        return Tick(item, False, "skipped", f"not part of this run ({', '.join(item.steps)} did not run)")
    bad = next((r for r in ran if r["outcome"] in ("failed", "blocked")), None)
    if bad:
        return Tick(item, False, bad["outcome"], f"{bad['step']} {bad['outcome']}: {_short(bad.get('error') or bad['summary'])}")
    skipped = next((r for r in ran if r["outcome"] == "skipped"), None)
    if skipped or len(ran) < len(item.steps):
        r = skipped or next(iter(ran))
        return Tick(item, False, "skipped", f"{r['step']} skipped: {_short(r['summary'])}" if skipped
                    else f"{', '.join(s for s in item.steps if s not in by_step)} did not run")
    data = {r["step"]: r.get("data") or {} for r in ran}
    if item.text.startswith("Tested migration on staging"):
        return _staging(item, data.get("guards", {}), environment or data.get("guards", {}).get("environment", ""))
    if item.text.startswith("Have rollback plan"):
        rehearse = data.get("rehearse", {})
        if rehearse.get("rollback_proven") is False:
            return Tick(item, False, "warning", "the downgrade did not restore the start on the copy: "
                        "the rollback plan is this run's backup")
        if not rehearse.get("rehearsed", True):
            return Tick(item, False, "skipped", _short(by_step["rehearse"]["summary"]))
    state = "warning" if any(r["outcome"] == "warning" for r in ran) else "ok"
    return Tick(item, True, state, "; ".join(f"{r['step']} {r['outcome']}" for r in ran))


def _staging(item: Item, guards: dict, environment: str) -> Tick:
    gate = next((g for g in guards.get("gates", []) if isinstance(g, dict) and g.get("gate") == "staging"), None)
    if environment != "production" or gate is None or gate.get("result") in (None, "n/a"):
        return Tick(item, False, "n/a", f"production's staging gate checks it; this is a {environment or 'non-production'} run")
    if gate.get("result") == "pass":
        return Tick(item, True, "ok", f"staging gate passed: {_short(gate.get('detail') or '')}")
    if gate.get("result") == "overridden":
        return Tick(item, False, "warning", "staging gate overridden (--override-gates staging)")
    return Tick(item, False, "blocked", f"staging gate: {_short(gate.get('detail') or gate.get('result'))}")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ticked(results: Iterable[StepResult | dict], environment: str = "", guide: str | None = GUIDE) -> str:
    """The checklist as Markdown: ``- [x]`` for an item this run satisfied, ``- [ ]`` with the
    reason (failed, blocked, skipped, not applicable) for the others."""
    lines = ["## Production Deployment Checklist", ""]
    if guide:
        lines += [f"The guide's checklist, ticked from this run's steps ([{guide}]({guide}) says which step does what).", ""]
    for t in evaluate(results, environment):
        box = "[x]" if t.done else "[ ]"
        mark = mark_md(t.state) if t.state != "n/a" else "**n/a**"
        lines.append(f"- {box} {t.item.text} — {mark} ({t.why})")
    return "\n".join(lines)
