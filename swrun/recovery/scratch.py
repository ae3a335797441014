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
import secrets
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy.engine import URL

from .. import schema
from ..config import RunContext
from ..database import connect, make_engine, normalize_url, scrub
from .. import sql
from ..errors import DatabaseError, MigrationFailed, ProjectError, StateError, SwrunError, UsageError
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


class Refused(StateError):
    """swrun's check of where env.py connects refused a scratch build: env.py did not connect to
    the scratch database (nothing ran)."""


class BuildFailed(StateError):
    """The migrations do not build from an empty database (the chain starts on tables the
    application creates, or a revision fails): no comparison with a scratch build means anything."""


def load_baseline(project: Project):
    """``[swrun] baseline = module:attribute``: a MetaData (or a callable taking a Connection) that
    an empty database needs before the first revision; None when the project names none."""
    obj = project.imported("baseline", "the baseline")
    if obj is None:
        return None
    if not (hasattr(obj, "create_all") or callable(obj)):
        raise ProjectError(f"the baseline {project.option('baseline')!r} is neither a MetaData nor a callable taking a Connection")
    return obj


def _lay_baseline(project: Project, url: URL) -> str | None:
    """Create the baseline's tables in the (empty) scratch database, on swrun's own connection to it."""
    found = load_baseline(project)
    if found is None:
        return None
    engine = make_engine(url)
    try:
        with connect(engine) as conn:
            found.create_all(conn) if hasattr(found, "create_all") else found(conn)
            conn.commit()
    except SwrunError:
        raise
    except Exception as exc:
        text = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()), url)[:300]
        raise BuildFailed(f"the baseline {project.option('baseline')!r} does not build in an empty database: "
                          f"{type(getattr(exc, 'orig', None) or exc).__name__}: {text}") from None
    finally:
        engine.dispose()
    return project.option("baseline")


def _target(project: Project, revisions: tuple[str, ...]):
    """What one ``alembic upgrade`` takes to reach exactly ``revisions``."""
    if len(revisions) == 1:
        return revisions[0]
    if set(revisions) == set(project.heads):
        return "heads"
    return tuple(revisions)


@dataclass
class Built:
    """A scratch build: the version table Alembic wrote (as env.py configured it) and, when asked
    for, the schema after each revision, in the order they were applied."""

    version_table: str = VERSION_TABLE
    states: dict[str, dict] = field(default_factory=dict)


def build(project: Project, url: URL, revisions: tuple[str, ...] | list[str], *, every_state: bool = False) -> Built:
    """Bring the empty database at ``url`` to ``revisions`` as ONE ``alembic upgrade`` does: the
    baseline first (``[swrun] baseline``), then a single run of the project's env.py, so a chain
    that only builds in one run (a later revision re-declaring an enum) builds here too.

    ``every_state``: also snapshot the schema after each revision (inside its transaction, before
    its commit), and before the first (``<base>``): every intermediate state from the one run.
    Raises BuildFailed when a revision fails; the StateError of swrun's check of where env.py
    connected passes through unchanged (nothing ran then).
    """
    revisions = tuple(revisions)
    baseline = _lay_baseline(project, url)
    built = Built()
    if every_state:
        built.states["<base>"] = snapshot(url)

    def on_revision(mctx, step) -> None:
        built.version_table = mctx.version_table or VERSION_TABLE
        if every_state:
            for rev in step.up_revision_ids:
                built.states[rev] = without_version_table(schema.snapshot(mctx.connection), built.version_table)

    if not revisions:
        return built
    try:
        project.apply(url, _target(project, revisions), lock_timeout=None, on_revision=on_revision,
                      durable=False)
    except BuildFailed:
        raise
    except StateError as exc:  # nothing ran: env.py connected elsewhere, or Alembic cannot plan the build
        raise Refused(f"the scratch database for {', '.join(revisions)}: {exc.args[0]}", hint=exc.hint) from None
    except MigrationFailed as exc:
        said = exc.args[0].removeprefix("revision ").replace(" failed during upgrade: ", " failed: ", 1)
        advice = (f"with the baseline {baseline!r} ([swrun] baseline) laid first" if baseline else
                  "if the chain starts on tables the application creates itself, set [swrun] baseline = module:attribute "
                  "(their MetaData) in alembic.ini")
        raise BuildFailed(f"the migrations cannot be built from an empty database: {said[:400]}; {advice}") from None
    return built


def snapshot(url: URL, version_table: str = VERSION_TABLE) -> dict:
    engine = make_engine(url)
    try:
        with connect(engine) as conn:
            return without_version_table(schema.snapshot(conn), version_table)
    finally:
        engine.dispose()


def live_snapshot(ctx: RunContext, version_table: str = VERSION_TABLE) -> dict:
    with connect(ctx.engine) as conn:
        return without_version_table(schema.snapshot(conn), version_table)


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
                if sql.index_table(str(row[2])) == table:
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
