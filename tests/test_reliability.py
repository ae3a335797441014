"""Crashes and crowds: killed runs and concurrent deploys against one database, for real."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from conftest import HEAD, current_revision, run_cli, scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))


def test_four_deploys_at_once_apply_each_revision_once(db_url, workdir):
    argv = [sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--env", "staging", "--json",
            "--reports-dir", str(workdir / "reports")]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert all(c in (0, 9) for c in codes), [o[1][-500:] for o in outs]
    assert 0 in codes
    for (stdout, stderr), code in zip(outs, codes):
        assert "Traceback" not in stderr
        if code:
            assert "another swrun run" in stderr or "nothing to apply" in stderr, stderr[-500:]
    results = [json.loads(o[0]) for o in outs]
    applied = []
    for r in results:
        meta = nbformat.read(r["record"], as_version=4).metadata["swrun"]
        step = next((s for s in meta["steps"] if s["step"] == "upgrade"), None)
        if step and step["outcome"] == "ok":
            applied += [a["revision"] for a in step["data"]["applied"]]
    # every revision of the chain applied by exactly one of the four
    assert sorted(applied) == sorted(set(applied)) and HEAD in applied and len(applied) == 7
    assert current_revision(db_url) == HEAD
    assert len(list((workdir / "reports").rglob("*.ipynb"))) == 4
    verify = run_cli("reports", "verify", "--reports-dir", workdir / "reports", "--database-url", db_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("victim", ["swrun", "kernel"])
def test_killed_run_leaves_a_clean_database_and_a_record(victim, db_url, workdir, pg, tmp_path):
    import killed_runs
    from swrun.migrations import Project

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import generate

    ini = generate.make_project(tmp_path / "chain", 6, sleep=0.4)
    project = Project.load(ini)
    refs = killed_runs.references(pg, project)
    rng = random.Random(7 if victim == "swrun" else 8)
    rng.choice = lambda seq: victim  # this test picks the victim; the soak script draws it
    problems = killed_runs.trial(1, pg, project, ini, refs, workdir, rng)
    assert problems == [], problems
