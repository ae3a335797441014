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
from .. import sql as sqltext
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


def _name(text: str) -> str:
    return text.strip().strip('"').split(".")[-1].strip('"')


_BIND = re.compile(r"(?<![:\w]):(?!:)[A-Za-z_]\w*|%\(\w+\)s|%s")
_PLACEHOLDER = "swrun_expr"  # what an f-string's {expression} or a bound parameter stands as, for the parser


def _readable(sql: str) -> list[sqltext.Statement]:
    """The statements of an op.execute text; bound parameters (``:name``, ``%(name)s``) read as a name."""
    found = sqltext.statements(sql)
    if any(not s.parsed for s in found) and _BIND.search(sql):
        found = sqltext.statements(_BIND.sub(_PLACEHOLDER, sql))
    return found


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
        return "".join(v.value if isinstance(v, ast.Constant) else _PLACEHOLDER for v in node.values)
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

    def __init__(self, revision: str, filename: str, module: ast.Module, state: EnumState, source: str,
                 created: set[str] | None = None):
        self.rev, self.file, self.state, self.source = revision, filename, state, source
        self.findings: list[Finding] = []
        self.autocommit = 0
        self.batch: dict[str, str] = {}  # "batch_op" -> table
        # tables created earlier in the pending range or in this revision: not there yet for anyone to use
        self.created_tables: set[str] = created if created is not None else set()
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
        elif name in ("execute", "exec_driver_sql") and isinstance(node.func, ast.Attribute):
            sql = _text(_arg(node, 0, "statement"))  # op.get_bind().execute(...), conn.exec_driver_sql(...)
            if sql:
                self._sql(sql, node.lineno)
        elif name in ("commit", "rollback") and isinstance(node.func, ast.Attribute) and _is_connection(node.func.value):
            self._ends_transaction(f"{ast.unparse(node.func)}()", node.lineno)
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
            if t in self.created_tables:
                self.created_tables.discard(t)
            else:
                self.add("drop-table", "danger", t, f"drops table {t} and every row in it")
        elif name == "drop_column":
            t = table_arg()
            c = _const(_arg(node, col_offset, "column_name"))
            if t not in self.created_tables:
                self.add("drop-column", "danger", f"{t}.{c}", f"drops column {t}.{c} and its data; running code that reads it breaks")
        elif name == "rename_table":
            old, new = _const(_arg(node, 0, "old_table_name")), _const(_arg(node, 1, "new_table_name"))
            if old in self.created_tables:
                self.created_tables.add(new)
            else:
                self.add("rename-table", "danger", f"{old}", f"renames table {old} to {new}; running code that uses the old name breaks")
        elif name == "alter_column" and table_arg() in self.created_tables:
            pass  # a table this range creates: nobody reads it yet, and it holds no rows
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

    def _ends_transaction(self, what: str, line: int) -> None:
        self.add("ends-transaction", "danger", f"line{line}",
                 f"line {line}: {what} ends the transaction swrun runs the revision in: a failure after it leaves "
                 "the database between revisions, half migrated, with alembic_version not saying so "
                 "(for statements PostgreSQL cannot run in a transaction use op.get_context().autocommit_block())")

    def _sql(self, sql: str, line: int) -> None:
        for st in _readable(sql):
            at = line + st.line - 1
            if not st.parsed:
                self.add("sql-not-reviewed", "danger", f"line{at}",
                         f"line {at}: PostgreSQL's parser refuses this SQL, so swrun could not review it "
                         f"({st.error}): {' '.join(st.text.split())[:80]}")
                continue
            if st.ends_transaction:
                self._ends_transaction(" ".join(st.text.split())[:40], at)
            for a in st.actions:
                self._action(a, st)

    def _action(self, a: sqltext.Action, st: sqltext.Statement) -> None:
        t = a.table.name if a.table is not None else ""
        c = a.name or ""
        fresh = t in self.created_tables
        if a.op == "create-table":
            self.created_tables.add(t)
        elif a.op == "drop-table":
            if fresh:
                self.created_tables.discard(t)
            else:
                self.add("drop-table", "danger", t, f"drops table {t} and every row in it")
        elif a.op == "rename-table":
            if fresh:
                self.created_tables.add(a.new)
            else:
                self.add("rename-table", "danger", t, f"renames table {t} to {a.new}; running code that uses the old name breaks")
        elif fresh and a.op in ("drop-column", "rename-column", "type-change", "set-not-null", "add-column", "create-index"):
            return  # a table this range creates: nobody reads it yet, and it holds no rows
        elif a.op == "drop-column":
            self.add("drop-column", "danger", f"{t}.{c}", f"drops column {t}.{c} and its data; running code that reads it breaks")
        elif a.op == "rename-column":
            self.add("rename-column", "danger", f"{t}.{c}", f"renames column {t}.{c}; running code that uses the old name breaks")
        elif a.op == "type-change":
            self.add("type-change", "danger", f"{t}.{c}",
                     f"changes the type of {t}.{c}: the table is rewritten under an ACCESS EXCLUSIVE lock, and readers may break")
        elif a.op == "create-index" and "concurrently" not in a.flags and not self.autocommit:
            i = a.name or "?"
            self.add("index-not-concurrent", "warning", i, f"creates index {i} on {t} without CONCURRENTLY: writes to {t} wait until it is built")
        elif a.op == "set-not-null":
            self.add("set-not-null", "warning", f"{t}.{c}", f"sets {t}.{c} NOT NULL: fails if a row holds NULL, and scans the table under an ACCESS EXCLUSIVE lock")
        elif a.op == "add-column" and "not-null" in a.flags and "default" not in a.flags:
            self.add("not-null-without-default", "danger", f"{t}.{c}",
                     f"adds NOT NULL column {t}.{c} without a default: fails on a table that has rows")
        elif a.op in ("insert", "update", "delete") and t == "pg_enum":
            self.add("enum-catalog-write", "danger", None, f"writes to the pg_enum catalog: {NEVER_ENUM}; use {ENUM_PROCEDURE}", never=NEVER_ENUM)
        elif a.op == "enum-add-value":
            self.added_values.append((t, a.name, bool(self.autocommit), st.line))
            values = self.state.values.setdefault(t, [])
            if a.name not in values:
                values.append(a.name)
        elif a.op == "enum-rename-value":
            old, new = a.name, a.new
            self.add("enum-value-renamed", "danger", f"{t}.{old}",
                     f"{NEVER_ENUM}: renames value {old!r} of enum {t} to {new!r} in place; rows and code holding "
                     f"{old!r} break. Use {ENUM_PROCEDURE}", never=NEVER_ENUM)
            self.state.values[t] = [new if v == old else v for v in self.state.values.get(t, [])]
        elif a.op == "rename-type":
            if t in self.state.values:
                self.state.values[a.new] = self.state.values.pop(t)
                self.state.renamed_from[t] = list(self.state.values[a.new])
        elif a.op == "create-enum":
            self._enum_created(t, list(a.values), line=st.line)
        elif a.op == "drop-type":
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
            used = any(text == value or (quoted in text and not _adds_value(text)) for _, text in self.strings)
            if used:
                self.add("enum-add-value-in-transaction", "danger", f"{t}.{value}",
                         f"adds {value!r} to enum {t} and uses it in the same transaction: PostgreSQL refuses "
                         "(unsafe use of new value); put the ALTER TYPE inside `with op.get_context().autocommit_block():`")
            else:
                self.add("enum-add-value-no-autocommit", "warning", f"{t}.{value}",
                         f"adds {value!r} to enum {t} inside the revision's transaction: no later statement of this "
                         "revision may use it; an autocommit block (op.get_context().autocommit_block()) is safer")


def _adds_value(text: str) -> bool:
    return any(a.op == "enum-add-value" for st in sqltext.statements(text) for a in st.actions)


def _is_connection(node) -> bool:
    """``conn``, ``connection``, ``bind``, ``op.get_bind()``, ``context.connection``: not an ORM session,
    whose commit (bound to Alembic's connection) only ends its own savepoint-joined scope."""
    text = ast.unparse(node).lower()
    return "session" not in text and any(w in text for w in ("conn", "bind", "connection"))


def _function(module: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)


def _only_pass(fn: ast.FunctionDef) -> bool:
    body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str))]
    return all(isinstance(n, ast.Pass) for n in body)


def lint_file(path: Path, revision: str, state: EnumState | None = None, created: set[str] | None = None) -> list[Finding]:
    """swrun's rules over one revision file. ``state`` (the enum values before it) is updated in place,
    and ``created`` (tables created earlier in the range) too."""
    state = state if state is not None else EnumState()
    try:
        source, module = parse_file(path)
    except SyntaxError as exc:
        raise ProjectError(f"migration file {path} does not parse: {exc.msg} (line {exc.lineno})") from None
    linter = _RevisionLinter(revision, path.name, module, state, source, created)
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
    created: set[str] = set()  # the range is read as Alembic will run it: a table made earlier in it is new
    for rev in revisions:
        findings.extend(lint_file(project.file_of(rev), rev, state, created))
    return findings, state


def lint_sql(revision: str, sql: str, file: str | None = None, *, state: EnumState | None = None,
             created: set[str] | None = None) -> list[Finding]:
    """swrun's SQL rules over one revision's SQL text (the rehearsal's executed SQL, say).

    Pass the same ``created`` set (and ``state``) for each revision of a range, base first: a
    table created earlier in it is no danger to alter or drop."""
    linter = _RevisionLinter(revision, file or "", ast.Module(body=[], type_ignores=[]), state or EnumState(), sql, created)
    linter._sql(sql, 1)
    return linter.findings


# -- tables the SQL touches ----------------------------------------------------------------

def touched_tables(sql_texts: Iterable[str], created: Iterable[str] = ()) -> list[str]:
    """Tables the SQL alters, writes, indexes or references (foreign keys lock their target too),
    as names ``pg_class.relname`` has; tables the same SQL creates are not there yet to be locked."""
    texts = list(sql_texts)
    new = {t.name for t in sqltext.created_tables(texts)} | set(created)
    return sorted({t.name for t in sqltext.touched_tables(texts)} - new)


def created_tables(sql_texts: Iterable[str]) -> set[str]:
    return {t.name for t in sqltext.created_tables(list(sql_texts))}


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
