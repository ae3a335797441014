"""rehearse: the pending migrations, and their rollback, on a restored copy of the real data.

The guide: ALWAYS test migrations locally first; the checklist: have a rollback plan ready.
An empty test database misses what real rows do to a migration (a NOT NULL over nulls, a
unique index over duplicates, a slow rewrite of a big table). So this run's backup is
restored into a scratch database — on the embedded server (default) or on the target's
own server (``on="target"``) — and there, on real data:

1. upgrade to the target, one transaction per revision, each timed; inside each
   revision's transaction, before its commit, a second connection reads the relation locks
   it holds from ``pg_locks`` (PostgreSQL keeps a table lock to the end of the transaction,
   so this is every lock the revision took) and names them from its own snapshot, which
   sees only relations that existed before the revision: a table the revision creates is
   nobody else's to wait for;
2. verify, as after a real deploy (your ``[swrun] check`` command runs against the copy);
3. downgrade back to the starting revision: the rollback plan, run on real data;
4. the schema (and row counts) compared with the copy before the upgrade;
5. upgrade again: every revision up, down and up (the "stairway").

A revision that fails stops the rehearsal with its name and error; the deploy's upgrade
then does not run, so the real database is never touched. The scratch database is
dropped at the end, whatever happened; a copy whose run was killed outright (SIGKILL, a
lost machine) has no live owner, and the next rehearsal on that server drops it (see
``_Scratch.create``).

From the timings, each revision's expected lock hold in production: the revision holds
its locks for its whole transaction, so the hold is its time on the copy. Next to it, the
traffic the preflight measured on the target: transactions that would arrive meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL

from .. import embedded, rehearsal_copy, schema
from ..config import RunContext
from ..database import connect, identity, make_engine, normalize_url, scrub
from ..errors import MigrationFailed, StateError, SwrunError, UsageError
from . import verify
from .backup import libpq_args
from ..result import StepResult, Timer

PLACES = ("embedded", "target")
# PostgreSQL's table lock modes, weakest first
LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
# what application queries on the table wait for while a mode is held
BLOCKS = {"AccessExclusiveLock": "reads and writes", "ExclusiveLock": "writes, SELECT FOR UPDATE",
          "ShareRowExclusiveLock": "writes", "ShareLock": "writes"}
ROOM_FACTOR = 1.5  # the copy, and half again for what the migrations write

# the relation locks a backend holds, with the names the caller's snapshot sees; read from
# the observer, whose committed catalog lacks the relations the revision itself creates
_HELD_BY = ("select l.mode, n.nspname, c.relname from pg_locks l "
            "join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace "
            "where l.pid = $1 and l.locktype = 'relation' and l.granted "
            "and l.database = (select oid from pg_database where datname = current_database()) "
            "and c.relkind in ('r', 'p', 'm', 'f') "
            "and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'swrun')")


class RehearsalError(SwrunError):
    """The rehearsal could not run or a revision failed on the copy; the real database is untouched."""

    exit_code = 9


def strongest(modes) -> str:
    return max(modes, key=lambda m: LOCK_MODES.index(m) if m in LOCK_MODES else -1)


SCRATCH_PREFIX = "swrun_rehearsal_"
# pg_advisory_lock(int4, int4)'s first key for a rehearsal's hold on its scratch database
OWNER_CLASS = 0x5357


def scratch_name(run_id: str) -> str:
    return SCRATCH_PREFIX + re.sub(r"[^a-z0-9_]", "_", run_id.lower())[:40]


def owner_key(name: str) -> int:
    """The second key of the advisory lock a rehearsal holds while its scratch database exists."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


class _Scratch:
    """The scratch database: where it lives, how it is made and removed."""

    def __init__(self, ctx: RunContext, on: str, name: str, home: str | None = None):
        if on not in PLACES:
            raise UsageError(f"unknown rehearse_on {on!r}", hint=f"choose one of {', '.join(PLACES)}")
        self.on, self.name, self.data_dir = on, name, None
        self.owner, self.swept, self._held = None, [], contextlib.ExitStack()
        if on == "embedded":
            server = embedded.scratch_server(home)
            status = server.start()
            self.data_dir = server.data_dir
            self.admin_url = normalize_url(status.url("postgres"))
            self.url = normalize_url(status.url(name))
            self.where = f"the throwaway scratch server ({embedded.SCRATCH_HOME_ENV})" if server.throwaway else "the embedded server"
        else:
            self.admin_url = ctx.url
            self.url = ctx.url.set(database=name)
            ident = identity(ctx.url)
            self.where = f"the target server ({ident.host}:{ident.port})"
        self.admin = make_engine(self.admin_url)

    def _sql(self, statement: str) -> None:
        with connect(self.admin) as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(statement)

    def room(self, database_bytes: int | None) -> None:
        if self.data_dir is None or not database_bytes:
            return  # a remote server's disk is not ours to see: a restore that runs out says so
        need = int(database_bytes * ROOM_FACTOR)
        free = shutil.disk_usage(self.data_dir).free
        if free < need:
            raise RehearsalError(
                f"no room for the scratch database: {free / 2**20:.0f} MiB free in {self.data_dir}, the copy needs about "
                f"{need / 2**20:.0f} MiB (the database's {database_bytes / 2**20:.0f} MiB and half again for what the migrations write)",
                hint="free space there, or rehearse on the target's server: --rehearse-on target")

    def create(self) -> None:
        """Hold the ownership lock, remove copies whose rehearsal died, then make this one.

        A rehearsal holds a session advisory lock named after its scratch database from before
        the database exists until after it is dropped. A copy of real data with no holder is a
        leftover of a rehearsal that was killed (its own cleanup never ran); one with a holder,
        in any database of the server, is another run's, in use.
        """
        try:
            self.owner = self._held.enter_context(connect(self.admin)).execution_options(isolation_level="AUTOCOMMIT")
            if not self.owner.execute(sa.text("select pg_try_advisory_lock(:c, :k)"),
                                      {"c": OWNER_CLASS, "k": owner_key(self.name)}).scalar():
                raise RehearsalError(f"another run is rehearsing in {self.name} on {self.where}",
                                     hint="each run has its own run id; wait for the other one")
            self.swept = self._sweep()
            self._sql(f'drop database if exists "{self.name}"')  # a leftover of this same run id
            self._sql(f'create database "{self.name}" template template0')
            # a scratch copy needs no durability: its commits need not wait for the WAL flush,
            # which is most of a small revision's time (the rehearsal commits every revision 3 times)
            self._sql(f'alter database "{self.name}" set synchronous_commit = off')
        except sa.exc.DBAPIError as exc:
            raise RehearsalError(f"cannot create the scratch database {self.name} on {self.where}: {_first_line(exc)}",
                                 hint="the role needs CREATEDB; or rehearse on the embedded server: --rehearse-on embedded"
                                 if self.on == "target" else None) from None

    def _sweep(self) -> list[dict]:
        """Drop the scratch databases on this server that no live rehearsal holds."""
        # the names first, then the locks: an owner locks before it creates, so a database
        # listed here whose owner is alive has its lock in the later read
        names = [n for n in self.owner.exec_driver_sql("select datname from pg_database").scalars()
                 if n.startswith(SCRATCH_PREFIX) and n != self.name]
        if not names:
            return []
        held = set(self.owner.execute(sa.text(
            "select objid::bigint from pg_locks where locktype = 'advisory' and granted and objsubid = 2 and classid = :c"),
            {"c": OWNER_CLASS}).scalars())
        swept = []
        for name in names:
            if (owner_key(name) & 0xFFFFFFFF) in held:
                continue  # another run's copy, in use
            try:
                swept.append({"database": name, "removed": _drop_database(self.owner, name)})
            except sa.exc.DBAPIError as exc:  # another role's, say: said, and the rehearsal goes on
                swept.append({"database": name, "removed": False, "error": _first_line(exc)})
        return swept

    def recreate(self) -> None:
        """An empty scratch database again (a restore that failed half-way)."""
        with connect(self.admin) as conn:
            _drop_database(conn.execution_options(isolation_level="AUTOCOMMIT"), self.name)
        self._sql(f'create database "{self.name}" template template0')
        self._sql(f'alter database "{self.name}" set synchronous_commit = off')

    def drop(self) -> bool:
        """Drop it (ending any session left on it); True when it is gone."""
        with connect(self.admin) as conn:
            return _drop_database(conn.execution_options(isolation_level="AUTOCOMMIT"), self.name)

    def close(self) -> None:
        """Release the ownership lock (after the drop) and the connections."""
        self._held.close()
        self.admin.dispose()


def _drop_database(conn, name: str) -> bool:
    """Drop a database, ending the sessions left on it; True when it is gone."""
    if int(conn.exec_driver_sql("show server_version_num").scalar()) >= 130000:
        conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
    else:
        conn.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n"), {"n": name})
        conn.exec_driver_sql(f'drop database if exists "{name}"')
    return conn.execute(sa.text("select count(*) from pg_database where datname = :n"), {"n": name}).scalar() == 0


def restore(dump: Path, url: URL, jobs: int | None = None, *, owners: bool = False, listing: Path | None = None) -> None:
    """pg_restore a dump into an empty database: no tablespaces or subscriptions (a scratch copy
    must not start replicating), and no owners or grants (it must not need the production roles)
    unless ``owners``: then with them, for a rehearsal as the target's role on a server that has its roles.
    Parallel (``-j``) for a directory dump and a custom-format file alike; ``listing``: only the
    entries of that ``pg_restore -L`` file (the targeted copy)."""
    import os

    args, env = libpq_args(url)
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    keep = [] if owners else ["--no-owner", "--no-privileges"]
    proc = rehearsal_copy.pg_restore(dump, url, [*keep, "--no-tablespaces", "--no-subscriptions", "--no-publications",
                                                 "--no-security-labels", "--exit-on-error", *args],
                                     jobs=jobs, listing=listing, env=env)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        first = next((line for line in lines if "error:" in line), lines[0] if lines else f"exit {proc.returncode}")
        said = " ".join(first.split("error:", 1)[-1].split())
        raise RehearsalError(f"the backup {dump.name} does not restore into the scratch database: {scrub(said, url)}",
                             hint="a backup that does not restore here would not restore in an emergency either")


def _restore_as(dump: Path, scratch: "_Scratch", rights: dict, listing: Path | None = None) -> None:
    """Restore into the scratch database, with the target's owners and grants where the copy runs as its role
    (falling back to none when a role the dump names is not on this server)."""
    if not rights["as_role"]:
        restore(dump, scratch.url, listing=listing)
        return
    try:
        restore(dump, scratch.url, owners=True, listing=listing)
    except RehearsalError as exc:  # a role the dump names is not on this server
        scratch.recreate()
        restore(dump, scratch.url, listing=listing)
        rights["as_role"] = None
        rights["note"] = f"not as {rights['role']}: with its owners and grants {exc.line().split(': ', 1)[-1]}"


def _quoted(table: str) -> str:
    from ..sql import quote_ident

    return ".".join(quote_ident(part) for part in table.split(".", 1))


def _plan_copy(ctx: RunContext, project, dump: Path, scratch: "_Scratch", rights: dict, target: str, asked: str,
               scratch_files: list[Path]) -> tuple[rehearsal_copy.Plan, Path | None]:
    """Which tables the copy needs rows of: the pending upgrade run on a schema-only restore of the
    dump, its locks read inside each revision's transaction and its executed SQL parsed; then the
    foreign-key closure (see rehearsal_copy). Leaves the scratch database empty again."""
    import tempfile

    with connect(ctx.engine) as conn:  # what each table's rows cost: read on the target (the copy has none yet)
        sizes = rehearsal_copy.sizes(conn)
    known = set(sizes)
    version = getattr(project, "_version_table", None) or ("alembic_version", None)
    always = {t for t in known if t.split(".", 1)[1] in {*rehearsal_copy.ALWAYS, version[0]}
              or t.split(".", 1)[0] in rehearsal_copy.OWN_SCHEMAS}
    lines = rehearsal_copy.toc(dump)

    def list_file(keep: set[str]) -> Path:
        fd, name = tempfile.mkstemp(prefix=f"swrun-{ctx.run_id}-", suffix=".list")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(rehearsal_copy.listing(lines, keep, known))
        scratch_files.append(Path(name))
        return Path(name)

    _restore_as(dump, scratch, rights, list_file(always))
    engine = make_engine(scratch.url)
    captured: list[dict] = []
    try:
        with connect(engine) as raw:
            observer = raw.execution_options(isolation_level="AUTOCOMMIT")
            copy_tables, edges = rehearsal_copy.catalog(observer)
            done = _apply(project, scratch.url, target, "upgrade", observer, ctx.lock_timeout, captured, _session_of(rights),
                          retry_of=ctx)
    finally:
        engine.dispose()
    unreadable = None
    if done.error:
        unreadable = f"the upgrade failed on the schema-only copy, so its locks were not read ({done.error})"
    ran = [a["revision"] for a in done.applied]
    missing = [rev for rev in ran if rev not in done.locks]
    if not unreadable and missing:
        unreadable = f"the locks of {len(missing)} revision(s) could not be read ({', '.join(missing[:3])})"
    touched: dict[str, str] = {}
    for rev in ran:
        for rel, mode in done.locks.get(rev, {}).items():
            name = rehearsal_copy.qualified(rel)
            touched[name] = strongest([touched.get(name, mode), mode])
    named, written, unparsed = rehearsal_copy.named_in(
        [str(c.get("sql") or "") for c in captured if not c.get("bookkeeping")], known)
    if not unreadable and unparsed:
        unreadable = f"{len(unparsed)} executed statement(s) swrun cannot parse, whose tables are unknown: {unparsed[0][:80]!r}"
    for name in named:  # what an autocommit block ran outside the transaction the locks are read in
        touched.setdefault(name, "named in its SQL")
    plan = rehearsal_copy.decide(asked, touched=dict(sorted(touched.items())), written=written, unreadable=unreadable,
                                 known=known & copy_tables, edges=edges, table_sizes=sizes)
    scratch.recreate()
    return plan, (list_file(set(plan.tables)) if plan.copy == "touched" else None)


def _copy_rows(plan: rehearsal_copy.Plan, counts: dict[str, int]) -> list[dict]:
    """The copy's tables with their rows: what it holds, and why each table has rows."""
    rows = []
    for table, n in sorted(counts.items()):
        if plan.copy == "touched" and table not in plan.tables:
            why = "schema only: no pending revision touches it"
        elif table in plan.touched:
            why = "touched"
        elif table in plan.added:
            why = plan.added[table]
        else:
            why = "full copy"
        rows.append({"table": table, "rows": n, "lock": plan.touched.get(table, "-"), "why": why})
    return rows


class _Pass:
    """One pass of the stairway: revisions applied, timed, with the locks each held."""

    def __init__(self, direction: str):
        self.direction = direction
        self.applied: list[dict] = []
        self.locks: dict[str, dict[str, str]] = {}
        self.seconds = 0.0
        self.error: str | None = None
        self.failed_revision: str | None = None


def _apply(project, url: URL, target: str, direction: str, observer, lock_timeout: str,
           capture: list | None = None, session: dict | None = None, retry_of: RunContext | None = None) -> _Pass:
    """One pass; ``observer`` None: no lock reading (the second upgrade's locks are the first's);
    ``capture``: gets every statement the migrations execute (see ``Project.apply``)."""
    done = _Pass(direction)

    cursor = observer.connection.cursor() if observer is not None else None
    if cursor is not None:  # planned once: planning is most of the query's time
        cursor.execute(f"prepare swrun_held_by(int) as {_HELD_BY}")

    def on_revision(mctx, step) -> None:
        # one round trip per revision, on the observer's plain DB-API cursor: psycopg2 knows the
        # migration's backend id without asking, and its locks are in the shared lock table
        get_pid = getattr(mctx.connection.connection.dbapi_connection, "get_backend_pid", None)
        pid = get_pid() if get_pid else mctx.connection.exec_driver_sql("select pg_backend_pid()").scalar()
        cursor.execute("execute swrun_held_by(%s)", (int(pid),))
        version_table = getattr(mctx, "version_table", "alembic_version")
        modes: dict[str, list[str]] = {}
        for mode, nsp, rel in cursor.fetchall():
            if rel != version_table:
                modes.setdefault(rel if nsp == "public" else f"{nsp}.{rel}", []).append(mode)
        done.locks[step.up_revision_id] = {rel: strongest(m) for rel, m in sorted(modes.items())}

    started = time.perf_counter()
    try:
        from . import upgrade  # the deploy's lock-retry settings (lock_retries, lock_retry_budget, statement_timeout)

        applied = project.apply(url, target, direction=direction, lock_timeout=lock_timeout,
                                retry=upgrade.retry_policy(retry_of), statement_timeout=upgrade.statement_timeout(retry_of),
                                on_revision=on_revision if observer is not None else None,
                                durable=False, capture=capture, session=session)  # a disposable copy
    except MigrationFailed as exc:
        applied = list(project._timings)  # the revisions committed before the failing one
        done.error, done.failed_revision = exc.line(), exc.revision
    finally:
        if cursor is not None:
            with contextlib.suppress(Exception):  # a scratch server gone away is the pass's error to report
                cursor.execute("deallocate swrun_held_by")
            cursor.close()
    done.seconds = time.perf_counter() - started
    done.applied = [a.as_dict() for a in applied]
    return done


_SETTINGS = ("search_path", "statement_timeout")  # the target role's session settings a migration feels


def _target_rights(ctx: RunContext, scratch: "_Scratch") -> dict:
    """Who the migrations run as on the target and with which settings, and whether the copy can
    run them as that role: only where the role exists on the rehearsal server and is not the one
    the rehearsal already connects as (on the target's own server it is the same role)."""
    from .preflight import role_facts

    with connect(ctx.engine) as conn:
        facts = role_facts(conn)
    out = {"role": facts["role"], "superuser": bool(facts["superuser"]), "as_role": None, "note": None,
           **{k: facts[k] for k in _SETTINGS}}
    admin_user = scratch.admin_url.username
    with connect(scratch.admin) as conn:
        exists = conn.execute(sa.text("select count(*) from pg_roles where rolname = :r"), {"r": facts["role"]}).scalar()
        me = conn.exec_driver_sql("select current_user").scalar()
    if facts["role"] == (admin_user or me):
        out["note"] = f"as {facts['role']}, the target's own role"
    elif facts["superuser"]:
        out["note"] = f"as {me}: {facts['role']} is a superuser on the target, its rights reach as far"
    elif exists:
        out["as_role"] = facts["role"]
    else:
        out["note"] = (f"as {me}: {facts['role']} is not a role on {scratch.where}; the preflight checked what it may do "
                       "on the target (writable, search_path, CREATE)")
    return out


def _session_of(rights: dict) -> dict[str, str]:
    """The target's search_path and statement_timeout (and its role, where the copy can run as it), for
    the migrations' connection only: bound with set_config on whatever connection env.py hands over, so
    any driver gets them (asyncpg takes no libpq ``options``); swrun's other connections keep theirs."""
    session = {"role": rights["as_role"]} if rights.get("as_role") else {}
    session.update({name: str(rights[name]) for name in _SETTINGS if rights.get(name) is not None})
    return session


def _describe_rights(rights: dict) -> str:
    settings = ", ".join(f"{k} = {rights[k]!r}" for k in _SETTINGS)
    who = f"as {rights['as_role']} (SET ROLE), the target's role, with its owners and grants restored" if rights["as_role"] \
        else rights["note"]
    return f"the migrations ran {who}; with the target's {settings}"


def executed_sql(ctx: RunContext, project, revisions: list[str], captured: list[dict], copy: str) -> dict:
    """What each revision executed on the copy: written beside the preview as
    ``<run>_executed.sql``, reviewed by squawk and swrun's SQL rules, for the record and the gates.

    Statement texts only, as the driver received them: bound parameter values (they can be
    secrets or personal data) stand as their placeholders and are never written. Alembic's
    own version-table bookkeeping is left out.
    """
    from .. import records
    from ..guards import lint

    by_rev: dict[str, list[str]] = {rev: [] for rev in revisions}
    for entry in captured:
        rev = entry.get("revision")
        if rev in by_rev and not entry.get("bookkeeping"):
            text = str(entry.get("sql") or "").strip()
            if text:
                by_rev[rev].append(text if text.endswith(";") else text + ";")
    secrets = records.secret_forms(ctx.url)
    texts = {rev: records.redact("\n\n".join(stmts) + "\n", secrets)[0] if stmts else "" for rev, stmts in by_rev.items()}
    out_dir = Path(ctx.backup_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{ctx.run_id}_executed.sql"
    lines = [f"-- swrun rehearsal: the SQL each revision executed, as executed on the rehearsal copy ({copy})",
             f"-- database: {ctx.redacted_url}", f"-- run: {ctx.run_id}",
             "-- bound parameter values are not written: their placeholders (%(name)s) stand for them", ""]
    for rev in revisions:
        lines += [f"-- ==== {rev}: {project.description(rev)}, as executed on the rehearsal copy", "",
                  texts[rev].rstrip("\n") or "-- (no statement)", ""]
    _write_whole(path, "\n".join(lines))
    data = {"executed_file": str(path), "executed_revisions": list(revisions),
            "executed_statements": {rev: len(stmts) for rev, stmts in by_rev.items()},
            "executed_sql": {rev: text for rev, text in texts.items()}, "executed_findings": []}
    reviewed = [_Executed(rev, text) for rev, text in texts.items() if text]
    try:
        findings = lint.squawk(reviewed, exclude=lint.squawk_exclusions(project), lock_timeout_set=bool(ctx.lock_timeout))
        state, created = lint.EnumState(), set()  # carried base first: a table created earlier in the range is no danger
        for rev in reviewed:
            findings.extend(lint.lint_sql(rev.revision, rev.sql, project.file_of(rev.revision).name, state=state, created=created))
    except SwrunError as exc:  # squawk missing or failing: the gates see "not reviewed"
        data["executed_review_error"] = exc.line()
        return data
    for f in findings:
        f.message = f"as executed on the rehearsal copy: {f.message}"
    data["executed_findings"] = [f.as_dict() for f in findings]
    return data


class _Executed:
    """One revision's executed SQL in the shape the lint reads (``revision``, ``sql``)."""

    def __init__(self, revision: str, sql: str):
        self.revision, self.sql = revision, sql


def _write_whole(path: Path, text: str) -> None:
    """Never a truncated file under its final name: written beside it, then renamed."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _without_version_table(snap: dict, name: str = "alembic_version") -> dict:
    keep = {
        "tables": [r for r in snap["tables"] if r[1] != name],
        "columns": [r for r in snap["columns"] if r[1] != name],
        "indexes": [r for r in snap["indexes"] if f" ON {r[0]}.{name} USING" not in r[2]],
        "constraints": [r for r in snap["constraints"] if r[1] != name],
    }
    return {**snap, **keep}


def run(ctx: RunContext, *, backup_file: str | Path, target: str = "head", start: tuple[str, ...] | None = None,
        on: str = "embedded", database_bytes: int | None = None, activity_now: dict | None = None,
        home: str | None = None, copy: str = "auto", verify_restore: str = "toc") -> StepResult:
    project = ctx.project
    result = StepResult("rehearse")
    stages: list[dict] = []
    passes: dict[str, _Pass] = {}

    def stage(name: str, passed: bool, detail: str, severity: str = "failed") -> None:
        stages.append({"stage": name, "result": "pass" if passed else severity, "detail": detail})

    with Timer() as t:
        if start is None:
            start = project.current(ctx.url)
        start = real_start = tuple(start)
        pending = project.pending(start, target)
        wanted = project.resolve(target)
        fingerprint = project.fingerprint()
        result.data = {"fingerprint": fingerprint, "on": on, "start": list(start), "target": list(wanted),
                       "pending": pending, "backup": str(backup_file), "activity": activity_now}
        if not pending:
            result.summary = f"nothing pending; at {', '.join(start) or '<base>'}: no migration to rehearse"
            result.data.update(rehearsed=False, rollback_proven=None)
            result.seconds = t.seconds
            return result
        if len(start) > 1:
            raise StateError("the database has several current heads; the rehearsal's downgrade needs one starting revision")
        dump = Path(backup_file)
        if not dump.exists():
            raise RehearsalError(f"this run's backup {dump} is gone; nothing to restore")
        try:
            scratch = _Scratch(ctx, on, scratch_name(ctx.run_id), home)
        except UsageError:
            raise
        except SwrunError as exc:  # the embedded server does not start here
            raise RehearsalError(f"rehearsal: no server for the scratch database: {exc.line()}",
                                 hint="or rehearse on the target's server: --rehearse-on target") from None
        result.data["scratch_database"] = scratch.name
        captured: list[dict] = []  # what the first upgrade executed, statement by statement
        failure: SwrunError | None = None
        unproven: dict | None = None  # the downgrade failed: the revision and its error
        created = False
        observer_engine = None
        copy_ctx = None
        listing = None
        scratch_files: list[Path] = []  # the targeted copy's pg_restore -L files, removed at the end
        at = "room"  # the stage in flight, named if it fails
        try:
            scratch.room(database_bytes)
            at = "scratch database"
            scratch.create()
            created = True
            if scratch.swept:
                result.data["leftovers"] = scratch.swept
                gone = [s["database"] for s in scratch.swept if s["removed"]]
                kept = [f"{s['database']} ({s.get('error', 'still there')})" for s in scratch.swept if not s["removed"]]
                stage("leftovers", not kept, "; ".join(
                    ([f"removed {', '.join(gone)}: left by a rehearsal that was killed before its cleanup"] if gone else [])
                    + ([f"could not remove {', '.join(kept)}"] if kept else [])), severity="warning")
            at = "restore"
            rights = _target_rights(ctx, scratch)
            result.data["rights"] = {k: v for k, v in rights.items() if k != "options"}
            asked = "full" if verify_restore == "full" else copy
            if asked not in rehearsal_copy.COPIES:
                raise UsageError(f"unknown rehearse_copy {copy!r}", hint=f"choose one of {', '.join(rehearsal_copy.COPIES)}")
            small = asked == "auto" and database_bytes is not None and database_bytes < rehearsal_copy.SMALL_BYTES
            if asked == "full" or small:
                plan = rehearsal_copy.Plan("full", "full copy: asked (--verify-restore full)" if verify_restore == "full"
                                           else "full copy: asked (--rehearse-copy full)" if asked == "full" else
                                           f"full copy: the database is {database_bytes / 2**20:.1f} MiB, which restores whole "
                                           "faster than the schema-only pass that finds the touched tables would run")
            else:
                at = "touched tables"
                with Timer() as reading:
                    plan, listing = _plan_copy(ctx, project, dump, scratch, rights, target, asked, scratch_files)
                stage("touched tables", True, f"{plan.reason} (the upgrade run on a schema-only copy in {reading.seconds:.2f}s)")
                at = "restore"
            result.data["copy"] = plan.as_dict()
            with Timer() as restoring:
                _restore_as(dump, scratch, rights, listing if plan.copy == "touched" else None)
                observer_engine = make_engine(scratch.url)
                with connect(observer_engine) as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    # the plans a migration's queries get, as in production: for the tables they touch (the
                    # others' statistics change no plan a migration runs); everything when that is unknown
                    analyzed = [t for t in plan.touched if t in set(plan.tables)] if plan.tables else []
                    conn.exec_driver_sql("analyze " + ", ".join(_quoted(t) for t in analyzed) if analyzed else "analyze")
                    size = int(conn.exec_driver_sql("select pg_database_size(current_database())").scalar())
            what = (f"the schema and the rows of {len(plan.tables)} table(s)" if plan.copy == "touched" else "everything")
            stage("restore", True, f"{dump.name} into {scratch.name} on {scratch.where}: {what}, {size / 2**20:.1f} MiB in "
                                   f"{restoring.seconds:.2f}s (pg_restore, then ANALYZE of "
                                   + (f"{len(analyzed)} touched table(s))" if analyzed else "every table)")
                                   + (f"; {plan.reason}" if asked == "full" or small else ""))
            migrate_url, session = scratch.url, _session_of(rights)
            result.data["rights"] = {k: v for k, v in rights.items() if k != "options"}
            stage("target's rights", True, _describe_rights(rights))
            result.data["restore_seconds"] = round(restoring.seconds, 3)
            result.data["copy_bytes"] = size
            restored_at = tuple(project.current(scratch.url))
            if set(restored_at) != set(start):
                # another run moved the database between status and backup: rehearse from where the backup is
                stage("start", True, f"the backup is at {', '.join(restored_at) or '<base>'}, not at "
                                     f"{', '.join(start) or '<base>'} as the status step saw: the rehearsal starts there")
                start, pending = restored_at, project.pending(restored_at, target)
                result.data.update(start=list(start), pending=pending)
                if len(start) > 1:
                    raise StateError("the backup has several current heads; the rehearsal's downgrade needs one starting revision")
            copy_ctx = RunContext(project_path=ctx.project_path, database_url=scratch.url.render_as_string(hide_password=False),
                                  environment=ctx.environment, backup_dir=ctx.backup_dir, run_id=ctx.run_id,
                                  operator=ctx.operator, lock_timeout=ctx.lock_timeout)
            copy_ctx.__dict__["project"] = project
            at = "rehearsal"
            with connect(observer_engine) as conn:
                before = {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}
            copy_rows = _copy_rows(plan, before["row_counts"])
            result.data["copy"]["row_counts"] = {r["table"]: r["rows"] for r in copy_rows}
            result.tables["copy"] = pd.DataFrame(copy_rows, columns=["table", "rows", "lock", "why"])
            start_rev = start[0] if start else "base"
            where_to = ", ".join(wanted) or "<base>"
            where_from = ", ".join(start) or "<base>"
            with connect(observer_engine) as raw:
                observer = raw.execution_options(isolation_level="AUTOCOMMIT")
                for key, goal, direction, label in (("upgrade", target, "upgrade", "upgrade"),
                                                    ("downgrade", start_rev, "downgrade", "downgrade"),
                                                    ("upgrade_again", target, "upgrade", "upgrade again")) if pending else ():
                    done = passes[key] = _apply(project, migrate_url, goal, direction, observer if key != "upgrade_again" else None,
                                                ctx.lock_timeout, captured if key == "upgrade" else None, session,
                                                retry_of=ctx)
                    moved = f"{where_from} -> {where_to}" if direction == "upgrade" else f"{where_to} -> {where_from}"
                    if done.error and direction == "downgrade":
                        # the upgrade on real data passed; a downgrade that fails (common in real chains, whose
                        # downgrade to base is rarely run) leaves the backup as the rollback plan: said, not fatal
                        stage(label, False, f"the rollback plan fails: {done.error}", severity="warning")
                        stage("upgrade again", False, "not run: the copy is between revisions after the failed downgrade",
                              severity="skipped")
                        unproven = {"revision": done.failed_revision, "error": done.error}
                        break
                    if done.error:
                        stage(label, False, done.error)
                        failure = RehearsalError(f"rehearsal on a copy of the data: {done.error}")
                        failure.revision = done.failed_revision
                        break
                    stage(label, True, f"{len(done.applied)} revision(s) {moved} in {done.seconds:.2f}s")
                    if key == "upgrade":
                        checked = verify.run(copy_ctx, target=target, baseline=before)
                        stage("verify", checked.outcome != "failed", checked.summary
                              + (f": {checked.error}" if checked.error else ""), severity="failed")
                        result.data["verify"] = {"outcome": checked.outcome, "summary": checked.summary,
                                                 "checks": checked.data.get("checks", [])}
                        if checked.outcome == "failed":
                            failure = RehearsalError(f"rehearsal on a copy of the data: verify failed after the upgrade: {checked.error}")
                            break
                    if key == "downgrade":
                        with connect(observer_engine) as conn:
                            after = {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}
                        diff = schema.diff(_without_version_table(before["snapshot"]), _without_version_table(after["snapshot"]))
                        result.data["schema_differences"] = diff
                        stage("schema after downgrade", not diff,
                              "equals the schema before the upgrade" if not diff else
                              f"{len(diff)} difference(s) from before the upgrade: " +
                              "; ".join(f"{d['kind']} {d['object']} {d['change']}" for d in diff[:5]), severity="warning")
                        rows = {k: v for k, v in before["row_counts"].items() if not k.endswith(".alembic_version")}
                        now = {k: v for k, v in after["row_counts"].items() if not k.endswith(".alembic_version")}
                        lost = sorted(k for k in rows.keys() | now.keys() if rows.get(k) != now.get(k))
                        result.data["row_differences"] = [{"table": k, "before": rows.get(k), "after": now.get(k)} for k in lost]
                        stage("rows after downgrade", not lost, "every table has the rows it had before the upgrade" if not lost
                              else "row counts differ in " + ", ".join(f"{k} ({rows.get(k)} -> {now.get(k)})" for k in lost[:5]),
                              severity="warning")
        except SwrunError as exc:
            failure = exc if isinstance(exc, RehearsalError) else RehearsalError(f"rehearsal: {exc.line()}")
            stage(at, False, failure.line())
        except (sa.exc.DBAPIError, OSError) as exc:  # the scratch server went away, a tool did not run, ...
            failure = RehearsalError(f"rehearsal: {type(getattr(exc, 'orig', None) or exc).__name__}: {ctx.scrub(_first_line(exc))}")
            stage(at, False, failure.line())
        finally:
            for leftover in scratch_files:
                leftover.unlink(missing_ok=True)
            if copy_ctx is not None:
                copy_ctx.close()
            if observer_engine is not None:
                observer_engine.dispose()
            removed = False
            try:
                removed = scratch.drop() if created else True
                said = ("removed" if removed else "is still there") if created else "was not created"
                stage("scratch database", removed, f"{scratch.name} {said}")
            except Exception as exc:  # never hide the rehearsal's own outcome behind the cleanup's
                stage("scratch database", False, f"{scratch.name} could not be removed: {_first_line(exc)}")
            finally:
                scratch.close()
            result.data["scratch_removed"] = removed
        if "upgrade" in passes:
            ran = [a["revision"] for a in passes["upgrade"].applied] + [r for r in [passes["upgrade"].failed_revision] if r]
            executed = executed_sql(ctx, project, ran, captured, scratch.name)
            result.data.update(executed)
            result.code.update({f"{rev} {project.description(rev)} (as executed on the rehearsal copy)": text
                                for rev, text in executed["executed_sql"].items()})
            if executed.get("executed_review_error"):
                stage("executed SQL", False, f"not reviewed: {executed['executed_review_error']}", severity="warning")
            else:
                found = executed["executed_findings"]
                stage("executed SQL", True, f"{sum(executed['executed_statements'].values())} statement(s) of "
                      f"{len(ran)} revision(s) recorded -> {executed['executed_file']}; reviewed: "
                      + (f"{len(found)} finding(s)" if found else "no finding"))

    result.seconds = t.seconds
    rows = _revision_rows(project, pending, passes, activity_now)
    result.data["revisions"] = rows
    result.data["stages"] = stages
    result.tables["stairway"] = pd.DataFrame(stages, columns=["stage", "result", "detail"])
    result.tables["revisions"] = _revision_table(rows, activity_now)
    untouched = f"the real database was not touched (still at {', '.join(real_start) or '<base>'})"
    if failure is not None:
        result.outcome = "failed"
        result.data.update(rehearsed=False, rollback_proven=False,
                           failed_revision=getattr(failure, "revision", None), error=failure.line())
        result.error = f"{failure.line()}; {untouched}"
        result.summary = result.error
        return result
    if not pending:
        result.data.update(rehearsed=False, rollback_proven=None)
        result.summary = f"nothing pending on the copy of this run's backup (at {', '.join(start) or '<base>'}): no migration to rehearse"
        return result
    differs = [s for s in stages if s["result"] == "warning"]
    proven = not differs
    result.data["rehearsed"] = True
    result.data["rollback_proven"] = proven
    if unproven is not None:
        result.data["rollback_failed_revision"] = unproven["revision"]
        result.data["rollback"] = (f"NOT proven: the downgrade to {', '.join(start) or '<base>'} fails on real data "
                                   f"({unproven['error']}); the rollback plan is this run's backup: restore it")
    else:
        result.data["rollback"] = (
            f"proven: the downgrade to {', '.join(start) or '<base>'} ran on real data and restored the starting schema and rows"
            if proven else "the downgrade ran on real data but left differences: " + "; ".join(s["detail"] for s in differs))
    if not result.data["scratch_removed"]:
        differs.append(stages[-1])
    result.outcome = "warning" if differs else "ok"
    longest = max((r for r in rows if r["blocks"]), key=lambda r: r["hold_seconds"], default=None)
    lock_text = (f"longest blocking lock: {longest['hold_seconds']:.2f}s {longest['strongest'].removesuffix('Lock')} on "
                 f"{longest['strongest_on']} ({longest['revision']})" if longest else "no revision holds a lock that blocks application queries")
    moves = "up, down and up again" if unproven is None else "up (verified), then down: the downgrade failed"
    result.summary = (f"{len(pending)} revision(s) {moves} on a copy of this run's backup ({scratch.where}); "
                      f"rollback plan {result.data['rollback']}; {lock_text}")
    return result


def _revision_rows(project, pending: list[str], passes: dict[str, _Pass], activity_now: dict | None) -> list[dict]:
    tps = float((activity_now or {}).get("tps") or 0.0)
    rows = []
    seconds = {key: {a["revision"]: a["seconds"] for a in p.applied} for key, p in passes.items()}
    for rev in pending:
        timing = {key: by_rev.get(rev) for key, by_rev in seconds.items()}
        failed = next((key for key, p in passes.items() if p.failed_revision == rev), None)
        up_locks = passes["upgrade"].locks.get(rev, {}) if "upgrade" in passes else {}
        down_locks = passes["downgrade"].locks.get(rev, {}) if "downgrade" in passes else {}
        blocking = {rel: mode for rel, mode in up_locks.items() if mode in BLOCKS}
        top = strongest(blocking.values()) if blocking else None
        ups = [s for s in (timing.get("upgrade"), timing.get("upgrade_again")) if s is not None]
        hold = max(ups) if ups and blocking else 0.0
        rows.append({
            "revision": rev,
            "description": project.description(rev),
            "up_seconds": timing.get("upgrade"),
            "down_seconds": timing.get("downgrade"),
            "up_again_seconds": timing.get("upgrade_again"),
            "locks": up_locks,
            "down_locks": down_locks,
            "blocks": {rel: BLOCKS[mode] for rel, mode in blocking.items()},
            "strongest": top,
            "strongest_on": ", ".join(rel for rel, mode in blocking.items() if mode == top) if top else None,
            "hold_seconds": round(hold, 4),
            "transactions_in_hold": round(tps * hold, 1) if blocking else 0.0,
            "failed": failed,
        })
    return rows


def _revision_table(rows: list[dict], activity_now: dict | None) -> pd.DataFrame:
    def secs(value, failed):
        return "FAILED" if failed else ("-" if value is None else f"{value:.3f}s")

    table = []
    for r in rows:
        table.append({
            "revision": r["revision"],
            "description": r["description"],
            "up": secs(r["up_seconds"], r["failed"] == "upgrade"),
            "down": secs(r["down_seconds"], r["failed"] == "downgrade"),
            "up again": secs(r["up_again_seconds"], r["failed"] == "upgrade_again"),
            "locks": ", ".join(f"{rel} {mode.removesuffix('Lock')}" for rel, mode in r["locks"].items()) or "-",
            "blocks": "; ".join(f"{what} on {rel}" for rel, what in r["blocks"].items()) or "nothing",
            "locks (down)": ", ".join(f"{rel} {mode.removesuffix('Lock')}" for rel, mode in r["down_locks"].items()) or "-",
            "expected hold": f"{r['hold_seconds']:.3f}s" if r["blocks"] else "-",
            "arriving meanwhile": (f"{r['transactions_in_hold']:.0f} tx at {activity_now['tps']:g} tx/s"
                                   if r["blocks"] and activity_now else "-"),
        })
    return pd.DataFrame(table, columns=["revision", "description", "up", "down", "up again", "locks", "blocks",
                                        "expected hold", "arriving meanwhile", "locks (down)"])


def drop_leftover(ctx: RunContext, run_id: str, on: str = "embedded") -> bool:
    """Drop the scratch database of a rehearsal that was killed or timed out (its own cleanup
    never ran); True when there was one. Starts no server."""
    name = scratch_name(run_id)
    if on == "embedded":
        status = embedded.scratch_server().status()
        if not status.running:
            return False
        admin = normalize_url(status.url("postgres"))
    else:
        admin = ctx.url
    engine = make_engine(admin)
    try:
        with connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if not conn.execute(sa.text("select count(*) from pg_database where datname = :n"), {"n": name}).scalar():
                return False
            return _drop_database(conn, name)
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__
