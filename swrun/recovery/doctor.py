"""Doctor: the guide's troubleshooting section, diagnosed on the real project and database.

One check per case the guide names; each finding says which case it is, the evidence, and
what to do:

* :func:`heads` - multiple heads: the heads, where they branch, the ``alembic merge`` command.
* :func:`revisions` - "Can't locate revision identified by '...'": the database's (or the
  ledger's, or a file's parent) revision no file defines. The integrity ledger says which
  file it was and when it ran; the project's git history says whether it was deleted,
  renamed or lives on another branch, and how to get it back (:mod:`.history`). A file
  renamed since it was applied is reported too (the guide: NEVER rename migration files).
* :func:`pending` - "Target database is not up to date": what is pending.
* :func:`enums` - "Enum '...' already exists": a pending revision creates a type the
  database already has; the line that creates it and the fix (``checkfirst`` /
  ``create_type=False``, or dropping a hand-made type nothing uses).
* :func:`sync` - ``alembic_version`` out of sync with the schema: the live schema against a
  scratch database built from the migrations at the recorded revision; on a linear history,
  which revision the schema does match (``swrun stamp`` that one).

Read-only: the target database is only read (the scratch database lives on the embedded
server unless ``where="target"``).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field

import pandas as pd
import sqlalchemy as sa

from ..config import RunContext
from ..database import connect
from ..errors import ProjectError, SwrunError
from ..guards import ledger
from ..migrations import Project, _alembic_errors
from ..result import StepResult, Timer
from . import history, scratch

CASES = {
    "heads": "Multiple heads",
    "revisions": "Can't locate revision identified by '...'",
    "pending": "Target database is not up to date",
    "enums": "Enum '...' already exists",
    "sync": "alembic_version out of sync with the schema",
}
STEPS = tuple(f"doctor-{name}" for name in CASES)


@dataclass
class Finding:
    case: str  # the guide's heading
    evidence: str
    action: str  # what to do
    commands: list[str] = field(default_factory=list)
    headline: str = ""  # the finding in a few words, for the step's one-line summary

    def as_dict(self) -> dict:
        return asdict(self)


def _result(name: str, findings: list[Finding], t: Timer, ok: str, extra: dict | None = None) -> StepResult:
    result = StepResult(f"doctor-{name}", outcome="warning" if findings else "ok", seconds=t.seconds)
    result.data = {"case": CASES[name], "findings": [f.as_dict() for f in findings], **(extra or {})}
    result.tables["findings"] = pd.DataFrame([{"case": f.case, "evidence": f.evidence, "what to do": f.action} for f in findings],
                                             columns=["case", "evidence", "what to do"])
    commands = [c for f in findings for c in f.commands]
    if commands:
        result.code = {"what to run": "\n".join(commands)}
    if findings:
        result.summary = "; ".join(f.headline or f.evidence.split("; ")[0] for f in findings)
    else:
        result.summary = ok
    return result


def _skipped(name: str, why: str, t: Timer | None = None) -> StepResult:
    return StepResult(f"doctor-{name}", outcome="skipped", summary=f"not checked: {why}", seconds=t.seconds if t else 0.0,
                      data={"case": CASES[name], "findings": [], "skipped": why})


def _project(ctx: RunContext) -> tuple[Project | None, str | None]:
    try:
        return ctx.project, None
    except SwrunError as exc:
        return None, exc.line()


def _short(error: str | None) -> str:
    """A load error, short: a missing file is the revisions check's finding, in full."""
    if error and "is defined by no migration file" in error:
        return "a revision's file is missing: see Can't locate revision"
    return error or ""


def _db_revisions(ctx: RunContext, project: Project | None = None) -> tuple[str, ...]:
    """The database's revision(s): read through env.py as ``alembic current`` does when the project
    loads (a custom version_table / version_table_schema is read where env.py configures it),
    else straight from alembic_version."""
    if project is not None:
        return project.current(ctx.url)
    with connect(ctx.engine) as conn:
        return ledger.database_revisions(conn)


def _describe(project: Project, rev: str) -> str:
    return f"{rev} ({project.file_of(rev).name})"


# -- multiple heads ---------------------------------------------------------------------------------------


def heads(ctx: RunContext) -> StepResult:
    with Timer() as t:
        project, broken = _project(ctx)
        if project is None and broken and "Cycle is detected" in broken:  # as status says it, with what to do
            finding = Finding("Revisions in a cycle", broken,
                              "one of these revisions names a descendant as its down_revision: give it its real parent "
                              "(`git log -p` on the files shows which line changed); Alembic loads no history until then",
                              [], "the revisions' down_revision form a cycle")
            return _result("heads", [finding], t, "")
        if project is None:  # a missing file splits the history: its pieces would look like heads
            return _skipped("heads", f"the project does not load ({_short(broken)})", t)
        found = list(project.heads)
        files = {h: project.file_of(h).name for h in found}
        current = _db_revisions(ctx, project)
        findings = []
        if len(found) > 1:
            fork = ""
            if project is not None:
                common = set.intersection(*(project.ancestors([h]) for h in found))
                if common:
                    fork = f"; they branch after {project.topo_order(common)[-1]}"
            where = f"; the database is at {', '.join(current) or '<base>'}"
            command = f"alembic merge -m 'merge heads' {' '.join(found)}"
            findings.append(Finding(
                CASES["heads"],
                f"the migrations have {len(found)} heads: " + ", ".join(f"{h} ({files[h]})" for h in found) + fork + where,
                f"merge them into one head: `{command}` in the project's directory, review the new merge revision, "
                "commit it, then swrun deploy ('head' is ambiguous until then)",
                [f"cd {Project.locate(ctx.project_path).ini_path.parent} && {command}"],
                f"{len(found)} heads: {', '.join(found)}"))
    return _result("heads", findings, t, f"no: one head, {', '.join(found) or '<none>'}", {"heads": found})


# -- can't locate revision ----------------------------------------------------------------------------------


def revisions(ctx: RunContext) -> StepResult:
    with Timer() as t:
        located = Project.locate(ctx.project_path)
        scan = ledger.scan(located)
        with connect(ctx.engine) as conn:
            entries = ledger.read(conn)
        project, broken = _project(ctx)
        current = _db_revisions(ctx, project)
        missing: dict[str, list[str]] = {}
        for rev in current:
            if rev not in scan.files:
                missing.setdefault(rev, []).append(
                    f"the database is at revision {rev} (alembic_version), which no migration file defines: Alembic stops "
                    f"with \"Can't locate revision identified by '{rev}'\"")
        for rev, children in sorted(scan.parents_missing().items()):
            missing.setdefault(rev, []).append(
                f"revision {rev}, the parent (down_revision) of {', '.join(sorted(children))}, is defined by no file: "
                "Alembic cannot load the history")
        for rev, entry in sorted(entries.items()):
            if entry.state == "applied" and rev not in scan.files:
                missing.setdefault(rev, []).append(f"the ledger records {rev} as applied to this database")
        renamed = {}
        for rev, entry in sorted(entries.items()):
            now = scan.files.get(rev)
            if entry.state == "applied" and now is not None and now.name != entry.filename:
                renamed[rev] = (entry, now)
        findings = []
        dirs = [d for d in located.version_dirs()]
        for rev, said in missing.items():
            entry = entries.get(rev)
            evidence = list(said)
            if entry is not None:
                evidence.append(f"the ledger (swrun.migration_ledger) knows its file: {entry.path}, {entry.when()}, "
                                f"sha256 {entry.sha256[:12]}...")
            else:
                evidence.append("the ledger has no row for it (applied before swrun kept one, or elsewhere)")
            trace = history.trace(located.ini_path.parent, dirs, rev)
            evidence.append(trace.evidence())
            if trace.sha256 and entry is not None:
                evidence.append("the file in git is the one that was applied (same sha256)" if trace.sha256 == entry.sha256
                                else "the file in git differs from the one that was applied (sha256)")
            if trace.found:
                kind = {"deleted": "A migration file was deleted", "uncommitted-delete": "A migration file was deleted",
                        "renamed": "A migration file was renamed", "uncommitted-rename": "A migration file was renamed",
                        "other-branch": "You're on the wrong branch"}[trace.kind]
                rule = {"A migration file was deleted": " (the guide: NEVER delete migration files)",
                        "A migration file was renamed": " (the guide: NEVER rename migration files)"}.get(kind, "")
                action = (f"{kind}{rule}: restore it: "
                          + " && ".join(f"`{c}`" for c in trace.restore) + "; then swrun status")
                commands = list(trace.restore)
            else:
                name = entry.path if entry is not None else f"the file defining {rev}"
                action = (f"restore {name} from a backup or a colleague's checkout (the guide: NEVER delete migration files). "
                          "Only if it cannot be found: swrun doctor's schema check names the revision the schema matches; "
                          "`swrun stamp` that revision (it compares the schema before it stamps)")
                commands = []
            how = {"deleted": "deleted", "uncommitted-delete": "deleted, not committed", "renamed": f"renamed to {trace.new_path}",
                   "uncommitted-rename": f"moved to {trace.new_path}, not committed",
                   "other-branch": f"on {', '.join(trace.branches) or 'another branch'}"}.get(trace.kind, "not in git history")
            findings.append(Finding(f"Can't locate revision identified by '{rev}'", "; ".join(evidence), action, commands,
                                    f"{rev}: {trace.path or (entry.filename if entry else 'its file')} {how}"))
        for rev, (entry, now) in renamed.items():
            trace = history.trace(located.ini_path.parent, dirs, rev)
            rel = now.path.relative_to(located.ini_path.parent) if now.path.is_relative_to(located.ini_path.parent) else now.path
            evidence = (f"revision {rev} was applied from {entry.filename} ({entry.when()}); it is now in {now.name}: "
                        "the guards stop every deploy (NEVER rename migration files)")
            if trace.kind in ("renamed", "uncommitted-rename"):
                evidence += "; " + trace.evidence()
            command = f"git -C {located.ini_path.parent} mv {rel} {rel.parent / entry.filename}"
            findings.append(Finding("A migration file was renamed", evidence,
                                    f"give it its name back: `{command}`", [command], f"{entry.filename} renamed to {now.name}"))
    ok = f"no: every revision the database and the ledger know has its file ({len(scan.files)} file(s))"
    return _result("revisions", findings, t, ok, {"missing": list(missing), "renamed": list(renamed),
                                                 "project_error": broken})


# -- target database is not up to date -------------------------------------------------------------------------


def _loaded(ctx: RunContext, name: str) -> tuple[Project | None, tuple[str, ...], StepResult | None]:
    project, broken = _project(ctx)
    if project is None:
        return None, (), _skipped(name, f"the project does not load ({_short(broken)})")
    current = _db_revisions(ctx, project)
    unknown = [r for r in current if r not in project.revisions]
    if unknown:
        return None, (), _skipped(name, f"the database is at {', '.join(unknown)}, which no file defines (see Can't locate revision)")
    return project, current, None


def pending(ctx: RunContext) -> StepResult:
    with Timer() as t:
        project, current, skipped = _loaded(ctx, "pending")
        if skipped:
            return skipped
        todo = project.pending(current, "heads")
        findings = []
        if todo:
            findings.append(Finding(
                CASES["pending"],
                f"the database is at {', '.join(current) or '<base> (empty)'}; {len(todo)} revision(s) pending: "
                + ", ".join(_describe(project, r) for r in todo),
                "review them (swrun preview), then apply: swrun deploy (the guide: alembic history, alembic current, "
                "alembic upgrade head)", ["swrun preview --show-sql", "swrun deploy"],
                f"{len(todo)} revision(s) pending: {todo[0]}" + (f" .. {todo[-1]}" if len(todo) > 1 else "")))
    result = _result("pending", findings, t, f"no: the database is at {', '.join(current) or '<base>'}, up to date",
                     {"current": list(current), "pending": todo})
    result.tables["pending"] = pd.DataFrame([{"revision": r, "description": project.description(r), "file": project.file_of(r).name}
                                             for r in todo], columns=["revision", "description", "file"])
    return result


# -- enum already exists --------------------------------------------------------------------------------------


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else (func.id if isinstance(func, ast.Name) else None)


def _const_kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _enum_call(node) -> tuple[str, list[str], bool] | None:
    """``ENUM("A", "B", name="x", create_type=...)`` -> ("x", ["A", "B"], creates the type?)."""
    if not isinstance(node, ast.Call) or _call_name(node) not in ("ENUM", "Enum"):
        return None
    name = _const_kw(node, "name")
    if not isinstance(name, str):
        return None
    values = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return name, values, _const_kw(node, "create_type") is not False


def enum_creations(path) -> list[dict]:
    """Where a revision's ``upgrade()`` creates enum types: the type, line, code, how, values."""
    import re

    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        module = ast.parse(source)
    except SyntaxError:
        return []
    variables = {}
    for node in module.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and (found := _enum_call(node.value)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    variables[target.id] = found
    upgrade = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None)
    if upgrade is None:
        return []
    out = []

    def code(node) -> str:
        return (ast.get_source_segment(source, node) or "").splitlines()[0].strip()

    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name == "create" and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            found = variables.get(owner.id) if isinstance(owner, ast.Name) else _enum_call(owner)
            if found and _const_kw(node, "checkfirst") is not True:
                out.append({"type": found[0], "values": found[1], "line": node.lineno, "code": code(node), "how": "create"})
        elif name == "create_table":
            for inner in ast.walk(node):
                found = _enum_call(inner) if isinstance(inner, ast.Call) else None
                if found is None and isinstance(inner, ast.Name) and inner.id in variables:
                    found = variables[inner.id]
                if found and found[2]:
                    out.append({"type": found[0], "values": found[1], "line": inner.lineno, "code": code(inner), "how": "create_table"})
        elif name == "execute":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    text = inner.value
                    if re.search(r"duplicate_object|IF\s+NOT\s+EXISTS", text, re.I):
                        continue
                    for m in re.finditer(r"\bCREATE\s+TYPE\s+(?:[\w\"]+\.)?\"?(\w+)\"?\s+AS\s+ENUM\s*\(([^)]*)\)", text, re.I):
                        values = [v.strip().strip("'") for v in m.group(2).split(",") if v.strip()]
                        out.append({"type": m.group(1), "values": values, "line": inner.lineno, "code": code(node), "how": "sql"})
    return out


def _fix(c: dict, rev: str, filename: str, have: list[str], unused: bool) -> tuple[str, list[str]]:
    differ = bool(c["values"]) and bool(have) and list(have) != c["values"]
    said = (f"its values ({', '.join(have)}) differ from the migration's ({', '.join(c['values'])})" if differ else "")
    options, commands = [], []
    if unused:
        options.append("no column uses it (made by hand, or left by a partial run): drop it, `DROP TYPE "
                       f"{c['type']};`, then deploy again" + (f"; {said}, so keeping it would be wrong" if differ else ""))
        commands.append(f"DROP TYPE {c['type']};")
    elif differ:
        options.append(f"columns use it and {said}: decide which is right before changing anything "
                       "(the guide: ask for help before making manual database changes)")
    if not differ:
        if c["how"] == "create":
            fix = "`" + c["code"].replace("checkfirst=False", "checkfirst=True") \
                  .replace(".create(op.get_bind())", ".create(op.get_bind(), checkfirst=True)") + "`"
        elif c["how"] == "create_table":
            fix = (f"`postgresql.ENUM({', '.join(repr(v) for v in c['values'])}, name={c['type']!r})"
                   f".create(op.get_bind(), checkfirst=True)` before the table, and the column's type "
                   f"`postgresql.ENUM(name={c['type']!r}, create_type=False)`")
        else:
            fix = "the CREATE TYPE wrapped in `DO $$ BEGIN ... EXCEPTION WHEN duplicate_object THEN null; END $$`"
        options.append(f"{'or ' if options else ''}make {filename} check first (the guide: modify the migration to check if "
                       f"the enum exists first): {fix}; only while {rev} has run on no other database (NEVER modify an "
                       "applied migration)")
    return "; ".join(options), commands


def enums(ctx: RunContext) -> StepResult:
    with Timer() as t:
        project, current, skipped = _loaded(ctx, "enums")
        if skipped:
            return skipped
        todo = project.pending(current, "heads")
        with connect(ctx.engine) as conn:
            types = {r.typname: r for r in conn.execute(sa.text(
                "select t.typname, n.nspname, t.typtype, "
                "array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid order by e.enumsortorder) as labels, "
                "array(select c.relname || '.' || a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid "
                "      where a.atttypid = t.oid and a.attnum > 0 and not a.attisdropped order by 1) as used_by "
                "from pg_type t join pg_namespace n on n.oid = t.typnamespace "
                "where n.nspname not in ('pg_catalog', 'information_schema') and t.typtype in ('e', 'c', 'd', 'b', 'r')"))}
        findings = []
        created_here: set[str] = set()
        for rev in todo:
            path = project.file_of(rev)
            for c in enum_creations(path):
                if c["type"] in created_here or c["type"] not in types:
                    created_here.add(c["type"])
                    continue
                have = types[c["type"]]
                used = ", ".join(have.used_by) or "no column"
                evidence = (f"type {c['type']} already exists in the database (pg_type: schema {have.nspname}, "
                            + (f"enum ({', '.join(have.labels)})" if have.typtype == "e" else f"typtype {have.typtype}")
                            + f", used by {used}); pending revision {rev} ({path.name}, line {c['line']}: `{c['code']}`) "
                            f"creates it: the upgrade would stop with 'type \"{c['type']}\" already exists'")
                action, commands = _fix(c, rev, path.name, list(have.labels), not have.used_by)
                findings.append(Finding(f"Enum '{c['type']}' already exists", evidence, action, commands,
                                        f"type {c['type']} exists; {rev} ({path.name}:{c['line']}) creates it"))
                created_here.add(c["type"])
    return _result("enums", findings, t, f"no: no pending revision creates a type the database has ({len(todo)} pending)")


# -- alembic_version out of sync with the schema --------------------------------------------------------------------


def _linear(project: Project, order: list[str]) -> bool:
    return len(project.heads) == 1 and all(len(project._parents(project.revisions[r])) <= 1 for r in order)


def sync(ctx: RunContext, *, where: str = "embedded") -> StepResult:
    """The live schema against the migrations built (one Alembic run) to the recorded revision;
    when they differ on a linear history, one more build to head, snapshotted after every
    revision, names the revision the schema does match."""
    with Timer() as t:
        project, current, skipped = _loaded(ctx, "sync")
        if skipped:
            return skipped
        order = project.topo_order(set(project.revisions))
        at = ", ".join(current) or "<base>"
        matches: list[str] = []
        try:
            with scratch.database(ctx, where, "doctor") as url:
                built = scratch.build(project, url, current)
                expected = scratch.snapshot(url, built.version_table)
            live = scratch.live_snapshot(ctx, built.version_table)
            differences = scratch.compare(expected, live, at=at)
            if differences and _linear(project, order):  # which revision does the schema match?
                with scratch.database(ctx, where, "doctor") as url:
                    states = scratch.build(project, url, project.heads, every_state=True).states
                matches = [rev for rev, snap in states.items() if not scratch.compare(snap, live)]
        except scratch.BuildFailed as exc:
            return StepResult("doctor-sync", outcome="failed", summary=f"not checked: {exc.line()}", error=exc.line(),
                              seconds=t.seconds, data={"case": CASES["sync"], "findings": [], "current": list(current),
                                                       "differences": [], "matches": [], "scratch": where})
        findings = []
        if differences:
            first = "; ".join(f"{d['kind']} {d['object']} {d['difference']}" for d in differences[:3])
            evidence = (f"alembic_version says {at}; a scratch database built from the migrations up to {at} differs from "
                        f"the live schema in {len(differences)} object(s): {first}")
            if matches:
                newest = matches[-1]
                evidence += f"; the live schema matches revision {', '.join(matches)} of the migrations"
                action = (f"if nobody changed the schema by hand, the version table is what is wrong: `swrun stamp {newest}` "
                          "(it builds the revision again and stamps only if the schema matches)")
                if not current or newest == "<base>" or newest not in project.ancestors(current):
                    action += f"; do not deploy first: the changes of the revisions up to {newest} are already there and would fail"
                commands = [f"swrun stamp {'base' if newest == '<base>' else newest}"]
            else:
                action = ("the schema was changed outside Alembic (the table shows what): revert the change, or write it as a "
                          "migration (swrun revision --autogenerate) and deploy; do not stamp (the guide: only if you're "
                          "CERTAIN the schema matches the migration)")
                commands = []
            findings.append(Finding(CASES["sync"], evidence, action, commands,
                                    f"{len(differences)} difference(s) at {at}" + (f"; the schema matches {matches[-1]}" if matches else "")))
    result = _result("sync", findings, t, f"no: the live schema matches revision {at} (rebuilt from the migrations on the {where} server)",
                     {"current": list(current), "differences": differences, "matches": matches, "scratch": where})
    result.tables[f"schema differences: migrations at {at} vs the live database"] = scratch.frame(differences)
    return result


CHECKS = {"heads": heads, "revisions": revisions, "pending": pending, "enums": enums, "sync": sync}


def diagnose(ctx: RunContext, *, where: str = "embedded") -> list[StepResult]:
    """Every check; a check that cannot run says why.

    Two failures end the diagnosis, as one line: the database cannot be reached, and swrun's
    check of where the project's env.py connects refuses (for the target, or for a scratch
    database: env.py would read or migrate a database swrun did not name, so no check's
    result would be true)."""
    project, _ = _project(ctx)
    if project is not None:
        try:
            project.current(ctx.url)
        except ProjectError:  # env.py itself fails: each check that needs it says so
            pass
    results = []
    for name, fn in CHECKS.items():
        try:
            results.append(fn(ctx, where=where) if name == "sync" else fn(ctx))
        except scratch.Refused:
            raise
        except SwrunError as exc:
            if exc.exit_code == 4:  # the database cannot be reached: nothing else will work either
                raise
            results.append(StepResult(f"doctor-{name}", outcome="failed", summary=exc.line(), error=exc.line()))
        except (*_alembic_errors(), OSError) as exc:  # Alembic cannot read the project: a failed check, not a traceback
            line = f"cannot read the project's migrations: {' '.join(str(exc).split())}"
            results.append(StepResult(f"doctor-{name}", outcome="failed", summary=line, error=line))
    by = {r.step: r for r in results}
    ahead = by["doctor-sync"].data.get("matches") if "doctor-sync" in by else None
    todo = by["doctor-pending"].data.get("findings") if "doctor-pending" in by else None
    if ahead and todo and ahead[-1] in by["doctor-pending"].data.get("pending", []):
        todo[0]["action"] = (f"not yet: the schema already has the changes up to {ahead[-1]} (see 'out of sync' below), "
                             "so applying them would fail; stamp first, then deploy what is left")
        todo[0]["commands"] = []
    return results


def text(results: list[StepResult], ctx: RunContext) -> str:
    """What ``swrun doctor`` prints: one line per check, then every finding with its evidence and what to do."""
    mark = {"ok": "✓", "warning": "!", "skipped": "-", "failed": "✗"}
    lines = [f"swrun doctor: {ctx.redacted_url} ({ctx.environment})"]
    for r in results:
        lines.append(f"  {mark.get(r.outcome, '?')} {CASES[r.step.removeprefix('doctor-')]}: {r.summary}")
    findings = [Finding(**f) for r in results for f in r.data.get("findings", [])]
    unchecked = [CASES[r.step.removeprefix("doctor-")] for r in results if r.outcome in ("failed", "skipped")]
    if not findings:
        lines.append(f"nothing found by the checks that ran, but {len(unchecked)} could not run: {', '.join(unchecked)}"
                     if unchecked else "no problems found")
        return "\n".join(lines)
    lines.append(f"{len(findings)} finding(s):")
    for i, f in enumerate(findings, 1):
        lines.append(f"\n[{i}] {f.case}")
        lines.append(f"    evidence: {f.evidence}")
        lines.append(f"    what to do: {f.action}")
        for c in f.commands:
            lines.append(f"      $ {c}")
    for r in results:
        for name, table in r.tables.items():
            if name.startswith("schema differences") and len(table):
                lines.append(f"\n{name}:\n" + table.to_string(index=False))
    return "\n".join(lines)
