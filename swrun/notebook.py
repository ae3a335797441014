"""What a runbook's cells call: run a checklist step, show its result, summarise the run.

Cells stay one line each (``rb.run("backup")``); the order of steps, the skipping of
steps after a failure, and the display live here, where they are tested.

Each result is displayed three ways: a markdown line for people, tables (HTML and text),
and a JSON bundle under swrun's own MIME type that the runner lifts into the record's
metadata. With ``SWRUN_PLAIN_OUTPUT=1`` (the nbval tests) only text/plain is emitted, so
committed expected outputs compare exactly.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field

from .config import RunContext
from .errors import SwrunError
from .steps.base import MIME_TYPE, StepResult

DEPLOY_STEPS = ("preflight", "status", "preview", "backup", "upgrade", "verify")


def plain_output() -> bool:
    return os.environ.get("SWRUN_PLAIN_OUTPUT") == "1"


def _display(bundle: dict) -> None:
    from IPython.display import display

    if plain_output():
        bundle = {"text/plain": bundle["text/plain"]}
    display(bundle, raw=True)


def show_table(df, title: str | None = None) -> None:
    if df is None or not len(df):
        return
    text = df.to_string(index=False)
    bundle = {"text/plain": f"{title}\n{text}" if title else text}
    bundle["text/html"] = (f"<p><b>{title}</b></p>" if title else "") + df.to_html(index=False, escape=True)
    _display(bundle)


def show(result: StepResult) -> None:
    mark = {"ok": "✅", "warning": "⚠️", "failed": "❌", "blocked": "⛔", "skipped": "⏭️"}.get(result.outcome, "")
    line = f"{result.step}: {result.outcome} — {result.summary}"
    _display({"text/plain": line, "text/markdown": f"{mark} **{result.step}**: {result.outcome} — {result.summary}"})
    if result.error and result.outcome in ("failed", "blocked"):
        _display({"text/plain": f"error: {result.error}"})
    for name, table in result.tables.items():
        show_table(table, name)
    if result.code:  # one output for all blocks: one message, not one per revision
        _display({"text/plain": "\n\n".join(f"-- {title}\n{sql}" for title, sql in result.code.items()),
                  "text/markdown": "\n\n".join(f"**{title}**\n\n```sql\n{sql}\n```" for title, sql in result.code.items())})
    if not plain_output():
        from IPython.display import display

        display({MIME_TYPE: result.as_dict(), "text/plain": f"<swrun result: {result.step}>"}, raw=True)


@dataclass
class Runbook:
    """The state of one runbook execution inside the kernel."""

    ctx: RunContext
    runbook: str = "deploy"
    target: str = "head"
    steps: tuple[str, ...] = DEPLOY_STEPS
    results: list[StepResult] = field(default_factory=list)

    @classmethod
    def start(cls, *, runbook: str, environment: str, project: str, target: str, steps: str, backup_dir: str,
              operator: str, run_id: str, lock_timeout: str = "10s", lock_wait_seconds: float = 30.0, **_ignored) -> "Runbook":
        from pathlib import Path

        kw = {"project_path": project or None, "environment": environment, "backup_dir": Path(backup_dir),
              "lock_timeout": lock_timeout, "lock_wait_s": float(lock_wait_seconds)}
        if operator:
            kw["operator"] = operator
        if run_id:
            kw["run_id"] = run_id
        chosen = tuple(s.strip() for s in steps.split(",") if s.strip()) if isinstance(steps, str) else tuple(steps)
        return cls(RunContext(**kw), runbook=runbook, target=target, steps=chosen)

    def header(self) -> None:
        import pandas as pd

        ctx = self.ctx
        rows = [
            ("run", ctx.run_id), ("runbook", self.runbook), ("environment", ctx.environment),
            ("operator", ctx.operator), ("database", ctx.redacted_url),
            ("project", str(ctx.project.ini_path) if not os.environ.get("SWRUN_PLAIN_OUTPUT") else ctx.project.ini_path.name),
            ("target", self.target), ("steps", ", ".join(self.steps)),
        ]
        show_table(pd.DataFrame(rows, columns=["", "value"]), "run")

    def result(self, step: str) -> StepResult | None:
        return next((r for r in self.results if r.step == step), None)

    def _blocker(self, step: str) -> str | None:
        failed = next((r for r in self.results if r.outcome in ("failed", "blocked")), None)
        if failed:
            return f"not run: {failed.step} {failed.outcome}"
        if step == "upgrade" and self.ctx.environment == "production":
            backup = self.result("backup")
            if backup is None or backup.outcome != "ok" or not backup.data.get("verified"):
                return "production requires a verified backup from this run (the guide: ALWAYS backup production database before migrating)"
        return None

    def run(self, step: str) -> StepResult:
        """Run one checklist step (or skip it), record and show its result."""
        if step not in self.steps:
            result = StepResult(step, outcome="skipped", summary="not selected for this run")
        elif (why := self._blocker(step)) is not None:
            result = StepResult(step, outcome="blocked" if "requires" in why else "skipped", summary=why,
                                error=why if "requires" in why else None)
        else:
            result = self._execute(step)
        self.results.append(result)
        show(result)
        return result

    def _execute(self, step: str) -> StepResult:
        from .steps import backup, preflight, preview, status, upgrade, verify

        started = time.perf_counter()
        try:
            if step == "preflight":
                return preflight.run(self.ctx)
            if step == "status":
                return status.run(self.ctx, target=self.target)
            if step == "preview":
                known = self.result("status")
                current = tuple(known.data["current"]) if known and known.outcome == "ok" else None
                return preview.run(self.ctx, target=self.target, current=current)
            if step == "backup":
                return backup.run(self.ctx)
            if step == "upgrade":
                return upgrade.run(self.ctx, target=self.target)
            if step == "verify":
                done = self.result("upgrade")
                return verify.run(self.ctx, target=self.target, baseline=getattr(done, "baseline", None))
            raise SwrunError(f"unknown step {step!r}")
        except SwrunError as exc:
            return StepResult(step, outcome="failed", summary=self.ctx.scrub(exc.line()), error=self.ctx.scrub(exc.line()),
                              seconds=time.perf_counter() - started, data=_failure_data(exc))
        except Exception as exc:  # a bug or an unexpected server error: keep the type, never the secret
            text = self.ctx.scrub(f"{type(exc).__name__}: {' '.join(str(exc).split())}")[:500]
            tb = self.ctx.scrub("".join(traceback.format_exception(exc)[-3:]))
            return StepResult(step, outcome="failed", summary=text, error=text, seconds=time.perf_counter() - started,
                              data={"traceback": tb})

    def summary(self) -> None:
        import pandas as pd

        rows = [{"step": r.step, "outcome": r.outcome, "seconds": round(r.seconds, 2), "summary": r.summary} for r in self.results]
        df = pd.DataFrame(rows, columns=["step", "outcome", "seconds", "summary"])
        failed = [r for r in self.results if r.outcome in ("failed", "blocked")]
        verdict = f"FAILED at {failed[0].step}" if failed else "SUCCEEDED"
        _display({"text/plain": f"run {verdict}", "text/markdown": f"## Run {verdict}"})
        show_table(df.drop(columns=["seconds"]) if plain_output() else df, "summary")


def _failure_data(exc: SwrunError) -> dict:
    data = {"error_type": type(exc).__name__, "exit_code": exc.exit_code}
    for attr in ("revision", "current"):
        value = getattr(exc, attr, None)
        if value:
            data[attr] = list(value) if isinstance(value, tuple) else value
    return data
