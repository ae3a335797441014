"""The record store at scale: 10,000 synthetic records, listed, filtered and verified.

Generates a reports directory of N record notebooks (each about --record-kb KiB, like a
real deploy record) with their hash-chained index, then times, several times each:

* ``list+filter``: read the index, filter (environment, outcome, time range, revision) and
  format the table, in process and as the ``swrun reports list`` command;
* ``verify``: every entry's hash, the chain, every record file's sha256, unindexed files,
  in process and as the ``swrun reports verify`` command;
* with ``--with-database``: verify against the database copies too (an embedded
  PostgreSQL in a temporary directory, the 10,000 rows inserted in bulk).

Targets (the issue's): list+filter < 1 s, verify < 10 s. The files are read from the page
cache (they were just written). Nothing here is a test: it prints figures.

    python benchmarks/bench_records.py                 # 10,000 records
    python benchmarks/bench_records.py -n 2000 --with-database
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from swrun import store

ENVS = [("development", 0.3), ("test", 0.1), ("staging", 0.35), ("production", 0.25)]
OPERATORS = ["alice@ops-1", "bob@ops-2", "carol@ci", "dave@ops-1", "erin@ci"]
STEPS = ["preflight", "status", "preview", "backup", "upgrade", "verify"]


def _revision(i: int) -> str:
    return hashlib.sha1(f"rev{i}".encode()).hexdigest()[:12]


def make_record(meta: dict, padding: int) -> str:
    """A record notebook shaped like the runner's: banner, parameters, one cell per step, outputs."""
    cells = [{"cell_type": "markdown", "id": "banner", "metadata": {"tags": ["swrun-banner"]},
              "source": f"# deploy run `{meta['run_id']}`: {meta['outcome'].upper()}"}]
    per_step = max(0, padding // len(STEPS))
    for n, step in enumerate(STEPS):
        cells.append({"cell_type": "code", "id": f"c{n}", "execution_count": n + 1, "metadata": {"tags": [f"step:{step}"]},
                      "source": f'{step} = rb.run("{step}")',
                      "outputs": [{"output_type": "display_data", "metadata": {},
                                   "data": {"text/plain": f"{step}: ok\n" + ("x" * 79 + "\n") * (per_step // 80)}}]})
    nb = {"cells": cells, "metadata": {"swrun": meta, "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"  # as the runner writes records


def generate(reports: Path, n: int, record_kb: int, seed: int = 4, identity: dict | None = None) -> list[dict]:
    """N records and their index, chained exactly as store.append would chain them (one fsync at the end)."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    span = dt.timedelta(days=730) / n
    lines, entries, prev = [], [], store.GENESIS
    for i in range(n):
        env = rng.choices([e for e, _ in ENVS], [w for _, w in ENVS])[0]
        when = start + span * i + dt.timedelta(seconds=rng.randint(0, 60))
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
        rev = i // 20
        outcome = rng.choices(["succeeded", "failed", "interrupted"], [0.9, 0.08, 0.02])[0]
        meta = {
            "run_id": run_id, "runbook": "deploy", "environment": env, "operator": rng.choice(OPERATORS), "host": "bench",
            "started": when.isoformat(), "finished": (when + dt.timedelta(seconds=rng.uniform(2, 90))).isoformat(),
            "outcome": outcome, "failed_step": "upgrade" if outcome == "failed" else None,
            "identity": identity or {"host": "db.internal", "port": 5432, "database": f"app_{env}", "user": "deployer"},
            "revision_before": [_revision(rev)] if rev else [], "revision_after": [_revision(rev + 1)],
            "fingerprint": hashlib.sha256(f"set{rev + 1}".encode()).hexdigest(),
            "backup": {"file": f"backups/swrun_{when:%Y%m%dT%H%M%SZ}_{run_id}.dump", "sha256": hashlib.sha256(run_id.encode()).hexdigest()},
        }
        path = reports / env / f"{when:%Y}" / f"{when:%m}" / f"{when:%Y%m%dT%H%M%SZ}_deploy_{run_id}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = make_record(meta, record_kb * 1024)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        entry = store.entry_body(meta, path.relative_to(reports).as_posix(), hashlib.sha256(text.encode()).hexdigest())
        entry["seq"], entry["prev"] = i + 1, prev
        entry["hash"] = prev = store.entry_hash(entry)
        entries.append(entry)
        lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    index = store.index_path(reports)
    fd = os.open(index, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entries


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swrun", *map(str, args)], capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--records", type=int, default=10_000)
    ap.add_argument("--record-kb", type=int, default=40, help="approximate size of one record file (KiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--with-database", action="store_true", help="also verify against database copies (embedded PostgreSQL)")
    ap.add_argument("--keep", action="store_true", help="keep the generated directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="swrun-bench-records-"))
    reports = root / "reports"
    reports.mkdir(mode=0o700)
    server = url = None
    try:
        identity = None
        if args.with_database:
            server, url = _database(root)
            identity = database_identity(url)
        t0 = time.perf_counter()
        entries = generate(reports, args.records, args.record_kb, identity=identity)
        size = sum(p.stat().st_size for p in reports.rglob("*.ipynb"))
        print(f"generated {len(entries):,} records ({size / 2**20:,.0f} MiB) and their index "
              f"({store.index_path(reports).stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f}s")

        mid = entries[len(entries) // 2]
        since, until = entries[len(entries) // 4]["started"][:10], entries[3 * len(entries) // 4]["started"][:10]
        rev = mid["revision_after"][0]

        def list_filter():
            index = store.read_index(reports)
            rows = store.filter_entries(index.entries, environment="production", outcome="succeeded",
                                        since=store.parse_time(since), until=store.parse_time(until, end=True))
            table = store.format_table(rows)
            by_rev = store.filter_entries(index.entries, revision=rev)
            return len(index.entries), len(rows), len(by_rev), len(table)

        t_list, (total, shown, by_rev, _) = timed(list_filter, args.repeat)
        t_list_cli, proc = timed(lambda: cli("reports", "list", "--reports-dir", reports, "--env", "production",
                                             "--outcome", "succeeded", "--since", since, "--until", until), args.repeat)
        assert proc.returncode == 0, proc.stderr
        t_verify, report = timed(lambda: store.verify(reports), args.repeat)
        assert report.ok, report.problems[:3]
        t_verify_cli, proc = timed(lambda: cli("reports", "verify", "--reports-dir", reports), args.repeat)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr

        print(f"\n{'measure':<44} {'seconds':>8}   target")
        print(f"{'list+filter, in process':<44} {t_list:>8.3f}   < 1 s   ({total:,} entries -> {shown:,} rows; {by_rev} by revision)")
        print(f"{'list+filter, `swrun reports list` command':<44} {t_list_cli:>8.3f}   < 1 s   (includes Python start-up)")
        print(f"{'verify, in process':<44} {t_verify:>8.3f}   < 10 s  ({report.records_checked:,} record files hashed)")
        print(f"{'verify, `swrun reports verify` command':<44} {t_verify_cli:>8.3f}   < 10 s")
        if args.with_database:
            _insert_copies(url, entries)
            t_db, report = timed(lambda: store.verify(reports, database_url=url), args.repeat)
            assert report.ok, report.problems[:3]
            print(f"{'verify with the database copy, in process':<44} {t_db:>8.3f}   < 10 s  ({report.database})")
        print(f"\nmedian of {args.repeat} runs; Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); files in the page cache")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _database(root: Path):
    from swrun.embedded import EmbeddedServer

    home = root / "pg-home"
    home.mkdir(mode=0o755)
    server = EmbeddedServer(home)
    return server, server.create_database("bench_records")


def database_identity(url: str) -> dict:
    from swrun import database

    return database.identity(database.normalize_url(url)).as_dict()


def _insert_copies(url: str, entries: list[dict]) -> None:
    """The copies the runner would have written, one row per run, in one bulk insert."""
    import sqlalchemy as sa

    from swrun import database

    engine = database.make_engine(database.normalize_url(url))
    try:
        store.write_db_copy(engine, entries[0])  # creates the schema and the table, as the runner does
        with engine.begin() as conn:
            conn.execute(sa.text(f"insert into {store.SCHEMA}.{store.TABLE} (run_id, seq, hash, entry) "
                                 "values (:run_id, :seq, :hash, cast(:entry as jsonb))"),
                         [{"run_id": e["run_id"], "seq": e["seq"], "hash": e["hash"], "entry": json.dumps(e)} for e in entries[1:]])
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
