"""The integrity ledger: what each applied revision's file was when it ran.

``swrun.migration_ledger`` in the target database holds one row per revision: the file's
name, its path relative to the project, its sha256, when and by which run it was applied.
The upgrade step writes it after every upgrade (and marks rows on a downgrade); the
guards step compares it, and the database's ``alembic_version``, with the files on disk:

* a file whose content changed since it was applied  -> NEVER modify an applied migration
* a revision the ledger or the database knows, no file defines it -> NEVER delete migration files
* a revision now defined by a file of another name   -> NEVER rename migration files
* a file not named ``<revision>_<description>.py``   -> a warning (quiet for a project that
  consistently uses another convention)

The files are read with ``ast``, not imported and not through Alembic's revision map, so
the check works on exactly the projects a deleted file has broken.
"""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import sqlalchemy as sa

from ..errors import ProjectError
from ..migrations import Project, file_sha256
from . import NEVER_DELETE, NEVER_MODIFY, NEVER_RENAME, Finding, parse_file

SCHEMA = "swrun"
TABLE = "migration_ledger"
QUALIFIED = f"{SCHEMA}.{TABLE}"

_DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {QUALIFIED} (
        revision text primary key,
        filename text not null,
        path text not null,
        sha256 text not null,
        applied_at timestamptz not null default now(),
        run_id text not null,
        source text not null,
        state text not null default 'applied',
        updated_at timestamptz not null default now(),
        updated_by text not null)""",
)
# source: upgrade (applied by this run), adopted (applied before swrun kept a ledger),
#         acknowledged (a change to the file accepted by an acknowledgement)
# state:  applied, downgraded, retired (a deletion accepted by an acknowledgement)


@dataclass(frozen=True)
class MigrationFile:
    revision: str
    path: Path
    sha256: str
    parents: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Entry:
    revision: str
    filename: str
    path: str
    sha256: str
    applied_at: dt.datetime | None
    run_id: str
    source: str
    state: str

    def when(self) -> str:
        at = f"{self.applied_at:%Y-%m-%d %H:%M UTC}" if self.applied_at else "an earlier run"
        return f"applied {at} by run {self.run_id}"


@dataclass
class Scan:
    """The revision files on disk, read with ast."""

    files: dict[str, MigrationFile] = field(default_factory=dict)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)

    def parents_missing(self) -> dict[str, list[str]]:
        """revision -> the files' revisions that name it as a parent, when no file defines it."""
        missing: dict[str, list[str]] = {}
        for f in self.files.values():
            for parent in f.parents:
                if parent not in self.files:
                    missing.setdefault(parent, []).append(f.revision)
        return missing


# -- the files --------------------------------------------------------------------------------


def _literal(node) -> object:
    try:
        return ast.literal_eval(node)
    except Exception:
        return None


def read_header(path: Path) -> tuple[str | None, tuple[str, ...]]:
    """``revision`` and its parents (down_revision, depends_on) from a file's source; ProjectError if it does not parse."""
    try:
        _, tree = parse_file(path)
    except SyntaxError as exc:
        raise ProjectError(f"migration file {path} does not parse: {exc.msg} (line {exc.lineno})") from None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            targets, value = [node.target.id], node.value
        else:
            continue
        for name in targets:
            if name in ("revision", "down_revision", "depends_on"):
                values[name] = _literal(value)
    revision = values.get("revision")
    parents: list[str] = []
    for key in ("down_revision", "depends_on"):
        value = values.get(key)
        if isinstance(value, str):
            parents.append(value)
        elif isinstance(value, (tuple, list)):
            parents.extend(v for v in value if isinstance(v, str))
    return (revision if isinstance(revision, str) else None), tuple(parents)


def scan(project: Project) -> Scan:
    """Every revision file of the project (the version directories Alembic reads), by revision."""
    found = Scan()
    for directory in project.version_dirs():
        if not directory.is_dir():
            continue
        candidates = directory.rglob("*.py") if project.recursive_versions else directory.glob("*.py")
        for path in sorted(candidates):
            if path.name.startswith((".#", "__init__")) or "__pycache__" in path.parts:
                continue
            revision, parents = read_header(path)
            if revision is None:
                continue
            if revision in found.files:
                found.duplicates.setdefault(revision, [found.files[revision].path]).append(path)
                continue
            found.files[revision] = MigrationFile(revision, path, file_sha256(path), parents)
    return found


# -- the table --------------------------------------------------------------------------------


def read(conn) -> dict[str, Entry]:
    """The ledger's rows by revision; empty when the database has no ledger yet."""
    exists = conn.exec_driver_sql(f"select to_regclass('{QUALIFIED}') is not null").scalar()
    if not exists:
        return {}
    rows = conn.exec_driver_sql(
        f"select revision, filename, path, sha256, applied_at, run_id, source, state from {QUALIFIED}").all()
    return {r[0]: Entry(*r) for r in rows}


def _ensure(conn) -> None:
    # two runs must not race on "create schema if not exists"
    conn.exec_driver_sql(f"select pg_advisory_xact_lock(hashtext('{QUALIFIED}'))")
    for ddl in _DDL:
        conn.exec_driver_sql(ddl)


def _relative(project: Project, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.ini_path.parent))
    except ValueError:
        return str(path)


def prepare(engine) -> None:
    """The ledger's table, created (committed) before any revision runs: each revision then writes
    its row inside its own transaction (:func:`credit`)."""
    from ..database import connect

    with connect(engine) as conn, conn.begin():
        _ensure(conn)


_CREDIT = (
    f"insert into {QUALIFIED} (revision, filename, path, sha256, run_id, source, state, updated_by) "
    "values (:rev, :file, :path, :hash, :run_id, 'upgrade', 'applied', :run_id) "
    "on conflict (revision) do update set filename = excluded.filename, path = excluded.path, "
    "sha256 = excluded.sha256, applied_at = now(), run_id = excluded.run_id, source = 'upgrade', "
    "state = 'applied', updated_at = now(), updated_by = excluded.updated_by")


def credit(conn, project: Project, revision: str, run_id: str, *, upgrade: bool = True) -> None:
    """One revision's row, written on the migrating connection inside that revision's transaction
    (Alembic's ``on_version_apply``): it commits exactly when the revision does."""
    if upgrade:
        path = project.file_of(revision)
        conn.execute(sa.text(_CREDIT), {"rev": revision, "file": path.name, "path": _relative(project, path),
                                         "hash": file_sha256(path), "run_id": run_id})
    else:
        conn.execute(sa.text(f"update {QUALIFIED} set state = 'downgraded', updated_at = now(), updated_by = :run_id "
                             "where revision = :rev"), {"rev": revision, "run_id": run_id})


def record(engine, project: Project, *, applied: Iterable[str], current: Iterable[str], run_id: str,
           accepted: Iterable[str] = (), retired: Iterable[str] = ()) -> dict:
    """After an upgrade: write each revision this run applied, adopt applied revisions the ledger lacks.

    ``accepted``: revisions whose changed or renamed file an acknowledgement let through, now
    recorded as they are. ``retired``: revisions whose deleted file was acknowledged.
    A row is never rewritten otherwise: a file changed since it ran keeps failing the check.
    """
    from ..database import connect

    applied, accepted, retired = list(applied), set(accepted), set(retired)
    live = project.ancestors(tuple(current)) if tuple(current) else set()
    counts = {"recorded": 0, "adopted": 0, "accepted": 0, "retired": 0}
    with connect(engine) as conn, conn.begin():
        _ensure(conn)
        known = read(conn)
        rows: list[tuple[str, str]] = [(rev, "upgrade") for rev in applied]
        for rev in project.topo_order(live - set(applied)):
            entry = known.get(rev)
            if entry is None or entry.state != "applied":
                rows.append((rev, "adopted"))
            elif rev in accepted:
                rows.append((rev, "acknowledged"))
        for _, source in rows:
            counts["recorded" if source == "upgrade" else "accepted" if source == "acknowledged" else "adopted"] += 1
        if rows:
            paths = [project.file_of(rev) for rev, _ in rows]
            # one statement for any number of revisions (a 500-revision deploy is one round trip)
            conn.execute(sa.text(
                f"insert into {QUALIFIED} (revision, filename, path, sha256, run_id, source, state, updated_by) "
                "select r, f, p, h, :run_id, s, 'applied', :run_id "
                "from unnest(cast(:revs as text[]), cast(:files as text[]), cast(:paths as text[]), cast(:hashes as text[]), "
                "cast(:sources as text[])) as t(r, f, p, h, s) "
                "on conflict (revision) do update set filename = excluded.filename, path = excluded.path, "
                "sha256 = excluded.sha256, applied_at = case when excluded.source = 'upgrade' then now() "
                f"else {QUALIFIED}.applied_at end, run_id = case when excluded.source = 'upgrade' then excluded.run_id "
                f"else {QUALIFIED}.run_id end, source = excluded.source, state = 'applied', updated_at = now(), "
                "updated_by = excluded.updated_by"),
                {"run_id": run_id, "revs": [rev for rev, _ in rows], "files": [path.name for path in paths],
                 "paths": [_relative(project, path) for path in paths], "hashes": [file_sha256(path) for path in paths],
                 "sources": [source for _, source in rows]})
        if retired:
            conn.execute(sa.text(f"update {QUALIFIED} set state = 'retired', updated_at = now(), updated_by = :run_id "
                                 "where revision = any(:revs)"), {"run_id": run_id, "revs": sorted(retired)})
            counts["retired"] = len(retired)
    return counts


def mark_downgraded(engine, revisions: Iterable[str], run_id: str) -> int:
    """After a downgrade: the rows of the undone revisions say so (their files may change again)."""
    from ..database import connect

    revisions = sorted(set(revisions))
    if not revisions:
        return 0
    with connect(engine) as conn, conn.begin():
        _ensure(conn)
        result = conn.execute(sa.text(f"update {QUALIFIED} set state = 'downgraded', updated_at = now(), updated_by = :run_id "
                                      "where revision = any(:revs)"), {"run_id": run_id, "revs": revisions})
        return result.rowcount


# -- the check --------------------------------------------------------------------------------


def check(found: Scan, entries: dict[str, Entry], db_current: Iterable[str], applied: set[str] | None = None) -> list[Finding]:
    """The files on disk against the ledger and the database's revision.

    ``applied``: the revisions the database has applied, when the revision graph can tell
    (ledger rows outside it are stale: undone outside swrun). None when the graph is broken.
    """
    findings: list[Finding] = []
    files = found.files
    for rev, paths in sorted(found.duplicates.items()):
        findings.append(Finding(f"duplicate:{rev}", "duplicate", "danger",
                                f"revision {rev} is defined by {len(paths)} files: {', '.join(p.name for p in paths)}",
                                revision=rev, file=paths[-1].name, source="ledger"))
    for rev, entry in sorted(entries.items()):
        if entry.state != "applied" or (applied is not None and rev not in applied and rev in files):
            continue
        if rev not in files:
            findings.append(Finding(
                f"deleted:{rev}", "deleted", "danger",
                f"{NEVER_DELETE}: {entry.filename} (revision {rev}, {entry.when()}) is gone; restore it from version "
                "control, and reverse its changes with a new migration instead",
                revision=rev, file=entry.filename, never=NEVER_DELETE, source="ledger"))
            continue
        now = files[rev]
        if now.name != entry.filename:
            findings.append(Finding(
                f"renamed:{rev}", "renamed", "danger",
                f"{NEVER_RENAME}: {entry.filename} (revision {rev}, {entry.when()}) is now named {now.name}; "
                "give it its name back",
                revision=rev, file=entry.filename, never=NEVER_RENAME, source="ledger"))
        if now.sha256 != entry.sha256:
            findings.append(Finding(
                f"modified:{rev}", "modified", "danger",
                f"{NEVER_MODIFY}: {now.name} (revision {rev}) changed since it was {entry.when()} "
                f"(sha256 {entry.sha256[:12]}... then, {now.sha256[:12]}... now); restore it and put the correction "
                "in a new migration",
                revision=rev, file=now.name, never=NEVER_MODIFY, source="ledger"))
    reported = {f.revision for f in findings}
    for rev in db_current:
        if rev not in files and rev not in reported:
            findings.append(Finding(
                f"deleted:{rev}", "deleted", "danger",
                f"{NEVER_DELETE}: the database is at revision {rev}, which no migration file defines "
                "(the ledger has no record of its file); restore the file from version control",
                revision=rev, never=NEVER_DELETE, source="ledger"))
            reported.add(rev)
    for rev, children in sorted(found.parents_missing().items()):
        if rev in reported:
            continue
        findings.append(Finding(
            f"deleted:{rev}", "deleted", "danger",
            f"{NEVER_DELETE}: revision {rev}, the parent of {', '.join(sorted(children))}, is defined by no migration "
            "file; restore the file from version control",
            revision=rev, never=NEVER_DELETE, source="ledger"))
        reported.add(rev)
    return findings


def naming(found: Scan) -> list[Finding]:
    """``<revision>_<description>.py`` (the guide's convention): a warning for each file that breaks it,
    unless the project consistently uses another convention (most of its files do not follow it)."""
    files = list(found.files.values())
    follows = {f.revision for f in files if f.name.startswith(f"{f.revision}_") and len(f.name) > len(f.revision) + 4}
    if not files or len(follows) * 2 < len(files):
        return []
    return [Finding(f"naming:{f.revision}", "naming", "warning",
                    f"{f.name} does not follow the guide's convention <revision>_<description>.py "
                    f"(expected {f.revision}_<description>.py)", revision=f.revision, file=f.name, source="ledger")
            for f in sorted(files, key=lambda f: f.name) if f.revision not in follows]


def database_revisions(conn, table: str = "alembic_version", schema: str | None = None) -> tuple[str, ...]:
    """The version table read directly: the fallback when the project's revision graph does not load.

    ``table`` / ``schema``: the project's ``version_table`` / ``version_table_schema`` (``Project.version_table``
    after env.py ran), as Alembic reads them; the names are quoted, never formatted in as SQL."""
    preparer = conn.dialect.identifier_preparer
    qualified = (f"{preparer.quote(schema)}." if schema else "") + preparer.quote(table)
    exists = conn.execute(sa.text("select to_regclass(:name) is not null"), {"name": qualified}).scalar()
    if not exists:
        return ()
    return tuple(r[0] for r in conn.exec_driver_sql(f"select version_num from {qualified}").all())
