"""Soak: kill swrun (or its kernel) with SIGKILL, SIGTERM or SIGHUP at random moments of a
deploy, and check that nothing is lost.

Each trial deploys a chain of revisions (one of them an enum ADD VALUE in an autocommit
block, every one sleeping a little to widen the window) to a fresh database, kills at a
random moment, then checks:

- the database is at a clean revision boundary: one alembic_version row (or none) naming
  a revision of the chain, and a schema equal to that revision's reference schema;
- the integrity ledger agrees with alembic_version (no ledger finding);
- the migration advisory lock is free;
- no kernel is left running;
- no pg_dump or pg_restore is left running;
- the killed run's record exists, marked incomplete (swrun killed) or failed (kernel killed);
- SIGTERM/SIGHUP to swrun: it exits 128 + the signal with no traceback, its record finished
  as interrupted (or as it ended, when the signal came last) and indexed, no partial backup
  file and no rehearsal copy left behind, before any other run cleans up;
- a new deploy completes and reaches head, and leaves no partial backup file.

    python soak/killed_runs.py --trials 100 --signals KILL,TERM   # alternating: 50 of each
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import generate  # noqa: E402

from swrun import database, embedded, schema  # noqa: E402
from swrun.migrations import Project  # noqa: E402

SWRUN = str(Path(sys.executable).parent / "swrun")


def snapshot(url: str) -> dict:
    engine = database.make_engine(database.normalize_url(url))
    try:
        with engine.connect() as conn:
            snap = schema.snapshot(conn)
            version = []
            if any(t[1] == "alembic_version" for t in snap["tables"]):
                version = [r[0] for r in conn.exec_driver_sql("select version_num from alembic_version")]
            return {"schema": json.loads(json.dumps(snap)), "version": version}
    finally:
        engine.dispose()


def references(server, project: Project) -> dict[str | None, dict]:
    """The schema at every revision of the chain, built by walking a reference database up."""
    name = f"ref_{uuid.uuid4().hex[:6]}"
    url = server.create_database(name)
    refs = {None: snapshot(url)["schema"]}
    try:
        for rev in project.topo_order(set(project.revisions)):
            project.apply(database.normalize_url(url), rev)
            refs[rev] = snapshot(url)["schema"]
    finally:
        server.drop_database(name)
    return refs


def lock_free(url: str, wait_s: float = 15.0) -> bool:
    engine = database.make_engine(database.normalize_url(url))
    key = database.lock_key(database.normalize_url(url).database)
    deadline = time.time() + wait_s
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                if conn.exec_driver_sql(f"select pg_try_advisory_lock({key})").scalar():
                    conn.exec_driver_sql(f"select pg_advisory_unlock({key})")
                    return True
            time.sleep(0.2)
        return False
    finally:
        engine.dispose()


def ledger_findings(url: str, project: Project) -> list[str]:
    try:
        from swrun.guards import ledger
    except ImportError:
        return []
    engine = database.make_engine(database.normalize_url(url))
    try:
        with engine.connect() as conn:
            current = ledger.database_revisions(conn)
            entries = ledger.read(conn)
        return [str(f) for f in ledger.check(ledger.scan(project), entries, current)]
    finally:
        engine.dispose()


def _autocommit_residue(found: dict, at: str | None, project: Project, refs: dict) -> bool:
    """True when the only difference is the enum values that the next revision adds outside its
    transaction (ALTER TYPE ... ADD VALUE IF NOT EXISTS in an autocommit block): PostgreSQL
    commits them before the revision's own transaction, so a kill in between leaves them, and
    the next deploy re-runs the revision idempotently. Anything else is a real difference."""
    order = project.topo_order(set(project.revisions))
    nxt = order[0] if at is None else (order[order.index(at) + 1] if order.index(at) + 1 < len(order) else None)
    if nxt is None:
        return False
    expected = dict(refs[at])
    expected["enums"] = refs[nxt]["enums"]
    return found == expected and refs[nxt]["enums"] != refs[at]["enums"]


def rehearsal_copies(work: Path) -> list[str]:
    """The rehearsal scratch databases on the embedded server the deploys rehearse on: as swrun
    picks it for a run started in ``work``, ``$SWRUN_HOME`` or ``work/.swrun``."""
    status = embedded.EmbeddedServer(os.environ.get("SWRUN_HOME") or work / ".swrun").status()
    if not status.running:
        return []
    engine = database.make_engine(database.normalize_url(status.url("postgres")))
    try:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql("select datname from pg_database where datname like 'swrun\\_rehearsal\\_%%'").scalars())
    finally:
        engine.dispose()


def kernel_of(proc: psutil.Process) -> psutil.Process | None:
    for child in proc.children(recursive=True):
        line = " ".join(child.cmdline())
        if "ipykernel" in line or "swrun.kernel" in line:
            return child
    return None


def pg_tools_of(database: str) -> list[str]:
    """pg_dump / pg_restore processes still working on ``database``."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        with_db = any(database in part for part in (p.info.get("cmdline") or []))
        if p.info.get("name") in ("pg_dump", "pg_restore") and with_db:
            found.append(f"{p.info['name']} {p.pid}")
    return found


def partial_files(work: Path) -> list[str]:
    return sorted(p.name for p in (work / "backups").glob("*.partial")) if (work / "backups").exists() else []


def indexed_run_ids(reports: Path) -> set[str]:
    path = reports / "index.jsonl"
    if not path.is_file():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)["run_id"])
        except (ValueError, KeyError, TypeError):
            pass
    return ids


def trial(i: int, server, project: Project, ini: Path, refs: dict, work: Path, rng: random.Random,
          window: float = 4.5, signum: int = signal.SIGKILL) -> list[str]:
    problems: list[str] = []
    name = f"soak_{i}_{uuid.uuid4().hex[:6]}"
    url = server.create_database(name)
    reports = work / "reports"
    victim = rng.choice(["swrun", "kernel"])
    delay = rng.uniform(0.0, window)
    argv = [SWRUN, "deploy", "--project", str(ini), "--database-url", url, "--env", "soak", "--reports-dir", str(reports),
            "--backup-dir", str(work / "backups"), "--json"]
    before = set(reports.rglob("*.ipynb")) if reports.exists() else set()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)
    kernel = None
    # the clock starts when the run's record exists (the placeholder, written before any cell
    # runs): a kill before it leaves no record, and nothing has run on the database by then
    while proc.poll() is None and not (set(reports.rglob("*.ipynb")) - before if reports.exists() else set()):
        time.sleep(0.01)
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        try:
            kernel = kernel_of(psutil.Process(proc.pid)) or kernel
        except psutil.Error:
            pass
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        target = proc.pid if victim == "swrun" or kernel is None else kernel.pid
        try:
            os.kill(target, signum)
        except ProcessLookupError:  # the kernel ended on its own just now: the run is finishing
            killed = False
    _, stderr = proc.communicate(timeout=120)
    graceful = signum != signal.SIGKILL
    if "Traceback" in stderr:
        problems.append(f"a traceback: {stderr.strip().splitlines()[-1:]}")
    if graceful and killed and victim == "swrun" and proc.returncode not in (128 + signum, 0, 9):
        problems.append(f"exit code {proc.returncode} after {signal.Signals(signum).name}")
    try:
        if kernel is not None:
            kernel.wait(timeout=15)
    except psutil.TimeoutExpired:
        problems.append(f"kernel {kernel.pid} still running 15 s after the kill")
        kernel.kill()
    except psutil.Error:
        pass
    if not lock_free(url):
        problems.append("the advisory lock is still held")
    state = snapshot(url)
    if len(state["version"]) > 1 or (state["version"] and state["version"][0] not in refs):
        problems.append(f"alembic_version is {state['version']}")
    else:
        at = state["version"][0] if state["version"] else None
        if state["schema"] != refs[at] and not _autocommit_residue(state["schema"], at, project, refs):
            problems.append(f"schema differs from the reference at {at}")
    problems += [f"ledger: {f}" for f in ledger_findings(url, project)]
    time.sleep(0.3)  # a pg_dump the kernel's death signalled: gone by now
    problems += [f"left running: {t}" for t in pg_tools_of(name)]
    if graceful:  # the run cleaned up itself: nothing waits for the next run
        problems += [f"partial backup left: {f}" for f in partial_files(work)]
        problems += [f"rehearsal copy left by the run: {c}" for c in rehearsal_copies(work)]
    new = sorted(set(reports.rglob("*.ipynb")) - before)
    if len(new) != 1:
        problems.append(f"{len(new)} records for the killed run")
    else:
        meta = nbformat.read(str(new[0]), as_version=4).metadata.get("swrun", {})
        outcome = meta.get("outcome")
        # swrun killed: the placeholder (incomplete), unless the kill landed after the finished
        # record was written (its index entry then checked by the final `reports verify`)
        wanted = {"incomplete"} if (killed and victim == "swrun" and not meta.get("finished")) else {"incomplete", "failed", "succeeded"}
        if graceful:  # SIGTERM/SIGHUP: always a finished record, and indexed
            wanted = {"interrupted", "failed", "succeeded"} if killed else {"failed", "succeeded"}
            if meta.get("run_id") not in indexed_run_ids(reports):
                problems.append(f"run {meta.get('run_id')} is not indexed")
        if outcome not in wanted:
            problems.append(f"the killed run's record says {outcome!r}")
    again = subprocess.run(argv, capture_output=True, text=True, cwd=work, timeout=300)
    if again.returncode != 0:
        problems.append(f"the next deploy failed: {again.stderr.strip().splitlines()[-1:]}")
    elif snapshot(url)["version"] != list(project.heads):
        problems.append("the next deploy did not reach head")
    left = rehearsal_copies(work)  # a killed rehearsal's copy: the next rehearsal (or the runner) removed it
    if left:
        problems.append(f"rehearsal copies left: {', '.join(left)}")
    problems += [f"partial backup left after the next deploy: {f}" for f in partial_files(work)]
    server.drop_database(name)
    sig = signal.Signals(signum).name.removeprefix("SIG")
    what = f"{sig} {victim} after {delay:.1f}s" if killed else f"finished before the {sig} ({delay:.1f}s)"
    print(f"trial {i:3d}: {what:<34} at {','.join(state['version']) or '<base>':<14} "
          f"{'ok' if not problems else 'FAILED: ' + '; '.join(problems)}", flush=True)
    return problems if problems else ([] if killed else ["__not_killed__"])


def main() -> int:
    parser = argparse.ArgumentParser(description="kill swrun or its kernel mid-deploy, check nothing is lost")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--revisions", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.3, help="seconds each revision sleeps")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--home", default=None, help="embedded server state directory (default: a temporary one)")
    parser.add_argument("--minutes", type=float, default=None, help="start no trial after this many minutes")
    parser.add_argument("--signals", default="KILL", help="signals to send, taken in turn: KILL, TERM, HUP (comma-separated)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="swrun-soak-"))
    home = Path(args.home) if args.home else work / "state"
    server = embedded.EmbeddedServer(home)
    server.start()
    ini = generate.make_project(work / "project", args.revisions, sleep=args.sleep)
    project = Project.load(ini)
    refs = references(server, project)
    print(f"soak: {args.trials} trials, {args.revisions} revisions ({args.sleep}s each), seed {seed}, in {work}", flush=True)
    signals = [getattr(signal, "SIG" + s.strip().upper().removeprefix("SIG")) for s in args.signals.split(",") if s.strip()]
    tally = {s: {"trials": 0, "kills": 0, "failures": 0} for s in signals}
    stop_at = time.time() + args.minutes * 60 if args.minutes else None
    for i in range(1, args.trials + 1):
        if stop_at and time.time() > stop_at:
            print(f"soak: the {args.minutes:g}-minute budget is spent after {i - 1} trials", flush=True)
            break
        signum = signals[(i - 1) % len(signals)]
        tally[signum]["trials"] += 1
        # the whole deploy: start-up, the rehearsal's three passes, then the upgrade itself
        problems = trial(i, server, project, ini, refs, work, rng, window=2.0 + 4 * args.revisions * args.sleep, signum=signum)
        if problems == ["__not_killed__"]:
            continue
        tally[signum]["kills"] += 1
        tally[signum]["failures"] += bool(problems)
    failures = sum(t["failures"] for t in tally.values())
    verify = subprocess.run([SWRUN, "reports", "verify", "--reports-dir", str(work / "reports")], capture_output=True, text=True)
    print(f"\nsoak summary: trials {sum(t['trials'] for t in tally.values())}, seed {seed}, failures {failures}")
    for signum, t in tally.items():
        print(f"  {signal.Signals(signum).name}: {t['trials']} trials, {t['kills']} landed mid-run, {t['failures']} failed")
    print(f"reports verify exit {verify.returncode}: {verify.stdout.strip().splitlines()[-1:] or verify.stderr.strip()[-200:]}")
    if not args.home:
        server.stop()
    return 1 if failures or verify.returncode not in (0,) else 0


if __name__ == "__main__":
    sys.exit(main())
