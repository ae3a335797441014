"""Progress of long work: reported where the work is (the runbook's kernel), drawn by the runner.

Two halves, one module:

* **Reporting** (the library, in the kernel): :func:`task` opens one phase of the step that is
  running (a ``pg_dump``, a restore, an upgrade pass) and updates it from real signals: bytes
  PostgreSQL has copied and bytes on disk (:func:`pg_dump`), items of the table of contents
  (:func:`run_tool` around ``pg_restore``), revisions (:func:`migrating`), lock-retry attempts
  (:func:`attempt`), targets of a fleet's waves (:class:`Fleet`). Each change is one JSON
  datagram on a socket the runner handed to the kernel (``SWRUN_PROGRESS_FD``): no cell output,
  so the record never holds it; outside a run (nbval, a notebook opened by hand, a test calling a
  step) the channel is absent and every call is a no-op, the tools run exactly as before.
* **Rendering** (the runner): :class:`Channel` reads the datagrams on a thread and hands them to
  :class:`Display`: on a TTY one live line per step drawn by tqdm, updated in place; without one
  (CI, ``| tee``) plain lines at most every 10 % or 30 s (nothing for work shorter than a few
  seconds); quiet: the step lines only. What a step keeps in its record is its timeline: start,
  end, and each phase with its duration (:meth:`Display.timeline`).

A signal that stops moving for :data:`STALL_SECONDS` (``SWRUN_STALL_SECONDS``; 60) is said aloud:
"no progress for 60 s: pg_dump is waiting on Lock/relation ..." with what ``pg_stat_activity``
says the tool's session waits on (the session is found by the ``application_name`` set for it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

CHANNEL_ENV = "SWRUN_PROGRESS_FD"  # the kernel's end of the runner's socketpair
STALL_ENV = "SWRUN_STALL_SECONDS"
STALL_SECONDS = 60.0
POLL_SECONDS = 0.5  # how often a watched tool's signals are read
PLAIN_EVERY_S = 30.0  # plain rendering: a line at most every 10 % or this often
PLAIN_AFTER_S = 2.0  # ... and none for a phase that has run less than this: short work stays quiet
MAX_PHASES = 40  # a step's timeline keeps at most this many phases (a record stays small)
NOTE_CHARS = 160


def stall_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get(STALL_ENV) or STALL_SECONDS))
    except ValueError:
        return STALL_SECONDS


# =============================================================================================
# reporting
# =============================================================================================
_lock = threading.Lock()
_socket: socket.socket | None = None
_opened = False
_local: "Display | None" = None  # an in-process display (a fleet run from the CLI), when no channel
_ids = itertools.count(1)


def _channel() -> socket.socket | None:
    global _socket, _opened
    if not _opened:
        _opened = True
        fd = os.environ.pop(CHANNEL_ENV, "")  # this process's alone: a child never takes the number for its own
        if fd.isdigit():
            with contextlib.suppress(OSError, ValueError):
                sock = socket.socket(fileno=int(fd))
                if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_DGRAM:
                    sock.detach()  # not the runner's socketpair: leave that descriptor alone
                    return None
                os.set_inheritable(sock.fileno(), False)  # pg_dump and friends never get it
                sock.setblocking(False)
                _socket = sock
    return _socket


def enabled() -> bool:
    """Anyone listening: a runner's channel, or an in-process display."""
    return _local is not None or _channel() is not None


def emit(event: dict) -> None:
    """Send one event; never blocks and never raises: progress is lossy by design, the work is not."""
    if _local is not None:
        _local.event(event)
        return
    sock = _channel()
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError, TypeError):
        sock.send(json.dumps(event, default=str).encode()[:60000])


def say(text: str) -> None:
    """A line worth printing now (a stall, a lock wait), between the live lines."""
    emit({"k": "say", "text": str(text)[:400]})


class Task:
    """One phase of the running step: ``done`` of ``total`` ``unit`` (bytes, items, revisions...)."""

    def __init__(self, label: str, total: float | None = None, unit: str = "B"):
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.label, self.total, self.unit = label, total, unit
        self.done: float = 0
        self.note = ""
        self.closed = False
        emit({"k": "begin", "id": self.id, "label": label, "total": total, "unit": unit})

    def update(self, done: float | None = None, *, total: float | None = None, note: str | None = None,
               extra: str | None = None) -> None:
        if self.closed:
            return
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        emit({"k": "update", "id": self.id, "done": self.done, "total": self.total,
              "note": (self.note or "")[:NOTE_CHARS], "extra": (extra or "")[:NOTE_CHARS]})

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            emit({"k": "end", "id": self.id, "done": self.done})


@contextlib.contextmanager
def task(label: str, total: float | None = None, unit: str = "B") -> Iterator[Task]:
    t = Task(label, total, unit)
    try:
        yield t
    finally:
        t.close()


def _human(n: float | None, unit: str = "B") -> str:
    if n is None:
        return "?"
    if unit != "B":
        return f"{n:,.0f}"
    for prefix in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or prefix == "TB":
            return f"{n:.0f} {prefix}" if prefix == "B" else f"{n:.1f} {prefix}"
        n /= 1000.0
    return f"{n:.1f} TB"


# -- what PostgreSQL says a tool's session is doing ---------------------------------------------
class _Server:
    """A monitoring connection on the tool's server (AUTOCOMMIT: each read sees the activity
    now). Best effort: a server it cannot reach leaves only the tool's own signals."""

    def __init__(self, url):
        self.engine = self.conn = None
        self.copy_progress = False
        try:
            from .database import make_engine

            if url.drivername != "postgresql+psycopg2":
                url = url.set(drivername="postgresql+psycopg2")
            self.engine = make_engine(url, connect_args={"application_name": "swrun-progress"})
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # a watcher never waits behind the work it watches: a size read on a locked table gives up
            self.conn.exec_driver_sql("set lock_timeout = '200ms'")
            self.conn.exec_driver_sql("set statement_timeout = '3s'")
            self.copy_progress = int(self.conn.exec_driver_sql("show server_version_num").scalar()) >= 140000
        except Exception:
            self.close()

    @property
    def ok(self) -> bool:
        return self.conn is not None

    def rows(self, sql: str, params: tuple = ()) -> list:
        if self.conn is None:
            return []
        try:
            return list(self.conn.exec_driver_sql(sql, params).fetchall())
        except Exception:
            return []

    def sessions(self, appname: str) -> list:
        """(pid, state, wait_event_type, wait_event, table, bytes copied) of the tool's sessions."""
        if self.copy_progress:
            return self.rows("select a.pid, a.state, a.wait_event_type, a.wait_event, p.relid::regclass::text, "
                             "p.bytes_processed, p.relid::bigint from pg_stat_activity a "
                             "left join pg_stat_progress_copy p on p.pid = a.pid where a.application_name = %s "
                             "order by a.pid", (appname,))
        return [(*r, None, None, None) for r in self.rows(
            "select pid, state, wait_event_type, wait_event from pg_stat_activity where application_name = %s "
            "order by pid", (appname,))]

    def waiting_on(self, pid: int) -> str:
        """What a backend waits on, in words: the wait event, the lock and who holds it."""
        rows = self.rows("select state, wait_event_type, wait_event, pg_blocking_pids(pid) from pg_stat_activity "
                         "where pid = %s", (pid,))
        if not rows:
            return f"nothing: its session (pid {pid}) has ended"
        state, etype, event, blockers = rows[0]
        if not etype:
            said = f"nothing PostgreSQL reports: its session (pid {pid}) is {state or 'unknown'} with no wait event"
            building = self.rows("select command, phase, blocks_done, blocks_total from pg_stat_progress_create_index "
                                 "where pid = %s", (pid,))
            if building:  # a long CREATE INDEX of a restore moves no byte nor item, but is working
                command, phase, done, total = building[0]
                said += f", working on {command} ({phase}" + (f", block {done:,} of {total:,}" if total else "") + ")"
            return said
        details = []
        if etype == "Lock":
            lock = self.rows("select l.mode, l.locktype, format('%%I.%%I', n.nspname, c.relname) "
                             "from pg_locks l left join pg_class c on c.oid = l.relation "
                             "left join pg_namespace n on n.oid = c.relnamespace "
                             "where l.pid = %s and not l.granted limit 1", (pid,))
            if lock:
                mode, kind, rel = lock[0]
                details.append(f"{mode} on {rel}" if rel else f"{mode} on a {kind}")
            if blockers:
                held = self.rows("select pid, state, coalesce(nullif(application_name, ''), '-'), "
                                 "extract(epoch from now() - xact_start)::int from pg_stat_activity "
                                 "where pid = any(%s) order by pid", (list(blockers),))
                by = "; ".join(f"pid {p}, {s or 'state unknown'}" + (f" for {x} s" if x is not None else "")
                               + f", application {a}" for p, s, a, x in held)
                details.append(f"held by {by or ', '.join(f'pid {b}' for b in blockers)}")
        return f"{etype}/{event}" + (f" ({'; '.join(details)})" if details else "") + f"; its session is pid {pid}"

    def table_bytes(self, relid: int) -> int:
        rows = self.rows("select pg_table_size(%s::oid)", (int(relid),))
        return int(rows[0][0] or 0) if rows else 0

    def data_bytes(self) -> int | None:
        """The tables' data a dump copies: heap and TOAST of every table and materialized view."""
        rows = self.rows("select coalesce(sum(pg_table_size(c.oid)), 0)::bigint from pg_class c "
                         "join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm') "
                         "and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'")
        return int(rows[0][0]) if rows else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        with contextlib.suppress(Exception):
            if self.engine is not None:
                self.engine.dispose()
        self.conn = self.engine = None


def _size_of(path: Path | None) -> int:
    """Bytes on disk so far: a file, or a directory dump's files."""
    if path is None:
        return 0
    try:
        if path.is_dir():
            return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
        return path.stat().st_size
    except OSError:
        return 0


_VERBOSE = re.compile(r"^(pg_dump|pg_restore): (?!error:|warning:|detail:|hint:)")
_TABLE = re.compile(r'(?:dumping contents of table|processing data for table) "(.+)"')
_ITEM_ID = re.compile(r"^pg_restore: (?:processing|finished) item (\d+) ")


class _ToolWatch:
    """A running pg_dump/pg_restore, watched: its verbose lines, bytes, its session's progress and waits.

    Sampled every :data:`POLL_SECONDS` on its own thread; an update is sent when a signal moved,
    and a stall is said when none moved for :func:`stall_seconds`."""

    def __init__(self, tool: str, url, *, output: Path | None = None, items: set[int] | None = None,
                 label: str | None = None):
        self.tool, self.output = tool, output
        self.appname = f"swrun-{tool}-{os.getpid()}-{next(_ids)}"
        self.url = url
        self.lines = 0
        self.items = 0
        self.toc_ids: set[int] = set(items or ())
        self.done_ids: set[int] = set()
        self.items_total = len(self.toc_ids) or None
        self.table = ""
        self.stop = threading.Event()
        self.server: _Server | None = None
        self.task = Task(label or tool, total=self.items_total, unit="items" if items else "B")
        self.thread = threading.Thread(target=self._run, name=f"swrun-progress-{tool}", daemon=True)

    # the tool's stderr, line by line (from whichever thread reads it)
    def line(self, text: str) -> None:
        if not _VERBOSE.match(text):
            return
        self.lines += 1
        found = _TABLE.search(text)
        if found:
            self.table = found.group(1)
        if self.tool == "pg_restore":
            # each entry of the table of contents, by its id: "processing item N" as pg_restore takes it up
            # (serially), "finished item N" as its parallel loop (-j) ends it; entries outside the list
            # (ENCODING, DATABASE, ...) are not counted
            item = _ITEM_ID.match(text)
            if item and (not self.toc_ids or int(item.group(1)) in self.toc_ids):
                self.done_ids.add(int(item.group(1)))
                self.items = len(self.done_ids)

    def __enter__(self) -> "_ToolWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if self.items_total:  # its last items, when it ended between two samples
            self.task.update(min(self.items, self.items_total))
        self.task.close()

    def _run(self) -> None:
        if self.url is not None:
            self.server = _Server(self.url)
        try:
            self._watch()
        finally:
            if self.server is not None:
                self.server.close()

    def _watch(self) -> None:
        server = self.server if self.server is not None and self.server.ok else None
        total = None  # read once pg_dump copies rows: it holds its locks on every table by then
        sizes: dict[int, int] = {}
        finished: set[int] = set()
        best: dict[int, int] = {}
        last_sign, moved_at, said_at = None, time.monotonic(), None
        while not self.stop.wait(POLL_SECONDS):
            written = _size_of(self.output)
            copied, pid, tables = None, None, []
            if server is not None:
                rows = server.sessions(self.appname)
                pid = rows[0][0] if rows else None
                live = set()
                for _pid, _state, _et, _ev, name, done, relid in rows:
                    if relid is None:
                        continue
                    relid = int(relid)
                    live.add(relid)
                    tables.append(name)
                    if relid not in sizes:
                        sizes[relid] = server.table_bytes(relid)
                    best[relid] = max(best.get(relid, 0), int(done or 0))
                finished |= set(best) - live
                if server.copy_progress and live and total is None and self.tool == "pg_dump":
                    total = server.data_bytes()
                if server.copy_progress:
                    copied = (sum(sizes.get(r, 0) for r in finished)
                              + sum(min(best[r], sizes.get(r, 0) or best[r]) for r in live))
            table = tables[0] if tables else self.table
            sign = (written, copied, self.lines, self.items)
            now = time.monotonic()
            if sign != last_sign:
                last_sign, moved_at, said_at = sign, now, None
                self._update(written, copied, total, table)
            elif now - moved_at >= stall_seconds() and (said_at is None or now - said_at >= stall_seconds()):
                said_at = now
                say(f"no progress for {now - moved_at:.0f} s: {self.tool} is waiting on {self._waiting(server, pid)}")

    def _update(self, written: int, copied: int | None, total: int | None, table: str) -> None:
        where = f"table {table}" if table else ""
        if self.items_total:  # pg_restore: items of the table of contents
            self.task.update(min(self.items, self.items_total), note=where,
                             extra=f"{_human(copied)} loaded" if copied else None)
        elif copied is not None and total:
            self.task.update(min(copied, total * 0.999), total=total, note=where, extra=f"{_human(written)} written")
        else:
            self.task.update(written, total=None, note=where, extra="written")

    def _waiting(self, server: _Server | None, pid: int | None) -> str:
        if server is None:
            return "something swrun cannot see (no monitoring connection to its server)"
        if pid is None:
            return f"nothing on the server: it has no session there (application_name {self.appname})"
        return server.waiting_on(pid)


_active: _ToolWatch | None = None


def tool_stderr(stream) -> bytes | str:
    """Read a watched tool's stderr to its end, line by line as it comes, and return all of it
    (the caller's ``stream.read()``, with the verbose lines seen as they are written)."""
    chunks = []
    for line in iter(stream.readline, b"" if "b" in getattr(stream, "mode", "rb") else ""):
        chunks.append(line)
        watch = _active
        if watch is not None:
            watch.line(line.decode(errors="replace") if isinstance(line, bytes) else line)
    empty = b"" if not chunks or isinstance(chunks[0], bytes) else ""
    return empty.join(chunks)


def quiet_stderr(text):
    """A tool's stderr without the ``--verbose`` lines swrun added: its errors, as before."""
    if isinstance(text, bytes):
        return b"".join(line for line in text.splitlines(keepends=True)
                        if not _VERBOSE.match(line.decode(errors="replace")))
    if not text:
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not _VERBOSE.match(line))


def _verbose(argv: list[str], env: dict | None, appname: str) -> tuple[list[str], dict]:
    return [argv[0], "--verbose", *argv[1:]], {**(env if env is not None else os.environ), "PGAPPNAME": appname}


def pg_dump(run: Callable, *, url, output: Path | None = None) -> Callable:
    """``run(argv, env, ...)`` (the step's one place that starts pg_dump), watched: pg_dump gets
    ``--verbose`` and an ``application_name`` of its own; the return is ``run``'s, with the
    verbose lines taken out of the stderr it hands back (a str or bytes in position 1 or .stderr)."""

    def watched(argv, env, *args, **kwargs):
        global _active
        if not enabled():
            return run(argv, env, *args, **kwargs)
        watch = _ToolWatch("pg_dump", url, output=output, label="pg_dump")
        argv, env = _verbose(list(argv), env, watch.appname)
        _active = watch
        try:
            with watch:
                out = run(argv, env, *args, **kwargs)
        finally:
            _active = None
        return _without_verbose(out)

    return watched


def _without_verbose(out):
    if isinstance(out, subprocess.CompletedProcess):
        out.stderr = quiet_stderr(out.stderr)
        return out
    if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], (str, bytes)):
        return (out[0], quiet_stderr(out[1]), *out[2:])
    return out


def run_tool(cmd: list[str], *, url=None, output: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, **kwargs)`` for pg_restore (or pg_dump),
    watched as it runs: items of the table of contents done (its ``--verbose`` lines), bytes
    loaded, a stall said with what its session waits on."""
    if not enabled():
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    tool = Path(cmd[0]).name
    items = _toc_items(cmd) if tool == "pg_restore" else None
    watch = _ToolWatch(tool, url, output=output, items=items, label=tool)
    cmd, env = _verbose(list(cmd), kwargs.pop("env", None), watch.appname)
    kwargs.pop("capture_output", None)
    kwargs.pop("text", None)
    with watch:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        errors = []
        for line in iter(proc.stderr.readline, ""):
            errors.append(line)
            watch.line(line)
        code = proc.wait()
        reader.join()
    return subprocess.CompletedProcess(cmd, code, out[0] if out else "", quiet_stderr("".join(errors)))


def _toc_items(cmd: list[str]) -> set[int] | None:
    """The ids of the entries pg_restore will process: its ``-L`` list, else the dump's table of contents."""
    try:
        if "-L" in cmd:
            lines = Path(cmd[cmd.index("-L") + 1]).read_text(errors="replace").splitlines()
        else:
            listing = subprocess.run([cmd[0], "--list", cmd[-1]], capture_output=True, text=True, timeout=60)
            lines = listing.stdout.splitlines() if listing.returncode == 0 else []
        return {int(m.group(1)) for line in lines if (m := re.match(r"\s*(\d+);", line))} or None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


# -- migrations -------------------------------------------------------------------------------------
_migration: dict[str, Any] = {}  # the revision running now: for attempt()


def migrating(steps: Iterable, direction: str, describe: Callable[[str], str], context=None) -> Iterator:
    """Alembic's steps of one env.py run, passed through as they are, each reported as it
    starts: "revision i of N", its description; the pass is one phase of the step."""
    steps = list(steps)
    if not enabled() or not steps:
        yield from steps
        return
    offline = bool(getattr(context, "as_sql", False))
    with task("render SQL" if offline else direction, total=len(steps), unit="revisions") as t:
        for i, step in enumerate(steps):
            rev = getattr(getattr(step, "revision", None), "revision", None) or "?"
            try:
                desc = describe(rev) if rev != "?" else ""
            except Exception:
                desc = ""
            _migration.update(task=t, index=i, total=len(steps), revision=rev, note=f"revision {i + 1} of {len(steps)}: {rev} {desc}".strip())
            t.update(i, note=_migration["note"])
            yield step
        t.update(len(steps), note="")
        _migration.clear()


def attempt(event) -> None:
    """A lock retry's news (``lock_retry.AttemptEvent``, duck-typed): waiting on a lock, timed out,
    attempt k; shown on the revision's live line and said once as a plain line."""
    if not enabled():
        return
    state = getattr(event, "state", "")
    rev = getattr(event, "revision", None) or _migration.get("revision") or "?"
    k, retries = getattr(event, "attempt", 1), getattr(event, "retries", 0)
    blockers = getattr(event, "blockers", None) or []
    held = "; ".join(getattr(b, "describe", lambda: str(b))() for b in blockers[:3])
    of = f"attempt {k} of {1 + retries}" if retries else f"attempt {k}"
    if state == "waiting":
        text = f"revision {rev} is waiting on a lock ({of})" + (f", held by {held}" if held else "")
    elif state == "timeout":
        pause = getattr(event, "pause_s", None)
        text = (f"revision {rev}: lock timeout on {of}" + (f", held by {held}" if held else "")
                + (f"; retrying in {pause:.1f} s" if pause is not None else "; no retry left"))
    elif state == "retry":
        text = f"revision {rev}: {of}"
    else:
        text = f"revision {rev}: {state} ({of})"
    t = _migration.get("task")
    if t is not None:
        t.update(note=f"{_migration.get('note', '')} · {of}".strip(" ·"), extra=text if state == "waiting" else None)
    say(text)


# -- a fleet ------------------------------------------------------------------------------------------
class Fleet:
    """Targets per wave: done, running, failed, not started, for a fleet coordinator to call.

    ``waves``: the wave labels in order with their targets (``{"canary": ["a"], "wave 1": [...]}``).
    In a runbook kernel it reports to the runner; elsewhere (the CLI's own process) it draws on
    ``stream`` itself: a live line per wave on a TTY, plain lines otherwise. Thread-safe."""

    def __init__(self, waves: dict[Any, Iterable[str]], *, stream=None, quiet: bool = False):
        self.waves = {str(w): list(ts) for w, ts in waves.items()}
        self.state: dict[str, dict[str, str]] = {w: {t: "not started" for t in ts} for w, ts in self.waves.items()}
        self.tasks: dict[str, Task] = {}
        self.lock = threading.Lock()
        self._own = None
        global _local
        if _channel() is None and _local is None:
            self._own = _local = Display(stream or sys.stderr, mode="quiet" if quiet else None)
            self._own.step_start("fleet", announce=False)

    def _task(self, wave: str) -> Task:
        if wave not in self.tasks:
            self.tasks[wave] = Task(wave, total=len(self.waves.get(wave, ())), unit="targets")
        return self.tasks[wave]

    def _set(self, wave, target: str, state: str) -> None:
        wave = str(wave)
        with self.lock:
            self.state.setdefault(wave, {})[target] = state
            self.waves.setdefault(wave, [])
            if target not in self.waves[wave]:
                self.waves[wave].append(target)
            counts = self.counts(wave)
            t = self._task(wave)
            t.update(counts["done"] + counts["failed"], total=len(self.state[wave]),
                     note=", ".join(f"{counts[k]} {k}" for k in ("done", "running", "failed", "not started")))
            if counts["running"] == 0 and counts["not started"] == 0:
                t.close()

    def started(self, wave, target: str) -> None:
        self._set(wave, target, "running")

    def finished(self, wave, target: str, ok: bool = True) -> None:
        self._set(wave, target, "done" if ok else "failed")

    def line(self, text: str) -> None:
        """A line of the coordinator's own (a target's verdict), printed between the live lines."""
        if self._own is not None:
            self._own.line(text)
        else:
            say(text)

    def counts(self, wave) -> dict[str, int]:
        states = list(self.state.get(str(wave), {}).values())
        return {k: states.count(k) for k in ("done", "running", "failed", "not started")}

    def close(self) -> None:
        global _local
        for t in self.tasks.values():
            t.close()
        if self._own is not None:
            self._own.step_end("fleet", None)
            self._own.close()
            if _local is self._own:
                _local = None
            self._own = None

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# =============================================================================================
# rendering (the runner's side)
# =============================================================================================
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: Any, scrub: Callable[[str], str]) -> str:
    """Printable, one line, no secret: names reaching the terminal come from the database."""
    return _CONTROL.sub("?", scrub(str(text or "")))


class _Phase:
    def __init__(self, label: str, total, unit: str, at: float):
        self.label, self.total, self.unit = label, total, unit
        self.started = self.updated = at
        self.done: float = 0
        self.note = self.extra = ""
        self.bucket, self.printed_at = 0, at
        self.samples: list[tuple[float, float]] = [(at, 0.0)]
        self.bar = None


class Display:
    """Step lines and the kernel's progress on one stream.

    ``mode``: ``live`` (a TTY: tqdm lines updated in place), ``plain`` (lines at most every 10 %
    or 30 s), ``quiet`` (step lines only), ``off`` (nothing, the timeline still kept); None:
    live on a TTY, else plain."""

    def __init__(self, stream=None, mode: str | None = None, scrub: Callable[[str], str] = lambda s: s):
        self.stream = stream or sys.stderr
        if mode is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
            mode = "live" if tty and os.environ.get("TERM") != "dumb" else "plain"
        self.mode, self.scrub = mode, scrub
        self.lock = threading.RLock()
        self.step: str | None = None
        self.step_at = 0.0
        self.step_bar = None
        self.phases: dict[str, _Phase] = {}
        self.timelines: dict[str, dict] = {}
        self._timeline: dict | None = None
        self.shown = self.announce = True

    # -- steps (the runner's cell hooks) -------------------------------------------------------
    def step_start(self, step: str, shown: bool = True, announce: bool = True) -> None:
        """``shown``: the run asked for this step (the others pass silently, timeline kept);
        ``announce``: print its "→ step ..." line."""
        with self.lock:
            self._close_bars()
            self.step, self.step_at, self.phases = step, time.monotonic(), {}
            self._timeline = {"start": _utc(), "phases": []}
            self.shown, self.announce = shown, announce
            if not shown or not announce or self.mode == "off":
                return
            if self.mode == "live":
                self.step_bar = self._bar(f"  → {step} ...")
            else:
                self._print(f"  → {step} ...")

    def step_end(self, step: str, line: str | None) -> None:
        with self.lock:
            self._close_bars()
            now = time.monotonic()
            for phase in self.phases.values():  # a phase the step never closed (it failed in it)
                self._keep_phase(phase, now)
            if self._timeline is not None and self.step == step:
                self._timeline.update(end=_utc(), seconds=round(time.monotonic() - self.step_at, 3))
                if not self._timeline["phases"]:
                    self._timeline.pop("phases")
                self.timelines[step] = self._timeline
            self._timeline, self.step, self.phases = None, None, {}
            if line and getattr(self, "shown", True) and self.mode != "off":
                self._print(line)

    def timeline(self, step: str) -> dict | None:
        return self.timelines.get(step)

    def line(self, text: str) -> None:
        """A line from the runner itself (not progress): printed in every mode but off."""
        with self.lock:
            if self.mode != "off":
                self._print(text)

    # -- the kernel's events ---------------------------------------------------------------------
    def event(self, ev: dict) -> None:
        with self.lock:
            kind = ev.get("k")
            if kind == "say":
                if self.mode in ("live", "plain") and getattr(self, "shown", True):
                    self._print(f"    {self.step + ': ' if self.step else ''}{_clean(ev.get('text'), self.scrub)}")
                return
            pid = str(ev.get("id"))
            now = time.monotonic()
            if kind == "begin":
                phase = self.phases[pid] = _Phase(_clean(ev.get("label"), self.scrub)[:40], ev.get("total"),
                                                  str(ev.get("unit") or "B")[:12], now)
                if self.mode == "live" and getattr(self, "shown", True):
                    self._live(phase)
                return
            phase = self.phases.get(pid)
            if phase is None:
                return
            if kind == "update":
                phase.done = _num(ev.get("done"), phase.done)
                phase.total = _num(ev.get("total"), None)
                phase.note = _clean(ev.get("note"), self.scrub)[:NOTE_CHARS]
                phase.extra = _clean(ev.get("extra"), self.scrub)[:NOTE_CHARS]
                phase.updated = now
                phase.samples = (phase.samples + [(now, phase.done)])[-20:]
                if getattr(self, "shown", True):
                    self._live(phase) if self.mode == "live" else self._plain(phase, now)
            elif kind == "end":
                phase.done = _num(ev.get("done"), phase.done)
                if phase.bar is not None:
                    phase.bar.close()
                    phase.bar = None
                del self.phases[pid]
                self._keep_phase(phase, now)
                if self.mode == "live" and self.shown and self.announce and self.step and not self.phases:
                    self.step_bar = self._bar(f"  → {self.step} ...")

    def _keep_phase(self, phase: _Phase, now: float) -> None:
        if self._timeline is not None and len(self._timeline["phases"]) < MAX_PHASES:
            self._timeline["phases"].append({"phase": phase.label, "at": round(phase.started - self.step_at, 3),
                                             "seconds": round(now - phase.started, 3)})

    def tick(self) -> None:
        """Refresh the live lines (the time on the current item moves on between updates)."""
        with self.lock:
            if self.mode == "live":
                for phase in self.phases.values():
                    if phase.bar is not None:
                        phase.bar.set_postfix_str(self._postfix(phase), refresh=True)

    def close(self) -> None:
        with self.lock:
            self._close_bars()

    # -- drawing -------------------------------------------------------------------------------------
    def _bar(self, desc: str, **kw):
        from tqdm import tqdm

        return tqdm(file=self.stream, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.2,
                    bar_format=kw.pop("bar_format", "{desc}"), **kw)

    def _live(self, phase: _Phase) -> None:
        if phase.bar is None and not phase.total and not phase.done and not phase.note:
            return  # nothing to say yet: the step's own line stays
        if phase.bar is not None and bool(phase.total) != bool(phase.bar.total):  # its total became known
            phase.bar.close()
            phase.bar = None
        if phase.bar is None:
            if self.step_bar is not None:  # the step's line becomes this phase's line
                self.step_bar.close()
                self.step_bar = None
            unit = phase.unit
            fmt = ("{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} {rate_fmt}, {remaining} left{postfix}"
                   if phase.total else "{desc}: {n_fmt} {unit} {rate_fmt}{postfix}")
            if unit != "B" and phase.total:
                fmt = "{desc}: {n_fmt}/{total_fmt} " + unit + " {percentage:3.0f}%, {elapsed}{postfix}"
            named = phase.label if phase.label != self.step else ""  # "→ upgrade: ...", not "→ upgrade upgrade: ..."
            phase.bar = self._bar(f"  → {self.step or ''} {named}".rstrip(), total=phase.total or None,
                                  unit=unit if unit != "B" else "B", unit_scale=unit == "B", bar_format=fmt)
        bar = phase.bar
        if phase.total and bar.total != phase.total:
            bar.total = phase.total
        bar.n = phase.done
        bar.set_postfix_str(self._postfix(phase), refresh=False)
        bar.refresh()

    def _postfix(self, phase: _Phase) -> str:
        parts = [p for p in (phase.extra, phase.note) if p]
        if phase.unit == "revisions" and phase.note:
            parts.append(f"{time.monotonic() - phase.updated:.0f} s on it")
        return " · ".join(parts)  # tqdm puts ", " before it

    def _plain(self, phase: _Phase, now: float) -> None:
        if now - phase.started < PLAIN_AFTER_S:
            return
        frac = (phase.done / phase.total) if phase.total else None
        bucket = int(frac * 10) if frac is not None else 0
        if (frac is not None and bucket > phase.bucket) or now - phase.printed_at >= PLAIN_EVERY_S:
            phase.bucket, phase.printed_at = max(bucket, phase.bucket), now
            self._print(f"    {self.step or ''}: {self._words(phase, now)}")

    def _words(self, phase: _Phase, now: float) -> str:
        unit = phase.unit
        (t0, d0), (t1, d1) = phase.samples[0], phase.samples[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        if phase.total:
            said = f"{phase.label} {100 * phase.done / phase.total:3.0f}%: {_human(phase.done, unit)} of {_human(phase.total, unit)}"
            if unit not in ("B",):
                said += f" {unit}"
        else:
            said = f"{phase.label}: {_human(phase.done, unit)}" + ("" if unit == "B" else f" {unit}")
        if rate > 0 and unit == "B":
            said += f", {_human(rate)}/s"
        if rate > 0 and phase.total and phase.total > phase.done:
            said += f", about {_duration((phase.total - phase.done) / rate)} left"
        said += "".join(f"; {p}" for p in (phase.extra, phase.note) if p)
        return said

    def _print(self, text: str) -> None:
        bars = [p.bar for p in self.phases.values() if p.bar is not None] + ([self.step_bar] if self.step_bar else [])
        if bars:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _close_bars(self) -> None:
        for phase in self.phases.values():
            if phase.bar is not None:
                phase.bar.close()
                phase.bar = None
        if self.step_bar is not None:
            self.step_bar.close()
            self.step_bar = None


def _num(value, default):
    return value if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else default


def _utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Channel:
    """The runner's end of the kernel's progress: a datagram socketpair (no path, no port; the
    kernel's end is passed to it as an inherited descriptor), read on a thread into ``display``."""

    def __init__(self, display: Display):
        self.display = display
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        os.set_inheritable(self.theirs.fileno(), True)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.closed = False

    @property
    def env(self) -> dict[str, str]:
        return {CHANNEL_ENV: str(self.theirs.fileno())}

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.theirs.fileno(),)

    def start(self) -> None:
        """Once the kernel has its end: ours is read from now on."""
        with contextlib.suppress(OSError):
            self.theirs.close()
        self.thread = threading.Thread(target=self._read, name="swrun-progress", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # select, then read under the lock: a datagram taken off the socket is always handled
        # before a step's drain() returns, never after its step has ended
        while not self.closed:
            try:
                ready, _, _ = select.select([self.ours], [], [], 1.0)
            except (OSError, ValueError):
                return
            if ready:
                self.drain()
            else:
                self.display.tick()

    def _handle(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            with contextlib.suppress(Exception):  # a malformed event is dropped, never the run
                self.display.event(event)

    def drain(self) -> None:
        """Everything the kernel sent so far (a cell's last events, before its step ends)."""
        with self.lock:
            while True:
                try:
                    data = self.ours.recv(65536, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                self._handle(data)

    def close(self) -> None:
        self.closed = True
        for sock in (self.ours, self.theirs):
            with contextlib.suppress(OSError):
                sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)
        self.display.close()


def mode_of(progress) -> str | None:
    """The runner's ``progress`` argument as a display mode: True: live on a TTY, else plain;
    ``"quiet"``: the step lines only; False: nothing (``--json``, a fleet worker)."""
    if progress == "quiet":
        return "quiet"
    return None if progress else "off"


def with_attempts(on_attempt: Callable | None) -> Callable | None:
    """``Project.apply``'s ``on_attempt``, also shown by swrun's progress (the caller's own, if any, still told)."""
    if not enabled():
        return on_attempt

    def both(event) -> None:
        attempt(event)
        if on_attempt is not None:
            on_attempt(event)

    return both
