"""`swrun fleet deploy` against a serial loop of `swrun deploy` and one of plain `alembic upgrade head`.

N fresh databases per side on one embedded PostgreSQL (the demo, 7 revisions from an empty
database), in one run: the plain loop, then the serial `swrun deploy` loop, then the fleet
(canary 1, then waves), then the plain loop again (its median covers both passes, so a
machine that got busier in between shows up in it). Prints the wall times, the speed-up of
the fleet over the serial loop, what swrun adds per target over plain Alembic, and what the
fleet adds per target over the runbook itself (Dask hand-off, the coordinator's write and
index of the record) and once per run (cluster start, the fleet record).

    python benchmarks/fleet.py              # N = 40
    python benchmarks/fleet.py --n 10 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from swrun import embedded
from swrun.migrations import DEMO_INI

BIN = Path(sys.executable).parent
SWRUN, ALEMBIC = str(BIN / "swrun"), str(BIN / "alembic")


def sh(argv, env=None, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:200]} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc


def set_url(ini: Path, url: str) -> None:
    lines = [f"sqlalchemy.url = {url.replace('%', '%%')}" if line.startswith("sqlalchemy.url") else line
             for line in ini.read_text().splitlines()]
    ini.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="databases per side (default 40)")
    ap.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: swrun's, up to 4)")
    ap.add_argument("--wave-size", default="25%")
    ap.add_argument("--home", default=os.environ.get("SWRUN_BENCH_HOME", str(Path.home() / ".swrun-bench")))
    args = ap.parse_args()
    server = embedded.EmbeddedServer(Path(args.home))
    status = server.start()
    env = {**os.environ, "SWRUN_HOME": str(Path(args.home))}
    work = Path(tempfile.mkdtemp(prefix="swrun-bench-fleet-"))
    tag = uuid.uuid4().hex[:6]
    created: list[str] = []

    def fresh(side: str, i: int) -> str:
        name = f"bf_{tag}_{side}_{i}"
        created.append(name)
        return server.create_database(name)

    plain_dir = work / "plain"
    shutil.copytree(DEMO_INI.parent, plain_dir, ignore=shutil.ignore_patterns("__pycache__"))
    plain_ini = plain_dir / "alembic.ini"
    times: dict[str, list[float]] = {"plain": [], "swrun": []}
    try:
        def plain_pass(label: str) -> float:
            t_all = time.perf_counter()
            for i in range(args.n):
                url = fresh(f"p{label}", i)
                set_url(plain_ini, url.replace("postgresql://", "postgresql+psycopg2://"))
                t0 = time.perf_counter()
                sh([ALEMBIC, "-c", plain_ini, "upgrade", "head"], env=env)
                times["plain"].append(time.perf_counter() - t0)
            return time.perf_counter() - t_all

        print(f"swrun fleet benchmark: N={args.n} databases per side on one embedded PostgreSQL {status.version}, "
              f"{os.cpu_count()} CPU(s); the machine may be shared (numbers are noisy)", flush=True)
        wall = {"plain (1st pass)": plain_pass("a")}
        serial_dir = work / "serial"
        serial_dir.mkdir()
        t_all = time.perf_counter()
        for i in range(args.n):
            url = fresh("s", i)
            t0 = time.perf_counter()
            sh([SWRUN, "deploy", "--database-url", url, "--env", "staging"], env=env, cwd=serial_dir)
            times["swrun"].append(time.perf_counter() - t0)
        wall["swrun deploy, serial"] = time.perf_counter() - t_all
        print(f"  serial swrun deploy loop done: {wall['swrun deploy, serial']:.1f}s", flush=True)

        fleet_dir = work / "fleet"
        fleet_dir.mkdir()
        lines = ["[fleet]", 'environment = "staging"', "canary = 1", f"wave_size = {json.dumps(args.wave_size)}",
                 f"max_failures = 0", f"max_per_server = {max(2, args.workers or 4)}", ""]
        for i in range(args.n):
            lines += ["[[target]]", f'name = "tenant-{i:03d}"', f'url = "{fresh("f", i)}"', ""]
        (fleet_dir / "fleet.toml").write_text("\n".join(lines))
        argv = [SWRUN, "fleet", "deploy", "fleet.toml"] + (["--workers", str(args.workers)] if args.workers else [])
        t0 = time.perf_counter()
        proc = sh(argv, env=env, cwd=fleet_dir)
        wall["swrun fleet deploy"] = time.perf_counter() - t0
        print("  " + proc.stderr.splitlines()[1], flush=True)
        wall["plain (2nd pass)"] = plain_pass("b")

        record = max((fleet_dir / "reports").rglob("*_fleet_*.ipynb"), key=lambda p: p.stat().st_mtime)
        meta = json.loads(record.read_text())["metadata"]["swrun"]
        targets = meta["targets"]
        assert all(t["status"] == "succeeded" for t in targets), [t for t in targets if t["status"] != "succeeded"][:2]
        # what the fleet adds per target over the runbook: coordinator-measured duration minus the run's own total
        handoff = []
        for t in targets:
            run_meta = json.loads((fleet_dir / "reports" / t["record"]).read_text())["metadata"]["swrun"]
            handoff.append(t["seconds"] - run_meta["timings"]["total"])
        span = max(t["finished"] for t in targets) - min(t["started"] for t in targets)
        fixed = wall["swrun fleet deploy"] - span
        med_plain, med_swrun = statistics.median(times["plain"]), statistics.median(times["swrun"])
        med_fleet_target = statistics.median(t["seconds"] for t in targets)

        print()
        print(f"{'side':<28}{'wall (s)':>10}{'per target (s)':>16}")
        for side, secs in wall.items():
            print(f"{side:<28}{secs:>10.1f}{secs / args.n:>16.2f}")
        print()
        print(f"speed-up, fleet vs serial swrun deploy loop:       {wall['swrun deploy, serial'] / wall['swrun fleet deploy']:.2f}x")
        print(f"fleet vs serial plain alembic loop (1st pass):     {wall['swrun fleet deploy'] / wall['plain (1st pass)']:.2f}x the time")
        print(f"median per target: plain alembic upgrade head {med_plain:.2f}s, swrun deploy {med_swrun:.2f}s "
              f"(swrun adds {med_swrun - med_plain:.2f}s: kernel, backup, rehearsal, gates, record)")
        print(f"median per target inside the fleet (submit to record kept): {med_fleet_target:.2f}s "
              f"(concurrent targets share the CPUs)")
        print(f"fleet overhead per target over the runbook (Dask hand-off, record written and indexed by the coordinator): "
              f"median {statistics.median(handoff):.3f}s, max {max(handoff):.3f}s")
        print(f"fleet overhead once per run (cluster start and stop, fleet record notebook): {fixed:.1f}s")
        return 0
    finally:
        for name in created:
            try:
                server.drop_database(name)
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
