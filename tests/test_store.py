"""The record store: the index and its hash chain, the database copy, `swrun reports ...`, tampering.

A real store is made once per module by three real runs against a real database
(staging deploys, a production run fails at a production gate, production checks and backs
up); each
test works on its own copy of that reports directory, so tampering stays local. The
database copies are the real ones the runner wrote.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from conftest import HEAD, run_cli, scalar
from swrun import audit, database, store

KEY = "correct horse battery staple"


@dataclass
class Kept:
    root: Path
    reports: Path
    url: str
    ids: dict  # name -> run id: staging, failed, production


def runs_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in (store.KEY_ENV, "SWRUN_DATABASE_URL")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def kept(pg, tmp_path_factory):
    root = tmp_path_factory.mktemp("kept")
    name = f"t_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    env = runs_env()
    ids = {}
    for label, args in (
        ("staging", ["deploy", "--env", "staging", "--operator", "alice@ops"]),
        ("failed", ["deploy", "--env", "production", "--operator", "bob@ops", "--steps", "status,upgrade"]),
        # nothing is pending by now: status and a verified backup make a successful production run
        ("production", ["deploy", "--env", "production", "--operator", "carol@ops", "--steps", "preflight,status,backup"]),
    ):
        proc = run_cli(*args, "--database-url", url, "--json", cwd=root, env=env)
        assert proc.returncode == (9 if label == "failed" else 0), proc.stderr
        ids[label] = json.loads(proc.stdout)["run_id"]
    yield Kept(root, root / "reports", url, ids)
    pg.drop_database(name)


@pytest.fixture
def reports(kept, tmp_path):
    """A private copy of the kept store, to tamper with."""
    dest = tmp_path / "reports"
    shutil.copytree(kept.reports, dest)
    return dest


def lines_of(reports: Path) -> list[str]:
    return store.index_path(reports).read_text().splitlines()


def write_lines(reports: Path, lines: list[str]) -> None:
    store.index_path(reports).write_text("\n".join(lines) + "\n")


def verify(reports: Path, *extra, env=None):
    return run_cli("reports", "verify", "--reports-dir", reports, *extra, env=runs_env(**(env or {})))


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return errors[0]


# -- what the runner keeps ----------------------------------------------------------------------

def test_every_run_is_indexed_chained_and_copied_to_the_database(kept):
    index = store.read_index(kept.reports)
    assert index.problems == []
    entries = index.entries
    assert [e["run_id"] for e in entries] == [kept.ids["staging"], kept.ids["failed"], kept.ids["production"]]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev"] == store.GENESIS
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    first, failed, prod = entries
    assert (first["environment"], first["operator"], first["outcome"], first["revision_before"], first["revision_after"]) == (
        "staging", "alice@ops", "succeeded", [], [HEAD])
    assert (failed["outcome"], failed["failed_step"], failed["backup"]) == ("failed", "upgrade", None)
    assert prod["backup"]["sha256"] and Path(prod["backup"]["file"]).exists()
    assert first["fingerprint"] == prod["fingerprint"] and len(first["fingerprint"]) == 64
    dbname = kept.url.split("?")[0].rsplit("/", 1)[-1]
    assert first["database"]["database"] == dbname and first["database"]["port"] > 0 and "password" not in first["database"]
    for e in entries:
        record = kept.reports / e["record"]
        assert store.file_sha256(record) == e["record_sha256"]
        assert nbformat.read(str(record), as_version=4).metadata["swrun"]["run_id"] == e["run_id"]
        assert e["hash"] == store.entry_hash(e) and "mac" not in e

    # the same entries, in the run's database, in the swrun schema
    rows = scalar(kept.url, "select json_agg(entry order by seq) from swrun.run_records")
    assert rows == [store.public(e) for e in entries]

    # owner-only: index, lock, records and their directories
    assert oct(store.index_path(kept.reports).stat().st_mode & 0o777) == "0o600"
    for path in kept.reports.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_a_clean_store_verifies_against_files_and_database(kept, tmp_path):
    proc = verify(kept.reports, "--database-url", kept.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 entries, 3 record files hashed" in proc.stdout
    assert "chain unsigned" in proc.stdout
    assert "3 index entries for this database, 3 rows in swrun.run_records" in proc.stdout
    assert "verified: no problems" in proc.stdout
    # the URL may come from the environment too; without any, the embedded server's database (the
    # default of every other command) is checked: it holds none of these runs
    assert "3 rows" in verify(kept.reports, env={"SWRUN_DATABASE_URL": kept.url}).stdout
    bare = verify(kept.reports)
    assert bare.returncode == 0 and "/swrun: no runs recorded for this database" in bare.stdout, bare.stdout
    # with no embedded server in the state directory either, the copy is not checked and says so
    none = verify(kept.reports, env={"SWRUN_HOME": str(tmp_path / "no-server")})
    assert none.returncode == 0 and "database copy: not checked" in none.stdout, none.stdout


def test_list_filters_and_json(kept):
    def listed(*args):
        proc = run_cli("reports", "list", "--reports-dir", kept.reports, *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    table = listed()
    assert table.splitlines()[0].split()[:2] == ["run", "started"]
    assert all(run_id in table for run_id in kept.ids.values())
    assert "failed at upgrade" in table and f"<base> -> {HEAD}" in table
    assert kept.ids["staging"] in listed("--env", "staging") and kept.ids["production"] not in listed("--env", "staging")
    only_failed = listed("--outcome", "failed")
    assert kept.ids["failed"] in only_failed and kept.ids["staging"] not in only_failed
    assert kept.ids["staging"] in listed("--revision", HEAD[:6])
    assert kept.ids["staging"] not in listed("--since", "2999-01-01")
    assert kept.ids["staging"] in listed("--since", "2000-01-01", "--until", "2999-12-31")
    assert kept.ids["staging"] not in listed("--until", "2001-01-01")
    data = json.loads(listed("--json", "--env", "production"))
    assert [d["run_id"] for d in data] == [kept.ids["failed"], kept.ids["production"]]
    assert {"hash", "prev", "record", "record_sha256", "database", "fingerprint"} <= set(data[0])
    bad = run_cli("reports", "list", "--reports-dir", kept.reports, "--since", "yesterday")
    assert bad.returncode == 2 and "cannot read the time 'yesterday'" in one_error_line(bad)


def test_show_by_prefix(kept):
    run_id = kept.ids["failed"]
    proc = run_cli("reports", "show", run_id[:5], "--reports-dir", kept.reports)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"run          {run_id}  (deploy, production)" in out
    assert "FAILED at upgrade" in out and "bob@ops" in out and "(matches the index)" in out
    assert "message      production requires" in out  # the gate's message, read from the record
    assert "upgrade    blocked" in out  # the steps, read from the record


def test_show_names_an_edited_record(reports, kept):
    entry = store.read_index(reports).entries[0]
    with open(reports / entry["record"], "a") as fh:
        fh.write(" ")
    proc = run_cli("reports", "show", kept.ids["staging"], "--reports-dir", reports)
    assert proc.returncode == 0 and "DIFFERS from the index" in proc.stdout


# -- tampering: edit, delete, reorder, insert --------------------------------------------------------

def test_edited_record_file_is_named(reports, kept):
    entry = store.read_index(reports).entries[1]
    record = reports / entry["record"]
    edited = json.loads(record.read_text())
    assert edited["metadata"]["swrun"]["outcome"] == "failed"
    edited["metadata"]["swrun"]["outcome"] = "succeeded"
    record.write_text(json.dumps(edited, indent=1))
    proc = verify(reports, "--database-url", kept.url)
    assert proc.returncode == 1
    assert f"record-edited: run {kept.ids['failed']} (line 2): record file {entry['record']} was edited" in proc.stdout
    assert kept.ids["staging"] not in proc.stdout.split("problem(s):")[1]
    assert one_error_line(proc).startswith("swrun: error: verification failed: 1 problem(s)")


def test_edited_index_entry_is_named_and_disagrees_with_the_database(reports, kept):
    lines = lines_of(reports)
    lines[1] = lines[1].replace('"outcome":"failed"', '"outcome":"succeeded"')
    write_lines(reports, lines)
    proc = verify(reports, "--database-url", kept.url)
    assert proc.returncode == 1
    assert f"edited: run {kept.ids['failed']} (line 2): the index entry was edited" in proc.stdout
    assert f"db-differs: run {kept.ids['failed']} (line 2): the database copy differs in outcome" in proc.stdout

    # rewriting the entry's hash too moves the break to the next link, which names both runs
    entry = json.loads(lines[1])
    entry["hash"] = store.entry_hash(entry)
    lines[1] = json.dumps(entry)
    write_lines(reports, lines)
    proc = verify(reports)
    assert proc.returncode == 1
    assert (f"broken-link: run {kept.ids['production']} (line 3): the entry it chains to" in proc.stdout
            and f"run {kept.ids['failed']} (line 2) before it was rewritten (its hash changed)" in proc.stdout)


def test_deleted_record_file_is_named(reports, kept):
    entry = store.read_index(reports).entries[2]
    (reports / entry["record"]).unlink()
    proc = verify(reports)
    assert proc.returncode == 1
    assert f"record-deleted: run {kept.ids['production']} (line 3): record file {entry['record']} was deleted" in proc.stdout


def test_deleted_index_entry_is_named(reports, kept):
    lines = lines_of(reports)
    del lines[1]
    write_lines(reports, lines)
    proc = verify(reports, "--database-url", kept.url)
    assert proc.returncode == 1
    out = proc.stdout
    gone = kept.ids["failed"]
    assert (f"broken-link: run {kept.ids['production']} (line 2): the entry it chains to" in out
            and f"entry 2 of the chain, between it and run {kept.ids['staging']} (line 1), was deleted" in out)
    assert "unindexed: record file" in out and f"_{gone}.ipynb is not in the index" in out  # its record, left behind
    assert f"deleted: run {gone} (production," in out and "is in the database copy but not in the index" in out


def test_deleted_last_entry_is_named(reports, kept):
    """Truncating the chain leaves every link intact: the record file and the database copy name it."""
    write_lines(reports, lines_of(reports)[:-1])
    proc = verify(reports, "--database-url", kept.url)
    assert proc.returncode == 1
    gone = kept.ids["production"]
    assert f"_{gone}.ipynb is not in the index" in proc.stdout
    assert f"deleted: run {gone} (production," in proc.stdout


def test_reordered_entries_are_named(reports, kept):
    lines = lines_of(reports)
    lines[0], lines[1] = lines[1], lines[0]
    write_lines(reports, lines)
    proc = verify(reports)
    assert proc.returncode == 1
    reordered = [p for p in proc.stdout.splitlines() if p.strip().startswith("reordered:")]
    assert len(reordered) == 1, proc.stdout
    text = reordered[0]
    assert kept.ids["staging"] in text and kept.ids["failed"] in text
    assert "edited" not in proc.stdout and "deleted" not in proc.stdout


def test_inserted_entry_is_named(reports, kept):
    lines = lines_of(reports)
    first = json.loads(lines[0])
    forged_id = "f0f0f0f0f0f0"
    forged = dict(first, run_id=forged_id, operator="mallory", prev=first["hash"], seq=2,
                  record=first["record"].replace(first["run_id"], forged_id))
    shutil.copy(reports / first["record"], reports / forged["record"])
    forged["hash"] = store.entry_hash(forged)  # a well-formed entry that claims to follow the first
    lines.insert(1, json.dumps(forged, sort_keys=True))
    write_lines(reports, lines)
    proc = verify(reports, "--database-url", kept.url)
    assert proc.returncode == 1
    assert f"inserted: run {forged_id} (line 2): no entry chains to it; it claims to follow run {first['run_id']} (line 1)" in proc.stdout
    assert f"db-missing: run {forged_id} (line 2): missing from the database copy" in proc.stdout
    for genuine in kept.ids.values():
        assert f"run {genuine}" not in proc.stdout.split("problem(s):")[1].replace(f"follow run {first['run_id']}", "")


def test_inserted_copy_of_a_line_is_named(reports, kept):
    lines = lines_of(reports)
    lines.append(lines[0])
    write_lines(reports, lines)
    proc = verify(reports)
    assert proc.returncode == 1
    assert f"inserted: run {kept.ids['staging']} (line 4): a copy of the entry at line 1" in proc.stdout
    assert f"duplicate: run {kept.ids['staging']} (line 4)" in proc.stdout


# -- signing ---------------------------------------------------------------------------------------

def synthetic(reports: Path, n: int, key: str | None = None, start: int = 0) -> list[dict]:
    """Index entries (with real record files) appended through the store, as the runner does."""
    out = []
    for i in range(start, start + n):
        run_id = f"{i:012x}"
        rel = f"staging/2026/01/20260101T0000{i % 60:02d}Z_deploy_{run_id}.ipynb"
        path = reports / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.v4.new_notebook(metadata={"swrun": {"run_id": run_id}})
        text = nbformat.writes(nb)
        path.write_text(text)
        meta = {"run_id": run_id, "runbook": "deploy", "environment": "staging" if i % 2 else "production",
                "operator": "ops", "host": "h", "started": f"2026-01-{1 + i % 28:02d}T00:00:00+00:00",
                "finished": f"2026-01-{1 + i % 28:02d}T00:01:00+00:00", "outcome": "succeeded",
                "revision_before": [], "revision_after": ["abc"], "identity": {"host": "h", "port": 1, "database": "d", "user": "u"}}
        out.append(store.append(reports, store.entry_body(meta, rel, store.file_sha256(path)), key))
    return out


def test_signed_chain(tmp_path):
    reports = tmp_path / "reports"
    entries = synthetic(reports, 4, key=KEY)
    assert all(e["mac"] and e["key_id"] == store.key_id(KEY) for e in entries)
    assert KEY not in store.index_path(reports).read_text()

    signed = verify(reports, env={store.KEY_ENV: KEY})
    assert signed.returncode == 0 and "chain signed: HMAC-SHA256" in signed.stdout
    unsigned = verify(reports)
    assert unsigned.returncode == 0, unsigned.stdout
    assert "chain unsigned: $SWRUN_RECORD_KEY is not set; plain sha256 hashes checked (4 entries carry a signature that was not checked)" in unsigned.stdout
    other = verify(reports, env={store.KEY_ENV: "another key"})
    assert other.returncode == 1 and f"bad-signature: run {entries[0]['run_id']} (line 1): signed with another key" in other.stdout

    # someone without the key rewrites the whole chain: the plain hashes agree again, the signatures do not
    rewritten, prev = [], store.GENESIS
    for e in store.read_index(reports).entries:
        e = store.public(e)
        if e["run_id"] == entries[1]["run_id"]:
            e["outcome"] = "failed"
        e["prev"] = prev
        e["hash"] = prev = store.entry_hash(e)
        rewritten.append(json.dumps(e))
    write_lines(reports, rewritten)
    assert verify(reports).returncode == 0  # undetectable without the key: that is what the key is for
    caught = verify(reports, env={store.KEY_ENV: KEY})
    assert caught.returncode == 1
    assert f"bad-signature: run {entries[1]['run_id']} (line 2): the signature does not match" in caught.stdout


def test_key_rejects_entries_hashed_without_it(tmp_path):
    reports = tmp_path / "reports"
    synthetic(reports, 2)
    later = synthetic(reports, 1, key=KEY, start=2)
    proc = verify(reports, env={store.KEY_ENV: KEY})
    assert proc.returncode == 1
    assert "unsigned: run 000000000000 (line 1): not signed" in proc.stdout
    assert f"run {later[0]['run_id']}" not in proc.stdout.split("problem(s):")[1]


def test_a_signed_real_run(db_url, workdir):
    proc = run_cli("backup", "--database-url", db_url, env=runs_env(**{store.KEY_ENV: KEY}))
    assert proc.returncode == 0, proc.stderr
    [entry] = store.read_index(workdir / "reports").entries
    assert entry["key_id"] == store.key_id(KEY) and entry["mac"] == store.entry_mac(entry, KEY)
    assert entry["revision_before"] is None  # a backup run does not look at the revision
    assert verify(workdir / "reports", "--database-url", db_url, env={store.KEY_ENV: KEY}).returncode == 0


# -- concurrency and torn writes --------------------------------------------------------------------

APPENDER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from swrun import store
from test_store import synthetic_bodies
reports = Path({reports!r})
bodies = synthetic_bodies(reports, {n}, start={start})
while not (reports / "go").exists():
    time.sleep(0.001)
for body in bodies:
    store.append(reports, body)
"""


def synthetic_bodies(reports: Path, n: int, start: int = 0) -> list[dict]:
    bodies = []
    for i in range(start, start + n):
        rel = f"bench/{i:012x}.ipynb"
        (reports / rel).parent.mkdir(parents=True, exist_ok=True)
        text = nbformat.writes(nbformat.v4.new_notebook(metadata={"swrun": {"run_id": f"{i:012x}"}}))
        (reports / rel).write_text(text)
        bodies.append(store.entry_body({"run_id": f"{i:012x}", "environment": "staging", "outcome": "succeeded"}, rel,
                                       store.file_sha256(reports / rel)))
    return bodies


def test_concurrent_appends_keep_one_chain(tmp_path):
    """Runs finishing at the same moment: three processes append as fast as they can, all at once."""
    reports = tmp_path / "reports"
    reports.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER.format(tests=str(Path(__file__).parent), reports=str(reports),
                                                                      n=400, start=k * 1000)])
             for k in range(3)]
    time.sleep(1.5)  # let them all get to the starting line
    (reports / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    (reports / "go").unlink()
    index = store.read_index(reports)
    assert index.problems == [] and len(index.entries) == 1200
    assert [e["seq"] for e in index.entries] == list(range(1, 1201))
    report = store.verify(reports)
    assert report.ok, [str(p) for p in report.problems][:5]


def test_a_torn_last_line_stays_a_line_of_its_own(tmp_path):
    reports = tmp_path / "reports"
    first = synthetic(reports, 1)[0]
    with open(store.index_path(reports), "a") as fh:
        fh.write('{"run_id": "half-writ')
    second = synthetic(reports, 1, start=1)[0]
    assert second["prev"] == first["hash"]
    report = store.verify(reports)
    assert [p.kind for p in report.problems] == ["corrupt"] and report.problems[0].line == 2


# -- the database copy ---------------------------------------------------------------------------

def test_unreachable_database_still_indexes_and_warns(pg, tmp_path):
    """The database is not there when the run finishes: the index has the run, the terminal says so,
    and verify reports it missing from the database once the database exists."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    url = pg.status().url(name)  # not created yet
    proc = run_cli("run", "audit", "--database-url", url, cwd=tmp_path, env=runs_env())
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("swrun: warning:")]
    assert len(warning) == 1 and "was indexed but not recorded in the database" in warning[0]
    assert f"database {name!r} does not exist" in warning[0]
    [entry] = store.read_index(tmp_path / "reports").entries
    pg.create_database(name)
    try:
        check = verify(tmp_path / "reports", "--database-url", url)
        assert check.returncode == 1
        assert f"db-missing: run {entry['run_id']} (line 1): missing from the database copy" in check.stdout
    finally:
        pg.drop_database(name)


def test_alembic_autogenerate_leaves_the_copy_alone(kept):
    """The copy lives in its own schema, which autogenerate does not compare: no migration would drop it."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from swrun.demo.smartwaste import models

    assert scalar(kept.url, "select to_regclass('swrun.run_records') is not null") is True
    engine = database.make_engine(database.normalize_url(kept.url))
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), models.metadata)
    finally:
        engine.dispose()
    assert not [d for d in diffs if "run_records" in repr(d) or "swrun" in repr(d)], diffs


# -- bad input -------------------------------------------------------------------------------------

def test_corrupted_index_line(reports, kept):
    lines = lines_of(reports)
    lines[1] = lines[1][: len(lines[1]) // 2]
    write_lines(reports, lines)
    proc = run_cli("reports", "list", "--reports-dir", reports)
    assert proc.returncode == 1
    assert kept.ids["staging"] in proc.stdout and kept.ids["production"] in proc.stdout
    line = one_error_line(proc)
    assert "line 2 is not a valid index entry: not JSON" in line and "the other 2 entries were read" in line
    ver = verify(reports)
    assert ver.returncode == 1
    assert "3 record files hashed" not in ver.stdout and "2 entries, 2 record files hashed" in ver.stdout
    assert f"chain: run {kept.ids['production']} (line 3): chains to an entry that cannot be read (line 2 is corrupt)" in ver.stdout
    assert f"_{kept.ids['failed']}.ipynb is not in the index" in ver.stdout
    assert kept.ids["staging"] not in ver.stdout.split("problem(s):")[1]
    assert run_cli("reports", "show", kept.ids["staging"], "--reports-dir", reports).returncode == 0


def test_record_that_is_not_a_notebook(reports, kept):
    entry = store.read_index(reports).entries[0]
    (reports / entry["record"]).write_text("this is not a notebook")
    show = run_cli("reports", "show", kept.ids["staging"], "--reports-dir", reports)
    assert show.returncode == 1 and "alice@ops" in show.stdout
    assert "is not a notebook" in one_error_line(show)
    export = run_cli("reports", "export", kept.ids["staging"], "--html", "--reports-dir", reports)
    assert export.returncode == 1 and "is not a notebook" in one_error_line(export)
    ver = verify(reports)
    assert ver.returncode == 1 and f"record-edited: run {kept.ids['staging']} (line 1)" in ver.stdout
    assert "3 record files hashed" in ver.stdout
    assert run_cli("reports", "show", kept.ids["production"], "--reports-dir", reports).returncode == 0


@pytest.mark.parametrize("action", [["list"], ["show", "abc"], ["export", "abc"], ["verify"], ["site"]])
def test_missing_reports_directory(action, tmp_path):
    proc = run_cli("reports", *action, "--reports-dir", tmp_path / "nowhere")
    assert proc.returncode == 2
    assert f"no reports directory at {tmp_path / 'nowhere'}" in one_error_line(proc)


@pytest.mark.parametrize("action", ["show", "export"])
def test_unknown_run_id(action, kept):
    proc = run_cli("reports", action, "0123456789ab", "--reports-dir", kept.reports)
    assert proc.returncode == 2
    assert "no run '0123456789ab' in the index" in one_error_line(proc)


def test_ambiguous_prefix(tmp_path):
    reports = tmp_path / "reports"
    synthetic(reports, 3)
    with pytest.raises(store.UsageError, match="ambiguous"):
        store.find(store.read_index(reports).entries, "0000000000")
    assert store.find(store.read_index(reports).entries, "000000000002")["seq"] == 3


def test_an_empty_store_lists_nothing(tmp_path):
    (tmp_path / "reports").mkdir()
    proc = run_cli("reports", "list", "--reports-dir", tmp_path / "reports")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert verify(tmp_path / "reports").returncode == 0


# -- HTML export ---------------------------------------------------------------------------------

def test_export_html_shows_inputs_and_outputs(reports, kept, tmp_path):
    run_id = kept.ids["staging"]
    proc = run_cli("reports", "export", run_id[:6], "--html", "--reports-dir", reports)
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.stdout.strip())
    entry = store.find(store.read_index(reports).entries, run_id)
    assert out == (reports / entry["record"]).with_suffix(".html")
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    page = out.read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert run_id in text and "SUCCEEDED" in text
    assert 'upgrade = rb.run("upgrade")' in text  # inputs
    assert "4/4 checks passed" in text  # outputs (verify no longer has a "single head" check)
    assert '<script src="http' not in page and "script-src 'none'" in page
    elsewhere = run_cli("reports", "export", run_id, "--reports-dir", reports, "--out", tmp_path / "out" / "x.html")
    assert elsewhere.returncode == 0 and (tmp_path / "out" / "x.html").exists()
    assert (tmp_path / "out").stat().st_mode & 0o077 == 0


# -- the audit notebook ------------------------------------------------------------------------

def test_audit_runbook(reports, kept, tmp_path):
    proc = run_cli("run", "audit", "--reports-dir", reports, "--database-url", kept.url, "--operator", "auditor",
                   "-p", "period", "day", "--json", cwd=tmp_path, env=runs_env())
    assert proc.returncode == 0, proc.stderr
    record = Path(json.loads(proc.stdout)["record"])
    assert record.is_relative_to(reports)
    nb = nbformat.read(str(record), as_version=4)
    outputs = {tag: c.outputs for c in nb.cells if c.cell_type == "code" for tag in c.metadata.get("tags", [])}
    assert not any(o.output_type == "error" for outs in outputs.values() for o in outs)
    text = {tag: "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outs) for tag, outs in outputs.items()}
    assert "(none)" in text["integrity"] and "3 index entries for this database" in text["integrity"]  # no problem
    assert "production" in text["per-period"] and "staging" in text["per-period"]
    assert any("image/png" in o.get("data", {}) for o in outputs["plot"])
    assert kept.ids["failed"] in text["failures"] and kept.ids["staging"] not in text["failures"]
    assert "alice@ops" in text["operators"] and "bob@ops" in text["operators"]
    assert kept.ids["staging"] in text["staging-to-production"] and kept.ids["production"] in text["staging-to-production"]
    # the audit run is a record like any other: indexed, verifiable
    last = store.read_index(reports).entries[-1]
    assert (last["runbook"], last["operator"], last["environment"]) == ("audit", "auditor", "development")
    assert verify(reports, "--database-url", kept.url).returncode == 0


def test_staging_to_production_lead_time(tmp_path):
    reports = tmp_path / "reports"
    rows = [("s1", "staging", "2026-03-01T10:00:00+00:00", "A", "succeeded"),
            ("p0", "production", "2026-02-01T10:00:00+00:00", "A", "succeeded"),  # before staging: not counted
            ("s2", "staging", "2026-03-01T12:00:00+00:00", "A", "succeeded"),
            ("p1", "production", "2026-03-02T16:00:00+00:00", "A", "failed"),
            ("p2", "production", "2026-03-03T10:00:00+00:00", "A", "succeeded"),
            ("s3", "staging", "2026-03-05T10:00:00+00:00", "B", "succeeded"),
            ("p3", "production", "2026-03-06T10:00:00+00:00", "C", "succeeded")]
    for run_id, env, started, fp, outcome in rows:
        meta = {"run_id": run_id, "runbook": "deploy", "environment": env, "operator": f"op-{env}", "started": started,
                "finished": started, "outcome": outcome, "fingerprint": fp * 64, "revision_before": [], "revision_after": [fp.lower()]}
        store.append(reports, store.entry_body(meta, f"{run_id}.ipynb", "0" * 64))
    df = audit.load(reports)
    lead = audit.staging_to_production(df).set_index("fingerprint")
    assert (lead.loc["A" * 12, "staging_run"], lead.loc["A" * 12, "production_run"], lead.loc["A" * 12, "hours"]) == ("s1", "p2", 48.0)
    assert lead.loc["B" * 12, "note"] == "not yet in production"
    assert lead.loc["C" * 12, "note"] == "production without a staging run"
    assert list(audit.failures(df)["run_id"]) == ["p1"]
    per_day = audit.per_period(df, "month")
    assert per_day.loc["2026-03", "production"] == 3 and per_day.loc["2026-02", "production"] == 1
    ops = audit.operators(df).set_index("operator")
    assert ops.loc["op-production", "runs"] == 4 and ops.loc["op-production", "failed"] == 1
    assert list(audit.load(reports, environments="staging", since="2026-03-02")["run_id"]) == ["s3"]
    assert audit.plot(df, "week").axes[0].get_title() == "deployments per week"


# -- odd files: the store reads only its own regular files, never blocks ------------------------

@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_index_that_is_not_a_file_is_one_line(tmp_path, kind):
    reports = tmp_path / "reports"
    reports.mkdir()
    index = store.index_path(reports)
    os.mkdir(index) if kind == "directory" else os.mkfifo(index)
    for argv in (("reports", "list"), ("reports", "verify")):
        proc = run_cli(*argv, "--reports-dir", reports, timeout=30)  # a FIFO opened for reading would hang
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"swrun: error: {index} is not a regular file ({'a directory' if kind == 'directory' else 'a FIFO'}) "
            "(swrun keeps only regular files there)"]
    with pytest.raises(store.StoreError):
        store.append(reports, {"run_id": "x"})


def test_verify_reads_nothing_outside_the_reports_directory(tmp_path):
    reports = tmp_path / "reports"
    entries = synthetic(reports, 3)
    outside = tmp_path / "elsewhere.ipynb"
    first, second = (store.record_file(reports, e) for e in entries[:2])
    shutil.move(first, outside)
    first.symlink_to(outside)  # a record replaced by a link out of the reports directory
    second.unlink()
    os.mkfifo(second)  # a record replaced by a FIFO: reading it would hang
    stray = reports / "staging" / "2026" / "01" / "20260101T000000Z_deploy_fifo.ipynb"
    os.mkfifo(stray)  # not indexed, not a file: not read either
    proc = run_cli("reports", "verify", "--reports-dir", reports, timeout=30)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"record-unreadable: run {entries[0]['run_id']} (line 1): record file {entries[0]['record']}: " in proc.stdout
    assert "is a symbolic link" in proc.stdout and "not a regular file (a FIFO)" in proc.stdout
    assert "fifo.ipynb" not in proc.stdout


def test_an_entry_whose_record_could_not_be_written_verifies_with_a_note(tmp_path):
    reports = tmp_path / "reports"
    meta = {"run_id": "r1", "runbook": "deploy", "environment": "staging", "outcome": "succeeded",
            "revision_after": [HEAD], "identity": {}}
    store.append(reports, store.entry_body(meta, "staging/2026/01/20260101T000000Z_deploy_r1.ipynb", "0" * 64,
                                           missing="No space left on device"))
    proc = run_cli("reports", "verify", "--reports-dir", reports)
    assert proc.returncode == 0, proc.stdout
    assert "run r1 (line 1): its record could not be written (No space left on device)" in proc.stdout
