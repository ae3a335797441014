"""`swrun deploy` end to end: a real kernel, a real database, records kept under reports/."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from conftest import default_sigint, HEAD, add_revision, current_revision, run_cli, scalar

PASSWORD = "Tr0ub4dor-&-3-s3cr3t"
NO_REHEARSAL = "preflight,status,preview,guards,backup,upgrade,verify"


def records_in(workdir):
    return sorted((workdir / "reports").rglob("*.ipynb"))


def meta(path):
    return nbformat.read(str(path), as_version=4).metadata["swrun"]


def kernels_left():
    """swrun kernels started under this test session's server (SWRUN_HOME): tests running in
    other workers or sessions have kernels of their own."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "ipykernel" in cmd and "swrun-kernel-" in cmd:
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("SWRUN_HOME") == os.environ.get("SWRUN_HOME"):
                    found.append(proc.pid)
    return found


def test_deploy_then_redeploy_keeps_a_record_each_time(db_url, workdir):
    first = run_cli("deploy", "--database-url", db_url, "--env", "staging", "--operator", "ops@test")
    assert first.returncode == 0, first.stderr
    for step in ("preflight", "status", "preview", "backup", "rehearse", "upgrade", "verify"):
        assert f"→ {step}" in first.stderr and f"✓ {step}" in first.stderr
    [record] = records_in(workdir)
    assert record.parent == workdir / "reports" / "staging" / record.parent.parent.name / record.parent.name
    assert record.name.endswith(f"_deploy_{meta(record)['run_id']}.ipynb")
    m = meta(record)
    assert (m["outcome"], m["revision_before"], m["revision_after"], m["operator"]) == ("succeeded", [], [HEAD], "ops@test")
    assert [s["step"] for s in m["steps"]] == ["preflight", "status", "preview", "guards", "backup", "rehearse", "upgrade", "verify",
                                               "watch"]
    assert Path(m["backup"]["file"]).exists() and len(m["backup"]["sha256"]) == 64
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    nb = nbformat.read(str(record), as_version=4)
    assert "SUCCEEDED" in nb.cells[0].source
    assert current_revision(db_url) == HEAD

    second = run_cli("deploy", "--database-url", db_url, "--env", "staging")
    assert second.returncode == 0, second.stderr
    records = records_in(workdir)
    assert len(records) == 2
    m2 = meta(next(r for r in records if r != record))
    steps = {s["step"]: s for s in m2["steps"]}
    assert steps["status"]["data"]["pending"] == [] and "up to date" in steps["status"]["summary"]
    assert steps["upgrade"]["data"]["applied"] == [] and "nothing to apply" in steps["upgrade"]["summary"]
    assert kernels_left() == []


def test_failed_migration_is_recorded_and_named(db_url, workdir, project_copy):
    add_revision(project_copy, "0badc0ffee00", HEAD, "op.execute('create table fine (id int)')", "op.execute('drop table fine')")
    add_revision(project_copy, "0badc0ffee01", "0badc0ffee00", "op.execute('select 1/0')")
    # without the rehearsal, which would stop the run before the upgrade (tests/test_rehearse.py)
    proc = run_cli("deploy", "--database-url", db_url, "--project", project_copy / "alembic.ini", "--steps", NO_REHEARSAL)
    assert proc.returncode == 9
    assert "FAILED at upgrade" in proc.stderr and "0badc0ffee01" in proc.stderr
    assert "Traceback" not in proc.stderr
    [record] = records_in(workdir)
    m = meta(record)
    assert (m["outcome"], m["failed_step"]) == ("failed", "upgrade")
    assert "0badc0ffee01" in m["message"] and "division by zero" in m["message"]
    steps = {s["step"]: s["outcome"] for s in m["steps"]}
    assert steps == {"preflight": "ok", "status": "ok", "preview": "ok", "guards": "warning", "backup": "ok", "rehearse": "skipped",
                     "upgrade": "failed", "verify": "skipped", "watch": "skipped"}
    banner = nbformat.read(str(record), as_version=4).cells[0].source
    assert "FAILED" in banner and "upgrade" in banner
    assert current_revision(db_url) == "0badc0ffee00"


def test_password_never_reaches_reports_or_terminal(pg, db_url, workdir):
    dbname = db_url.split("/")[3].split("?")[0]
    scalar(db_url, f"create role deployer login superuser password '{PASSWORD}'; select 1")
    try:
        url = pg.status().tcp_url(database=dbname, user="deployer", password=PASSWORD)
        # production deploys only a migration set staging has run (the guards' staging gate)
        staging = run_cli("deploy", "--database-url", url, "--env", "staging")
        assert staging.returncode == 0, staging.stderr
        proc = run_cli("deploy", "--database-url", url, "--env", "production")
        assert proc.returncode == 0, proc.stderr
        bad = run_cli("deploy", "--database-url", url.replace(PASSWORD, PASSWORD + "x"), "--env", "production")
        assert bad.returncode != 0
        assert current_revision(db_url) == HEAD
        leaks = [p for p in workdir.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
        assert leaks == []
        for out in (staging.stdout, staging.stderr, proc.stdout, proc.stderr, bad.stdout, bad.stderr):
            assert PASSWORD not in out
        assert "***" in proc.stderr and "***" in staging.stderr
    finally:
        scalar(db_url, "drop owned by deployer; drop role deployer; select 1")


def test_production_needs_the_backup_step(db_url, workdir):
    proc = run_cli("deploy", "--database-url", db_url, "--env", "production", "--steps", "status,upgrade")
    assert proc.returncode == 9 and "verified backup" in proc.stderr
    assert current_revision(db_url) is None
    assert meta(records_in(workdir)[0])["failed_step"] == "upgrade"


def test_structured_results_are_readable_without_html(db_url, workdir):
    proc = run_cli("upgrade", "--database-url", db_url, "--json")
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    m = meta(Path(outcome["record"]))
    applied = next(s for s in m["steps"] if s["step"] == "upgrade")["data"]["applied"]
    assert [a["revision"] for a in applied][-1] == HEAD and all(a["seconds"] >= 0 for a in applied)
    assert set(outcome["timings"]) >= {"kernel_start", "total", "step:upgrade"}


def test_ctrl_c_stops_the_kernel_and_keeps_the_record(db_url, workdir, project_copy):
    add_revision(project_copy, "510e00000000", HEAD, "op.execute('select pg_sleep(30)')")
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--project",
                             str(project_copy / "alembic.ini"), "--steps", NO_REHEARSAL], stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "→ upgrade" in line:
            break
    time.sleep(2.0)  # inside the sleeping revision
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, "".join(lines) + rest
    assert "INTERRUPTED" in rest
    [record] = records_in(workdir)
    assert meta(record)["outcome"] == "interrupted"
    deadline = time.time() + 10
    while kernels_left() and time.time() < deadline:
        time.sleep(0.2)
    assert kernels_left() == []
    # killed mid-revision: the database stays at the last committed boundary
    assert current_revision(db_url) == HEAD


def test_kernel_that_does_not_start_is_one_line(db_url, workdir, tmp_path):
    # an ipykernel that cannot load: the kernel process exits before its first cell
    broken = tmp_path / "broken" / "ipykernel"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this ipykernel is broken')\n")
    proc = run_cli("deploy", "--database-url", db_url, env={"PYTHONPATH": str(broken.parent)})
    assert proc.returncode == 9, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "swrun: error: the python3 kernel did not start (exit code 1: ImportError: this ipykernel is broken)", last
    assert "Traceback" not in proc.stderr  # the kernel's own output went to its log, quoted in one line
    [record] = records_in(workdir)  # the attempt is on record: nothing ran
    m = meta(record)
    assert m["outcome"] == "failed" and m["steps"] == [] and "did not start" in m["message"]
    assert current_revision(db_url) is None


def test_kernel_traffic_is_not_tcp(db_url, workdir):
    proc = run_cli("backup", "--database-url", db_url)
    assert proc.returncode == 0, proc.stderr
    assert "without encryption" not in proc.stderr and "TCP" not in proc.stderr
