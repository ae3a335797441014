"""The checklist steps as library calls, against the embedded server."""

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import HEAD, scalar
from swrun import embedded
from swrun.config import RunContext
from swrun.errors import BackupError, StateError
from swrun.steps import backup, preflight, preview, status, upgrade, verify


@pytest.fixture
def ctx(db_url, tmp_path):
    return RunContext(database_url=db_url, backup_dir=tmp_path / "backups")


def test_status_reports_pending_then_up_to_date(ctx):
    first = status.run(ctx)
    assert first.data["current"] == [] and len(first.data["pending"]) == 7
    assert list(first.tables["pending"]["revision"])[0] == "3b11939b5277"
    upgrade.run(ctx)
    again = status.run(ctx)
    assert again.data["current"] == [HEAD] and again.data["pending"] == []
    assert "up to date" in again.summary
    assert again.as_dict()["data"]["fingerprint"] == first.data["fingerprint"]


def test_status_refuses_a_revision_no_file_defines(ctx, db_url):
    upgrade.run(ctx)
    scalar(db_url, "update alembic_version set version_num = 'deadbeef0000' returning 1")
    with pytest.raises(StateError, match="deadbeef0000"):
        status.run(ctx)


def test_preview_writes_exactly_the_pending_sql(ctx):
    upgrade.run(ctx, target="a1b2c3d4e5f6")
    result = preview.run(ctx)
    text = Path(result.data["file"]).read_text()
    assert result.data["revisions"] == ["c7d8e9f0a1b2", "d4e5f6a7b8c9", "e1f2a3b4c5d6", "f7a8b9c0d1e2"]
    assert "ALTER TYPE user_role ADD VALUE" in text and "CREATE TABLE users" not in text
    assert ctx.redacted_url in text
    assert result.data["statements"] >= 4


def test_backup_is_verified_and_owner_only(ctx, db_url):
    upgrade.run(ctx)
    result = backup.run(ctx)
    path = Path(result.data["file"])
    assert path.exists() and not list(path.parent.glob("*.partial"))
    assert result.data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.data["bytes"] == path.stat().st_size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listing = subprocess.run([embedded.pg_tool("pg_restore"), "--list", path], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public users" in listing and result.data["toc_entries"] > 20


def test_a_database_named_like_a_path_is_dumped_inside_the_backup_directory(pg, tmp_path):
    name = "../../escaped"  # a legal PostgreSQL database name
    url = pg.create_database(name)
    try:
        result = backup.run(RunContext(database_url=url, backup_dir=tmp_path / "work" / "backups"))
        path = Path(result.data["file"]).resolve()
        assert path.parent == (tmp_path / "work" / "backups").resolve() and path.name.startswith("_escaped_")
        assert not list(tmp_path.glob("escaped*")) and not list((tmp_path / "work").glob("escaped*"))
    finally:
        pg.drop_database(name)


def test_backup_restores_the_rows(ctx, pg, db_url):
    upgrade.run(ctx)
    dump = backup.run(ctx).data["file"]
    target_url = pg.create_database("restored_copy")
    try:
        status_ = pg.status()
        subprocess.run([embedded.pg_tool("pg_restore"), "-h", str(status_.socket_dir), "-p", str(status_.port), "-U", "postgres",
                        "-d", "restored_copy", dump], check=True, capture_output=True)
        assert scalar(target_url, "select count(*) from users") == scalar(db_url, "select count(*) from users") == 6
    finally:
        pg.drop_database("restored_copy")


def test_backup_refuses_unwritable_directory(ctx, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BackupError, match="not writable"):
        backup.run(ctx, directory=blocker / "backups")


def test_backup_refuses_an_older_pg_dump(ctx, tmp_path):
    debian = Path("/usr/lib/postgresql/15/bin/pg_dump")
    if not debian.exists():
        pytest.skip("Debian's PostgreSQL 15 pg_dump is not installed")
    with pytest.raises(BackupError, match="older than the server"):
        backup.run(ctx, pg_dump=debian)
    assert not list((tmp_path / "backups").glob("*.dump*"))


def test_verify_passes_after_upgrade_and_flags_lost_rows(ctx, db_url):
    result = upgrade.run(ctx)
    ok = verify.run(ctx, baseline=result.baseline)
    assert ok.outcome == "ok", ok.error
    assert {c["check"] for c in ok.data["checks"]} >= {"revision", "enum user_role", "invalid indexes", "row counts"}
    assert any(r["object"] == "public.users" and r["change"] == "added" for r in ok.data["schema_changes"])
    # rows lost between baseline and now are flagged
    baseline = upgrade.baseline(ctx)
    scalar(db_url, "delete from route_stops returning 1")
    flagged = verify.run(ctx, baseline=baseline)
    assert flagged.outcome == "warning"
    assert [r["table"] for r in flagged.data["row_counts"] if r["flag"]] == ["public.route_stops"]


def test_verify_catches_enum_drift_and_wrong_revision(ctx, db_url):
    upgrade.run(ctx, target="a1b2c3d4e5f6")
    behind = verify.run(ctx)
    assert behind.outcome == "failed" and "revision" in behind.error
    upgrade.run(ctx)
    scalar(db_url, "alter type user_role add value 'GHOST'; select 1")
    drift = verify.run(ctx)
    assert drift.outcome == "failed" and "enum user_role" in drift.error


def test_verify_runs_the_projects_check_command(ctx, project_copy):
    ini = project_copy / "alembic.ini"
    ini.write_text(ini.read_text().replace("[swrun]", "[swrun]\ncheck = python -c \"import os,sys; sys.exit(0 if os.environ['SWRUN_DATABASE_URL'] else 1)\""))
    ctx.project_path = str(ini)
    upgrade.run(ctx)
    assert {c["check"]: c["result"] for c in verify.run(ctx).data["checks"]}["app check"] == "pass"
    ini.write_text(ini.read_text().replace("sys.exit(0 if", "sys.exit(3 if"))
    ctx2 = RunContext(database_url=ctx.database_url, project_path=str(ini))
    failed = verify.run(ctx2)
    assert failed.outcome == "failed" and "exit 3" in failed.error


def test_preflight_sees_long_transactions(ctx, engine):
    ctx.long_transaction_s = 0.0
    with engine.connect() as other:
        other.exec_driver_sql("begin; select 1")
        result = preflight.run(ctx)
    checks = {c["check"]: c["result"] for c in result.data["checks"]}
    assert checks["long transactions"] == "warning" and checks["connection"] == "pass"
    assert result.data["identity"]["database"] == ctx.url.database


@pytest.mark.parametrize("mode", ["custom-fast", "directory-fast"])
def test_faster_backup_modes_restore_too(ctx, pg, mode):
    upgrade.run(ctx)
    result = backup.run(ctx, mode=mode)
    path = Path(result.data["file"])
    assert path.exists() and result.data["mode"] == mode and result.data["toc_entries"] > 20
    assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)
    target_url = pg.create_database("restored_mode")
    try:
        s = pg.status()
        subprocess.run([embedded.pg_tool("pg_restore"), "-h", str(s.socket_dir), "-p", str(s.port), "-U", "postgres",
                        "-d", "restored_mode", str(path)], check=True, capture_output=True)
        assert scalar(target_url, "select count(*) from pickups") == 10
    finally:
        pg.drop_database("restored_mode")
