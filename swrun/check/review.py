"""The review of the new revisions: swrun's rules and squawk on their SQL, the enum checks, and
the models against the migrated schema (what ``alembic check`` does, plus enum values).

Reuses the deploy's own guards (:mod:`swrun.guards.lint`, :mod:`swrun.guards.enums`): a pull
request is reviewed by exactly the rules its deploy will be. The findings get a file and a
line: swrun's rules point at the ``op.*`` call or SQL they found; squawk's at ``upgrade()``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from ..guards import NEVER_ENUM
from ..guards import Finding as GuardFinding
from ..guards import enums as guard_enums
from ..guards import lint
from ..migrations import Project
from .findings import ALWAYS_REVIEW, BY_NAME, GUIDE, Finding
from .gitrefs import Repo

SEVERITY = {"danger": "error", "warning": "warning", "info": "notice"}
# where a rule's finding sits in the source: the op.* call or SQL words it comes from
_WORDS = {
    "drop-table": ("drop_table", "drop table"), "drop-column": ("drop_column", "drop column"),
    "rename-table": ("rename_table", "rename to"), "rename-column": ("new_column_name", "rename column"),
    "type-change": ("type_=", " type "), "not-null-without-default": ("add_column", "not null"),
    "set-not-null": ("nullable=false", "set not null"), "index-not-concurrent": ("create_index", "create index"),
    "enum-value-renamed": ("rename value",), "enum-catalog-write": ("pg_enum",),
    "enum-value-removed": ("enum",), "enum-values-reordered": ("enum",),
    "enum-add-value-in-transaction": ("add value",), "enum-add-value-no-autocommit": ("add value",),
    "downgrade-missing": ("def upgrade",), "downgrade-empty": ("def downgrade",),
}


def locate(text: str, rule: str, detail: str) -> int:
    """The line of a lint finding in its file: a ``line<N>`` detail, else the first line with the rule's
    words and the detail's last name, else the first with the words, else ``def upgrade``."""
    m = re.fullmatch(r"line(\d+)", detail or "")
    if m:
        return int(m.group(1))
    lines = text.lower().splitlines()
    words = _WORDS.get(rule, ())
    name = (detail or "").split(".")[-1].lower()
    for pick in ((lambda l: any(w in l for w in words) and name and name in l), (lambda l: any(w in l for w in words))):
        for i, line in enumerate(lines, 1):
            if pick(line):
                return i
    return next((i for i, line in enumerate(lines, 1) if line.startswith("def upgrade")), 1)


def _convert(g: GuardFinding, path: str | None, text: str, line: int | None = None) -> Finding:
    code = BY_NAME[g.rule].code if g.rule in BY_NAME else ("SW350" if g.source == "squawk" else "SW300")
    detail_part = g.id.split(":", 2)[2] if g.id.count(":") >= 2 else ""
    rule = GUIDE.get(g.never) if g.never else ALWAYS_REVIEW
    message = f"{g.revision}: squawk {g.rule}: {g.message}" if g.source == "squawk" else f"{Path(path or '').name}: {g.message}"
    return Finding(code, message,
                   file=path, line=line or locate(text, g.rule, detail_part), severity=SEVERITY[g.severity],
                   detail=g.id.split(":", 1)[1] if code not in ("SW300", "SW350") else g.id, rule=rule, revision=g.revision)


def lint_new(project: Project, repo: Repo, new: list[str], db_enums: dict[str, list[str]]) -> list[Finding]:
    """swrun's rules over the new revisions, base first, the enum state carried from the base's database."""
    found, _ = lint.lint_revisions(project, new, db_enums)
    out = []
    for g in found:
        path = project.file_of(g.revision)
        out.append(_convert(g, repo.relative(path), path.read_text(encoding="utf-8", errors="replace")))
    return out


def squawk_new(project: Project, repo: Repo, rendered: list) -> list[Finding]:
    """squawk on each new revision's SQL (offline, or executed where offline rendering failed)."""
    found = lint.squawk(rendered, exclude=lint.squawk_exclusions(project), lock_timeout_set=True)
    sql = {r.revision: r.sql.splitlines() for r in rendered}
    out = []
    for g in found:
        path = project.file_of(g.revision)
        text = path.read_text(encoding="utf-8", errors="replace")
        number = int(g.id.rsplit(":", 1)[-1]) if g.id.rsplit(":", 1)[-1].isdigit() else 0
        lines = sql.get(g.revision, [])
        statement = lines[number - 1] if 0 < number <= len(lines) else ""
        out.append(_convert(g, repo.relative(path), text, statement_line(text, statement)))
    return out


def statement_line(text: str, statement: str) -> int:
    """The line of the revision file that most likely wrote an SQL statement: the first line of
    ``upgrade()`` quoting the statement's longest name (``op.drop_index("ix_bins_x", ...)`` for
    ``DROP INDEX ix_bins_x``); ``def upgrade`` when none does."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("def upgrade")), None)
    if start is None:
        return 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("def ", "class "))), len(lines))
    names = sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", statement)), key=len, reverse=True)
    for name in names:
        for i in range(start, end):
            if f'"{name}"' in lines[i] or f"'{name}'" in lines[i]:
                return i + 1
    return start + 1


def models(project: Project, repo: Repo, conn) -> tuple[list[Finding], str]:
    """The models (``[swrun] metadata``) against the migrated database: compare_metadata, then enum values."""
    metadata = project.metadata()
    if metadata is None:
        return [], "the project names no models ([swrun] metadata = module:attribute): not compared"
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    mds = list(metadata) if isinstance(metadata, (list, tuple)) else [metadata]
    where, text = _models_file(repo, project)
    out: list[Finding] = []
    for md in mds:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_name": _not_own_schema})
        for diff in compare_metadata(context, md):
            what = _describe(diff)
            out.append(Finding("SW360", f"the models and the migrations differ: {what} (alembic check would fail; "
                                        "generate the missing migration: swrun revision --autogenerate -m ...)",
                               file=where, line=_line_of(text, what), detail=_key(what)))
    db = guard_enums.database(conn)
    for change in guard_enums.drift(guard_enums.declared(metadata), db):
        out.append(Finding("SW361", f"{change.describe()} after the new migrations"
                                    + (": add it in a migration (ALTER TYPE ... ADD VALUE, swrun revision --autogenerate)"
                                       if change.kind == "added" else ": this needs the guide's enum change procedure"),
                           file=where, line=_line_of(text, change.type), detail=f"{change.type}:{change.kind}",
                           rule=None if change.kind == "added" else GUIDE[NEVER_ENUM]))
    return out, f"compared {len(mds)} MetaData ({project.option('metadata')}) with the database at the new heads"


def _key(text: str) -> str:
    """A detail an acknowledgement can name: one word (``add_column:bins.colour``)."""
    return re.sub(r"[^\w.+-]+", ":", text).strip(":")[:120]


def _not_own_schema(name, type_, parent_names) -> bool:
    if type_ == "schema":
        return name != "swrun"
    if type_ == "table" and name == "alembic_version":
        return False
    return parent_names.get("schema_name") != "swrun"


def _describe(diff) -> str:
    """One line for a compare_metadata difference: ``remove_column pickups.notes``."""
    if isinstance(diff, list):  # modify_* come grouped per column
        return "; ".join(_describe(d) for d in diff)
    kind = diff[0]
    if kind.startswith("modify_") and len(diff) >= 7:
        return f"{kind} {diff[2]}.{diff[3]}: {diff[-2]!r} -> {diff[-1]!r}"
    if len(diff) >= 4 and isinstance(diff[2], str):  # (kind, schema, table, column)
        return f"{kind} {diff[2]}.{getattr(diff[3], 'name', diff[3])}"
    obj = diff[1] if len(diff) > 1 else None
    name = getattr(obj, "name", None) or str(obj)
    table = getattr(getattr(obj, "table", None), "name", None)
    return f"{kind} {table + '.' if table else ''}{name}"


def _models_file(repo: Repo, project: Project) -> tuple[str | None, str]:
    spec = (project.option("metadata") or "").partition(":")[0].strip()
    import importlib

    try:
        path = Path(inspect.getsourcefile(importlib.import_module(spec)) or "")
        return repo.relative(path), path.read_text(encoding="utf-8", errors="replace")
    except Exception:
        return None, ""


def _line_of(text: str, what: str) -> int:
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", what.split(":")[0])
    for name in reversed(names):
        for i, line in enumerate(text.splitlines(), 1):
            if f'"{name}"' in line or f"'{name}'" in line:
                return i
    return 1
