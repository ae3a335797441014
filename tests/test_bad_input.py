"""Bad input through the real CLI: one readable line, the documented exit code, no traceback, no change.

Every case runs ``python -m swrun ...`` in a subprocess against a fresh database and checks:

* the exit code is the one ``swrun/errors.py`` documents for that kind of problem;
* stderr carries exactly one ``swrun: error:`` line, holding the expected words;
* no ``Traceback`` reaches the terminal;
* the database's revision is what it was before the command;
* runbook verbs that fail at a step (exit 9) still leave a record under ``reports/``;
  arguments rejected before the run (exit 2) leave nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import sqlalchemy as sa

from conftest import HEAD, add_revision, current_revision, new_database, run_cli, scalar
from swrun import database
from swrun.config import RunContext
from swrun.steps import upgrade

USAGE, PROJECT, DATABASE, STATE, STEP_FAILED = 2, 3, 4, 5, 9

ROLE, ROLE_PASSWORD, WRONG_PASSWORD = "r", "S3cret-pw-xyz", "wrong-pw-123"
PWNED = Path("/tmp/pwned_swrun")
INJECTION = 'head"); import os; os.system("touch /tmp/pwned_swrun") #'
INJECTION_BACKSLASH = 'head\\"); import os; os.system("touch /tmp/pwned_swrun") #\n__import__("os").system("touch /tmp/pwned_swrun")'
# SQL that would run if a value were spliced into a statement: a table on the target, a role (cluster-wide,
# so it outlives a rehearsal copy that is dropped at the end of the run)
SQL_PAYLOAD = "1s'; CREATE TABLE pwned(); CREATE ROLE pwned_role; SELECT '1"
URL_PW = "Secretpw1"  # long enough that its redaction leaves the message readable
LONG_PART = "d" * 300  # a path part longer than a file name may be
BIG = "x" * 120 * 1024  # an operator name of 120 KB
PROD_STEPS = ("--env", "production")


@dataclass
class Env:
    """What a case's argv and expected texts can name: {url}, {ini}, {blocker}, {port}."""

    pg: object
    db_url: str
    project: Path
    workdir: Path
    url: str = ""
    blocker: Path | None = None
    cleanup: Callable[[], object] | None = None

    @property
    def ini(self) -> Path:
        return self.project / "alembic.ini"

    @property
    def port(self) -> int:
        return self.pg.status().port

    def fill(self, template: str) -> str:
        return template.format(url=self.url, ini=self.ini, blocker=self.blocker, port=self.port)

    @property
    def dbname(self) -> str:
        return self.db_url.split("?", 1)[0].rsplit("/", 1)[-1]

    def execute(self, *statements: str) -> None:
        eng = database.make_engine(database.normalize_url(self.db_url))
        try:
            with eng.begin() as conn:
                for sql in statements:
                    conn.execute(sa.text(sql))
        finally:
            eng.dispose()


@dataclass
class Case:
    argv: tuple[str, ...]
    code: int
    expect: tuple[str, ...]
    setup: Callable[[Env], None] | None = None
    at_head: bool = False  # upgrade the fresh database to head before setup
    failed_step: str | None = None  # a runbook that fails at this step: exit 9, and a record saying so
    absent: tuple[str, ...] = ()  # text that must appear nowhere in the output
    check: Callable[[Env], None] | None = None


# -- setups -------------------------------------------------------------------------


def wrong_password(env: Env) -> None:
    env.execute(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{ROLE}') then "
        f"create role {ROLE} login password '{ROLE_PASSWORD}'; end if; end $$",  # roles are cluster-wide
        f'grant connect, create on database "{env.dbname}" to {ROLE}',
        f"grant create on schema public to {ROLE}",
    )
    env.url = env.pg.status().tcp_url(database=env.dbname, user=ROLE, password=WRONG_PASSWORD)


def missing_database(env: Env) -> None:
    env.url = env.pg.status().url(database="nope_xyz")


def broken_ini(env: Env) -> None:
    env.ini.write_text("this is not an ini file\n<<<>>>\n")


def syntax_error(env: Env) -> None:
    # not "this is not python": that parses (an identity test), so the file would load fine
    add_revision(env.project, "bad000000001", HEAD, "this is not python at all", slug="broken")


def two_heads(env: Env) -> None:
    add_revision(env.project, "aaaa00000001", HEAD, "pass", slug="left")
    add_revision(env.project, "bbbb00000002", HEAD, "pass", slug="right")


def unknown_db_revision(env: Env) -> None:
    env.execute("update alembic_version set version_num = 'deadbeef0000'")


def blocker_file(env: Env) -> None:
    env.blocker = env.workdir / "a-file"
    env.blocker.write_text("not a directory\n")


def no_pwned_file(env: Env) -> None:
    PWNED.unlink(missing_ok=True)


def failing_migration(env: Env) -> None:
    add_revision(env.project, "fa11ed000001", HEAD, 'op.execute("select 1/0")', slug="divide_by_zero")


def enum_exists(env: Env) -> None:
    env.execute("create type user_role as enum ('CITIZEN')")


def modified_applied(env: Env) -> None:
    path = env.project / "migrations" / "versions" / "a1b2c3d4e5f6_add_user_preferences.py"
    path.write_text(path.read_text() + "\n# edited after it was applied\n")


def renamed_applied(env: Env) -> None:
    versions = env.project / "migrations" / "versions"
    (versions / "d4e5f6a7b8c9_promote_platform_admin.py").rename(versions / "d4e5f6a7b8c9_promote_admin.py")


def slow_migration(env: Env) -> None:
    add_revision(env.project, "510e00000001", HEAD, "op.execute('select pg_sleep(20)')", slug="slow")


def tiny_disk(env: Env) -> None:
    """A 16 KiB filesystem for the backup: pg_dump runs out of space."""
    import subprocess

    env.blocker = env.workdir / "tiny"
    env.blocker.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(env.blocker)], capture_output=True).returncode:
        pytest.skip("cannot mount a small filesystem here")
    env.cleanup = lambda: subprocess.run(["umount", str(env.blocker)], capture_output=True)


def reports_with_index(lines: list[str]):
    def setup(env: Env) -> None:
        reports = env.workdir / "reports"
        reports.mkdir()
        (reports / "index.jsonl").write_text("".join(line + "\n" for line in lines))
    return setup


def runbook_copy(name: str):
    def setup(env: Env) -> None:
        from swrun.runner import RUNBOOKS_DIR

        (env.workdir / f"{name}.ipynb").write_text((RUNBOOKS_DIR / "deploy.ipynb").read_text())
    return setup


def runbook_with_fixed_environment(env: Env) -> None:
    """A runbook whose setup cell ignores the environment parameter: its guards evaluate development's gates."""
    from swrun.runner import RUNBOOKS_DIR

    nb = json.loads((RUNBOOKS_DIR / "deploy.ipynb").read_text())
    setup = next(c for c in nb["cells"] if "setup" in c["metadata"].get("tags", []))
    text = "".join(setup["source"])
    assert "environment=environment" in text
    setup["source"] = text.replace("environment=environment", 'environment="development"')
    (env.workdir / "custom.ipynb").write_text(json.dumps(nb))


def index_is(kind: str):
    def setup(env: Env) -> None:
        import os

        (env.workdir / "reports").mkdir()
        index = env.workdir / "reports" / "index.jsonl"
        index.mkdir() if kind == "directory" else os.mkfifo(index)
    return setup


def garbage_runbook(env: Env) -> None:
    env.blocker = env.workdir / "broken.ipynb"
    env.blocker.write_text("{ this is not json")


# -- extra checks -------------------------------------------------------------------


def no_partial_backup(env: Env) -> None:
    assert [p.name for p in env.blocker.iterdir() if p.name.startswith("b")] == [], list(env.blocker.iterdir())
    assert not list(env.blocker.rglob("*.partial"))


def nothing_written(env: Env) -> None:
    assert [p.name for p in env.workdir.iterdir()] == ["a-file"]
    assert env.blocker.read_text() == "not a directory\n"


def workdir_empty(env: Env) -> None:
    assert list(env.workdir.iterdir()) == []


def not_pwned(env: Env) -> None:
    assert not PWNED.exists(), "a runbook parameter value was executed as code"


def record_of(env: Env) -> dict:
    """The run's metadata from the one record under reports/."""
    records = list((env.workdir / "reports").rglob("*.ipynb"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())["metadata"]["swrun"]


def no_scratch_database(env: Env) -> None:
    """A rehearsal stopped mid-way (a timeout, Ctrl-C) leaves no scratch database behind."""
    url = env.pg.status().url("postgres")
    assert scalar(url, "select count(*) from pg_database where datname like 'swrun_rehearsal%%'") == 0


def no_sql_ran(env: Env) -> None:
    """The payload ran nowhere: no table pwned on the target, no role pwned_role on the server."""
    assert scalar(env.db_url, "select to_regclass('public.pwned') is null")
    assert scalar(env.pg.status().url("postgres"), "select count(*) from pg_roles where rolname = 'pwned_role'") == 0


def nothing_outside(env: Env) -> None:
    """A name derived from a parameter never leaves its directory: nothing next to the work directory."""
    assert sorted(p.name for p in env.workdir.parent.iterdir()) == ["smartwaste", "work"]
    assert list(env.workdir.iterdir()) == []


def filed_under_production(env: Env) -> None:
    """One value: the record's environment, its directory, the index entry and the gates the guards evaluated."""
    meta = record_of(env)
    records = list((env.workdir / "reports").rglob("*.ipynb"))
    assert records[0].relative_to(env.workdir / "reports").parts[0] == "production"
    assert meta["environment"] == meta["parameters"]["environment"] == "production"
    entries = [json.loads(x) for x in (env.workdir / "reports" / "index.jsonl").read_text().splitlines()]
    assert [e["environment"] for e in entries] == ["production"]
    guards = next(s for s in meta["steps"] if s["step"] == "guards")
    assert guards["data"]["environment"] == "production"
    assert "staging" in {g["gate"] for g in guards["data"]["gates"]}, "production's gates were not evaluated"


def refused_as_other_environment(env: Env) -> None:
    meta = record_of(env)
    assert (meta["environment"], meta["outcome"]) == ("production", "failed"), meta["message"]
    assert "evaluated the gates of 'development'" in meta["message"]
    index = [json.loads(x) for x in (env.workdir / "reports" / "index.jsonl").read_text().splitlines()]
    assert [(e["run_id"], e["outcome"]) for e in index] == [(meta["run_id"], "failed")]


def no_revision_file(env: Env) -> None:
    assert not list(env.workdir.parent.rglob("evil*")), list(env.workdir.parent.rglob("evil*"))


def names_failed_revision(env: Env) -> None:
    assert "fa11ed000001" in record_of(env)["message"]


# -- the table ----------------------------------------------------------------------

DB = ("--database-url", "{url}", "--project", "{ini}")

CASES = [
    pytest.param(Case(("status", "--database-url", "postgresql://u@127.0.0.1:1/x", "--project", "{ini}"),
                      DATABASE, ("cannot reach",)), id="unreachable-host"),
    pytest.param(Case(("status", *DB), DATABASE, ("authentication failed",), setup=wrong_password,
                      absent=(WRONG_PASSWORD, ROLE_PASSWORD)), id="wrong-password"),
    pytest.param(Case(("status", *DB), DATABASE, ("does not exist", "nope_xyz"), setup=missing_database),
                 id="no-such-database"),
    pytest.param(Case(("status", *DB), DATABASE, ("nope_xyz", ":{port}/"), setup=missing_database),
                 id="no-such-database-names-real-port"),
    pytest.param(Case(("status", "--database-url", f"mysql://u:{URL_PW}@localhost/x", "--project", "{ini}"),
                      USAGE, ("unsupported", "mysql"), absent=(URL_PW,)), id="driver-mysql"),
    pytest.param(Case(("status", "--database-url", f"postgresql+pg8000://u:{URL_PW}@localhost/x", "--project", "{ini}"),
                      USAGE, ("unsupported", "pg8000"), absent=(URL_PW,)), id="driver-pg8000"),
    *[pytest.param(Case(("status", "--database-url", url, "--project", "{ini}"), code, expect, absent=(URL_PW,)), id=name)
      for name, url, code, expect in (
        ("url-port-not-a-number", f"postgresql://u:{URL_PW}@localhost:abc/x", USAGE, ("port is not a number",)),
        ("url-port-out-of-range", f"postgresql://u:{URL_PW}@localhost:99999/x", USAGE, ("port is not a number",)),
        ("url-several-hosts", f"postgresql://u:{URL_PW}@h1,h2/x", USAGE, ("several hosts",)),
        ("url-does-not-parse", f"postgresql://u:{URL_PW}@[::1/x", USAGE, ("cannot parse the database URL", "not shown")),
        ("url-password-query-parameter", f"postgresql://u@127.0.0.1:1/x?password={URL_PW}", DATABASE, ("cannot reach",)),
    )],
    pytest.param(Case(("status", "--database-url", "{url}", "--project", "/nonexistent/alembic.ini"),
                      PROJECT, ("no alembic.ini", "/nonexistent")), id="missing-alembic-ini"),
    pytest.param(Case(("status", *DB), PROJECT, ("alembic.ini",), setup=broken_ini), id="broken-alembic-ini"),
    pytest.param(Case(("status", *DB), PROJECT, ("bad000000001_broken.py",), setup=syntax_error, at_head=True),
                 id="migration-syntax-error"),
    pytest.param(Case(("status", *DB), STATE, ("heads", "merge"), setup=two_heads), id="two-heads"),
    pytest.param(Case(("status", *DB), STATE, ("deadbeef0000",), setup=unknown_db_revision, at_head=True),
                 id="db-at-unknown-revision"),
    pytest.param(Case(("status", *DB), STATE, ("deadbeef0000",), setup=unknown_db_revision, at_head=True,
                      absent=("swrun doctor",)),
                 id="db-at-unknown-revision-hint"),
    pytest.param(Case(("status", *DB, "--to", "nosuchrev"), USAGE, ("nosuchrev",)), id="unknown-target"),
    pytest.param(Case(("backup", *DB, "--backup-dir", "{blocker}/backups"), STEP_FAILED, ("not writable",),
                      setup=blocker_file, failed_step="backup", at_head=True), id="backup-dir-not-writable"),
    pytest.param(Case(("deploy", *DB, "--reports-dir", "{blocker}/reports"), USAGE, ("not writable",),
                      setup=blocker_file, check=nothing_written), id="reports-dir-not-writable"),
    pytest.param(Case(("run", *DB, "nosuch"), USAGE, ("no runbook", "nosuch"), check=workdir_empty),
                 id="no-such-runbook"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "traget", "abc"), USAGE,
                      ("unknown parameter", "did you mean 'target'"), check=workdir_empty), id="unknown-parameter"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "lock_wait_seconds", "abc"), USAGE,
                      ("lock_wait_seconds", "expects float"), check=workdir_empty), id="wrong-parameter-type"),
    pytest.param(Case(("deploy", *DB, "--env", "../evil"), USAGE, ("invalid environment",), check=workdir_empty),
                 id="env-path-traversal"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "target", INJECTION), USAGE, ("invalid target",),
                      setup=no_pwned_file, check=not_pwned), id="parameter-code-injection"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "target", INJECTION_BACKSLASH), USAGE,
                      ("control character",), setup=no_pwned_file, check=not_pwned),
                 id="parameter-code-injection-backslash"),
    pytest.param(Case(("deploy", *DB, "--steps", "status", "--operator", INJECTION_BACKSLASH), USAGE, ("control character",),
                      setup=no_pwned_file, check=not_pwned), id="operator-code-injection-newline"),
    pytest.param(Case(("deploy", *DB, "--steps", "status", "--to", "nosuchrev"), USAGE, ("unknown target revision",),
                      check=workdir_empty), id="unknown-target-in-runbook"),  # refused before any kernel: no record
    pytest.param(Case(("deploy", *DB), STEP_FAILED, ("fa11ed000001", "division by zero", "still at " + HEAD),
                      setup=failing_migration, at_head=True, failed_step="rehearse", check=names_failed_revision),
                 id="failing-migration"),
    pytest.param(Case(("status", "--database-url", "", "--project", "{ini}"), USAGE, ("database URL is empty",)),
                 id="empty-url"),
    pytest.param(Case(("status", "--database-url", "postgresql://postgres@/x;drop table users?host=/nonexistent", "--project", "{ini}"),
                      DATABASE, ("cannot",)), id="url-with-sql"),
    pytest.param(Case(("status", "--database-url", "{url}", "--project", "/tmp"), PROJECT, ("no alembic.ini",)),
                 id="project-dir-without-ini"),
    pytest.param(Case(("deploy", *DB), STEP_FAILED, ("already exists",), setup=enum_exists, failed_step="rehearse"),
                 id="enum-already-exists"),
    pytest.param(Case(("deploy", *DB), STEP_FAILED, ("NEVER modify an applied migration", "a1b2c3d4e5f6"),
                      setup=modified_applied, at_head=True, failed_step="guards"), id="modified-applied-migration"),
    pytest.param(Case(("deploy", *DB), STEP_FAILED, ("NEVER rename migration files", "d4e5f6a7b8c9"),
                      setup=renamed_applied, at_head=True, failed_step="guards"), id="renamed-applied-migration"),
    pytest.param(Case(("deploy", *DB, "--acknowledge", "no-such-finding"), STEP_FAILED, ("no-such-finding",),
                      at_head=True, failed_step="guards"), id="unknown-acknowledgement"),
    pytest.param(Case(("deploy", *DB, "--cell-timeout", "3"), STEP_FAILED, ("timed out",), setup=slow_migration,
                      at_head=True, failed_step="rehearse", check=no_scratch_database), id="cell-timeout"),
    pytest.param(Case(("backup", *DB, "--backup-dir", "{blocker}"), STEP_FAILED, ("disk for backup", "free in"),
                      setup=tiny_disk, at_head=True, failed_step="preflight", check=no_partial_backup),
                 id="backup-disk-too-small-preflight"),
    pytest.param(Case(("deploy", *DB, "--steps", "backup", "--backup-dir", "{blocker}"), STEP_FAILED,
                      ("cannot write the dump", "the disk is full"), setup=tiny_disk, at_head=True, failed_step="backup",
                      check=no_partial_backup), id="backup-disk-full"),
    pytest.param(Case(("reports", "list", "--reports-dir", "/nonexistent/reports"), USAGE, ("no reports directory",)),
                 id="reports-dir-missing"),
    pytest.param(Case(("reports", "show", "deadbeef", "--reports-dir", "reports"), USAGE, ("no run 'deadbeef'",),
                      setup=reports_with_index([])), id="reports-unknown-run"),
    pytest.param(Case(("reports", "verify", "--reports-dir", "reports"), 1, ("verification failed",),
                      setup=reports_with_index(["{not json"])), id="reports-corrupted-index"),
    pytest.param(Case(("run", *DB, "{blocker}"), USAGE, ("not a readable notebook",), setup=garbage_runbook),
                 id="runbook-not-a-notebook"),
    pytest.param(Case(("deploy", *DB, "--to"), USAGE, ("--to",), check=workdir_empty), id="missing-option-value"),
    pytest.param(Case(("deploy", *DB, "--env", ""), USAGE, ("invalid environment",), check=workdir_empty), id="empty-env"),
    # -- one environment, and the gates bound to it ------------------------------------------------
    *[pytest.param(Case(("run", *DB, *argv), USAGE, expect, check=workdir_empty), id=name) for name, argv, expect in (
        ("env-disagrees-with-parameter", ("deploy", "--env", "production", "-p", "environment", "development"),
         ("--env 'production' and -p environment 'development' disagree",)),
        ("env-parameter-disagrees-upwards", ("deploy", "--env", "development", "-p", "environment", "production"), ("disagree",)),
        ("env-disagrees-case-and-space", ("deploy", "--env", " Production ", "-p", "environment", "staging"), ("disagree",)),
        ("env-parameter-twice", ("deploy", "-p", "environment", "production", "-p", "environment", "development"),
         ("'environment' given twice",)),
        ("env-parameter-twice-same", ("deploy", "-p", "environment", "production", "-p", "environment", "production"),
         ("given twice",)),
        ("env-parameter-other-case", ("deploy", "-p", "Environment", "development"),
         ("unknown parameter 'Environment'", "did you mean 'environment'")),
        ("env-parameter-prod", ("deploy", "-p", "environment", "prod"), ("looks like production",)),
        ("env-parameter-empty", ("deploy", "-p", "environment", ""), ("invalid environment",)),
        ("env-parameter-traversal", ("deploy", "-p", "environment", "../production"), ("invalid environment",)),
        ("parameter-given-twice", ("deploy", "-p", "target", "head", "-p", "target", "base"), ("'target' given twice",)),
        ("run-id-parameter-traversal", ("deploy", "-p", "run_id", "../../x"), ("'run_id' is set by the runner",)),
        ("run-id-parameter-rollback", ("rollback", "-p", "run_id", "abc"), ("'run_id' is set by the runner",)),
        ("database-parameter", ("deploy", "-p", "database", "postgresql://elsewhere/x"), ("'database' is set by the runner",)),
        ("runbook-parameter", ("deploy", "-p", "runbook", "rollback"), ("'runbook' is set by the runner",)),
        ("reports-dir-disagrees", ("deploy", "--reports-dir", "a", "-p", "reports_dir", "b"), ("--reports-dir 'a'", "disagree")),
        ("backup-dir-disagrees", ("deploy", "--backup-dir", "a", "-p", "backup_dir", "b"), ("--backup-dir 'a'", "disagree")),
        ("operator-disagrees", ("deploy", "--operator", "alice", "-p", "operator", "mallory"), ("--operator 'alice'", "disagree")),
        ("project-disagrees", ("deploy", "-p", "project", "/elsewhere/alembic.ini"), ("--project", "disagree")),
        ("steps-parameter-typo", ("rollback", "-p", "steps", "rollback-pln"), ("unknown step 'rollback-pln'", "did you mean 'rollback-plan'")),
        ("steps-parameter-empty-item", ("deploy", "-p", "steps", "status,,upgrade"), ("empty step name",)),
        ("lock-timeout-sql", ("deploy", "-p", "lock_timeout", SQL_PAYLOAD), ("invalid lock_timeout",)),
        ("lock-timeout-negative", ("deploy", "-p", "lock_timeout", " -1s"), ("invalid lock_timeout",)),
        ("lock-timeout-unknown-unit", ("deploy", "-p", "lock_timeout", "10 parsecs"), ("invalid lock_timeout",)),
        ("lock-timeout-out-of-range", ("deploy", "-p", "lock_timeout", "99999999999s"), ("invalid lock_timeout",)),
        ("lock-timeout-rollback-sql", ("rollback", "-p", "lock_timeout", SQL_PAYLOAD), ("invalid lock_timeout",)),
        ("lock-timeout-fresh-sql", ("start_fresh", "-p", "lock_timeout", SQL_PAYLOAD), ("invalid lock_timeout",)),
        ("lock-timeout-enum-sql", ("enum_change", "-p", "lock_timeout", SQL_PAYLOAD), ("invalid lock_timeout",)),
        ("target-sql", ("deploy", "-p", "target", SQL_PAYLOAD), ("invalid target",)),
        ("target-too-long", ("deploy", "-p", "target", "a" * 2000), ("'target' is 2000 characters long",)),
        ("acknowledge-sql", ("deploy", "-p", "acknowledge", SQL_PAYLOAD), ("invalid acknowledge",)),
        ("override-gates-sql", ("deploy", "-p", "override_gates", SQL_PAYLOAD), ("invalid override_gates",)),
        ("steps-sql", ("deploy", "-p", "steps", SQL_PAYLOAD), ("unknown step",)),
        ("backup-mode-sql", ("deploy", "-p", "backup_mode", SQL_PAYLOAD), ("invalid backup_mode",)),
        ("rehearse-on-unknown", ("deploy", "-p", "rehearse_on", "elsewhere"), ("invalid rehearse_on",)),
        ("scratch-unknown", ("stamp", "-p", "target", "head", "-p", "scratch", "/tmp"), ("invalid scratch",)),
        ("rev-id-parameter-traversal", ("enum_change", "-p", "rev_id", "../../evil"), ("invalid rev_id",)),
        ("audit-period-unknown", ("audit", "-p", "period", "year"), ("invalid period",)),
        ("audit-environments-sql", ("audit", "-p", "environments", SQL_PAYLOAD), ("invalid environments",)),
        ("lock-wait-inf", ("deploy", "-p", "lock_wait_seconds", "inf"), ("must be a finite number",)),
        ("long-transaction-nan", ("deploy", "-p", "long_transaction_seconds", "nan"), ("must be a finite number",)),
        ("long-transaction-negative", ("deploy", "-p", "long_transaction_seconds", "-5"), ("between 0 and",)),
        ("watch-seconds-huge", ("deploy", "-p", "watch_seconds", "1e400"), ("must be a finite number",)),
        ("steps-back-negative", ("rollback", "-p", "steps_back", "-3"), ("between 0 and",)),
        ("int-with-5000-digits", ("rollback", "-p", "steps_back", "9" * 5000), ("expects int",)),
        ("bool-not-a-bool", ("deploy", "-p", "watch_fail_on_rise", "maybe"), ("expects bool",)),
        ("parameter-name-huge", ("deploy", "-p", "t" * 5000, "x"), ("unknown parameter", "5000 characters")),
        ("operator-parameter-huge", ("deploy", "-p", "operator", BIG), ("'operator' is 122880 characters long",)),
    )],
    *[pytest.param(Case((verb, *DB, *argv), USAGE, expect, check=workdir_empty), id=name) for name, verb, argv, expect in (
        ("env-prod-alias", "deploy", ("--env", "prod"), ("environment 'prod' looks like production", "use --env production")),
        ("env-production-suffix", "deploy", ("--env", "production-eu"), ("looks like production",)),
        ("env-cyrillic-lookalike", "deploy", ("--env", "prоduction"), ("invalid environment",)),
        ("env-newline", "upgrade", ("--env", "production\n"), ("control character",)),
        ("env-too-long", "deploy", ("--env", "e" * 100), ("100 characters long",)),
        ("env-prod-rollback", "rollback", ("--env", "PROD"), ("looks like production",)),
        ("env-prod-stamp", "stamp", ("head", "--env", "Prod"), ("looks like production",)),
        ("steps-typo", "deploy", ("--steps", "upgrde"), ("unknown step 'upgrde'", "did you mean 'upgrade'")),
        ("steps-only-commas", "deploy", ("--steps", ",,,"), ("empty step name",)),
        ("steps-empty", "deploy", ("--steps", ""), ("empty step name",)),
        ("steps-trailing-comma", "deploy", ("--steps", "status,"), ("empty step name",)),
        ("steps-named-twice", "deploy", ("--steps", "status,status"), ("'status' named twice",)),
        ("to-sql", "deploy", ("--to", "head'; CREATE TABLE pwned(); --"), ("invalid target",)),
        ("acknowledge-option-sql", "deploy", ("--acknowledge", SQL_PAYLOAD), ("invalid acknowledge",)),
        ("override-gates-option-sql", "upgrade", ("--override-gates", SQL_PAYLOAD), ("invalid override_gates",)),
        ("operator-huge", "deploy", ("--operator", BIG), ("'operator' is 122880 characters long",)),
        ("operator-newline", "backup", ("--operator", "alice\nenvironment: production"), ("control character",)),
        ("watch-nan", "deploy", ("--watch", "nan"), ("--watch", "expects seconds")),
        ("watch-negative", "deploy", ("--watch", "-1"), ("--watch", "expects seconds")),
        ("cell-timeout-inf", "deploy", ("--cell-timeout", "inf"), ("--cell-timeout", "expects seconds")),
        ("cell-timeout-negative", "backup", ("--cell-timeout", "-3"), ("--cell-timeout", "expects seconds")),
        ("kernel-timeout-nan", "upgrade", ("--kernel-timeout", "nan"), ("--kernel-timeout", "expects seconds")),
        ("rollback-steps-zero", "rollback", ("--steps", "0"), ("positive number of revisions",)),
        ("enum-rev-id-traversal", "enum-change", ("--enum", "user_role", "--table", "users", "--column", "role",
                                                  "--map", "CITIZEN", "--rev-id", "../../evil"), ("invalid rev_id",)),
        ("enum-name-newline", "enum-change", ("--enum", "user_role\n; drop", "--table", "users", "--column", "role",
                                              "--map", "CITIZEN"), ("control character",)),
        ("enum-mapping-huge", "enum-change", ("--enum", "user_role", "--table", "users", "--column", "role",
                                              "--map", "A=" + "B" * 70000), ("'mapping' is 70002 characters long",)),
        ("preview-lock-timeout-sql", "preview", ("--sql-file", "apply.sql", "--lock-timeout", SQL_PAYLOAD), ("invalid lock_timeout",)),
        ("preview-statement-timeout-sql", "preview", ("--sql-file", "apply.sql", "--statement-timeout", SQL_PAYLOAD),
         ("invalid statement_timeout",)),
        ("status-to-sql", "status", ("--to", SQL_PAYLOAD), ("invalid target",)),
    )],
    pytest.param(Case(("run", *DB, "./my book.ipynb"), USAGE, ("invalid runbook name 'my book'",), setup=runbook_copy("my book")),
                 id="runbook-file-name-unsafe"),
    pytest.param(Case(("deploy", *DB, "--reports-dir", LONG_PART), USAGE, ("has a part of 300 bytes",), check=workdir_empty),
                 id="reports-dir-part-too-long"),
    pytest.param(Case(("reports", "list", "--reports-dir", "d" * 5000), USAGE, ("--reports-dir is 5000 characters long",)),
                 id="reports-list-dir-too-long"),
    pytest.param(Case(("preview", *DB, "--out-dir", "o/" * 3000), USAGE, ("--out-dir is 6000 characters long",), check=workdir_empty),
                 id="preview-out-dir-too-long"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "backup_dir", LONG_PART), USAGE, ("has a part of 300 bytes",),
                      check=workdir_empty), id="backup-dir-parameter-part-too-long"),
    *[pytest.param(Case(("reports", action, "--reports-dir", "reports"), 1, ("index.jsonl is not a regular file", f"a {kind}"),
                        setup=index_is(kind)), id=f"reports-{action}-index-is-a-{kind.lower()}")
      for action in ("list", "verify") for kind in ("directory", "FIFO")],
    pytest.param(Case(("reports", "show", "../../etc", "--reports-dir", "reports"), USAGE, ("no run '../../etc'",),
                      setup=reports_with_index([])), id="reports-show-traversal"),
    pytest.param(Case(("reports", "list", "--since", "notadate", "--reports-dir", "reports"), USAGE, ("cannot read the time",),
                      setup=reports_with_index([])), id="reports-since-not-a-date"),
    pytest.param(Case(("revision", *DB, "-m", "x", "--rev-id", "../../evil"), USAGE, ("invalid rev_id",), check=no_revision_file),
                 id="revision-rev-id-traversal"),
    pytest.param(Case(("revision", *DB, "-m", "m" * 2000), USAGE, ("'message' is 2000 characters long",)),
                 id="revision-message-huge"),
    # -- rejected at a step, the record written and indexed ------------------------------------------
    pytest.param(Case(("deploy", *DB, *PROD_STEPS, "--steps", "upgrade"), STEP_FAILED, ("production requires a verified backup",),
                      failed_step="upgrade"), id="production-steps-upgrade-only"),
    pytest.param(Case(("run", *DB, "deploy", "-p", "environment", "production", "-p", "steps", "status,guards,upgrade"),
                      STEP_FAILED, ("staging",), failed_step="guards", check=filed_under_production),
                 id="production-from-parameter-runs-gates"),
    pytest.param(Case(("upgrade", *DB, "--env", "Production"), STEP_FAILED, ("staging",), failed_step="guards",
                      check=filed_under_production), id="production-any-case-runs-gates"),
    pytest.param(Case(("run", *DB, "--env", "production", "./custom.ipynb", "-p", "steps", "status,guards"), STEP_FAILED,
                      ("the guards step evaluated the gates of 'development', but the run is filed under 'production'",),
                      setup=runbook_with_fixed_environment, at_head=True, check=refused_as_other_environment),
                 id="guards-of-another-environment-not-filed"),
    pytest.param(Case(("deploy", *DB, "--steps", "status,guards", "--override-gates", "stagign"), STEP_FAILED,
                      ("unknown gate(s) in override_gates: stagign",), failed_step="guards"), id="override-gates-unknown"),
]


def _table_row(name: str, argv: list[str], proc, env: Env) -> None:
    """With $SWRUN_BAD_INPUT_TABLE set, append this case as a row of docs/bad-input.md's table."""
    import os

    out = os.environ.get("SWRUN_BAD_INPUT_TABLE")
    if not out:
        return
    line = next((x for x in proc.stderr.splitlines() if x.startswith("swrun: error:")), "")
    for long, short in ((env.url, "URL"), (env.db_url, "URL"), (str(env.project), "PROJECT"), (str(env.workdir), "."),
                        (str(env.pg.home), "STATE")):
        if long:
            line = line.replace(long, short)
            argv = [a.replace(long, short) for a in argv]
    shown = [(a.replace("\n", "\\n") if a.strip() == a else repr(a)) if len(a) <= 100 else f"{a[:24]}...({len(a)} characters)"
             for a in argv]  # an empty or space-padded argument quoted
    cell = " ".join(shown).replace("|", "\\|")
    with open(out, "a") as fh:
        fh.write(f"| {name} | `swrun {cell}` | {line.replace('|', chr(92) + '|')} | {proc.returncode} |\n")


@pytest.fixture(scope="module")
def shared_db(pg):
    """One database for the cases rejected before anything connects: none can change it (each checks it did not)."""
    yield from new_database(pg)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, pg, project_copy, workdir, request):
    cheap = case.code == USAGE and case.setup is None and not case.at_head
    db_url = request.getfixturevalue("shared_db" if cheap else "db_url")
    env = Env(pg, db_url, project_copy, workdir, url=db_url)
    if case.at_head:
        upgrade.run(RunContext(database_url=db_url, project_path=str(env.ini)))
        assert current_revision(db_url) == HEAD
    if case.setup:
        case.setup(env)
    before = current_revision(db_url)

    argv = [env.fill(arg) for arg in case.argv]
    try:
        proc = run_cli(*argv, cwd=workdir)
    finally:
        if env.cleanup:
            env.cleanup()
    shown = f"$ swrun {' '.join(argv)}\n--- exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"

    _table_row(request.node.callspec.id, argv, proc, env)
    assert proc.returncode == case.code, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    errors = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(errors) == 1, shown
    if case.code != STEP_FAILED:  # read-only verbs and rejected arguments: the error line is all there is
        assert proc.stderr.strip() == errors[0], shown
    for text in case.expect:
        assert env.fill(text) in errors[0], shown
    for text in case.absent:
        assert text not in proc.stdout + proc.stderr, shown
    assert current_revision(db_url) == before, "the database changed"
    if case.failed_step:
        assert f"FAILED at {case.failed_step}" in proc.stderr, shown
        meta = record_of(env)
        assert (meta["outcome"], meta["failed_step"]) == ("failed", case.failed_step)
        index = (env.workdir / "reports" / "index.jsonl").read_text().splitlines()
        assert [json.loads(x)["run_id"] for x in index] == [meta["run_id"]], "the record was not indexed"
    if case.check:
        case.check(env)


# -- no parameter value can run SQL ---------------------------------------------------------------

# bound (bind parameters, quoted identifiers) or operator paths: accepted as text, never spliced into SQL
FREE_TEXT = {"enum_name", "table", "column", "mapping", "since", "until"}
REQUIRED = {"target": "head", "enum_name": "user_role", "table": "users", "column": "role", "mapping": "CITIZEN"}


def test_every_string_parameter_is_checked_or_free_text():
    """Every declared string parameter of every runbook: the SQL payload is refused before any kernel,
    unless the parameter is free text that swrun only ever binds (checked through the CLI below)."""
    from swrun import params
    from swrun.errors import UsageError
    from swrun.runner import RUNBOOKS_DIR

    accepted, checked = set(), 0
    for path in sorted(RUNBOOKS_DIR.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for name, decl in params.declared(nb).items():
            if decl.type is not str or name in params.RUNNER_ONLY or name in params.RUN_OPTIONS:
                continue
            given = {k: v for k, v in REQUIRED.items() if k in params.declared(nb) and params.declared(nb)[k].required}
            given[name] = SQL_PAYLOAD
            checked += 1
            try:
                params.validate(nb, given)
            except UsageError:
                continue
            accepted.add(name)
    assert checked >= 30
    assert accepted <= FREE_TEXT, accepted - FREE_TEXT


def test_sql_payload_in_free_text_is_bound(pg, db_url, project_copy, workdir):
    """The payload in every free-text value that reaches the database: the operator (kept in the record and
    its database copy; a full deploy, rehearsal copy included) and the enum change's names and mapping.
    Each command succeeds with the value bound or fails in one line; the payload ran nowhere."""
    env = Env(pg, db_url, project_copy, workdir, url=db_url)
    PWNED.unlink(missing_ok=True)
    operator = SQL_PAYLOAD + '"); import os; os.system("touch /tmp/pwned_swrun") #'
    proc = run_cli("deploy", *[env.fill(a) for a in DB], "--operator", operator, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert record_of(env)["operator"] == operator
    assert "Traceback" not in proc.stderr
    no_sql_ran(env)
    not_pwned(env)
    assert current_revision(db_url) == HEAD

    for argv in (("enum-change", "--enum", SQL_PAYLOAD, "--table", SQL_PAYLOAD, "--column", SQL_PAYLOAD, "--map", SQL_PAYLOAD),
                 ("run", "audit", "-p", "since", SQL_PAYLOAD, "-p", "until", SQL_PAYLOAD)):
        proc = run_cli(argv[0], *[env.fill(a) for a in DB], *argv[1:], cwd=workdir)
        errors = [x for x in proc.stderr.splitlines() if x.startswith("swrun: error:")]
        assert proc.returncode != 0 and len(errors) == 1, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        no_sql_ran(env)
        assert current_revision(db_url) == HEAD
