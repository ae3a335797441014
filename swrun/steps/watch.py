"""watch: the checklist's "Monitor for errors", measured.

For ``seconds`` after the upgrade (and verify), sample the target's error signals —
rollbacks, deadlocks, recovery conflicts, sessions that ended abnormally (PostgreSQL 14+:
abandoned, fatal, killed) from ``pg_stat_database``, and sessions waiting on a lock from
``pg_stat_activity`` — and compare them with a window of the same length sampled right
before the upgrade. A rise is flagged in the record; with ``fail_on_rise`` it fails the
step, so the run's exit status says so.

What counts as a rise, per signal (after vs before, same window length):

* rollbacks: at least twice as many, and at least 5 more (applications roll back as a
  matter of course; a doubling is what a broken deploy looks like);
* deadlocks, conflicts, abnormal session ends, lock waits (most sessions waiting at
  once): any more than before (they are rare; one more is worth a look).
"""

from __future__ import annotations

import pandas as pd

from .. import activity
from ..config import RunContext
from ..result import StepResult, Timer

LABELS = {
    "xact_rollback": "rollbacks",
    "deadlocks": "deadlocks",
    "conflicts": "recovery conflicts",
    "sessions_abandoned": "sessions abandoned (client gone)",
    "sessions_fatal": "sessions ended by a fatal error",
    "sessions_killed": "sessions killed",
    "lock_waits": "sessions waiting on a lock (most at once)",
}
ROLLBACK_MIN_MORE = 5


def rose(signal: str, before: int, after: int) -> bool:
    if signal == "xact_rollback":
        return after >= 2 * before and after - before >= ROLLBACK_MIN_MORE
    return after > before


def rule(signal: str) -> str:
    return f"x2 and +{ROLLBACK_MIN_MORE}" if signal == "xact_rollback" else "any more"


def compare(before: activity.Window | None, after: activity.Window) -> list[dict]:
    rows = []
    base = before.signals() if before is not None else {}
    for signal, now in after.signals().items():
        was = base.get(signal)
        rows.append({"signal": LABELS.get(signal, signal), "before": was, "after": now, "rule": rule(signal),
                     "flag": "rise" if was is not None and rose(signal, was, now) else "",
                     "key": signal})
    return rows


def run(ctx: RunContext, seconds: float = 0.0, before: activity.Window | None = None, fail_on_rise: bool = False,
        interval: float = 0.25) -> StepResult:
    if seconds <= 0:
        return StepResult("watch", outcome="skipped", summary="not watched (watch_seconds is 0)")
    with Timer() as t:
        after = activity.window(ctx.engine, seconds, interval=interval)
    rows = compare(before, after)
    risen = [r for r in rows if r["flag"]]
    result = StepResult("watch", seconds=t.seconds)
    result.data = {
        "seconds": seconds,
        "fail_on_rise": fail_on_rise,
        "before": before.as_dict() if before is not None else None,
        "after": after.as_dict(),
        "signals": [{k: r[k] for k in ("key", "before", "after", "flag")} for r in rows],
        "risen": [r["key"] for r in risen],
    }
    result.tables["signals"] = pd.DataFrame([{k: r[k] for k in ("signal", "before", "after", "rule", "flag")} for r in rows],
                                            columns=["signal", "before", "after", "rule", "flag"])
    where = f"{after.seconds:.1f}s after the upgrade"
    if before is None:
        result.outcome = "warning"
        result.summary = f"watched {where}, but no window before it was sampled to compare with"
    elif risen:
        named = ", ".join(f"{r['signal']} {r['before']} -> {r['after']}" for r in risen)
        result.outcome = "failed" if fail_on_rise else "warning"
        result.summary = f"error signals rose in the {after.seconds:.1f}s after the upgrade against the {before.seconds:.1f}s before: {named}"
        if fail_on_rise:
            result.error = result.summary + " (watch_fail_on_rise is set)"
    else:
        result.summary = f"no rise in {len(rows)} error signal(s) {where} against the {before.seconds:.1f}s before"
    return result
