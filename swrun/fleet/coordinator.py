"""The fleet's coordinator: plans the waves, submits targets to Dask, and alone writes the records.

Workers hand each finished record back (:func:`.worker.deploy_target`); the coordinator
writes it under ``reports/`` and appends its index entry, so the hash chain has one writer
and no worker needs the reports directory. After each wave the failures of this run are
counted: more than ``max_failures`` and no new target starts; the rest are recorded as
``not started: stopped after N failures``.

Signals (Ctrl-C, SIGTERM, SIGHUP) are only noted by the handler, never raised into the
Dask client: the first stops new targets from starting and waits for the running ones
(each finishes its own runbook and record); a second one interrupts the running ones as
``swrun deploy`` is interrupted (the kernel stopped, partial backups and the rehearsal's
scratch database removed, the record finished as ``interrupted``). Every target is in the
fleet record either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import records
from ..errors import StepFailed, UsageError
from . import plan as plan_mod
from .spec import FleetSpec, Target

POLL_S = 0.5


@dataclass
class TargetRun:
    name: str
    wave: int
    server: str
    database: str  # redacted URL
    status: str = "pending"  # succeeded | failed | interrupted | skipped | not started | pending
    run_id: str | None = None
    record: str | None = None  # relative to the reports directory
    started: float | None = None  # coordinator clock (epoch seconds)
    finished: float | None = None
    seconds: float | None = None
    revision_before: list[str] | None = None
    revision_after: list[str] | None = None
    failed_step: str | None = None
    message: str = ""
    worker: str | None = None


@dataclass
class FleetOutcome:
    fleet_run: str
    record_run: str
    record: Path | None
    targets: list[TargetRun] = field(default_factory=list)
    stopped: str | None = None
    signal: int | None = None

    def count(self, status: str) -> int:
        return sum(1 for t in self.targets if t.status == status)

    @property
    def outcome(self) -> str:
        if self.signal:
            return "interrupted"
        return "succeeded" if all(t.status in ("succeeded", "skipped") for t in self.targets) else "failed"

    @property
    def exit_code(self) -> int:
        if self.signal:
            return 128 + self.signal
        return 0 if self.outcome == "succeeded" else StepFailed.exit_code


class _Stop:
    """Signals noted, never raised: the first stops new targets, the second interrupts the running ones."""

    CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, out):
        self.out, self.signum, self.count, self.previous = out, None, 0, {}
        self.interrupt = threading.Event()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.CAUGHT:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        from ..runner import signal_name

        self.signum = self.signum or signum
        self.count += 1
        if self.count == 1:
            self.out(f"swrun: {signal_name(signum)}: no new target starts; the running ones finish and are recorded "
                     f"({signal_name(signum)} again interrupts them)")
        elif self.count == 2:
            self.out(f"swrun: {signal_name(signum)} again: interrupting the running targets; their records are kept")
            self.interrupt.set()


def _printer(stream, board=None):
    """Lines of the coordinator's own: between swrun.progress's live wave lines when there is a board."""
    def out(line: str) -> None:
        line = records.scrub_known(line)
        if board is not None:
            board.line(line)
        else:
            print(line, file=stream, flush=True)
    return out


def _board(waves, stream):
    """swrun.progress's fleet board (done, running, failed, not started per wave), if this swrun has it."""
    try:
        from ..progress import Fleet as Board
    except ImportError:
        return None
    try:
        return Board({w.label: [t.name for t in w.targets] for w in waves}, stream=stream)
    except Exception:  # progress is a display: never a reason for a fleet run to fail
        return None


def previous_successes(reports_dir: Path, fleet_run: str, fingerprint: str, spec: FleetSpec) -> dict[str, dict]:
    """Targets that succeeded in ``fleet_run`` with this migration set, on the same database: name -> entry."""
    from .. import store

    if not Path(reports_dir).is_dir():
        raise UsageError(f"no fleet run {fleet_run!r}: {reports_dir} does not exist", hint="give --reports-dir")
    entries = store.filter_entries(store.read_index(reports_dir).entries, fleet=fleet_run)
    if not entries:
        raise UsageError(f"no fleet run {fleet_run!r} in {store.index_path(reports_dir)}",
                         hint="`swrun reports list --runbook fleet` shows the fleet runs")
    by_name = {t.name: t for t in spec.targets}
    done: dict[str, dict] = {}
    for e in entries:
        name = e["fleet"].get("target")
        t = by_name.get(name)
        if t is None or e.get("runbook") != "deploy" or e.get("outcome") != "succeeded" or e.get("fingerprint") != fingerprint:
            continue
        db = e.get("database") or {}
        if (str(db.get("host")), int(db.get("port") or 0), db.get("database")) == (
                str(t.identity["host"]), int(t.identity["port"]), t.identity["database"]):
            done[name] = e
    return done


def deploy(spec: FleetSpec, *, scheduler: str | None = None, workers: int | None = None, resume: str | None = None,
           reports_dir: Path = Path("reports"), backup_dir: Path = Path("backups"), operator: str | None = None,
           cell_timeout: float = 3600, kernel_timeout: float = 60, stream=sys.stderr) -> FleetOutcome:
    from .. import params
    from ..config import RunContext, default_operator, new_run_id
    from . import cluster, record

    from .. import database

    for t in spec.targets:  # every target's password is known to this process's redaction from here on
        records.secret_forms(database.normalize_url(t.url))
    reports_dir, backup_dir = Path(reports_dir).absolute(), Path(backup_dir).absolute()
    operator = params.runner_values(spec.environment, operator, None)[1] or default_operator()
    if resume is not None:
        params.check_pattern("run_id", resume)
    ctx = RunContext(project_path=spec.project)
    fingerprint = ctx.project.fingerprint()  # a project Alembic cannot read: ProjectError now, nothing started
    done = previous_successes(reports_dir, resume, fingerprint, spec) if resume else {}
    fleet_run = resume or new_run_id()
    result = FleetOutcome(fleet_run, new_run_id() if resume else fleet_run, None)
    waves = plan_mod.waves(spec)
    board = _board(waves, stream)
    out = _printer(stream, board)
    for w in waves:
        for t in w.targets:
            result.targets.append(TargetRun(t.name, w.number, t.server, t.redacted))
    runs = {r.name: r for r in result.targets}
    size = spec.wave_length()
    out(f"swrun: fleet run {fleet_run}{' (resumed)' if resume else ''}: {len(spec.targets)} target(s) on "
        f"{len({t.server for t in spec.targets})} server(s) ({spec.environment}): canary {spec.canary}, then waves of {size}; "
        f"max_failures {spec.max_failures}, max_per_server {spec.max_per_server}"
        + (f"; {len(done)} already succeeded in this fleet run, skipped" if resume else ""))
    for name, e in done.items():
        r = runs[name]
        r.status, r.run_id, r.record = "skipped", e["run_id"], e.get("record")
        r.revision_before, r.revision_after = e.get("revision_before"), e.get("revision_after")
        r.message = f"already succeeded in fleet run {fleet_run} (run {e['run_id']})"
        if board is not None:
            board.finished(_label(r.wave), name, ok=True)
    started = records.utc_now()
    t0 = time.time()
    failures = 0
    with _Stop(out) as stop:  # held until the fleet record is written: a signal never cuts it short
        with contextlib.ExitStack() as stack:
            try:
                client, described = stack.enter_context(cluster.client(scheduler, workers))
            except BaseException:
                if board is not None:
                    board.close()
                raise
            out(f"swrun: running on {described}; records: {reports_dir}")
            if scheduler is None:
                with contextlib.suppress(Exception):
                    client.run(_ignore_sigint)
            base = {"environment": spec.environment, "project": spec.project, "backup_dir": str(backup_dir),
                    "reads": str(reports_dir), "operator": operator, "cell_timeout": cell_timeout,
                    "kernel_timeout": kernel_timeout, "fleet": fleet_run}
            stop_event = _stop_event(client, fleet_run)
            watcher = threading.Thread(target=_relay_interrupt, args=(stop, stop_event), daemon=True)
            watcher.start()
            for wave in waves:
                todo = [t for t in wave.targets if runs[t.name].status == "pending"]
                if result.stopped or stop.signum:
                    break
                if not todo:
                    continue
                out(f"swrun: {plan_mod.Wave(wave.number, todo).label}: {len(todo)} target(s)"
                    + (f" ({len(wave.targets) - len(todo)} skipped)" if len(todo) < len(wave.targets) else ""))
                failures += _run_wave(client, todo, runs, base, spec, reports_dir, stop, out, t0, board)
                if failures > spec.max_failures and not stop.signum:  # interrupted: that is the reason given
                    result.stopped = f"stopped after {failures} failure(s)"
                    out(f"swrun: {failures} failure(s), more than max_failures = {spec.max_failures}: no new target starts")
            stop.interrupt.set()  # ends the relay thread
            watcher.join(timeout=5)
        reason = result.stopped or (f"interrupted ({_signal_name(stop.signum)})" if stop.signum else None)
        for r in result.targets:
            if r.status == "pending":
                r.status, r.message = "not started", f"not started: {reason}"
        result.signal = stop.signum
        finished = records.utc_now()
        if board is not None:
            board.close()
        result.record = record.write(result, spec, reports_dir=reports_dir, operator=operator, fingerprint=fingerprint,
                                     started=started, finished=finished, t0=t0, out=_printer(stream))
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("succeeded", "failed", "interrupted", "skipped", "not started")
                       if result.count(s))
    out = _printer(stream)
    out(f"swrun: fleet run {fleet_run} {result.outcome.upper()} in {time.time() - t0:.1f}s: {counts}; "
        f"fleet record: {result.record or 'NOT WRITTEN'}")
    return result


def _signal_name(signum):
    from ..runner import signal_name

    return signal_name(signum)


def _ignore_sigint():
    from .worker import ignore_terminal_interrupt

    return ignore_terminal_interrupt()


def _stop_event(client, fleet_run: str):
    from distributed import Event

    return Event(f"swrun-fleet-interrupt-{fleet_run}", client=client)


def _relay_interrupt(stop: _Stop, event) -> None:
    """The second signal, passed to the workers through a Dask Event (set from this thread: the
    handler itself must not call into the client)."""
    stop.interrupt.wait()
    if stop.count >= 2:
        with contextlib.suppress(Exception):
            event.set()


def _run_wave(client, todo: list[Target], runs: dict[str, TargetRun], base: dict, spec: FleetSpec,
              reports_dir: Path, stop: _Stop, out, t0: float, board=None) -> int:
    """Start the wave's targets as their servers have room; keep each record as it comes back.
    Returns the wave's failures."""
    from distributed import wait
    from ..config import new_run_id
    from .worker import deploy_target

    slots = plan_mod.ServerSlots(spec.max_per_server)
    pending = list(todo)
    running: dict = {}  # future -> target
    failures = 0
    while pending or running:
        if not stop.signum:
            for t in [t for t in pending]:
                if slots.free(t.server):
                    slots.take(t.server)
                    pending.remove(t)
                    r = runs[t.name]
                    r.run_id, r.status, r.started = new_run_id(), "running", time.time()
                    task = dict(base, name=t.name, run_id=r.run_id, env={"url": t.url})
                    fut = client.submit(deploy_target, task, key=f"swrun-deploy-{base['fleet']}-{t.name}-{r.run_id}",
                                        pure=False, retries=0)
                    running[fut] = t
                    if board is not None:
                        board.started(_label(r.wave), t.name)
        elif pending:
            pending.clear()  # the rest: "not started" in the fleet record
        if not running:
            continue
        try:
            finished, _ = wait(list(running), timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            continue
        for fut in finished:
            t = running.pop(fut)
            slots.give_back(t.server)
            r = runs[t.name]
            try:
                got = fut.result()
            except Exception as exc:  # the worker was lost, or the task could not run: no record came back
                got = {"outcome": "failed", "message": f"the Dask task failed ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]}); no record came back", "text": None}
            _keep(got, t, r, base, reports_dir, out)
            if board is not None:
                board.finished(_label(r.wave), t.name, ok=r.status == "succeeded")
            failures += r.status != "succeeded"
            _announce(r, out, t0)
    return failures


def _keep(got: dict, t: Target, r: TargetRun, base: dict, reports_dir: Path, out) -> None:
    """Write the target's record and append its index entry (and its copy in the target's database)."""
    from .. import store
    from ..config import RunContext

    r.finished = time.time()
    r.seconds = round(r.finished - (r.started or r.finished), 3)
    r.status = {"succeeded": "succeeded", "interrupted": "interrupted"}.get(got.get("outcome"), "failed")
    r.failed_step, r.message, r.worker = got.get("failed_step"), got.get("message") or "", got.get("host")
    text = got.get("text")
    if not text:
        r.message = r.message or "no record came back"
        return
    ctx = RunContext(project_path=base["project"], database_url=t.url, environment=base["environment"])
    try:
        secrets = records.secret_forms(ctx.url)
        doc = json.loads(text)
        meta = doc.setdefault("metadata", {}).setdefault("swrun", {})
        meta["fleet"] = {"run": base["fleet"], "target": t.name, "wave": r.wave}
        text, _ = records.redact(json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n", secrets)
        meta = json.loads(text)["metadata"]["swrun"]
        r.revision_before, r.revision_after = meta.get("revision_before"), meta.get("revision_after")
        when = _parse_time(meta.get("started")) or records.utc_now()
        path = records.record_path(reports_dir, base["environment"], meta.get("runbook") or "deploy", r.run_id, when)
        missing = None
        with store.private_umask():
            try:
                records.prepare_dir(path)
                records.write_atomic(path, text)
            except (OSError, UsageError) as exc:
                missing = getattr(exc, "strerror", None) or str(exc)
        r.record = path.relative_to(reports_dir).as_posix() if not missing else None
        for warning in store.keep(path, meta, text, ctx, missing=missing):
            out(f"swrun: warning: {t.name}: {warning}")
        if missing:
            r.message = f"{r.message}; its record could not be written ({missing})".lstrip("; ")
    finally:
        ctx.close()


def _parse_time(value):
    import datetime as dt

    with contextlib.suppress(TypeError, ValueError):
        return dt.datetime.fromisoformat(value)
    return None


def _label(wave: int) -> str:
    return plan_mod.Wave(wave, []).label


def _announce(r: TargetRun, out, t0: float) -> None:
    """One line per finished target (between swrun.progress's wave lines, when it draws them)."""
    mark = {"succeeded": "✓", "interrupted": "!"}.get(r.status, "✗")
    verdict = r.status.upper() + (f" at {r.failed_step}" if r.failed_step else "")
    revs = f"{_revs(r.revision_before)} -> {_revs(r.revision_after)}"
    out(f"  {mark} [{'canary' if r.wave == 0 else f'wave {r.wave}'}] {r.name} {verdict} in {r.seconds:.1f}s "
        f"({revs}; run {r.run_id}){': ' + r.message if r.status != 'succeeded' and r.message else ''}")


def _revs(revs) -> str:
    if revs is None:
        return "?"
    return ",".join(str(x)[:12] for x in revs) or "<base>"


def as_rows(result: FleetOutcome) -> list[dict]:
    return [asdict(r) for r in result.targets]
