"""Synthetic inputs for the benchmarks: Alembic projects of N revisions, and bulk demo data.

``make_project(root, n)`` writes a linear chain whose revisions cycle through the kinds of
change a real project makes: create a table, add a column, add an index, add an enum
value (outside the transaction, as PostgreSQL requires), and a data update.

``fill_demo(url, target_bytes)`` grows a database at the demo's head to a given size with
realistic rows (pickups, bins, users), for backup and rehearsal timings.
"""

from __future__ import annotations

import argparse
import hashlib
import textwrap
from pathlib import Path

ENV_PY = '''\
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
'''


def rev_id(i: int) -> str:
    return hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:12]


def _body(i: int) -> tuple[str, str]:
    table = f"t{i // 5 * 5:05d}"
    kind = i % 5
    if kind == 0:
        return (f"op.execute(\"create table {table} (id serial primary key, name text, qty int default 0)\")\n"
                f"    op.execute(\"insert into {table} (name) select 'row ' || g from generate_series(1, 20) g\")",
                f"op.execute('drop table {table}')")
    if kind == 1:
        return (f"op.add_column('{table}', sa.Column('note_{i}', sa.Text(), nullable=True))",
                f"op.drop_column('{table}', 'note_{i}')")
    if kind == 2:
        return (f"op.create_index('ix_{table}_{i}', '{table}', ['name'])",
                f"op.drop_index('ix_{table}_{i}', table_name='{table}')")
    if kind == 3:
        return ("with op.get_context().autocommit_block():\n"
                f"        op.execute(\"alter type bench_kind add value if not exists 'K{i}'\")",
                "pass  # PostgreSQL cannot drop an enum value; the type goes with the base revision")
    return (f"op.execute(\"update {table} set qty = qty + 1\")",
            f"op.execute(\"update {table} set qty = qty - 1\")")


def make_project(root: Path, n: int, url: str = "", sleep: float = 0.0) -> Path:
    """Write an Alembic project with ``n`` revisions under ``root``; returns its alembic.ini.

    ``sleep`` adds a pg_sleep to every revision, to widen the window a soak test kills in."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "migrations" / "versions").mkdir(parents=True, exist_ok=True)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "script.py.mako").write_text("")
    ini = root / "alembic.ini"
    ini.write_text(textwrap.dedent(f"""\
        [alembic]
        script_location = %(here)s/migrations
        path_separator = os
        sqlalchemy.url = {url.replace('%', '%%')}
        """))
    down = None
    for i in range(n):
        rid = rev_id(i)
        if i == 0:
            up, dn = ("op.execute(\"create type bench_kind as enum ('K0')\")\n"
                      "    op.execute(\"create table t00000 (id serial primary key, name text, qty int default 0)\")",
                      "op.execute('drop table t00000')\n    op.execute('drop type bench_kind')")
        else:
            up, dn = _body(i)
        if sleep:
            up += f"\n    op.execute('select pg_sleep({sleep})')"
        (root / "migrations" / "versions" / f"{rid}_step_{i}.py").write_text(
            f'"""step {i}\n\nRevision ID: {rid}\nRevises: {down}\n"""\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {rid!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {up}\n\n\ndef downgrade():\n    {dn}\n")
        down = rid
    return ini


# revisions on top of the demo's head, for the large-database cases: (revision id, title, upgrade, downgrade)
DEMO_HEAD = "f7a8b9c0d1e2"
LARGE_CHANGES = {
    # the common migration: one small table changed in a large database
    "small": [("b0a1c2d3e401", "users phone", 'op.add_column("users", sa.Column("phone", sa.String(32), nullable=True))',
               'op.drop_column("users", "phone")'),
              ("b0a1c2d3e402", "bins fill index", 'op.create_index("ix_bins_fill_level", "bins", ["fill_level"])',
               'op.drop_index("ix_bins_fill_level", table_name="bins")')],
    # a rewrite of the big table
    "big": [("b0a1c2d3e411", "pickups weight as float",
             'op.alter_column("pickups", "weight_kg", type_=sa.Float(), existing_type=sa.Numeric(8, 2), '
             'postgresql_using="weight_kg::double precision")',
             'op.alter_column("pickups", "weight_kg", type_=sa.Numeric(8, 2), existing_type=sa.Float(), '
             'postgresql_using="round(weight_kg::numeric, 2)")')],
}


def add_demo_revisions(versions: Path, change: str) -> list[str]:
    """Write the ``change`` revisions ("small" or "big") after the demo's head into ``versions``."""
    down = DEMO_HEAD
    for rid, title, up, dn in LARGE_CHANGES[change]:
        (versions / f"{rid}_{title.replace(' ', '_')}.py").write_text(
            f'"""{title}\n\nRevision ID: {rid}\nRevises: {down}\n"""\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {rid!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {up}\n\n\ndef downgrade():\n    {dn}\n")
        down = rid
    return [r[0] for r in LARGE_CHANGES[change]]


def set_url(ini: Path, url: str) -> None:
    """Write the URL into alembic.ini, as a user of plain alembic would."""
    lines = [f"sqlalchemy.url = {url.replace('%', '%%')}" if line.startswith("sqlalchemy.url") else line
             for line in ini.read_text().splitlines()]
    ini.write_text("\n".join(lines) + "\n")


FILL_SQL = """
insert into bins (code, latitude, longitude, capacity_liters, fill_level)
select 'BULK-' || g, 52 + random(), 13 + random(), 240, (random() * 100)::int from generate_series(1, 20000) g;
insert into collection_routes (name, driver_id, scheduled_date)
select 'route ' || g, 3, date '2026-01-01' + (g % 300) from generate_series(1, 5000) g;
"""
PICKUPS_SQL = """
insert into pickups (route_id, bin_id, collected_at, weight_kg, notes)
select 1 + (g % 5000), 1 + (g % 20000), now() - (g || ' minutes')::interval, round((random() * 90)::numeric, 2),
       repeat(md5(g::text), 3)
from generate_series({start}, {stop}) g
"""


def fill_demo(url: str, target_bytes: int) -> int:
    """Grow a demo database (at head) to about ``target_bytes``; returns its final size."""
    from swrun import database

    engine = database.make_engine(database.normalize_url(url))
    try:
        def run(sql: str) -> None:  # the driver's cursor: the SQL holds no parameters
            with engine.begin() as conn:
                conn.connection.cursor().execute(sql)

        run(FILL_SQL)
        batch, start = 500_000, 1
        while True:
            with engine.connect() as conn:
                size = conn.exec_driver_sql("select pg_database_size(current_database())").scalar()
            if size >= target_bytes:
                break
            run(PICKUPS_SQL.format(start=start, stop=start + batch - 1))
            start += batch
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("vacuum analyze")
            return conn.exec_driver_sql("select pg_database_size(current_database())").scalar()
    finally:
        engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("revisions", type=int)
    args = parser.parse_args()
    print(make_project(args.root, args.revisions))
