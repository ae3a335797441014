"""Recovery: rollback, stamp, doctor, start fresh, the enum change procedure.

Every broken state is made for real (files deleted or renamed in a real git repository,
an enum created by hand, a second head, an edited alembic_version), and every command runs
through the real CLI, kernel and PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from conftest import HEAD, add_revision, current_revision, run_cli, scalar
from swrun.config import RunContext
from swrun.steps import upgrade

VERSIONS = Path("migrations") / "versions"
NOTES = "f7a8b9c0d1e2_add_pickup_notes.py"
ROLES = "select string_agg(id || '=' || role, ',' order by id) from users"


def at(db_url: str, project: Path, target: str = "head") -> None:
    """Migrate with swrun's upgrade step (so the integrity ledger knows every file)."""
    upgrade.run(RunContext(database_url=db_url, project_path=str(project / "alembic.ini")), target=target)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def git_repo(project: Path) -> None:
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "smartwaste migrations")


def doctor(db_url: str, project: Path, *extra: str):
    return run_cli("doctor", "--database-url", db_url, "--project", project / "alembic.ini", *extra)


def cli(verb: str, db_url: str, project: Path, *extra: str, cwd: Path):
    return run_cli(verb, "--database-url", db_url, "--project", project / "alembic.ini", *extra, cwd=cwd)


def meta(workdir: Path, proc) -> dict:
    """The run's metadata, from the record the runner named on the terminal."""
    path = re.search(r"record: (\S+\.ipynb)", proc.stderr).group(1)
    return nbformat.read(str(workdir / path), as_version=4).metadata["swrun"]


def steps(workdir: Path, proc) -> dict:
    return {s["step"]: s for s in meta(workdir, proc)["steps"]}


def scratch_databases() -> list[str]:
    from swrun.embedded import EmbeddedServer

    out = EmbeddedServer()._psql(EmbeddedServer().status(), "select datname from pg_database where datname ~ '^swrun_(stamp|doctor)_'")
    return out.split()


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return errors[0]


# -- doctor: one test per troubleshooting case ---------------------------------------------------------


def test_doctor_finds_nothing_on_a_healthy_database(db_url, project_copy):
    at(db_url, project_copy)
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no problems found" in proc.stdout
    assert proc.stdout.count("✓") == 5


def test_doctor_target_database_is_not_up_to_date(db_url, project_copy):
    at(db_url, project_copy, "c7d8e9f0a1b2")
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    assert "[1] Target database is not up to date" in proc.stdout
    assert "the database is at c7d8e9f0a1b2; 3 revision(s) pending: d4e5f6a7b8c9" in proc.stdout
    assert "e1f2a3b4c5d6" in proc.stdout and HEAD in proc.stdout and "swrun deploy" in proc.stdout
    assert current_revision(db_url) == "c7d8e9f0a1b2"


def test_doctor_finds_a_deleted_file_in_git_history_and_the_restore_works(db_url, project_copy):
    git_repo(project_copy)
    at(db_url, project_copy)
    git(project_copy, "rm", "-q", str(VERSIONS / NOTES))
    git(project_copy, "commit", "-qm", "remove the pickup notes migration")
    deleting = git(project_copy, "rev-parse", "--short", "HEAD").strip()

    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"[1] Can't locate revision identified by '{HEAD}'" in out
    assert f"the ledger (swrun.migration_ledger) knows its file: {VERSIONS / NOTES}" in out
    assert f"{VERSIONS / NOTES} was deleted in {deleting} \"remove the pickup notes migration\"" in out
    assert "the file in git is the one that was applied (same sha256)" in out
    assert "A migration file was deleted (the guide: NEVER delete migration files)" in out
    restore = f"git -C {project_copy} checkout {deleting}^ -- {VERSIONS / NOTES}"
    assert f"$ {restore}" in out
    assert current_revision(db_url) == HEAD  # doctor changed nothing

    subprocess.run(restore, shell=True, check=True, capture_output=True)
    again = doctor(db_url, project_copy)
    assert again.returncode == 0 and "no problems found" in again.stdout, again.stdout


def test_doctor_finds_a_renamed_file_in_git_history_and_the_restore_works(db_url, project_copy):
    git_repo(project_copy)
    at(db_url, project_copy)
    (project_copy / "migrations" / "attic").mkdir()
    git(project_copy, "mv", str(VERSIONS / NOTES), f"migrations/attic/{NOTES}")
    git(project_copy, "commit", "-qm", "move old migrations to the attic")
    renaming = git(project_copy, "rev-parse", "--short", "HEAD").strip()

    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"[1] Can't locate revision identified by '{HEAD}'" in out
    assert f"{VERSIONS / NOTES} was renamed to migrations/attic/{NOTES} in {renaming}" in out
    assert "A migration file was renamed (the guide: NEVER rename migration files)" in out
    restore = f"git -C {project_copy} mv migrations/attic/{NOTES} {VERSIONS / NOTES}"
    assert f"$ {restore}" in out

    subprocess.run(restore, shell=True, check=True, capture_output=True)
    assert doctor(db_url, project_copy).returncode == 0


def test_doctor_says_when_the_revision_is_on_another_branch(db_url, project_copy):
    git_repo(project_copy)
    main = git(project_copy, "rev-parse", "--abbrev-ref", "HEAD").strip()
    git(project_copy, "checkout", "-qb", "feature/inspections")
    add_revision(project_copy, "1a5bec000001", HEAD, "op.execute('create table inspections (id int)')",
                 "op.execute('drop table inspections')", slug="add_inspections")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "inspections")
    at(db_url, project_copy)
    git(project_copy, "checkout", "-q", main)

    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    assert "[1] Can't locate revision identified by '1a5bec000001'" in proc.stdout
    assert "which the checked-out branch does not contain (it is on feature/inspections): you're on the wrong branch" in proc.stdout
    assert f"$ git -C {project_copy} checkout feature/inspections" in proc.stdout


def test_doctor_finds_a_middle_file_deleted_in_the_working_tree(db_url, project_copy):
    """Not committed, and the project no longer loads (a revision's parent is missing)."""
    git_repo(project_copy)
    at(db_url, project_copy)
    middle = VERSIONS / "c7d8e9f0a1b2_add_super_admin_role.py"
    (project_copy / middle).unlink()

    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert "[1] Can't locate revision identified by 'c7d8e9f0a1b2'" in out
    assert "the parent (down_revision) of d4e5f6a7b8c9, is defined by no file" in out
    assert f"{middle} is deleted in the working tree (not committed" in out
    assert f"$ git -C {project_copy} checkout HEAD -- {middle}" in out
    assert out.count("not checked: the project does not load (a revision's file is missing") == 4  # the checks that need the history say why they did not run


def test_doctor_finds_a_renamed_applied_file_the_guards_would_block(db_url, project_copy):
    at(db_url, project_copy)
    (project_copy / VERSIONS / NOTES).rename(project_copy / VERSIONS / f"{HEAD}_notes.py")
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    assert "[1] A migration file was renamed" in proc.stdout
    assert f"revision {HEAD} was applied from {NOTES}" in proc.stdout and f"it is now in {HEAD}_notes.py" in proc.stdout
    assert "the project is not in a git repository" not in proc.stdout  # the ledger alone is evidence enough here
    assert f"mv {VERSIONS / f'{HEAD}_notes.py'} {VERSIONS / NOTES}" in proc.stdout


@pytest.mark.parametrize("values, fix", [
    ("'CITIZEN', 'DRIVER', 'ADMIN'", "user_role.create(op.get_bind(), checkfirst=True)"),
    ("'CITIZEN'", "its values (CITIZEN) differ from the migration's (CITIZEN, DRIVER, ADMIN), so keeping it would be wrong"),
], ids=["same-values", "other-values"])
def test_doctor_enum_already_exists(db_url, project_copy, values, fix):
    scalar(db_url, f"create type user_role as enum ({values}); select 1")
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert "Enum 'user_role' already exists" in out
    assert ("pending revision 3b11939b5277 (3b11939b5277_initial_schema.py, line 26: "
            "`user_role.create(op.get_bind(), checkfirst=False)`) creates it") in out
    assert "used by no column" in out and "$ DROP TYPE user_role;" in out
    assert fix in out

    scalar(db_url, "drop type user_role; select 1")  # what doctor said to do
    assert "Enum 'user_role' already exists" not in doctor(db_url, project_copy).stdout


def test_doctor_enum_created_by_create_table_shows_create_type_false(db_url, project_copy):
    at(db_url, project_copy)
    add_revision(project_copy, "5a1e00000001", HEAD,
                 "op.create_table('shifts', sa.Column('id', sa.Integer, primary_key=True), "
                 "sa.Column('kind', sa.Enum('DAY', 'NIGHT', name='shift_kind')))",
                 "op.drop_table('shifts'); sa.Enum(name='shift_kind').drop(op.get_bind())", slug="add_shifts")
    scalar(db_url, "create type shift_kind as enum ('DAY', 'NIGHT'); select 1")
    proc = doctor(db_url, project_copy)
    assert "Enum 'shift_kind' already exists" in proc.stdout
    assert "pending revision 5a1e00000001" in proc.stdout
    assert "postgresql.ENUM(name='shift_kind', create_type=False)" in proc.stdout
    assert ".create(op.get_bind(), checkfirst=True)" in proc.stdout


def test_doctor_multiple_heads_and_the_merge_command_works(db_url, project_copy):
    at(db_url, project_copy)
    add_revision(project_copy, "aaaa00000001", HEAD, "pass", slug="left")
    add_revision(project_copy, "bbbb00000002", HEAD, "pass", slug="right")
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert "the migrations have 2 heads: aaaa00000001 (aaaa00000001_left.py), bbbb00000002 (bbbb00000002_right.py); " \
           f"they branch after {HEAD}" in out
    command = re.search(r"\$ (cd .* && alembic merge -m 'merge heads' aaaa00000001 bbbb00000002)", out).group(1)

    alembic = Path(shutil.which("alembic") or Path(__import__("sys").executable).with_name("alembic"))
    subprocess.run(command.replace("alembic merge", f"{alembic} merge"), shell=True, check=True, capture_output=True)
    again = doctor(db_url, project_copy)
    assert "Multiple heads: no: one head" in again.stdout, again.stdout


def test_doctor_alembic_version_out_of_sync_names_the_revision_the_schema_matches(db_url, project_copy, workdir):
    at(db_url, project_copy)
    scalar(db_url, "update alembic_version set version_num = 'e1f2a3b4c5d6'; select 1")
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1
    out = proc.stdout
    assert "alembic_version out of sync with the schema" in out
    assert "a scratch database built from the migrations up to e1f2a3b4c5d6 differs from the live schema" in out
    assert f"the live schema matches revision {HEAD} of the migrations" in out
    assert f"$ swrun stamp {HEAD}" in out
    assert "not yet: the schema already has the changes up to" in out  # the pending finding is corrected
    assert re.search(r"table\s+public\.route_stops\s+only in the live database", out)
    assert current_revision(db_url) == "e1f2a3b4c5d6" and scratch_databases() == []

    kept = cli("doctor", db_url, project_copy, "--record", cwd=workdir)  # the runbook, with a record
    assert kept.returncode == 1, kept.stderr
    done = steps(workdir, kept)
    assert [s for s in done] == ["doctor-heads", "doctor-revisions", "doctor-pending", "doctor-enums", "doctor-sync"]
    assert done["doctor-sync"]["outcome"] == "warning" and done["doctor-sync"]["data"]["matches"] == [HEAD]
    assert current_revision(db_url) == "e1f2a3b4c5d6" and scratch_databases() == []


# -- stamp --------------------------------------------------------------------------------------------


def test_stamp_refuses_a_mismatched_schema_and_stamps_a_matching_one(db_url, project_copy, workdir):
    at(db_url, project_copy)
    scalar(db_url, "update alembic_version set version_num = 'e1f2a3b4c5d6'; select 1")

    refused = cli("stamp", db_url, project_copy, "e1f2a3b4c5d6", cwd=workdir)
    assert refused.returncode == 9
    assert "differs from revision e1f2a3b4c5d6's in 12 object(s)" in one_error_line(refused)
    assert re.search(r"table\s+public\.route_stops\s+only in the live database", refused.stdout)  # the table, in the terminal
    check = steps(workdir, refused)["stamp-check"]
    assert check["outcome"] == "failed" and not check["data"]["matched"]
    assert {"kind": "table", "object": "public.route_stops", "difference": "only in the live database",
            "migrations": "", "live": ""} in check["data"]["differences"]
    assert steps(workdir, refused)["stamp"]["outcome"] == "skipped"
    assert current_revision(db_url) == "e1f2a3b4c5d6" and scratch_databases() == []

    accepted = cli("stamp", db_url, project_copy, HEAD, cwd=workdir)
    assert accepted.returncode == 0, accepted.stderr
    assert f"stamped e1f2a3b4c5d6 -> {HEAD}; the schema matched" in accepted.stderr
    assert current_revision(db_url) == HEAD and scratch_databases() == []
    m = meta(workdir, accepted)
    assert (m["revision_before"], m["revision_after"]) == (["e1f2a3b4c5d6"], [HEAD])
    assert scalar(db_url, f"select state from swrun.migration_ledger where revision = '{HEAD}'") == "applied"


def test_stamp_override_is_kept_in_the_record(db_url, project_copy, workdir):
    at(db_url, project_copy)
    proc = cli("stamp", db_url, project_copy, "e1f2a3b4c5d6", "--override", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "override used" in proc.stderr
    m = meta(workdir, proc)
    assert m["parameters"]["override"] is True
    done = {s["step"]: s for s in m["steps"]}
    assert done["stamp-check"]["outcome"] == "warning" and done["stamp"]["data"]["override_used"] is True
    assert current_revision(db_url) == "e1f2a3b4c5d6"
    assert scalar(db_url, f"select state from swrun.migration_ledger where revision = '{HEAD}'") == "downgraded"


def test_stamp_refuses_a_revision_of_another_branch(db_url, project_copy, workdir):
    add_revision(project_copy, "b0b000000001", "e1f2a3b4c5d6", "pass", slug="other_branch")
    at(db_url, project_copy, HEAD)
    proc = cli("stamp", db_url, project_copy, "b0b000000001", cwd=workdir)
    assert proc.returncode == 9
    line = one_error_line(proc)
    assert "revision b0b000000001 is on another branch" in line and f"head(s) {HEAD}" in line
    assert current_revision(db_url) == HEAD


def test_stamp_unknown_revision(db_url, project_copy, workdir):
    at(db_url, project_copy)
    proc = cli("stamp", db_url, project_copy, "nosuchrev", cwd=workdir)
    # bad input: refused before any kernel starts (exit 2), no record
    assert proc.returncode == 2 and "unknown target revision 'nosuchrev'" in one_error_line(proc)
    assert current_revision(db_url) == HEAD and not (workdir / "reports").exists()


def test_stamp_drops_its_scratch_database_when_the_build_fails(db_url, project_copy, workdir):
    at(db_url, project_copy)
    add_revision(project_copy, "fa11ed000001", HEAD, "op.execute('select 1/0')", slug="divide_by_zero")
    proc = cli("stamp", db_url, project_copy, "fa11ed000001", cwd=workdir)
    assert proc.returncode == 9
    line = one_error_line(proc)
    assert "the migrations cannot be built from an empty database: fa11ed000001 (fa11ed000001_divide_by_zero.py:" in line
    assert "division by zero" in line and "[swrun] baseline" in line and "not stamped" not in proc.stdout + proc.stderr
    assert scratch_databases() == []
    assert current_revision(db_url) == HEAD


# -- rollback -----------------------------------------------------------------------------------------------


def test_rollback_backs_up_downgrades_verifies_and_records(db_url, project_copy, workdir):
    at(db_url, project_copy)
    proc = cli("rollback", db_url, project_copy, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert current_revision(db_url) == "e1f2a3b4c5d6"
    done = steps(workdir, proc)
    assert list(done) == ["rollback-plan", "backup", "rollback", "rollback-verify"]
    assert done["rollback-plan"]["data"]["undo"] == [HEAD]
    assert {"object": "public.route_stops", "what the downgrade does": "drops the table", "rows now": 9} \
        in done["rollback-plan"]["data"]["data_at_risk"]
    assert Path(done["backup"]["data"]["file"]).exists()
    assert done["rollback-verify"]["outcome"] in ("ok", "warning")
    m = meta(workdir, proc)
    assert (m["revision_before"], m["revision_after"]) == ([HEAD], ["e1f2a3b4c5d6"])
    assert scalar(db_url, f"select state from swrun.migration_ledger where revision = '{HEAD}'") == "downgraded"

    to = cli("rollback", db_url, project_copy, "--to", "a1b2c3d4e5f6", cwd=workdir)
    assert to.returncode == 0, to.stderr
    assert current_revision(db_url) == "a1b2c3d4e5f6"
    assert steps(workdir, to)["rollback"]["data"]["before"] == ["e1f2a3b4c5d6"]


@pytest.mark.parametrize("args, says", [
    (("--to", "nosuchrev"), "unknown target revision 'nosuchrev'"),
    (("--steps", "9"), "cannot roll back 9 revision(s): the database is 6 revision(s) above base (at e1f2a3b4c5d6)"),
    (("--to", HEAD), f"revision {HEAD} is not below the database's revision e1f2a3b4c5d6"),
], ids=["unknown-target", "past-base", "not-below"])
def test_rollback_bad_input_changes_nothing(db_url, project_copy, workdir, args, says):
    at(db_url, project_copy, "e1f2a3b4c5d6")
    proc = cli("rollback", db_url, project_copy, *args, cwd=workdir)
    assert says in one_error_line(proc)
    if "unknown target" in says:  # bad input: refused before any kernel starts, no record
        assert proc.returncode == 2 and "FAILED" not in proc.stderr
    else:
        assert proc.returncode == 9 and "FAILED at rollback-plan" in proc.stderr
    assert current_revision(db_url) == "e1f2a3b4c5d6"
    assert not (workdir / "backups").exists() or not list((workdir / "backups").iterdir())


def test_rollback_in_production_needs_a_backup(db_url, project_copy, workdir):
    at(db_url, project_copy)
    proc = run_cli("run", "--database-url", db_url, "--project", project_copy / "alembic.ini", "--env", "production",
                   "rollback", "-p", "steps", "rollback-plan,rollback", cwd=workdir)
    assert proc.returncode == 9 and "verified backup" in one_error_line(proc)
    assert current_revision(db_url) == HEAD


# -- start fresh ------------------------------------------------------------------------------------------------


def test_start_fresh_rebuilds_a_development_database(db_url, project_copy, workdir):
    at(db_url, project_copy)
    scalar(db_url, "insert into bins (code, latitude, longitude, capacity_liters) values ('BIN-LOCAL', 1, 1, 10); select 1")
    proc = cli("start-fresh", db_url, project_copy, "--env", "dev", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert current_revision(db_url) == HEAD
    assert scalar(db_url, "select count(*) from bins where code = 'BIN-LOCAL'") == 0  # dropped and rebuilt
    assert scalar(db_url, "select count(*) from bins") == 8
    done = steps(workdir, proc)
    assert len(done["start-fresh"]["data"]["downgraded"]) == 7 and len(done["start-fresh"]["data"]["applied"]) == 7


@pytest.mark.parametrize("env", ["production", "staging"])
def test_start_fresh_is_refused_outside_development(db_url, project_copy, workdir, env):
    at(db_url, project_copy)
    proc = cli("start-fresh", db_url, project_copy, "--env", env, cwd=workdir)
    assert proc.returncode == 9
    line = one_error_line(proc)
    assert "NEVER do this in production!" in line and f"the environment is '{env}'" in line
    assert current_revision(db_url) == HEAD and scalar(db_url, "select count(*) from bins") == 8
    done = steps(workdir, proc)
    assert done["fresh-gate"]["outcome"] == "blocked"
    assert all(done[s]["outcome"] == "skipped" for s in ("backup", "start-fresh", "fresh-verify"))


# -- the enum change --------------------------------------------------------------------------------------------


def test_enum_change_keeps_every_row_with_its_mapped_value_and_rolls_back(db_url, project_copy, workdir):
    at(db_url, project_copy)
    before = dict(pair.split("=") for pair in scalar(db_url, ROLES).split(","))
    assert sorted(before.values()) == ["ADMIN", "CITIZEN", "CITIZEN", "DRIVER", "DRIVER", "SUPER_ADMIN"]
    mapping = {"CITIZEN": "RESIDENT", "DRIVER": "COLLECTOR", "ADMIN": "ADMIN", "SUPER_ADMIN": "SUPER_ADMIN"}

    proc = cli("enum-change", db_url, project_copy, "--enum", "user_role", "--table", "users", "--column", "role",
               "--map", "CITIZEN=RESIDENT", "--map", "DRIVER=COLLECTOR", "--map", "ADMIN", "--map", "SUPER_ADMIN", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    after = dict(pair.split("=") for pair in scalar(db_url, ROLES).split(","))
    assert after == {uid: mapping[role] for uid, role in before.items()}  # every row, each with its mapped value
    assert scalar(db_url, "select enum_range(null::user_role)::text") == "{RESIDENT,COLLECTOR,ADMIN,SUPER_ADMIN}"
    assert scalar(db_url, "select column_default from information_schema.columns where table_name = 'users' "
                          "and column_name = 'role'") == "'RESIDENT'::user_role"
    done = steps(workdir, proc)
    assert [s for s, r in done.items() if r["outcome"] == "skipped"] == []
    per_value = {r["value"]: (r["from"], r["rows before"], r["rows after"], r["result"]) for r in done["enum-check"]["data"]["per_value"]}
    assert per_value == {"RESIDENT": ("CITIZEN", 2, 2, "ok"), "COLLECTOR": ("DRIVER", 2, 2, "ok"),
                         "ADMIN": ("ADMIN", 1, 1, "ok"), "SUPER_ADMIN": ("SUPER_ADMIN", 1, 1, "ok")}
    assert all(c["result"] == "pass" for c in done["enum-check"]["data"]["checks"])
    assert re.search(r"COLLECTOR\s+DRIVER\s+2\s+2\s+ok", proc.stdout)  # the counts, in the terminal
    revision = done["enum-generate"]["data"]["revision"]
    generated = project_copy / VERSIONS / f"{revision}_change_enum_user_role.py"
    assert generated.exists() and current_revision(db_url) == revision
    source = generated.read_text()
    for step in ("# 1. create a new enum type", "# 2. add a new column", "# 3. migrate data", "# 4. drop the old column",
                 "# 5. rename the new column", "# 6. drop the old enum type"):
        assert step in source
    assert "WHEN 'DRIVER' THEN 'COLLECTOR'" in source and "WHEN 'COLLECTOR' THEN 'DRIVER'" in source

    back = cli("rollback", db_url, project_copy, cwd=workdir)  # the reverse mapping (one-to-one)
    assert back.returncode == 0, back.stderr
    assert dict(pair.split("=") for pair in scalar(db_url, ROLES).split(",")) == before
    assert scalar(db_url, "select enum_range(null::user_role)::text") == "{CITIZEN,DRIVER,ADMIN,SUPER_ADMIN}"
    healthy = doctor(db_url, project_copy)  # the schema is the one the migrations build at f7a8b9c0d1e2 again
    assert "alembic_version out of sync with the schema: no:" in healthy.stdout, healthy.stdout


def test_enum_change_many_to_one_has_a_downgrade_that_refuses(db_url, project_copy, workdir):
    at(db_url, project_copy)
    proc = cli("enum-change", db_url, project_copy, "--enum", "user_role", "--table", "users", "--column", "role",
               "--map", "CITIZEN", "--map", "DRIVER", "--map", "ADMIN", "--map", "SUPER_ADMIN=ADMIN", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert scalar(db_url, "select count(*) from users where role = 'ADMIN'") == 2
    assert scalar(db_url, "select count(*) from users") == 6
    revision = current_revision(db_url)

    back = cli("rollback", db_url, project_copy, cwd=workdir)
    assert back.returncode == 9
    line = one_error_line(back)
    assert "is not one-to-one (ADMIN, SUPER_ADMIN all became ADMIN)" in line and "restore the backup" in line
    assert current_revision(db_url) == revision and scalar(db_url, "select count(*) from users where role = 'ADMIN'") == 2


@pytest.mark.parametrize("maps, says", [
    (("DRIVER=COLLECTOR", "CITIZEN", "ADMIN"), "the mapping leaves SUPER_ADMIN of enum user_role unmapped (1 row(s) hold it)"),
    (("DRIVER=COLLECTOR", "CITIZEN", "ADMIN", "SUPER_ADMIN", "NOPE=X"), "NOPE is not a value of enum user_role"),
], ids=["unmapped-value", "unknown-value"])
def test_enum_change_bad_mapping_writes_and_changes_nothing(db_url, project_copy, workdir, maps, says):
    at(db_url, project_copy)
    files = sorted(p.name for p in (project_copy / VERSIONS).iterdir())
    args = [a for m in maps for a in ("--map", m)]
    proc = cli("enum-change", db_url, project_copy, "--enum", "user_role", "--table", "users", "--column", "role", *args, cwd=workdir)
    assert proc.returncode == 9
    assert says in one_error_line(proc) and "FAILED at enum-plan" in proc.stderr
    assert sorted(p.name for p in (project_copy / VERSIONS).iterdir()) == files
    assert current_revision(db_url) == HEAD
    assert scalar(db_url, "select enum_range(null::user_role)::text") == "{CITIZEN,DRIVER,ADMIN,SUPER_ADMIN}"


def test_enum_change_generate_only_then_the_same_change_reuses_the_file(db_url, project_copy, workdir):
    at(db_url, project_copy)
    maps = ("--map", "CITIZEN", "--map", "DRIVER=COLLECTOR", "--map", "ADMIN", "--map", "SUPER_ADMIN")
    first = cli("enum-change", db_url, project_copy, "--enum", "user_role", "--table", "users", "--column", "role", *maps,
                "--generate-only", cwd=workdir)
    assert first.returncode == 0, first.stderr
    revision = steps(workdir, first)["enum-generate"]["data"]["revision"]
    assert current_revision(db_url) == HEAD  # written, not applied
    second = cli("enum-change", db_url, project_copy, "--enum", "user_role", "--table", "users", "--column", "role", *maps,
                 cwd=workdir)
    assert second.returncode == 0, second.stderr
    done = steps(workdir, second)
    assert done["enum-generate"]["data"]["reused"] is True
    assert done["enum-generate"]["data"]["revision"] == revision == current_revision(db_url)
    assert len(list((project_copy / VERSIONS).glob("*_change_enum_user_role.py"))) == 1
    assert done["enum-check"]["outcome"] == "ok"


# -- scratch builds: one Alembic run, the baseline, what doctor and stamp say when they cannot build ---------


def _ctx(db_url: str, ini: Path):
    return RunContext(database_url=db_url, project_path=str(ini))


def test_scratch_build_is_one_alembic_run(db_url, project_copy, tmp_path, monkeypatch):
    from swrun.database import normalize_url
    from swrun.migrations import Project
    from swrun.recovery import scratch

    runs = tmp_path / "env-runs"
    env_py = project_copy / "migrations" / "env.py"
    env_py.write_text(f"open({str(runs)!r}, 'a').write('run\\n')\n" + env_py.read_text())
    project = Project.load(project_copy / "alembic.ini")
    built = scratch.build(project, normalize_url(db_url), project.heads, every_state=True)
    assert runs.read_text().count("run") == 1  # seven revisions, one env.py run, as `alembic upgrade head`
    assert current_revision(db_url) == HEAD
    assert list(built.states) == ["<base>", *project.topo_order(set(project.revisions))]
    assert not built.states["<base>"]["tables"] and ("public", "users") in built.states["3b11939b5277"]["tables"]


LEGACY = '''import sqlalchemy as sa

metadata = sa.MetaData()
sa.Table("legacy", metadata, sa.Column("id", sa.Integer, primary_key=True))
'''


@pytest.fixture
def on_app_tables(tmp_path, project_copy):
    """A chain whose first revision alters a table the application creates itself (as mlflow's does)."""
    project = tmp_path / "onapp"
    (project / "migrations" / "versions").mkdir(parents=True)
    shutil.copy(project_copy / "migrations" / "env.py", project / "migrations" / "env.py")
    shutil.copy(project_copy / "migrations" / "script.py.mako", project / "migrations" / "script.py.mako")
    (project / "alembic.ini").write_text((project_copy / "alembic.ini").read_text().replace(
        "metadata = swrun.demo.smartwaste.models:metadata", ""))
    (project / "h4_legacy_models.py").write_text(LEGACY)
    add_revision(project, "0a0000000001", None, "op.add_column('legacy', sa.Column('extra', sa.Integer()))",
                 "op.drop_column('legacy', 'extra')", slug="extend_legacy")
    return project


def _on_app_tables_at_head(db_url: str, project: Path) -> None:
    from swrun.database import make_engine, normalize_url
    from swrun.migrations import Project

    engine = make_engine(normalize_url(db_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("create table legacy (id serial primary key)")
    engine.dispose()
    Project.load(project / "alembic.ini").apply(normalize_url(db_url), "head")


def test_a_chain_on_application_tables_is_said_in_one_line_then_built_with_the_baseline(db_url, on_app_tables):
    from swrun.recovery import doctor, scratch, stamp

    _on_app_tables_at_head(db_url, on_app_tables)
    ini = on_app_tables / "alembic.ini"
    results = doctor.diagnose(_ctx(db_url, ini))
    sync = next(r for r in results if r.step == "doctor-sync")
    assert sync.outcome == "failed" and not sync.data["differences"]  # no false drift
    assert "the migrations cannot be built from an empty database: 0a0000000001 (0a0000000001_extend_legacy.py:" in sync.summary
    assert "set [swrun] baseline" in sync.summary
    said = doctor.text(results, _ctx(db_url, ini))
    assert "no problems found" not in said and "could not run: alembic_version out of sync" in said
    with pytest.raises(scratch.BuildFailed, match="cannot be built from an empty database: 0a0000000001"):
        stamp.check(_ctx(db_url, ini), "head")

    ini.write_text(ini.read_text().replace("[swrun]\n", "[swrun]\nbaseline = h4_legacy_models:metadata\n", 1))
    results = doctor.diagnose(_ctx(db_url, ini))
    assert [r.outcome for r in results] == ["ok"] * 5, [r.summary for r in results]
    assert doctor.text(results, _ctx(db_url, ini)).endswith("no problems found")
    assert stamp.check(_ctx(db_url, ini), "head").data["matched"]


def test_doctor_reads_a_custom_version_table_as_alembic_does(db_url, project_copy):
    from swrun.recovery import doctor

    env_py = project_copy / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace('"compare_type": True}', '"compare_type": True, "version_table": "smartwaste_version"}'))
    at(db_url, project_copy)
    assert scalar(db_url, "select version_num from smartwaste_version") == HEAD
    results = doctor.diagnose(_ctx(db_url, project_copy / "alembic.ini"))
    by = {r.step: r for r in results}
    assert by["doctor-pending"].summary == f"no: the database is at {HEAD}, up to date"
    assert by["doctor-sync"].outcome == "ok", by["doctor-sync"].summary
    assert doctor.text(results, _ctx(db_url, project_copy / "alembic.ini")).endswith("no problems found")


def test_doctor_reports_a_cycle_as_status_does(db_url, project_copy):
    first = project_copy / VERSIONS / "3b11939b5277_initial_schema.py"
    first.write_text(re.sub(r"(?m)^down_revision.*$", f"down_revision = {HEAD!r}", first.read_text(), count=1))
    status = run_cli("status", "--database-url", db_url, "--project", project_copy / "alembic.ini")
    said = one_error_line(status).removeprefix("swrun: error: ")
    assert "Cycle is detected in revisions" in said
    proc = doctor(db_url, project_copy)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert f"evidence: {said}" in proc.stdout and "no problems found" not in proc.stdout


def test_doctor_is_read_only_on_the_live_database(db_url, project_copy):
    """Drift found, and the revision the schema matches named (the second scratch build to head):
    alembic_version, ledger, row counts and schema of the live database unchanged."""
    from swrun.recovery import doctor
    from test_scratch_safety import state

    at(db_url, project_copy)
    scalar(db_url, "alter table pickups drop column notes; drop table route_stops; select 1")  # e1f2a3b4c5d6's schema
    before = state(db_url)
    results = doctor.diagnose(_ctx(db_url, project_copy / "alembic.ini"))
    sync = next(r for r in results if r.step == "doctor-sync")
    assert sync.data["matches"] == ["e1f2a3b4c5d6"] and sync.data["differences"]
    assert state(db_url) == before
    assert scratch_databases() == []


# -- rollback of one branch --------------------------------------------------------------------------------


def test_rollback_of_one_branch_undoes_only_that_branch(db_url, project_copy):
    from swrun.database import normalize_url
    from swrun.recovery import rollback

    add_revision(project_copy, "e0000000001a", HEAD, "op.create_table('expand_t', sa.Column('id', sa.Integer, primary_key=True))",
                 "op.drop_table('expand_t')", slug="expand1", extra_header="branch_labels = ('expand',)")
    add_revision(project_copy, "e0000000002a", "e0000000001a", "op.add_column('expand_t', sa.Column('x', sa.Integer))",
                 "op.drop_column('expand_t', 'x')", slug="expand2")
    add_revision(project_copy, "c0000000001a", HEAD, "op.create_table('contract_t', sa.Column('id', sa.Integer, primary_key=True))",
                 "op.drop_table('contract_t')", slug="contract1", extra_header="branch_labels = ('contract',)")
    ctx = _ctx(db_url, project_copy / "alembic.ini")
    ctx.project.apply(normalize_url(db_url), "heads")
    for to in ("expand@-1", "e0000000001a"):
        planned = rollback.plan(ctx, to=to)
        assert planned.data["undo"] == ["e0000000002a"], to
        assert sorted(planned.data["after"]) == ["c0000000001a", "e0000000001a"]
        assert "roll back 1 revision(s)" in planned.summary
        assert planned.data["data_at_risk"] == [{"object": "public.expand_t.x", "what the downgrade does":
                                                 "drops the column (rows now: its non-null values)", "rows now": 0}]
    done = rollback.run(ctx, planned.data["target"], planned.data["current"])
    assert sorted(done.data["after"]) == ["c0000000001a", "e0000000001a"]
    assert rollback.verify(ctx, planned.data["target"], done, planned.data["after"]).outcome == "ok"
    assert scalar(db_url, "select count(*) from contract_t") == 0  # the other branch's table is still there
