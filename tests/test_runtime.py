"""swrun's runner of env.py (swrun/runtime.py) on env.py files shaped like real projects'.

Fixture projects under tests/projects/rt_*: an env.py that reads its URL from an environment
variable, one that takes config.attributes["connection"] as an Engine, Alembic's async template
with asyncpg, an expand/contract pair of branches, a data migration that cannot render offline.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import HEAD, add_revision, current_revision, new_database, scalar
from swrun import database, runtime
from swrun.config import RunContext
from swrun.errors import MigrationFailed, ProjectError, StateError, UsageError
from swrun.guards import ledger
from swrun.migrations import Project
from swrun.steps import status, upgrade

PROJECTS = Path(__file__).parent / "projects"
INJECTION = "1s'; CREATE TABLE pwned(); SELECT '1"


def url_of(db_url):
    return database.normalize_url(db_url)


def raw(db_url: str) -> str:
    return url_of(db_url).render_as_string(hide_password=False)


def execute(db_url: str, sql: str) -> None:
    eng = database.make_engine(url_of(db_url))
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        eng.dispose()


def has_table(db_url: str, name: str) -> bool:
    return bool(scalar(db_url, f"select to_regclass('{name}') is not null"))


@pytest.fixture
def other_db(pg):
    """A second database on the same server: the 'live' one an env.py wrongly points at."""
    yield from new_database(pg)


def copy_project(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(PROJECTS / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# -- 1. the identity check -----------------------------------------------------------------------


def test_env_py_that_ignores_swrun_url_is_refused_before_anything_runs(db_url, other_db, monkeypatch):
    monkeypatch.setenv("APP_DATABASE_URL", raw(other_db))
    monkeypatch.delenv(runtime.URL_ENV_VAR, raising=False)
    project = Project.load(PROJECTS / "rt_envvar")
    for call in (lambda: project.apply(url_of(db_url), "head"), lambda: project.current(url_of(db_url))):
        with pytest.raises(StateError) as err:
            call()
        line = err.value.line()
        assert "APP_DATABASE_URL" in line and "url_env" in line and "nothing was run" in line
        assert err.value.exit_code == 5
    # offline too: the URL env.py hands to configure is another database
    with pytest.raises(StateError, match="APP_DATABASE_URL"):
        project.offline_sql(url_of(db_url), (), "head")
    assert not has_table(other_db, "alembic_version") and not has_table(other_db, "items")
    assert not has_table(db_url, "alembic_version")


def test_identity_check_works_for_a_role_that_cannot_read_the_cluster_identifier(db_url):
    import uuid

    role = f"rt_role_{uuid.uuid4().hex[:8]}"
    database_name = url_of(db_url).database
    execute(db_url, f'create role "{role}" login')
    try:
        execute(db_url, f'alter database "{database_name}" owner to "{role}"')
        # this worker's own server: its tests run one at a time, and the grant is put back below
        execute(db_url, "revoke execute on function pg_control_system() from public")
        assert not scalar(db_url, f"select has_function_privilege('{role}', 'pg_control_system()', 'execute')")
        as_role = url_of(db_url).set(username=role)
        project = Project.load(PROJECTS / "rt_engine")
        assert [a.revision for a in project.apply(as_role, "head")] == ["rt0001", "rt0002"]
        assert project.current(as_role) == ("rt0002",)
    finally:
        execute(db_url, "grant execute on function pg_control_system() to public")
        execute(db_url, f'alter database "{database_name}" owner to postgres')
        execute(db_url, f'drop owned by "{role}"')
        execute(db_url, f'drop role "{role}"')


def test_url_env_routes_the_url_to_env_py_and_restores_the_variable(db_url, other_db, monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATABASE_URL", raw(other_db))
    monkeypatch.setenv(runtime.URL_ENV_VAR, "APP_DATABASE_URL")
    project = Project.load(PROJECTS / "rt_envvar")
    assert [a.revision for a in project.apply(url_of(db_url), "head")] == ["rt0001", "rt0002"]
    assert current_revision(db_url) == "rt0002" and not has_table(other_db, "items")
    import os

    assert os.environ["APP_DATABASE_URL"] == raw(other_db)  # put back after env.py ran
    # the same through the ini's [swrun] url_env
    monkeypatch.delenv(runtime.URL_ENV_VAR)
    copy = copy_project("rt_envvar", tmp_path)
    with open(copy / "alembic.ini", "a") as fh:
        fh.write("\n[swrun]\nurl_env = APP_DATABASE_URL\n")
    project = Project.load(copy / "alembic.ini")
    assert project.current(url_of(db_url)) == ("rt0002",)
    assert "rt0001" in "".join(r.sql for r in project.offline_sql(url_of(db_url), (), "head"))


def test_shared_connection_serves_as_connection_and_as_engine(db_url, pg):
    # the demo's env.py takes it as a Connection (isinstance check), rt_engine's as an Engine (connect/dispose)
    demo = Project.load()
    assert demo.apply(url_of(db_url), "a1b2c3d4e5f6")[-1].revision == "a1b2c3d4e5f6"
    assert current_revision(db_url) == "a1b2c3d4e5f6"
    for other in new_database(pg):
        project = Project.load(PROJECTS / "rt_engine")
        project.apply(url_of(other), "head")
        assert current_revision(other) == "rt0002" and has_table(other, "items")
        assert project.apply(url_of(other), "rt0001", direction="downgrade")[0].revision == "rt0002"
        assert current_revision(other) == "rt0001"


# -- 3. the project's driver, async env.py -------------------------------------------------------


def test_alembic_async_template_with_asyncpg_migrates_inside_a_running_loop(db_url):
    given = url_of(db_url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    ctx = RunContext(project_path=str(PROJECTS / "rt_async"), database_url=given)
    assert ctx.url.drivername == "postgresql+psycopg2"  # swrun's own connections
    assert ctx.project.env_url(ctx.url).drivername == "postgresql+asyncpg"  # env.py's

    async def in_a_kernel_cell():  # a Jupyter cell runs while an asyncio loop is running
        applied = ctx.project.apply(ctx.url, "head")
        # before apply returned, the migrations really ran: the table is there now
        return [a.revision for a in applied], has_table(db_url, "items")

    assert asyncio.run(in_a_kernel_cell()) == (["rt0001", "rt0002"], True)
    assert ctx.project.current(ctx.url) == ("rt0002",)
    ctx.close()


def test_unsupported_schemes_still_refused():
    for bad in ("mysql://u@h/db", "sqlite:///x.db"):
        with pytest.raises(UsageError):
            database.normalize_url(bad)
    assert database.normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg2"


# -- 5. branches by design -----------------------------------------------------------------------


def test_branch_targets_plan_as_alembic_does(db_url):
    project, url = Project.load(PROJECTS / "rt_branches"), url_of(db_url)
    assert set(project.heads) == {"exp02", "con02"}
    assert project.heads_by_label() == {"contract": ["con02"], "expand": ["exp02"]}
    assert project.pending((), "expand@head") == ["base01", "exp01", "exp02"]
    with pytest.raises(StateError) as err:
        project.pending((), "head")
    assert "--to heads" in err.value.line() and "merge" in err.value.line()
    project.apply(url, "expand@head")
    assert project.current(url) == ("exp02",)
    assert project.pending(("exp02",), "heads") == ["con01", "con02"]
    project.apply(url, "heads")
    current = project.current(url)
    assert set(current) == {"exp02", "con02"}
    # rolling back one branch counts that branch's revisions only
    assert project.to_downgrade(current, "con01") == ["con02"]
    assert project.to_downgrade(current, "contract@-1") == ["con02"]
    assert [a.revision for a in project.apply(url, "con01", direction="downgrade")] == ["con02"]
    assert set(project.current(url)) == {"exp02", "con01"}
    assert has_table(db_url, "exp_b") and not has_table(db_url, "con_b")


def test_status_on_branches_behind_targets_empty_and_cyclic_projects(db_url, other_db, tmp_path):
    ctx = RunContext(project_path=str(PROJECTS / "rt_branches"), database_url=db_url)
    with pytest.raises(StateError, match="ambiguous"):
        status.run(ctx, "head")
    done = status.run(ctx, "heads")
    assert done.data["heads_by_label"] == {"contract": ["con02"], "expand": ["exp02"]}
    assert len(done.data["pending"]) == 5
    ctx.project.apply(ctx.url, "heads")
    with pytest.raises(StateError) as err:
        status.run(ctx, "base01")
    assert "rollback" in err.value.line() and "swrun rollback --to base01" in err.value.line()
    # an empty versions directory
    empty = copy_project("rt_branches", tmp_path)
    for f in (empty / "migrations" / "versions").glob("*.py"):
        f.unlink()
    assert "no revisions" in status.run(RunContext(project_path=str(empty), database_url=other_db)).summary
    # a cycle: one line, no traceback
    cyclic = copy_project("rt_branches", tmp_path / "c")
    path = cyclic / "migrations" / "versions" / "base01_base01.py"
    path.write_text(path.read_text().replace("down_revision = None", "down_revision = 'exp02'"))
    with pytest.raises((ProjectError, StateError)) as err:
        status.run(RunContext(project_path=str(cyclic), database_url=db_url))
    assert "\n" not in err.value.line() and err.value.exit_code in (3, 5)


# -- 4. lock_timeout ------------------------------------------------------------------------------


def test_lock_timeout_payload_runs_no_sql(db_url, engine):
    project = Project.load()
    with pytest.raises(UsageError):
        project.apply(url_of(db_url), "head", lock_timeout=INJECTION)
    assert not has_table(db_url, "pwned") and current_revision(db_url) is None
    # and the SQL swrun sends binds the value: even unchecked, the payload is a bad setting, never SQL
    with engine.connect() as conn, pytest.raises(sa.exc.DataError):
        conn.execute(sa.text("select set_config('lock_timeout', :v, false)"), {"v": INJECTION})
    assert not has_table(db_url, "pwned")
    assert database.check_duration("lock_timeout", "500ms") == "500ms"
    project.apply(url_of(db_url), "3b11939b5277", lock_timeout="2 s")
    assert current_revision(db_url) == "3b11939b5277"


# -- 6. errors name the migration ----------------------------------------------------------------


def test_failing_revision_names_its_file_and_line(db_url, project_copy):
    bad = add_revision(project_copy, "0badc0ffee01", HEAD, "op.execute('select 1/0')")
    project = Project.load(project_copy / "alembic.ini")
    with pytest.raises(MigrationFailed) as err:
        project.apply(url_of(db_url), "head")
    lines = bad.read_text().splitlines()
    line_no = next(i for i, text in enumerate(lines, 1) if "1/0" in text)
    assert f"{bad.name}:{line_no}" in err.value.line()
    assert (err.value.file, err.value.lineno) == (str(bad.resolve()), line_no)
    assert err.value.revision == "0badc0ffee01" and "sqlalchemy" not in err.value.line().lower()


def test_a_failure_in_the_worker_thread_is_raised_to_the_caller(db_url, project_copy):
    add_revision(project_copy, "0badc0ffee02", HEAD, "op.execute('select 1/0')")
    project = Project.load(project_copy / "alembic.ini")

    async def in_a_kernel_cell():
        with pytest.raises(MigrationFailed) as err:
            project.apply(url_of(db_url), "head")
        return err.value.revision

    assert asyncio.run(in_a_kernel_cell()) == "0badc0ffee02"
    assert current_revision(db_url) == HEAD  # the revisions before it committed


def test_env_py_error_is_one_line_with_its_file_and_no_password(tmp_path):
    copy = copy_project("rt_engine", tmp_path)
    env = copy / "migrations" / "env.py"
    env.write_text('from alembic import context\nurl = context.config.get_main_option("sqlalchemy.url")\n'
                   'raise RuntimeError("cannot use " + url)\n')
    url = url_of("postgresql://app:s3cr%25t-pw@127.0.0.1:5432/app")
    with pytest.raises(ProjectError) as err:
        Project.load(copy / "alembic.ini").offline_sql(url, (), "head")
    line = err.value.line()
    assert f"{env.resolve()}:3" in line and "s3cr" not in line and "\n" not in line


# -- 7. offline SQL, best effort -----------------------------------------------------------------


def test_offline_sql_marks_the_revision_that_cannot_render_and_renders_the_rest(db_url, monkeypatch):
    runs = []
    real = runtime.run_env
    monkeypatch.setattr(runtime, "run_env", lambda *a, **kw: runs.append(1) or real(*a, **kw))
    project = Project.load(PROJECTS / "rt_offline")
    revisions = project.offline_sql(url_of(db_url), (), "head")
    assert [r.revision for r in revisions] == ["rt0001", "rt0002", "rt0003", "rt0004"]
    bad = revisions[2]
    assert bad.sql == "" and "fetchone" in bad.offline_error and bad.where.endswith("rt0003_rt0003.py:12")
    assert bad.as_dict()["offline_error"] == bad.offline_error
    assert "CREATE TABLE items" in revisions[0].sql and "CREATE TABLE alembic_version" in revisions[0].sql
    assert "CREATE INDEX ix_items_name" in revisions[3].sql
    assert "CREATE TABLE alembic_version" not in revisions[3].sql  # the restart goes on from rt0003
    assert "version_num='rt0004' WHERE alembic_version.version_num = 'rt0003'" in revisions[3].sql
    assert len(runs) == 2  # one bad revision: one more env.py run
    down = project.offline_sql(url_of(db_url), ("rt0004",), "rt0002", direction="downgrade")
    assert [r.revision for r in down] == ["rt0004", "rt0003"]
    assert "DROP INDEX ix_items_name" in down[0].sql and "delete from items" in down[1].sql


# -- 8. statement capture ------------------------------------------------------------------------


def test_capture_records_each_revisions_statements_without_values(db_url):
    captured: list = []
    project = Project.load()
    project.apply(url_of(db_url), "5e1f0c2a9d41", capture=captured,
                  on_revision=lambda mctx, step: mctx.connection.exec_driver_sql("select 'swrun hook'"))
    by_rev = {}
    for entry in captured:
        by_rev.setdefault(entry["revision"], []).append(entry)
    assert all(e.get("bookkeeping") for e in by_rev.pop(None, []))  # Alembic's look at the version table
    assert set(by_rev) == {"3b11939b5277", "5e1f0c2a9d41"}
    assert any("CREATE TABLE users" in e["sql"] for e in by_rev["3b11939b5277"])
    assert any(e.get("bookkeeping") for e in by_rev["3b11939b5277"])
    seed = " ".join(e["sql"] for e in by_rev["5e1f0c2a9d41"])
    assert "INSERT INTO" in seed and "admin@smartwaste.example" not in seed  # bound values are never captured
    assert not any("swrun hook" in e["sql"] or "set_config" in e["sql"] for e in captured)


# -- 9. the truth after a crash ------------------------------------------------------------------


def test_ledger_credits_each_revision_in_its_own_transaction_across_a_killed_session(db_url, engine):
    project, url = Project.load(), url_of(db_url)
    ledger.prepare(engine)

    def credit_then_die(mctx, step):
        ledger.credit(mctx.connection, project, step.up_revision_id, "run-one")
        if step.up_revision_id == "a1b2c3d4e5f6":  # the server loses this session before the commit
            scalar(db_url, f"select pg_terminate_backend({mctx.connection.exec_driver_sql('select pg_backend_pid()').scalar()})")

    with pytest.raises(MigrationFailed):
        project.apply(url, "head", on_revision=credit_then_die)
    assert current_revision(db_url) == "5e1f0c2a9d41"
    with engine.connect() as conn:
        rows = ledger.read(conn)
    assert {rev: e.run_id for rev, e in rows.items()} == {"3b11939b5277": "run-one", "5e1f0c2a9d41": "run-one"}
    # the next run gets the rest, and no credit for what the first committed
    ctx = RunContext(database_url=db_url, run_id="run-two")
    assert upgrade.run(ctx).data["before"] == ["5e1f0c2a9d41"]
    with engine.connect() as conn:
        rows = ledger.read(conn)
    assert rows["5e1f0c2a9d41"].run_id == "run-one" and rows["a1b2c3d4e5f6"].run_id == "run-two"
    ctx.close()


def test_upgrade_step_rereads_the_revision_after_its_session_died(db_url, project_copy, engine):
    add_revision(project_copy, "de4d00000001", HEAD, "op.execute('create table before_kill (id int)')")
    add_revision(project_copy, "de4d00000002", "de4d00000001", "op.execute('select pg_terminate_backend(pg_backend_pid())')")
    ctx = RunContext(project_path=str(project_copy / "alembic.ini"), database_url=db_url, run_id="killed-run")
    with pytest.raises(MigrationFailed) as err:
        upgrade.run(ctx)
    assert err.value.revision == "de4d00000002" and err.value.current == ("de4d00000001",)
    assert "now at de4d00000001" in err.value.line()
    with engine.connect() as conn:
        rows = ledger.read(conn)
    assert rows["de4d00000001"].run_id == "killed-run" and rows["de4d00000001"].source == "upgrade"
    assert "de4d00000002" not in rows
    ctx.close()


def test_reread_says_when_the_database_cannot_be_read(tmp_path):
    project = Project.load()
    gone = database.normalize_url("postgresql://nobody@127.0.0.1:1/none")
    assert upgrade.reread_current(project, gone, attempts=2, wait_s=0.1) is None


# -- 10. a custom version table ------------------------------------------------------------------


def test_custom_version_table_is_read_as_alembic_does(db_url, tmp_path, engine):
    copy = copy_project("rt_engine", tmp_path)
    env = copy / "migrations" / "env.py"
    env.write_text(env.read_text().replace("context.configure(connection=connection)",
                                           "context.configure(connection=connection, version_table='app_versions')"))
    project = Project.load(copy / "alembic.ini")
    project.apply(url_of(db_url), "head")
    assert project.current(url_of(db_url)) == ("rt0002",)
    assert project.version_table == ("app_versions", None)
    with engine.connect() as conn:
        assert ledger.database_revisions(conn, *project.version_table) == ("rt0002",)
        assert ledger.database_revisions(conn) == ()


def test_url_env_names_are_checked(monkeypatch):
    monkeypatch.setenv(runtime.URL_ENV_VAR, "GOOD_NAME, bad-name")
    with pytest.raises(UsageError):
        runtime.url_env_names(Project.load())
    monkeypatch.setenv(runtime.URL_ENV_VAR, "A_URL,B_URL")
    assert runtime.url_env_names(Project.load()) == ["A_URL", "B_URL"]


def test_frame_in_finds_the_innermost_frame_of_a_directory(tmp_path):
    module = tmp_path / "mig.py"
    module.write_text(textwrap.dedent("""\
        def inner():
            raise ValueError("x")
        def outer():
            inner()
    """))
    namespace: dict = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    try:
        namespace["outer"]()
    except ValueError as exc:
        assert runtime.frame_in(exc, [tmp_path]) == (str(module.resolve()), 2)
