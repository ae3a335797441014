"""What a runbook's cells call: run a checklist step, show its result, summarise the run.

Cells stay one line each (``rb.run("backup")``); the order of steps, the skipping of
steps after a failure, and the display live here, where they are tested.

Each result is displayed three ways: a markdown line for people, tables (HTML and text),
and a JSON bundle under swrun's own MIME type that the runner lifts into the record's
metadata. With ``SWRUN_PLAIN_OUTPUT=1`` (the nbval tests) only text/plain is emitted, so
committed expected outputs compare exactly.
"""

from __future__ import annotations

import html
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

from .config import RunContext
from .errors import SwrunError
from .result import MIME_TYPE, StepResult

DEPLOY_STEPS = ("preflight", "status", "preview", "guards", "backup", "rehearse", "upgrade", "verify", "watch")
# read-only steps whose failure the guards step explains (a deleted or renamed file): it runs after them anyway
_GUARDS_RUN_AFTER = ("status", "preview")


def plain_output() -> bool:
    return os.environ.get("SWRUN_PLAIN_OUTPUT") == "1"


def _display(bundle: dict) -> None:
    from IPython.display import display

    if plain_output():
        bundle = {"text/plain": bundle["text/plain"]}
    display(bundle, raw=True)


# rows a table shows as HTML and text; a longer one shows its first rows and keeps every row
# as JSON (TABLE_MIME_TYPE) in the same output. Rendering is the cost: pandas formats a
# 2,000-row table in about 0.3 s, and the 500-revision deploy's record held 6 MB of them.
SHOWN_ROWS = int(os.environ.get("SWRUN_TABLE_ROWS", "100"))
TABLE_MIME_TYPE = "application/vnd.swrun.table+json"


def show_table(df, title: str | None = None) -> None:
    if df is None or not len(df):
        return
    from . import display

    shown = df.head(SHOWN_ROWS) if len(df) > SHOWN_ROWS else df
    more = f"\n… {len(df) - len(shown)} more row(s) of {len(df)}: every row is in this output's JSON" if shown is not df else ""
    text = display.frame_text(shown) + more
    label = title.replace("_", " ") if title else None
    bundle = {"text/plain": f"{label}\n{text}" if label else text}
    bundle["text/html"] = ((f"<p><b>{html.escape(label)}</b></p>" if label else "") + display.frame_html(shown)
                           + (f"<p><i>{html.escape(more.strip())}</i></p>" if more else ""))
    if more and not plain_output():
        bundle[TABLE_MIME_TYPE] = {"title": title, "columns": [str(c) for c in df.columns],
                                   "rows": json.loads(df.to_json(orient="values", date_format="iso", default_handler=str))}
    _display(bundle)


def show(result: StepResult) -> None:
    from .display import mark_md

    line = f"{result.step}: {result.outcome} — {result.summary}"
    _display({"text/plain": line, "text/markdown": f"{mark_md(result.outcome)} **{result.step}** — {_md_text(result.summary)}"})
    if result.error and result.outcome in ("failed", "blocked"):
        _display({"text/plain": f"error: {result.error}"})
    for name, table in result.tables.items():
        show_table(table, name)
    if result.step in _PLOTS and result.outcome in ("ok", "warning") and not plain_output():
        figure = _PLOTS[result.step](result)
        if figure is not None:
            from IPython.display import display

            display(figure)
    if result.code:  # one output for all blocks: one message, not one per revision
        _display({"text/plain": "\n\n".join(f"-- {title}\n{sql}" for title, sql in result.code.items()),
                  "text/markdown": "\n\n".join(f"**{title}**\n\n```sql\n{sql}\n```" for title, sql in result.code.items())})
    if not plain_output():
        from IPython.display import display

        display({MIME_TYPE: result.as_dict(), "text/plain": f"<swrun result: {result.step}>"}, raw=True)


def _md_text(text: str) -> str:
    """A summary as markdown text: characters markdown would read as markup are escaped."""
    return "".join("\\" + c if c in "\\`*_[]<>|#" else c for c in text)


def _rehearsal_plot(result: StepResult):
    from .plots import rehearsal_figure

    return rehearsal_figure(result.data)


# step -> function(result) -> a matplotlib Figure (or None), shown under the step's tables
_PLOTS: dict[str, Callable[[StepResult], object]] = {"rehearse": _rehearsal_plot}


# step name -> function(rb) -> StepResult. A runbook's cells name steps; the functions that
# run them register here, from the modules in STEP_MODULES (imported on first use).
_STEPS: dict[str, Callable[["Runbook"], StepResult]] = {}
STEP_MODULES = ("swrun.steps.deploy_steps", "swrun.recovery.steps")


def register(name: str):
    """Decorator: ``@register("backup") def _backup(rb): ...``"""
    def wrap(fn):
        _STEPS[name] = fn
        return fn
    return wrap


def step_function(name: str) -> Callable[["Runbook"], StepResult]:
    if name not in _STEPS:
        import importlib

        for module in STEP_MODULES:
            importlib.import_module(module)
    if name not in _STEPS:
        raise SwrunError(f"unknown step {name!r}")
    return _STEPS[name]


@dataclass
class Runbook:
    """The state of one runbook execution inside the kernel."""

    ctx: RunContext
    runbook: str = "deploy"
    target: str = "head"
    steps: tuple[str, ...] = DEPLOY_STEPS
    results: list[StepResult] = field(default_factory=list)
    reports_dir: str = "reports"
    acknowledge: str = ""  # finding ids the operator acknowledged (guards)
    override_gates: str = ""  # production gates the operator overrode (guards)
    options: dict = field(default_factory=dict)  # the runbook's other parameters, for its steps

    @classmethod
    def start(cls, *, runbook: str, environment: str, project: str, target: str, steps: str, backup_dir: str,
              operator: str, run_id: str, lock_timeout: str = "2s", lock_wait_seconds: float = 30.0,
              reports_dir: str = "reports", acknowledge: str = "", override_gates: str = "",
              long_transaction_seconds: float = 300.0, **options) -> "Runbook":
        from pathlib import Path

        from . import database, params

        # the same spelling the runner filed the record under: the gates compare with it
        environment = params.environment_name(environment)
        lock_timeout = database.check_duration("lock_timeout", lock_timeout)
        kw = {"project_path": project or None, "environment": environment, "backup_dir": Path(backup_dir),
              "lock_timeout": lock_timeout, "lock_wait_s": float(lock_wait_seconds),
              "long_transaction_s": float(long_transaction_seconds)}
        for name, check in (("lock_retries", lambda v: params.check_number(name, int(v))),
                            ("lock_retry_budget", lambda v: database.check_duration(name, v)),
                            ("statement_timeout", lambda v: database.check_duration(name, v))):
            if name in options:  # the lock-retry settings (swrun/lock_retry.py)
                kw[name] = check(options.pop(name))
        if operator:
            kw["operator"] = operator
        if run_id:
            kw["run_id"] = run_id
        chosen = tuple(s.strip() for s in steps.split(",") if s.strip()) if isinstance(steps, str) else tuple(steps)
        return cls(RunContext(**kw), runbook=runbook, target=target, steps=chosen, reports_dir=reports_dir,
                   acknowledge=acknowledge or "", override_gates=override_gates or "", options=options)

    def header(self) -> None:
        import pandas as pd

        ctx = self.ctx
        try:  # a project that does not load is the status step's to report (and the guards', to explain)
            ini = ctx.project.ini_path
        except SwrunError:
            ini = Path(ctx.project_path or "alembic.ini")
        rows = [
            ("run", ctx.run_id), ("runbook", self.runbook), ("environment", ctx.environment),
            ("operator", ctx.operator), ("database", ctx.redacted_url),
            ("project", str(ini) if not os.environ.get("SWRUN_PLAIN_OUTPUT") else ini.name),
            ("target", self.target), ("steps", ", ".join(self.steps)),
        ]
        if self.acknowledge:
            rows.append(("acknowledge", self.acknowledge))
        if self.override_gates:
            rows.append(("override gates", self.override_gates))
        show_table(pd.DataFrame(rows, columns=["setting", "value"]), "run")

    def result(self, step: str) -> StepResult | None:
        return next((r for r in self.results if r.step == step), None)

    def _blocker(self, step: str) -> str | None:
        failed = next((r for r in self.results if r.outcome in ("failed", "blocked")
                       and not (step == "guards" and r.step in _GUARDS_RUN_AFTER)), None)
        if failed:
            return f"not run: {failed.step} {failed.outcome}"
        if step == "upgrade" and self.ctx.environment == "production":
            backup = self.result("backup")
            if backup is None or backup.outcome != "ok" or not backup.data.get("verified"):
                return "production requires a verified backup from this run (the guide: ALWAYS backup production database before migrating)"
            guards = self.result("guards")
            if guards is None or not guards.ok or guards.outcome == "skipped":
                return "production requires the guards step of this run (the files unchanged since applied, the production gates passed)"
            if not rehearsed(self) and "rehearsal" not in _names(self.override_gates):
                return ("production requires a successful rehearsal of these migrations in this run (the guide: ALWAYS test "
                        "migrations locally first; Have rollback plan ready): run the rehearse step, or override: --override-gates rehearsal")
            done = self.result("rehearse")
            if (done is not None and done.data.get("rollback_proven") is False and done.data.get("rollback_failed_revision")
                    and "rehearsal" not in _names(self.override_gates)):
                return ("production requires a rollback plan (the guide: Have rollback plan ready): the rehearsal's downgrade "
                        f"failed at revision {done.data['rollback_failed_revision']}, so only this run's backup can undo the "
                        "upgrade; to go ahead with the backup as the rollback plan: --override-gates rehearsal")
            from .guards.gates import executed_gate  # the rehearsal ran after the guards: its SQL is gated here

            gate = executed_gate(guards.data or {}, done.data if done is not None and done.ok else None)
            if gate.result == "blocked":
                return f"production requires the executed-sql gate: {gate.detail} ({gate.proceed})"
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
        started = time.perf_counter()
        try:
            runner = step_function(step)
            return runner(self)
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


def gates_unproven(environment: str, results: dict[str, dict]) -> str | None:
    """Why a run may not be filed as succeeded under ``environment`` (None: it may).

    The guards step's data names the environment whose gates it evaluated: it must be the one
    the record is filed under; and a production run whose upgrade ran must have passed
    production's gates in this run. The kernel blocks such an upgrade itself (:meth:`Runbook._blocker`);
    this is the runner's check of the record, whatever notebook produced it."""
    guards = results.get("guards") or {}
    evaluated = (guards.get("data") or {}).get("environment")
    if evaluated is not None and evaluated != environment:
        return f"the guards step evaluated the gates of {evaluated!r}, but the run is filed under {environment!r}"
    upgraded = (results.get("upgrade") or {}).get("outcome") in ("ok", "warning")
    if environment == "production" and upgraded and (guards.get("outcome") not in ("ok", "warning") or evaluated != environment):
        return "the upgrade ran, but this run's guards step did not pass production's gates: the record is not filed as a success"
    return None


def _names(text: str) -> set[str]:
    return {x.strip() for x in (text or "").split(",") if x.strip()}


def rehearsed(rb: Runbook) -> bool:
    """This run rehearsed this migration set (the status step's fingerprint) on a copy, successfully."""
    done, known = rb.result("rehearse"), rb.result("status")
    if done is None or done.outcome not in ("ok", "warning") or not done.data.get("fingerprint"):
        return False
    return known is None or known.data.get("fingerprint") in (None, done.data["fingerprint"])


def rehearsal_overridden(rb: Runbook) -> bool:
    return not rehearsed(rb) and "rehearsal" in _names(rb.override_gates)


def _failure_data(exc: SwrunError) -> dict:
    data = {"error_type": type(exc).__name__, "exit_code": exc.exit_code}
    for attr in ("revision", "current", "file", "lineno", "attempts", "blockers"):
        value = getattr(exc, attr, None)
        if value:
            data[attr] = list(value) if isinstance(value, tuple) else value
    return data
