"""Running a project's env.py under swrun: the one runner every migration goes through.

Alembic's ``runtime/`` beside ``migrations.py``'s revision graph (its ``script/``). One call of
:func:`run_env` runs env.py once, unchanged, and adds around it:

* **the identity check**: swrun opens its own connection to the URL it means and takes a session
  advisory lock there with a random key; the connection env.py hands to ``context.configure``
  must see that lock, held by swrun's backend, in its own current database (``pg_locks`` is
  cluster-wide: another server sees nothing, another database has another oid). Offline, the
  URL given to ``configure`` is compared. On a mismatch nothing runs (StateError).
* **URL routing**: ``sqlalchemy.url`` and every ``url_env`` variable hold the URL being migrated,
  with the project's own driver; swrun's connection is in ``config.attributes["connection"]``,
  usable as a Connection or as an Engine.
* **swrun's session settings** bound through ``set_config`` (never formatted into SQL), one
  transaction per revision, ``on_version_apply`` hooks, statement capture.
* **a worker thread** when an asyncio loop is running here (a Jupyter kernel), so Alembic's async
  template (``asyncio.run(...)``) works and has finished before :func:`run_env` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url

from .errors import StateError, SwrunError

if TYPE_CHECKING:
    from .migrations import Project

URL_ENV_VAR = "SWRUN_URL_ENV"  # the CLI's --url-env, inherited by the runbook's kernel


class SharedConnection(Connection):
    """swrun's connection as env.py finds it in ``config.attributes["connection"]``.

    A Connection that also answers an Engine's calls: ``connect()`` gives itself back, and
    ``close()``/``dispose()`` leave it open (swrun closes it after env.py returns), so the
    cookbook's Connection pattern and pytest-alembic's Engine pattern both migrate it.
    """

    def connect(self):  # noqa: D401 - the Engine API
        return self

    def close(self) -> None:
        if getattr(self, "_swrun_closing", False):
            super().close()
        # else: env.py's "with connectable.connect() as connection:" ends; the connection stays swrun's

    def dispose(self, close: bool = True) -> None:
        pass

    def really_close(self) -> None:
        self._swrun_closing = True
        super().close()


@dataclass
class Options:
    """What swrun adds to one env.py run."""

    lock_timeout: str | None = None  # per attempt: swrun.lock_retry retries a revision PostgreSQL cancels for it
    statement_timeout: str | None = None  # bounds each statement of the revisions (None / "0": no bound)
    on_connection: Callable[[int], None] | None = None  # told env.py's backend pid once it is checked (the lock watcher)
    on_revision: Callable | None = None
    capture: list | None = None
    current_revision: Callable[[], str | None] = lambda: None
    session: dict = field(default_factory=dict)  # more settings for env.py's connection (e.g. role, search_path)


@dataclass
class Seen:
    """What env.py did, as far as swrun cares afterwards."""

    pid: int | None = None
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    checked: bool = False
    listeners: list = field(default_factory=list)


def url_env_names(project: "Project") -> list[str]:
    """``[swrun] url_env`` of the ini plus ``$SWRUN_URL_ENV`` (the CLI's ``--url-env``)."""
    names: list[str] = []
    for source in (project.option("url_env") or "", os.environ.get(URL_ENV_VAR, "")):
        for name in source.replace(",", " ").split():
            if not name.replace("_", "").isalnum() or name[0].isdigit():
                from .errors import UsageError

                raise UsageError(f"url_env: {name!r} is not an environment variable name")
            if name not in names:
                names.append(name)
    return names


def _where(url: URL, database: str | None = None) -> str:
    from .database import identity

    ident = identity(url)
    return f"{ident.host}:{ident.port}/{database if database is not None else ident.database}"


def _same_place(a: URL, b: URL) -> bool:
    from .database import identity

    x, y = identity(a), identity(b)
    return (x.host, x.port, x.database) == (y.host, y.port, y.database)


def _variables_pointing_at(url: URL, database: str) -> list[str]:
    """Environment variables whose value is a URL of the database env.py used."""
    from .database import identity

    found = []
    want = identity(url)
    for name, value in os.environ.items():
        if "://" not in value or name == "SWRUN_DATABASE_URL":
            continue
        try:
            ident = identity(make_url(value.strip()))
        except Exception:
            continue
        if ident.database == database and (ident.host, ident.port) == (want.host, want.port):
            found.append(name)
    return sorted(found)


def _refuse(project: "Project", intended: URL, used: URL, database: str) -> StateError:
    names = _variables_pointing_at(used, database)
    via = f" (as ${', $'.join(names)} says)" if names else ""
    route = (f"set [swrun] url_env = {names[0]} in alembic.ini or pass --url-env {names[0]}" if names else
             "make env.py use sqlalchemy.url or config.attributes['connection'], or name the variable it reads "
             "in [swrun] url_env / --url-env")
    return StateError(
        f"the project's env.py connected to {_where(used, database)}{via}, not to {_where(intended)}, the database "
        f"swrun was given: nothing was run there",
        hint=route)


def _system_identifier(connection: Connection) -> str | None:
    """The cluster's identifier where the role may read it: a second witness beside the lock.
    Asked first, because calling the function without the right fails the transaction."""
    if connection.execute(text("select has_function_privilege('pg_control_system()', 'execute')")).scalar():
        return connection.execute(text("select system_identifier::text from pg_control_system()")).scalar()
    return None


class _Anchor:
    """swrun's own connection to the intended database, holding a random advisory lock."""

    def __init__(self, url: URL):
        from sqlalchemy.exc import DBAPIError

        from .database import explain_connect_error, make_engine

        self.engine = make_engine(url)
        self.engine._connection_cls = SharedConnection  # connect() builds the class env.py receives
        self.key = secrets.randbits(63) * (1 if secrets.randbits(1) else -1)
        try:
            self.connection: SharedConnection = self.engine.connect()
            self.connection.exec_driver_sql(f"select pg_advisory_lock({int(self.key)})")
            self.pid = self.connection.exec_driver_sql("select pg_backend_pid()").scalar()
            self.system = _system_identifier(self.connection)
            self.connection.commit()  # the session lock stays; no transaction is left open for env.py
        except DBAPIError as exc:
            self.close()
            raise explain_connect_error(exc, url) from None

    def close(self) -> None:
        if getattr(self, "connection", None) is not None:
            with contextlib.suppress(Exception):
                self.connection.really_close()
        self.engine.dispose()


def _check_connection(project: "Project", connection, anchor: _Anchor, intended: URL, seen: Seen) -> None:
    """Before any migration: is env.py's connection the database swrun means?"""
    if not isinstance(connection, Connection):
        sync = getattr(connection, "sync_connection", None)
        raise StateError(
            f"the project's env.py passed a {type(connection).__name__} to context.configure"
            + (": pass the connection run_sync gives (await connection.run_sync(do_run_migrations))" if sync is not None else ""))
    opened_here = not connection.in_transaction()
    row = connection.execute(text(
        "select pg_backend_pid(), current_database(), exists(select 1 from pg_locks "
        "where locktype = 'advisory' and granted and objsubid = 1 and pid = :pid "
        "and database = (select oid from pg_database where datname = current_database()) "
        "and ((classid::bigint << 32) | objid::bigint) = (cast(:key as bigint) & x'ffffffffffffffff'::bigint))"),
        {"pid": int(anchor.pid), "key": int(anchor.key)}).one()
    pid, database, held = row
    system = _system_identifier(connection) if held and anchor.system else None
    if opened_here:
        connection.commit()
    if not held or (system and anchor.system and system != anchor.system):
        raise _refuse(project, intended, connection.engine.url, database)
    seen.pid, seen.checked = int(pid), True


def _check_offline(project: "Project", url, dialect_name, intended: URL, seen: Seen) -> None:
    if url is not None:
        used = url if isinstance(url, URL) else make_url(str(url))
        if used.drivername.split("+")[0] not in ("postgresql", "postgres") or not _same_place(used, intended):
            database = used.database or ""
            raise _refuse(project, intended, used, database)
    seen.checked = True


def _session_settings(connection: Connection, lock_timeout: str | None, more: dict | None = None,
                      statement_timeout: str | None = None) -> None:
    """Bound values only: a parameter can never become SQL (``SET x = '...'`` would). ``more``:
    settings any driver takes this way (asyncpg has no libpq ``options``), ``role`` as SET ROLE.
    ``statement_timeout`` after ``more``: the run's own bound wins over the target role's setting."""
    from .database import check_duration

    opened_here = not connection.in_transaction()
    for name, value in (more or {}).items():
        connection.execute(text("select set_config(:n, :v, false)"), {"n": name, "v": str(value)})
    if statement_timeout and statement_timeout.strip() != "0":
        connection.execute(text("select set_config('statement_timeout', :v, false)"),
                           {"v": check_duration("statement_timeout", statement_timeout)})
    if not lock_timeout:
        if opened_here:
            connection.commit()
        return
    value = check_duration("lock_timeout", lock_timeout)
    connection.execute(text("select set_config('lock_timeout', :v, false)"), {"v": value})
    # each revision's commit need not wait for its WAL flush (the wait is most of a small
    # revision's time, and its locks are held through it): a crash can lose only whole
    # revisions, the last ones, never part of one. apply() makes them durable before it returns.
    connection.execute(text("select set_config('synchronous_commit', 'off', false)"))
    if (connection.dialect.server_version_info or (0,)) >= (14,):
        # if swrun dies mid-revision, the server aborts the revision within a second
        # instead of holding its locks until the statement ends
        connection.execute(text("select set_config('client_connection_check_interval', '1s', false)"))
    if opened_here:
        connection.commit()


class _Capture:
    """Statements executed on the migrating connection, per revision, parameters not inlined.

    Each entry also says whether it ran in autocommit (Alembic's ``autocommit_block``: it commits
    by itself) and, once it returned, ``done``: after a lock timeout, swrun.lock_retry reads from
    them what the attempt committed and which statement PostgreSQL cancelled."""

    def __init__(self, sink: list, current_revision: Callable[[], str | None], version_table: str):
        self.sink, self.current_revision, self.version_table = sink, current_revision, version_table
        self.paused = False
        self._last: dict | None = None

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if self.paused:
            return
        revision = self.current_revision()
        entry = {"revision": revision, "sql": statement}
        if revision is None or self.version_table in statement:
            entry["bookkeeping"] = True  # Alembic's version table (or its look before the first revision)
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            entry["autocommit"] = True
        self._last = entry
        self.sink.append(entry)

    def after(self, conn, cursor, statement, parameters, context, executemany):
        if self._last is not None and not self.paused:
            self._last["done"] = True
            self._last = None


def _swrun_environment(project: "Project", cfg, intended: URL, options: Options, anchor: _Anchor | None,
                       seen: Seen, **kw) -> EnvironmentContext:
    """An EnvironmentContext whose configure() checks and extends what env.py asks for.

    The wrapper is set on the instance, so the ``alembic.context`` proxy that env.py calls
    picks it up; env.py itself runs unchanged.
    """
    env = EnvironmentContext(cfg, project.script, **kw)
    original = env.configure
    as_sql = kw.get("as_sql", False)

    def configure(connection=None, url=None, dialect_name=None, **opts):
        if as_sql:
            _check_offline(project, url, dialect_name, intended, seen)
        elif connection is None:
            raise StateError("the project's env.py called context.configure without a connection online: swrun cannot "
                             "tell which database it would migrate, so nothing was run")
        else:
            _check_connection(project, connection, anchor, intended, seen)
        seen.version_table = opts.get("version_table") or "alembic_version"
        seen.version_table_schema = opts.get("version_table_schema")
        opts.setdefault("transaction_per_migration", True)
        if connection is not None and (options.lock_timeout or options.session or options.statement_timeout):
            _session_settings(connection, options.lock_timeout, options.session, options.statement_timeout)
        if connection is not None and options.on_connection is not None and seen.pid is not None:
            options.on_connection(seen.pid)
        capture = None
        if connection is not None and options.capture is not None:
            capture = _Capture(options.capture, options.current_revision, seen.version_table)
            event.listen(connection, "before_cursor_execute", capture)
            event.listen(connection, "after_cursor_execute", capture.after)
            seen.listeners.append((connection, "before_cursor_execute", capture))
            seen.listeners.append((connection, "after_cursor_execute", capture.after))
        if options.on_revision is not None:
            # Alembic calls these after each revision's SQL, inside its transaction, before the commit
            given = opts.get("on_version_apply") or ()
            given = (given,) if callable(given) else tuple(given)

            def hook(ctx, step, heads, run_args):
                if capture is not None:
                    capture.paused = True
                try:
                    options.on_revision(ctx, step)
                finally:
                    if capture is not None:
                        capture.paused = False

            opts["on_version_apply"] = (*given, hook)
        if url is not None:
            opts["url"] = url
        if dialect_name is not None:
            opts["dialect_name"] = dialect_name
        return original(connection=connection, **opts)

    env.configure = configure
    return env


@contextlib.contextmanager
def _environment_variables(names: Iterable[str], value: str):
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in saved:
            os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_worker(fn: Callable[[], None], on_interrupt: Callable[[], None]) -> None:
    """Run ``fn`` in a thread with no event loop; its exception is raised here, after it ended."""
    outcome: list[BaseException] = []

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=target, name="swrun-alembic", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except BaseException:
        # Ctrl-C in the kernel: cancel the migration's statement, then let its transaction end
        with contextlib.suppress(Exception):
            on_interrupt()
        worker.join(30)
        raise
    if outcome:
        raise outcome[0]


def run_env(project: "Project", url: URL, fn: Callable, *, as_sql: bool = False, buffer=None,
            starting_rev=None, destination_rev: str | None = None, dont_mutate: bool = False,
            options: Options | None = None) -> Seen:
    """Run env.py once against ``url`` (swrun's psycopg2 URL of the database meant)."""
    options = options or Options()
    env_url = project.env_url(url)
    cfg = project.config(env_url, buffer=buffer)
    seen = Seen()
    anchor = None if as_sql else _Anchor(url)
    if anchor is not None:
        cfg.attributes["connection"] = anchor.connection
    names = url_env_names(project)

    def body():
        with _environment_variables(names, env_url.render_as_string(hide_password=False)):
            with _swrun_environment(project, cfg, url, options, anchor, seen, fn=fn, as_sql=as_sql,
                                    starting_rev=starting_rev, destination_rev=destination_rev,
                                    dont_mutate=dont_mutate):
                project.script.run_env()

    def cancel():
        if seen.pid is not None and anchor is not None:
            from .database import connect

            with connect(anchor.engine) as conn:
                conn.exec_driver_sql(f"select pg_cancel_backend({int(seen.pid)})")
                conn.commit()

    try:
        if _loop_running():
            _in_worker(body, cancel)
        else:
            body()
    finally:
        for connection, name, listener in seen.listeners:
            with contextlib.suppress(Exception):
                event.remove(connection, name, listener)
        if anchor is not None:
            anchor.close()
    return seen


# -- where an error came from ----------------------------------------------------------------------


def frame_in(exc: BaseException, directories: Iterable[Path]) -> tuple[str, int] | None:
    """The innermost traceback frame (file, line) inside one of ``directories``."""
    dirs = [str(Path(d).resolve()) for d in directories]
    found = None
    seen_ids = set()
    while exc is not None and id(exc) not in seen_ids:
        seen_ids.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            path = str(Path(frame.filename).resolve()) if frame.filename and not frame.filename.startswith("<") else ""
            if path and any(path == d or path.startswith(d + os.sep) for d in dirs):
                found = (path, frame.lineno or 0)
        if found:
            return found
        exc = exc.__cause__ or exc.__context__
    return None


def env_error(project: "Project", exc: BaseException, url: URL | None, doing: str):
    """Any non-swrun error from env.py as one ProjectError line naming env.py's file:line, password scrubbed."""
    from .database import scrub
    from .errors import ProjectError

    if isinstance(exc, SwrunError):
        return exc
    script_dir = Path(project.script.dir)
    at = frame_in(exc, [script_dir, *project.version_dirs()])
    where = f"{at[0]}:{at[1]}" if at else str(script_dir / "env.py")
    raw = str(getattr(exc, "orig", None) or exc)
    message = scrub(" ".join(raw.split()), url)[:300]
    return ProjectError(f"the project's env.py failed while {doing} ({where}): {type(exc).__name__}: {message}")
