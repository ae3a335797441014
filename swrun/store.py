"""The record store: an index of every kept record, hash-chained, with a second copy in the database.

``reports/index.jsonl`` holds one JSON line per record, appended under a file lock and
fsynced. Each entry names the run (id, runbook, environment, operator, host, times,
outcome, revisions, database identity, migration-set fingerprint, backup) and its record
file (path relative to the reports directory, sha256), and carries:

* ``prev``: the ``hash`` of the entry before it (``GENESIS`` for the first);
* ``hash``: sha256 of the entry's canonical JSON (everything but ``hash`` and ``mac``);
* ``mac`` and ``key_id``, when ``$SWRUN_RECORD_KEY`` is set: HMAC-SHA256 of the same
  canonical JSON, which includes ``prev``, so rewriting the whole chain needs the key.

The runner appends an entry after it writes a record, then inserts the same entry into
``swrun.run_records`` in the run's own database (Alembic's autogenerate leaves schemas
other than the default one alone). :func:`verify` recomputes every hash, reads every
record file once, and compares the index with the database copy, naming each record
that was edited, deleted, moved or inserted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from . import records
from .errors import DatabaseError, SwrunError, UsageError

INDEX_NAME = "index.jsonl"
LOCK_NAME = ".index.lock"
KEY_ENV = "SWRUN_RECORD_KEY"
GENESIS = "0" * 64
VERSION = 1
SCHEMA, TABLE = "swrun", "run_records"
SITE_DIR = "site"
LOCK_TIMEOUT_S = 60.0
MAX_RECORD_BYTES = 1 << 30  # verify hashes no larger file: a record of 500 revisions is 6 MB
MAX_PLACEHOLDER_BYTES = 64 << 20  # a placeholder is the runbook itself: read no more to tell one
_REQUIRED = ("run_id", "record", "record_sha256", "prev", "hash")
_CHAIN_FIELDS = ("hash", "mac")
_LOCAL_FIELDS = ("_line", "_started")  # added when the index is read, never stored


class StoreError(SwrunError):
    """The record store has a problem: an unreadable index line or record, or verification failed."""

    exit_code = 1


# -- hashing --------------------------------------------------------------------------------

def canonical(entry: dict) -> bytes:
    """The bytes an entry's hash and MAC cover: every field except ``hash`` and ``mac``."""
    body = {k: v for k, v in entry.items() if k not in _CHAIN_FIELDS and k not in _LOCAL_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def entry_mac(entry: dict, key: str) -> str:
    return hmac.new(key.encode(), canonical(entry), hashlib.sha256).hexdigest()


@lru_cache(maxsize=8)  # asked once per index entry by entry_faults
def key_id(key: str) -> str:
    """Names a key without revealing it: which key signed an entry, for verify's messages."""
    return hmac.new(key.encode(), b"swrun record key id", hashlib.sha256).hexdigest()[:12]


def record_key() -> str | None:
    return os.environ.get(KEY_ENV) or None


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- writing --------------------------------------------------------------------------------

def index_path(reports_dir: Path) -> Path:
    return Path(reports_dir) / INDEX_NAME


def reports_dir_of(record: Path) -> Path:
    """The reports directory a record lives in: records.record_path's ``<env>/<YYYY>/<MM>/<file>``."""
    return Path(record).parents[3]


def entry_body(meta: dict, record_rel: str, record_sha256: str, missing: str | None = None) -> dict:
    """An index entry (before chaining) from a record's ``metadata["swrun"]``; ``missing`` says
    why the record file could not be written (the entry then stands in for it)."""
    ident = meta.get("identity") or {}
    backup = meta.get("backup") or {}
    body = {
        "v": VERSION,
        "run_id": meta.get("run_id"),
        "runbook": meta.get("runbook"),
        "environment": meta.get("environment"),
        "operator": meta.get("operator") or "",
        "host": meta.get("host") or "",
        "started": meta.get("started"),
        "finished": meta.get("finished"),
        "outcome": meta.get("outcome"),
        "failed_step": meta.get("failed_step"),
        "revision_before": _rev_list(meta.get("revision_before")),
        "revision_after": _rev_list(meta.get("revision_after")),
        "database": {"host": ident.get("host"), "port": ident.get("port"), "database": ident.get("database"),
                     "user": ident.get("user")},
        "fingerprint": meta.get("fingerprint"),
        "backup": {"file": backup.get("file"), "sha256": backup.get("sha256")} if backup else None,
        "record": record_rel,
        "record_sha256": record_sha256,
    }
    if missing:
        body["record_missing"] = missing
    if isinstance(meta.get("fleet"), dict):  # a fleet's target or the fleet's own record: {"run", "target", "wave"}
        body["fleet"] = {k: meta["fleet"].get(k) for k in ("run", "target", "wave")}
    return body


def _rev_list(value) -> list[str] | None:
    """None when the run did not look (no status step), [] for an empty database."""
    return None if value is None else [str(v) for v in value]


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _index_lock(reports_dir: Path):
    from filelock import FileLock

    return FileLock(str(Path(reports_dir) / LOCK_NAME), timeout=LOCK_TIMEOUT_S, mode=0o600)


def _last_entry(fd: int) -> tuple[dict | None, bool]:
    """The last readable entry of the index (read backwards from its end), and whether the
    file ends with a newline."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, True
    ends_with_newline = os.pread(fd, 1, size - 1) == b"\n"
    chunk, pos, tail = 1 << 16, size, b""
    while pos > 0:
        start = max(0, pos - chunk)
        tail = os.pread(fd, pos - start, start) + tail
        pos = start
        lines = tail.split(b"\n")
        # the first piece may be cut in the middle unless we reached the start of the file
        complete = lines if pos == 0 else lines[1:]
        for raw in reversed(complete):
            entry = _parse_line(raw)
            if isinstance(entry, dict):
                return entry, ends_with_newline
    return None, ends_with_newline


def append(reports_dir: Path, body: dict, key: str | None = None) -> dict:
    """Chain ``body`` to the index's last entry and append it: locked, fsynced, owner-only."""
    reports_dir = Path(reports_dir)
    path = index_path(reports_dir)
    with private_umask():
        reports_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _index_lock(reports_dir):
            created = not path.exists()
            fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                last, newline = _last_entry(fd)
                entry = dict(body)
                entry["seq"] = (int(last.get("seq", 0)) + 1) if last else 1
                entry["prev"] = last["hash"] if last else GENESIS
                if key:
                    entry["key_id"] = key_id(key)
                entry["hash"] = entry_hash(entry)
                if key:
                    entry["mac"] = entry_mac(entry, key)
                line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
                # a torn last line (a crash mid-write) stays a line of its own; verify names it
                data = (b"" if newline else b"\n") + line.encode()
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_path(reports_dir)
    return entry


def open_regular(path: Path, flags: int = os.O_RDONLY, limit: int | None = None) -> int:
    """A file descriptor on ``path`` when it is a regular file (not a symlink, directory, FIFO or
    device: opened without blocking, so a FIFO never hangs), else a StoreError in one line."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        kind = "a symbolic link" if os.path.islink(path) else ("a directory" if os.path.isdir(path) else None)
        raise StoreError(f"{path} is {kind or 'not readable'}{'' if kind else ': ' + (exc.strerror or str(exc))}",
                         hint="swrun keeps only regular files there") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file ({_file_kind(info.st_mode)})", hint="swrun keeps only regular files there")
    if limit is not None and info.st_size > limit:
        os.close(fd)
        raise StoreError(f"{path} is larger than {limit:,} bytes ({info.st_size:,})")
    os.set_blocking(fd, True)
    return fd


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (its entries), best effort."""
    with contextlib.suppress(OSError):
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


_DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {SCHEMA}.{TABLE} (
        run_id text primary key,
        seq integer not null,
        hash text not null,
        entry jsonb not null,
        recorded_at timestamptz not null default now())""",
)


def write_db_copy(engine, entry: dict) -> None:
    """Insert ``entry`` into ``swrun.run_records`` of ``engine``'s database (created if need be)."""
    import sqlalchemy as sa

    from . import database

    clean = public(entry)
    for attempt in (1, 2):
        try:
            with database.connect(engine) as conn:
                with conn.begin():
                    # two runs finishing together must not race on "create schema if not exists"
                    conn.exec_driver_sql("select pg_advisory_xact_lock(hashtext('swrun.run_records'))")
                    for ddl in _DDL:
                        conn.exec_driver_sql(ddl)
                    conn.execute(
                        sa.text(f"insert into {SCHEMA}.{TABLE} (run_id, seq, hash, entry) "
                                "values (:run_id, :seq, :hash, cast(:entry as jsonb)) on conflict (run_id) do nothing"),
                        {"run_id": clean["run_id"], "seq": clean.get("seq", 0), "hash": clean["hash"],
                         "entry": json.dumps(clean, sort_keys=True)},
                    )
            return
        except sa.exc.IntegrityError:
            # other swrun code creating the same schema at that moment (under another lock): once more
            if attempt == 2:
                raise


def read_db_copies(engine) -> dict[str, dict] | None:
    """run_id -> entry from ``swrun.run_records``; None when the table does not exist."""
    from . import database

    with database.connect(engine) as conn:
        exists = conn.exec_driver_sql(f"select to_regclass('{SCHEMA}.{TABLE}')").scalar()
        if exists is None:
            return None
        rows = conn.exec_driver_sql(f"select run_id, entry from {SCHEMA}.{TABLE}").all()
    return {run_id: (e if isinstance(e, dict) else json.loads(e)) for run_id, e in rows}


def keep(record: Path, meta: dict, text: str, ctx, missing: str | None = None) -> list[str]:
    """What the runner calls once a record is written (or failed to be: ``missing`` says why):
    index it, then copy the entry into the run's database. Never raises for a store problem:
    returns warnings for the terminal."""
    warnings: list[str] = []
    reports_dir = reports_dir_of(record)
    rel = Path(record).relative_to(reports_dir).as_posix()
    body = entry_body(meta, rel, hashlib.sha256(text.encode("utf-8")).hexdigest(), missing)
    body = records.scrub_value(body, records.secret_forms(ctx.url))  # the index and its database copy: no secret
    try:
        entry = append(reports_dir, body, record_key())
    except Exception as exc:  # the record is kept all the same; verify reports it unindexed
        why = exc.line() if isinstance(exc, SwrunError) else f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        warnings.append(f"the record was not added to {index_path(reports_dir)}: {why}; "
                        "`swrun reports verify` will report it as not in the index")
        return warnings
    try:
        write_db_copy(ctx.engine, entry)
    except Exception as exc:
        from . import database

        if isinstance(exc, SwrunError):
            why = exc.line()
        else:
            why = database.scrub(" ".join(str(getattr(exc, "orig", None) or exc).split())[:300], ctx.url)
        warnings.append(f"run {entry['run_id']} was indexed but not recorded in the database ({why}); "
                        "`swrun reports verify` will report it missing from the database")
    return warnings


# -- reading --------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str
    message: str
    run_id: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "run_id": self.run_id, "line": self.line, "message": self.message}


@dataclass
class Index:
    path: Path
    entries: list[dict] = field(default_factory=list)  # each with "_line"
    problems: list[Problem] = field(default_factory=list)  # unreadable lines
    bad_lines: set[int] = field(default_factory=set)


def _parse_line(raw: bytes | str) -> dict | str | None:
    """A dict for a good entry, an error text for a bad line, None for a blank one."""
    if not raw.strip():
        return None
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({str(exc).split(':')[0]})"
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str)]
    if missing:
        return f"missing {', '.join(missing)}"
    return entry


def _require_dir(reports_dir: Path) -> Path:
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        raise UsageError(f"no reports directory at {reports_dir}", hint="give --reports-dir, or run from where reports/ is")
    return reports_dir


def read_index(reports_dir: Path) -> Index:
    reports_dir = _require_dir(reports_dir)
    path = index_path(reports_dir)
    index = Index(path)
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return index
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    for n, raw in enumerate(data.split(b"\n"), start=1):
        parsed = _parse_line(raw)
        if parsed is None:
            continue
        if isinstance(parsed, str):
            index.problems.append(Problem("corrupt", f"{path} line {n} is not a valid index entry: {parsed}", line=n))
            index.bad_lines.add(n)
            continue
        parsed["_line"] = n
        index.entries.append(parsed)
    return index


def public(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in _LOCAL_FIELDS}


# -- listing --------------------------------------------------------------------------------

def parse_time(text: str, *, end: bool = False) -> dt.datetime:
    """An ISO date or time, UTC unless it says otherwise; a bare date as --until means the whole day."""
    text = text.strip()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"cannot read the time {text!r}", hint="use an ISO date or time, e.g. 2026-11-24 or 2026-11-24T06:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    if end and len(text) == 10:  # a date: until the end of that day
        when += dt.timedelta(days=1)
    return when


def _started(entry: dict) -> dt.datetime | None:
    cached = entry.get("_started")
    if cached is None and entry.get("started"):
        with contextlib.suppress(ValueError, TypeError):
            cached = dt.datetime.fromisoformat(entry["started"])
            if cached.tzinfo is None:
                cached = cached.replace(tzinfo=dt.timezone.utc)
            entry["_started"] = cached
    return cached


def filter_entries(entries: Iterable[dict], *, environment: str | None = None, runbook: str | None = None,
                   outcome: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                   revision: str | None = None, fleet: str | None = None) -> list[dict]:
    """Entries matching every given filter; ``revision`` matches a prefix of any revision before or after;
    ``fleet``: the records of that fleet run (its targets' and its own)."""
    out = []
    for e in entries:
        if fleet and not (isinstance(e.get("fleet"), dict) and e["fleet"].get("run") == fleet):
            continue
        if environment and e.get("environment") != environment:
            continue
        if runbook and e.get("runbook") != runbook:
            continue
        if outcome and e.get("outcome") != outcome:
            continue
        if since or until:
            started = _started(e)
            if started is None or (since and started < since) or (until and started >= until):
                continue
        if revision and not any(str(r).startswith(revision) for r in (e.get("revision_before") or []) + (e.get("revision_after") or [])):
            continue
        out.append(e)
    return out


def find(entries: list[dict], run: str) -> dict:
    """The entry of run id ``run``, or of the one run whose id starts with it."""
    run = run.strip()
    if not run:
        raise UsageError("give a run id")
    exact = [e for e in entries if e["run_id"] == run]
    matches = exact or [e for e in entries if e["run_id"].startswith(run)]
    if not matches:
        raise UsageError(f"no run {run!r} in the index", hint="`swrun reports list` shows the runs")
    if len({e["run_id"] for e in matches}) > 1:
        ids = ", ".join(sorted({e["run_id"] for e in matches})[:5])
        raise UsageError(f"run id prefix {run!r} is ambiguous: {ids}", hint="give more characters")
    if len(matches) > 1:
        lines = ", ".join(str(e["_line"]) for e in matches)
        raise StoreError(f"run {matches[0]['run_id']} has {len(matches)} index entries (lines {lines})",
                         hint="`swrun reports verify` says which one is genuine")
    return matches[0]


def _revs(revs) -> str:
    if revs is None:  # no step of the run read it (a backup, an audit)
        return "-"
    return ",".join(str(r)[:12] for r in revs) or "<base>"


def _short_time(value: str | None) -> str:
    return (value or "")[:16].replace("T", " ")


_COLUMNS = ("run", "started (UTC)", "environment", "runbook", "outcome", "operator", "revision")


def table_rows(entries: list[dict]) -> list[tuple[str, ...]]:
    rows = []
    for e in entries:
        outcome = e.get("outcome") or ""
        if e.get("failed_step"):
            outcome += f" at {e['failed_step']}"
        rows.append((e["run_id"], _short_time(e.get("started")), e.get("environment") or "", e.get("runbook") or "",
                     outcome, e.get("operator") or "", f"{_revs(e.get('revision_before'))} -> {_revs(e.get('revision_after'))}"))
    return rows


def format_table(entries: list[dict]) -> str:
    rows = table_rows(entries)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [fmt.format(*_COLUMNS), fmt.format(*("-" * w for w in widths))]
    lines.extend(fmt.format(*r) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


# -- show -----------------------------------------------------------------------------------

def record_file(reports_dir: Path, entry: dict) -> Path:
    """The record file an entry names; never outside the reports directory."""
    rel = Path(str(entry.get("record", "")))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise StoreError(f"run {entry.get('run_id')}: the index names a record outside the reports directory: {rel}")
    return Path(reports_dir) / rel


def read_record(reports_dir: Path, entry: dict):
    """The record notebook of an entry, or a StoreError naming the run."""
    import nbformat

    path = record_file(reports_dir, entry)
    if not path.exists():
        raise StoreError(f"run {entry['run_id']}: record file {path} does not exist")
    try:
        with os.fdopen(_open_record(reports_dir, path, MAX_RECORD_BYTES), "r", encoding="utf-8") as fh:
            nb = nbformat.read(fh, as_version=4)
    except StoreError as exc:
        raise StoreError(f"run {entry['run_id']}: record file {exc.line()}") from None
    except Exception as exc:
        raise StoreError(f"run {entry['run_id']}: record file {path} is not a notebook ({type(exc).__name__})") from None
    return nb


def show_text(reports_dir: Path, entry: dict) -> tuple[str, StoreError | None]:
    """A terminal summary of one run; a problem with its record file comes back as the second value."""
    reports_dir = Path(reports_dir)
    e = entry
    db = e.get("database") or {}
    backup = e.get("backup") or {}
    outcome = (e.get("outcome") or "").upper() + (f" at {e['failed_step']}" if e.get("failed_step") else "")
    lines = [
        f"run          {e['run_id']}  ({e.get('runbook')}, {e.get('environment')})",
        f"outcome      {outcome}",
        f"operator     {e.get('operator')} on {e.get('host')}",
        f"started      {e.get('started')}",
        f"finished     {e.get('finished')}{_duration(e)}",
        f"database     {db.get('user') or ''}@{db.get('host')}:{db.get('port')}/{db.get('database')}",
        f"revision     {_revs(e.get('revision_before'))} -> {_revs(e.get('revision_after'))}",
        f"migrations   fingerprint {e.get('fingerprint') or '-'}",
        f"backup       {backup.get('file') or '-'}" + (f"  sha256 {backup['sha256']}" if backup.get("sha256") else ""),
    ]
    problem: StoreError | None = None
    path = None
    try:
        path = record_file(reports_dir, e)
        state = "missing" if not path.exists() else ("matches the index" if _record_sha256(reports_dir, path) == e["record_sha256"]
                                                     else "DIFFERS from the index: edited since it was kept")
    except StoreError as exc:
        problem, state = exc, "unsafe path"
    lines.append(f"record       {path or e.get('record')}  sha256 {e['record_sha256'][:16]}... ({state})")
    lines.append(f"index        line {e.get('_line')}, entry {e.get('seq')}, hash {e['hash'][:16]}..."
                 + (" (signed)" if e.get("mac") else " (unsigned)"))
    if problem is None:
        try:
            nb = read_record(reports_dir, e)
        except StoreError as exc:
            problem = exc
        else:
            meta = nb.metadata.get("swrun", {})
            if meta.get("message"):
                lines.append(f"message      {meta['message']}")
            steps = meta.get("steps") or []
            if steps:
                lines.append("")
                width = max(len(s.get("step", "")) for s in steps)
                lines.append(f"{'step':<{width}}  {'outcome':<8}  {'seconds':>7}  summary")
                for s in steps:
                    lines.append(f"{s.get('step', ''):<{width}}  {s.get('outcome', ''):<8}  {s.get('seconds', 0):>7.2f}  {s.get('summary', '')}")
    return "\n".join(lines), problem


def _record_sha256(reports_dir: Path, path: Path) -> str:
    with os.fdopen(_open_record(reports_dir, path, MAX_RECORD_BYTES), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _duration(e: dict) -> str:
    with contextlib.suppress(Exception):
        took = dt.datetime.fromisoformat(e["finished"]) - dt.datetime.fromisoformat(e["started"])
        return f"  ({took.total_seconds():.1f}s)"
    return ""


# -- verify ---------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    reports_dir: Path
    entries: int = 0
    records_checked: int = 0
    signed: str = "unsigned"  # unsigned | signed | signatures-not-checked
    database: str = "not checked"
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"reports_dir": str(self.reports_dir), "ok": self.ok, "entries": self.entries,
                "records_checked": self.records_checked, "signed": self.signed, "database": self.database,
                "notes": self.notes, "problems": [p.as_dict() for p in self.problems]}

    def text(self) -> str:
        lines = [f"index {index_path(self.reports_dir)}: {self.entries} entries, {self.records_checked} record files hashed"]
        lines += [f"  {n}" for n in self.notes]
        lines.append(f"database copy: {self.database}")
        if self.ok:
            lines.append("verified: no problems")
        else:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _who(e: dict) -> str:
    return f"run {e.get('run_id')} (line {e.get('_line')})"


def verify(reports_dir: Path, *, key: str | None = None, database_url: str | None = None) -> VerifyReport:
    """Check the index, every record file, the chain, the signatures and (given a URL) the database copy."""
    reports_dir = _require_dir(reports_dir)
    index = read_index(reports_dir)
    report = VerifyReport(reports_dir, entries=len(index.entries))
    report.problems.extend(index.problems)
    entries = index.entries

    signed = sum(1 for e in entries if e.get("mac"))
    if key:
        report.signed = "signed"
        report.notes.append(f"chain signed: HMAC-SHA256 checked with $SWRUN_RECORD_KEY (key id {key_id(key)})")
    else:
        report.signed = "unsigned" if not signed else "signatures-not-checked"
        report.notes.append(f"chain unsigned: ${KEY_ENV} is not set; plain sha256 hashes checked"
                            + (f" ({signed} entries carry a signature that was not checked)" if signed else ""))

    _check_entries(entries, key, report)
    _check_records(reports_dir, entries, report)
    _check_chain(entries, index.bad_lines, report)
    if database_url:
        _check_database(entries, database_url, report)
    else:
        report.database = "not checked (give --database-url or set SWRUN_DATABASE_URL)"
    report.problems.sort(key=lambda p: (p.line or 0))
    return report


def entry_faults(e: dict, key: str | None) -> list[str]:
    """Why an index entry cannot be trusted, as ``edited``, ``unsigned``, ``other-key`` or
    ``bad-signature`` (the last three only with ``key``); empty when it can."""
    faults = ["edited"] if entry_hash(e) != e.get("hash") else []
    if key:
        if not e.get("mac"):
            faults.append("unsigned")
        elif e.get("key_id") != key_id(key):
            faults.append("other-key")
        elif not hmac.compare_digest(entry_mac(e, key), str(e["mac"])):
            faults.append("bad-signature")
    return faults


def _check_entries(entries: list[dict], key: str | None, report: VerifyReport) -> None:
    kid = key_id(key) if key else None
    seen: dict[str, dict] = {}
    for e in entries:
        for fault in entry_faults(e, key):
            text = {"edited": "the index entry was edited (its hash does not match its content)",
                    "unsigned": f"not signed (indexed without ${KEY_ENV})",
                    "other-key": f"signed with another key (key id {e.get('key_id')}, yours {kid})",
                    "bad-signature": "the signature does not match: the entry was rewritten"}[fault]
            kind = "bad-signature" if fault == "other-key" else fault
            report.problems.append(Problem(kind, f"{_who(e)}: {text}", e["run_id"], e["_line"]))
        first = seen.setdefault(e["run_id"], e)
        if first is not e:
            report.problems.append(Problem("duplicate", f"{_who(e)}: run id already indexed at line {first['_line']}",
                                           e["run_id"], e["_line"]))


def _check_records(reports_dir: Path, entries: list[dict], report: VerifyReport) -> None:
    indexed: set[str] = set()
    for e in entries:
        try:
            path = record_file(reports_dir, e)
        except StoreError as exc:
            report.problems.append(Problem("unsafe-path", str(exc), e["run_id"], e["_line"]))
            continue
        indexed.add(Path(e["record"]).as_posix())
        if e.get("record_missing"):  # the run could not write it (a full disk, ...): the entry stands in
            report.notes.append(f"{_who(e)}: its record could not be written ({e['record_missing']}); "
                                f"the index entry is all that was kept")
            continue
        try:
            with os.fdopen(_open_record(reports_dir, path, MAX_RECORD_BYTES), "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except StoreError as exc:
            report.problems.append(Problem("record-unreadable", f"{_who(e)}: record file {e['record']}: {exc.line()}",
                                           e["run_id"], e["_line"]))
            continue
        except FileNotFoundError:
            report.problems.append(Problem("record-deleted", f"{_who(e)}: record file {e['record']} was deleted", e["run_id"], e["_line"]))
            continue
        except OSError as exc:
            report.problems.append(Problem("record-unreadable", f"{_who(e)}: record file {e['record']} cannot be read: {exc.strerror}",
                                           e["run_id"], e["_line"]))
            continue
        report.records_checked += 1
        if digest != e["record_sha256"]:
            report.problems.append(Problem("record-edited", f"{_who(e)}: record file {e['record']} was edited (sha256 differs from the index)",
                                           e["run_id"], e["_line"]))
    for rel in _record_files(reports_dir):
        if rel not in indexed:
            if _is_placeholder(reports_dir / rel, reports_dir):
                # the runner writes a placeholder first and indexes the run when it ends: a run
                # killed on the way leaves only the placeholder. Named, but not an alteration.
                report.notes.append(f"incomplete: run {_run_id_of(rel)} did not finish (killed, or still running); "
                                    f"its record {rel} is the placeholder written at its start and is not indexed")
                continue
            report.problems.append(Problem("unindexed", f"record file {rel} is not in the index (its entry was deleted, or the file was added)",
                                           _run_id_of(rel), None))


def _open_record(reports_dir: Path, path: Path, limit: int) -> int:
    """A descriptor on a record file inside the reports directory: no symlinked directory on
    the way, the file itself regular (no FIFO, device or link) and at most ``limit`` bytes."""
    here = Path(reports_dir)
    for part in path.relative_to(reports_dir).parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise StoreError(f"{here} is a symbolic link: verify reads only files inside the reports directory")
    return open_regular(path, limit=limit)


def _is_placeholder(path: Path, reports_dir: Path) -> bool:
    try:
        with os.fdopen(_open_record(reports_dir, path, MAX_PLACEHOLDER_BYTES), "rb") as fh:
            meta = json.loads(fh.read()).get("metadata", {}).get("swrun", {})
    except (OSError, ValueError, AttributeError, StoreError):
        return False
    return meta.get("outcome") == "incomplete" and meta.get("finished") is None


def _record_files(reports_dir: Path) -> Iterator[str]:
    """The record files under the reports directory, down to the layout's depth (``<env>/<YYYY>/<MM>/``):
    regular files only, no symlinked directory followed."""
    for root, dirs, files in os.walk(reports_dir):  # os.walk follows no directory symlink
        rel_root = os.path.relpath(root, reports_dir)
        depth = 0 if rel_root == "." else len(Path(rel_root).parts)
        dirs[:] = [] if depth >= 3 else [d for d in dirs if not d.startswith(".") and not (depth == 0 and d == SITE_DIR)]
        for name in files:
            if name.endswith(".ipynb") and not name.startswith("."):
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.lstat(os.path.join(root, name)).st_mode):
                        yield name if rel_root == "." else f"{Path(rel_root).as_posix()}/{name}"


def _run_id_of(rel: str) -> str | None:
    stem = Path(rel).stem
    return stem.rsplit("_", 1)[-1] if "_" in stem else None


def _longest_increasing(seq: list[int]) -> set[int]:
    """Indices (into ``seq``) of one longest strictly increasing subsequence."""
    tails: list[int] = []
    tails_at: list[int] = []
    parent = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_at.append(i)
        else:
            tails[j], tails_at[j] = v, i
        parent[i] = tails_at[j - 1] if j else -1
    keep, i = set(), (tails_at[-1] if tails_at else -1)
    while i >= 0:
        keep.add(i)
        i = parent[i]
    return keep


def _check_chain(entries: list[dict], bad_lines: set[int], report: VerifyReport) -> None:
    """Follow ``prev`` links from GENESIS; name what was deleted before, inserted, or moved."""
    pos_by_hash: dict[str, int] = {}
    for i, e in enumerate(entries):
        pos_by_hash.setdefault(e["hash"], i)
    children: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        if pos_by_hash[e["hash"]] == i:
            children[e["prev"]].append(i)

    # the length of the longest chain hanging from each entry, iteratively (no recursion limit)
    depth = [0] * len(entries)
    state = [0] * len(entries)  # 0 new, 1 open, 2 done
    for start in range(len(entries)):
        if state[start]:
            continue
        stack = [start]
        while stack:
            i = stack[-1]
            if state[i] == 0:
                state[i] = 1
                stack.extend(k for k in children.get(entries[i]["hash"], ()) if state[k] == 0)
            else:
                stack.pop()
                if state[i] == 1:
                    state[i] = 2
                    kids = [depth[k] for k in children.get(entries[i]["hash"], ()) if state[k] == 2]
                    depth[i] = 1 + max(kids, default=0)

    roots = [i for i, e in enumerate(entries) if pos_by_hash[e["hash"]] == i
             and (e["prev"] == GENESIS or e["prev"] not in pos_by_hash)]
    visited: set[int] = set()
    chain: list[int] = []  # positions, in chain order
    chain_prev: dict[int, int] = {}

    def pick(options: list[int]) -> int:
        return max(options, key=lambda k: (depth[k], -k))

    genesis_roots = [i for i in roots if entries[i]["prev"] == GENESIS]
    other_roots = [i for i in roots if entries[i]["prev"] != GENESIS]
    starts: list[int] = []
    if genesis_roots:
        best = pick(genesis_roots)
        starts.append(best)
        for loser in genesis_roots:
            if loser != best:
                _inserted(entries[loser], f"it claims to be the first entry, like {_who(entries[best])}", report)
                visited.add(loser)
    for i in other_roots:
        e = entries[i]
        line = e["_line"]
        if (line - 1) in bad_lines:
            report.problems.append(Problem("chain", f"{_who(e)}: chains to an entry that cannot be read (line {line - 1} is corrupt)",
                                           e["run_id"], line))
        else:
            report.problems.append(Problem(
                "broken-link", f"{_who(e)}: the entry it chains to (hash {e['prev'][:12]}...) is not in the index: "
                + _why_broken(e, entries[i - 1] if i else None, children), e["run_id"], line))
        starts.append(i)

    for start in starts:
        cur = start
        while cur not in visited:
            visited.add(cur)
            chain.append(cur)
            kids = [k for k in children.get(entries[cur]["hash"], ()) if k not in visited]
            if not kids:
                break
            best = pick(kids)
            for loser in kids:
                if loser != best:
                    if depth[loser] == depth[best]:
                        _inserted(entries[loser], f"it and {_who(entries[best])} both chain to {_who(entries[cur])}: one of them was inserted", report)
                    else:
                        _inserted(entries[loser], f"no entry chains to it; it claims to follow {_who(entries[cur])}", report)
                    visited.add(loser)
            chain_prev[best] = cur
            cur = best
    for i, e in enumerate(entries):
        if i in visited:
            continue
        if pos_by_hash[e["hash"]] != i:
            first = entries[pos_by_hash[e["hash"]]]
            _inserted(e, f"a copy of the entry at line {first['_line']}", report)
        else:
            _inserted(e, "it is not part of the chain", report)

    # entries in the chain but out of their chain order: the ones outside a longest increasing run
    keep = _longest_increasing(chain)
    chain_next = {before: after for after, before in chain_prev.items()}
    for n, i in enumerate(chain):
        if n in keep:
            continue
        e = entries[i]
        where = []
        if chain_prev.get(i) is not None:
            where.append(f"after {_who(entries[chain_prev[i]])}")
        if chain_next.get(i) is not None:
            where.append(f"before {_who(entries[chain_next[i]])}")
        report.problems.append(Problem("reordered", f"{_who(e)}: out of order: the chain puts it {' and '.join(where) or 'alone'}",
                                       e["run_id"], e["_line"]))


def _why_broken(e: dict, before: dict | None, children: dict) -> str:
    """Why an entry's link points nowhere, from the sequence numbers around it."""
    if before is None:
        return "the entries before it were deleted"
    try:
        gap = int(e.get("seq")) - int(before.get("seq"))
    except (TypeError, ValueError):
        gap = 0
    if gap > 1:
        missing = (f"entry {int(before['seq']) + 1} of the chain, between it and {_who(before)}, was deleted" if gap == 2 else
                   f"entries {int(before['seq']) + 1}-{int(e['seq']) - 1} of the chain, between it and {_who(before)}, were deleted")
        return missing
    if gap == 1 and not children.get(before["hash"]):
        return f"{_who(before)} before it was rewritten (its hash changed)"
    return f"entries before it were deleted, or {_who(before)} was rewritten"


def _inserted(e: dict, why: str, report: VerifyReport) -> None:
    report.problems.append(Problem("inserted", f"{_who(e)}: {why}", e["run_id"], e["_line"]))


def _check_database(entries: list[dict], database_url: str, report: VerifyReport) -> None:
    from . import database

    url = database.normalize_url(database_url)
    ident = database.identity(url)
    where = f"{ident.host}:{ident.port}/{ident.database}"
    engine = database.make_engine(url)
    try:
        copies = read_db_copies(engine)
    except DatabaseError as exc:
        report.database = f"not checked: {exc.line()}"
        report.problems.append(Problem("database", f"the database copy could not be read: {exc.line()}"))
        return
    except Exception as exc:
        why = database.scrub(" ".join(str(getattr(exc, "orig", None) or exc).split())[:200], url)
        report.database = f"not checked: {why}"
        report.problems.append(Problem("database", f"the database copy could not be read: {why}"))
        return
    finally:
        engine.dispose()
    copies = copies or {}

    def same_db(e: dict) -> bool:
        d = e.get("database") or {}
        return d.get("database") == ident.database and str(d.get("host")) == ident.host and int(d.get("port") or 0) == ident.port

    expected = [e for e in entries if same_db(e)]
    indexed_ids = {e["run_id"] for e in entries}
    for e in expected:
        copy = copies.get(e["run_id"])
        if copy is None:
            report.problems.append(Problem("db-missing", f"{_who(e)}: missing from the database copy in {where}", e["run_id"], e["_line"]))
            continue
        mine = public(e)
        if copy != mine:
            fields = sorted(k for k in set(copy) | set(mine) if copy.get(k) != mine.get(k))
            report.problems.append(Problem("db-differs", f"{_who(e)}: the database copy differs in {', '.join(fields)}",
                                           e["run_id"], e["_line"]))
    for run_id, copy in sorted(copies.items(), key=lambda kv: kv[1].get("seq", 0)):
        if run_id not in indexed_ids:
            report.problems.append(Problem("deleted", f"run {run_id} ({copy.get('environment')}, {copy.get('started')}, "
                                           f"{copy.get('record')}) is in the database copy but not in the index", run_id, None))
    report.database = (f"{where}: {len(expected)} index entries for this database, {len(copies)} rows in {SCHEMA}.{TABLE}"
                       if copies or expected else f"{where}: no runs recorded for this database")
