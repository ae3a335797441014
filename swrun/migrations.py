"""The Alembic facade: one project's script directory, its revision graph, and running it.

Built on Alembic's Python API the way ``alembic/command.py`` is: a ``Config`` carried
through, a ``ScriptDirectory`` loaded once, and ``EnvironmentContext`` + ``run_env`` to
execute the project's own ``env.py``. swrun's subclass of ``EnvironmentContext`` adds
three things to whatever ``env.py`` configures: one transaction per revision (so a
failure leaves the database at the last good revision), a short ``lock_timeout`` on the
migrating connection with the revision retried when PostgreSQL cancels it for that
(swrun/lock_retry.py), and a timer around every revision.
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
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from .errors import MigrationFailed, ProjectError, StateError, UsageError
from . import progress

DEMO_INI = Path(__file__).parent / "demo" / "smartwaste" / "alembic.ini"


def _alembic_errors():
    from alembic.script.revision import RevisionError

    return (CommandError, RevisionError)


@dataclass
class AppliedRevision:
    """One revision applied (or rendered) by :func:`Project.apply` / :func:`Project.offline_sql`.

    ``offline_error``: why this revision has no offline SQL (the rest of the range still rendered);
    ``where``: the migration file and line that raised it.
    """

    revision: str
    down_revision: tuple[str, ...]
    description: str
    direction: str
    seconds: float
    sql: str = ""
    offline_error: str | None = None
    where: str | None = None
    attempts: int = 1  # online: 1 + the attempts PostgreSQL cancelled for a lock timeout
    waited_s: float = 0.0  # seconds its backend was seen waiting on a lock, every attempt
    lock_timeouts: list = field(default_factory=list)  # lock_retry.Attempt, one per cancelled attempt

    def as_dict(self) -> dict:
        return {
            "revision": self.revision,
            "down_revision": list(self.down_revision),
            "description": self.description,
            "direction": self.direction,
            "seconds": round(self.seconds, 4),
            "offline_error": self.offline_error,
            "where": self.where,
            "attempts": self.attempts,
            "waited_s": round(self.waited_s, 3),
            "lock_timeouts": [a.as_dict() for a in self.lock_timeouts],
        }


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
                hint=f"name the target (--to heads, --to <label>@head or a revision), or merge them: "
                     f"alembic merge -m 'merge heads' {' '.join(self.heads)}",
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

    def plan(self, current: Iterable[str], target: str, direction: str = "upgrade") -> list:
        """Alembic's own steps from ``current`` to ``target``, in the order it runs them
        (``ScriptDirectory._upgrade_revs`` / ``_downgrade_revs``, as ``alembic upgrade|downgrade`` plans)."""
        current = tuple(current)
        self.check_current(current)
        if direction == "upgrade":
            self.resolve(target)
            planner = self.script._upgrade_revs
        elif direction == "downgrade":
            planner = self.script._downgrade_revs
        else:
            raise UsageError(f"unknown direction {direction!r}")
        try:
            return list(planner(target, current))
        except _alembic_errors() as exc:
            at = ", ".join(current) or "<base>"
            raise StateError(f"cannot {direction} from {at} to {target!r}: {' '.join(str(exc).split())}") from None

    def pending(self, current: Iterable[str], target: str = "head") -> list[str]:
        """Revisions an upgrade from ``current`` to ``target`` would apply, in Alembic's order."""
        return [step.revision.revision for step in self.plan(current, target, "upgrade")]

    def to_downgrade(self, current: Iterable[str], target: str) -> list[str]:
        """Revisions a downgrade from ``current`` to ``target`` would undo, in Alembic's order (newest first);
        a branch's rollback counts only that branch's revisions."""
        return [step.revision.revision for step in self.plan(current, target, "downgrade")]

    def is_behind(self, current: Iterable[str], target: str) -> bool:
        """``target`` is below the database's revision: reaching it is a rollback, not a deploy."""
        current = tuple(current)
        wanted = self.resolve(target)
        if not current or set(wanted) <= set(current):
            return False
        below = self.ancestors(current)
        return all(rev in below and rev not in current for rev in wanted) if wanted else True

    def heads_by_label(self) -> dict[str, list[str]]:
        """Each branch label's heads (``<label>@head``), for status."""
        labels = sorted({label for script in self.revisions.values() for label in (script.branch_labels or ())})
        found: dict[str, list[str]] = {}
        for label in labels:
            with contextlib.suppress(*_alembic_errors()):
                found[label] = sorted(r.revision for r in self.script.get_revisions(f"{label}@heads") if r is not None)
        return found

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

    def imported(self, key: str, what: str):
        """The object named by ``[swrun] <key> = module:attribute`` (module paths relative to the
        ini's directory), or None when the ini names none."""
        spec = (self.option(key) or "").strip()
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
            raise ProjectError(f"cannot load {what} {spec!r} ([swrun] {key}): {type(exc).__name__}: {exc}") from None
        return obj

    def metadata(self):
        """The models' MetaData named by ``[swrun] metadata = module:attribute``, or None."""
        return self.imported("metadata", "the models' metadata")

    # -- running env.py (swrun/runtime.py) -------------------------------------------------
    driver: str | None = field(default=None, repr=False)  # the project's own driver, from the URL given

    def env_url(self, url: URL) -> URL:
        """``url`` as env.py gets it: with the project's driver (the given URL's, else the ini's
        ``sqlalchemy.url``'s when it is a PostgreSQL one), swrun's own connections keep psycopg2."""
        from .database import PROJECT_DRIVERS

        driver = self.driver
        if driver is None:
            with contextlib.suppress(Exception):
                from sqlalchemy.engine import make_url

                ini = make_url(self._base_config.get_main_option("sqlalchemy.url") or "")
                driver = ini.drivername if ini.drivername in PROJECT_DRIVERS else None
        return url.set(drivername=driver) if driver else url

    @property
    def version_table(self) -> tuple[str, str | None]:
        """(table, schema) of the version table, as env.py configured it in the last run (Alembic's default before)."""
        return getattr(self, "_version_table", ("alembic_version", None))

    def _run_env(self, url: URL | None, fn: Callable, *, as_sql: bool = False, buffer=None,
                 starting_rev=None, destination_rev: str | None = None, dont_mutate: bool = False,
                 lock_timeout: str | None = None, on_revision: Callable | None = None,
                 capture: list | None = None,
                 session: dict[str, str] | None = None, statement_timeout: str | None = None,
                 on_connection: Callable[[int], None] | None = None) -> None:
        """One run of env.py through swrun's runner (identity check included, always).
        ``session``: more settings (name -> value, ``role`` included) bound on env.py's connection."""
        from . import runtime

        options = runtime.Options(lock_timeout=lock_timeout, on_revision=on_revision, capture=capture,
                                  current_revision=lambda: self._running, session=dict(session or {}),
                                  statement_timeout=statement_timeout, on_connection=on_connection)
        seen = runtime.run_env(self, url, fn, as_sql=as_sql, buffer=buffer, starting_rev=starting_rev,
                               destination_rev=destination_rev, dont_mutate=dont_mutate, options=options)
        self._version_table = (seen.version_table, seen.version_table_schema)

    _running: str | None = None

    def _env_failure(self, exc: BaseException, url: URL | None, doing: str) -> Exception:
        from . import runtime

        if isinstance(exc, sa_exc.OperationalError) and url is not None:
            from .database import explain_connect_error

            return explain_connect_error(exc, url)
        if isinstance(exc, _alembic_errors()):
            return StateError(f"cannot {doing}: {' '.join(str(exc).split())}")
        return runtime.env_error(self, exc, url, doing)

    def current(self, url: URL) -> tuple[str, ...]:
        """The database's revision(s), read through env.py exactly as ``alembic current`` does."""
        found: list[tuple[str, ...]] = []

        def read(rev, context):
            found.append(tuple(context.get_current_heads()))
            return []

        try:
            self._run_env(url, read, dont_mutate=True)
        except Exception as exc:
            raise self._env_failure(exc, url, "reading the database's revision") from None
        return found[0] if found else ()

    def _where(self, exc: BaseException) -> tuple[str, int] | None:
        from . import runtime

        return runtime.frame_in(exc, self.version_dirs())

    def _timed(self, plan: Callable, sink: list, direction: str, buffer: io.StringIO | None):
        """Wrap Alembic's migration function to time each revision, commit included."""

        def fn(rev, context):
            for step in progress.migrating(plan(rev, context), direction, self.description, context):  # revision i of N, live
                start, mark = time.perf_counter(), buffer.tell() if buffer else 0
                sink.append(("running", step))
                self._running, self._step_started = self._step_revision(step), time.monotonic()
                yield step  # Alembic runs the revision and commits before asking for the next
                sink[-1] = ("done", step)
                rev_id = self._step_revision(step)
                sql = buffer.getvalue()[mark:] if buffer else ""
                self._timings.append(AppliedRevision(rev_id, self._parents(self.revisions[rev_id]), self.description(rev_id),
                                                     direction, time.perf_counter() - start, sql))
            self._running = None

        return fn

    _step_started: float = 0.0
    attempts: list = field(default_factory=list, repr=False)  # lock_retry.Attempt of the last apply(), every one

    def apply(self, url: URL, target: str = "head", *, direction: str = "upgrade", lock_timeout: str | None = "2s",
              on_revision: Callable | None = None,
              durable: bool = True, capture: list | None = None,
              session: dict[str, str] | None = None, retry=None, statement_timeout: str | None = None,
              on_attempt: Callable | None = None) -> list[AppliedRevision]:
        """Upgrade or downgrade to ``target`` online; returns each revision with its time and attempts.

        Before any migration runs, the connection env.py configures must be the database of
        ``url`` (StateError otherwise: nothing ran). On failure raises MigrationFailed naming
        the revision and its file:line (``.file``, ``.lineno``); the revisions before it stay
        applied (one transaction per revision). ``on_revision(migration_context, step_info)``
        runs inside each revision's transaction, after its SQL and before its commit;
        ``capture``: a list that gets ``{"revision", "sql"}`` for every statement executed on the
        migrating connection (parameters never inlined; a cancelled attempt's statements left
        out); ``durable=False``: return without waiting for the revisions' commits to reach disk
        (a scratch copy).

        Lock timeouts (swrun/lock_retry.py): each attempt waits at most ``lock_timeout`` for a
        lock; a revision PostgreSQL cancels for that is rolled back and, per ``retry`` (a
        ``lock_retry.RetryPolicy``; None: the defaults), tried again after a jittered, growing
        pause, from the database's current revision to the same target. A revision with an
        autocommit block is tried again only when what it committed can run twice (an INVALID
        index its cancelled ``CREATE INDEX CONCURRENTLY`` left is dropped first). ``on_attempt``
        gets a ``lock_retry.AttemptEvent`` at each wait, timeout and retry (for progress).
        ``statement_timeout``: bounds each statement of the revisions (None or ``0``: no bound).
        """
        from . import lock_retry
        from .database import check_duration

        on_attempt = progress.with_attempts(on_attempt)  # waits, timeouts and "attempt k" on the live line
        if direction == "upgrade":
            self.resolve(target)
        elif direction != "downgrade":
            raise UsageError(f"unknown direction {direction!r}")
        if lock_timeout:
            lock_timeout = check_duration("lock_timeout", lock_timeout)
        if statement_timeout:
            statement_timeout = check_duration("statement_timeout", statement_timeout)
        policy = retry if retry is not None else lock_retry.RetryPolicy()
        wait_s = lock_retry.seconds(lock_timeout)
        if policy.retries and _RELATIVE_TARGET.search(target or ""):
            # "-1" or "+2" counts from where the database is: a retry must aim where the first attempt aimed
            target = self._frozen_target(url, target, direction)

        def plan(rev, context):
            if direction == "upgrade":
                return self.script._upgrade_revs(target, rev)
            return self.script._downgrade_revs(target, rev)

        self._timings, self.attempts = [], []
        tries: dict[str | None, int] = {}
        waited: dict[str | None, float] = {}
        lost = 0.0  # seconds of timed-out attempts and pauses, against policy.budget_s
        cleanup: str | None = None  # an invalid index to drop before the next attempt
        ran_any = False

        def tell(state: str, revision, attempt: int, **kw) -> None:
            if on_attempt is not None:
                on_attempt(lock_retry.AttemptEvent(state, revision, attempt, policy.retries, **kw))

        watcher = None
        if wait_s > 0:
            watcher = lock_retry.BlockerWatcher(
                url, min(0.25, max(0.02, wait_s / 8)), current_revision=lambda: self._running,
                on_wait=(lambda rev, _now: tell("waiting", rev, tries.get(rev, 0) + 1)) if on_attempt else None).start()
        try:
            while True:
                sink: list = []
                entries: list[dict] = []
                started = time.monotonic()
                self._step_started = started
                try:
                    if cleanup is not None:
                        self._running = cleaning = self._last_failed
                        lock_retry.drop_invalid_index(url, cleanup, lock_timeout, on_pid=watcher.watch if watcher else None)
                        self.attempts[-1].cleanup = f"dropped the INVALID index {cleanup} its cancelled build left"
                        cleanup = None
                        self._running = None
                    self._run_env(url, self._timed(plan, sink, direction, None), destination_rev=target,
                                  lock_timeout=lock_timeout, on_revision=on_revision, capture=entries, session=session,
                                  statement_timeout=statement_timeout, on_connection=watcher.watch if watcher else None)
                except Exception as exc:
                    ran_any = ran_any or bool(sink)
                    failed = next((self._step_revision(step) for state, step in reversed(sink) if state == "running"), None)
                    if cleanup is not None:
                        failed = cleaning
                    seen_blockers, seen_waits = watcher.take() if watcher else ([], {})
                    self._running = None
                    _keep(capture, entries, failed)
                    for rev, w in seen_waits.items():
                        waited[rev] = waited.get(rev, 0.0) + w
                    if not lock_retry.is_lock_timeout(exc):
                        raise self._failure(exc, url, failed, direction, target) from exc
                    n = tries[failed] = tries.get(failed, 0) + 1
                    attempt_s = time.monotonic() - (self._step_started if failed is not None else started)
                    attempt = lock_retry.Attempt(failed, n, attempt_s, min(seen_waits.get(failed, 0.0), attempt_s) or attempt_s,
                                                 seen_blockers)
                    waited[failed] = waited.get(failed, 0.0) - seen_waits.get(failed, 0.0) + attempt.waited_s
                    self.attempts.append(attempt)
                    lost += attempt_s
                    left = lock_retry.autocommit_leftovers(entries, failed) if cleanup is None else lock_retry.Leftovers(
                        invalid_index=cleanup)
                    if left.invalid_index:
                        cleanup = left.invalid_index
                    pause = policy.pause(n)
                    if not left.safe:
                        why = f"not retried: {left.why}"
                    elif n > policy.retries:
                        why = (f"{policy.retries} retr{'y' if policy.retries == 1 else 'ies'} used up (lock_retries)"
                               if policy.retries else "not retried (lock_retries is 0)")
                    elif lost + pause + wait_s > policy.budget_s:
                        why = f"the next attempt would pass lock_retry_budget ({policy.budget_s:g}s; {lost:.1f}s used)"
                    else:
                        attempt.pause_s = pause
                        tell("timeout", failed, n, waited_s=attempt.waited_s, pause_s=pause, blockers=seen_blockers)
                        time.sleep(pause)
                        lost += pause
                        self._last_failed = failed
                        tell("retry", failed, n + 1)
                        continue
                    tell("timeout", failed, n, waited_s=attempt.waited_s, blockers=seen_blockers)
                    raise self._lock_failure(exc, url, failed, direction, target, n, lost, why, lock_timeout,
                                             seen_blockers, cleanup) from exc
                ran_any = ran_any or bool(sink)
                seen_blockers, seen_waits = watcher.take() if watcher else ([], {})
                for rev, w in seen_waits.items():
                    waited[rev] = waited.get(rev, 0.0) + w
                _keep(capture, entries, None)
                break
        finally:
            self._running = None
            if watcher is not None:
                watcher.stop()
            if durable and lock_timeout and ran_any:
                _durable(url)
            for applied in self._timings:
                applied.attempts = tries.get(applied.revision, 0) + 1
                applied.waited_s = waited.get(applied.revision, 0.0)
                applied.lock_timeouts = [a for a in self.attempts if a.revision == applied.revision]
        return list(self._timings)

    _last_failed: str | None = None

    def _frozen_target(self, url: URL, target: str, direction: str) -> str:
        """A relative target (``-1``, ``+2``, ``label@-1``) as the revision it names from where the
        database is now, so that a retry aims where the first attempt aimed."""
        current = self.current(url)
        heads = list(current)
        for step in self.plan(current, target, direction):
            heads = [h for h in heads if h not in step.from_revisions] + [r for r in step.to_revisions if r not in heads]
        if len(heads) == 1:
            return heads[0]
        if not heads:
            return "base"
        return target  # several heads: Alembic's own reading (a retry after a partial run may then differ; rare)

    def _failure(self, exc: BaseException, url: URL, failed: str | None, direction: str, target: str) -> Exception:
        """A revision's error (any but a lock timeout) as MigrationFailed, with its file:line."""
        if failed is None:
            if isinstance(exc, MigrationFailed):
                return exc
            return self._env_failure(exc, url, f"planning the {direction} to {target!r}")
        from .database import scrub

        at = self._where(exc)
        inner = getattr(exc, "orig", None) or exc
        message = scrub(" ".join(str(inner).split()), url)
        where = f" ({Path(at[0]).name}:{at[1]})" if at else f" ({self.file_of(failed).name})"
        err = MigrationFailed(
            f"revision {failed}{where} failed during {direction}: {type(inner).__name__}: {message[:400]}",
            revision=failed,
        )
        err.file, err.lineno = (at[0], at[1]) if at else (str(self.file_of(failed)), None)
        return err

    def _lock_failure(self, exc, url: URL, failed: str | None, direction: str, target: str, tries: int, lost: float,
                      why: str, lock_timeout: str | None, blockers: list, invalid_index: str | None) -> MigrationFailed:
        """The one line of a revision given up on after lock timeouts: which, how often, who blocked it."""
        from . import lock_retry

        left = ""
        if invalid_index is not None:  # drop what the cancelled build left, once, before saying the run failed
            try:
                lock_retry.drop_invalid_index(url, invalid_index, lock_timeout)
                left = f"; the INVALID index {invalid_index} its cancelled build left was dropped"
            except Exception:  # noqa: BLE001 - it is named, with the statement that removes it
                left = (f"; an INVALID index {invalid_index} is left: DROP INDEX CONCURRENTLY IF EXISTS {invalid_index} "
                        "once the blocker is gone")
        said = (f"lock timeout ({lock_timeout} per attempt) on {tries} attempt{'s' if tries > 1 else ''} in {lost:.1f}s, "
                f"{why}; {lock_retry.describe(blockers)}{left}")
        if failed is None:
            err = MigrationFailed(f"the {direction} to {target!r} could not take a lock before its first revision: {said}")
        else:
            at = self._where(exc)
            where = f" ({Path(at[0]).name}:{at[1]})" if at else f" ({self.file_of(failed).name})"
            err = MigrationFailed(f"revision {failed}{where} failed during {direction}: {said}", revision=failed)
            err.file, err.lineno = (at[0], at[1]) if at else (str(self.file_of(failed)), None)
        err.attempts = [a.as_dict() for a in self.attempts]
        err.blockers = [b.as_dict() for b in blockers]
        return err

    @staticmethod
    def _step_revision(step) -> str | None:
        rev = getattr(step, "revision", None)
        return getattr(rev, "revision", None)

    def offline_sql(self, url: URL, current: tuple[str, ...], target: str = "head", *,
                    direction: str = "upgrade") -> list[AppliedRevision]:
        """The SQL of exactly the range ``current:target``, split per revision, best-effort.

        A revision that cannot render offline (it reads query results, binds an ORM Session,
        has a literal with no renderer...) gets ``offline_error`` and ``where`` instead of SQL,
        and rendering goes on after it: one bad revision costs one more env.py run.
        ``direction="downgrade"``: what ``alembic downgrade --sql current:target`` renders.
        """
        from .database import scrub

        current = tuple(current)
        steps = self.plan(current, target, direction)
        heads = list(current)
        revisions: list[AppliedRevision] = []
        while steps:
            buffer, sink, todo = io.StringIO(), [], list(steps)
            self._timings = []
            try:
                self._run_env(url, self._timed(lambda rev, context: todo, sink, direction, buffer), as_sql=True,
                              buffer=buffer, starting_rev=list(heads) or None, destination_rev=target)
                failure = None
            except Exception as exc:
                failure = exc
            rendered = list(self._timings)
            if rendered:
                # the preamble (version table creation, BEGIN) belongs to the first revision of the run
                first_mark = buffer.getvalue().find(rendered[0].sql) if rendered[0].sql else 0
                rendered[0].sql = buffer.getvalue()[:first_mark] + rendered[0].sql
            revisions.extend(rendered)
            for step in steps[:len(rendered)]:
                heads = [h for h in heads if h not in step.from_revisions] + list(step.to_revisions)
            steps = steps[len(rendered):]
            if failure is None:
                break
            running = next((step for state, step in reversed(sink) if state == "running"), None)
            if running is None or not steps:
                raise self._env_failure(failure, url, f"rendering SQL for {', '.join(current) or 'base'}:{target}") from None
            rev = self._step_revision(running)
            at = self._where(failure)
            inner = getattr(failure, "orig", None) or failure
            reason = scrub(f"{type(inner).__name__}: {' '.join(str(inner).split())}", url)[:300]
            revisions.append(AppliedRevision(rev, self._parents(self.revisions[rev]), self.description(rev), direction, 0.0,
                                             "", offline_error=reason,
                                             where=f"{at[0]}:{at[1]}" if at else str(self.file_of(rev))))
            heads = [h for h in heads if h not in running.from_revisions] + list(running.to_revisions)
            steps = steps[1:]
        self._timings = list(revisions)
        return revisions


_RELATIVE_TARGET = re.compile(r"(^|@)[+-]\d+$")


def _keep(capture: list | None, entries: list[dict], failed: str | None) -> None:
    """Hand an attempt's statements to the caller's capture, a cancelled revision's left out
    (rolled back; its next attempt runs them again)."""
    if capture is None:
        return
    capture.extend({k: v for k, v in e.items() if k in ("revision", "sql", "bookkeeping")}
                   for e in entries if failed is None or e.get("revision") != failed)


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
