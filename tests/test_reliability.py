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


SECRET = "Zq9-very-secret-pw%40x"  # URL-encoded '@' on purpose: the decoded form must not leak either


def test_the_password_appears_nowhere(pg, db_url, workdir):
    from urllib.parse import unquote

    plain = unquote(SECRET)
    dbname = db_url.split("?", 1)[0].rsplit("/", 1)[-1]
    scalar(db_url, f"create role leakcheck login superuser password '{plain}'; select 1")
    try:
        url = pg.status().tcp_url(database=dbname, user="leakcheck", password=SECRET)
        missing = pg.status().tcp_url(database="no_such_db", user="leakcheck", password=SECRET)
        outputs = []
        for argv in (("deploy", "--database-url", url, "--env", "staging"),
                     ("backup", "--database-url", url, "--env", "staging", "--mode", "directory-fast"),
                     ("status", "--database-url", missing),            # a failed connection's error text
                     ("deploy", "--database-url", missing, "--env", "staging"),
                     ("reports", "verify", "--database-url", url),
                     ("reports", "site"),
                     ("reports", "list", "--json")):
            proc = run_cli(*argv)
            outputs += [proc.stdout, proc.stderr]
        run_id = json.loads(outputs[-2])[0]["run_id"]
        proc = run_cli("reports", "export", run_id, "--html")
        outputs += [proc.stdout, proc.stderr]
        assert run_cli("reports", "verify", "--database-url", url).returncode == 0
        for text in outputs:
            assert plain not in text and SECRET not in text
        files = [p for p in workdir.rglob("*") if p.is_file()]
        assert any(p.suffix == ".html" for p in files) and any(p.name == "index.jsonl" for p in files)
        for path in files:
            data = path.read_bytes()
            assert plain.encode() not in data and SECRET.encode() not in data, path
        # records, index, HTML and backups are readable by their owner only
        for path in files:
            if path.suffix in (".ipynb", ".jsonl", ".html", ".dump") or path.parent.suffix == ".dumpdir":
                assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"
        # and the copy of each run in the database holds no password either
        rows = scalar(db_url, "select string_agg(entry::text, '') from swrun.run_records")
        assert rows and plain not in rows
    finally:
        scalar(db_url, "drop owned by leakcheck; drop role leakcheck; select 1")
