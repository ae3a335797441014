"""The Alembic facade against a real PostgreSQL: the demo chain and a project shaped unlike it."""

import subprocess
import sys
import textwrap
import time

import pytest

from conftest import HEAD, add_revision, current_revision, scalar
from swrun import database
from swrun.errors import LockTimeout, MigrationFailed, ProjectError, StateError, UsageError
from swrun.migrations import Project
from swrun.lock_retry import NO_RETRY

CHAIN = ["3b11939b5277", "5e1f0c2a9d41", "a1b2c3d4e5f6", "c7d8e9f0a1b2", "d4e5f6a7b8c9", "e1f2a3b4c5d6", "f7a8b9c0d1e2"]


def url_of(db_url):
    return database.normalize_url(db_url)


def test_demo_chain_shape():
    project = Project.load()
    assert project.heads == (HEAD,)
    assert project.topo_order(set(project.revisions)) == CHAIN
    hist = project.history()
    assert list(hist["revision"]) == list(reversed(CHAIN))
    assert hist.loc[hist.revision == "3b11939b5277", "file"].item() == "3b11939b5277_initial_schema.py"


def test_empty_to_head_down_to_base_and_up_again(db_url):
    project, url = Project.load(), url_of(db_url)
    assert project.current(url) == ()
    assert project.pending((), "head") == CHAIN
    applied = project.apply(url, "head")
    assert [a.revision for a in applied] == CHAIN and all(a.seconds > 0 for a in applied)
    assert project.current(url) == (HEAD,)
    assert scalar(db_url, "select count(*) from users") == 6
    assert scalar(db_url, "select role::text from users where email = 'admin@smartwaste.example'") == "SUPER_ADMIN"
    down = project.apply(url, "base", direction="downgrade")
    assert [a.revision for a in down] == list(reversed(CHAIN))
    assert project.current(url) == ()
    assert scalar(db_url, "select count(*) from pg_type where typname = 'user_role'") == 0
    project.apply(url, "head")
    assert current_revision(db_url) == HEAD


def test_history_marks_applied_revisions(db_url):
    project, url = Project.load(), url_of(db_url)
    project.apply(url, "a1b2c3d4e5f6")
    hist = project.history(project.current(url))
    assert dict(zip(hist.revision, hist.applied)) == {r: i <= 2 for i, r in enumerate(CHAIN)}
    assert project.pending(("a1b2c3d4e5f6",)) == CHAIN[3:]


def test_offline_sql_covers_only_the_pending_range(db_url):
    project, url = Project.load(), url_of(db_url)
    revisions = project.offline_sql(url, ("a1b2c3d4e5f6",), "head")
    assert [r.revision for r in revisions] == CHAIN[3:]
    sql = "".join(r.sql for r in revisions)
    assert "CREATE TABLE users" not in sql and "CREATE TYPE user_role" not in sql
    assert "ALTER TYPE user_role ADD VALUE" in revisions[0].sql
    assert "UPDATE alembic_version SET version_num='f7a8b9c0d1e2'" in revisions[-1].sql
    full = project.offline_sql(url, (), "head")
    assert "CREATE TYPE user_role" in full[0].sql


def test_failing_migration_leaves_the_last_good_revision(db_url, project_copy):
    add_revision(project_copy, "0badc0ffee00", HEAD, "op.execute('create table ok_before_failure (id int)')")
    add_revision(project_copy, "0badc0ffee01", "0badc0ffee00", "op.execute('select 1/0')")
    project, url = Project.load(project_copy / "alembic.ini"), url_of(db_url)
    with pytest.raises(MigrationFailed) as err:
        project.apply(url, "head")
    assert err.value.revision == "0badc0ffee01"
    assert "division by zero" in str(err.value)
    assert project.current(url) == ("0badc0ffee00",)
    assert scalar(db_url, "select count(*) from ok_before_failure") == 0


def test_lock_timeout_is_applied_to_ddl(db_url, project_copy, engine):
    add_revision(project_copy, "10c0000000aa", HEAD, "op.execute('alter table bins add column blocked int')",
                 "op.drop_column('bins', 'blocked')")
    project, url = Project.load(project_copy / "alembic.ini"), url_of(db_url)
    project.apply(url, HEAD)
    with engine.connect() as holder:
        holder.exec_driver_sql("begin; lock table bins in access share mode")
        t0 = time.monotonic()
        with pytest.raises(MigrationFailed) as err:
            project.apply(url, "head", lock_timeout="500ms", retry=NO_RETRY)  # retries: tests/test_lock_retries.py
        assert time.monotonic() - t0 < 10
    assert "lock timeout" in str(err.value)
    assert project.current(url) == (HEAD,)


def test_broken_projects_are_reported(tmp_path, project_copy):
    with pytest.raises(ProjectError, match="no alembic.ini"):
        Project.load(tmp_path / "missing.ini")
    bad = add_revision(project_copy, "5ada7a000000", HEAD, "return (")
    with pytest.raises(ProjectError, match=bad.name):
        Project.load(project_copy / "alembic.ini")


def test_two_heads_and_unknown_revisions(db_url, project_copy):
    add_revision(project_copy, "aaaaaaaaaaaa", HEAD, "pass", slug="left")
    add_revision(project_copy, "bbbbbbbbbbbb", HEAD, "pass", slug="right")
    project = Project.load(project_copy / "alembic.ini")
    assert set(project.heads) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    with pytest.raises(StateError) as err:
        project.resolve("head")
    assert "alembic merge" in err.value.line()
    with pytest.raises(StateError, match="deadbeef"):
        project.pending(("deadbeef0000",))
    with pytest.raises(UsageError):
        project.resolve("nosuchrevision")


def _generic_project(root):
    """Two version directories, branch labels, a merge, ids that are not 12 hex characters,
    an env.py that only reads sqlalchemy.url (no shared connection)."""
    (root / "env").mkdir(parents=True)
    (root / "core").mkdir()
    (root / "reporting").mkdir()
    (root / "alembic.ini").write_text(textwrap.dedent("""\
        [alembic]
        script_location = %(here)s/env
        version_locations = %(here)s/core %(here)s/reporting
        path_separator = space
        sqlalchemy.url = postgresql://nobody@localhost/none
        """))
    (root / "env" / "env.py").write_text(textwrap.dedent("""\
        from alembic import context
        from sqlalchemy import engine_from_config, pool
        config = context.config
        if context.is_offline_mode():
            context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
            with context.begin_transaction():
                context.run_migrations()
        else:
            engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool)
            with engine.connect() as connection:
                context.configure(connection=connection)
                with context.begin_transaction():
                    context.run_migrations()
        """))
    (root / "env" / "script.py.mako").write_text("")

    def rev(folder, rid, down, body, labels=None):
        (root / folder / f"{rid}.py").write_text(
            f"from alembic import op\nrevision = {rid!r}\ndown_revision = {down!r}\nbranch_labels = {labels!r}\ndepends_on = None\n"
            f"def upgrade():\n    op.execute({body!r})\ndef downgrade():\n    pass\n")

    rev("core", "first", None, "create table core_a (id int)", ("core",))
    rev("core", "second_core", "first", "create table core_b (id int)")
    rev("reporting", "rep1", "first", "create table rep_a (id int)", ("reporting",))
    rev("core", "merge_both", ("second_core", "rep1"), "create table merged (id int)")
    return root / "alembic.ini"


def test_any_alembic_project_works(db_url, tmp_path):
    project, url = Project.load(_generic_project(tmp_path / "generic")), url_of(db_url)
    assert project.heads == ("merge_both",)
    assert project.pending((), "reporting@head")[0] == "first"
    applied = project.apply(url, "rep1")
    assert [a.revision for a in applied] == ["first", "rep1"]
    assert project.pending(project.current(url)) == ["second_core", "merge_both"]
    sql = "".join(r.sql for r in project.offline_sql(url, project.current(url), "head"))
    assert "core_b" in sql and "merged" in sql and "core_a" not in sql
    project.apply(url, "head")
    assert project.current(url) == ("merge_both",)
    assert scalar(db_url, "select count(*) from merged") == 0


LOCK_HOLDER = """
import sys, time
from swrun import database
eng = database.make_engine(database.normalize_url(sys.argv[1]))
with database.migration_lock(eng):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_advisory_lock_contention_between_two_processes(db_url):
    from swrun.config import RunContext
    from swrun.steps import upgrade

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, db_url, "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        ctx = RunContext(database_url=db_url, lock_wait_s=1.0)
        with pytest.raises(LockTimeout, match="another swrun run"):
            upgrade.run(ctx)
        assert current_revision(db_url) is None
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its session: the next run gets it at once
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, db_url, "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    result = upgrade.run(RunContext(database_url=db_url, lock_wait_s=30))
    holder.wait()
    assert result.data["after"] == [HEAD]
