"""Preview without offline mode: data migrations that cannot render offline, and the SQL the
rehearsal records as executed on the copy.

The fixture project (tests/projects/h3_datamig) is the demo chain plus two data migrations:
one binds an ORM Session to Alembic's connection, one reads a SELECT's result. Plain
``alembic upgrade`` runs both; ``--sql`` cannot render either. Both bind values
(SECRET_NOTE, SECRET_CODE) that must never reach a file or the record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import HEAD, current_revision, new_database, run_cli
from swrun.steps import preview

PROJECT = Path(__file__).parent / "projects" / "h3_datamig"
ORM_REV, SELECT_REV = "a0b1c2d3e4f5", "b1c2d3e4f5a6"
SECRETS = ("h3-bound-secret-7f3a", "h3-bound-code-91c2")


@pytest.fixture(scope="module")
def deployed(pg, tmp_path_factory):
    """One default deploy of the fixture project on a fresh database, shared by the tests below."""
    work = tmp_path_factory.mktemp("h3-deploy")
    for url in new_database(pg):
        proc = run_cli("deploy", "--database-url", url, "--env", "staging", "--project", PROJECT / "alembic.ini", cwd=work,
                       timeout=300)
        [record] = sorted((work / "reports").rglob("*.ipynb"))
        yield {"url": url, "proc": proc, "work": work, "record": record,
               "meta": json.loads(record.read_text())["metadata"]["swrun"], "at": current_revision(url)}


def _step(deployed, name: str) -> dict:
    return next(s for s in deployed["meta"]["steps"] if s["step"] == name)


def test_deploy_goes_on_past_revisions_with_no_offline_sql(deployed):
    proc = deployed["proc"]
    assert proc.returncode == 0, proc.stderr
    assert deployed["at"] == SELECT_REV  # both data migrations really ran on the target
    shown = _step(deployed, "preview")
    assert shown["outcome"] == "warning"
    missing = {m["revision"]: m for m in shown["data"]["no_offline_sql"]}
    assert set(missing) == {ORM_REV, SELECT_REV}
    assert missing[ORM_REV]["where"] == f"versions/{ORM_REV}_orm_rename_drivers.py:34"
    assert "MockConnection" in missing[ORM_REV]["reason"] and "fetchone" in missing[SELECT_REV]["reason"]
    assert f"{ORM_REV}_orm_rename_drivers.py:34" in shown["summary"]
    # backup, rehearse and upgrade ran after it
    assert [_step(deployed, s)["outcome"] for s in ("backup", "rehearse", "upgrade")] == ["ok", "ok", "ok"]
    # the psql script does not pretend to be complete
    kept = shown["data"]["sql_file"]
    assert kept["complete"] is False
    script = (deployed["work"] / kept["file"]).read_text()
    assert "INCOMPLETE" in script and "RAISE EXCEPTION 'swrun: incomplete script" in script
    assert script.index("RAISE EXCEPTION 'swrun: incomplete") < script.index("CREATE TABLE users")


def test_the_rehearsal_records_what_each_revision_executed(deployed):
    done = _step(deployed, "rehearse")["data"]
    assert done["rollback_proven"] is True
    assert done["executed_revisions"][-2:] == [ORM_REV, SELECT_REV]
    orm_sql, select_sql = done["executed_sql"][ORM_REV], done["executed_sql"][SELECT_REV]
    assert "UPDATE pickups SET notes=%(notes)s" in orm_sql  # the ORM's flush, as executed
    assert "select count(*) from bins" in select_sql and "update bins set fill_level = %(level)s" in select_sql
    assert "alembic_version" not in orm_sql
    path = deployed["work"] / done["executed_file"]
    assert path.parent == deployed["work"] / "backups" and path.name == f"{deployed['meta']['run_id']}_executed.sql"
    text = path.read_text()
    assert f"-- ==== {SELECT_REV}: fill from count, as executed on the rehearsal copy" in text and select_sql.strip() in text
    assert isinstance(done["executed_findings"], list)
    # the record shows it as a code block per revision
    nb = json.loads(deployed["record"].read_text())
    shown = json.dumps(nb["cells"])
    assert f"{SELECT_REV} fill from count (as executed on the rehearsal copy)" in shown


def test_no_bound_value_reaches_a_file_or_the_record(deployed):
    places = [deployed["record"], *(deployed["work"] / "backups").glob("*.sql"), *(deployed["work"] / "reports").rglob("*")]
    for place in places:
        if place.is_file():
            data = place.read_bytes()
            assert not any(s.encode() in data for s in SECRETS), place


def test_preview_command_prints_no_traceback_and_says_which_revisions(pg, tmp_path):
    for url in new_database(pg):
        proc = run_cli("preview", "--database-url", url, "--project", PROJECT / "alembic.ini", "--out-dir", tmp_path,
                       "--sql-file", tmp_path / "apply.sql")
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.returncode == 0, proc.stderr
        assert f"no offline SQL for {ORM_REV} (versions/{ORM_REV}_orm_rename_drivers.py:34" in proc.stdout
        assert current_revision(url) is None  # read-only


def test_incomplete_script_stops_psql_before_anything_runs():
    class Rev:
        def __init__(self, rev, sql="", error=None):
            self.revision, self.description, self.down_revision = rev, "x", ()
            self.sql, self.offline_error, self.where = sql, error, "v.py:3"

    revs = [Rev("r1", "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n"), Rev("r2", error="AttributeError: no")]
    text = preview.psql_script(revs, (), HEAD, lock_timeout="1s", statement_timeout="0",
                               missing=[{"revision": "r2", "reason": "AttributeError: no", "where": "v.py:3"}])
    assert text.index("RAISE EXCEPTION 'swrun: incomplete") < text.index("CREATE TABLE t")
    assert "-- NO OFFLINE SQL: AttributeError: no (v.py:3)" in text
    whole = preview.psql_script(revs[:1], (), HEAD, lock_timeout="1s", statement_timeout="0")
    assert "INCOMPLETE" not in whole and "CREATE TABLE t (id int);" in whole


# -- the target's rights -------------------------------------------------------------------------


def _sql(url: str, *statements: str) -> None:
    from swrun import database

    eng = database.make_engine(database.normalize_url(url))
    try:
        with eng.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        eng.dispose()


def _role_url(url: str, role: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


def test_a_role_that_cannot_create_in_public_stops_at_preflight_not_proven(pg, tmp_path):
    """A non-superuser without CREATE on public (PostgreSQL 15's default for a role that does not own
    the database): the deploy stops at preflight with one line and the fix; nothing says proven."""
    admin = pg.status().url("postgres")
    for url in new_database(pg):
        _sql(admin, "drop role if exists h3_app", "create role h3_app login password 'h3-app-pw'")
        try:
            _sql(url, "revoke create on schema public from public")  # PostgreSQL 15's default, said for older servers
            proc = run_cli("deploy", "--database-url", _role_url(url, "h3_app", "h3-app-pw"), cwd=tmp_path)
            assert proc.returncode != 0
            line = [x for x in proc.stderr.splitlines() if x.startswith("swrun: error:")]
            assert len(line) == 1, proc.stderr
            assert "role h3_app cannot create in schema public" in line[0] and "GRANT USAGE, CREATE ON SCHEMA public TO h3_app" in line[0]
            assert "FAILED at preflight" in proc.stderr and "proven" not in proc.stderr and "Traceback" not in proc.stderr
            assert current_revision(url) is None

            # read-only for the role: the same, with its own fix
            _sql(url, "grant create on schema public to h3_app")
            _sql(admin, "alter role h3_app set default_transaction_read_only = on")
            proc = run_cli("deploy", "--database-url", _role_url(url, "h3_app", "h3-app-pw"), "--steps", "preflight", cwd=tmp_path)
            assert proc.returncode != 0 and "the database is read-only for h3_app" in proc.stderr, proc.stderr
            assert "h3-app-pw" not in proc.stderr + proc.stdout
        finally:
            _sql(url, "drop owned by h3_app")
            _sql(admin, "drop role if exists h3_app")


def test_the_rehearsal_runs_as_the_targets_role_and_fails_where_the_target_would(pg, tmp_path):
    """Tables owned by another role: the target's role may write rows but not ALTER them. The
    rehearsal runs the migrations on the copy as that role (it exists on the rehearsal server), so
    it fails there, before the upgrade: never "rollback plan proven" for a run the target refuses."""
    from conftest import DEMO_DIR
    from swrun.config import RunContext
    from swrun.steps import upgrade

    admin = pg.status().url("postgres")
    middle = "e1f2a3b4c5d6"
    for url in new_database(pg):
        _sql(admin, "drop role if exists h3_app", "create role h3_app login password 'h3-app-pw'")
        try:
            upgrade.run(RunContext(database_url=url, project_path=str(DEMO_DIR / "alembic.ini")), target=middle)
            _sql(url, "grant usage, create on schema public to h3_app",
                 "grant select, insert, update, delete on all tables in schema public to h3_app",
                 "grant usage, select on all sequences in schema public to h3_app",
                 "grant usage, create on schema swrun to h3_app",
                 "grant select, insert, update, delete on all tables in schema swrun to h3_app",
                 "grant usage, select on all sequences in schema swrun to h3_app")
            proc = run_cli("deploy", "--database-url", _role_url(url, "h3_app", "h3-app-pw"), cwd=tmp_path, timeout=300)
            assert proc.returncode != 0, proc.stderr
            assert "FAILED at rehearse" in proc.stderr and "proven" not in proc.stderr, proc.stderr
            assert "must be owner of table pickups" in proc.stderr
            assert current_revision(url) == middle  # the real database was not touched
            [record] = sorted((tmp_path / "reports").rglob("*.ipynb"))
            rights = next(s for s in json.loads(record.read_text())["metadata"]["swrun"]["steps"] if s["step"] == "rehearse")
            assert rights["data"]["rights"]["as_role"] == "h3_app"
            assert "h3-app-pw" not in record.read_text()
        finally:
            _sql(url, "drop owned by h3_app")
            _sql(admin, "drop role if exists h3_app")
