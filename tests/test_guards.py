"""Guards: the guide's NEVER and ALWAYS rules, enforced before anything changes.

Real PostgreSQL, real kernels, real squawk: each NEVER rule is broken on purpose and the
deploy must stop with the rule named and the database as it was.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from conftest import new_database, HEAD, add_revision, current_revision, run_cli, scalar
from swrun import database, schema
from swrun.config import RunContext
from swrun.guards import NEVER_DELETE, NEVER_ENUM, NEVER_MODIFY, NEVER_RENAME, enums, ledger, lint
from swrun.migrations import Project
from swrun.steps import guards as guards_step
from swrun.steps import upgrade

MIDDLE = "e1f2a3b4c5d6"  # the demo's next-to-last revision: deploys stop here so the last one stays pending
VERSIONS = "migrations/versions"


# -- helpers ------------------------------------------------------------------------------------


def records(workdir: Path, env: str | None = None) -> list[Path]:
    root = workdir / "reports" / (env or "")
    return sorted(root.rglob("*.ipynb"), key=lambda p: p.name)


def meta(path: Path) -> dict:
    return json.loads(path.read_text())["metadata"]["swrun"]


def step(path: Path, name: str) -> dict:
    return next(s for s in meta(path)["steps"] if s["step"] == name)


def state(url: str) -> dict:
    """What 'the database is unchanged' means: revision, application schema, rows, enum values, ledger."""
    eng = database.make_engine(database.normalize_url(url))
    try:
        with eng.connect() as conn:
            return {"revision": current_revision(url), "schema": schema.snapshot(conn), "rows": schema.row_counts(conn),
                    "ledger": sorted(tuple(map(str, e.__dict__.values())) for e in ledger.read(conn).values())}
    finally:
        eng.dispose()


def ledger_rows(url: str) -> dict[str, ledger.Entry]:
    eng = database.make_engine(database.normalize_url(url))
    try:
        with eng.connect() as conn:
            return ledger.read(conn)
    finally:
        eng.dispose()


def deploy(url, project: Path | None = None, *args, env: str = "development", extra_env=None):
    argv = ["deploy", "--database-url", url, "--env", env, *args]
    if project is not None:
        argv += ["--project", project / "alembic.ini"]
    return run_cli(*argv, env=extra_env)


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def second_db(pg):
    yield from new_database(pg)


@pytest.fixture
def at_middle(db_url, project_copy, workdir):
    """The demo project deployed (by swrun, so the ledger knows its files) up to MIDDLE."""
    proc = deploy(db_url, project_copy, "--to", MIDDLE)
    assert proc.returncode == 0, proc.stderr
    assert current_revision(db_url) == MIDDLE
    assert set(ledger_rows(db_url)) == {"3b11939b5277", "5e1f0c2a9d41", "a1b2c3d4e5f6", "c7d8e9f0a1b2", "d4e5f6a7b8c9", MIDDLE}
    return state(db_url)


# -- the ledger ---------------------------------------------------------------------------------


def test_ledger_records_each_applied_file_adopts_older_ones_and_marks_downgrades(db_url, project_copy):
    project = Project.load(project_copy / "alembic.ini")
    project.apply(database.normalize_url(db_url), "a1b2c3d4e5f6")  # applied without swrun: no ledger yet
    assert ledger_rows(db_url) == {}
    ctx = RunContext(database_url=db_url, project_path=str(project_copy / "alembic.ini"), run_id="run000000001")
    result = upgrade.run(ctx, target=MIDDLE)
    assert result.data["ledger"] == {"recorded": 3, "adopted": 3, "accepted": 0, "retired": 0}
    rows = ledger_rows(db_url)
    assert {r: e.source for r, e in rows.items()} == {
        "3b11939b5277": "adopted", "5e1f0c2a9d41": "adopted", "a1b2c3d4e5f6": "adopted",
        "c7d8e9f0a1b2": "upgrade", "d4e5f6a7b8c9": "upgrade", MIDDLE: "upgrade"}
    for rev, entry in rows.items():
        path = project.file_of(rev)
        assert (entry.filename, entry.path, entry.state, entry.run_id) == (path.name, f"{VERSIONS}/{path.name}", "applied", "run000000001")
        assert entry.sha256 == ledger.file_sha256(path)

    down = upgrade.run(RunContext(database_url=db_url, project_path=str(project_copy / "alembic.ini"), run_id="run000000002"),
                       target="c7d8e9f0a1b2", direction="downgrade")
    assert down.data["ledger"] == {"downgraded": 2}
    rows = ledger_rows(db_url)
    assert (rows[MIDDLE].state, rows["d4e5f6a7b8c9"].state, rows["c7d8e9f0a1b2"].state) == ("downgraded", "downgraded", "applied")
    # a downgraded revision's file is no longer "applied here": editing it is not a finding
    with open(project.file_of(MIDDLE), "a") as fh:
        fh.write("\n# reworked after the downgrade\n")
    found = ledger.scan(Project.locate(project_copy / "alembic.ini"))
    assert ledger.check(found, rows, ("c7d8e9f0a1b2",), project.ancestors(("c7d8e9f0a1b2",))) == []


def test_integrity_check_names_rule_and_file(project_copy, tmp_path):
    project = Project.load(project_copy / "alembic.ini")
    applied = ("3b11939b5277", "5e1f0c2a9d41", "a1b2c3d4e5f6")
    entries = {rev: ledger.Entry(rev, project.file_of(rev).name, "x", ledger.file_sha256(project.file_of(rev)), None, "r1",
                                 "upgrade", "applied") for rev in applied}
    versions = project_copy / VERSIONS
    (versions / "a1b2c3d4e5f6_add_user_preferences.py").rename(versions / "a1b2c3d4e5f6_prefs.py")
    with open(versions / "5e1f0c2a9d41_seed_sample_data.py", "a") as fh:
        fh.write("# touched\n")
    (versions / "3b11939b5277_initial_schema.py").unlink()
    found = ledger.scan(Project.locate(project_copy / "alembic.ini"))
    by_id = {f.id: f for f in ledger.check(found, entries, ("a1b2c3d4e5f6",), None)}
    assert set(by_id) == {"deleted:3b11939b5277", "modified:5e1f0c2a9d41", "renamed:a1b2c3d4e5f6"}
    assert by_id["deleted:3b11939b5277"].never == NEVER_DELETE and "3b11939b5277_initial_schema.py" in by_id["deleted:3b11939b5277"].message
    assert by_id["modified:5e1f0c2a9d41"].never == NEVER_MODIFY and "5e1f0c2a9d41_seed_sample_data.py" in by_id["modified:5e1f0c2a9d41"].message
    renamed = by_id["renamed:a1b2c3d4e5f6"]
    assert renamed.never == NEVER_RENAME and "a1b2c3d4e5f6_add_user_preferences.py" in renamed.message and "a1b2c3d4e5f6_prefs.py" in renamed.message
    # without a ledger: the database at a revision no file defines, a parent no file defines; deletions both
    orphan, parent = ledger.check(found, {}, ("feedfacecafe",), None)
    assert (orphan.id, orphan.never) == ("deleted:feedfacecafe", NEVER_DELETE)
    assert (parent.id, parent.never) == ("deleted:3b11939b5277", NEVER_DELETE) and "the parent of 5e1f0c2a9d41" in parent.message


def test_naming_convention_warns_on_outliers_and_is_quiet_for_another_consistent_convention(project_copy, tmp_path):
    path = add_revision(project_copy, "0a0a0a0a0a0a", HEAD, "pass", "pass", slug="x")
    path.rename(path.with_name("add_more_things.py"))
    found = ledger.scan(Project.locate(project_copy / "alembic.ini"))
    [warning] = ledger.naming(found)
    assert (warning.id, warning.severity, warning.file) == ("naming:0a0a0a0a0a0a", "warning", "add_more_things.py")

    dated = tmp_path / "dated"
    shutil.copytree(project_copy, dated)
    for f in (dated / VERSIONS).glob("*.py"):
        f.rename(f.with_name(f"2026_01_{f.name}"))  # the project's own convention, used everywhere
    assert ledger.naming(ledger.scan(Project.locate(dated / "alembic.ini"))) == []


# -- lint of the source -------------------------------------------------------------------------

DANGEROUS = '''\
"""everything the guide warns about"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0d0d0d0d0d0d"
down_revision = "f7a8b9c0d1e2"

status = postgresql.ENUM("NEW", "DONE", name="job_status")


def upgrade():
    op.drop_table("route_stops")
    op.drop_column("pickups", "notes")
    op.rename_table("bins", "containers")
    op.alter_column("users", "full_name", new_column_name="name")
    op.alter_column("users", "email", type_=sa.Text())
    op.add_column("users", sa.Column("tier", sa.Integer(), nullable=False))
    op.add_column("users", sa.Column("score", sa.Integer(), nullable=False, server_default="0"))
    op.alter_column("pickups", "weight_kg", nullable=False)
    op.create_index("ix_users_tier", "users", ["tier"])
    op.create_index("ix_users_score", "users", ["score"], postgresql_concurrently=True)
    op.create_table("jobs", sa.Column("id", sa.Integer(), primary_key=True))
    op.create_index("ix_jobs_id", "jobs", ["id"])
    with op.batch_alter_table("collection_routes") as batch_op:
        batch_op.drop_column("scheduled_date")
    op.execute("ALTER TABLE users DROP COLUMN created_at")
    op.execute(sa.text("ALTER TYPE user_role RENAME VALUE 'DRIVER' TO 'COLLECTOR'"))
    op.execute("ALTER TYPE user_role RENAME TO user_role_old")
    op.execute("CREATE TYPE user_role AS ENUM ('CITIZEN', 'ADMIN', 'COLLECTOR')")
    op.execute("ALTER TYPE user_role ADD VALUE 'AUDITOR'")
    op.execute("UPDATE users SET role = 'AUDITOR' WHERE id = 1")
    op.execute("DELETE FROM pg_enum WHERE enumlabel = 'X'")


def downgrade():
    """Nothing to undo."""
    pass
'''


def test_source_rules_find_each_danger(tmp_path):
    path = tmp_path / "0d0d0d0d0d0d_everything.py"
    path.write_text(DANGEROUS)
    state = lint.EnumState({"user_role": ["CITIZEN", "DRIVER", "ADMIN", "SUPER_ADMIN"]})
    found = {f.id: f for f in lint.lint_file(path, "0d0d0d0d0d0d", state)}
    rev = "0d0d0d0d0d0d"
    expected = {
        f"drop-table:{rev}:route_stops": "danger",
        f"drop-column:{rev}:pickups.notes": "danger",
        f"rename-table:{rev}:bins": "danger",
        f"rename-column:{rev}:users.full_name": "danger",
        f"type-change:{rev}:users.email": "danger",
        f"not-null-without-default:{rev}:users.tier": "danger",
        f"set-not-null:{rev}:pickups.weight_kg": "warning",
        f"index-not-concurrent:{rev}:ix_users_tier": "warning",
        f"drop-column:{rev}:collection_routes.scheduled_date": "danger",
        f"drop-column:{rev}:users.created_at": "danger",
        f"enum-value-renamed:{rev}:user_role.DRIVER": "danger",
        f"enum-value-removed:{rev}:user_role.SUPER_ADMIN": "danger",
        f"enum-add-value-in-transaction:{rev}:user_role.AUDITOR": "danger",
        f"enum-catalog-write:{rev}": "danger",
        f"downgrade-empty:{rev}": "warning",
    }
    assert {k: f.severity for k, f in found.items()} == expected
    # an added column with a default, an index built concurrently or on a table made here: fine
    assert not any("users.score" in k or "ix_users_score" in k or "ix_jobs_id" in k for k in found)
    assert found[f"enum-value-renamed:{rev}:user_role.DRIVER"].never == NEVER_ENUM
    assert found[f"enum-catalog-write:{rev}"].never == NEVER_ENUM
    assert found[f"enum-value-removed:{rev}:user_role.SUPER_ADMIN"].never is None  # the procedure, not an in-place change
    assert state.values["user_role"] == ["CITIZEN", "ADMIN", "COLLECTOR", "AUDITOR"]


def test_enum_rules_add_value_autocommit_reorder_and_missing_downgrade(tmp_path):
    def lint_body(body: str, downgrade: str | None = "    op.execute('select 1')\n", enums_before=None):
        path = tmp_path / "1e1e1e1e1e1e_x.py"
        text = "from alembic import op\nimport sqlalchemy as sa\nrevision = '1e1e1e1e1e1e'\ndown_revision = None\n\n\ndef upgrade():\n" \
            + textwrap.indent(textwrap.dedent(body), "    ")
        if downgrade is not None:
            text += "\n\ndef downgrade():\n" + downgrade
        path.write_text(text)
        return {f.id: f.severity for f in lint.lint_file(path, "1e1e1e1e1e1e", lint.EnumState(dict(enums_before or {})))}

    rev = "1e1e1e1e1e1e"
    safe = """
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE user_role ADD VALUE 'AUDITOR'")
        op.execute("UPDATE users SET role = 'AUDITOR' WHERE id = 1")
    """
    assert lint_body(safe) == {}
    assert lint_body("op.execute(\"ALTER TYPE user_role ADD VALUE 'AUDITOR'\")\n") == \
        {f"enum-add-value-no-autocommit:{rev}:user_role.AUDITOR": "warning"}
    reordered = "op.execute(\"ALTER TYPE s RENAME TO s_old\")\nop.execute(\"CREATE TYPE s AS ENUM ('B', 'A')\")\n"
    assert lint_body(reordered, enums_before={"s": ["A", "B"]}) == {f"enum-values-reordered:{rev}:s": "danger"}
    assert lint_body("pass\n", downgrade=None) == {f"downgrade-missing:{rev}": "warning"}


def test_the_demo_has_no_danger_finding():
    project = Project.load()
    chain = project.topo_order(set(project.revisions))
    findings, state = lint.lint_revisions(project, chain, {})
    # a fresh database: every table is created in the range, so nothing is a danger (or a slow index) there
    assert [(f.id, f.severity) for f in findings] == []
    assert state.values == {"user_role": ["CITIZEN", "DRIVER", "ADMIN", "SUPER_ADMIN"]}
    # a database at the revision before: bins exists, and its new index is built without CONCURRENTLY
    last, _ = lint.lint_revisions(project, ["e1f2a3b4c5d6"], {})
    assert [(f.id, f.severity) for f in last] == [("index-not-concurrent:e1f2a3b4c5d6:ix_bins_last_emptied_at", "warning")]


# -- enums --------------------------------------------------------------------------------------


def test_enum_drift_kinds_and_add_value_order():
    db = {"s": ["OPEN", "CLOSED"], "t": ["A", "B", "C"], "u": ["X", "Y"], "v": ["P", "Q"], "only_db": ["Z"]}
    models = {"s": ["OPEN", "PENDING", "CLOSED", "ARCHIVED"], "t": ["A", "C"], "u": ["X", "Y2"], "v": ["Q", "P"], "only_models": ["W"]}
    changes = {(c.type, c.kind): c.values for c in enums.drift(models, db)}
    assert changes == {("s", "added"): ["PENDING", "ARCHIVED"], ("t", "removed"): ["B"], ("u", "renamed"): ["Y->Y2"],
                       ("v", "reordered"): []}
    [added] = [c for c in enums.drift(models, db) if c.kind == "added"]
    assert enums.add_value_statements(added) == [
        "ALTER TYPE s ADD VALUE IF NOT EXISTS 'PENDING' AFTER 'OPEN'",
        "ALTER TYPE s ADD VALUE IF NOT EXISTS 'ARCHIVED' AFTER 'CLOSED'",
    ]
    first = enums.EnumChange("Weird Type", "added", ["it's"], ["it's", "a"], ["a"])
    assert enums.add_value_statements(first) == ["ALTER TYPE \"Weird Type\" ADD VALUE IF NOT EXISTS 'it''s' BEFORE 'a'"]
    procedure = enums.findings(enums.drift(models, db), when="deploy")
    assert {f.id for f in procedure} == {"enum-drift:s:added", "enum-drift:t:removed", "enum-drift:u:renamed", "enum-drift:v:reordered"}
    assert all("enum change procedure" in f.message for f in procedure if not f.id.endswith(":added"))


# -- squawk -------------------------------------------------------------------------------------


def test_squawk_reviews_each_revision_with_stable_ids():
    project = Project.load()
    rendered = project.offline_sql(database.normalize_url("postgresql://u@localhost/x"), (), "head")
    found = lint.squawk(rendered)
    again = lint.squawk(rendered)
    assert [f.id for f in found] == [f.id for f in again]
    by_id = {f.id: f for f in found}
    index = by_id["squawk:require-concurrent-index-creation:e1f2a3b4c5d6:9"]
    assert (index.severity, index.source) == ("warning", "squawk") and "CREATE INDEX ix_bins_last_emptied_at" in index.message
    assert all(f.severity in ("info", "warning") for f in found)  # danger is swrun's rules' to say
    assert not any(f.rule == "require-lock-timeout" for f in found)  # swrun sets lock_timeout itself
    assert any(f.rule == "require-lock-timeout" for f in lint.squawk(rendered, lock_timeout_set=False))


def test_squawk_missing_or_failing_is_one_readable_error(tmp_path, monkeypatch):
    rendered = Project.load().offline_sql(database.normalize_url("postgresql://u@localhost/x"), (), "head")
    monkeypatch.setenv(lint.SQUAWK_ENV, str(tmp_path / "nope"))
    with pytest.raises(lint.LintError, match="squawk not found"):
        lint.squawk(rendered)
    broken = tmp_path / "squawk"
    broken.write_text("#!/bin/sh\necho 'thread main panicked at parser' >&2\nexit 101\n")
    broken.chmod(0o755)
    monkeypatch.setenv(lint.SQUAWK_ENV, str(broken))
    with pytest.raises(lint.LintError, match=r"squawk failed \(exit 101\): thread main panicked"):
        lint.squawk(rendered)


# -- the NEVER rules through a real deploy -----------------------------------------------------


def test_never_modify_an_applied_migration_blocks_then_an_acknowledgement_lets_it_through(db_url, project_copy, workdir, at_middle):
    edited = project_copy / VERSIONS / "c7d8e9f0a1b2_add_super_admin_role.py"
    edited.write_text(edited.read_text().replace("IF NOT EXISTS 'SUPER_ADMIN'", "IF NOT EXISTS 'SUPER_ADMIN' -- edited"))
    proc = deploy(db_url, project_copy)
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert NEVER_MODIFY in line and "c7d8e9f0a1b2_add_super_admin_role.py" in line and "--acknowledge modified:c7d8e9f0a1b2" in line
    assert "FAILED at guards" in proc.stderr and "Traceback" not in proc.stderr
    assert state(db_url) == at_middle
    record = records(workdir)[-1]
    assert (meta(record)["outcome"], meta(record)["failed_step"]) == ("failed", "guards")
    assert {s["step"]: s["outcome"] for s in meta(record)["steps"]}["upgrade"] == "skipped"

    ok = deploy(db_url, project_copy, "--acknowledge", "modified:c7d8e9f0a1b2")
    assert ok.returncode == 0, ok.stderr
    assert current_revision(db_url) == HEAD
    record = records(workdir)[-1]
    assert meta(record)["parameters"]["acknowledge"] == "modified:c7d8e9f0a1b2"
    checked = step(record, "guards")["data"]
    assert checked["acknowledged"] == ["modified:c7d8e9f0a1b2"]
    assert next(f for f in checked["findings"] if f["id"] == "modified:c7d8e9f0a1b2")["acknowledged"] is True
    setup = next(c for c in nbformat.read(str(record), as_version=4).cells if "setup" in c.metadata.get("tags", []))
    assert "modified:c7d8e9f0a1b2" in setup.outputs[0]["data"]["text/plain"]  # the run header shows it
    entry = ledger_rows(db_url)["c7d8e9f0a1b2"]
    assert (entry.source, entry.sha256) == ("acknowledged", ledger.file_sha256(edited))  # accepted once, not every run
    assert deploy(db_url, project_copy).returncode == 0


def test_never_rename_migration_files_blocks(db_url, project_copy, workdir, at_middle):
    versions = project_copy / VERSIONS
    (versions / "d4e5f6a7b8c9_promote_platform_admin.py").rename(versions / "d4e5f6a7b8c9_promote_admin.py")
    proc = deploy(db_url, project_copy)
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert NEVER_RENAME in line and "d4e5f6a7b8c9_promote_platform_admin.py" in line and "d4e5f6a7b8c9_promote_admin.py" in line
    assert state(db_url) == at_middle


@pytest.mark.parametrize("gone", ["c7d8e9f0a1b2_add_super_admin_role.py", f"{MIDDLE}_add_bin_last_emptied.py"],
                         ids=["middle-of-the-chain", "the-database-revision"])
def test_never_delete_migration_files_blocks(gone, db_url, project_copy, workdir, at_middle):
    (project_copy / VERSIONS / gone).unlink()
    proc = deploy(db_url, project_copy)
    assert proc.returncode == 9, proc.stderr
    assert NEVER_DELETE in error_line(proc)  # status cannot load the chain, and says which rule
    guards_line = next(line for line in proc.stderr.splitlines() if "guards blocked" in line)
    assert NEVER_DELETE in guards_line and gone in guards_line
    assert "Traceback" not in proc.stderr
    assert state(db_url) == at_middle
    steps = {s["step"]: s["outcome"] for s in meta(records(workdir)[-1])["steps"]}
    assert (steps["status"], steps["guards"], steps["backup"], steps["upgrade"]) == ("failed", "blocked", "skipped", "skipped")


def test_never_change_enum_values_blocks_in_every_environment(db_url, project_copy, workdir):
    assert deploy(db_url, project_copy).returncode == 0
    add_revision(project_copy, "e0e0e0e0e0e0", HEAD, "op.execute(\"ALTER TYPE user_role RENAME VALUE 'DRIVER' TO 'COLLECTOR'\")",
                 "op.execute(\"ALTER TYPE user_role RENAME VALUE 'COLLECTOR' TO 'DRIVER'\")", slug="rename_driver")
    before = state(db_url)
    proc = deploy(db_url, project_copy)
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert NEVER_ENUM in line and "'DRIVER'" in line and "enum change procedure" in line
    assert state(db_url) == before
    assert scalar(db_url, "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum e join pg_type t "
                          "on t.oid = e.enumtypid where t.typname = 'user_role'") == "CITIZEN,DRIVER,ADMIN,SUPER_ADMIN"


# -- review in the record -----------------------------------------------------------------------


def test_squawk_findings_appear_in_the_preview_section_of_the_record(db_url, workdir):
    proc = deploy(db_url)
    assert proc.returncode == 0, proc.stderr
    assert "squawk: 32 finding(s) (1 warning, 31 info)" in proc.stderr
    record = records(workdir)[-1]
    nb = nbformat.read(str(record), as_version=4)
    preview_cell = next(c for c in nb.cells if "step:preview" in c.metadata.get("tags", []))
    shown = "\n".join(o.get("data", {}).get("text/plain", "") for o in preview_cell.outputs)
    assert "squawk:require-concurrent-index-creation:e1f2a3b4c5d6:9" in shown and "CREATE INDEX ix_bins_last_emptied_at" in shown
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in preview_cell.outputs)
    assert "<b>squawk</b>" in html
    preview = step(record, "preview")["data"]
    assert {f["source"] for f in preview["squawk"]} == {"squawk"} and len(preview["squawk"]) == 32
    guards_section = nb.cells[nb.cells.index(preview_cell) + 1]
    assert guards_section.cell_type == "markdown" and all(rule in guards_section.source for rule in
                                                          (NEVER_RENAME, NEVER_DELETE, "NEVER modify an applied migration", "NEVER change enum values"))
    checked = step(record, "guards")
    assert checked["outcome"] == "warning" and checked["data"]["counts"] == {"danger": 0, "warning": 1, "info": 31}  # the lint: bins is created in the range


# -- production gates ---------------------------------------------------------------------------


def test_production_needs_a_staging_deploy_of_the_same_migration_set(db_url, second_db, workdir):
    blocked = deploy(db_url, None, env="production")
    assert blocked.returncode == 9, blocked.stderr
    line = error_line(blocked)
    assert "no successful staging deploy of this migration set" in line and "swrun deploy --env staging" in line
    assert current_revision(db_url) is None

    staging = deploy(second_db, None, env="staging")
    assert staging.returncode == 0, staging.stderr
    staging_run = meta(records(workdir, "staging")[-1])["run_id"]

    allowed = deploy(db_url, None, env="production")
    assert allowed.returncode == 0, allowed.stderr
    assert current_revision(db_url) == HEAD
    record = records(workdir, "production")[-1]
    gate_rows = {g["gate"]: g for g in step(record, "guards")["data"]["gates"]}
    assert gate_rows["staging"]["result"] == "pass" and staging_run in gate_rows["staging"]["detail"]
    assert {g: gate_rows[g]["result"] for g in ("never", "danger", "locks", "long-transactions", "disk")} == dict.fromkeys(
        ("never", "danger", "locks", "long-transactions", "disk"), "pass")
    assert meta(record)["fingerprint"] == meta(records(workdir, "staging")[-1])["fingerprint"]


def test_the_staging_gate_takes_the_index_word_not_a_record_file(db_url, second_db, workdir):
    staging = deploy(second_db, None, env="staging")
    assert staging.returncode == 0, staging.stderr
    record = records(workdir, "staging")[-1]
    original = record.read_bytes()
    run_id = meta(record)["run_id"]
    # the record edited after its run (one byte of its operator): it no longer counts
    nb = json.loads(original)
    nb["metadata"]["swrun"]["operator"] += "x"
    record.write_text(json.dumps(nb))
    blocked = deploy(db_url, None, env="production")
    assert blocked.returncode == 9, blocked.stderr
    line = error_line(blocked)
    assert f"staging run {run_id}: its record " in line and "was edited after it was indexed" in line, line
    assert current_revision(db_url) is None
    # a copy dropped in under another name, the indexed one gone: not in the index, so no staging run
    forged = record.with_name(record.name.replace(run_id, "f0f0f0f0f0f0"))
    forged.write_bytes(original)
    record.unlink()
    blocked = deploy(db_url, None, env="production")
    assert blocked.returncode == 9, blocked.stderr
    assert f"staging run {run_id}: its record " in error_line(blocked) and "is missing" in error_line(blocked)
    forged.unlink()
    record.write_bytes(original)  # as indexed: the gate passes again
    allowed = deploy(db_url, None, env="production")
    assert allowed.returncode == 0, allowed.stderr
    gate = next(g for g in step(records(workdir, "production")[-1], "guards")["data"]["gates"] if g["gate"] == "staging")
    assert gate["result"] == "pass" and run_id in gate["detail"]


def test_a_staging_record_the_index_never_had_does_not_pass_the_gate(db_url, second_db, workdir):
    staging = deploy(second_db, None, env="staging")
    assert staging.returncode == 0, staging.stderr
    record = records(workdir, "staging")[-1]
    (workdir / "reports" / "index.jsonl").rename(workdir / "elsewhere.jsonl")  # a store whose index lacks the run
    blocked = deploy(db_url, None, env="production")
    assert blocked.returncode == 9, blocked.stderr
    line = error_line(blocked)
    assert f"{record.relative_to(workdir)} claims one, but the record store's index has no such run" in line, line
    assert current_revision(db_url) is None


def test_a_changed_file_needs_staging_again_and_an_override_is_recorded(db_url, second_db, project_copy, workdir):
    assert deploy(second_db, project_copy, env="staging").returncode == 0
    add_revision(project_copy, "1a1a1a1a1a1a", HEAD, "op.execute('select 1')", "op.execute('select 1')", slug="noop")
    blocked = deploy(db_url, project_copy, env="production")
    assert blocked.returncode == 9 and "staging" in error_line(blocked)
    assert current_revision(db_url) is None
    forced = deploy(db_url, project_copy, "--override-gates", "staging", env="production")
    assert forced.returncode == 0, forced.stderr
    record = records(workdir, "production")[-1]
    assert meta(record)["parameters"]["override_gates"] == "staging"
    checked = step(record, "guards")
    assert checked["data"]["overrides"] == ["staging"] and "overridden: staging" in checked["summary"]
    assert next(g for g in checked["data"]["gates"] if g["gate"] == "staging")["result"] == "overridden"


def test_danger_blocks_production_until_acknowledged_but_not_staging(db_url, second_db, project_copy, workdir):
    # both databases at the demo's head first: on a fresh database pickups is created in the pending
    # range, and dropping a column of a table the same range creates is no danger
    assert deploy(second_db, project_copy, env="staging").returncode == 0
    first = deploy(db_url, project_copy, env="production")
    assert first.returncode == 0, first.stderr
    add_revision(project_copy, "2b2b2b2b2b2b", HEAD, "op.drop_column('pickups', 'notes')",
                 "op.add_column('pickups', sa.Column('notes', sa.Text()))", slug="drop_pickup_notes")
    staging = deploy(second_db, project_copy, env="staging")
    assert staging.returncode == 0, staging.stderr
    blocked = deploy(db_url, project_copy, env="production")
    assert blocked.returncode == 9
    line = error_line(blocked)
    assert "danger" in line and "drop-column:2b2b2b2b2b2b:pickups.notes" in line and "--acknowledge" in line
    assert current_revision(db_url) == HEAD
    allowed = deploy(db_url, project_copy, "--acknowledge", "drop-column:2b2b2b2b2b2b:pickups.notes", env="production")
    assert allowed.returncode == 0, allowed.stderr
    assert current_revision(db_url) == "2b2b2b2b2b2b"
    danger_gate = next(g for g in step(records(workdir, "production")[-1], "guards")["data"]["gates"] if g["gate"] == "danger")
    assert danger_gate == {"gate": "danger", "result": "pass", "detail": "1 danger finding(s), all acknowledged", "proceed": ""}


def test_lock_holders_and_long_transactions_block_production(db_url, project_copy, workdir, at_middle):
    eng = database.make_engine(database.normalize_url(db_url))
    conn = eng.connect()
    try:
        conn.exec_driver_sql("begin; lock table pickups in access share mode")
        holder = conn.exec_driver_sql("select pg_backend_pid()").scalar()
        proc = run_cli("run", "deploy", "--database-url", db_url, "--project", project_copy / "alembic.ini", "--env", "production",
                       "-p", "override_gates", "staging", "-p", "long_transaction_seconds", "0")
    finally:
        conn.exec_driver_sql("rollback")
        conn.close()
        eng.dispose()
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert f"pid {holder}" in line and "on pickups" in line and "--override-gates locks" in line
    assert "long-transactions" in line
    assert state(db_url) == at_middle
    record = records(workdir, "production")[-1]
    results = {g["gate"]: g["result"] for g in step(record, "guards")["data"]["gates"]}
    assert (results["locks"], results["long-transactions"], results["staging"]) == ("blocked", "blocked", "overridden")
    assert "pickups" in step(record, "guards")["data"]["tables"]


def test_production_upgrade_needs_the_guards_step(db_url, workdir):
    proc = deploy(db_url, None, "--steps", "preflight,status,backup,upgrade", env="production")
    assert proc.returncode == 9
    assert "requires the guards step" in error_line(proc)
    assert current_revision(db_url) is None


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["squawk-missing", "squawk-failing", "unknown-ack", "unknown-gate", "unparsable-file"])
def test_bad_input_is_one_line_and_no_deploy(case, db_url, project_copy, workdir, tmp_path, at_middle):
    extra_env, args, expect = None, [], ""
    if case == "squawk-missing":
        extra_env, expect = {"SWRUN_SQUAWK": str(tmp_path / "no-squawk")}, "squawk not found"
    elif case == "squawk-failing":
        fake = tmp_path / "squawk"
        fake.write_text("#!/bin/sh\necho 'error: unexpected argument' >&2\nexit 2\n")
        fake.chmod(0o755)
        extra_env, expect = {"SWRUN_SQUAWK": str(fake)}, "squawk failed (exit 2): error: unexpected argument"
    elif case == "unknown-ack":
        args, expect = ["--acknowledge", "drop-table:nope"], "unknown acknowledgement id(s): drop-table:nope"
    elif case == "unknown-gate":
        args, expect = ["--override-gates", "backup"], "unknown gate(s) in override_gates: backup"
    else:
        add_revision(project_copy, "3c3c3c3c3c3c", HEAD, "this is not python at all", slug="broken")
        expect = "3c3c3c3c3c3c_broken.py does not parse"
    proc = deploy(db_url, project_copy, *args, extra_env=extra_env)
    assert proc.returncode == 9, proc.stderr
    assert expect in error_line(proc), proc.stderr
    assert "Traceback" not in proc.stderr
    assert state(db_url) == at_middle
    steps = {s["step"]: s["outcome"] for s in meta(records(workdir)[-1])["steps"]}
    assert steps["upgrade"] == "skipped"


# -- swrun revision --autogenerate ---------------------------------------------------------------

MODELS = '''\
import sqlalchemy as sa

metadata = sa.MetaData()
STATUS = {values!r}
tickets = sa.Table("tickets", metadata, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("status", sa.Enum(*STATUS, name="ticket_status"), nullable=False))
'''

ENV_PY = '''\
from alembic import context
from sqlalchemy import engine_from_config, pool

import ticket_models

config = context.config
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, target_metadata=ticket_models.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=ticket_models.metadata)
        with context.begin_transaction():
            context.run_migrations()
'''

FIRST = '''\
"""create tickets"""
from alembic import op
import sqlalchemy as sa

revision = "7100000000a1"
down_revision = None


def upgrade():
    op.create_table("tickets", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("status", sa.Enum("OPEN", "CLOSED", name="ticket_status"), nullable=False))
    op.execute("INSERT INTO tickets (id, status) VALUES (1, 'OPEN'), (2, 'CLOSED')")


def downgrade():
    op.drop_table("tickets")
    op.execute("DROP TYPE ticket_status")
'''


@pytest.fixture
def tickets_project(tmp_path):
    """Not the demo: a project of its own, whose models we can change."""
    root = tmp_path / "tickets"
    (root / VERSIONS).mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\nprepend_sys_path = %(here)s\n"
                                      "path_separator = os\nsqlalchemy.url =\n\n[swrun]\nmetadata = ticket_models:metadata\n")
    shutil.copy(Project.load().ini_path.parent / "migrations" / "script.py.mako", root / "migrations")
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / VERSIONS / "7100000000a1_create_tickets.py").write_text(FIRST)
    (root / "ticket_models.py").write_text(MODELS.format(values=["OPEN", "CLOSED"]))
    return root


def test_revision_autogenerate_writes_new_enum_values_in_an_autocommit_block(db_url, tickets_project, workdir):
    ini = tickets_project / "alembic.ini"
    assert deploy(db_url, tickets_project).returncode == 0
    (tickets_project / "ticket_models.py").write_text(MODELS.format(values=["OPEN", "PENDING", "CLOSED", "ARCHIVED"]))
    proc = run_cli("revision", "-m", "more statuses", "--autogenerate", "--rev-id", "7100000000a2",
                   "--database-url", db_url, "--project", ini)
    assert proc.returncode == 0, proc.stderr
    new = tickets_project / VERSIONS / "7100000000a2_more_statuses.py"
    assert f"wrote {new}" in proc.stdout and "enum values written as ADD VALUE: PENDING, ARCHIVED" in proc.stdout
    assert "downgrade-empty:7100000000a2" in proc.stdout  # reviewed at once: the downgrade cannot drop a value
    source = new.read_text()
    block = source.index("with op.get_context().autocommit_block():")
    assert block < source.index("ADD VALUE IF NOT EXISTS 'PENDING' AFTER 'OPEN'") < source.index("def downgrade")
    assert "ADD VALUE IF NOT EXISTS 'ARCHIVED' AFTER 'CLOSED'" in source
    # the new migration deploys, and the database now has the models' values, in the models' order
    done = deploy(db_url, tickets_project)
    assert done.returncode == 0, done.stderr
    assert scalar(db_url, "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum e join pg_type t "
                          "on t.oid = e.enumtypid where t.typname = 'ticket_status'") == "OPEN,PENDING,CLOSED,ARCHIVED"

    # a value renamed or removed in the models: reported as the enum change procedure, nothing written for it
    (tickets_project / "ticket_models.py").write_text(MODELS.format(values=["OPEN", "WAITING", "CLOSED"]))
    proc = run_cli("revision", "-m", "rework statuses", "--autogenerate", "--rev-id", "7100000000a3",
                   "--database-url", db_url, "--project", ini)
    assert proc.returncode == 0, proc.stderr
    assert "needs the enum change procedure: ticket_status" in proc.stdout
    assert "enum-drift:ticket_status:removed" in proc.stdout and "6. drop the old enum type" in proc.stdout
    assert "'ARCHIVED'" not in (tickets_project / VERSIONS / "7100000000a3_rework_statuses.py").read_text()
    (tickets_project / VERSIONS / "7100000000a3_rework_statuses.py").unlink()
    (tickets_project / "ticket_models.py").write_text(MODELS.format(values=["OPEN", "WAITING", "CLOSED", "ARCHIVED"]))
    renamed = run_cli("revision", "-m", "rename pending", "--autogenerate", "--database-url", db_url, "--project", ini, "--json")
    assert renamed.returncode == 0, renamed.stderr
    result = json.loads(renamed.stdout)
    assert [(c["kind"], c["values"]) for c in result["data"]["enum_changes"]] == [("renamed", ["PENDING->WAITING"])]
    assert "WAITING" not in Path(result["data"]["file"]).read_text()


def test_revision_autogenerate_needs_an_up_to_date_database(db_url, tickets_project):
    proc = run_cli("revision", "-m", "x", "--autogenerate", "--database-url", db_url, "--project", tickets_project / "alembic.ini")
    assert proc.returncode == 5
    assert proc.stderr.strip().startswith("swrun: error: cannot autogenerate: Target database is not up to date")
    assert list((tickets_project / VERSIONS).glob("*.py")) == [tickets_project / VERSIONS / "7100000000a1_create_tickets.py"]


def test_revision_with_a_broken_env_py_is_one_line(db_url, tickets_project):
    (tickets_project / "ticket_models.py").unlink()
    proc = run_cli("revision", "-m", "x", "--autogenerate", "--database-url", db_url, "--project", tickets_project / "alembic.ini")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == ("swrun: error: cannot create the revision: the project's env.py failed: "
                                   "ModuleNotFoundError: No module named 'ticket_models'")


def test_guards_step_from_the_library(db_url, project_copy):
    """The step works without a notebook: the library call a cell makes."""
    ctx = RunContext(database_url=db_url, project_path=str(project_copy / "alembic.ini"), environment="production")
    result = guards_step.run(ctx, reports_dir=project_copy / "no-reports", override_gates="staging")
    assert result.outcome == "warning", result.summary
    assert "production gates passed: danger, locks, long-transactions, disk" in result.summary
    assert list(result.tables["findings"].columns) == ["id", "severity", "source", "revision", "file", "message", "status"]
    with pytest.raises(Exception, match="unknown gate"):
        guards_step.run(ctx, override_gates="backups")
    with pytest.raises(Exception, match="unknown acknowledgement id"):
        guards_step.run(ctx, acknowledge="modified:nothing")


# -- the range-aware lint, transaction enders, what was not reviewed, the executed-SQL gate ----------


def _lint_source(tmp_path, body: str, rev: str = "2f2f2f2f2f2f", created: set | None = None) -> dict:
    path = tmp_path / f"{rev}_x.py"
    path.write_text("from alembic import op\nimport sqlalchemy as sa\n"
                    f"revision = '{rev}'\ndown_revision = None\n\n\ndef upgrade():\n"
                    + textwrap.indent(textwrap.dedent(body), "    ") + "\n\ndef downgrade():\n    op.execute('select 1')\n")
    return {f.id: f.severity for f in lint.lint_file(path, rev, lint.EnumState(), created)}


def test_a_migration_that_ends_the_transaction_is_a_danger(tmp_path):
    rev = "2f2f2f2f2f2f"
    assert _lint_source(tmp_path, 'op.execute("COMMIT")\nop.execute("ALTER TABLE t ADD COLUMN b int")\n') == \
        {f"ends-transaction:{rev}:line8": "danger"}
    assert _lint_source(tmp_path, 'op.execute(sa.text("UPDATE t SET a = 1; END;"))\n') == {f"ends-transaction:{rev}:line8": "danger"}
    assert _lint_source(tmp_path, 'conn = op.get_bind()\nconn.execute(sa.text("UPDATE t SET a = 1"))\nconn.commit()\n') == \
        {f"ends-transaction:{rev}:line10": "danger"}
    # an ORM session joined to Alembic's connection commits only its own scope; a function body's COMMIT is not run here
    assert _lint_source(tmp_path, 'session = Session(bind=op.get_bind())\nsession.commit()\n'
                                  'op.execute("CREATE FUNCTION f() RETURNS void AS $$ BEGIN COMMIT; END $$ LANGUAGE plpgsql")\n') == {}
    # SQL PostgreSQL's parser refuses is never silently passed
    assert _lint_source(tmp_path, 'op.execute("ALTER TABLE t DROPP COLUMN b")\n') == {f"sql-not-reviewed:{rev}:line8": "danger"}
    # bound parameters and f-string parts read as names
    assert _lint_source(tmp_path, 'op.execute(sa.text("UPDATE t SET a = :v").bindparams(v=1))\nop.execute(f"DROP TABLE {name}")\n') == \
        {f"drop-table:{rev}:swrun_expr": "danger"}


def test_the_lint_follows_the_pending_range(tmp_path):
    created: set = set()
    first = _lint_source(tmp_path, 'op.create_table("fresh", sa.Column("id", sa.Integer))\n'
                                   'op.execute("CREATE TABLE raw (id int)")\n', rev="3a3a3a3a3a3a", created=created)
    assert first == {} and {"fresh", "raw"} <= created
    later = _lint_source(tmp_path, 'op.drop_column("fresh", "id")\nop.alter_column("fresh", "id", type_=sa.BigInteger)\n'
                                   'op.execute("ALTER TABLE raw DROP COLUMN id")\nop.drop_table("raw")\n'
                                   'op.drop_table("old")\nop.execute("ALTER TABLE old2 ALTER COLUMN a TYPE text")\n',
                         rev="3b3b3b3b3b3b", created=created)
    assert later == {"drop-table:3b3b3b3b3b3b:old": "danger", "type-change:3b3b3b3b3b3b:old2.a": "danger"}
    # the same revision read alone (a database where fresh and raw exist) is dangerous
    alone = _lint_source(tmp_path, 'op.drop_column("fresh", "id")\nop.drop_table("raw")\n', rev="3c3c3c3c3c3c")
    assert alone == {"drop-column:3c3c3c3c3c3c:fresh.id": "danger", "drop-table:3c3c3c3c3c3c:raw": "danger"}
    # the executed SQL of a range, read the same way
    shared: set = set()
    assert lint.lint_sql("r1", "CREATE TABLE a (id int);", created=shared) == []
    assert [f.id for f in lint.lint_sql("r2", "ALTER TABLE a DROP COLUMN id; DROP TABLE b;", created=shared)] == ["drop-table:r2:b"]


def test_executed_sql_gate():
    from swrun.guards import Finding, gates
    from swrun.result import StepResult

    lint_danger = Finding("drop-table:r1:t", "drop-table", "danger", "drops t", revision="r1", acknowledged=True)
    missing = gates.no_offline_sql_findings([{"revision": "r2", "reason": "MockConnection", "where": "versions/r2.py:12"}])
    guards = StepResult("guards", data={"findings": [f.as_dict() for f in [lint_danger] + missing], "deferred_acknowledgements": []})
    executed = [Finding("drop-table:r1:t", "drop-table", "danger", "as executed: drops t", revision="r1").as_dict(),
                Finding("drop-column:r2:u.c", "drop-column", "danger", "as executed: drops u.c", revision="r2").as_dict()]
    rehearse = StepResult("rehearse", data={"executed_findings": executed, "executed_revisions": ["r1", "r2"]})
    gate = gates.executed_gate(guards.data, rehearse.data)
    assert gate.result == "blocked" and "drop-column:r2:u.c" in gate.detail and "drop-table:r1:t" not in gate.detail
    guards.data["deferred_acknowledgements"] = ["drop-column:r2:u.c"]
    assert gates.executed_gate(guards.data, rehearse.data).result == "pass"
    # no rehearsal (overridden): r2 has no SQL reviewed at all, until its not-reviewed id is acknowledged
    gate = gates.executed_gate(guards.data, None)
    assert gate.result == "blocked" and "not-reviewed:r2" in gate.proceed and "no SQL reviewed for r2" in gate.detail
    guards.data["findings"][1]["acknowledged"] = True
    guards.data["deferred_acknowledgements"] = []
    assert gates.executed_gate(guards.data, None).result == "pass"
    # a deferred acknowledgement that no executed finding has is a typo
    guards.data["deferred_acknowledgements"] = ["drop-column:r2:nope"]
    assert gates.executed_gate(guards.data, rehearse.data).result == "blocked"
    # the danger gate at the guards step leaves a revision without offline SQL to the check before the upgrade
    results = gates.evaluate(environment="production", findings=missing, overrides=["staging"], fingerprint=None,
                             target=["r2"], reports_dir=Path("/nonexistent"))
    assert next(g for g in results if g.gate == "danger").result == "pass"
    acked, deferred = gates.apply_acknowledgements(missing, ["not-reviewed:r2", "drop-column:r2:u.c"], later={"r2"}, split=True)
    assert acked == ["not-reviewed:r2"] and deferred == ["drop-column:r2:u.c"]
    with pytest.raises(Exception, match="unknown acknowledgement"):
        gates.apply_acknowledgements(missing, ["drop-column:r9:u.c"], later={"r2"})


def test_a_review_that_did_not_run_is_not_ok(db_url, project_copy):
    from swrun.result import StepResult

    failed = StepResult("preview", outcome="failed", summary="squawk is not installed")
    dev = RunContext(database_url=db_url, project_path=str(project_copy / "alembic.ini"))
    result = guards_step.run(dev, preview=failed, reports_dir=project_copy / "no-reports")
    assert result.outcome == "warning" and "not reviewed: sql" in result.summary
    assert result.data["not_reviewed"] == [{"what": "sql", "why": "the preview step failed: squawk is not installed"}]
    prod = RunContext(database_url=db_url, project_path=str(project_copy / "alembic.ini"), environment="production")
    blocked = guards_step.run(prod, preview=failed, reports_dir=project_copy / "no-reports", override_gates="staging")
    assert blocked.outcome == "blocked" and "not-reviewed:sql" in blocked.error
    passed = guards_step.run(prod, preview=failed, reports_dir=project_copy / "no-reports", override_gates="staging",
                             acknowledge="not-reviewed:sql")
    assert passed.outcome != "blocked", passed.error


def test_autogenerate_with_include_schemas_never_drops_swrun_schema(db_url, tickets_project, workdir):
    env = ENV_PY.replace("target_metadata=ticket_models.metadata)\n        with",
                         "target_metadata=ticket_models.metadata,\n                          include_schemas=True, "
                         "include_object=lambda o, n, t, r, c: n != 'legacy_stuff')\n        with")
    assert "include_schemas=True" in env
    (tickets_project / "migrations" / "env.py").write_text(env)
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(tickets_project / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", str(database.normalize_url(db_url)).replace("%", "%%"))
    command.upgrade(cfg, "head")  # plain Alembic: the database at head
    with database.make_engine(database.normalize_url(db_url)).begin() as conn:
        # swrun's schema as a deploy leaves it (its ledger and record tables), and a table env.py leaves out itself
        conn.exec_driver_sql("create schema swrun; create table swrun.migration_ledger (revision text primary key); "
                             "create table swrun.run_records (run_id text primary key); create table legacy_stuff (id int)")
    proc = run_cli("revision", "-m", "nothing new", "--autogenerate", "--rev-id", "7100000000b1",
                   "--database-url", db_url, "--project", tickets_project / "alembic.ini")
    assert proc.returncode == 0, proc.stderr
    source = (tickets_project / VERSIONS / "7100000000b1_nothing_new.py").read_text()
    assert "swrun" not in source and "run_records" not in source and "migration_ledger" not in source
    assert "legacy_stuff" not in source
    assert "op.drop_table" not in source
