"""Database URLs (normalize, redact), engines, the migration lock, and server facts.

Every URL swrun touches goes through :func:`normalize_url`, and every URL it shows goes
through :func:`redact`; error text from the driver goes through :func:`scrub`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, unquote_plus

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from . import redaction
from .errors import DatabaseError, LockTimeout, UsageError

DRIVER = "postgresql+psycopg2"
# postgres:// is what Heroku-style platforms hand out; postgresql:// maps to psycopg 3 in
# SQLAlchemy 2.1, which swrun does not depend on, so both are pinned to psycopg2.
# A project's own driver (an async env.py needs asyncpg) is kept for its env.py
# (Project.env_url); swrun's own connections still use psycopg2 to the same server.
PROJECT_DRIVERS = ("postgresql+asyncpg", "postgresql+psycopg")
_ACCEPTED_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2", *PROJECT_DRIVERS}
CONNECT_TIMEOUT_S = 10


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin it to the psycopg2 driver; reject anything else."""
    if isinstance(url, URL):
        parsed = url
    else:
        text = (url or "").strip()
        if not text:
            raise UsageError("the database URL is empty")
        try:
            parsed = make_url(text)
        except Exception:
            raise _unparseable(text, _why_unparseable(text)) from None
        _check_shape(text, parsed)
    redaction.for_url(parsed)  # remembered: the CLI's last line and the runner's progress scrub with it
    if parsed.drivername not in _ACCEPTED_SCHEMES:
        raise UsageError(
            f"unsupported database URL scheme {parsed.drivername!r}",
            hint="use postgresql://, postgresql+psycopg2://, postgresql+psycopg:// or postgresql+asyncpg://",
        )
    return parsed.set(drivername=DRIVER)


def project_driver(url: str | URL | None) -> str | None:
    """The driver a URL names for the project's env.py (asyncpg, psycopg), or None: swrun's psycopg2."""
    try:
        parsed = url if isinstance(url, URL) else make_url((url or "").strip())
    except Exception:
        return None
    return parsed.drivername if parsed.drivername in PROJECT_DRIVERS else None


def check_duration(name: str, value) -> str:
    """A PostgreSQL duration (``lock_timeout``, ``statement_timeout``): the parameters' own check
    (swrun.params, which the runner calls before any kernel starts), for callers in the kernel.
    Used in SQL only as a bound value of ``set_config``."""
    from .params import check_duration as checked

    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise UsageError(f"invalid {name} {repr(value)[:40]}: a PostgreSQL duration such as 10s, 500ms, 2min or 0")
    return checked(name, str(value))


_UNPARSEABLE = "cannot parse the database URL (its text is not shown: it may hold a password)"
_SHAPE = "postgresql://<user>:<password>@<host>:<port>/<database>"


def _unparseable(text: str, why: str = "") -> UsageError:
    """The error for a URL swrun will not use; the text is never echoed, and what looks like its
    password is remembered, in case something else prints it."""
    redaction.remember(v for v in _password_like(text) if len(v) >= 3)  # a guess: too short, it would blot the message
    return UsageError(f"{why or _UNPARSEABLE}", hint=f"expected {_SHAPE}")


def _password_like(text: str) -> set[str]:
    found = set()
    netloc = text.split("://", 1)[1] if "://" in text else text
    if "@" in netloc.split("?", 1)[0]:
        userinfo = netloc.split("?", 1)[0].rsplit("@", 1)[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
            found.add(unquote(userinfo.split(":", 1)[1]))
    for match in re.finditer(r"(?:^|[?&\s])password=([^&\s]*)", text):
        found |= {match.group(1), unquote_plus(match.group(1))}
    return {v for v in found if v}


def _check_shape(text: str, parsed: URL) -> None:
    """One host and a numeric port: libpq's multi-host lists and failover are refused, not half-used."""
    netloc = _netloc(text)
    hosts = parsed.query.get("host")
    if "," in netloc or isinstance(hosts, tuple) or "," in str(hosts or ""):
        raise _unparseable(text, "the database URL names several hosts: swrun migrates one server at a time")
    if "@" in str(parsed.host or "") or "@" in str(parsed.username or ""):
        raise _unparseable(text, _UNPARSEABLE + "; characters such as / @ : % in the password must be percent-encoded")
    ports = parsed.query.get("port")
    if isinstance(ports, tuple):
        raise _unparseable(text, "the database URL names several ports")
    for port in (parsed.port, ports):
        if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
            raise _unparseable(text, "the database URL's port is not a number from 1 to 65535")
    if parsed.port is not None and ports is not None and int(ports) != parsed.port:
        raise _unparseable(text, "the database URL names several ports")


def _netloc(text: str) -> str:
    """The host[:port] part of a URL's text (after the last @ of its authority)."""
    return text.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]


def _why_unparseable(text: str) -> str:
    rest = text.split("://", 1)[-1]
    if "@" not in rest.split("/", 1)[0] and "@" in rest:  # a / in the password, not percent-encoded
        return _UNPARSEABLE + "; characters such as / @ : % in the password must be percent-encoded"
    netloc = _netloc(text)
    if "," in netloc:
        return "the database URL names several hosts: swrun migrates one server at a time"
    if "://" in text and ":" in netloc.rsplit("]", 1)[-1] and not netloc.rsplit(":", 1)[-1].isdigit():
        return "the database URL's port is not a number from 1 to 65535"
    return _UNPARSEABLE


def redact(url: str | URL) -> str:
    """The URL as it may be shown or stored: the password, in the userinfo or a ``password``
    query parameter, replaced by ***."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except Exception:
        return "<a database URL that does not parse>"
    if "password" in parsed.query:
        parsed = parsed.difference_update_query(["password"])
        return parsed.render_as_string(hide_password=True).replace("?", "?password=***&", 1) if parsed.query \
            else parsed.render_as_string(hide_password=True) + "?password=***"
    return parsed.render_as_string(hide_password=True)


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_PARAM = re.compile(r"((?:^|[?&\s])password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.I)


def redact_text(text: str) -> str:
    """Hide the password of any URL (userinfo or ``password=`` parameter) or libpq
    connection string that appears in free text."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***\3", text))


def scrub(text: str, url: URL | None = None) -> str:
    """Text safe to print: URLs redacted, and every secret of ``url`` (and every one this process
    has met) removed in every spelling, wherever it stands (see :mod:`swrun.redaction`)."""
    secrets = redaction.for_url(url) if url is not None else redaction.known()
    return secrets.scrub(redact_text(text))


def make_engine(url: URL, **kwargs) -> Engine:
    """An engine without a pool: swrun's runs are short and must leave no idle sessions behind."""
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "swrun"}
    connect_args.update(kwargs.pop("connect_args", {}))
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args, **kwargs)


def explain_connect_error(exc: BaseException, url: URL) -> DatabaseError:
    """Turn a driver's connection error into one readable line, with no secret in it."""
    raw = str(getattr(exc, "orig", None) or exc)
    ident = identity(url)
    where = f"{ident.host}:{ident.port}/{ident.database}"
    low = raw.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return DatabaseError(f"authentication failed for user {url.username!r} on {where}")
    if "does not exist" in low and "database" in low:
        return DatabaseError(f"database {url.database!r} does not exist on {where}")
    if "role" in low and "does not exist" in low:
        return DatabaseError(f"user {url.username!r} does not exist on {where}")
    if any(s in low for s in ("could not connect", "connection refused", "could not translate host", "timeout expired", "no such file or directory", "name or service not known")):
        return DatabaseError(f"cannot reach the database server at {where}", hint="is it running, and is the host right?")
    first = scrub(raw, url).strip().splitlines()[0] if raw.strip() else type(exc).__name__
    return DatabaseError(f"cannot connect to {where}: {first}")


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """engine.connect() with connection errors turned into DatabaseError."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise explain_connect_error(exc, engine.url) from None
    try:
        yield conn
    finally:
        conn.close()


def check_connection(engine: Engine) -> None:
    with connect(engine) as conn:
        conn.exec_driver_sql("select 1")


def lock_key(database: str) -> int:
    """A stable signed 64-bit advisory-lock key for migrations of one database."""
    digest = hashlib.sha256(f"swrun:migrate:{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def migration_lock(engine: Engine, *, wait_s: float = 30.0, poll_s: float = 0.2) -> Iterator[Connection]:
    """Hold swrun's advisory lock on its own connection for the whole block.

    A separate connection, because taking the lock on the connection Alembic migrates with
    would open a transaction Alembic never commits. A session lock dies with its
    connection, so a killed run can never leave the database locked.
    """
    with connect(engine) as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        key = lock_key(engine.url.database or "")
        deadline = time.monotonic() + wait_s
        while not conn.exec_driver_sql(f"select pg_try_advisory_lock({key})").scalar():
            if time.monotonic() >= deadline:
                holder = conn.exec_driver_sql(
                    "select a.pid, a.usename, a.application_name, a.client_addr, a.backend_start "
                    "from pg_locks l join pg_stat_activity a using (pid) "
                    "where l.locktype = 'advisory' and l.granted "
                    f"and ((l.classid::bigint << 32) | l.objid::bigint) = ({key} & x'ffffffffffffffff'::bigint) limit 1"
                ).first()
                who = f" (held by pid {holder.pid}, user {holder.usename}, since {holder.backend_start:%Y-%m-%d %H:%M:%S})" if holder else ""
                raise LockTimeout(
                    f"another swrun run is migrating database {engine.url.database!r}{who}; gave up after {wait_s:g}s",
                    hint="wait for it to finish, then run again",
                )
            time.sleep(poll_s)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql(f"select pg_advisory_unlock({key})")


@dataclass(frozen=True)
class Identity:
    """Which database a run touched: never the password."""

    host: str
    port: int
    database: str
    user: str

    def as_dict(self) -> dict:
        return {"host": self.host, "port": self.port, "database": self.database, "user": self.user}

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def identity(url: URL) -> Identity:
    def first(value):
        return value[0] if isinstance(value, tuple) else value

    host = url.host or first(url.query.get("host")) or "localhost"
    port = url.port or first(url.query.get("port")) or 5432
    return Identity(host=str(host), port=int(port), database=url.database or "", user=url.username or "")


def server_facts(conn: Connection) -> dict:
    row = conn.exec_driver_sql(
        "select current_setting('server_version') as version, "
        "current_setting('server_version_num')::int as version_num, "
        "current_database() as database, current_user as user, "
        "pg_database_size(current_database()) as size_bytes, "
        "pg_is_in_recovery() as in_recovery"
    ).mappings().one()
    return dict(row)
