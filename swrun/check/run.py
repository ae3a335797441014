"""``swrun check``: one function, the checks in order, a :class:`Report` out.

The base: ``--base REF`` names the branch the change merges into (default: the repository's
default branch). The NEVER rules compare the change with the merge base of REF and HEAD (what
the change's author branched from); the heads after the merge are counted on REF's tip with the
change's edits applied. The change is the work tree (in a CI checkout that is HEAD): the files
Alembic loads, the ones the chain is executed from.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import make_url

from ..errors import ProjectError, SwrunError
from ..migrations import AppliedRevision, Project
from . import acknowledge, execute, heads, never, review, sources
from .findings import CHECKS, CheckResult, Finding, Report
from .gitrefs import Repo

OFFLINE_URL = "postgresql+psycopg2://swrun-check@localhost/swrun-check"  # offline rendering only: never connected to


class _Timed:
    def __init__(self, result: CheckResult):
        self.result = result

    def __enter__(self):
        self.start = time.perf_counter()
        return self.result

    def __exit__(self, kind, exc, tb):
        self.result.seconds += time.perf_counter() - self.start
        if isinstance(exc, SwrunError) and not self.result.error:
            self.result.error = exc.line()  # this check could not run; the error goes on up
        return False


def check(project_path: str | Path | None = None, base: str | None = None, *, reports_dir: Path = Path("reports"),
          execute_chain: bool = True, run_runbook: bool = True, state_home: str | None = None) -> Report:
    """Run every check; raises SwrunError only when nothing could be compared (no git, no base, no project)."""
    t0 = time.perf_counter()
    project = Project.locate(project_path)
    repo = Repo.containing(project.ini_path.parent)
    base_ref = base or repo.default_branch()
    base_commit = repo.commit(base_ref)
    head = repo.commit("HEAD")
    fork = repo.merge_base(base_commit, head)
    try:
        dirs = project.version_dirs()
    except Exception as exc:
        raise ProjectError(f"cannot read the version locations of {project.ini_path}: {exc}") from None
    rel_dirs = [repo.relative(d) for d in dirs]
    recursive = project.recursive_versions
    fork_files = sources.from_git(repo, fork, rel_dirs, recursive)
    tip_files = fork_files if base_commit == fork else sources.from_git(repo, base_commit, rel_dirs, recursive)
    change_files = sources.from_work_tree(repo, dirs, recursive)
    changed = {p for p, s in change_files.items() if p not in fork_files or fork_files[p].text != s.text}

    head_files = sources.from_git(repo, head, rel_dirs, recursive)
    dirty = sorted(set(head_files) ^ set(change_files) | {p for p in change_files if p in head_files
                                                           and head_files[p].text != change_files[p].text})
    state = f" with uncommitted changes to {len(dirty)} migration file(s)" if dirty else ""
    report = Report(base=base_ref, base_commit=base_commit, fork_commit=fork, change=f"work tree at HEAD {head[:12]}{state}",
                    project=repo.relative(project.ini_path))
    for name in CHECKS:
        report.checks[name] = CheckResult(name)
    c = report.checks

    with _Timed(c["never-rules"]) as r:
        r.findings += never.findings(fork_files, change_files)
        r.output.append(f"{len(fork_files)} migration file(s) on the merge base {fork[:12]}, {len(change_files)} in the change, "
                        f"{len(changed)} added or modified")
    with _Timed(c["heads-after-merge"]) as r:
        base_graph = heads.Graph(tip_files)
        merged = heads.Graph(heads.merged_files(tip_files, fork_files, change_files))
        report.heads_base, report.heads_merged = base_graph.heads, merged.heads
        r.findings += heads.findings(base_graph, merged, changed, base_ref)
        r.output.append(f"heads on {base_ref}: {', '.join(base_graph.heads) or 'none'}; after the merge: "
                        f"{', '.join(merged.heads) or 'none'}")
    with _Timed(c["acknowledgements"]) as r:
        acks, ack_errors = acknowledge.parse({p: change_files[p] for p in changed})
        r.findings += ack_errors
        r.output.append(f"{len(acks)} acknowledgement(s) in the change's added or modified migration files")

    fork_revs = set(sources.by_revision(fork_files))
    loaded = _load(project, repo, c)
    if loaded is not None:
        new = loaded.topo_order({rev for rev in loaded.revisions if rev not in fork_revs})
        report.new_revisions = new
        try:
            _review_and_execute(loaded, repo, c, new, fork_revs, reports_dir, execute_chain, run_runbook, state_home, report)
        except SwrunError as exc:  # squawk missing, the embedded server down, ...: the checks not done could not run
            from ..records import scrub_known

            late = ("review", "models", "stairway", "runbook")
            if not any(c[name].error for name in late):
                c["stairway"].error = exc.line()
            for name in late:
                c[name].error = scrub_known(c[name].error) if c[name].error else None
                if not (c[name].error or c[name].skipped or c[name].output or c[name].findings):
                    c[name].skipped = "an earlier check could not run"
            report.could_not = max(2, exc.exit_code)

    with _Timed(c["acknowledgements"]) as r:
        everything = [f for check in c.values() for f in check.findings]
        for f in everything:
            f.ack_in = f.file if f.file in change_files else None
        r.findings += acknowledge.apply(everything, acks, set(change_files))
    report.seconds = time.perf_counter() - t0
    return report


def _load(project: Project, repo: Repo, c: dict[str, CheckResult]) -> Project | None:
    with _Timed(c["stairway"]) as r:
        try:
            return Project.load(project.ini_path)
        except ProjectError as exc:
            r.findings.append(Finding("SW401", f"Alembic cannot load the change's migrations: {exc.line()}",
                                      file=repo.relative(project.ini_path), detail="load"))
    for name in ("review", "models", "runbook"):
        c[name].skipped = "the change's migrations do not load (SW401)"
    return None


def _executed_sql(rendered: list[AppliedRevision], captured: list[dict]) -> tuple[list[AppliedRevision], list[str]]:
    """The revisions offline rendering could not do get the SQL their first upgrade executed."""
    out, used = [], []
    for rev in rendered:
        if rev.offline_error:
            sql = ";\n".join(e["sql"].strip().rstrip(";") for e in captured
                             if e.get("revision") == rev.revision and not e.get("bookkeeping"))
            if sql:
                rev = AppliedRevision(rev.revision, rev.down_revision, rev.description, rev.direction, 0.0, sql + ";\n")
                used.append(rev.revision)
        out.append(rev)
    return out, used


def _review_and_execute(project: Project, repo: Repo, c: dict[str, CheckResult], new: list[str], fork_revs: set[str],
                        reports_dir: Path, execute_chain: bool, run_runbook: bool, state_home: str | None,
                        report: Report) -> None:
    if not new:
        for name in ("review", "models", "stairway", "runbook"):
            c[name].skipped = "the change adds no revision"
        return
    start = execute.start_of(project, fork_revs)
    if not execute_chain:
        with _Timed(c["review"]) as r:
            r.findings += review.lint_new(project, repo, new, {})
            rendered = project.offline_sql(make_url(OFFLINE_URL), start, "heads")
            r.findings += review.squawk_new(project, repo, rendered)
            r.output.append("static review only (--no-execute): enum state from the migrations alone")
        for name in ("models", "stairway", "runbook"):
            c[name].skipped = "--no-execute"
        return
    with execute.throwaway(project.ini_path, state_home) as url:
        with _Timed(c["stairway"]) as r:
            failed = execute.build_base(project, repo, url, start)
            if failed:
                r.findings.append(failed)
                for name in ("review", "models", "runbook"):
                    c[name].skipped = "the chain does not build up to the base's heads (SW402)"
                return
            r.output.append(f"built the throwaway database to the base's heads: {', '.join(start) or '<base>'}")
        with _Timed(c["review"]):
            from ..database import connect, make_engine
            from ..guards import enums as guard_enums

            engine = make_engine(url)
            try:
                with connect(engine) as conn:
                    db_enums = guard_enums.database(conn)
            finally:
                engine.dispose()
            c["review"].findings += review.lint_new(project, repo, new, db_enums)
            rendered = project.offline_sql(url, start, "heads")
        captured: list[dict] = []
        with _Timed(c["stairway"]) as r:
            broke, said = execute.stairway(project, repo, url, new, captured)
            r.findings += broke
            r.output += said
        with _Timed(c["review"]) as r:
            rendered, executed = _executed_sql(rendered, captured)
            for rev in executed:
                src = project.file_of(rev)
                r.findings.append(Finding("SW351", f"revision {rev} renders no offline SQL; squawk reviewed the SQL its upgrade "
                                                   "executed on the throwaway database", file=repo.relative(src),
                                          line=review.locate(src.read_text(encoding="utf-8", errors="replace"), "", ""),
                                          severity="notice", detail=rev, revision=rev))
            r.findings += review.squawk_new(project, repo, rendered)
        if broke:
            c["models"].skipped = c["runbook"].skipped = "the stairway failed (SW403)"
            return
        with _Timed(c["models"]) as r:
            from ..database import connect, make_engine

            engine = make_engine(url)
            try:
                with connect(engine) as conn:
                    found, said_models = review.models(project, repo, conn)
            finally:
                engine.dispose()
            r.findings += found
            r.output.append(said_models)
            if "names no models" in said_models:
                r.skipped = said_models
        if not run_runbook:
            c["runbook"].skipped = "--no-runbook"
            return
        with _Timed(c["runbook"]) as r:
            try:
                execute.back_to(project, url, new, start)
            except SwrunError as exc:
                r.error = f"could not bring the throwaway database back to the base's heads: {exc.line()}"
                return
            record, failed, said_rb = execute.runbook(project, repo, url, reports_dir, new)
            report.record = record
            r.output.append(said_rb)
            if failed:
                r.findings.append(failed)
