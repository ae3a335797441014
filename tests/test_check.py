"""swrun check on real git repositories made in a temp directory: base and feature branches with
real commits, the demo's migrations, the real embedded server for the executed checks.

One repository per module and worker (each scenario a branch in its own ``git worktree``, so
the tests do not depend on each other's order); the deploy runbook runs in one test only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from swrun.check import CODES, check
from swrun.check import writers
from swrun.errors import ProjectError, UsageError
from swrun.guards import NEVER_DELETE, NEVER_MODIFY, NEVER_RENAME

from conftest import DEMO_DIR, HEAD, run_cli

VERSIONS = "proj/migrations/versions"
PARENT = "e1f2a3b4c5d6"  # the demo's head's parent
HEAD_FILE = f"{VERSIONS}/{HEAD}_add_pickup_notes.py"
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV}).stdout


def revision_file(rev: str, down: str | None, body: str, slug: str = "extra", downgrade: str = "pass") -> tuple[str, str]:
    text = (f'"""{slug}\n\nRevision ID: {rev}\nRevises: {down}\n"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    {downgrade}\n")
    return f"{VERSIONS}/{rev}_{slug}.py", text


class Repo:
    """The demo project committed on main; each scenario a branch checked out in a worktree of its own."""

    def __init__(self, root: Path):
        self.root = root / "repo"
        shutil.copytree(DEMO_DIR, self.root / "proj", ignore=shutil.ignore_patterns("__pycache__"))
        git(self.root, "init", "-q", "-b", "main")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", "the demo project")
        self.trees = root / "trees"

    def branch(self, name: str, start: str = "main") -> Path:
        tree = self.trees / name
        git(self.root, "worktree", "add", "-q", "-b", name, str(tree), start)
        return tree

    @staticmethod
    def commit(tree: Path, message: str, write: dict[str, str] | None = None, remove=(), move=()) -> None:
        for path, text in (write or {}).items():
            (tree / path).write_text(text)
        for path in remove:
            git(tree, "rm", "-q", path)
        for old, new in move:
            git(tree, "mv", old, new)
        git(tree, "add", "-A")
        git(tree, "commit", "-qm", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pg):
    return Repo(tmp_path_factory.mktemp("check"))


def codes(report) -> list[str]:
    return sorted(f.code for f in report.failing)


def one(report, code):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    return found[0]


# -- the NEVER rules against git ------------------------------------------------------------------

def test_modified_base_file_is_found_with_the_rule_and_the_line(repo):
    tree = repo.branch("modified")
    path = tree / HEAD_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(20, "# a late correction\n")
    repo.commit(tree, "edit an applied migration", {HEAD_FILE: "".join(lines)})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW101"]
    f = one(report, "SW101")
    assert (f.file, f.line, f.revision) == (HEAD_FILE, 21, HEAD)
    assert f.rule.startswith(NEVER_MODIFY) and report.exit_code == 1


def test_renamed_base_file_is_found(repo):
    tree = repo.branch("renamed")
    new = f"{VERSIONS}/{HEAD}_pickup_notes_and_route_stops.py"
    repo.commit(tree, "rename", move=[(HEAD_FILE, new)])
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW102"]
    f = one(report, "SW102")
    assert f.file == new and f.rule.startswith(NEVER_RENAME) and HEAD_FILE in f.message
    assert f.line == next(i for i, l in enumerate((tree / new).read_text().splitlines(), 1) if l.startswith("revision"))


def test_deleted_base_file_is_found(repo):
    tree = repo.branch("deleted")
    repo.commit(tree, "delete the head's file", remove=[HEAD_FILE])
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW103"]
    f = one(report, "SW103")
    assert f.file == HEAD_FILE and f.rule.startswith(NEVER_DELETE)
    # a deleted file holds no acknowledgement: any migration file of the change may, by the finding's key
    path, text = revision_file("b8b8b8b8b8b8", PARENT, "op.add_column('pickups', sa.Column('notes', sa.Text()))", "notes",
                               "op.drop_column('pickups', 'notes')")
    text = text.replace("def upgrade", "# swrun: acknowledge SW103:f7a8b9c0d1e2 it never left staging, which was rebuilt\n"
                                       "# swrun: acknowledge SW104 takes the deleted revision's place\ndef upgrade")
    repo.commit(tree, "its replacement", {path: text})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert report.exit_code == 0, [x.as_dict() for x in report.failing]
    assert one(report, "SW103").acknowledged == "it never left staging, which was rebuilt"
    assert one(report, "SW104").acknowledged == "takes the deleted revision's place"


def test_inserted_before_is_found_with_the_rewired_child(repo):
    tree = repo.branch("inserted")
    path, text = revision_file("aa11bb22cc33", PARENT, "op.add_column('bins', sa.Column('colour', sa.Text()))",
                               downgrade="op.drop_column('bins', 'colour')")
    head_text = (tree / HEAD_FILE).read_text().replace(f'= "{PARENT}"', '= "aa11bb22cc33"')
    repo.commit(tree, "a revision under the head", {path: text, HEAD_FILE: head_text})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW101", "SW104"]
    f = one(report, "SW104")
    assert f.file == path and f.line == 10 and HEAD in f.message and f"'{HEAD}'" in f.fix


# -- heads after the merge ----------------------------------------------------------------------

def test_two_branches_on_the_same_parent_leave_two_heads_after_the_merge(repo):
    first = repo.branch("first-pr")
    p1, t1 = revision_file("a1a1a1a1a1a1", HEAD, "op.add_column('bins', sa.Column('a', sa.Text()))", "first",
                           "op.drop_column('bins', 'a')")
    repo.commit(first, "first pull request", {p1: t1})
    git(repo.root, "branch", "trunk", "first-pr")  # the first pull request merged: the trunk moved on
    second = repo.branch("second-pr", "main")  # branched before it merged
    p2, t2 = revision_file("b2b2b2b2b2b2", HEAD, "op.add_column('bins', sa.Column('b', sa.Text()))", "second",
                           "op.drop_column('bins', 'b')")
    repo.commit(second, "second pull request", {p2: t2})
    alone = check(second / "proj/alembic.ini", "main", execute_chain=False)
    assert alone.exit_code == 0 and alone.heads_merged == ["b2b2b2b2b2b2"]
    report = check(second / "proj/alembic.ini", "trunk", execute_chain=False)
    assert codes(report) == ["SW201"]
    f = one(report, "SW201")
    assert report.heads_base == ["a1a1a1a1a1a1"] and report.heads_merged == ["a1a1a1a1a1a1", "b2b2b2b2b2b2"]
    assert f.file == p2 and f.line == 10
    assert f.fix.startswith("alembic merge -m 'merge heads a1a1a1a1a1a1 and b2b2b2b2b2b2' a1a1a1a1a1a1 b2b2b2b2b2b2")


# -- review and acknowledgements, the chain executed ----------------------------------------------

def test_drop_column_is_found_then_accepted_by_an_acknowledgement_with_a_reason(repo, pg):
    tree = repo.branch("drop-column")
    p1, t1 = revision_file("c3c3c3c3c3c3", HEAD, "op.add_column('pickups', sa.Column('legacy_code', sa.Text()))",
                           "add_legacy", "op.drop_column('pickups', 'legacy_code')")
    p2, t2 = revision_file("d4d4d4d4d4d4", "c3c3c3c3c3c3", "op.drop_column('pickups', 'legacy_code')", "drop_legacy",
                           "op.add_column('pickups', sa.Column('legacy_code', sa.Text()))")
    repo.commit(tree, "add, then drop a column", {p1: t1, p2: t2})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=True, run_runbook=False)
    assert codes(report) == ["SW302"], [f.as_dict() for f in report.failing]
    f = one(report, "SW302")
    assert (f.file, f.line) == (p2, 16) and "pickups.legacy_code" in f.message
    squawked = [x for x in report.findings if x.code == "SW350" and "ban-drop-column" in x.message]
    assert [(x.file, x.line, x.severity) for x in squawked] == [(p2, 16, "warning")]  # the op call behind the SQL
    assert report.new_revisions == ["c3c3c3c3c3c3", "d4d4d4d4d4d4"]
    assert report.checks["stairway"].output[1:] == ["c3c3c3c3c3c3: up, down (f7a8b9c0d1e2), up",
                                                "d4d4d4d4d4d4: up, down (c3c3c3c3c3c3), up"]
    assert not report.checks["models"].findings and not report.checks["models"].skipped

    # no reason: an error of its own, and nothing accepted
    repo.commit(tree, "acknowledge without a reason", {p2: t2.replace("def upgrade", "# swrun: acknowledge SW302\ndef upgrade")})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW001", "SW302"]
    assert one(report, "SW001").file == p2

    reason = "legacy_code was only ever written by the v1 importer, removed in 2.0"
    repo.commit(tree, "acknowledge", {p2: t2.replace("def upgrade", f"# swrun: acknowledge SW302 {reason}\ndef upgrade")})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert report.exit_code == 0 and one(report, "SW302").acknowledged == reason


def test_a_failing_downgrade_is_found_by_the_stairway(repo):
    tree = repo.branch("bad-downgrade")
    path, text = revision_file("e5e5e5e5e5e5", HEAD, "op.create_table('zones', sa.Column('id', sa.Integer(), primary_key=True))",
                               "zones", "op.drop_table('no_such_table')")
    repo.commit(tree, "a downgrade that fails", {path: text})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=True, run_runbook=False)
    f = one(report, "SW403")
    assert f.file == path and f.line == 20 and "downgrade" in f.message and "no_such_table" in f.message
    assert report.checks["models"].skipped


def test_a_column_the_models_lack_is_found_as_alembic_check_would(repo):
    tree = repo.branch("models-differ")
    path, text = revision_file("a7a7a7a7a7a7", HEAD, "op.add_column('bins', sa.Column('colour', sa.Text(), nullable=True))",
                               "bin_colour", "op.drop_column('bins', 'colour')")
    repo.commit(tree, "a column no model declares", {path: text})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=True, run_runbook=False)
    assert codes(report) == ["SW360"]
    f = one(report, "SW360")
    assert "remove_column bins.colour" in f.message and f.key == "SW360:remove_column:bins.colour"
    # the models live outside the repository here: the key is acknowledged from the migration file
    reason = "the models gain bins.colour in the application's next release"
    repo.commit(tree, "acknowledged", {path: text.replace("def upgrade", f"# swrun: acknowledge {f.key} {reason}\ndef upgrade")})
    report = check(tree / "proj/alembic.ini", "main", execute_chain=True, run_runbook=False)
    assert report.exit_code == 0 and one(report, "SW360").acknowledged == reason


def test_a_check_that_cannot_run_is_an_error_not_a_pass(repo, monkeypatch, tmp_path):
    tree = repo.branch("no-squawk")
    repo.commit(tree, "a new revision", dict([revision_file("c9c9c9c9c9c9", HEAD, "op.execute('select 1')", "noop",
                                                            "op.execute('select 1')")]))
    monkeypatch.setenv("SWRUN_SQUAWK", str(tmp_path / "no-squawk"))
    report = check(tree / "proj/alembic.ini", "main", execute_chain=False)
    assert report.exit_code == 3 and "squawk not found" in report.checks["review"].error
    xml = JUnitXml.fromfile(str(writers.write_junit(report, tmp_path / "j.xml")))
    assert [c.name for s in xml for c in s if any(type(r).__name__ == "Error" for r in c.result)] == ["review"]


# -- output CI systems read ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def many(repo):
    """A change that breaks three NEVER rules at once (rename one file, modify another, delete the head)."""
    tree = repo.branch("many")
    first = f"{VERSIONS}/3b11939b5277_initial_schema.py"
    seed = f"{VERSIONS}/5e1f0c2a9d41_seed_sample_data.py"
    repo.commit(tree, "three wrongs", {seed: (tree / seed).read_text() + "# tidied\n"}, remove=[HEAD_FILE],
                move=[(first, f"{VERSIONS}/3b11939b5277_initial.py")])
    return tree


def test_junit_holds_one_failure_per_finding(many, tmp_path):
    report = check(many / "proj/alembic.ini", "main", execute_chain=False)
    assert codes(report) == ["SW101", "SW102", "SW103"]
    path = writers.write_junit(report, tmp_path / "junit.xml")
    xml = JUnitXml.fromfile(str(path))
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {"never-rules", "heads-after-merge", "acknowledgements", "review", "models", "stairway", "runbook"}
    failures = [r for case in cases.values() for r in case.result if isinstance(r, Failure)]
    assert len(failures) == len(report.failing) == 3
    assert sorted(r.type for r in failures) == ["SW101", "SW102", "SW103"]
    assert all(r in cases["never-rules"].result for r in failures)
    assert "NEVER delete migration files" in next(r.text for r in failures if r.type == "SW103")


def test_cli_github_annotations_name_file_and_line_and_write_the_step_summary(many, tmp_path):
    summary = tmp_path / "summary.md"
    done = run_cli("check", "--project", many / "proj/alembic.ini", "--base", "main", "--format", "github", "--no-execute",
                   "--junit", tmp_path / "j.xml", env={"GITHUB_STEP_SUMMARY": str(summary)}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    annotations = [l for l in done.stdout.splitlines() if l.startswith("::error ")]
    assert len(annotations) == 3
    seed_line = next(l for l in annotations if "SW101" in l)
    lines = (many / f"{VERSIONS}/5e1f0c2a9d41_seed_sample_data.py").read_text().splitlines()
    assert seed_line.startswith(f"::error file={VERSIONS}/5e1f0c2a9d41_seed_sample_data.py,line={len(lines)},"
                                "title=SW101 modified-applied-file::")
    assert any(l.startswith(f"::error file={HEAD_FILE},line=1,title=SW103 deleted-applied-file::") for l in annotations)
    assert "NEVER rename migration files" in next(l for l in annotations if "SW102" in l)
    text = summary.read_text()
    assert "3 finding(s) fail the check" in text and "`SW103:f7a8b9c0d1e2`" in text
    xml = JUnitXml.fromfile(str(tmp_path / "j.xml"))
    assert sum(1 for suite in xml for case in suite for r in case.result if isinstance(r, Failure)) == 3


def test_json_and_exit_codes_of_a_check_that_cannot_run(many, tmp_path):
    import json

    data = json.loads(writers.as_json(check(many / "proj/alembic.ini", "main", execute_chain=False)))
    assert data["exit_code"] == 1 and data["failing"] == 3
    assert {f["code"] for c in data["checks"] for f in c["findings"]} == {"SW101", "SW102", "SW103"}
    unknown = run_cli("check", "--project", many / "proj/alembic.ini", "--base", "no-such-branch", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown base ref 'no-such-branch'" in unknown.stderr
    with pytest.raises(UsageError, match="invalid base ref"):  # never reaches git as an option
        check(many / "proj/alembic.ini", "--upload-pack=x", execute_chain=False)
    outside = tmp_path / "nogit"
    shutil.copytree(DEMO_DIR, outside, ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.raises(ProjectError, match="not inside a git repository") as caught:
        check(outside / "alembic.ini", execute_chain=False)
    assert caught.value.exit_code >= 2


def test_codes_are_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ci.md").read_text()
    for code in CODES.values():
        assert f"`{code.code}`" in doc and code.name in doc, code


# -- the demo's own history; a clean change deploys through the runbook --------------------------

def test_demo_history_committed_one_by_one_checks_clean(tmp_path, pg):
    root = tmp_path / "demo"
    shutil.copytree(DEMO_DIR, root / "proj", ignore=shutil.ignore_patterns("__pycache__"))
    versions = sorted((root / VERSIONS).glob("*.py"))
    held = tmp_path / "held"
    held.mkdir()
    order = ["3b11939b5277", "5e1f0c2a9d41", "a1b2c3d4e5f6", "c7d8e9f0a1b2", "d4e5f6a7b8c9", "e1f2a3b4c5d6", HEAD]
    for path in versions:
        if not path.name.startswith(order[0]):
            path.rename(held / path.name)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial schema")
    git(root, "checkout", "-q", "-b", "history")
    for rev in order[1:]:
        moved = next(held.glob(f"{rev}_*.py"))
        moved.rename(root / VERSIONS / moved.name)
        git(root, "add", "-A")
        git(root, "commit", "-qm", rev)
    report = check(root / "proj/alembic.ini", None, execute_chain=True, run_runbook=False)  # base: main, the default branch
    assert report.base == "main" and report.new_revisions == order[1:]
    assert report.exit_code == 0, writers.text(report)
    assert len(report.checks["stairway"].output) == 1 + 6 and not report.checks["models"].findings
    assert {f.code for f in report.findings} <= {"SW308", "SW350"}  # the index without CONCURRENTLY: warnings


def test_clean_change_exits_0_and_its_runbook_record_is_kept(repo, tmp_path):
    tree = repo.branch("clean")
    path, text = revision_file("f6f6f6f6f6f6", HEAD, "op.execute(\"update bins set fill_level = 0 where fill_level < 0\")",
                               "clamp_fill_level", "op.execute(\"select 1\")")
    repo.commit(tree, "a clean change", {path: text})
    report = check(tree / "proj/alembic.ini", "main", reports_dir=tmp_path / "reports")
    assert report.exit_code == 0, writers.text(report)
    assert not report.checks["runbook"].skipped and report.checks["runbook"].output[0].startswith("deploy runbook succeeded")
    writers.write_junit(report, tmp_path / "junit.xml")
    records = list((tmp_path / "reports" / "ci").rglob("*_deploy_*.ipynb"))
    assert len(records) == 1 and str(records[0]) == report.record
    import nbformat

    meta = nbformat.read(str(records[0]), as_version=4).metadata["swrun"]
    assert meta["outcome"] == "succeeded" and meta["revision_after"] == ["f6f6f6f6f6f6"] and meta["revision_before"] == [HEAD]
    xml = JUnitXml.fromfile(str(tmp_path / "junit.xml"))
    assert sum(1 for suite in xml for case in suite for r in case.result if isinstance(r, Failure)) == 0
