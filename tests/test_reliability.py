"""Crashes and crowds: killed runs and concurrent deploys against one database, for real."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from conftest import HEAD, current_revision, run_cli, scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))

import killed_runs  # noqa: E402


def test_four_deploys_at_once_apply_each_revision_once(db_url, workdir):
    argv = [sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--env", "staging", "--json",
            "--reports-dir", str(workdir / "reports")]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert all(c in (0, 9) for c in codes), [o[1][-500:] for o in outs]
    assert 0 in codes
    for (stdout, stderr), code in zip(outs, codes):
        assert "Traceback" not in stderr
        if code:
            assert "another swrun run" in stderr or "nothing to apply" in stderr, stderr[-500:]
    results = [json.loads(o[0]) for o in outs]
    applied = []
    for r in results:
        meta = nbformat.read(r["record"], as_version=4).metadata["swrun"]
        step = next((s for s in meta["steps"] if s["step"] == "upgrade"), None)
        if step and step["outcome"] == "ok":
            applied += [a["revision"] for a in step["data"]["applied"]]
    # every revision of the chain applied by exactly one of the four
    assert sorted(applied) == sorted(set(applied)) and HEAD in applied and len(applied) == 7
    assert current_revision(db_url) == HEAD
    assert len(list((workdir / "reports").rglob("*.ipynb"))) == 4
    verify = run_cli("reports", "verify", "--reports-dir", workdir / "reports", "--database-url", db_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("victim", ["swrun", "kernel"])
def test_killed_run_leaves_a_clean_database_and_a_record(victim, db_url, workdir, pg, tmp_path):
    import killed_runs
    from swrun.migrations import Project

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import generate

    ini = generate.make_project(tmp_path / "chain", 6, sleep=0.4)
    project = Project.load(ini)
    refs = killed_runs.references(pg, project)
    rng = random.Random(7 if victim == "swrun" else 8)
    rng.choice = lambda seq: victim  # this test picks the victim; the soak script draws it
    problems = killed_runs.trial(1, pg, project, ini, refs, workdir, rng)
    assert problems == [], problems


SECRET = "Zq9-very-secret-pw%40x"  # URL-encoded '@' on purpose: the decoded form must not leak either


def test_the_password_appears_nowhere(pg, db_url, workdir):
    from urllib.parse import unquote

    plain = unquote(SECRET)
    dbname = db_url.split("?", 1)[0].rsplit("/", 1)[-1]
    scalar(db_url, f"create role leakcheck login superuser password '{plain}'; select 1")
    try:
        url = pg.status().tcp_url(database=dbname, user="leakcheck", password=SECRET)
        missing = pg.status().tcp_url(database="no_such_db", user="leakcheck", password=SECRET)
        outputs = []
        for argv in (("deploy", "--database-url", url, "--env", "staging"),
                     ("backup", "--database-url", url, "--env", "staging", "--mode", "directory-fast"),
                     ("status", "--database-url", missing),            # a failed connection's error text
                     ("deploy", "--database-url", missing, "--env", "staging"),
                     ("reports", "verify", "--database-url", url),
                     ("reports", "site"),
                     ("reports", "list", "--json")):
            proc = run_cli(*argv)
            outputs += [proc.stdout, proc.stderr]
        run_id = json.loads(outputs[-2])[0]["run_id"]
        proc = run_cli("reports", "export", run_id, "--html")
        outputs += [proc.stdout, proc.stderr]
        assert run_cli("reports", "verify", "--database-url", url).returncode == 0
        for text in outputs:
            assert plain not in text and SECRET not in text
        files = [p for p in workdir.rglob("*") if p.is_file()]
        assert any(p.suffix == ".html" for p in files) and any(p.name == "index.jsonl" for p in files)
        for path in files:
            data = path.read_bytes()
            assert plain.encode() not in data and SECRET.encode() not in data, path
        # records, index, HTML and backups are readable by their owner only
        for path in files:
            if path.suffix in (".ipynb", ".jsonl", ".html", ".dump") or path.parent.suffix == ".dumpdir":
                assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"
        # and the copy of each run in the database holds no password either
        rows = scalar(db_url, "select string_agg(entry::text, '') from swrun.run_records")
        assert rows and plain not in rows
    finally:
        scalar(db_url, "drop owned by leakcheck; drop role leakcheck; select 1")


# -- signals, full disks ---------------------------------------------------------------------

def _index(reports: Path) -> list[dict]:
    path = reports / "index.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _record_meta(reports: Path) -> dict:
    (record,) = list(reports.rglob("*.ipynb"))
    return nbformat.read(str(record), as_version=4).metadata["swrun"]


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


def _hooked(hook: str, *args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """swrun's CLI with ``hook`` run first: a signal or a full disk at one exact moment of a real run."""
    script = f"import os, signal, sys\nfrom swrun import cli, records, runner\n{hook}\nsys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def _wait_for(predicate, proc, what: str, limit: float = 120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        assert proc.poll() is None, f"swrun ended before {what}: {proc.communicate()[1][-1500:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {limit}s")




def test_sigterm_during_backup_kills_pg_dump_and_removes_its_partial_file(db_url, workdir):
    reports, backups = workdir / "reports", workdir / "backups"
    # a session holding a table lock: pg_dump waits on it, in the middle of the backup
    from swrun import database

    eng = database.make_engine(database.normalize_url(db_url))
    conn = eng.connect()
    try:
        conn.exec_driver_sql("create table held (id int)")
        conn.commit()
        conn.exec_driver_sql("lock table held in access exclusive mode")
        dbname = database.normalize_url(db_url).database
        proc = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--env", "staging",
                                 "--reports-dir", reports, "--backup-dir", backups], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=workdir)
        _wait_for(lambda: list(backups.glob("*.dump.partial")) and killed_runs.pg_tools_of(dbname), proc, "pg_dump at work")
        kernel = killed_runs.kernel_of(psutil.Process(proc.pid))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        conn.rollback()
        conn.close()
        eng.dispose()
    assert proc.returncode == 143, stderr[-1500:]
    assert "interrupted (SIGTERM)" in _one_error_line(stderr)
    time.sleep(0.3)
    assert killed_runs.pg_tools_of(dbname) == []  # pg_dump went with the kernel's process group
    assert kernel is not None and not psutil.pid_exists(kernel.pid)
    assert not [p.name for p in backups.iterdir() if ".dump" in p.name]  # no dump, no partial file
    meta = _record_meta(reports)
    assert meta["outcome"] == "interrupted" and meta["failed_step"] == "backup"
    assert [e["run_id"] for e in _index(reports)] == [meta["run_id"]] and _index(reports)[0]["outcome"] == "interrupted"


def test_sighup_during_rehearsal_drops_the_scratch_database(pg, db_url, workdir):
    from swrun import database

    reports = workdir / "reports"
    admin = database.normalize_url(pg.status().url("postgres"))

    def scratch():
        eng = database.make_engine(admin)
        try:
            with eng.connect() as c:
                return c.exec_driver_sql("select datname from pg_database where datname like 'swrun\\_rehearsal\\_%%'").scalars().all()
        finally:
            eng.dispose()

    already = set(scratch())
    proc = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--env", "staging",
                             "--reports-dir", reports], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)
    mine = _wait_for(lambda: set(scratch()) - already, proc, "a rehearsal scratch database")
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 129, stderr[-1500:]
    assert "interrupted (SIGHUP)" in _one_error_line(stderr)
    assert not (set(scratch()) & mine)
    meta = _record_meta(reports)
    assert meta["outcome"] == "interrupted" and meta["failed_step"] == "rehearse"
    assert [e["outcome"] for e in _index(reports)] == ["interrupted"]
    assert current_revision(db_url) is None  # the upgrade never started


def test_sigterm_before_the_kernel_starts_ends_in_one_line(db_url, workdir):
    hook = ("start = runner._Kernel.start\n"
            "def early(self, *a, **k):\n    os.kill(os.getpid(), signal.SIGTERM)\n    return start(self, *a, **k)\n"
            "runner._Kernel.start = early")
    proc = _hooked(hook, "deploy", "--database-url", db_url, "--env", "staging", cwd=workdir)
    assert proc.returncode == 143
    assert "SIGTERM before the run started: nothing ran" in _one_error_line(proc.stderr)
    assert not list((workdir / "reports").rglob("*.ipynb")) and not _index(workdir / "reports")
    assert not list((workdir / "reports").glob(".reserve-*"))


def test_sigterm_while_the_record_is_written_keeps_the_record(db_url, workdir):
    hook = ("write = records.write_atomic\ncalls = []\n"
            "def late(path, text, *a, **k):\n"
            "    if str(path).endswith('.ipynb'):\n        calls.append(path)\n"
            "        if len(calls) == 2:\n            os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return write(path, text, *a, **k)\n"
            "records.write_atomic = late")
    proc = _hooked(hook, "deploy", "--database-url", db_url, "--env", "staging", "--steps", "preflight,status", cwd=workdir)
    assert proc.returncode == 143, proc.stderr[-1500:]
    assert "SIGTERM arrived as the run was ending; it had succeeded" in _one_error_line(proc.stderr)
    meta = _record_meta(workdir / "reports")
    assert meta["outcome"] == "succeeded" and meta["finished"]
    assert [e["run_id"] for e in _index(workdir / "reports")] == [meta["run_id"]]


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs (CI runs as root); skipped where mounting is not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_reports_disk_after_the_upgrade_still_indexes_the_run(db_url, workdir, small_disk):
    reports = small_disk / "reports"
    hook = ("write = records.write_atomic\ncalls = []\n"
            "def full(path, text, *a, **k):\n"
            "    if str(path).endswith('.ipynb'):\n        calls.append(path)\n"
            "        if len(calls) == 2:  # the final record: fill the disk first, for real\n"
            f"            with open({str(small_disk / 'filler')!r}, 'wb') as fh:\n"
            "                try:\n                    while True:\n                        fh.write(b'x' * 65536); fh.flush()\n"
            "                except OSError:\n                    pass\n"
            "    return write(path, text, *a, **k)\n"
            "records.write_atomic = full")
    proc = _hooked(hook, "deploy", "--database-url", db_url, "--env", "staging", "--reports-dir", reports, cwd=workdir)
    assert proc.returncode == 9, proc.stderr[-1500:]
    line = _one_error_line(proc.stderr)
    assert "could not be written (No space left on device" in line and f"the database is at revision {HEAD}" in line
    assert current_revision(db_url) == HEAD
    (entry,) = _index(reports)
    assert entry["outcome"] == "succeeded" and entry["revision_after"] == [HEAD]
    assert entry["record_missing"] == "No space left on device"
    # under the record's name: the complete placeholder, never a truncated record; no temporary file left
    meta = _record_meta(reports)
    assert meta["outcome"] == "incomplete"
    assert not [p for p in reports.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".reserve-")]
    (small_disk / "filler").unlink()
    verify = run_cli("reports", "verify", "--reports-dir", reports)
    assert verify.returncode == 0 and "its record could not be written" in verify.stdout, verify.stdout
