"""SQL read with PostgreSQL's own parser (pglast, libpg_query): statements in; tables, operations, locks out.

One reader serves the lint, the rollback plan, the scratch comparisons and the preview, so a
statement is understood the same way everywhere, and the way PostgreSQL will understand it.

API (stable):

* ``statements(sql) -> list[Statement]`` - a script (Alembic's offline output, psql-ish text with
  ``BEGIN;``/``COMMIT;``, comments, ``$$`` bodies, psql ``\\`` lines) split into statements. A
  statement PostgreSQL's parser refuses is ``kind == "UNPARSED"`` with ``error`` set; nothing raises.
* ``Statement``: ``text``, ``kind`` (``"ALTER TABLE"``, ``"CREATE INDEX CONCURRENTLY"``,
  ``"COMMIT"``, ...), ``line`` (1-based, in the script), ``tables`` (``Table`` tuple, the ones the
  statement locks), ``locks`` (``((Table, lock), ...)``, lock as ``pg_locks.mode`` names it), ``lock``
  (the strongest), ``actions`` (``Action`` tuple), ``ends_transaction``, ``begins_transaction``,
  ``outside_transaction`` (PostgreSQL refuses it inside a transaction block), ``error``.
* ``Table(schema, name)``: ``str()`` is ``schema.name`` or ``name``; ``.sql`` the quoted form, safe
  to put in a query.
* ``Action(op, table, name=None, new=None, values=(), flags=frozenset())``: one thing a statement
  does. ``op`` is one of :data:`OPS`; ``table`` is a ``Table`` (for enum/type ops: the type).
* ``touched_tables(sql_texts) -> list[Table]``, ``created_tables(sql_texts) -> set[Table]``,
  ``version_table(sql_texts) -> Table | None`` (the table Alembic writes ``version_num`` to),
  ``index_table(indexdef) -> str | None`` (the table name of a ``CREATE INDEX`` text),
  ``transaction_blocks(sql) -> list[tuple[bool, str]]`` (parts between ``BEGIN;``/``COMMIT;``),
  ``count(sql) -> int`` (statements, transaction control left out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError, scan

ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE = "AccessShareLock", "RowShareLock", "RowExclusiveLock"
SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE = "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock"
EXCLUSIVE, ACCESS_EXCLUSIVE = "ExclusiveLock", "AccessExclusiveLock"
LOCKS = (ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)

OPS = ("create-table", "drop-table", "rename-table", "set-schema", "add-column", "drop-column", "rename-column",
       "type-change", "set-not-null", "drop-not-null", "set-default", "drop-default", "add-constraint",
       "drop-constraint", "validate-constraint", "rename-constraint", "alter-table", "create-index", "drop-index",
       "insert", "update", "delete", "truncate", "lock", "enum-add-value", "enum-rename-value", "create-enum",
       "rename-type", "drop-type", "select")


class Table(NamedTuple):
    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def sql(self) -> str:
        return ".".join(quote_ident(p) for p in (self.schema, self.name) if p)


def quote_ident(name: str) -> str:
    """An identifier as PostgreSQL reads it back unchanged: bare when it may be, quoted otherwise."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name.upper() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


_RESERVED = {"ALL", "ANALYSE", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "ASYMMETRIC", "BOTH", "CASE", "CAST",
             "CHECK", "COLLATE", "COLUMN", "CONSTRAINT", "CREATE", "CURRENT_CATALOG", "CURRENT_DATE", "CURRENT_ROLE",
             "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER", "DEFAULT", "DEFERRABLE", "DESC", "DISTINCT", "DO",
             "ELSE", "END", "EXCEPT", "FALSE", "FETCH", "FOR", "FOREIGN", "FROM", "GRANT", "GROUP", "HAVING", "IN",
             "INITIALLY", "INTERSECT", "INTO", "LATERAL", "LEADING", "LIMIT", "LOCALTIME", "LOCALTIMESTAMP", "NOT",
             "NULL", "OFFSET", "ON", "ONLY", "OR", "ORDER", "PLACING", "PRIMARY", "REFERENCES", "RETURNING", "SELECT",
             "SESSION_USER", "SOME", "SYMMETRIC", "SYSTEM_USER", "TABLE", "THEN", "TO", "TRAILING", "TRUE", "UNION",
             "UNIQUE", "USER", "USING", "VARIADIC", "WHEN", "WHERE", "WINDOW", "WITH", "USER"}


@dataclass(frozen=True)
class Action:
    """One thing a statement does, e.g. ``Action("drop-column", Table(None, "users"), "email")``."""

    op: str
    table: Table | None
    name: str | None = None  # a column, index, constraint or enum value
    new: str | None = None  # the new name of a rename
    values: tuple[str, ...] = ()  # an enum's values
    flags: frozenset = frozenset()  # "not-null", "default", "primary-key", "concurrently", "not-valid", "if-exists", contype


@dataclass
class Statement:
    text: str
    kind: str
    line: int = 1
    tables: tuple[Table, ...] = ()
    locks: tuple[tuple[Table, str], ...] = ()
    actions: tuple[Action, ...] = ()
    ends_transaction: bool = False
    begins_transaction: bool = False
    outside_transaction: bool = False
    error: str | None = None
    node: object = field(default=None, repr=False, compare=False)

    @property
    def lock(self) -> str | None:
        """The strongest table lock the statement takes (``pg_locks.mode``), None when it takes none."""
        return max((lk for _, lk in self.locks), key=LOCKS.index, default=None)

    @property
    def parsed(self) -> bool:
        return self.kind != "UNPARSED"


# -- splitting ---------------------------------------------------------------------------------

_PSQL_META = re.compile(r"(?m)^[ \t]*\\.*$")
_LEADING = re.compile(r"\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*", re.S)


def statements(sql: str) -> list[Statement]:
    """Every statement of a script, in order. Never raises on bad SQL: see ``Statement.error``."""
    # psql meta-commands (\set, \connect) are not SQL: blank them, keeping every offset
    text = _PSQL_META.sub(lambda m: " " * len(m.group()), sql or "")
    out: list[Statement] = []
    for start, end in _slices(text):
        piece = text[start:end]
        lead = _LEADING.match(piece).end()
        body = piece[lead:].rstrip().rstrip(";").rstrip()
        if not body:
            continue
        line = text.count("\n", 0, start + lead) + 1
        out.extend(_read(body, line))
    return out


def _slices(text: str) -> list[tuple[int, int]]:
    """Where each statement lies: at every ``;`` token of PostgreSQL's scanner (so ``$$`` bodies and
    quoted text stay whole), except inside a ``BEGIN ATOMIC ... END`` function body."""
    try:
        tokens = scan(text)
    except Exception:  # the scanner gave up (an unterminated quote): split at semicolons ending a line
        out, pos = [], 0
        for m in re.finditer(r";[ \t]*(?:\n|$)", text):
            out.append((pos, m.start()))
            pos = m.end()
        return out + [(pos, len(text))]
    out, pos, atomic, previous = [], 0, 0, ""
    for tok in tokens:
        if tok.name == "ATOMIC" and previous == "BEGIN_P":
            atomic += 1
        elif atomic and tok.name == "CASE":
            atomic += 1
        elif atomic and tok.name == "END_P":
            atomic -= 1
        elif tok.name == "ASCII_59" and not atomic:
            out.append((pos, tok.start))
            pos = tok.end + 1
        previous = tok.name
    return out + [(pos, len(text))]


def _read(body: str, line: int) -> list[Statement]:
    try:
        raws = parse_sql(body)
    except ParseError as exc:
        return [Statement(body, "UNPARSED", line, error=str(exc.args[0]) if exc.args else str(exc))]
    except Exception as exc:  # libpg_query refusing input is never a crash of swrun's
        return [Statement(body, "UNPARSED", line, error=str(exc))]
    if len(raws) == 1:
        return [_describe(raws[0].stmt, body, line)]
    data = body.encode()
    out = []
    for raw in raws:
        end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(data)
        piece = data[raw.stmt_location:end].decode(errors="replace").strip()
        out.append(_describe(raw.stmt, piece, line + data.count(b"\n", 0, raw.stmt_location)))
    return out


# -- describing one statement ---------------------------------------------------------------------


def _rv(rv) -> Table:
    return Table(rv.schemaname or None, rv.relname)


def _names(items) -> Table:
    parts = [getattr(n, "sval", str(n)) for n in (items or ())]
    if not parts:
        return Table(None, "?")
    return Table(parts[-2] if len(parts) >= 2 else None, parts[-1])


def _consts(items) -> tuple[str, ...]:
    return tuple(getattr(n, "sval", str(n)) for n in (items or ()))


def _column(coldef) -> tuple[str, frozenset]:
    flags = set()
    if coldef.is_not_null:
        flags.add("not-null")
    if getattr(coldef, "raw_default", None) is not None or getattr(coldef, "identity", "\x00") not in ("\x00", "", None) \
            or getattr(coldef, "generated", "\x00") not in ("\x00", "", None):
        flags.add("default")
    for c in coldef.constraints or ():
        ct = c.contype
        if ct == enums.ConstrType.CONSTR_NOTNULL:
            flags.add("not-null")
        elif ct == enums.ConstrType.CONSTR_PRIMARY:
            flags |= {"not-null", "primary-key"}
        elif ct in (enums.ConstrType.CONSTR_DEFAULT, enums.ConstrType.CONSTR_IDENTITY, enums.ConstrType.CONSTR_GENERATED):
            flags.add("default")
    typ = coldef.typeName
    if typ is not None and _consts(typ.names)[-1:] in (("serial",), ("bigserial",), ("smallserial",), ("serial4",), ("serial8",), ("serial2",)):
        flags.add("default")
    return coldef.colname, frozenset(flags)


def _fk_targets(constraints) -> list[Table]:
    return [_rv(c.pktable) for c in constraints or () if c.contype == enums.ConstrType.CONSTR_FOREIGN and c.pktable is not None]


_AT = enums.AlterTableType
_AT_LOCK = {  # PostgreSQL's AlterTableGetLockLevel, for the subcommands migrations use
    _AT.AT_SetStatistics: SHARE_UPDATE_EXCLUSIVE, _AT.AT_ClusterOn: SHARE_UPDATE_EXCLUSIVE,
    _AT.AT_DropCluster: SHARE_UPDATE_EXCLUSIVE, _AT.AT_SetOptions: SHARE_UPDATE_EXCLUSIVE,
    _AT.AT_ResetOptions: SHARE_UPDATE_EXCLUSIVE, _AT.AT_ValidateConstraint: SHARE_UPDATE_EXCLUSIVE,
    _AT.AT_AttachPartition: SHARE_UPDATE_EXCLUSIVE, _AT.AT_DetachPartitionFinalize: SHARE_UPDATE_EXCLUSIVE,
    _AT.AT_EnableTrig: SHARE_ROW_EXCLUSIVE, _AT.AT_DisableTrig: SHARE_ROW_EXCLUSIVE,
    _AT.AT_EnableTrigAll: SHARE_ROW_EXCLUSIVE, _AT.AT_DisableTrigAll: SHARE_ROW_EXCLUSIVE,
    _AT.AT_EnableTrigUser: SHARE_ROW_EXCLUSIVE, _AT.AT_DisableTrigUser: SHARE_ROW_EXCLUSIVE,
    _AT.AT_EnableAlwaysTrig: SHARE_ROW_EXCLUSIVE, _AT.AT_EnableReplicaTrig: SHARE_ROW_EXCLUSIVE,
}


def _alter_table(node, locks: dict, actions: list) -> None:
    t = _rv(node.relation)
    flags = frozenset({"if-exists"} if node.missing_ok else ())
    strongest = None
    for cmd in node.cmds or ():
        st = cmd.subtype
        lock = _AT_LOCK.get(st, ACCESS_EXCLUSIVE)
        if st == _AT.AT_AddColumn and cmd.def_ is not None:
            name, cflags = _column(cmd.def_)
            actions.append(Action("add-column", t, name, flags=cflags | flags))
            for ref in _fk_targets(cmd.def_.constraints):
                _lock(locks, ref, SHARE_ROW_EXCLUSIVE)
        elif st == _AT.AT_DropColumn:
            actions.append(Action("drop-column", t, cmd.name, flags=flags | ({"if-exists"} if cmd.missing_ok else set())))
        elif st == _AT.AT_AlterColumnType:
            actions.append(Action("type-change", t, cmd.name, flags=flags))
        elif st == _AT.AT_SetNotNull:
            actions.append(Action("set-not-null", t, cmd.name, flags=flags))
        elif st == _AT.AT_DropNotNull:
            actions.append(Action("drop-not-null", t, cmd.name, flags=flags))
        elif st == _AT.AT_ColumnDefault:
            actions.append(Action("set-default" if cmd.def_ is not None else "drop-default", t, cmd.name, flags=flags))
        elif st == _AT.AT_AddConstraint and cmd.def_ is not None:
            c = cmd.def_
            kind = c.contype.name.replace("CONSTR_", "").lower()
            cflags = {kind} | ({"not-valid"} if c.skip_validation else set())
            if c.contype == enums.ConstrType.CONSTR_FOREIGN:
                lock = SHARE_ROW_EXCLUSIVE  # on both tables
                if c.pktable is not None:
                    _lock(locks, _rv(c.pktable), SHARE_ROW_EXCLUSIVE)
            actions.append(Action("add-constraint", t, c.conname, flags=frozenset(cflags) | flags))
        elif st == _AT.AT_DropConstraint:
            actions.append(Action("drop-constraint", t, cmd.name, flags=flags))
        elif st == _AT.AT_ValidateConstraint:
            actions.append(Action("validate-constraint", t, cmd.name, flags=flags))
        else:
            actions.append(Action("alter-table", t, cmd.name, flags=flags | {st.name}))
        strongest = lock if strongest is None or LOCKS.index(lock) > LOCKS.index(strongest) else strongest
    _lock(locks, t, strongest or ACCESS_EXCLUSIVE)


def _lock(locks: dict, table: Table, lock: str) -> None:
    held = locks.get(table)
    if held is None or LOCKS.index(lock) > LOCKS.index(held):
        locks[table] = lock


def _relations(node) -> Iterable:
    """Every RangeVar under a node (FROM lists, subqueries, USING): the tables a DML statement reads."""
    from pglast.visitors import Visitor

    found = []

    class _V(Visitor):
        def visit_RangeVar(self, ancestors, rv):
            found.append(rv)

    _V()(node)
    return found


_TX = enums.TransactionStmtKind


def _describe(node, text: str, line: int) -> Statement:
    locks: dict[Table, str] = {}
    actions: list[Action] = []
    kind = type(node).__name__.removesuffix("Stmt").upper()
    ends = begins = outside = False
    if isinstance(node, ast.TransactionStmt):
        k = node.kind
        kind = {_TX.TRANS_STMT_BEGIN: "BEGIN", _TX.TRANS_STMT_START: "BEGIN", _TX.TRANS_STMT_COMMIT: "COMMIT",
                _TX.TRANS_STMT_ROLLBACK: "ROLLBACK", _TX.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
                _TX.TRANS_STMT_RELEASE: "RELEASE", _TX.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO SAVEPOINT",
                _TX.TRANS_STMT_PREPARE: "PREPARE TRANSACTION", _TX.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
                _TX.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED"}.get(k, "TRANSACTION")
        ends = k in (_TX.TRANS_STMT_COMMIT, _TX.TRANS_STMT_ROLLBACK, _TX.TRANS_STMT_PREPARE)
        begins = k in (_TX.TRANS_STMT_BEGIN, _TX.TRANS_STMT_START) or (ends and bool(node.chain))
        outside = k in (_TX.TRANS_STMT_COMMIT_PREPARED, _TX.TRANS_STMT_ROLLBACK_PREPARED)
    elif isinstance(node, ast.CreateStmt):
        kind = "CREATE TABLE"
        t = _rv(node.relation)
        locks[t] = ACCESS_EXCLUSIVE
        actions.append(Action("create-table", t, flags=frozenset({"if-not-exists"} if node.if_not_exists else ())))
        for elt in node.tableElts or ():
            cons = elt.constraints if isinstance(elt, ast.ColumnDef) else [elt] if isinstance(elt, ast.Constraint) else []
            for ref in _fk_targets(cons):
                if ref != t:
                    _lock(locks, ref, SHARE_ROW_EXCLUSIVE)
    elif isinstance(node, ast.CreateTableAsStmt):
        kind = "CREATE TABLE AS" if node.objtype == enums.ObjectType.OBJECT_TABLE else "CREATE MATERIALIZED VIEW"
        t = _rv(node.into.rel)
        locks[t] = ACCESS_EXCLUSIVE
        actions.append(Action("create-table", t))
        for rv in _relations(node.query):
            _lock(locks, _rv(rv), ACCESS_SHARE)
    elif isinstance(node, ast.AlterTableStmt):
        kind = {enums.ObjectType.OBJECT_INDEX: "ALTER INDEX", enums.ObjectType.OBJECT_SEQUENCE: "ALTER SEQUENCE",
                enums.ObjectType.OBJECT_VIEW: "ALTER VIEW", enums.ObjectType.OBJECT_MATVIEW: "ALTER MATERIALIZED VIEW",
                enums.ObjectType.OBJECT_TYPE: "ALTER TYPE"}.get(node.objtype, "ALTER TABLE")
        _alter_table(node, locks, actions)
        if kind != "ALTER TABLE":
            actions = [a for a in actions if a.op == "alter-table"] or actions
    elif isinstance(node, ast.RenameStmt):
        rt = node.renameType
        if rt in (enums.ObjectType.OBJECT_TABLE, enums.ObjectType.OBJECT_COLUMN, enums.ObjectType.OBJECT_TABCONSTRAINT) \
                and node.relation is not None:
            t = _rv(node.relation)
            kind = "ALTER TABLE"
            locks[t] = ACCESS_EXCLUSIVE
            op = {enums.ObjectType.OBJECT_TABLE: "rename-table", enums.ObjectType.OBJECT_COLUMN: "rename-column"}.get(rt, "rename-constraint")
            actions.append(Action(op, t, node.subname, node.newname))
        elif rt == enums.ObjectType.OBJECT_TYPE:
            kind = "ALTER TYPE"
            actions.append(Action("rename-type", _names(node.object), new=node.newname))
        elif node.relation is not None:
            kind = f"ALTER {rt.name.removeprefix('OBJECT_')} RENAME"
            locks[_rv(node.relation)] = ACCESS_EXCLUSIVE
        else:
            kind = f"ALTER {rt.name.removeprefix('OBJECT_')} RENAME"
    elif isinstance(node, ast.AlterObjectSchemaStmt) and node.relation is not None:
        kind = "ALTER TABLE"
        t = _rv(node.relation)
        locks[t] = ACCESS_EXCLUSIVE
        actions.append(Action("set-schema", t, new=node.newschema))
    elif isinstance(node, ast.DropStmt):
        rt = node.removeType
        what = rt.name.removeprefix("OBJECT_").replace("_", " ")
        kind = f"DROP {what}" + (" CONCURRENTLY" if node.concurrent else "")
        flags = frozenset({"if-exists"} if node.missing_ok else ())
        if rt in (enums.ObjectType.OBJECT_TABLE, enums.ObjectType.OBJECT_VIEW, enums.ObjectType.OBJECT_MATVIEW,
                  enums.ObjectType.OBJECT_FOREIGN_TABLE):
            for obj in node.objects or ():
                t = _names(obj)
                locks[t] = ACCESS_EXCLUSIVE
                if rt == enums.ObjectType.OBJECT_TABLE:
                    actions.append(Action("drop-table", t, flags=flags))
        elif rt == enums.ObjectType.OBJECT_INDEX:
            outside = bool(node.concurrent)
            for obj in node.objects or ():
                actions.append(Action("drop-index", None, str(_names(obj)), flags=flags | ({"concurrently"} if node.concurrent else set())))
        elif rt in (enums.ObjectType.OBJECT_TYPE, enums.ObjectType.OBJECT_DOMAIN):
            for obj in node.objects or ():
                actions.append(Action("drop-type", _names(getattr(obj, "names", obj)), flags=flags))
    elif isinstance(node, ast.IndexStmt):
        kind = "CREATE INDEX CONCURRENTLY" if node.concurrent else "CREATE INDEX"
        t = _rv(node.relation)
        locks[t] = SHARE_UPDATE_EXCLUSIVE if node.concurrent else SHARE
        outside = bool(node.concurrent)
        flags = {"unique"} if node.unique else set()
        actions.append(Action("create-index", t, node.idxname, flags=frozenset(flags | ({"concurrently"} if node.concurrent else set()))))
    elif isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
        kind = {ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE", ast.MergeStmt: "MERGE"}[type(node)]
        t = _rv(node.relation)
        for rv in _relations(node):
            _lock(locks, _rv(rv), ACCESS_SHARE)
        locks[t] = ROW_EXCLUSIVE
        actions.append(Action(kind.lower() if kind != "MERGE" else "update", t))
    elif isinstance(node, ast.TruncateStmt):
        kind = "TRUNCATE"
        for rv in node.relations or ():
            locks[_rv(rv)] = ACCESS_EXCLUSIVE
            actions.append(Action("truncate", _rv(rv)))
    elif isinstance(node, ast.LockStmt):
        kind = "LOCK"
        mode = LOCKS[max(0, min(len(LOCKS), int(node.mode)) - 1)]
        for rv in node.relations or ():
            locks[_rv(rv)] = mode
            actions.append(Action("lock", _rv(rv), flags=frozenset({mode})))
    elif isinstance(node, ast.SelectStmt):
        kind = "SELECT"
        mode = ROW_SHARE if node.lockingClause else ACCESS_SHARE
        for rv in _relations(node):
            _lock(locks, _rv(rv), mode)
    elif isinstance(node, ast.AlterEnumStmt):
        kind = "ALTER TYPE RENAME VALUE" if node.oldVal else "ALTER TYPE ADD VALUE"
        t = _names(node.typeName)
        if node.oldVal:
            actions.append(Action("enum-rename-value", t, node.oldVal, node.newVal))
        else:
            actions.append(Action("enum-add-value", t, node.newVal, flags=frozenset({"if-not-exists"} if node.skipIfNewValExists else ())))
    elif isinstance(node, ast.CreateEnumStmt):
        kind = "CREATE TYPE AS ENUM"
        actions.append(Action("create-enum", _names(node.typeName), values=_consts(node.vals)))
    elif isinstance(node, ast.VariableSetStmt):
        kind = "RESET" if node.kind in (enums.VariableSetKind.VAR_RESET, enums.VariableSetKind.VAR_RESET_ALL) else "SET"
        if node.name == "transaction_isolation" or (node.kind == enums.VariableSetKind.VAR_SET_MULTI):
            kind = "SET TRANSACTION"
    elif isinstance(node, ast.CreateTrigStmt):
        kind = "CREATE TRIGGER"
        locks[_rv(node.relation)] = SHARE_ROW_EXCLUSIVE
    elif isinstance(node, ast.CommentStmt):
        kind = "COMMENT"
    elif isinstance(node, ast.VacuumStmt):
        kind = "VACUUM" if node.is_vacuumcmd else "ANALYZE"
        outside = bool(node.is_vacuumcmd)
        for rel in node.rels or ():
            if getattr(rel, "relation", None) is not None:
                locks[_rv(rel.relation)] = SHARE_UPDATE_EXCLUSIVE
    elif isinstance(node, ast.ReindexStmt):
        kind = "REINDEX"
        concurrently = any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
        outside = concurrently
        if node.relation is not None:
            locks[_rv(node.relation)] = SHARE_UPDATE_EXCLUSIVE if concurrently else SHARE
    elif isinstance(node, (ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt)):
        outside = True
    elif isinstance(node, ast.ViewStmt):
        kind = "CREATE VIEW"
    elif isinstance(node, ast.CreateFunctionStmt):
        kind = "CREATE FUNCTION"
    elif isinstance(node, ast.DoStmt):
        kind = "DO"
    elif isinstance(node, ast.CreateSeqStmt):
        kind = "CREATE SEQUENCE"
    elif isinstance(node, ast.CreateSchemaStmt):
        kind = "CREATE SCHEMA"
    elif isinstance(node, ast.CreateExtensionStmt):
        kind = "CREATE EXTENSION"
    return Statement(text, kind, line, tables=tuple(locks), locks=tuple(locks.items()), actions=tuple(actions),
                     ends_transaction=ends, begins_transaction=begins, outside_transaction=outside, node=node)


# -- helpers over scripts ------------------------------------------------------------------------

_VERSION_TABLES = {"alembic_version"}


def _all(sql_texts: Iterable[str] | str) -> list[Statement]:
    if isinstance(sql_texts, str):
        sql_texts = [sql_texts]
    return [s for text in sql_texts for s in statements(text)]


def created_tables(sql_texts: Iterable[str] | str) -> set[Table]:
    """Tables the SQL creates (``CREATE TABLE``, ``CREATE TABLE AS``)."""
    return {a.table for s in _all(sql_texts) for a in s.actions if a.op == "create-table"}


def touched_tables(sql_texts: Iterable[str] | str, created: Iterable = ()) -> list[Table]:
    """Tables the SQL locks beyond a reader's lock (alters, writes, indexes, references), without
    Alembic's version table, ``pg_enum`` and the ``created`` ones (Tables or bare names)."""
    skip = {str(c) for c in created} | {c.name if isinstance(c, Table) else str(c).split(".")[-1] for c in created}
    found: set[Table] = set()
    for s in _all(sql_texts):
        for t, lock in s.locks:
            if lock in (ACCESS_SHARE,) or t.name in _VERSION_TABLES or t.name == "pg_enum":
                continue
            if str(t) in skip or (t.schema is None and t.name in skip):
                continue
            found.add(t)
    return sorted(found, key=str)


def version_table(sql_texts: Iterable[str] | str) -> Table | None:
    """The table Alembic's offline SQL writes ``version_num`` to (``INSERT INTO x (version_num)`` /
    ``UPDATE x SET version_num``), as written there; None when the SQL never writes one."""
    for s in _all(sql_texts):
        node = s.node
        if isinstance(node, ast.InsertStmt) and any(getattr(c, "name", None) == "version_num" for c in node.cols or ()):
            return _rv(node.relation)
        if isinstance(node, ast.UpdateStmt) and any(getattr(c, "name", None) == "version_num" for c in node.targetList or ()):
            return _rv(node.relation)
    return None


def index_table(indexdef: str) -> str | None:
    """The (unqualified) table of a ``CREATE INDEX`` text such as ``pg_indexes.indexdef``; None if it is not one."""
    for s in statements(indexdef):
        if isinstance(s.node, ast.IndexStmt):
            return s.node.relation.relname
    return None


def transaction_blocks(sql: str) -> list[tuple[bool, str]]:
    """A script as ``(inside a transaction?, text)`` parts, split at its ``BEGIN``/``COMMIT``
    statements (Alembic renders an autocommit block offline as ``COMMIT;`` ... ``BEGIN;``).
    The texts are the statements, each ending in ``;``; comments between them are not kept."""
    out: list[tuple[bool, list[str]]] = []
    inside, fresh = False, True
    for s in statements(sql):
        if s.begins_transaction or s.ends_transaction:
            inside, fresh = s.begins_transaction, True
            continue
        if fresh or not out:
            out.append((inside, []))
            fresh = False
        out[-1][1].append(s.text + ";")
    return [(tx, "\n\n".join(parts)) for tx, parts in out]


def count(sql: str) -> int:
    """How many statements a script runs, transaction control (BEGIN/COMMIT/...) left out."""
    return sum(1 for s in statements(sql) if not (s.begins_transaction or s.ends_transaction))
