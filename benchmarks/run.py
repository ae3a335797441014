"""swrun side by side with the plain commands of the guide's quick reference.

Each case runs both sides on the same embedded PostgreSQL in the same process of
measurement, several times, each time on a fresh database, and prints the medians and
their ratio (swrun / plain). Nothing here is a test: it reports.

    python benchmarks/run.py                 # every case (about 30 minutes on 2 cores)
    python benchmarks/run.py --quick         # fewer runs, smaller chains, no 1 GB database
    python benchmarks/run.py --case deploy-demo --case status
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

from sqlalchemy.engine import make_url  # noqa: E402

from swrun import embedded  # noqa: E402
from swrun.migrations import DEMO_INI  # noqa: E402

BIN = Path(sys.executable).parent
SWRUN, ALEMBIC = str(BIN / "swrun"), str(BIN / "alembic")
ROWS: list[dict] = []


def sh(argv, stdout=None, env=None, cwd=None) -> str:
    proc = subprocess.run([str(a) for a in argv], stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:200]} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return proc.stdout if stdout is None else ""


class Bench:
    def __init__(self, home: Path, runs: int):
        self.server = embedded.EmbeddedServer(home)
        self.status = self.server.start()
        self.runs = runs
        self.work = Path(tempfile.mkdtemp(prefix="swrun-bench-"))

    def fresh_db(self) -> tuple[str, str]:
        name = f"b_{uuid.uuid4().hex[:8]}"
        return name, self.server.create_database(name)

    def copy_of(self, template: str) -> tuple[str, str]:
        """A fresh database with the rows of ``template`` (a file copy, not timed)."""
        name = f"b_{uuid.uuid4().hex[:8]}"
        status = self.server.status()
        sh([embedded.pg_tool("psql"), "-X", "-q", "-c", f'create database "{name}" template "{template}" strategy file_copy',
            status.url("postgres")])
        return name, status.url(name)

    def drop(self, name: str) -> None:
        self.server.drop_database(name)

    # -- the two sides of a deployment -------------------------------------------------------
    def plain_deploy(self, ini: Path, url: str, rehearse: bool = False) -> float:
        """The guide's commands, typed one after another; with ``rehearse``, also what a user
        types to try the migrations and their downgrade on a restored copy first."""
        generate.set_url(ini, url.replace("postgresql://", "postgresql+psycopg2://"))
        out = self.work / "plain"
        out.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        current = sh([ALEMBIC, "-c", ini, "current"]).split()
        sh([ALEMBIC, "-c", ini, "history", "--verbose"])
        rng = f"{current[0]}:head" if current else "head"
        with open(out / "migration.sql", "w") as fh:
            sh([ALEMBIC, "-c", ini, "upgrade", rng, "--sql"], stdout=fh)
        sh([embedded.pg_tool("pg_dump"), "-Fc", "-f", out / "backup.dump", url])
        if rehearse:
            scratch = f"r_{uuid.uuid4().hex[:8]}"
            scratch_url, admin = (make_url(url).set(database=d).render_as_string(hide_password=False) for d in (scratch, "postgres"))
            copy_ini = ini.with_name("scratch.ini")
            shutil.copy(ini, copy_ini)
            generate.set_url(copy_ini, scratch_url.replace("postgresql://", "postgresql+psycopg2://"))
            sh([embedded.pg_tool("psql"), "-q", "-c", f"create database {scratch}", admin])
            sh([embedded.pg_tool("pg_restore"), "--no-owner", "-d", scratch_url, out / "backup.dump"])
            sh([ALEMBIC, "-c", copy_ini, "upgrade", "head"])
            sh([ALEMBIC, "-c", copy_ini, "downgrade", current[0] if current else "base"])
            sh([ALEMBIC, "-c", copy_ini, "upgrade", "head"])
            sh([embedded.pg_tool("psql"), "-q", "-c", f"drop database {scratch}", admin])
        sh([ALEMBIC, "-c", ini, "upgrade", "head"])
        sh([ALEMBIC, "-c", ini, "current"])
        return time.perf_counter() - t0

    def swrun_deploy(self, ini: Path, url: str, memory: dict | None = None, steps: str | None = None) -> float:
        out = self.work / "swrun"
        out.mkdir(exist_ok=True)
        argv = [SWRUN, "deploy", "--project", ini, "--database-url", url, "--env", "bench",
                "--reports-dir", out / "reports", "--backup-dir", out / "backups", *(["--steps", steps] if steps else [])]
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out)
        watcher = _watch_memory(proc.pid, memory) if memory is not None else None
        _, err = proc.communicate()
        elapsed = time.perf_counter() - t0
        if watcher:
            watcher.join()
        if proc.returncode != 0:
            raise RuntimeError(f"swrun deploy failed: {err[-800:]}")
        return elapsed

    def deploy_case(self, name: str, ini_for: callable, target: str, like_for_like: str = "") -> tuple[float, float]:
        """Every side on a fresh database per run, the order alternating between runs.

        Rows: ``swrun deploy`` with every step against the guide's six commands (the issue's
        target); the same without the rehearsal (the steps the six commands cover); and with
        the rehearsal against the six commands plus the rehearsal typed by hand."""
        sides = {"swrun": lambda ini, url: self.swrun_deploy(ini, url),
                 "plain": lambda ini, url: self.plain_deploy(ini, url),
                 "swrun-norehearse": lambda ini, url: self.swrun_deploy(ini, url, steps=NO_REHEARSAL),
                 "plain-rehearse": lambda ini, url: self.plain_deploy(ini, url, rehearse=True)}
        if not like_for_like:
            sides = {k: v for k, v in sides.items() if k in ("swrun", "plain")}
        times: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(self.runs):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                db, url = self.fresh_db()
                try:
                    times[side].append(sides[side](ini_for(side.split("-")[0]), url))
                finally:
                    self.drop(db)
                print(f"    run {i + 1} {side}: {times[side][-1]:.1f}s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        report(name, med["swrun"], med["plain"], target)
        if like_for_like:
            report("  same steps, no rehearsal", med["swrun-norehearse"], med["plain"], like_for_like)
            report("  both sides rehearse", med["swrun"], med["plain-rehearse"], like_for_like,
                   "plain: + createdb, pg_restore, upgrade, downgrade, upgrade, dropdb")
        return med["swrun"], med["plain"]


# swrun's deploy without its rehearsal: the checklist steps the guide's six commands cover
NO_REHEARSAL = "preflight,status,preview,guards,backup,upgrade,verify"


def _watch_memory(pid: int, memory: dict) -> threading.Thread:
    """Peak resident memory of a process and all its children (the kernel), sampled every 20 ms."""
    import psutil

    def run():
        peak = 0
        try:
            root = psutil.Process(pid)
            while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
                time.sleep(0.02)
        except psutil.Error:
            pass
        memory["peak"] = peak

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def report(case: str, swrun_s: float, plain_s: float | None, target: str = "", note: str = "") -> None:
    ratio = swrun_s / plain_s if plain_s else None
    ROWS.append({"case": case, "swrun": swrun_s, "plain": plain_s, "ratio": ratio, "target": target, "note": note})
    r = f"{ratio:6.2f}" if ratio is not None else "     -"
    p = f"{plain_s:9.3f}s" if plain_s is not None else "         -"
    print(f"{case:<34} swrun {swrun_s:9.3f}s   plain {p}   ratio {r}   {target}  {note}", flush=True)


def project_copy(root: Path, source: Path) -> Path:
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source.parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root / "alembic.ini"


# -- cases ---------------------------------------------------------------------------------
def case_deploy_demo(b: Bench, args) -> None:
    inis = {side: project_copy(b.work / f"demo-{side}", DEMO_INI) for side in ("plain", "swrun")}
    b.deploy_case("deploy: demo (7 revisions)", lambda side: inis[side], "target <= 1.00", like_for_like="target <= 1.00")


def case_deploy_chain(b: Bench, args) -> None:
    n = 100 if args.quick else 500
    inis = {side: generate.make_project(b.work / f"chain{n}-{side}", n) for side in ("plain", "swrun")}
    b.deploy_case(f"deploy: chain of {n} revisions", lambda side: inis[side], "target <= 1.00",
                  like_for_like="" if args.target_only else "target <= 0.80")


def case_scale(b: Bench, args) -> None:
    """Deploy time against chain length, both sides, and what swrun adds per revision: with the
    rehearsal (each revision run four times) and without it (the six commands' steps)."""
    sizes = (10, 100) if args.quick else (10, 100, 500, 1000)
    runs = max(1, min(b.runs, 2))
    results: dict[int, dict[str, float]] = {}
    for n in sizes:
        inis = {side: generate.make_project(b.work / f"scale{n}-{side}", n) for side in ("plain", "swrun")}
        times: dict[str, list[float]] = {"swrun": [], "swrun-norehearse": [], "plain": []}
        for i in range(runs):
            for side in (list(times) if i % 2 == 0 else list(reversed(times))):
                db, url = b.fresh_db()
                try:
                    ini = inis[side.split("-")[0]]
                    times[side].append(b.plain_deploy(ini, url) if side == "plain" else
                                       b.swrun_deploy(ini, url, steps=NO_REHEARSAL if side.endswith("norehearse") else None))
                finally:
                    b.drop(db)
        results[n] = {k: statistics.median(v) for k, v in times.items()}
        report(f"scale: {n} revisions", results[n]["swrun"], results[n]["plain"], "",
               f"no rehearsal: {results[n]['swrun-norehearse']:.3f}s ({results[n]['swrun-norehearse'] / results[n]['plain']:.2f})")
    lo, hi = min(sizes), max(sizes)
    per = {k: (results[hi][k] - results[lo][k]) / (hi - lo) for k in ("swrun", "swrun-norehearse", "plain")}
    for side, label in (("swrun-norehearse", "same steps, no rehearsal"), ("swrun", "every step, with rehearsal")):
        extra = per[side] - per["plain"]
        print(f"{'scale: per revision, ' + label:<52} swrun {per[side] * 1000:7.2f}ms   plain {per['plain'] * 1000:7.2f}ms   "
              f"extra: {extra * 1000:+.2f} ms (target < 5 ms)", flush=True)
        ROWS.append({"case": f"scale: extra per revision, {label}", "swrun": extra, "plain": None, "ratio": None,
                     "target": "< 5 ms", "note": f"swrun {per[side] * 1000:.2f} ms/rev, plain {per['plain'] * 1000:.2f} ms/rev"})


def _last_rehearsal(out: Path) -> str:
    """What the newest swrun record's rehearsal did: its copy, its seconds, the backup's seconds."""
    import json

    found = sorted((out / "reports").rglob("*.ipynb"), key=lambda p: p.stat().st_mtime)
    if not found:
        return ""
    steps = {s["step"]: s for s in json.loads(found[-1].read_text())["metadata"]["swrun"]["steps"]}
    r = steps.get("rehearse", {}).get("data") or {}
    copy = r.get("copy") or {}
    rows = copy.get("row_counts") or {}
    held = ", ".join(f"{t} {n:,}" for t, n in rows.items() if n) or "-"
    return (f"{copy.get('copy', '?')} copy ({held}); rehearse {steps.get('rehearse', {}).get('seconds', 0):.1f}s "
            f"(restore {r.get('restore_seconds', 0):.1f}s), backup {steps.get('backup', {}).get('seconds', 0):.1f}s")


def large_change_case(b: Bench, args, change: str, label: str, target: str) -> None:
    """A deploy on a fresh copy of the large database, swrun's default deploy against the guide's
    commands; for the rewrite of the big table, the plain side also rehearses by hand."""
    template, _, size = large_database(b, args)
    inis = {}
    for side in ("plain", "swrun"):
        inis[side] = project_copy(b.work / f"large-{change}-{side}", DEMO_INI)
        generate.add_demo_revisions(inis[side].parent / "migrations" / "versions", change)
    rehearse_by_hand = change == "big"
    times: dict[str, list[float]] = {"swrun": [], "plain": []}
    seen = []
    for i in range(b.runs):
        for side in (["swrun", "plain"] if i % 2 == 0 else ["plain", "swrun"]):
            db, url = b.copy_of(template)
            try:
                if side == "swrun":
                    times[side].append(b.swrun_deploy(inis[side], url))
                    seen.append(_last_rehearsal(b.work / "swrun"))
                else:
                    times[side].append(b.plain_deploy(inis[side], url, rehearse=rehearse_by_hand))
            finally:
                b.drop(db)
            print(f"    run {i + 1} {side}: {times[side][-1]:.1f}s" + (f"  [{seen[-1]}]" if side == "swrun" else ""), flush=True)
    plain_is = "the six commands + the rehearsal by hand" if rehearse_by_hand else "the six commands"
    report(f"{label} ({size / 2**30:.2f} GiB)", statistics.median(times["swrun"]), statistics.median(times["plain"]), target,
           f"plain: {plain_is}")


def case_large_small_change(b: Bench, args) -> None:
    large_change_case(b, args, "small", "deploy-large-small-change", "target <= 1.15")


def case_large_big_change(b: Bench, args) -> None:
    large_change_case(b, args, "big", "deploy-large-big-change", "target <= 0.70")


def case_status(b: Bench, args) -> None:
    n = 100 if args.quick else 500
    ini = generate.make_project(b.work / f"status{n}", n)
    db, url = b.fresh_db()
    try:
        generate.set_url(ini, url.replace("postgresql://", "postgresql+psycopg2://"))
        sh([ALEMBIC, "-c", ini, "upgrade", "head"])
        plain, swr = [], []
        for _ in range(b.runs):
            t0 = time.perf_counter()
            sh([ALEMBIC, "-c", ini, "current"])
            sh([ALEMBIC, "-c", ini, "heads"])
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sh([SWRUN, "status", "--project", ini, "--database-url", url])
            swr.append(time.perf_counter() - t0)
        report(f"status: {n} revisions", statistics.median(swr), statistics.median(plain), "vs current + heads")
    finally:
        b.drop(db)


def large_database(b: Bench, args) -> tuple[str, str, int]:
    """The demo at its head, filled to ``--large-mb`` (1.1 GiB; 200 MiB with --quick) once and kept
    in the benchmark's server: (name, url, bytes)."""
    target_bytes = (200 if args.quick else args.large_mb) * 2**20
    name = f"bench_bulk_{target_bytes // 2**20}mb"
    url = b.server.create_database(name)
    from swrun import database

    engine = database.make_engine(database.normalize_url(url))
    with engine.connect() as conn:
        size = conn.exec_driver_sql("select pg_database_size(current_database())").scalar()
        at_head = conn.exec_driver_sql("select count(*) from pg_tables where tablename = 'alembic_version'").scalar()
    engine.dispose()
    if not at_head or size < target_bytes:
        sh([SWRUN, "upgrade", "--database-url", url, "--reports-dir", b.work / "r", "--backup-dir", b.work / "bk"])
        t0 = time.perf_counter()
        size = generate.fill_demo(url, target_bytes)
        print(f"  (filled {name} to {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f}s)", flush=True)
    return name, url, int(size)


def case_backup(b: Bench, args) -> None:
    name, url, size = large_database(b, args)
    out = b.work / "backup"
    modes = tuple(args.backup_modes.split(","))
    times: dict[str, list[float]] = {m: [] for m in modes}
    plain: list[float] = []
    for i in range(b.runs):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for side in (["plain", *modes] if i % 2 == 0 else [*reversed(modes), "plain"]):  # interleaved, order alternating
            t0 = time.perf_counter()
            if side == "plain":
                sh([embedded.pg_tool("pg_dump"), "-Fc", "-f", out / "plain.dump", url])
                plain.append(time.perf_counter() - t0)
                continue
            sh([SWRUN, "backup", "--database-url", url, "--mode", side, "--reports-dir", out / "reports", "--backup-dir", out],
               cwd=out)
            times[side].append(time.perf_counter() - t0)
            print(f"    run {i + 1} {side}: {times[side][-1]:.1f}s (plain so far: {', '.join(f'{x:.1f}' for x in plain)})", flush=True)
    p = statistics.median(plain)
    label = f"{size / 2**30:.2f} GiB"
    report(f"backup: {label}, swrun -Fc + verify", statistics.median(times["custom"]), p, "target <= 1.02")
    if "custom-fast" in times:
        report(f"backup: {label}, custom-fast", statistics.median(times["custom-fast"]), p, "")
    if "directory-fast" in times:
        report(f"backup: {label}, directory-fast -j", statistics.median(times["directory-fast"]), p, "target <= 0.60 (best mode)")


def case_memory(b: Bench, args) -> None:
    n = 100 if args.quick else 500
    ini = generate.make_project(b.work / f"mem{n}", n)
    db, url = b.fresh_db()
    memory: dict = {}
    try:
        elapsed = b.swrun_deploy(ini, url, memory)
    finally:
        b.drop(db)
    print(f"{'memory: deploy of ' + str(n) + ' revisions':<34} peak RSS of swrun + kernel: {memory.get('peak', 0) / 2**20:.0f} MiB "
          f"({elapsed:.1f}s)", flush=True)
    ROWS.append({"case": f"memory: deploy {n} revisions", "swrun": memory.get("peak", 0) / 2**20, "plain": None, "ratio": None,
                 "target": "MiB", "note": ""})


def case_records(b: Bench, args) -> None:
    script = HERE / "bench_records.py"
    if not script.exists():
        print("records: benchmarks/bench_records.py not present", flush=True)
        return
    print(sh([sys.executable, script] + (["--quick"] if args.quick else [])).rstrip(), flush=True)


# -- real public chains, as their packages ship them ---------------------------------------
REALWORLD = {  # package, its chain inside it, [swrun] settings, what the package does before its first upgrade
    "optuna": ("optuna", "storages/_rdb/alembic", {}, None),
    "mlflow": ("mlflow", "store/db_migrations", {"baseline": "mlflow.store.tracking.dbmodels.initial_models:Base.metadata"},
               "mlflow.store.tracking.dbmodels.initial_models:Base"),
}


def _realworld_ini(root: Path, package: str, inside: str, swrun_opts: dict) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return None
    root.mkdir(parents=True, exist_ok=True)
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {Path(spec.origin).parent / inside}\nsqlalchemy.url =\n"
                   + ("[swrun]\n" + "".join(f"{k} = {v}\n" for k, v in swrun_opts.items()) if swrun_opts else "")
                   + _QUIET_LOGGING)  # such env.py files call fileConfig on the ini
    return ini


_QUIET_LOGGING = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


def _prepared_db(b: Bench, prepare: str | None) -> tuple[str, str]:
    db, url = b.fresh_db()
    if prepare:  # the package's own tables, created as it creates them (not timed: neither side does it)
        import importlib

        import sqlalchemy as sa

        module, _, attr = prepare.partition(":")
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
        getattr(importlib.import_module(module), attr).metadata.create_all(engine)
        engine.dispose()
    return db, url


def case_realworld(b: Bench, args) -> None:
    """The default ``swrun deploy`` (every step, the rehearsal included) and the same without the
    rehearsal, against a plain ``alembic upgrade head``, each on a fresh database."""
    for name, (package, inside, opts, prepare) in REALWORLD.items():
        ini = _realworld_ini(b.work / f"rw-{name}", package, inside, opts)
        if ini is None:
            print(f"realworld: {name}: {package} is not installed (pip install '.[test]'); skipped", flush=True)
            continue
        plain_ini = ini.with_name("plain.ini")
        shutil.copy(ini, plain_ini)
        times: dict[str, list[float]] = {"swrun": [], "norehearse": [], "plain": []}
        for i in range(b.runs):
            for side in (["plain", "swrun", "norehearse"] if i % 2 == 0 else ["norehearse", "swrun", "plain"]):
                db, url = _prepared_db(b, prepare)
                try:
                    if side == "plain":
                        generate.set_url(plain_ini, url.replace("postgresql://", "postgresql+psycopg2://"))
                        t0 = time.perf_counter()
                        sh([ALEMBIC, "-c", plain_ini, "upgrade", "head"])
                        times[side].append(time.perf_counter() - t0)
                    else:
                        times[side].append(b.swrun_deploy(ini, url, steps=NO_REHEARSAL if side == "norehearse" else None))
                finally:
                    b.drop(db)
        med = {k: statistics.median(v) for k, v in times.items()}
        from swrun.migrations import Project

        revisions = len(Project.load(ini).revisions)
        report(f"realworld: {name} ({revisions} revisions)", med["swrun"], med["plain"], "", "plain: alembic upgrade head")
        report("  same, no rehearsal", med["norehearse"], med["plain"])


CASES = {
    "deploy-demo": case_deploy_demo,
    "deploy-chain": case_deploy_chain,
    "deploy-large-small-change": case_large_small_change,
    "deploy-large-big-change": case_large_big_change,
    "scale": case_scale,
    "status": case_status,
    "backup": case_backup,
    "memory": case_memory,
    "records": case_records,
    "realworld": case_realworld,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="swrun benchmarks: swrun against the plain commands")
    parser.add_argument("--runs", type=int, default=5, help="runs per side (median reported)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller inputs")
    parser.add_argument("--target-only", action="store_true",
                        help="deploy-chain: only the two sides of the target (default deploy, six commands), no like-for-like rows")
    parser.add_argument("--backup-modes", default="custom,custom-fast,directory-fast",
                        help="the backup case's swrun modes (comma-separated; 'custom' is the one with a target)")
    parser.add_argument("--large-mb", type=int, default=1100, help="size of the large database (MiB) for backup and deploy-large-*")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--home", default=os.environ.get("SWRUN_BENCH_HOME", str(Path.home() / ".swrun-bench")),
                        help="state directory of the benchmark's embedded PostgreSQL (kept: the 1 GB database is reused)")
    args = parser.parse_args()
    if args.quick:
        args.runs = min(args.runs, 3)
    import compileall

    import psutil
    import swrun

    # as pip leaves an installed package: byte-compiled. An editable checkout under
    # PYTHONDONTWRITEBYTECODE would otherwise compile swrun's source in every process (~0.3 s each)
    compileall.compile_dir(str(Path(swrun.__file__).parent), quiet=1)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, PostgreSQL {embedded.EmbeddedServer(args.home).start().version} (embedded)")
    print(f"runs per side: {args.runs} (median)\n", flush=True)
    bench = Bench(Path(args.home), args.runs)
    try:
        for name in args.case or list(CASES):
            CASES[name](bench, args)
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
