"""The rehearsal's targeted copy: only the rows of the tables the pending migrations touch.

One database at the demo's head with rows in every table, one real backup of it (pg_dump,
streamed into the file and its sha256), shared by the module; each fixture project under
tests/projects/rc_* adds one revision on the head, rehearsed in-process on the embedded server.
The real database is never migrated, so every test rehearses from the same backup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import HEAD, new_database, scalar
from swrun.config import RunContext
from swrun.migrations import file_sha256
from swrun.steps import backup, rehearse, upgrade

PROJECTS = Path(__file__).resolve().parent / "projects"

SEED = """
insert into users (email, full_name) select 'u' || g || '@example.org', case when mod(g, 3) = 0 then null else 'User ' || g end
  from generate_series(1, 30) g;
insert into bins (code, latitude, longitude, capacity_liters, fill_level)
  select 'RC-' || g, 52.5, 13.4, 240, mod(g, 4) from generate_series(1, 40) g;
insert into collection_routes (name, driver_id, scheduled_date)
  select 'rc route ' || g, (select min(id) from users), date '2026-01-01' + g from generate_series(1, 5) g;
insert into route_stops (route_id, bin_id, position)
  select (select min(id) from collection_routes), b.id, row_number() over (order by b.id) + 1000
  from bins b where left(b.code, 3) = 'RC-' limit 12;
insert into pickups (route_id, bin_id, weight_kg)
  select (select min(id) from collection_routes), b.id, 10 from bins b, generate_series(1, 5);
"""


@pytest.fixture(scope="module")
def source(pg, tmp_path_factory):
    """The demo at its head with rows everywhere, and one backup of it: (url, backup result, backup dir)."""
    gen = new_database(pg)
    url = next(gen)
    out = tmp_path_factory.mktemp("rc-backups")
    upgrade.run(RunContext(database_url=url), target="head")
    scalar(url, SEED + " select 1")
    ctx = RunContext(database_url=url, backup_dir=out)
    try:
        taken = backup.run(ctx)
    finally:
        ctx.close()
    yield url, taken, out
    next(gen, None)


def rehearse_project(source, name: str, **kw):
    url, taken, out = source
    ctx = RunContext(database_url=url, project_path=str(PROJECTS / name / "alembic.ini"), backup_dir=out)
    try:
        return rehearse.run(ctx, backup_file=taken.data["file"], start=(HEAD,), **{"copy": "touched", **kw})
    finally:
        ctx.close()


def test_backup_hash_is_taken_while_pg_dump_writes(source):
    _, taken, _ = source
    assert taken.outcome == "ok", taken.summary
    assert taken.data["sha256_pass"] == "while pg_dump wrote"
    assert taken.data["sha256"] == file_sha256(Path(taken.data["file"]))  # the one-pass hash is the file's
    assert taken.data["bytes"] == Path(taken.data["file"]).stat().st_size and taken.data["toc_entries"] > 0


def test_not_null_over_null_rows_fails_on_the_targeted_copy(source):
    result = rehearse_project(source, "rc_notnull")
    copy = result.data["copy"]
    assert copy["copy"] == "touched", copy["reason"]
    assert copy["touched"]["public.users"] == "AccessExclusiveLock"
    assert "public.pickups" not in copy["tables"]
    assert result.outcome == "failed" and result.data["failed_revision"] == "c1a0000000a1"
    assert "null" in result.error.lower()
    assert scalar(source[0], "select version_num from alembic_version") == HEAD  # the real database untouched


def test_unique_index_over_duplicates_fails_on_the_targeted_copy(source):
    result = rehearse_project(source, "rc_unique")
    assert result.data["copy"]["copy"] == "touched" and "public.bins" in result.data["copy"]["tables"]
    assert result.outcome == "failed" and result.data["failed_revision"] == "c1a0000000b2"
    assert "could not create unique index" in result.error or "duplicate" in result.error.lower()


def test_data_migration_reading_another_table_gets_its_rows(source):
    result = rehearse_project(source, "rc_reads")
    assert result.outcome == "ok", result.summary
    copy = result.data["copy"]
    real = scalar(source[0], "select count(*) from route_stops")
    assert real > 0
    assert copy["touched"]["public.route_stops"] == "AccessShareLock"  # read through op.get_bind()
    assert copy["row_counts"]["public.route_stops"] == real
    assert copy["row_counts"]["public.pickups"] == 0  # no revision touches it: schema only
    assert f"route_stops rows: {real}" in result.data["executed_sql"]["c1a0000000c3"]
    assert {r["table"] for r in result.tables["copy"].to_dict("records")} >= {"public.route_stops", "public.pickups"}


def test_foreign_key_from_a_touched_table_to_an_untouched_one_restores(source):
    result = rehearse_project(source, "rc_fk")
    assert result.outcome == "ok", result.summary
    copy = result.data["copy"]
    assert copy["copy"] == "touched"
    assert "public.collection_routes" in copy["touched"] and "public.users" not in copy["touched"]
    assert copy["added"]["public.users"] == "referenced by public.collection_routes"
    assert copy["row_counts"]["public.users"] == scalar(source[0], "select count(*) from users")
    assert copy["row_counts"]["public.collection_routes"] == scalar(source[0], "select count(*) from collection_routes")
    assert copy["row_counts"]["public.pickups"] == 0 and result.data["rollback_proven"] is True


def test_unreadable_locks_fall_back_to_the_full_copy(source):
    # the revision needs a row to exist: on the schema-only copy it fails, so its locks are unknown
    result = rehearse_project(source, "rc_needs_rows")
    copy = result.data["copy"]
    assert copy["copy"] == "full" and "schema-only copy" in copy["reason"], copy["reason"]
    assert result.outcome == "ok", result.summary
    assert copy["row_counts"]["public.pickups"] == scalar(source[0], "select count(*) from pickups") > 0


def test_full_copy_when_asked(source):
    result = rehearse_project(source, "rc_fk", copy="full")
    assert result.data["copy"]["copy"] == "full" and "asked" in result.data["copy"]["reason"]
    assert result.outcome == "ok", result.summary
    assert result.data["copy"]["row_counts"]["public.pickups"] > 0


def test_children_of_a_table_whose_rows_or_keys_change_come_with_their_rows():
    from swrun import rehearsal_copy as rc

    edges = [("public.pickups", "public.bins", "f", frozenset({"id"})),
             ("public.bins", "public.zones", "f", frozenset({"id"})),
             ("public.bins_2026", "public.bins", "i", frozenset())]
    named, written, unparsed = rc.named_in(["update bins set fill_level = %(level)s where id = %(id)s"],
                                           {"public.bins", "public.pickups", "public.zones"})
    assert named == {"public.bins"} and not unparsed
    tables, added = rc.closure({"public.bins"}, written, edges, set())
    assert tables == ["public.bins", "public.bins_2026", "public.zones"]  # a non-key UPDATE: pickups' rows are not needed
    _, written, _ = rc.named_in(["delete from bins where fill_level = 0"], {"public.bins"})
    tables, added = rc.closure({"public.bins"}, written, edges, set())
    assert "public.pickups" in tables and added["public.pickups"].startswith("references public.bins")


def test_a_throwaway_scratch_server_skips_durability(source, tmp_path_factory, monkeypatch):
    from swrun import embedded

    home = tmp_path_factory.mktemp("rc-scratch-home")
    home.chmod(0o755)
    monkeypatch.setenv(embedded.SCRATCH_HOME_ENV, str(home))
    try:
        result = rehearse_project(source, "rc_fk")
        assert result.outcome == "ok", result.summary
        assert "throwaway scratch server" in result.summary
        status = embedded.EmbeddedServer(home).status()
        assert [scalar(status.url("postgres"), f"show {name}") for name in ("fsync", "full_page_writes", "wal_level")] == [
            "off", "off", "minimal"]
    finally:
        embedded.remove(home)
    # the default server, which may hold a development database, keeps its durability
    monkeypatch.delenv(embedded.SCRATCH_HOME_ENV)
    assert scalar(source[0], "show fsync") == "on"
