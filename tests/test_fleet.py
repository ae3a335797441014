"""swrun fleet: one migration set across many databases on Dask, a canary and then waves.

Real everything: databases on the embedded server, a password role per target (its URL only
in an environment variable), a LocalCluster of two worker processes, and in the second test
a `dask scheduler` and two `dask worker` processes started here. Each target runs the whole
deploy runbook (backup, rehearsal, gates, its own record).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import DEMO_DIR, HEAD, add_revision, current_revision, run_cli, scalar
from swrun import database

NEW = "9a0000000001"  # the revision the fleet deploys: users.full_name NOT NULL
BROKEN_EMAIL = "citizen.dev@smartwaste.example"


def _admin(pg, sql: str) -> None:
    eng = database.make_engine(database.normalize_url(pg.status().url()), isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        eng.dispose()


class Fleet:
    """Databases cloned from one template at the demo's head, each with its own password role."""

    def __init__(self, pg, root: Path, n: int, tag: str):
        self.pg, self.root, self.tag = pg, root, tag
        self.project = root / "smartwaste"
        shutil.copytree(DEMO_DIR, self.project, ignore=shutil.ignore_patterns("__pycache__"))
        add_revision(self.project, NEW, HEAD,
                     "op.alter_column('users', 'full_name', existing_type=sa.String(200), nullable=False)",
                     "op.alter_column('users', 'full_name', existing_type=sa.String(200), nullable=True)", slug="require_full_name")
        self.template = f"fleet_tpl_{tag}"
        url = pg.create_database(self.template)
        from swrun.config import RunContext
        from swrun.steps import upgrade

        upgrade.run(RunContext(database_url=url, project_path=str(self.project / "alembic.ini")), target=HEAD)
        self.names = [f"{tag}_db{i}" for i in range(1, n + 1)]
        self.passwords = {name: f"pw-{secrets.token_hex(8)}" for name in self.names}
        self.env: dict[str, str] = {}
        port = pg.status().port
        for i, name in enumerate(self.names, 1):
            _admin(pg, f'create database "{name}" template "{self.template}"')
            role = f"{name}_r"
            _admin(pg, f"create role \"{role}\" login superuser password '{self.passwords[name]}'")
            self.env[f"FLEET_{tag.upper()}_{i}_URL"] = (f"postgresql://{role}:{self.passwords[name]}@127.0.0.1:{port}/{name}")
        self.work = root / "work"
        self.work.mkdir()

    def url(self, i: int) -> str:
        return self.env[f"FLEET_{self.tag.upper()}_{i}_URL"]

    def write(self, wave_size, canary=1, max_failures=0, max_per_server=2) -> Path:
        lines = ["[fleet]", f'project = "{self.project / "alembic.ini"}"', 'environment = "staging"', f"canary = {canary}",
                 f"wave_size = {json.dumps(wave_size)}", f"max_failures = {max_failures}", f"max_per_server = {max_per_server}", ""]
        for i, _ in enumerate(self.names, 1):
            lines += ["[[target]]", f'name = "tenant-{i}"', f'url_env = "FLEET_{self.tag.upper()}_{i}_URL"', ""]
        path = self.work / "fleet.toml"
        path.write_text("\n".join(lines))
        return path

    def cli(self, *args, timeout=420):
        return run_cli(*args, env=self.env, cwd=self.work, timeout=timeout)

    def leaks(self, *outputs: str) -> list[str]:
        found = [f"output: {pw}" for pw in self.passwords.values() for out in outputs if pw in out]
        for path in self.work.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [str(path) for pw in self.passwords.values() if pw.encode() in data]
        return found

    def drop(self) -> None:
        for name in self.names:
            self.pg.drop_database(name)
            with_suppressed(_admin, self.pg, f'drop role if exists "{name}_r"')
        self.pg.drop_database(self.template)


def with_suppressed(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass


def fleet_record(work: Path, run: str | None = None) -> dict:
    paths = sorted((work / "reports").rglob("*_fleet_*.ipynb"), key=lambda p: p.stat().st_mtime)
    if run:
        paths = [p for p in paths if p.stem.endswith(run)]
    return json.loads(paths[-1].read_text())["metadata"]["swrun"]


def first_line(proc) -> str:
    return proc.stderr.splitlines()[0]


@pytest.fixture(scope="module")
def eight(pg, tmp_path_factory):
    fleet = Fleet(pg, tmp_path_factory.mktemp("fleet8"), 8, f"f{uuid.uuid4().hex[:6]}")
    yield fleet
    fleet.drop()


def test_fleet_file_problems_are_one_line_each_before_anything_starts(tmp_path):
    (tmp_path / "fleet.toml").write_text("\n".join([
        "[fleet]", 'environment = "staging"', "wave_size = \"25%\"", "colour = 1", "",
        "[[target]]", 'name = "a"', 'url = "postgresql://app:hunter2-secret@db1/a"', "",
        "[[target]]", 'name = "a"', 'url = "postgresql://app@db1/a2"', "",
        "[[target]]", 'name = "b"', "",
        "[[target]]", 'name = "c"', 'url_env = "SWRUN_TEST_FLEET_UNSET_VAR"', 'region = "eu"', "",
    ]))
    proc = run_cli("fleet", "deploy", "fleet.toml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith("swrun: error: fleet.toml: ") for line in lines), lines
    text = "\n".join(lines)
    for expected in ("[fleet]: unknown key 'colour'", "target 'a': url has a password in it", "target 'a': duplicate name",
                     "target 'b': neither url nor url_env", "target 'c': unknown key 'region'",
                     "target 'c': $SWRUN_TEST_FLEET_UNSET_VAR is not set"):
        assert sum(expected in line for line in lines) == 1, (expected, text)
    assert "hunter2-secret" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists()  # nothing started


def test_waves_stop_after_a_failure_and_resume_completes_the_rest(eight):
    from swrun.fleet import plan, spec

    f = eight
    # tenant-6 (second wave of three after the canary) has a user without a name: its rehearsal fails
    scalar(f.url(6), f"update users set full_name = null where email = '{BROKEN_EMAIL}' returning id")
    path = f.write(wave_size=3)
    loaded = spec.load(path, environ=f.env)
    assert [[t.name for t in w.targets] for w in plan.waves(loaded)] == [
        ["tenant-1"], ["tenant-2", "tenant-3", "tenant-4"], ["tenant-5", "tenant-6", "tenant-7"], ["tenant-8"]]

    proc = f.cli("fleet", "deploy", "fleet.toml", "--workers", "2")
    assert proc.returncode == 9, proc.stderr
    assert first_line(proc).startswith("swrun: fleet run ")
    fleet_run = first_line(proc).split()[3].rstrip(":")
    assert "Traceback" not in proc.stderr
    meta = fleet_record(f.work, fleet_run)
    by_name = {t["name"]: t for t in meta["targets"]}
    assert meta["outcome"] == "failed" and meta["message"] == "stopped after 1 failure(s)"
    assert {n: t["status"] for n, t in by_name.items()} == {
        **{f"tenant-{i}": "succeeded" for i in (1, 2, 3, 4, 5, 7)}, "tenant-6": "failed", "tenant-8": "not started"}
    assert by_name["tenant-6"]["failed_step"] == "rehearse"
    assert by_name["tenant-8"]["message"] == "not started: stopped after 1 failure(s)" and by_name["tenant-8"]["run_id"] is None
    # the canary finished before any wave started; each wave after the one before it
    assert by_name["tenant-1"]["finished"] <= min(by_name[f"tenant-{i}"]["started"] for i in (2, 3, 4))
    assert max(by_name[f"tenant-{i}"]["finished"] for i in (2, 3, 4)) <= min(by_name[f"tenant-{i}"]["started"] for i in (5, 6, 7))
    for i in range(1, 9):
        assert current_revision(f.url(i)) == (NEW if i not in (6, 8) else HEAD)
    # every target that ran has its own deploy record, written by the coordinator and indexed, tagged with the fleet run
    listed = json.loads(f.cli("reports", "list", "--fleet", fleet_run, "--json").stdout)
    deploys = {e["fleet"]["target"]: e for e in listed if e["runbook"] == "deploy"}
    assert set(deploys) == {f"tenant-{i}" for i in range(1, 8)}
    for name, e in deploys.items():
        assert e["run_id"] == by_name[name]["run_id"] and e["outcome"] == by_name[name]["status"]
        assert (f.work / "reports" / e["record"]).is_file() and by_name[name]["record"] == e["record"]
        assert e["revision_after"] == ([NEW] if name != "tenant-6" else [HEAD])
    assert [e["runbook"] for e in listed].count("fleet") == 1
    banner = json.loads(next((f.work / "reports").rglob(f"*_fleet_{fleet_run}.ipynb")).read_text())["cells"][0]["source"]
    assert "FAILED" in "".join(banner)
    verify = f.cli("reports", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the database copy of tenant-6's record is in tenant-6's own database
    verify_db = run_cli("reports", "verify", env={**f.env, "SWRUN_DATABASE_URL": f.url(6)}, cwd=f.work)
    assert verify_db.returncode == 0 and "1 index entries for this database" in verify_db.stdout, verify_db.stdout

    # fix tenant-6's row; resume: only tenant-6 and tenant-8 run
    scalar(f.url(6), f"update users set full_name = 'Dev Citizen' where email = '{BROKEN_EMAIL}' returning id")
    again = f.cli("fleet", "deploy", "fleet.toml", "--workers", "2", "--resume", fleet_run)
    assert again.returncode == 0, again.stderr
    assert first_line(again).startswith(f"swrun: fleet run {fleet_run} (resumed)")
    assert "6 already succeeded in this fleet run, skipped" in first_line(again)
    resumed = fleet_record(f.work)
    assert resumed["run_id"] != fleet_run and resumed["fleet"]["run"] == fleet_run and resumed["outcome"] == "succeeded"
    statuses = {t["name"]: t["status"] for t in resumed["targets"]}
    assert statuses == {**{f"tenant-{i}": "skipped" for i in (1, 2, 3, 4, 5, 7)}, "tenant-6": "succeeded", "tenant-8": "succeeded"}
    assert all(current_revision(f.url(i)) == NEW for i in range(1, 9))
    listed = json.loads(f.cli("reports", "list", "--fleet", fleet_run, "--json").stdout)
    per_target = [e["fleet"]["target"] for e in listed if e["runbook"] == "deploy"]
    assert sorted(per_target) == sorted([f"tenant-{i}" for i in range(1, 9)] + ["tenant-6"])  # the done ones did not run again
    assert f.cli("reports", "verify").returncode == 0

    status = f.cli("fleet", "status", "fleet.toml", "--workers", "2", "--json")
    assert status.returncode == 0, status.stderr
    assert [(r["target"], r["current"], r["pending"]) for r in json.loads(status.stdout)] == [
        (f"tenant-{i}", [NEW], 0) for i in range(1, 9)]
    assert f.leaks(proc.stdout, proc.stderr, again.stdout, again.stderr, status.stdout, status.stderr,
                   verify.stdout, verify_db.stdout) == []


def test_per_server_limit_and_wave_sizes_are_planned_on_the_coordinator():
    from swrun.fleet.plan import ServerSlots, waves
    from swrun.fleet.spec import FleetSpec, Target

    targets = [Target(f"t{i}", server="db1:5432" if i % 2 else "db2:5432") for i in range(10)]
    spec = FleetSpec(Path("f.toml"), None, "staging", canary=2, wave_size="25%", max_failures=0, max_per_server=1, targets=targets)
    assert [len(w.targets) for w in waves(spec)] == [2, 2, 2, 2, 2]  # 25% of the 8 after the canary
    slots = ServerSlots(1)
    slots.take("db1:5432")
    assert not slots.free("db1:5432") and slots.free("db2:5432")
    slots.give_back("db1:5432")
    assert slots.free("db1:5432")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_fleet_on_an_existing_dask_scheduler(pg, tmp_path):
    f = Fleet(pg, tmp_path, 2, f"s{uuid.uuid4().hex[:6]}")
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    try:
        procs.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                       "--no-dashboard"], stdout=open(logs / "scheduler.log", "wb"), stderr=subprocess.STDOUT,
                                      cwd=tmp_path))
        for i in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"],
                                          stdout=open(logs / f"worker{i}.log", "wb"), stderr=subprocess.STDOUT, cwd=tmp_path))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:  # both workers joined
            try:
                with Client(address, timeout="5s") as c:
                    if len(c.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (logs / "scheduler.log").read_text()[-2000:]
            time.sleep(0.5)
        f.write(wave_size=1)
        proc = f.cli("fleet", "deploy", "fleet.toml", "--scheduler", address)
        assert proc.returncode == 0, proc.stderr
        assert first_line(proc).startswith("swrun: fleet run ") and f"the Dask scheduler at {address} (2 worker(s))" in proc.stderr
        meta = fleet_record(f.work)
        assert [(t["name"], t["status"], t["revision_after"]) for t in meta["targets"]] == [
            ("tenant-1", "succeeded", [NEW]), ("tenant-2", "succeeded", [NEW])]
        assert all(current_revision(f.url(i)) == NEW for i in (1, 2))
        verify = f.cli("reports", "verify")
        assert verify.returncode == 0, verify.stdout
        worker_logs = "".join(p.read_text(errors="replace") for p in logs.iterdir())
        assert f.leaks(proc.stdout, proc.stderr, verify.stdout, worker_logs) == []
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        f.drop()
