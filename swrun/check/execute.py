"""The chain executed on one throwaway database of the embedded server (no production database).

1. the database is built to the base's heads with the change's files, as one ``alembic upgrade``
   (``[swrun] baseline`` first, as the scratch builds of stamp and doctor do);
2. the stairway: each new revision, base first, up, down (to its first parent) and up again,
   the SQL of its first upgrade captured (what squawk reviews when offline rendering fails);
3. the models are compared with the database at the new heads (:mod:`swrun.check.review`);
4. the database goes back down to the base's heads and the deploy runbook (the one production
   runs, every step, its rehearsal included) deploys the change onto it; its executed notebook
   is the record, kept under the reports directory for CI to keep as an artifact.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL

from ..config import RunContext
from ..errors import MigrationFailed, SwrunError
from ..migrations import Project
from ..recovery import scratch
from .findings import ALWAYS_TEST, Finding
from .gitrefs import Repo

RUNBOOK_ENVIRONMENT = "ci"


@contextlib.contextmanager
def throwaway(project_ini: Path, state_home: str | None = None):
    """An empty database on the embedded server, dropped afterwards (also on failure)."""
    ctx = RunContext(project_path=str(project_ini), state_home=state_home)
    with scratch.database(ctx, "embedded", label="check") as url:
        yield url


def start_of(project: Project, base_revisions: set[str]) -> tuple[str, ...]:
    """The base's heads as the change's graph has them: the base revisions it still defines that no
    other of them descends from."""
    kept = {r for r in base_revisions if r in project.revisions}
    below: set[str] = set()
    for rev in kept:
        below |= project.ancestors([rev]) - {rev}
    return tuple(sorted(kept - below))


def _where(repo: Repo, project: Project, exc: MigrationFailed, rev: str | None) -> tuple[str | None, int]:
    file = getattr(exc, "file", None) or (str(project.file_of(rev)) if rev in project.revisions else None)
    line = getattr(exc, "lineno", None) or 1
    try:
        return (repo.relative(Path(file)) if file else None), int(line)
    except SwrunError:
        return None, int(line)


def build_base(project: Project, repo: Repo, url: URL, start: tuple[str, ...]) -> Finding | None:
    try:
        scratch.build(project, url, start)
    except scratch.BuildFailed as exc:
        rev = next((r for r in start if r in exc.args[0]), None)
        return Finding("SW402", f"the chain up to the base's heads ({', '.join(start)}) does not build on an empty database: "
                                f"{exc.args[0]}", file=repo.relative(project.file_of(rev)) if rev else None,
                       detail=",".join(start), rule=ALWAYS_TEST)
    return None


def _down_target(project: Project, rev: str) -> str:
    parents = project._parents(project.revisions[rev])
    down = project.revisions[rev].down_revision
    firsts = (down,) if isinstance(down, str) else tuple(down or ())
    return (firsts or parents or ("base",))[0]


def stairway(project: Project, repo: Repo, url: URL, new: list[str], captured: list[dict]) -> tuple[list[Finding], list[str]]:
    """Each new revision up, down, up; the first failure ends it (the database is between revisions then)."""
    findings: list[Finding] = []
    said: list[str] = []
    for rev in new:
        for step, target, direction in (("upgrade", rev, "upgrade"), ("downgrade", _down_target(project, rev), "downgrade"),
                                        ("upgrade again", rev, "upgrade")):
            try:
                project.apply(url, target, direction=direction, lock_timeout=None, durable=False,
                              capture=captured if step == "upgrade" else None)
            except MigrationFailed as exc:
                file, line = _where(repo, project, exc, exc.revision or rev)
                findings.append(Finding(
                    "SW403", f"revision {rev}: the {step} ({direction} to {target}) fails on the throwaway database: {exc.args[0]}",
                    file=file, line=line, detail=f"{rev}:{step.replace(' ', '-')}", revision=rev, rule=ALWAYS_TEST,
                    fix=("write a downgrade() that undoes upgrade(), or acknowledge an irreversible revision"
                         if direction == "downgrade" else "fix the revision; it would fail the same way on production")))
                return findings, said
        said.append(f"{rev}: up, down ({_down_target(project, rev)}), up")
    project.apply(url, "heads", lock_timeout=None, durable=False)
    return findings, said


def back_to(project: Project, url: URL, new: list[str], start: tuple[str, ...]) -> None:
    """Down from the new heads to the base's heads (the runbook deploys from there)."""
    for rev in reversed(new):
        if rev in project.ancestors(project.current(url)):
            project.apply(url, _down_target(project, rev), direction="downgrade", lock_timeout=None, durable=False)
    for head in start:
        project.apply(url, head, lock_timeout=None, durable=False)


def runbook(project: Project, repo: Repo, url: URL, reports_dir: Path, new: list[str]) -> tuple[str | None, Finding | None, str]:
    """The deploy runbook from the base's heads to the new heads; its record stays under ``reports_dir``."""
    from ..runner import run_runbook

    backups = Path(tempfile.mkdtemp(prefix="swrun-check-backups-"))
    try:
        outcome = run_runbook("deploy", {"target": "heads"}, project=str(project.ini_path),
                              database_url=url.render_as_string(hide_password=False), environment=RUNBOOK_ENVIRONMENT,
                              reports_dir=reports_dir, backup_dir=backups, progress=False)
    finally:
        shutil.rmtree(backups, ignore_errors=True)
    record = str(outcome.record) if not outcome.record_missing else None
    if outcome.outcome == "succeeded":
        return record, None, f"deploy runbook succeeded in {outcome.timings.get('total', 0):.1f}s; record {record}"
    first = new[0] if new else None
    return record, Finding(
        "SW404", f"the deploy runbook {outcome.outcome} at step {outcome.failed_step or '?'} on the throwaway database: "
                 f"{outcome.message[:400]} (record: {record or 'not written'})",
        file=repo.relative(project.file_of(first)) if first else None, detail=outcome.failed_step or "run",
        rule=ALWAYS_TEST, fix="read the executed runbook (the CI artifact) for the failing step"), f"record {record}"
