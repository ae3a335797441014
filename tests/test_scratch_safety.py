"""Every command that builds or migrates a scratch database, on a project whose env.py ignores
swrun's URL: the database env.py really connects to (the "live" one, named by APP_DATABASE_URL) is
left exactly as it was, and the command fails in one line with its documented exit code.

The fixture project tests/projects/h4_ignores_url is the demo with an env.py that reads
APP_DATABASE_URL and never sqlalchemy.url. Two ways it could hit the live database:

* swrun targets the live database itself and builds a scratch database (doctor, stamp) or a
  rehearsal copy (deploy, rehearse): env.py would migrate the live one instead of the scratch one;
* swrun targets another database: every command that runs env.py would reach the live one.

Then, with ``[swrun] url_env = APP_DATABASE_URL``, doctor and stamp work.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from swrun import database, schema
from swrun.guards import ledger
from swrun.migrations import Project

PROJECT = REPO / "tests" / "projects" / "h4_ignores_url"
BEHIND = "e1f2a3b4c5d6"  # one revision below head: every command has something it could do
HEAD = "f7a8b9c0d1e2"


def _database(pg):
    """A new database on the test server: (name, url)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    return name, pg.create_database(name)


def _migrate(url: str, target: str) -> None:
    """Bring a database to ``target`` with the env.py routed there, the ledger kept as a deploy keeps it."""
    project = Project.load(PROJECT / "alembic.ini")
    engine = database.make_engine(database.normalize_url(url))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APP_DATABASE_URL", url)
        try:
            applied = project.apply(database.normalize_url(url), target)
            ledger.record(engine, project, applied=[a.revision for a in applied], current=(target,), run_id="fixture")
        finally:
            engine.dispose()


def state(url: str) -> dict:
    """What must not change: alembic_version, the ledger, every table's row count, the schema."""
    engine = database.make_engine(database.normalize_url(url))
    try:
        with engine.connect() as conn:
            return {
                "alembic_version": sorted(r[0] for r in conn.exec_driver_sql("select version_num from alembic_version")),
                "ledger": [tuple(map(str, r)) for r in conn.exec_driver_sql("select * from swrun.migration_ledger order by 1")],
                "row_counts": schema.row_counts(conn),
                "schema": schema.snapshot(conn),
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def live(pg):
    """The database env.py connects to, one revision behind head, with the demo's rows and a ledger."""
    name, url = _database(pg)
    _migrate(url, BEHIND)
    before = state(url)
    assert before["row_counts"] and before["alembic_version"] == [BEHIND] and before["ledger"]
    yield url, before
    pg.drop_database(name)


@pytest.fixture(scope="module")
def other(pg):
    """A database swrun is told to work on, which env.py never connects to."""
    name, url = _database(pg)
    yield url
    pg.drop_database(name)


def one_line_failure(proc, code: int) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return errors[0]


def swrun(verb: str, target: str, live_url: str, *extra, cwd: Path, project: Path = PROJECT):
    return run_cli(verb, "--database-url", target, "--project", project / "alembic.ini", *extra, cwd=cwd,
                   env={"APP_DATABASE_URL": live_url})


# (verb, arguments, exit code): doctor is a plain read (StateError, 5); the others are runbooks whose
# failed step ends the run with StepFailed (9), the record written
SCRATCH_BUILDERS = [
    ("doctor", (), 5),
    ("stamp", (BEHIND,), 9),
    ("rehearse", (), 9),
    ("deploy", (), 9),
]
EVERY_COMMAND = SCRATCH_BUILDERS + [
    ("start-fresh", (), 9),
    ("rollback", (), 9),
    ("enum-change", ("--enum", "user_role", "--table", "users", "--column", "role", "--map", "CITIZEN", "--map", "DRIVER",
                     "--map", "ADMIN", "--map", "SUPER_ADMIN"), 9),
]


@pytest.mark.parametrize("verb,args,code", SCRATCH_BUILDERS, ids=[c[0] for c in SCRATCH_BUILDERS])
def test_scratch_build_on_the_live_database_is_refused(live, tmp_path, verb, args, code):
    """swrun targets the live database; env.py would build the scratch database (or rehearsal copy) on it."""
    url, before = live
    proc = swrun(verb, url, url, *args, cwd=tmp_path)
    line = one_line_failure(proc, code)
    assert "env.py connected to" in line and "nothing was run there" in line, line
    assert "url_env = APP_DATABASE_URL" in line, line  # how to route it
    said = proc.stdout + proc.stderr
    assert "no problems found" not in said and "not stamped" not in said and "matches" not in said
    assert state(url) == before


@pytest.mark.parametrize("verb,args,code", EVERY_COMMAND, ids=[c[0] for c in EVERY_COMMAND])
def test_every_command_on_another_database_is_refused(live, other, tmp_path, verb, args, code):
    """swrun targets another database; env.py connects to the live one."""
    url, before = live
    proc = swrun(verb, other, url, *args, cwd=tmp_path)
    line = one_line_failure(proc, code)
    assert "env.py connected to" in line and "nothing was run there" in line, line
    assert state(url) == before


@pytest.fixture
def routed(pg, tmp_path):
    """The same project with [swrun] url_env = APP_DATABASE_URL, and a live database at BEHIND."""
    project = tmp_path / "routed"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    ini = project / "alembic.ini"
    text = ini.read_text().replace("%(here)s/../../../swrun", str(REPO / "swrun"))
    ini.write_text(text.replace("[swrun]\n", "[swrun]\nurl_env = APP_DATABASE_URL\n", 1))
    name, url = _database(pg)
    _migrate(url, BEHIND)
    yield project, url
    pg.drop_database(name)


def test_with_url_env_doctor_and_stamp_work(routed, tmp_path):
    project, url = routed
    before = state(url)
    # env.py's own variable points at the live database too: swrun sets it to each database it migrates
    proc = swrun("doctor", url, url, cwd=tmp_path, project=project)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one finding: the pending revision
    assert f"alembic_version out of sync with the schema: no: the live schema matches revision {BEHIND}" in proc.stdout
    assert "Target database is not up to date: 1 revision(s) pending" in proc.stdout
    assert state(url) == before
    proc = swrun("stamp", url, url, BEHIND, cwd=tmp_path, project=project)
    assert proc.returncode == 0, proc.stderr
    assert state(url)["alembic_version"] == [BEHIND] and state(url)["schema"] == before["schema"]
