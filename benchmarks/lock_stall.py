"""The stall the application sees while a migration waits for its lock: swrun against plain Alembic.

An application load (``--clients`` sessions, each reading and writing ``accounts`` every
``--every-ms`` milliseconds, autocommit) runs against a database at revision l0000001 of
tests/projects/p_locks, whose next revision adds a column to ``accounts`` (ACCESS EXCLUSIVE).
A long reader opens a transaction that reads ``accounts`` and holds it ``--reader-s`` seconds
(20 by default). Half a second after the reader starts, the upgrade to head starts:

* **swrun**: ``swrun.steps.upgrade.run`` - the deploy runbook's upgrade step, the same call
  ``swrun deploy`` makes - with its defaults (lock_timeout 2s per attempt, lock_retries 10);
* **alembic**: plain ``alembic upgrade head`` (``alembic.command.upgrade``), no lock_timeout.

Each side gets a fresh database; the same load without any deploy is measured too. Printed
side by side: the application's p50 / p99 / worst query latency and errors while the upgrade
ran (from its start to its end), the upgrade's duration and attempts.

    python benchmarks/lock_stall.py [--reader-s 20] [--clients 4] [--every-ms 50] [--database-url URL]

Without ``--database-url`` it starts an embedded server of its own under ``--home``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

P_LOCKS = REPO / "tests" / "projects" / "p_locks" / "alembic.ini"


class Load:
    """``clients`` sessions, each a read and a write of accounts every ``every_s``; latencies kept with
    their time. They run in a process of their own (:class:`LoadProcess`), so swrun's Python work in
    this process never shows up as the application's latency (the GIL)."""

    def __init__(self, url, clients: int, every_s: float):
        from swrun import database

        self.url, self.clients, self.every_s = url, clients, every_s
        self.samples: list[tuple[float, float]] = []  # (started at, seconds), time.monotonic: system-wide
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i, database), daemon=True) for i in range(clients)]

    def run_until(self, stop) -> None:
        for t in self._threads:
            t.start()
        stop.wait()
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _client(self, n: int, database) -> None:
        engine = database.make_engine(self.url, connect_args={"application_name": f"app-{n}"})
        raw = engine.raw_connection()
        raw.dbapi_connection.autocommit = True
        cur = raw.dbapi_connection.cursor()
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            i += 1
            key = (n * 1000 + i) % 100 + 1
            sql, args = (("select id, name from accounts where id = %s", (key,)) if i % 2 else
                         ("update accounts set name = name where id = %s", (key,)))
            t0 = time.monotonic()
            try:
                cur.execute(sql, args)
                if cur.description:
                    cur.fetchall()
                with self._lock:
                    self.samples.append((t0, time.monotonic() - t0))
            except Exception as exc:  # noqa: BLE001 - counted: the application's errors are the point
                with self._lock:
                    self.errors.append((t0, type(exc).__name__))
            next_at += self.every_s
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - self.every_s)  # no burst to catch up after a stall
        raw.close()
        engine.dispose()

    def window(self, start: float, end: float) -> dict:
        with self._lock:
            lat = sorted(s for t, s in self.samples if start <= t <= end)
            errs = [e for t, e in self.errors if start <= t <= end]
        if not lat:
            return {"queries": 0, "p50_ms": None, "p99_ms": None, "worst_ms": None, "slow": 0, "errors": len(errs)}
        return {"queries": len(lat), "p50_ms": 1000 * statistics.median(lat),
                "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], "worst_ms": 1000 * lat[-1],
                "slow": sum(1 for s in lat if s > 0.5), "errors": len(errs)}


def _load_main(url_text: str, clients: int, every_s: float, stop, out) -> None:
    from swrun import database

    load = Load(database.normalize_url(url_text), clients, every_s)
    load.run_until(stop)
    out.send((load.samples, load.errors))


class LoadProcess:
    def __init__(self, url, clients: int, every_s: float):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._stop, (self._recv, send) = ctx.Event(), ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_load_main, args=(url.render_as_string(hide_password=False), clients, every_s,
                                                          self._stop, send), daemon=True)
        self.samples, self.errors, self._lock = [], [], threading.Lock()

    def start(self) -> "LoadProcess":
        self._proc.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.samples, self.errors = self._recv.recv()
        self._proc.join(60)

    window = Load.window


def long_reader(url, hold_s: float, started: threading.Event):
    from swrun import database

    engine = database.make_engine(url, connect_args={"application_name": "long-reader"})
    raw = engine.raw_connection()
    cur = raw.dbapi_connection.cursor()
    cur.execute("select count(*) from accounts")
    cur.fetchall()
    started.set()
    time.sleep(hold_s)
    raw.rollback()
    raw.close()
    engine.dispose()


def swrun_upgrade(url, lock_timeout: str | None = None) -> dict:
    from swrun.config import RunContext
    from swrun.steps import upgrade

    ctx = RunContext(project_path=str(P_LOCKS), database_url=url.render_as_string(hide_password=False))
    if lock_timeout:
        ctx.lock_timeout = lock_timeout
    result = upgrade.run(ctx, target="head")
    return {"attempts": sum(r["attempts"] for r in result.data["applied"]), "lock_timeout": result.data["lock_timeout"],
            "summary": result.summary}


def alembic_upgrade(url) -> dict:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(P_LOCKS))
    cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    command.upgrade(cfg, "head")
    return {"attempts": 1, "lock_timeout": "none", "summary": "alembic upgrade head"}


def prepared(server_url_for, name: str):
    """A database at l0000001 (the table, 100 rows), through swrun's own upgrade."""
    from swrun import database
    from swrun.migrations import Project

    url = database.normalize_url(server_url_for(name))
    Project.load(P_LOCKS).apply(url, "l0000001")
    return url


def side(label: str, url, run, args) -> dict:
    load = LoadProcess(url, args.clients, args.every_ms / 1000).start()
    time.sleep(args.warmup_s + 2)  # the process starts (spawn, imports) and warms up
    if run is None:  # the same load, no deploy: as long a window as a deploy's
        t0 = time.monotonic()
        time.sleep(args.baseline_s)
        t1 = time.monotonic()
        load.stop()
        return {"label": label, **load.window(t0, t1), "deploy_s": None, "attempts": None}
    started = threading.Event()
    reader = threading.Thread(target=long_reader, args=(url, args.reader_s, started), daemon=True)
    reader.start()
    started.wait(30)
    time.sleep(0.5)
    t0 = time.monotonic()
    outcome = run(url)
    t1 = time.monotonic()
    reader.join(args.reader_s + 30)
    time.sleep(0.5)
    load.stop()
    worst = max(((t, s) for t, s in load.samples if t0 <= t <= t1), key=lambda x: x[1], default=None)
    if worst is not None:
        print(f"    worst query started {worst[0] - t0:.2f}s into the upgrade, took {worst[1]:.2f}s", flush=True)
    return {"label": label, **load.window(t0, t1), "deploy_s": t1 - t0, "attempts": outcome["attempts"],
            "lock_timeout": outcome["lock_timeout"]}


def fmt(value, unit="") -> str:
    if value is None:
        return "-"
    return f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader-s", type=float, default=20.0, help="how long the long reader holds accounts")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--every-ms", type=float, default=50.0, help="each client's period")
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--baseline-s", type=float, default=10.0, help="the no-deploy window")
    parser.add_argument("--database-url", help="a server to create the benchmark's databases on (default: an embedded one)")
    parser.add_argument("--home", default="/tmp/swrun-bench-lock-stall", help="the embedded server's home")
    parser.add_argument("--lock-timeout", help="swrun's lock_timeout per attempt (default: swrun's own, 2s)")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)  # env.py's fileConfig logs each revision: not the point here
    from swrun import database

    server = None
    if args.database_url:
        admin = database.make_engine(database.normalize_url(args.database_url))

        def create(name: str) -> str:
            with admin.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f'create database "{name}"')
            return database.normalize_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    else:
        from swrun.embedded import EmbeddedServer

        home = Path(args.home)
        home.mkdir(parents=True, exist_ok=True)
        server = EmbeddedServer(home)
        server.start()
        create = server.create_database
    names = {key: f"lockstall_{key}_{uuid.uuid4().hex[:6]}" for key in ("none", "swrun", "alembic")}
    urls = {key: prepared(create, name) for key, name in names.items()}
    print(f"load: {args.clients} clients, a read or a write of accounts every {args.every_ms:g} ms each (autocommit); "
          f"long reader holds accounts {args.reader_s:g}s; upgrade l0000001 -> head (ADD COLUMN, then CREATE INDEX CONCURRENTLY)",
          flush=True)
    rows = []
    for key, label, run in (("none", "no deploy", None), ("swrun", "swrun upgrade", lambda u: swrun_upgrade(u, args.lock_timeout)),
                            ("alembic", "alembic upgrade head", alembic_upgrade)):
        print(f"... {label}", flush=True)
        rows.append(side(label, urls[key], run, args))
    metrics = [("queries in the window", "queries", ""), ("app p50 latency", "p50_ms", " ms"), ("app p99 latency", "p99_ms", " ms"),
               ("app worst latency", "worst_ms", " ms"), ("app queries > 0.5 s", "slow", ""), ("app errors", "errors", ""), ("upgrade duration", "deploy_s", " s"),
               ("upgrade attempts", "attempts", "")]
    width = 24
    print()
    print("".ljust(24) + "".join(r["label"].rjust(width) for r in rows))
    for title, key, unit in metrics:
        cells = []
        for r in rows:
            v = r.get(key)
            cells.append(("-" if v is None else f"{v:.1f}{unit}" if key == "deploy_s" else fmt(v, unit)).rjust(width))
        print(title.ljust(24) + "".join(cells))
    sw = next(r for r in rows if r["label"] == "swrun upgrade")
    al = next(r for r in rows if r["label"].startswith("alembic"))
    from swrun import lock_retry

    bound_ms = 1000 * lock_retry.seconds(sw["lock_timeout"]) + 200
    print()
    print(f"target: the worst stall under swrun <= lock_timeout per attempt ({sw['lock_timeout']}) + 0.2 s = {bound_ms:.0f} ms: "
          f"{'met' if sw['worst_ms'] is not None and sw['worst_ms'] <= bound_ms else 'NOT met'} ({fmt(sw['worst_ms'], ' ms')}); "
          f"plain Alembic's worst: {fmt(al['worst_ms'], ' ms')}; application errors: swrun {sw['errors']}, alembic {al['errors']}")
    if server is not None:
        for name in names.values():
            try:
                server.drop_database(name)
            except Exception:  # noqa: BLE001 - a leftover benchmark database is harmless
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
