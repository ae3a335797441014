"""swrun.sql: migration SQL read with PostgreSQL's own parser (pglast)."""

from swrun import sql
from swrun.migrations import Project


def kinds(script):
    return [(s.kind, [str(t) for t in s.tables], s.lock) for s in sql.statements(script)]


def test_statements_kinds_tables_and_locks():
    script = """-- Running upgrade  -> 1a
BEGIN;
CREATE TABLE "Users" (id SERIAL NOT NULL, PRIMARY KEY (id));
ALTER TABLE app.users ADD COLUMN x int NOT NULL, DROP COLUMN y;
CREATE INDEX ix ON users (x);
CREATE INDEX CONCURRENTLY ix2 ON users (x);
ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES teams (id);
UPDATE users SET x = 1 FROM teams WHERE teams.id = users.x;
ALTER TYPE mood ADD VALUE 'é';
TRUNCATE logs;
SET lock_timeout = '1s';
COMMIT;
"""
    assert kinds(script) == [
        ("BEGIN", [], None),
        ("CREATE TABLE", ["Users"], "AccessExclusiveLock"),
        ("ALTER TABLE", ["app.users"], "AccessExclusiveLock"),
        ("CREATE INDEX", ["users"], "ShareLock"),
        ("CREATE INDEX CONCURRENTLY", ["users"], "ShareUpdateExclusiveLock"),
        ("ALTER TABLE", ["teams", "users"], "ShareRowExclusiveLock"),
        ("UPDATE", ["users", "teams"], "RowExclusiveLock"),
        ("ALTER TYPE ADD VALUE", [], None),
        ("TRUNCATE", ["logs"], "AccessExclusiveLock"),
        ("SET", [], None),
        ("COMMIT", [], None),
    ]
    found = sql.statements(script)
    assert [s.line for s in found][:3] == [2, 3, 4]
    assert [(a.op, a.name, "not-null" in a.flags) for a in found[2].actions] == [("add-column", "x", True), ("drop-column", "y", False)]
    assert found[-1].ends_transaction and not found[0].ends_transaction and found[0].begins_transaction
    assert found[4].outside_transaction
    assert found[7].actions[0] == sql.Action("enum-add-value", sql.Table(None, "mood"), "é")


def test_transaction_enders_dollar_bodies_and_bad_sql_never_crash():
    script = ("CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN; COMMIT; END $$ LANGUAGE plpgsql;\n"
              "END;\nROLLBACK;\nSELECT bad syntax (;\nDROP TABLE a, s.b;\n\\set x 1\nselect 'unterminated;\n")
    found = sql.statements(script)
    assert [s.kind for s in found] == ["CREATE FUNCTION", "COMMIT", "ROLLBACK", "UNPARSED", "DROP TABLE", "UNPARSED"]
    assert [s.ends_transaction for s in found] == [False, True, True, False, False, False]
    assert "syntax error" in found[3].error and found[3].line == 4
    assert [str(a.table) for a in found[4].actions] == ["a", "s.b"]


def test_helpers():
    assert sql.index_table("CREATE UNIQUE INDEX alembic_version_pkc ON public.alembic_version USING btree (version_num)") == "alembic_version"
    assert sql.index_table("not sql") is None
    assert sql.version_table("UPDATE my.versions SET version_num='b' WHERE my.versions.version_num = 'a'") == sql.Table("my", "versions")
    assert sql.Table("s", "Us er").sql == 's."Us er"' and sql.Table(None, "user").sql == '"user"'
    script = "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\nALTER TYPE e ADD VALUE 'x';\nBEGIN;\nUPDATE t SET a = 1;\nCOMMIT;\n"
    assert sql.transaction_blocks(script) == [(True, "CREATE TABLE t (a int);"), (False, "ALTER TYPE e ADD VALUE 'x';"),
                                              (True, "UPDATE t SET a = 1;")]
    assert sql.count(script) == 3
    assert [str(t) for t in sql.touched_tables(script)] == ["t"]
    assert sql.touched_tables(script, created=["t"]) == []


def test_alembic_offline_output_of_the_demo_chain(db_url):
    project = Project.load()
    from swrun import database

    rendered = project.offline_sql(database.normalize_url(db_url), (), "head")
    texts = [r.sql for r in rendered if not getattr(r, "offline_error", None)]
    assert texts
    found = [s for text in texts for s in sql.statements(text)]
    assert found and all(s.parsed for s in found), [s.error for s in found if not s.parsed]
    created = {t.name for t in sql.created_tables(texts)}
    assert {"users", "bins", "alembic_version"} <= created
    assert str(sql.version_table(texts)) == "alembic_version"
    # every table the chain touches it also creates: on a fresh database nothing it locks exists yet
    assert sql.touched_tables(texts, created=created) == []
