"""The Alembic facade: one project's script directory, its revision graph, and running it.

Built on Alembic's Python API the way ``alembic/command.py`` is: a ``Config`` carried
through, a ``ScriptDirectory`` loaded once, and ``EnvironmentContext`` + ``run_env`` to
execute the project's own ``env.py``. swrun's subclass of ``EnvironmentContext`` adds
three things to whatever ``env.py`` configures: one transaction per revision (so a
failure leaves the database at the last good revision), ``lock_timeout`` on the
migrating connection, and a timer around every revision.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from .errors import MigrationFailed, ProjectError, StateError, UsageError

DEMO_INI = Path(__file__).parent / "demo" / "smartwaste" / "alembic.ini"


def _alembic_errors():
    from alembic.script.revision import RevisionError

    return (CommandError, RevisionError)


@dataclass
class AppliedRevision:
    """One revision applied (or rendered) by :func:`Project.apply` / :func:`Project.offline_sql`."""

    revision: str
    down_revision: tuple[str, ...]
    description: str
    direction: str
    seconds: float
    sql: str = ""

    def as_dict(self) -> dict:
        return {
            "revision": self.revision,
            "down_revision": list(self.down_revision),
            "description": self.description,
            "direction": self.direction,
            "seconds": round(self.seconds, 4),
        }


def _swrun_environment(cfg: Config, script: ScriptDirectory, options: dict, **kw) -> EnvironmentContext:
    """An EnvironmentContext whose configure() adds swrun's options to what env.py asks for.

    The wrapper is set on the instance, so the ``alembic.context`` proxy that env.py
    calls picks it up; env.py itself runs unchanged.
    """
    env = EnvironmentContext(cfg, script, **kw)
    original = env.configure
    lock_timeout = options.get("lock_timeout")
    on_revision = options.get("on_revision")
    expect_database = options.get("expect_database")

    def configure(connection=None, **opts):
        opts.setdefault("transaction_per_migration", True)
        if connection is not None and expect_database:
            # an env.py that reads its own URL (not sqlalchemy.url) would migrate another database
            opened_here = not connection.in_transaction()
            found = connection.exec_driver_sql("select current_database()").scalar()
            if opened_here:
                connection.commit()
            if found != expect_database:
                raise StateError(f"the project's env.py connected to database {found!r}, not {expect_database!r}: it does "
                                 "not use the URL swrun passes (sqlalchemy.url); nothing was run there")
        if on_revision is not None:
            # Alembic calls these after each revision's SQL, inside its transaction, before the commit
            given = opts.get("on_version_apply") or ()
            given = (given,) if callable(given) else tuple(given)
            opts["on_version_apply"] = (*given, lambda ctx, step, heads, run_args: on_revision(ctx, step))
        if connection is not None and lock_timeout:
            # SET is session-wide; commit it unless env.py has already opened its own transaction.
            opened_here = not connection.in_transaction()
            connection.exec_driver_sql(f"SET lock_timeout = '{lock_timeout}'")
            # each revision's commit need not wait for its WAL flush (the wait is most of a small
            # revision's time, and its locks are held through it): a crash can lose only whole
            # revisions, the last ones, never part of one. apply() makes them durable before it returns.
            connection.exec_driver_sql("SET synchronous_commit = off")
            if (connection.dialect.server_version_info or (0,)) >= (14,):
                # if swrun dies mid-revision, the server aborts the revision within a second
                # instead of holding its locks until the statement ends
                connection.exec_driver_sql("SET client_connection_check_interval = '1s'")
            if opened_here:
                connection.commit()
        return original(connection=connection, **opts)

    env.configure = configure
    return env


@dataclass
class Project:
    """An Alembic project located by its alembic.ini."""

    ini_path: Path
    section: str = "alembic"
    _timings: list = field(default_factory=list, repr=False)

    @classmethod
    def locate(cls, ini: str | Path | None = None) -> "Project":
        """The project of an alembic.ini, its revision files not read yet (see :meth:`load`)."""
        path = Path(ini).expanduser().resolve() if ini else DEMO_INI
        if path.is_dir():
            path = path / "alembic.ini"
        if not path.is_file():
            raise ProjectError(f"no alembic.ini at {path}")
        return cls(path)

    @classmethod
    def load(cls, ini: str | Path | None = None) -> "Project":
        project = cls.locate(ini)
        project.script  # noqa: B018 - fail now, with a clear line, on a broken project
        return project

    # -- configuration ---------------------------------------------------------------
    def config(self, url: URL | None = None, *, buffer: io.StringIO | None = None) -> Config:
        cfg = Config(str(self.ini_path), ini_section=self.section, output_buffer=buffer, stdout=io.StringIO())
        if url is not None:
            # configparser interpolates %: escape it so passwords with % survive.
            cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
        return cfg

    @cached_property
    def _base_config(self) -> Config:
        try:
            cfg = self.config()
            cfg.get_main_option("script_location")
            return cfg
        except Exception as exc:  # configparser errors come in many classes
            raise ProjectError(f"cannot read {self.ini_path}: {str(exc).splitlines()[0]}") from None

    def option(self, key: str, default: str | None = None) -> str | None:
        """A setting from the ini's [swrun] section."""
        parser = self._base_config.file_config
        if parser.has_section("swrun") and parser.has_option("swrun", key):
            return parser.get("swrun", key)
        return default

    @cached_property
    def script(self) -> ScriptDirectory:
        cfg = self._base_config
        if not cfg.get_main_option("script_location"):
            raise ProjectError(f"{self.ini_path} has no script_location in [{self.section}]")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                script = ScriptDirectory.from_config(cfg)
                script.revision_map.heads  # noqa: B018 - loads every revision file now
            except SyntaxError as exc:
                raise ProjectError(f"migration file {exc.filename} does not parse: {exc.msg} (line {exc.lineno})") from None
            except _alembic_errors() as exc:
                raise ProjectError(f"cannot load the migrations of {self.ini_path}: {exc}") from None
            except KeyError as exc:
                # Alembic warns "Revision X referenced from X -> Y is not present", then fails on the key
                said = " ".join(str(w.message) for w in caught if "is not present" in str(w.message))
                children = sorted(set(re.findall(r"-> (\S+)", said)))
                raise ProjectError(
                    f"cannot load the migrations of {self.ini_path}: revision {exc.args[0]!r}, the parent of "
                    f"{', '.join(children) or 'another revision'}, is defined by no migration file",
                    hint="a migration file was deleted or renamed: restore it from version control (the guide: NEVER delete migration files)",
                ) from None
            except Exception as exc:
                where = getattr(exc, "filename", None) or self.ini_path
                raise ProjectError(f"cannot load the migrations of {where}: {type(exc).__name__}: {exc}") from None
        return script

    def version_dirs(self) -> list[Path]:
        """The directories Alembic reads revision files from, without reading them."""
        script = ScriptDirectory.from_config(self._base_config)
        return [Path(p) for p in script._version_locations]

    @property
    def recursive_versions(self) -> bool:
        return (self._base_config.get_main_option("recursive_version_locations") or "").lower() in ("true", "1", "yes", "on")

    # -- the revision graph ----------------------------------------------------------
    @cached_property
    def revisions(self) -> dict[str, Script]:
        return {rev.revision: rev for rev in self.script.walk_revisions()}

    @cached_property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.script.get_heads())

    def _parents(self, rev: Script) -> tuple[str, ...]:
        deps = rev.dependencies or ()
        deps = (deps,) if isinstance(deps, str) else tuple(deps)
        down = rev.down_revision or ()
        down = (down,) if isinstance(down, str) else tuple(down)
        return down + tuple(self.script.get_revision(d).revision for d in deps)

    def ancestors(self, heads: Iterable[str]) -> set[str]:
        """Every revision reachable from ``heads`` through down_revision and depends_on, inclusive."""
        seen: set[str] = set()
        stack = list(heads)
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            if rev not in self.revisions:
                raise StateError(f"revision {rev!r} is not defined by any migration file")
            seen.add(rev)
            stack.extend(self._parents(self.revisions[rev]))
        return seen

    def resolve(self, target: str) -> tuple[str, ...]:
        """Revision ids for a target: ``head``, ``heads``, ``branch@head``, a (partial) id, ``base``."""
        if target in ("base", "", None):
            return ()
        if target == "head" and len(self.heads) > 1:
            raise StateError(
                f"the project has {len(self.heads)} heads ({', '.join(self.heads)}); 'head' is ambiguous",
                hint=f"merge them: alembic merge -m 'merge heads' {' '.join(self.heads)}",
            )
        try:
            return tuple(r.revision for r in self.script.get_revisions(target) if r is not None)
        except _alembic_errors() as exc:
            raise UsageError(f"unknown target revision {target!r}: {exc}") from None

    def topo_order(self, revs: set[str]) -> list[str]:
        """Base-first order, stable across runs; iterative, so chains of any length work."""
        order: list[str] = []
        done: set[str] = set()
        for root in sorted(revs):
            stack = [(root, False)]
            while stack:
                rev, expanded = stack.pop()
                if expanded:
                    order.append(rev)
                    continue
                if rev in done:
                    continue
                done.add(rev)
                stack.append((rev, True))
                for parent in sorted(self._parents(self.revisions[rev]), reverse=True):
                    if parent in revs and parent not in done:
                        stack.append((parent, False))
        return order

    def check_current(self, current: Iterable[str]) -> None:
        for rev in current:
            if rev not in self.revisions:
                raise StateError(
                    f"the database is at revision {rev!r}, which no migration file defines",
                    hint="a migration file was deleted or renamed, or this is the wrong branch: restore the file from version control "
                         "(the guide: NEVER delete migration files)",
                )

    def pending(self, current: Iterable[str], target: str = "head") -> list[str]:
        """Revisions an upgrade from ``current`` to ``target`` would apply, base first."""
        current = tuple(current)
        self.check_current(current)
        wanted = self.ancestors(self.resolve(target))
        return self.topo_order(wanted - self.ancestors(current))

    def to_downgrade(self, current: Iterable[str], target: str) -> list[str]:
        """Revisions a downgrade from ``current`` to ``target`` would undo, newest first."""
        current = tuple(current)
        self.check_current(current)
        keep = self.ancestors(self.resolve(target))
        return list(reversed(self.topo_order(self.ancestors(current) - keep)))

    def file_of(self, rev: str) -> Path:
        return Path(self.revisions[rev].path)

    def description(self, rev: str) -> str:
        return (self.revisions[rev].doc or "").strip()

    def fingerprint(self) -> str:
        """sha256 over every revision file's name and content: identifies the migration set."""
        outer = hashlib.sha256()
        for rev in sorted(self.revisions):
            path = self.file_of(rev)
            outer.update(f"{rev}\0{path.name}\0{file_sha256(path)}\n".encode())
        return outer.hexdigest()

    def history(self, current: Iterable[str] = ()):
        """History as a DataFrame, newest first, like ``alembic history --verbose``."""
        import pandas as pd

        applied = self.ancestors(current) if current else set()
        rows = []
        for rev in reversed(self.topo_order(set(self.revisions))):
            script = self.revisions[rev]
            rows.append({
                "revision": rev,
                "down_revision": ", ".join(self._parents(script)) or "<base>",
                "description": self.description(rev),
                "file": self.file_of(rev).name,
                "applied": rev in applied,
                "head": rev in self.heads,
                "branch_labels": ", ".join(sorted(script.branch_labels)) if script.branch_labels else "",
            })
        return pd.DataFrame(rows, columns=["revision", "down_revision", "description", "file", "applied", "head", "branch_labels"])

    def metadata(self):
        """The models' MetaData named by ``[swrun] metadata = module:attribute``, or None."""
        spec = self.option("metadata")
        if not spec:
            return None
        module_name, _, attr = spec.partition(":")
        here = str(self.ini_path.parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        try:
            obj = importlib.import_module(module_name.strip())
            for part in (attr or "metadata").strip().split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise ProjectError(f"cannot load the models' metadata {spec!r}: {type(exc).__name__}: {exc}") from None
        return obj

    # -- running env.py -----------------------------------------------------------------
    def _run_env(self, url: URL | None, fn: Callable, *, as_sql: bool = False, buffer=None,
                 starting_rev: str | None = None, destination_rev: str | None = None, dont_mutate: bool = False,
                 lock_timeout: str | None = None, on_revision: Callable | None = None,
                 expect_database: str | None = None) -> None:
        cfg = self.config(url, buffer=buffer)
        options = {"lock_timeout": lock_timeout, "on_revision": on_revision, "expect_database": expect_database}
        with _swrun_environment(cfg, self.script, options, fn=fn, as_sql=as_sql,
                                starting_rev=starting_rev, destination_rev=destination_rev, dont_mutate=dont_mutate):
            self.script.run_env()

    def current(self, url: URL) -> tuple[str, ...]:
        """The database's revision(s), read through env.py exactly as ``alembic current`` does."""
        found: list[tuple[str, ...]] = []

        def read(rev, context):
            found.append(tuple(context.get_current_heads()))
            return []

        try:
            self._run_env(url, read, dont_mutate=True)
        except sa_exc.OperationalError as exc:
            from .database import explain_connect_error

            raise explain_connect_error(exc, url) from None
        return found[0] if found else ()

    def _timed(self, plan: Callable, sink: list, direction: str, buffer: io.StringIO | None):
        """Wrap Alembic's migration function to time each revision, commit included."""

        def fn(rev, context):
            for step in plan(rev, context):
                start, mark = time.perf_counter(), buffer.tell() if buffer else 0
                sink.append(("running", step))
                yield step  # Alembic runs the revision and commits before asking for the next
                sink[-1] = ("done", step)
                rev_id = self._step_revision(step)
                sql = buffer.getvalue()[mark:] if buffer else ""
                self._timings.append(AppliedRevision(rev_id, self._parents(self.revisions[rev_id]), self.description(rev_id),
                                                     direction, time.perf_counter() - start, sql))

        return fn

    def apply(self, url: URL, target: str = "head", *, direction: str = "upgrade", lock_timeout: str | None = "10s",
              on_revision: Callable | None = None, expect_database: str | None = None,
              durable: bool = True) -> list[AppliedRevision]:
        """Upgrade or downgrade to ``target`` online; returns each revision with its time.

        On failure raises MigrationFailed naming the revision; the revisions before it
        stay applied (one transaction per revision). ``on_revision(migration_context, step_info)``
        runs inside each revision's transaction, after its SQL and before its commit;
        ``expect_database``: refuse (before any SQL) when env.py connects to another database;
        ``durable=False``: return without waiting for the revisions' commits to reach disk (a scratch copy).
        """
        if direction == "upgrade":
            self.resolve(target)

            def plan(rev, context):
                return self.script._upgrade_revs(target, rev)
        elif direction == "downgrade":
            def plan(rev, context):
                return self.script._downgrade_revs(target, rev)
        else:
            raise UsageError(f"unknown direction {direction!r}")
        self._timings = []
        sink: list = []
        try:
            try:
                self._run_env(url, self._timed(plan, sink, direction, None), destination_rev=target, lock_timeout=lock_timeout,
                              on_revision=on_revision, expect_database=expect_database)
            finally:
                if durable and lock_timeout and sink:
                    _durable(url)
        except Exception as exc:
            if isinstance(exc, StateError) and expect_database and not sink:
                raise
            failed = next((self._step_revision(step) for state, step in reversed(sink) if state == "running"), None)
            if isinstance(exc, _alembic_errors()) and failed is None:
                raise StateError(f"cannot {direction} to {target!r}: {exc}") from None
            from .database import scrub

            message = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()), url)
            raise MigrationFailed(
                f"revision {failed or '?'} failed during {direction}: {type(getattr(exc, 'orig', None) or exc).__name__}: {message[:400]}",
                revision=failed,
            ) from exc
        return list(self._timings)

    @staticmethod
    def _step_revision(step) -> str | None:
        rev = getattr(step, "revision", None)
        return getattr(rev, "revision", None)

    def offline_sql(self, url: URL, current: tuple[str, ...], target: str = "head") -> list[AppliedRevision]:
        """The SQL of exactly the pending range ``current:target``, split per revision."""
        if len(current) > 1:
            raise StateError("the database has several current heads; preview each branch separately")
        starting = current[0] if current else None
        self.resolve(target)
        buffer = io.StringIO()

        def plan(rev, context):
            return self.script._upgrade_revs(target, rev)

        self._timings = []
        try:
            self._run_env(url, self._timed(plan, [], "upgrade", buffer), as_sql=True, buffer=buffer,
                          starting_rev=starting, destination_rev=target)
        except _alembic_errors() as exc:
            raise StateError(f"cannot render SQL for {starting or 'base'}:{target}: {exc}") from None
        revisions = list(self._timings)
        if revisions:
            # the preamble (version table creation, BEGIN) belongs to the first revision
            first_mark = buffer.getvalue().find(revisions[0].sql) if revisions[0].sql else 0
            revisions[0].sql = buffer.getvalue()[:first_mark] + revisions[0].sql
        return revisions


def _durable(url: URL) -> None:
    """Wait until every commit so far is flushed: a transaction with an xid commits synchronously
    (the server's own synchronous_commit), and its flush covers all WAL written before it."""
    from .database import connect, make_engine

    engine = make_engine(url)
    try:
        with contextlib.suppress(Exception), connect(engine) as conn:  # a server gone away: the caller reports it
            conn.exec_driver_sql("select txid_current()")
            conn.commit()
    finally:
        engine.dispose()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()
