"""What a Dask worker runs: one target's deploy, its finished record handed back.

The worker writes nothing to the reports directory: :func:`swrun.runner.run_detached`
runs the same deploy runbook ``swrun deploy`` runs and returns the record's text and
metadata, which the coordinator writes and indexes. The URL arrives as a value resolved
on the coordinator and goes where ``swrun deploy`` puts it: the kernel's environment.
"""

from __future__ import annotations

import signal
import threading
import time

_ENV_LOCK = threading.Lock()  # Alembic's env.py (alembic.context) is module-global: one at a time per process


def ignore_terminal_interrupt() -> bool:
    """Run on each worker (``client.run``): a Ctrl-C in the terminal reaches the whole process
    group, LocalCluster's workers with it; the coordinator alone decides what stops."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return True
    except ValueError:  # not the main thread: the worker's own handling stays
        return False


def deploy_target(task: dict) -> dict:
    """Deploy one target; never raises (a failure is a result the coordinator records)."""
    from .. import records
    from ..errors import SwrunError
    from ..runner import run_detached

    started = time.time()
    url = task["env"]["url"]
    watch = _InterruptWatch(task.get("fleet"))
    try:
        got = run_detached("deploy", dict(task.get("parameters") or {}), reads=task.get("reads"), project=task.get("project"),
                           database_url=url, environment=task["environment"], backup_dir=task["backup_dir"],
                           operator=task.get("operator"), run_id=task["run_id"], cell_timeout=task.get("cell_timeout", 3600),
                           kernel_timeout=task.get("kernel_timeout", 60))
        result = {"text": got.text, "meta": got.meta, "outcome": got.outcome.outcome, "failed_step": got.outcome.failed_step,
                  "message": got.outcome.message, "timings": got.outcome.timings, "redactions": got.outcome.redactions}
    except SwrunError as exc:  # before the run began (a bad URL, no kernel): no record exists
        result = {"text": None, "meta": None, "outcome": "failed", "failed_step": None, "message": exc.line()}
    except BaseException as exc:  # a bug in swrun, or the fleet's interrupt before the record existed
        result = {"text": None, "meta": None, "outcome": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                  "failed_step": None, "message": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    finally:
        watch.close()
    secrets = _secrets(url)  # the record was scanned by the runner; what goes back over the wire, once more
    text = result.pop("text")
    result = records.scrub_value(result, secrets)
    result["text"] = records.redact(text, secrets)[0] if text is not None else None
    result.update(name=task["name"], run_id=task["run_id"], worker_started=started, worker_finished=time.time(),
                  host=_host())
    return result


class FleetInterrupt(KeyboardInterrupt):
    """The fleet's second Ctrl-C/SIGTERM, raised in the thread running a target: the runner then
    ends that run as it ends an interrupted ``swrun deploy`` (kernel stopped, partial backup and
    scratch database removed, record finished as interrupted)."""

    signum = signal.SIGTERM


class _InterruptWatch:
    """Waits on the fleet's Dask Event and raises :class:`FleetInterrupt` once in the task's thread."""

    def __init__(self, fleet: str | None):
        self.thread_id, self.lock, self.done = threading.get_ident(), threading.Lock(), False
        self.event = None
        if fleet:
            try:
                from distributed import Event, get_client

                # the client now, in the task's thread: the watcher thread has no worker context of its own
                self.event = Event(f"swrun-fleet-interrupt-{fleet}", client=get_client())
            except Exception:  # not on a Dask worker (a direct call): nothing to watch
                self.event = None
        if self.event is not None:
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.done:
            try:
                if not self.event.wait(timeout=1):
                    continue
            except Exception:
                time.sleep(1)
                continue
            with self.lock:
                if not self.done:
                    import ctypes

                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), ctypes.py_object(FleetInterrupt))
                    self.done = True
            return

    def close(self) -> None:
        with self.lock:
            self.done = True


def target_status(task: dict) -> dict:
    """A target's current revision(s) and pending count, read through env.py (read-only)."""
    from ..config import RunContext
    from ..errors import SwrunError

    ctx = RunContext(project_path=task.get("project"), database_url=task["env"]["url"])
    try:
        with _ENV_LOCK:
            project = ctx.project
            current = project.current(ctx.url)
            project.check_current(current)
            pending = project.pending(current, "head")
        return {"name": task["name"], "current": list(current), "pending": len(pending), "error": None}
    except SwrunError as exc:
        return {"name": task["name"], "current": None, "pending": None, "error": ctx.scrub(exc.line())}
    except Exception as exc:
        return {"name": task["name"], "current": None, "pending": None,
                "error": ctx.scrub(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")}
    finally:
        ctx.close()


def _secrets(url: str):
    from .. import database, records

    try:
        return records.secret_forms(database.normalize_url(url))
    except Exception:
        return []


def _host() -> str:
    import socket

    return socket.gethostname()
