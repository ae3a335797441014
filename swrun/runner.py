"""Execute a runbook with papermill and keep the executed notebook as the run's record.

The order of things, each one before the next can go wrong:

1. find the runbook and validate its parameters (no kernel yet);
2. resolve the database URL (only its redacted form becomes a parameter) and prove the
   reports directory writable;
3. start one kernel over IPC (no TCP ports), the real URL in its environment only;
4. papermill executes the notebook, saving it as it goes (a killed run leaves a record
   marked incomplete); the terminal shows each step as it starts and ends;
5. whatever happened, the kernel is shut down (killed if need be), the notebook is
   scanned for the secret, stamped with the outcome at the top and in ``metadata.swrun``,
   and written owner-only, atomically.

SIGTERM and SIGHUP end a run as Ctrl-C does (:class:`_Signals`): the kernel's process
group is killed (``pg_dump``/``pg_restore`` with it), the backup's partial files and the
rehearsal's scratch database are removed, and the record is finished as ``interrupted``
and indexed; the exit code is 128 + the signal's number. A run whose record cannot be
written (a full or read-only disk) is still indexed, its record marked missing.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import params as params_mod
from . import progress as progress_mod
from . import records
from .notebook import gates_unproven
from .errors import StepFailed, SwrunError, UsageError

RUNBOOKS_DIR = Path(__file__).parent / "runbooks"
# imported by the kernel while it boots: every runbook's first cell needs it
PRELOAD = "import swrun.notebook, swrun.steps.deploy_steps"
NAMESPACE = "swrun"
RESERVE_BYTES = 256 << 10  # kept free in the reports directory for the index entry of a record that does not fit


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the runner is, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunTerminated(SwrunError):
    """A signal ended swrun before a run began: nothing ran, no record."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class _Signals:
    """SIGTERM and SIGHUP while a run is under way: raised once as :class:`Terminated`; any
    later one, and any arriving once the runner cleans up and writes the record (:meth:`hold`),
    is only remembered, so the cleanup and the record are never cut short."""

    CAUGHT = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.armed, self.received, self.previous = True, None, {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.CAUGHT:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signum
        if self.armed:
            self.armed = False
            raise Terminated(signum)

    def hold(self) -> None:
        self.armed = False


def runbook_path(name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix == ".ipynb" or "/" in name:
        path = candidate
    else:
        path = RUNBOOKS_DIR / f"{name}.ipynb"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RUNBOOKS_DIR.glob("*.ipynb")))
        raise UsageError(f"no runbook {name!r}", hint=f"known runbooks: {known}")
    return path


def _read_runbook(path: Path) -> tuple[dict, dict]:
    """The runbook's JSON and the parameters it declares, enough to validate the given ones."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
            raise ValueError("no cells")
        return raw, params_mod.declared(raw)
    except Exception as exc:
        raise UsageError(f"{path} is not a readable notebook: {type(exc).__name__}") from None


def load_notebook(path: Path):
    _fast_imports()
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:
        raise UsageError(f"{path} is not a readable notebook: {type(exc).__name__}") from None


@dataclass
class RunOutcome:
    run_id: str
    record: Path
    outcome: str  # succeeded | failed | interrupted
    failed_step: str | None = None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    redactions: int = 0
    signal: int | None = None  # the signal that ended the run, or arrived as it ended
    record_missing: str | None = None  # why the record could not be written (it is indexed all the same)
    warnings: list[str] = field(default_factory=list)  # about the record's keeping (index, database copy)

    @property
    def exit_code(self) -> int:
        if self.signal:
            return 128 + self.signal
        if self.outcome == "interrupted":
            return 130
        if self.outcome == "succeeded" and not self.record_missing:
            return 0
        return StepFailed.exit_code

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "record": str(self.record), "outcome": self.outcome, "failed_step": self.failed_step,
                "message": self.message, "timings": self.timings, "redactions": self.redactions,
                "signal": signal_name(self.signal) if self.signal else None, "record_missing": self.record_missing,
                "warnings": self.warnings}


class _Progress:
    """Each step as it starts and ends, from papermill's cell hooks, and the kernel's progress in
    between (swrun/progress.py: the kernel reports over ``channel``, ``display`` draws)."""

    def __init__(self, enabled: bool, journal: Path | None = None, stream=None, selected: set[str] | None = None,
                 display=None, channel=None):
        from . import progress

        self.enabled = enabled
        self.selected = selected  # steps the run asked for; the others pass silently
        self.stream = stream or sys.stderr
        self.journal = journal  # one JSON line per finished step: what a killed run leaves behind
        self.results: dict[str, dict] = {}
        self.started: dict[int, float] = {}
        self.first_cell_at: float | None = None
        self.current_step: str | None = None
        self.display = display or progress.Display(self.stream, mode=None if enabled else "off", scrub=records.scrub_known)
        self.channel = channel

    def _step_of(self, cell) -> str | None:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("step:"):
                return tag[5:]
        return None

    def on_cell_start(self, cell, cell_index):
        if self.first_cell_at is None:
            self.first_cell_at = time.perf_counter()
        step = self._step_of(cell)
        self.current_step = step  # the step in flight, if the run dies or times out now
        self.started[cell_index] = time.perf_counter()
        if step:
            self.display.step_start(step, shown=self.enabled and (self.selected is None or step in self.selected))

    def on_cell_executed(self, cell, cell_index, execute_reply):
        step = self._step_of(cell)
        self.current_step = None
        if not step:
            return
        if self.channel is not None:
            self.channel.drain()  # the cell's last progress events belong to its step
        result = records.scrub_known(step_results([cell]).get(step))  # the journal and the terminal: no secret
        if result:
            self.results[step] = result
            if self.journal:
                with contextlib.suppress(OSError), open(self.journal, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result, default=str) + "\n")  # best effort: a full disk must not stop the run
        took = time.perf_counter() - self.started.get(cell_index, time.perf_counter())
        if result:
            mark = {"ok": "✓", "warning": "!", "skipped": "-"}.get(result["outcome"], "✗")
            line = f"  {mark} {step} {result['outcome']} ({took:.2f}s): {result['summary']}"
        else:
            line = f"  ✗ {step} did not report a result ({took:.2f}s)"
        self.display.step_end(step, line)  # prints it when the step was shown; keeps its timeline

    def timelines(self) -> dict[str, dict]:
        """Each step's start, end and phases with their durations: what the record keeps of its progress."""
        return dict(self.display.timelines)


def step_results(cells) -> dict[str, dict]:
    """The structured results the cells displayed under swrun's MIME type, by step."""
    from .result import MIME_TYPE

    found: dict[str, dict] = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME_TYPE in data:
                payload = data[MIME_TYPE]
                found[payload["step"]] = dict(payload)
    return found


class _Kernel:
    """One python3 kernel over IPC in a private directory; always stopped, killed if need be.

    The kernel process is launched first, with nothing but the standard library: importing
    jupyter_client takes the runner 0.4 s, which the kernel's boot now covers. The kernel
    manager papermill drives is built afterwards around the running process (:meth:`manager`).
    """

    def __init__(self, env: dict[str, str], cwd: str, pass_fds: tuple[int, ...] = ()):
        self.pass_fds = pass_fds  # the progress channel's kernel end
        self.dir = tempfile.mkdtemp(prefix="swrun-kernel-")
        self.connection_file = os.path.join(self.dir, "kernel.json")
        self.log = os.path.join(self.dir, "kernel.log")  # its output: quoted if it dies
        self.env, self.cwd = env, cwd
        self.process: subprocess.Popen | None = None
        self.km = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, preload: str = "") -> float:
        """Launch the kernel; ``preload`` runs while it boots, overlapping the runner's own work."""
        t0 = time.perf_counter()
        # what jupyter_client writes for an IPC kernel: sockets <dir>/kernel-ipc-<port>, an HMAC key
        info = {"transport": "ipc", "ip": os.path.join(self.dir, "kernel-ipc"), "shell_port": 1, "iopub_port": 2,
                "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": uuid.uuid4().hex + uuid.uuid4().hex,
                "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
        fd = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        argv = [sys.executable, "-m", "swrun.kernel", "-f", self.connection_file]
        if preload:
            argv.append(f"--IPKernelApp.exec_lines={[preload]!r}")
        # its own session (Ctrl-C is the runner's to handle); JPY_PARENT_PID: it exits if the runner dies
        env = {**self.env, "JPY_PARENT_PID": str(os.getpid())}
        try:
            # its output (warnings, a crash's last words) to a file the runner quotes if it dies
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(argv, env=env, cwd=self.cwd, stdin=subprocess.PIPE, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=self.pass_fds)
        except OSError as exc:
            raise UsageError(f"the python3 kernel did not start: {exc}", hint="is ipykernel installed in swrun's environment?") from None
        return time.perf_counter() - t0

    def manager(self):
        """The kernel manager of the running kernel, for papermill (built once)."""
        if self.km is None:
            from jupyter_client.manager import AsyncKernelManager
            from jupyter_client.provisioning.local_provisioner import LocalProvisioner

            from .kernel_client import ReadyClient

            km = AsyncKernelManager(kernel_name="python3", transport="ipc", connection_file=self.connection_file,
                                    client_factory=ReadyClient)
            km.load_connection_file()
            provisioner = LocalProvisioner(kernel_id=None, kernel_spec=None, parent=km)
            provisioner.process, provisioner.pid, provisioner.pgid = self.process, self.pid, self.pid
            km.provisioner = provisioner  # is_alive() and has_kernel now answer for this process
            self.km = km
        return self.km

    def died(self) -> str | None:
        """How the kernel ended, when it has: its exit code and the last line it wrote."""
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return None
        try:
            with open(self.log, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
                lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        said = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        return f"{said}: {lines[-1][:200]}" if lines else said

    def stop(self) -> None:
        """Kill the kernel's process group (it is a session leader: its children go with it)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.process.wait(timeout=10)
            if self.process.stdin:
                self.process.stdin.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _fast_imports() -> None:
    """jsonschema imports rfc3987_syntax, when installed, only to check IRI formats, which the
    notebook schema never uses; it compiles a grammar at import: about 1 s of every run."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def run_runbook(runbook: str, raw_parameters: dict[str, Any] | None = None, *, project: str | None = None,
                database_url: str | None = None, environment: str = "development", reports_dir: Path = Path("reports"),
                backup_dir: Path = Path("backups"), operator: str | None = None, cell_timeout: float = 3600,
                kernel_timeout: float = 60, progress: bool = True, run_id: str | None = None,
                label: str | None = None) -> RunOutcome:
    """``label``: the name the run is filed and indexed under when it is not the runbook's own
    (``swrun backup`` runs deploy.ipynb's preflight and backup steps, and is indexed as ``backup``)."""
    with _Signals() as signals:
        try:
            return _run_runbook(runbook, raw_parameters, project=project, database_url=database_url,
                                environment=environment, reports_dir=reports_dir, backup_dir=backup_dir, operator=operator,
                                cell_timeout=cell_timeout, kernel_timeout=kernel_timeout, progress=progress, run_id=run_id,
                                signals=signals, label=label)
        except Terminated as exc:  # before the record existed: no cell ran
            raise RunTerminated(exc.signum, f"{signal_name(exc.signum)} before the run started: nothing ran, no record was kept") from None


# set by run_detached: receives the finished record in place of store.keep (same arguments)
_detached_keeper: contextvars.ContextVar = contextvars.ContextVar("swrun_detached_keeper", default=None)
# and the reports directory the runbook reads (the production gate's staging records), if not its own
_detached_reads: contextvars.ContextVar = contextvars.ContextVar("swrun_detached_reads", default=None)


@dataclass
class DetachedRecord:
    """A finished record handed back instead of written: its text and its ``metadata["swrun"]``."""

    outcome: RunOutcome
    text: str | None
    meta: dict | None


def run_detached(runbook: str, raw_parameters: dict[str, Any] | None = None, *, reads: str | None = None,
                 **settings) -> DetachedRecord:
    """Run a runbook as :func:`run_runbook` does, but hand the finished record back instead of
    writing and indexing it: a fleet worker's run, whose coordinator is the record store's one
    writer. The placeholder and step journal go to a private directory, removed after;
    ``reads`` is the reports directory the runbook reads (staging records), when reachable."""
    kept: dict = {}

    def keep(record, meta, text, ctx, missing=None):
        kept.update(text=text, meta=json.loads(json.dumps(meta, default=str)))
        return []

    scratch = tempfile.mkdtemp(prefix="swrun-detached-")
    token, read_token = _detached_keeper.set(keep), _detached_reads.set(reads)
    try:
        outcome = run_runbook(runbook, raw_parameters, reports_dir=Path(scratch), progress=False, **settings)
    finally:
        _detached_keeper.reset(token)
        _detached_reads.reset(read_token)
        shutil.rmtree(scratch, ignore_errors=True)
    return DetachedRecord(outcome, kept.get("text"), kept.get("meta"))


def _run_runbook(runbook: str, raw_parameters: dict[str, Any] | None, *, project: str | None, database_url: str | None,
                 environment: str, reports_dir: Path, backup_dir: Path, operator: str | None, cell_timeout: float,
                 kernel_timeout: float, progress: bool, run_id: str | None, signals: _Signals,
                 label: str | None = None) -> RunOutcome:
    from . import activity
    from .config import URL_ENV, RunContext, default_operator, new_run_id

    timings: dict[str, float] = {}
    t_total = time.perf_counter()
    path = runbook_path(runbook)
    name = records.check_name("runbook name", label) if label else path.stem
    # validated from the plain JSON: nbformat (0.4 s) and SQLAlchemy (0.6 s) load while the kernel boots
    raw, declared = _read_runbook(path)
    given = params_mod.validate(raw, raw_parameters or {})
    # one spelling of each setting: the record's filing, the index entry and the kernel's gates use it
    environment, operator, run_id = params_mod.runner_values(environment, operator, run_id)

    ctx = RunContext(project_path=project, database_url=database_url, environment=environment)
    given_url = ctx.given_url  # starts the embedded server if need be
    if not given_url.strip():
        ctx.url  # noqa: B018 - raises the one-line error for an empty URL, before any kernel
    run_id = run_id or new_run_id()
    started = records.utc_now()
    record = records.record_path(reports_dir, environment, name, run_id, started)
    old_umask = os.umask(0o077)  # records, previews and backups: owner-only
    reserve = Path(reports_dir) / f".reserve-{run_id}"
    try:
        records.prepare_dir(record)
        _reserve(reserve)
        sample = record.with_name(f".{record.stem}.activity")
        journal = record.with_name(f".{record.stem}.journal")
        # the kernel starts first, with the URL as given (it parses it the same way): its boot
        # (ipykernel, then swrun, pandas and SQLAlchemy, ~1.8 s) overlaps all of the runner's own work
        env = {**os.environ, URL_ENV: given_url, "SWRUN_RUN_ID": run_id, activity.BASELINE_ENV: str(sample.resolve()),
               "PYTHONUNBUFFERED": "1"}
        env.pop("SWRUN_PLAIN_OUTPUT", None)
        # the kernel reports its progress on a socketpair, the runner draws it (swrun/progress.py)
        display = progress_mod.Display(sys.stderr, mode=progress_mod.mode_of(progress), scrub=records.scrub_known)
        channel = progress_mod.Channel(display)
        env.update(channel.env)
        kernel = _Kernel(env, os.getcwd(), pass_fds=channel.fds)
        t_kernel = time.perf_counter()
        try:
            timings["kernel_start"] = kernel.start(preload=PRELOAD)
            channel.start()
            ctx.url  # noqa: B018 - parses: UsageError on a bad URL, and no record, as nothing ran
            nb = load_notebook(path)
            for cell in nb.cells:  # the committed expected outputs (nbval) must never pass for this run's
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            supplied = {"environment": environment, "project": project or "", "backup_dir": str(backup_dir),
                        "operator": operator or default_operator(), "run_id": run_id, "database": ctx.redacted_url,
                        "runbook": name, "reports_dir": _detached_reads.get() or str(reports_dir)}
            parameters = {k: v for k, v in supplied.items() if k in declared}
            parameters.update(given)
            steps = parameters.get("steps", declared["steps"].default if "steps" in declared else None)
            out = _Progress(bool(progress), journal, selected={x.strip() for x in steps.split(",")} if isinstance(steps, str) else None,
                            display=display, channel=channel)
            # the record exists before any cell runs: a run killed before it ends is found, marked incomplete
            try:
                _write_placeholder(nb, record, name, run_id, environment, ctx, parameters, started)
            except OSError as exc:
                raise UsageError(f"the record {record} cannot be written: {exc.strerror or exc}; nothing ran") from None
        except BaseException as exc:
            kernel.stop()
            channel.close()
            if isinstance(exc, Terminated):  # no cell ran: no placeholder may stay behind, unindexed
                record.unlink(missing_ok=True)
            raise
        if progress and progress != "quiet":
            print(f"swrun: {name} run {run_id} on {ctx.redacted_url} ({environment}); record: {record}", file=sys.stderr, flush=True)
        executing, error, interrupted = None, None, None
        try:
            try:
                _take_activity_baseline(ctx, sample)  # while the kernel boots: the preflight's sample then needs no wait
                executing = _parameterize(nb, parameters, path, record)  # papermill imported while the kernel boots
                _execute(executing, path, kernel, kernel_timeout, cell_timeout, out)
            except KeyboardInterrupt as exc:
                interrupted = getattr(exc, "signum", signal.SIGINT)
            except Exception as exc:
                error = _execution_error(exc, out.current_step, cell_timeout)
                died = kernel.died()
                if died and out.first_cell_at is None:  # nothing ran: ipykernel missing or broken, ...
                    error = f"the python3 kernel did not start ({died})"
                elif died:
                    error = f"{error} ({died})"
        except KeyboardInterrupt as exc:  # a signal while the error was being read
            interrupted = getattr(exc, "signum", signal.SIGINT)
        finally:
            signals.hold()  # from here on a signal is remembered, not raised: cleanup and record first
            kernel.stop()  # its process group: pg_dump and pg_restore go with it
            channel.close()  # the live lines end here
        _remove_partial_backups(Path(str(parameters.get("backup_dir", backup_dir))), run_id, progress)
        if out.current_step == "rehearse":  # stopped mid-rehearsal: its own cleanup never ran
            _drop_scratch(ctx, run_id, parameters.get("rehearse_on") or getattr(declared.get("rehearse_on"), "default", None),
                          progress)
        if out.first_cell_at is not None:
            timings["kernel_ready"] = out.first_cell_at - t_kernel
        timings["total"] = time.perf_counter() - t_total
        # the notebook as far as it ran: papermill fills its cells in place, also when one fails
        if out.current_step:  # the step the run died in: its timeline up to here
            display.step_end(out.current_step, None)
        outcome = _finish(executing if executing is not None else nb, record, name, run_id, environment, ctx, parameters,
                          started, timings, error, interrupted, known=out.results, in_flight=out.current_step,
                          reserve=reserve, timelines=out.timelines(), quiet_warnings=not progress)
        outcome.signal = interrupted if interrupted and interrupted != signal.SIGINT else signals.received
        for leftover in (journal, sample):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    finally:
        os.umask(old_umask)
        with contextlib.suppress(OSError):
            reserve.unlink(missing_ok=True)
    shown = "NOT WRITTEN" if outcome.record_missing else str(record)
    if progress:
        verdict = outcome.outcome.upper() + (f" at {outcome.failed_step}" if outcome.failed_step else "")
        ready = f" (kernel ready in {timings['kernel_ready']:.2f}s)" if "kernel_ready" in timings else ""
        print(f"swrun: {verdict} in {timings['total']:.2f}s{ready}; record: {shown}", file=sys.stderr, flush=True)
        if outcome.redactions:
            print(f"swrun: warning: {outcome.redactions} occurrence(s) of the database password were found and redacted", file=sys.stderr)
        if outcome.message and (outcome.outcome != "succeeded" or outcome.record_missing):
            print(f"swrun: error: {outcome.message}", file=sys.stderr, flush=True)
        elif outcome.signal:  # arrived as the run was ending: the run was not cut short, but say why the exit code
            print(f"swrun: error: {signal_name(outcome.signal)} arrived as the run was ending; it had {outcome.outcome} "
                  f"and its record was kept", file=sys.stderr, flush=True)
    return outcome


def _reserve(path: Path) -> None:
    """Room kept in the reports directory for the index entry of a record that does not fit
    (released only then). No room for it: the run does not start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise UsageError(f"reports directory {path.parent} has no room for a record: {exc.strerror or exc}",
                         hint="free some space there, or give --reports-dir on another disk") from None


def _remove_partial_backups(directory: Path, run_id: str, progress: bool) -> None:
    """The unfinished dumps of this run (its pg_dump was killed with the kernel)."""
    for leftover in glob.glob(os.path.join(glob.escape(str(directory)), f"*_{glob.escape(run_id)}.dump*.partial")):
        with contextlib.suppress(OSError):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover)
            else:
                os.unlink(leftover)
            if progress:
                print(f"swrun: removed the unfinished backup {leftover}", file=sys.stderr, flush=True)


def _take_activity_baseline(ctx, path: Path) -> None:
    """The database's transaction counters now, for the preflight to compute a rate from.
    Best effort: a database that does not answer is the preflight's to report."""
    from . import activity

    try:
        records.write_atomic(path, json.dumps(activity.baseline(ctx.engine)))
    except Exception:
        path.unlink(missing_ok=True)


def _parameterize(nb, parameters: dict, path: Path, record: Path):
    """papermill's parameter cell and metadata, as ``papermill.execute_notebook`` prepares them."""
    _fast_imports()
    from papermill.execute import prepare_notebook_metadata, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(nb), parameters, kernel_name="python3", language="python")
    return remove_error_markers(prepare_notebook_metadata(nb, str(path), str(record)))


def _execute(nb, path: Path, kernel: "_Kernel", kernel_timeout: float, cell_timeout: float, out: "_Progress") -> None:
    """Run the cells on the started kernel, filling ``nb`` in place.

    ``papermill.execute_notebook`` less its writes: it serialises the whole notebook at the
    end (with ``output_path=None`` too, only to discard it), about 0.5 s for the record of a
    500-revision deploy. swrun writes the record once, in ``_finish``; until then the
    placeholder and the step journal stand in for a run that dies.
    """
    from papermill.engines import papermill_engines
    from papermill.execute import raise_for_execution_errors

    logging.getLogger("papermill").setLevel(logging.CRITICAL)  # swrun reports failures itself, in one line
    papermill_engines.execute_notebook_with_engine(
        None, nb, kernel_name="python3", input_path=str(path), output_path=None, progress_bar=False, log_output=False,
        start_timeout=kernel_timeout, execution_timeout=cell_timeout, km=kernel.manager(),
        on_cell_start=out.on_cell_start, on_cell_executed=out.on_cell_executed)
    raise_for_execution_errors(nb, None)  # marks the failing cell, raises PapermillExecutionError


def _drop_scratch(ctx, run_id: str, on: str | None, progress: bool) -> None:
    from .steps import rehearse

    try:
        dropped = rehearse.drop_leftover(ctx, run_id, on or "embedded")
    except Exception as exc:  # the record comes first; say what is left behind
        print(f"swrun: warning: the rehearsal's scratch database {rehearse.scratch_name(run_id)} may be left: "
              f"{ctx.scrub(' '.join(str(exc).split()))[:200]}", file=sys.stderr, flush=True)
        return
    if dropped and progress:
        print(f"swrun: removed the rehearsal's scratch database {rehearse.scratch_name(run_id)}", file=sys.stderr, flush=True)


def _execution_error(exc: Exception, step: str | None, cell_timeout: float) -> str:
    """One line for what stopped the notebook."""
    kind = type(exc).__name__
    where = f"step {step}" if step else "a cell"
    if kind == "PapermillExecutionError":
        return f"{exc.ename}: {exc.evalue}"
    if kind == "CellTimeoutError":
        return f"{where} timed out after {cell_timeout:g}s (the cell time limit, --cell-timeout); the kernel was stopped"
    if kind == "DeadKernelError":
        return f"the kernel died during {where}"
    return f"{kind}: {' '.join(str(exc).split())[:300]}"


def _write_placeholder(nb, record: Path, runbook: str, run_id: str, environment: str, ctx, parameters: dict, started) -> None:
    import nbformat

    placeholder = nbformat.from_dict(nb)
    meta = {"run_id": run_id, "runbook": runbook, "environment": environment, "operator": parameters.get("operator", ""),
            "host": socket.gethostname(), "started": started.isoformat(), "finished": None, "outcome": "incomplete",
            "failed_step": None, "message": "the run has not finished: it is still running, or was killed",
            "database": ctx.redacted_url, "identity": ctx.identity.as_dict(), "parameters": parameters, "steps": []}
    placeholder.metadata[NAMESPACE] = meta
    placeholder.cells.insert(0, nbformat.v4.new_markdown_cell(_banner(meta), metadata={"tags": ["swrun-banner"]}))
    records.write_atomic(record, records.redact(nbformat.writes(placeholder), records.secret_forms(ctx.url))[0])


def _finish(nb, record: Path, runbook: str, run_id: str, environment: str, ctx, parameters: dict, started,
            timings: dict, error: str | None, interrupted: int | None, known: dict | None = None,
            in_flight: str | None = None, reserve: Path | None = None, timelines: dict | None = None,
            quiet_warnings: bool = False) -> RunOutcome:
    """Stamp the outcome into the notebook, scan it for the secret, write it atomically, index it.

    ``interrupted`` is the signal that ended the run. A record that cannot be written (full
    disk, read-only, no permission) is indexed all the same, marked missing."""
    import nbformat

    results = {**(known or {}), **step_results(nb.cells)}
    for step, timeline in (timelines or {}).items():  # all the record keeps of the progress: start, end, phases
        if step in results:
            results[step]["timeline"] = timeline
    failed = next((r for r in results.values() if r["outcome"] in ("failed", "blocked")), None)
    if interrupted:
        outcome, message = "interrupted", f"interrupted ({signal_name(interrupted)}); the kernel was stopped"
    elif error:
        outcome, message = "failed", ctx.scrub(error)
    elif failed:
        outcome, message = "failed", failed.get("error") or failed["summary"]
    elif (unproven := gates_unproven(environment, results)) is not None:
        outcome, message = "failed", unproven
    elif not results and runbook in ("deploy", "upgrade", "backup", "rehearse"):  # deploy.ipynb, under any of its names
        outcome, message = "failed", "no step reported a result"
    else:
        outcome, message = "succeeded", ""
    failed_step = failed["step"] if failed else ((in_flight or _failing_cell_step(nb)) if outcome != "succeeded" else None)
    finished = records.utc_now()
    for step, res in results.items():
        timings[f"step:{step}"] = res.get("seconds", 0.0)
    status = results.get("status", {}).get("data", {})
    upgrade = results.get("upgrade", {}).get("data", {})
    if not upgrade:  # other runbooks' steps that move the revision (rollback, stamp, start-fresh) say before/after too
        moved = next((results[s]["data"] for s in ("rollback", "stamp", "start-fresh") if results.get(s, {}).get("data")), {})
        upgrade = {k: moved[k] for k in ("before", "after") if k in moved}
        checked = (results.get("stamp-check") or results.get("rollback-plan") or {}).get("data") or {}
        if not upgrade and isinstance(checked.get("current"), list):  # stopped before it moved: it stayed where it was
            upgrade = {"before": checked["current"], "after": checked["current"]}
    backup = results.get("backup", {}).get("data", {})
    nb.metadata[NAMESPACE] = {
        "run_id": run_id,
        "runbook": runbook,
        "environment": environment,
        "operator": parameters.get("operator", ""),
        "host": socket.gethostname(),
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "outcome": outcome,
        "failed_step": failed_step,
        "message": message,
        "database": ctx.redacted_url,
        "identity": ctx.identity.as_dict(),
        "revision_before": status.get("current") or upgrade.get("before"),
        "revision_after": upgrade.get("after") or status.get("current"),
        "fingerprint": status.get("fingerprint"),
        "backup": {"file": backup.get("file"), "sha256": backup.get("sha256")} if backup else None,
        "parameters": parameters,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "steps": list(results.values()),
    }
    nb.cells = [c for c in nb.cells if "swrun-banner" not in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(_banner(nb.metadata[NAMESPACE]), metadata={"tags": ["swrun-banner"]}))
    text, redactions = records.redact(records.notebook_text(nb), records.secret_forms(ctx.url))
    if redactions:
        nb = nbformat.reads(text, as_version=4)
        nb.metadata[NAMESPACE]["redactions"] = redactions
        text = records.notebook_text(nb)
    missing = None
    try:
        records.write_atomic(record, text)
    except OSError as exc:
        missing = f"{exc.strerror or type(exc).__name__}"
        if reserve is not None:  # the index entry's room
            with contextlib.suppress(OSError):
                reserve.unlink(missing_ok=True)
    from . import store  # the index entry, then its copy in the run's database (a detached run hands them back)

    warnings = (_detached_keeper.get() or store.keep)(record, nb.metadata[NAMESPACE], text, ctx, missing=missing)
    if missing:
        meta = nb.metadata[NAMESPACE]
        after = meta.get("revision_after")
        where = ("unknown (no step read it)" if after is None else (", ".join(after) or "<base>"))
        indexed = not any("not added to" in w for w in warnings)
        message = (f"the run {outcome}{f' ({message})' if message else ''} but its record could not be written "
                   f"({missing}: {record}); the database is at revision {where}; "
                   + (f"run {run_id} is indexed with its record marked missing" if indexed
                      else "the index could not be written either"))
        warnings = [w for w in warnings if "not added to" not in w] if not indexed else warnings
    for warning in warnings if not quiet_warnings else ():  # --json: they are in the result instead
        print(f"swrun: warning: {warning}", file=sys.stderr, flush=True)
    return RunOutcome(run_id, record, outcome, failed_step, message, timings, redactions, record_missing=missing,
                      warnings=list(warnings))


def _failing_cell_step(nb) -> str | None:
    for cell in nb.cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            for tag in cell.get("metadata", {}).get("tags", []):
                if tag.startswith("step:"):
                    return tag[5:]
            return "cell"
    return None


def _banner(meta: dict) -> str:
    from .display import mark_img, mark_md, mark_word

    lines = [f"# {mark_img(meta['outcome'])} {meta['runbook']} run `{meta['run_id']}`: {mark_word(meta['outcome'])}"
             + (f" at step **{meta['failed_step']}**" if meta.get("failed_step") else "")]
    if meta.get("message"):
        lines.append(f"\n> {meta['message']}")
    lines.append("\n| | |\n|---|---|")
    for key in ("environment", "operator", "database", "started", "finished"):
        lines.append(f"| {key} | {meta.get(key) or ''} |")
    lines.append(f"| revision | {_revision_text(meta)} |")
    if meta.get("steps"):
        lines.append("\n| step | outcome | seconds | summary |\n|---|---|---|---|")
        for s in meta["steps"]:
            lines.append(f"| {s['step']} | {mark_md(s['outcome'])} | {s.get('seconds', 0):.2f} | "
                         f"{str(s.get('summary', '')).replace('|', '/').replace('<', '&lt;')} |")
    return "\n".join(lines)


def _revision_text(meta: dict) -> str:
    """The banner's revision row: before -> after, ``at X`` when nothing moved, ``not read`` when no step read it."""
    before, after = meta.get("revision_before"), meta.get("revision_after")

    def revs(value) -> str:
        return ", ".join(value) or "&lt;base&gt;"

    if before is None and after is None:
        return "not read by this run's steps"
    if before is None or after is None or list(before) == list(after):
        return f"at {revs(after if after is not None else before)} (unchanged)"
    return f"{revs(before)} → {revs(after)}"
