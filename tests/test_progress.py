"""Progress of long work: the kernel reports, the runner draws (swrun/progress.py).

One database of a few hundred MB is shared by the module (one wide table from
generate_series); the backup of it runs once under a pseudo-terminal and once with its
output piped, as a terminal and a CI log see it. A pg_dump blocked by another session's
lock is said aloud with the wait PostgreSQL reports.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid

import nbformat
import pytest

from swrun import database, progress
from conftest import run_cli

ROWS = 260_000  # ~210 MB: each row ~800 bytes of md5 text
pytestmark = pytest.mark.xdist_group("progress")  # one worker builds the big database, once


@pytest.fixture(scope="module")
def big_db(pg):
    name = f"t_progress_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    engine = database.make_engine(database.normalize_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("create table wide (id int, a text, b text)")
            conn.exec_driver_sql(
                "insert into wide select g, md5(g::text) || repeat(md5((g * 7)::text), 12), repeat(md5(g::text), 10) "
                f"from generate_series(1, {ROWS}) g")
        with engine.connect() as conn:
            size = conn.exec_driver_sql("select pg_database_size(current_database())").scalar()
        assert size > 150 * 2**20
    finally:
        engine.dispose()
    yield url
    pg.drop_database(name)


def _cli_argv(url, tmp_path, *more):
    return [sys.executable, "-m", "swrun", "deploy", "--steps", "backup", "--database-url", url,
            "--reports-dir", str(tmp_path / "reports"), "--backup-dir", str(tmp_path / "backups"), *more]


def _run_in_pty(argv, env=None, timeout=180) -> tuple[int, str]:
    """Run argv with a pseudo-terminal (160 columns) as its stdin, stdout and stderr; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    full_env = {**os.environ, "TERM": "xterm", **(env or {})}
    full_env.pop("SWRUN_PLAIN_OUTPUT", None)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, out.decode(errors="replace")


_SIZE = re.compile(r"pg_dump:\s+\d+% (\d+(?:\.\d+)?)([kMG]?)/")
_SCALE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


def test_backup_on_a_terminal_updates_one_line_in_place(big_db, tmp_path):
    code, out = _run_in_pty(_cli_argv(big_db, tmp_path))
    assert code == 0, out[-2000:]
    # the live line is redrawn with carriage returns, never new lines: the updates share one line
    line = next((ln for ln in out.split("\n") if len(_SIZE.findall(ln)) >= 3), None)
    assert line is not None, out[-3000:]
    sizes = [float(n) * _SCALE[unit] for n, unit in _SIZE.findall(line)]
    assert line.count("\r") >= len(sizes)
    assert sizes == sorted(sizes) and len(set(sizes)) >= 3, sizes  # a growing byte count
    assert "written" in line and "table" in line  # bytes on disk, and the table pg_dump is on
    assert "✓ backup ok" in out


def test_backup_without_a_terminal_prints_a_few_plain_lines(big_db, tmp_path):
    proc = subprocess.run(_cli_argv(big_db, tmp_path), capture_output=True, text=True, timeout=180,
                          env={k: v for k, v in os.environ.items() if k != "SWRUN_PLAIN_OUTPUT"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("    backup: pg_dump")]
    assert 1 <= len(lines) <= 12, proc.stderr
    assert "\r" not in proc.stderr  # no in-place drawing in a log
    percents = [int(m.group(1)) for ln in lines if (m := re.search(r"pg_dump\s+(\d+)%", ln))]
    assert percents == sorted(percents) and len(percents) == len(lines)
    # the record keeps the step's timeline (start, end, its phases with durations), no progress text
    [record] = (tmp_path / "reports").rglob("*.ipynb")
    nb = nbformat.read(str(record), as_version=4)
    [backup] = [s for s in nb.metadata["swrun"]["steps"] if s["step"] == "backup"]
    timeline = backup["timeline"]
    assert timeline["start"] < timeline["end"] and timeline["seconds"] > 0
    [phase] = [p for p in timeline["phases"] if p["phase"] == "pg_dump"]
    assert phase["seconds"] > 0 and 0 <= phase["at"] <= timeline["seconds"]
    assert "MB written" not in record.read_text()


def test_quiet_keeps_the_step_lines(big_db, tmp_path):
    proc = run_cli("deploy", "--steps", "status", "--quiet", "--database-url", big_db, "--reports-dir",
                   tmp_path / "reports", "--backup-dir", tmp_path / "backups")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "Warning" not in ln and "_validate(" not in ln]
    assert [ln.split(" (")[0] for ln in lines[:2]] == ["  → status ...", "  ✓ status ok"], proc.stderr
    assert lines[2].startswith("swrun: SUCCEEDED") and len(lines) == 3, proc.stderr


def test_json_prints_nothing_but_the_result(big_db, tmp_path):
    proc = run_cli("deploy", "--steps", "status", "--json", "--database-url", big_db, "--reports-dir",
                   tmp_path / "reports", "--backup-dir", tmp_path / "backups")
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["outcome"] == "succeeded"


def test_a_dump_blocked_on_a_lock_says_what_it_waits_on(pg, tmp_path):
    name = f"t_progress_lock_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    engine = database.make_engine(database.normalize_url(url))
    holder = None
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("create table held (x int)")
        holder = engine.connect()
        holder.exec_driver_sql("lock table held in access exclusive mode")  # open until released below
        env = {k: v for k, v in os.environ.items() if k != "SWRUN_PLAIN_OUTPUT"}
        env[progress.STALL_ENV] = "2"
        proc = subprocess.Popen(_cli_argv(url, tmp_path), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        timer = threading.Timer(150, proc.kill)  # never a hung test
        timer.start()
        said = []
        for line in proc.stderr:
            said.append(line)
            if "no progress for" in line and holder is not None:
                holder.rollback()  # the lock goes: pg_dump goes on and finishes
                holder.close()
                holder = None
        code = proc.wait()
        timer.cancel()
        text = "".join(said)
        stall = [ln for ln in said if "no progress for" in ln]
        assert stall, text
        assert re.search(r"no progress for \d+ s: pg_dump is waiting on Lock/relation \(AccessShareLock on public\.held; "
                         r"held by pid \d+, idle in transaction", stall[0]), stall[0]
        assert code == 0, text
    finally:
        if holder is not None:
            holder.close()
        engine.dispose()
        pg.drop_database(name)


# -- the display alone: what it prints for a stream of events (no kernel) --------------------------
def _feed(display: progress.Display, n: int = 200, total: float = 1e9, every: float = 0.05) -> None:
    display.step_start("backup")
    display.event({"k": "begin", "id": "1", "label": "pg_dump", "total": None, "unit": "B"})
    start = time.monotonic()
    for i in range(n + 1):
        display.event({"k": "update", "id": "1", "done": total * i / n, "total": total, "note": "table public.x\x1b[2J",
                       "extra": ""})
        while time.monotonic() < start + every * (i + 1) and i < n:
            time.sleep(0.005)
    display.event({"k": "end", "id": "1", "done": total})
    display.step_end("backup", "  ✓ backup ok")


def test_plain_lines_every_ten_percent_with_no_control_characters(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.0)
    out = io.StringIO()
    _feed(progress.Display(out, mode="plain"), n=100, every=0.01)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("    backup:")]
    assert 9 <= len(lines) <= 10, out.getvalue()
    assert "\x1b" not in out.getvalue()  # a table name's escape codes never reach the terminal
    assert out.getvalue().splitlines()[0] == "  → backup ..." and out.getvalue().splitlines()[-1] == "  ✓ backup ok"


def test_quiet_keeps_the_step_lines_only_and_the_timeline():
    out = io.StringIO()
    display = progress.Display(out, mode="quiet")
    _feed(display, n=20, every=0.0)
    display.event({"k": "say", "text": "no progress for 60 s"})
    assert out.getvalue().splitlines() == ["  → backup ...", "  ✓ backup ok"]
    assert [p["phase"] for p in display.timeline("backup")["phases"]] == ["pg_dump"]


def test_fleet_counts_targets_per_wave(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.0)
    out = io.StringIO()
    with progress.Fleet({"canary": ["a"], "wave 1": ["b", "c", "d", "e"]}, stream=out) as fleet:
        fleet.started("canary", "a")
        fleet.finished("canary", "a")
        for t in "bcde":
            fleet.started("wave 1", t)
        fleet.finished("wave 1", "b")
        fleet.finished("wave 1", "c", ok=False)
        assert fleet.counts("wave 1") == {"done": 1, "running": 2, "failed": 1, "not started": 0}
        fleet.line("  ✓ [wave 1] b SUCCEEDED")
    text = out.getvalue()
    assert "1 done, 2 running, 1 failed, 0 not started" in text, text
    assert "  ✓ [wave 1] b SUCCEEDED" in text
    assert progress._local is None  # the fleet's own display is gone with it


def test_a_migration_waiting_on_a_lock_shows_its_revision_and_attempts(db_url, monkeypatch):
    """In-process (no kernel): the display the runner would feed, fed directly."""
    from swrun.steps import upgrade
    from test_lock_retries import Blocker, at, ctx_for

    at(db_url, "l0000001")
    out = io.StringIO()
    display = progress.Display(out, mode="plain")
    monkeypatch.setattr(progress, "_local", display)
    blocker = Blocker(db_url, "select * from accounts where name = 'customer-data'")

    def on_attempt(event):
        if event.state == "timeout":
            blocker.leave()

    display.step_start("upgrade")
    try:
        result = upgrade.run(ctx_for(db_url, lock_retries=3), target="l0000002", on_attempt=on_attempt)
    finally:
        blocker.leave()
    display.step_end("upgrade", "  ✓ upgrade")
    text = out.getvalue()
    assert result.outcome == "ok", result.summary
    assert re.search(r"upgrade: revision l0000002 is waiting on a lock \(attempt 1 of 4\)", text), text
    assert re.search(rf"upgrade: revision l0000002: lock timeout on attempt 1 of 4, held by pid {blocker.pid} ", text), text
    assert "upgrade: revision l0000002: attempt 2 of 4" in text
    [phase, *_] = display.timeline("upgrade")["phases"]
    assert phase["phase"] == "upgrade" and phase["seconds"] > 0


def test_restore_items_are_counted_by_their_table_of_contents_id():
    """pg_restore -j's verbose lines (as pg_restore 18 prints them): each listed entry counted once, when
    taken up serially or finished in the parallel loop; entries outside the list are not counted."""
    watch = progress._ToolWatch("pg_restore", None, items={6, 220, 221, 2571, 2572, 2423})
    for line in """pg_restore: processing item 2575 ENCODING ENCODING
pg_restore: processing item 2578 DATABASE big3
pg_restore: processing item 6 SCHEMA swrun
pg_restore: creating SCHEMA "swrun"
pg_restore: processing item 220 TABLE wide
pg_restore: processing item 221 TABLE run_records
pg_restore: entering main parallel loop
pg_restore: launching item 2571 TABLE DATA wide
pg_restore: launching item 2572 TABLE DATA run_records
pg_restore: processing data for table "public.wide"
pg_restore: finished item 2572 TABLE DATA run_records""".splitlines():
        watch.line(line + "\n")
    assert (watch.items, watch.items_total, watch.table) == (4, 6, "public.wide")
    for line in ("pg_restore: launching item 2423 CONSTRAINT run_records run_records_pkey",
                 "pg_restore: finished item 2423 CONSTRAINT run_records run_records_pkey",
                 "pg_restore: finished item 2571 TABLE DATA wide", "pg_restore: error: could not execute query"):
        watch.line(line + "\n")
    assert watch.items == 6
    assert progress.quiet_stderr("pg_restore: finished item 1 X\npg_restore: error: boom\n") == "pg_restore: error: boom\n"
