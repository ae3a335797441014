"""Lint of what is about to run: the migration source (``ast``) and its offline SQL (squawk).

swrun's own rules read each pending revision's ``upgrade()`` the way Alembic will run it:
``op.*`` calls (and ``batch_alter_table`` blocks), the SQL strings given to ``op.execute``,
and whether a statement sits inside ``op.get_context().autocommit_block()``.

=============================  ========  =====================================================
rule                           severity  what
=============================  ========  =====================================================
drop-table                     danger    ``op.drop_table`` / ``DROP TABLE``
drop-column                    danger    ``op.drop_column`` / ``ALTER TABLE ... DROP COLUMN``
rename-table                   danger    ``op.rename_table`` / ``ALTER TABLE ... RENAME TO``
rename-column                  danger    ``alter_column(new_column_name=)`` / ``RENAME COLUMN``
type-change                    danger    ``alter_column(type_=)`` / ``ALTER COLUMN ... TYPE``
not-null-without-default       danger    a NOT NULL column added without a server default
set-not-null                   warning   ``alter_column(nullable=False)``: a full scan under lock
index-not-concurrent           warning   an index on an existing table without CONCURRENTLY
enum-value-renamed             danger    ``ALTER TYPE ... RENAME VALUE``         (NEVER rule 4)
enum-catalog-write             danger    INSERT/UPDATE/DELETE on ``pg_enum``     (NEVER rule 4)
enum-value-removed             danger    an enum type recreated without a value it had
enum-values-reordered          danger    an enum type recreated with its values in another order
enum-add-value-in-transaction  danger    ``ADD VALUE`` outside an autocommit block, the value used
                                         in the same revision (PostgreSQL refuses: "unsafe use")
enum-add-value-no-autocommit   warning   ``ADD VALUE`` outside an autocommit block
downgrade-missing              warning   no ``downgrade()``
downgrade-empty                warning   ``downgrade()`` is only ``pass`` (or a docstring)
=============================  ========  =====================================================

squawk (the ``squawk-cli`` package) reviews the offline SQL of the pending range, one file
per revision. Its findings are ``warning`` or ``info``, never ``danger``: the dangers it
also sees (a dropped column, a rename, ...) are swrun's rules above, so one change needs
one acknowledgement. Rules a project does not want are listed in alembic.ini::

    [swrun]
    squawk_exclude = prefer-bigint-over-int, prefer-identity
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import ProjectError, SwrunError
from . import ENUM_PROCEDURE, NEVER_ENUM, Finding, parse_file


class LintError(SwrunError):
    """squawk is missing or failed: nothing was reviewed, so nothing may be deployed."""

    exit_code = 3


# -- swrun's rules over the source ---------------------------------------------------------


@dataclass
class EnumState:
    """Enum types and their values as the pending revisions, applied in order, would leave them."""

    values: dict[str, list[str]] = field(default_factory=dict)
    renamed_from: dict[str, list[str]] = field(default_factory=dict)  # old values of a type renamed away

    def copy(self) -> "EnumState":
        return EnumState({k: list(v) for k, v in self.values.items()}, {k: list(v) for k, v in self.renamed_from.items()})


_SQL_RULES = [
    (re.compile(r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<t>[\w.\"]+)", re.I), "drop-table"),
    (re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?(?P<c>(?!CONSTRAINT\b)[\w\"]+)", re.I), "drop-column"),
    (re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+RENAME\s+(?:COLUMN\s+)?(?P<c>(?!TO\b|CONSTRAINT\b)[\w\"]+)\s+TO\b", re.I), "rename-column"),
    (re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+RENAME\s+TO\s+(?P<n>[\w.\"]+)", re.I), "rename-table"),
    (re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+ALTER\s+(?:COLUMN\s+)?(?P<c>[\w\"]+)\s+(?:SET\s+DATA\s+)?TYPE\b", re.I), "type-change"),
    (re.compile(r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)(?:IF\s+NOT\s+EXISTS\s+)?(?P<i>[\w\"]+)?\s*ON\s+(?:ONLY\s+)?(?P<t>[\w.\"]+)", re.I), "index-not-concurrent"),
    (re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+ALTER\s+(?:COLUMN\s+)?(?P<c>[\w\"]+)\s+SET\s+NOT\s+NULL", re.I), "set-not-null"),
    (re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:pg_catalog\.)?pg_enum\b", re.I), "enum-catalog-write"),
]
_ADD_COLUMN = re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?P<c>[\w\"]+)(?P<rest>[^;,]*)", re.I)
_ADD_VALUE = re.compile(r"\bALTER\s+TYPE\s+(?P<t>[\w.\"]+)\s+ADD\s+VALUE\s+(?:IF\s+NOT\s+EXISTS\s+)?'(?P<v>(?:[^']|'')*)'", re.I)
_RENAME_VALUE = re.compile(r"\bALTER\s+TYPE\s+(?P<t>[\w.\"]+)\s+RENAME\s+VALUE\s+'(?P<old>(?:[^']|'')*)'\s+TO\s+'(?P<new>(?:[^']|'')*)'", re.I)
_RENAME_TYPE = re.compile(r"\bALTER\s+TYPE\s+(?P<t>[\w.\"]+)\s+RENAME\s+TO\s+(?P<n>[\w.\"]+)", re.I)
_CREATE_ENUM = re.compile(r"\bCREATE\s+TYPE\s+(?P<t>[\w.\"]+)\s+AS\s+ENUM\s*\((?P<v>[^)]*)\)", re.I)
_DROP_TYPE = re.compile(r"\bDROP\s+TYPE\s+(?:IF\s+EXISTS\s+)?(?P<t>[\w.\"]+)", re.I)
_CREATE_TABLE = re.compile(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<t>[\w.\"]+)", re.I)


def _name(text: str) -> str:
    return text.strip().strip('"').split(".")[-1].strip('"')


def _call_name(node: ast.Call) -> tuple[str | None, str | None]:
    """``op.drop_table(...)`` -> ("op", "drop_table"); ``batch.drop_column`` -> ("batch", "drop_column")."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        if isinstance(owner, ast.Name):
            return owner.id, func.attr
        return None, func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, None


def _const(node) -> object:
    """A literal's value; ``op.f("ix_name")`` (a name Alembic must not convert) counts as its string."""
    if isinstance(node, ast.Call) and _call_name(node)[1] == "f" and len(node.args) == 1:
        node = node.args[0]
    try:
        return ast.literal_eval(node)
    except Exception:
        return None


def _text(node) -> str | None:
    """The SQL text of an op.execute argument: a string, ``sa.text("...")``, an f-string's fixed parts."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        left, right = _text(node.left), _text(node.right) if isinstance(node.op, ast.Add) else ""
        return None if left is None else left + (right or "")
    if isinstance(node, ast.Call) and node.args and _call_name(node)[1] in ("text", "literal_column"):
        return _text(node.args[0])
    return None


def _kw(node: ast.Call, name: str, default=None):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return default


def _arg(node: ast.Call, index: int, name: str):
    if len(node.args) > index:
        return node.args[index]
    return _kw(node, name)


def _is_autocommit(with_node: ast.With) -> bool:
    for item in with_node.items:
        expr = item.context_expr
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "autocommit_block":
            return True
    return False


def _enum_literal(node: ast.Call) -> tuple[str, list[str]] | None:
    """``postgresql.ENUM("A", "B", name="x")`` / ``sa.Enum("A", "B", name="x")`` -> ("x", ["A", "B"])."""
    if _call_name(node)[1] not in ("ENUM", "Enum"):
        return None
    name = _const(_kw(node, "name"))
    values = [_const(a) for a in node.args]
    if not isinstance(name, str) or not values or not all(isinstance(v, str) for v in values):
        return None
    return name, values


def _creates_type(node: ast.Call) -> bool:
    flag = _kw(node, "create_type")
    return flag is None or _const(flag) is not False


class _RevisionLinter(ast.NodeVisitor):
    """Walks one revision's ``upgrade()`` in source order."""

    def __init__(self, revision: str, filename: str, module: ast.Module, state: EnumState, source: str):
        self.rev, self.file, self.state, self.source = revision, filename, state, source
        self.findings: list[Finding] = []
        self.autocommit = 0
        self.batch: dict[str, str] = {}  # "batch_op" -> table
        self.created_tables: set[str] = set()
        self.added_values: list[tuple[str, str, bool, int]] = []  # (type, value, in autocommit, line)
        self.strings: list[tuple[int, str]] = []  # every string constant in upgrade(), with its line
        self.enum_vars: dict[str, tuple[str, list[str]]] = {}  # module-level ENUM(...) assignments
        for node in module.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
                literal = _enum_literal(node.value)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if literal and isinstance(t, ast.Name):
                        self.enum_vars[t.id] = literal

    # -- findings -----------------------------------------------------------------------
    def add(self, rule: str, severity: str, detail: str | None, message: str, never: str | None = None) -> None:
        fid = f"{rule}:{self.rev}" + (f":{detail}" if detail else "")
        if any(f.id == fid for f in self.findings):
            return
        self.findings.append(Finding(fid, rule, severity, message, revision=self.rev, file=self.file, never=never))

    # -- walking ------------------------------------------------------------------------
    def visit_With(self, node: ast.With) -> None:
        auto = _is_autocommit(node)
        for item in node.items:
            expr = item.context_expr
            if isinstance(expr, ast.Call) and _call_name(expr)[1] == "batch_alter_table" and isinstance(item.optional_vars, ast.Name):
                table = _const(_arg(expr, 0, "table_name"))
                if isinstance(table, str):
                    self.batch[item.optional_vars.id] = table
        self.autocommit += auto
        self.generic_visit(node)
        self.autocommit -= auto

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.strings.append((node.lineno, node.value))

    def visit_Call(self, node: ast.Call) -> None:
        owner, name = _call_name(node)
        table_of_batch = self.batch.get(owner or "")
        if owner == "op" or table_of_batch is not None:
            self._op(name, node, table_of_batch)
        elif name == "create" and isinstance(node.func, ast.Attribute):
            target = node.func.value
            literal = None
            if isinstance(target, ast.Name) and target.id in self.enum_vars:
                literal = self.enum_vars[target.id]
            elif isinstance(target, ast.Call):
                literal = _enum_literal(target)
            if literal:
                self._enum_created(*literal, line=node.lineno)
        self.generic_visit(node)

    def _op(self, name: str | None, node: ast.Call, batch_table: str | None) -> None:
        def table_arg(index: int = 0, kw: str = "table_name") -> str:
            if batch_table is not None:
                return batch_table
            value = _const(_arg(node, index, kw))
            return value if isinstance(value, str) else "?"

        col_offset = 0 if batch_table is not None else 1
        if name == "drop_table":
            t = table_arg()
            self.add("drop-table", "danger", t, f"drops table {t} and every row in it")
        elif name == "drop_column":
            t = table_arg()
            c = _const(_arg(node, col_offset, "column_name"))
            self.add("drop-column", "danger", f"{t}.{c}", f"drops column {t}.{c} and its data; running code that reads it breaks")
        elif name == "rename_table":
            old, new = _const(_arg(node, 0, "old_table_name")), _const(_arg(node, 1, "new_table_name"))
            self.add("rename-table", "danger", f"{old}", f"renames table {old} to {new}; running code that uses the old name breaks")
        elif name == "alter_column":
            t = table_arg()
            c = _const(_arg(node, col_offset, "column_name"))
            new_name = _const(_kw(node, "new_column_name"))
            if new_name:
                self.add("rename-column", "danger", f"{t}.{c}", f"renames column {t}.{c} to {new_name}; running code that uses the old name breaks")
            if _kw(node, "type_") is not None:
                self.add("type-change", "danger", f"{t}.{c}",
                         f"changes the type of {t}.{c}: the table is rewritten under an ACCESS EXCLUSIVE lock, and readers may break")
            if _const(_kw(node, "nullable")) is False:
                if _kw(node, "server_default") is None:
                    self.add("set-not-null", "warning", f"{t}.{c}",
                             f"sets {t}.{c} NOT NULL without a default: fails if a row holds NULL, and scans the table under an ACCESS EXCLUSIVE lock")
        elif name == "add_column":
            t = table_arg()
            column = _arg(node, col_offset, "column")
            if isinstance(column, ast.Call):
                cname = _const(column.args[0]) if column.args else "?"
                nullable = _const(_kw(column, "nullable"))
                primary = _const(_kw(column, "primary_key"))
                if (nullable is False or primary is True) and _kw(column, "server_default") is None and t not in self.created_tables:
                    self.add("not-null-without-default", "danger", f"{t}.{cname}",
                             f"adds NOT NULL column {t}.{cname} without a server default: fails on a table that has rows")
                self._column_enum(column)
        elif name == "create_table":
            t = table_arg(0, "table_name")
            self.created_tables.add(t)
            for arg in node.args[1:]:
                if isinstance(arg, ast.Call):
                    self._column_enum(arg)
        elif name == "create_index":
            index = _const(_arg(node, 0, "index_name"))
            t = _const(_arg(node, 1, "table_name")) if batch_table is None else batch_table
            concurrently = _const(_kw(node, "postgresql_concurrently")) is True
            if not concurrently and t not in self.created_tables:
                label = index if isinstance(index, str) else "?"
                self.add("index-not-concurrent", "warning", label,
                         f"creates index {label} on {t} without CONCURRENTLY: writes to {t} wait until it is built "
                         "(op.create_index(..., postgresql_concurrently=True) inside op.get_context().autocommit_block())")
        elif name == "execute":
            sql = _text(_arg(node, 0, "sqltext"))
            if sql:
                self._sql(sql, node.lineno)

    def _column_enum(self, column: ast.Call) -> None:
        for arg in list(column.args[1:]) + [kw.value for kw in column.keywords if kw.arg == "type_"]:
            if isinstance(arg, ast.Call):
                literal = _enum_literal(arg)
                if literal and _creates_type(arg):
                    self._enum_created(*literal, line=arg.lineno)

    def _sql(self, sql: str, line: int) -> None:
        for pattern, rule in _SQL_RULES:
            for m in pattern.finditer(sql):
                groups = m.groupdict()
                t = _name(groups.get("t") or "") if groups.get("t") else ""
                c = _name(groups["c"]) if groups.get("c") else ""
                if rule == "drop-table":
                    self.add(rule, "danger", t, f"drops table {t} and every row in it")
                elif rule == "drop-column":
                    self.add(rule, "danger", f"{t}.{c}", f"drops column {t}.{c} and its data; running code that reads it breaks")
                elif rule == "rename-column":
                    self.add(rule, "danger", f"{t}.{c}", f"renames column {t}.{c}; running code that uses the old name breaks")
                elif rule == "rename-table":
                    self.add(rule, "danger", t, f"renames table {t} to {_name(groups['n'])}; running code that uses the old name breaks")
                elif rule == "type-change":
                    self.add(rule, "danger", f"{t}.{c}",
                             f"changes the type of {t}.{c}: the table is rewritten under an ACCESS EXCLUSIVE lock, and readers may break")
                elif rule == "index-not-concurrent" and t not in self.created_tables and not self.autocommit:
                    i = _name(groups["i"]) if groups.get("i") else "?"
                    self.add(rule, "warning", i, f"creates index {i} on {t} without CONCURRENTLY: writes to {t} wait until it is built")
                elif rule == "set-not-null":
                    self.add(rule, "warning", f"{t}.{c}", f"sets {t}.{c} NOT NULL: fails if a row holds NULL, and scans the table under an ACCESS EXCLUSIVE lock")
                elif rule == "enum-catalog-write":
                    self.add(rule, "danger", None, f"writes to the pg_enum catalog: {NEVER_ENUM}; use {ENUM_PROCEDURE}", never=NEVER_ENUM)
        for m in _CREATE_TABLE.finditer(sql):
            self.created_tables.add(_name(m.group("t")))
        for m in _ADD_COLUMN.finditer(sql):
            rest = m.group("rest").upper()
            t, c = _name(m.group("t")), _name(m.group("c"))
            if c.upper() in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"):
                continue
            if "NOT NULL" in rest and "DEFAULT" not in rest and t not in self.created_tables:
                self.add("not-null-without-default", "danger", f"{t}.{c}",
                         f"adds NOT NULL column {t}.{c} without a default: fails on a table that has rows")
        # enum statements, in the order they appear
        events = []
        for pattern, kind in ((_ADD_VALUE, "add"), (_RENAME_VALUE, "rename-value"), (_RENAME_TYPE, "rename-type"),
                              (_CREATE_ENUM, "create"), (_DROP_TYPE, "drop")):
            events.extend((m.start(), kind, m) for m in pattern.finditer(sql))
        for _, kind, m in sorted(events, key=lambda e: e[0]):
            t = _name(m.group("t"))
            if kind == "add":
                value = m.group("v").replace("''", "'")
                self.added_values.append((t, value, bool(self.autocommit), line))
                values = self.state.values.setdefault(t, [])
                if value not in values:
                    values.append(value)
            elif kind == "rename-value":
                old, new = m.group("old").replace("''", "'"), m.group("new").replace("''", "'")
                self.add("enum-value-renamed", "danger", f"{t}.{old}",
                         f"{NEVER_ENUM}: renames value {old!r} of enum {t} to {new!r} in place; rows and code holding "
                         f"{old!r} break. Use {ENUM_PROCEDURE}", never=NEVER_ENUM)
                values = self.state.values.get(t, [])
                self.state.values[t] = [new if v == old else v for v in values]
            elif kind == "rename-type":
                new = _name(m.group("n"))
                if t in self.state.values:
                    self.state.values[new] = self.state.values.pop(t)
                    self.state.renamed_from[t] = list(self.state.values[new])
            elif kind == "create":
                values = [v.strip().strip("'").replace("''", "'") for v in m.group("v").split(",") if v.strip()]
                self._enum_created(t, values, line=line)
            elif kind == "drop":
                self.state.values.pop(t, None)

    def _enum_created(self, name: str, values: list[str], line: int) -> None:
        before = self.state.values.get(name) or self.state.renamed_from.get(name)
        if before:
            removed = [v for v in before if v not in values]
            if removed:
                for v in removed:
                    self.add("enum-value-removed", "danger", f"{name}.{v}",
                             f"recreates enum {name} without its value {v!r}: rows holding it cannot be converted; "
                             f"follow {ENUM_PROCEDURE}, mapping {v!r} to a value that stays")
            else:
                kept = [v for v in values if v in before]
                if kept != before:
                    self.add("enum-values-reordered", "danger", name,
                             f"recreates enum {name} with its values in another order ({', '.join(before)} -> "
                             f"{', '.join(kept)}): comparisons and ORDER BY on it change meaning")
        self.state.values[name] = list(values)
        self.state.renamed_from.pop(name, None)

    def finish(self) -> None:
        for t, value, in_autocommit, line in self.added_values:
            if in_autocommit:
                continue
            quoted = f"'{value}'"
            used = any(text == value or (quoted in text and not _ADD_VALUE.search(text)) for _, text in self.strings)
            if used:
                self.add("enum-add-value-in-transaction", "danger", f"{t}.{value}",
                         f"adds {value!r} to enum {t} and uses it in the same transaction: PostgreSQL refuses "
                         "(unsafe use of new value); put the ALTER TYPE inside `with op.get_context().autocommit_block():`")
            else:
                self.add("enum-add-value-no-autocommit", "warning", f"{t}.{value}",
                         f"adds {value!r} to enum {t} inside the revision's transaction: no later statement of this "
                         "revision may use it; an autocommit block (op.get_context().autocommit_block()) is safer")


def _function(module: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)


def _only_pass(fn: ast.FunctionDef) -> bool:
    body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str))]
    return all(isinstance(n, ast.Pass) for n in body)


def lint_file(path: Path, revision: str, state: EnumState | None = None) -> list[Finding]:
    """swrun's rules over one revision file. ``state`` (the enum values before it) is updated in place."""
    state = state if state is not None else EnumState()
    try:
        source, module = parse_file(path)
    except SyntaxError as exc:
        raise ProjectError(f"migration file {path} does not parse: {exc.msg} (line {exc.lineno})") from None
    linter = _RevisionLinter(revision, path.name, module, state, source)
    upgrade = _function(module, "upgrade")
    if upgrade is not None:
        for node in upgrade.body:
            linter.visit(node)
        linter.finish()
    downgrade = _function(module, "downgrade")
    if downgrade is None:
        linter.add("downgrade-missing", "warning", None, "has no downgrade(): the guide's rollback plan (alembic downgrade -1) cannot undo it")
    elif _only_pass(downgrade):
        linter.add("downgrade-empty", "warning", None, "downgrade() does nothing: alembic downgrade -1 would move the version back and leave the changes")
    return linter.findings


def lint_revisions(project, revisions: Iterable[str], enums: dict[str, list[str]] | None = None) -> tuple[list[Finding], EnumState]:
    """swrun's rules over the given revisions, base first, the enum state carried from one to the next."""
    state = EnumState({k: list(v) for k, v in (enums or {}).items()})
    findings: list[Finding] = []
    for rev in revisions:
        findings.extend(lint_file(project.file_of(rev), rev, state))
    return findings, state


# -- tables the SQL touches ----------------------------------------------------------------

_TOUCH = re.compile(
    r"\b(?:ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?|UPDATE\s+(?:ONLY\s+)?|INSERT\s+INTO\s+|DELETE\s+FROM\s+(?:ONLY\s+)?|"
    r"TRUNCATE\s+(?:TABLE\s+)?|DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?|LOCK\s+(?:TABLE\s+)?|REFERENCES\s+|"
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?[\w\"]*\s*ON\s+(?:ONLY\s+)?)"
    r"(?P<t>[\w.\"]+)", re.I)


def touched_tables(sql_texts: Iterable[str], created: Iterable[str] = ()) -> list[str]:
    """Tables the SQL alters, writes, indexes or references (foreign keys lock their target too)."""
    found: set[str] = set()
    for sql in sql_texts:
        for m in _TOUCH.finditer(sql):
            name = _name(m.group("t"))
            if name.lower() not in ("alembic_version", "pg_enum") and name:
                found.add(name)
    return sorted(found - set(created))


def created_tables(sql_texts: Iterable[str]) -> set[str]:
    return {_name(m.group("t")) for sql in sql_texts for m in _CREATE_TABLE.finditer(sql)}


# -- squawk -------------------------------------------------------------------------------------

SQUAWK_ENV = "SWRUN_SQUAWK"  # a path to the squawk binary, when it is not next to Python or on PATH
INFO_RULES = {
    "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
    "prefer-timestamp-tz", "prefer-timestamptz", "prefer-robust-stmts", "require-statement-timeout",
    "require-enum-value-ordering", "require-timeout-settings", "transaction-nesting",
}


def squawk_binary() -> Path:
    given = os.environ.get(SQUAWK_ENV)
    if given:
        path = Path(given)
        if not path.is_file():
            raise LintError(f"squawk not found at {path} (${SQUAWK_ENV})", hint="pip install squawk-cli, or point $SWRUN_SQUAWK at its binary")
        return path
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return beside
    found = shutil.which("squawk")
    if found:
        return Path(found)
    raise LintError("squawk is not installed: the pending SQL cannot be reviewed", hint="pip install squawk-cli")


def squawk(revisions, *, exclude: Iterable[str] = (), lock_timeout_set: bool = True, binary: Path | None = None) -> list[Finding]:
    """squawk's findings on each revision's offline SQL (``AppliedRevision.sql``); LintError when squawk cannot run.

    ``lock_timeout_set``: swrun runs the DDL with ``lock_timeout`` on the connection, where
    squawk cannot see it, so its ``require-lock-timeout`` rule is left out.
    """
    revisions = [r for r in revisions if r.sql.strip()]
    if not revisions:
        return []
    binary = binary or squawk_binary()
    excluded = sorted(set(exclude) | ({"require-lock-timeout"} if lock_timeout_set else set()))
    with tempfile.TemporaryDirectory(prefix="swrun-squawk-") as tmp:
        names = {}
        for i, rev in enumerate(revisions):
            name = f"{i:05d}.sql"
            (Path(tmp) / name).write_text(rev.sql, encoding="utf-8")
            names[name] = rev
        argv = [str(binary), "--reporter", "json", "--no-assume-in-transaction"]
        if excluded:
            argv += ["--exclude", ",".join(excluded)]
        try:
            proc = subprocess.run(argv + sorted(names), cwd=tmp, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LintError(f"squawk could not run ({binary}): {exc}") from None
        try:
            reported = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            reported = None
        if proc.returncode not in (0, 1) or not isinstance(reported, list):
            said = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1][:200]
            raise LintError(f"squawk failed (exit {proc.returncode}): {said}", hint="the pending SQL was not reviewed; fix squawk, then run again")
    findings: list[Finding] = []
    seen: set[str] = set()
    for item in reported:
        rev = names.get(Path(str(item.get("file", ""))).name)
        if rev is None:
            continue
        rule = str(item.get("rule_name") or "unknown")
        line = int(item.get("line") or 0) + 1  # squawk's JSON lines count from 0
        statement = _line(rev.sql, line)
        severity = "info" if rule in INFO_RULES else "warning"
        message = str(item.get("message") or "").strip()
        if item.get("help"):
            message += f" ({str(item['help']).strip().rstrip('.')})"
        if rule == "syntax-error":
            message = f"squawk could not parse this statement: {message}"
        fid = f"squawk:{rule}:{rev.revision}:{line}"
        if fid in seen:
            continue
        seen.add(fid)
        findings.append(Finding(fid, rule, severity, f"line {line}: {statement[:80]} - {message}" if statement else message,
                                revision=rev.revision, source="squawk"))
    return findings


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return " ".join(lines[number - 1].split()) if 0 < number <= len(lines) else ""


def squawk_exclusions(project) -> list[str]:
    from . import parse_ids

    return parse_ids(project.option("squawk_exclude", ""))
