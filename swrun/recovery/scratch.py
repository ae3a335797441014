"""Scratch databases built from the migrations, and the comparison of a live schema with one.

The guide says to stamp only when CERTAIN the schema matches the migration. swrun makes
certain the only way that does not guess: it runs the project's own migrations into an
empty, throwaway database up to the revision, snapshots that schema
(:func:`swrun.schema.snapshot`) and compares it with the live one, the version table left
out. The scratch database lives on the embedded server by default (nothing is created on
the target's server), or on the target's server (``where="target"``, which needs the
CREATEDB privilege there, and compares like with like when the servers' majors differ).
It is dropped afterwards, also when the build or the comparison fails.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Iterator

from sqlalchemy.engine import URL

from .. import schema
from ..config import RunContext
from ..database import connect, make_engine, normalize_url, scrub
from ..errors import DatabaseError, MigrationFailed, UsageError
from ..migrations import Project

WHERE = ("embedded", "target")
VERSION_TABLE = "alembic_version"


@contextlib.contextmanager
def database(ctx: RunContext, where: str = "embedded", label: str = "scratch") -> Iterator[URL]:
    """An empty database that exists only inside the ``with`` block."""
    if where not in WHERE:
        raise UsageError(f"unknown scratch location {where!r}", hint="choose embedded or target")
    name = f"swrun_{label}_{ctx.run_id}_{secrets.token_hex(3)}"[:63]
    if where == "embedded":
        from ..embedded import EmbeddedServer

        server = EmbeddedServer(ctx.state_home)
        url = normalize_url(server.create_database(name))

        def drop() -> None:
            server.drop_database(name)
    else:
        def admin(sql: str) -> None:
            with connect(ctx.engine) as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(sql)

        try:
            admin(f'create database "{name}"')
        except DatabaseError:
            raise
        except Exception as exc:
            text = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()), ctx.url)[:300]
            raise DatabaseError(f"cannot create a scratch database on the target's server: {text}",
                                hint="the user needs CREATEDB there; or build it on the embedded server (scratch=embedded)") from None
        url = ctx.url.set(database=name)

        def drop() -> None:
            admin(f'drop database if exists "{name}" with (force)')
    try:
        yield url
    except BaseException:
        with contextlib.suppress(Exception):  # the failure that got here is the one to report
            drop()
        raise
    else:
        drop()


def build(project: Project, url: URL, revisions: tuple[str, ...] | list[str], *, label: str = "") -> None:
    """Upgrade the (empty) database at ``url`` to each of ``revisions`` in turn, with the project's env.py."""
    for rev in revisions:
        try:
            project.apply(url, rev)
        except MigrationFailed as exc:
            raise MigrationFailed(f"building the scratch database{label}: {exc.args[0]}", revision=exc.revision) from None


def snapshot(url: URL) -> dict:
    engine = make_engine(url)
    try:
        with connect(engine) as conn:
            return without_version_table(schema.snapshot(conn))
    finally:
        engine.dispose()


def live_snapshot(ctx: RunContext) -> dict:
    with connect(ctx.engine) as conn:
        return without_version_table(schema.snapshot(conn))


_INDEX_ON = re.compile(r"\sON\s+(?:ONLY\s+)?(?:[\w\"]+\.)?\"?(?P<t>[\w]+)\"?\s+USING\b", re.I)


def without_version_table(snap: dict, table: str = VERSION_TABLE) -> dict:
    """The snapshot as two servers can compare it: without Alembic's version table (what stamping
    changes is not the schema), and without PostgreSQL 18's named NOT NULL constraints (NOT NULL is
    compared through the columns; older servers have no such constraints, and their names follow
    the history of the column, not its definition)."""
    out = {}
    for kind, rows in snap.items():
        kept = []
        for row in rows:
            row = tuple(row)
            if kind in ("tables", "columns", "constraints") and row[1] == table:
                continue
            if kind == "constraints" and str(row[3]).startswith("NOT NULL "):
                continue
            if kind == "indexes":
                match = _INDEX_ON.search(str(row[2]))
                if match and match.group("t") == table:
                    continue
            kept.append(row)
        out[kind] = kept
    return out


DIFF_COLUMNS = ["kind", "object", "difference", "migrations", "live"]


def compare(expected: dict, live: dict, *, at: str = "the revision") -> list[dict]:
    """One row per object that differs: ``migrations`` is what the migrations build at ``at``, ``live`` what the database has."""
    rows = []
    for row in schema.diff(expected, live):
        difference = {"added": "only in the live database", "removed": "missing from the live database",
                      "changed": "differs"}[row["change"]]
        rows.append({"kind": row["kind"], "object": row["object"], "difference": difference,
                     "migrations": row["before"], "live": row["after"]})
    return rows


def frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=DIFF_COLUMNS)
