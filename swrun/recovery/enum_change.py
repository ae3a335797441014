"""The guide's enum change procedure, generated as a migration from a mapping old -> new.

"PostgreSQL enums are created once and are immutable" (the guide). To change values you
must: 1. create a new enum type, 2. add a new column with the new type, 3. migrate data
from the old column to the new column, 4. drop the old column, 5. rename the new column,
6. drop the old enum type. swrun writes exactly that as a migration (and then gives the
new type the old type's name, so models and code keep naming it as before):

* :func:`plan` (read-only): the enum, the column and every value with its row count; the
  mapping must name every value the type has (an unmapped value is an error, never a NULL);
* :func:`generate`: the migration file in the project's versions directory, its data copy
  a ``CASE`` over the mapping, its ``downgrade()`` the reverse mapping when the mapping is
  one-to-one (otherwise it raises, naming the values that merged); the same mapping on the
  same parent always gives the same revision, so the file generated on staging is reused;
* the deploy's guards, backup and upgrade steps run it;
* :func:`check`: the per-value row counts after, against the counts before through the
  mapping, and a hash over every row's key and value: every row kept, each with its
  mapped value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql  # noqa: F401 - the identifier quoting below

from ..config import RunContext
from ..database import connect
from ..errors import StateError, UsageError
from ..guards import count as count_findings, frame as findings_frame, lint
from ..migrations import Project
from ..result import StepResult, Timer

PROCEDURE = ("1. create a new enum type", "2. add a new column with the new type",
             "3. migrate data from the old column to the new column", "4. drop the old column",
             "5. rename the new column", "6. drop the old enum type")
NULL = "<NULL>"


# -- the mapping ------------------------------------------------------------------------------------


def parse_mapping(text: str | list[str]) -> list[tuple[str, str]]:
    """``"DRIVER=COLLECTOR,ADMIN"`` (or a list of such items) -> [(old, new), ...]; a bare value maps to itself."""
    items = text if isinstance(text, list) else [x for x in (text or "").split(",")]
    pairs: list[tuple[str, str]] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        old, eq, new = item.partition("=")
        old, new = old.strip(), (new.strip() if eq else old.strip())
        if not old or not new or "=" in new:
            raise UsageError(f"bad mapping item {item!r}", hint="write OLD=NEW, or VALUE to keep a value as it is")
        if len(new.encode()) > 63:
            raise UsageError(f"enum value {new!r} is longer than PostgreSQL's 63 bytes")
        if any(o == old for o, _ in pairs):
            raise UsageError(f"value {old!r} is mapped twice")
        pairs.append((old, new))
    if not pairs:
        raise UsageError("no mapping given", hint="--map OLD=NEW for each value of the enum (VALUE alone keeps it)")
    return pairs


def ordered_unique(values) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


# -- what the database holds -------------------------------------------------------------------------


@dataclass
class Target:
    enum_schema: str
    enum: str
    values: list[str]
    table_schema: str
    table: str
    column: str
    not_null: bool
    default: str | None  # the enum value of the column's default, if it has one
    indexes: list[str] = field(default_factory=list)  # CREATE INDEX statements on the column
    key: list[str] = field(default_factory=list)  # primary key columns
    not_null_name: str | None = None  # PostgreSQL 18 names NOT NULL constraints: kept across the change
    counts: dict[str, int] = field(default_factory=dict)  # value -> rows (NULL for nulls)

    def as_dict(self) -> dict:
        return asdict(self)


def _split(name: str) -> tuple[str | None, str]:
    schema, _, rest = name.rpartition(".")
    return (schema or None), rest


def inspect(conn, enum: str, table: str, column: str) -> Target:
    """The enum type, the column of that type, and the rows per value; UsageError when something does not fit."""
    q = lambda sql, **kw: conn.execute(sa.text(sql), kw)  # noqa: E731
    e_schema, e_name = _split(enum)
    types = q("select t.oid, n.nspname, t.typtype from pg_type t join pg_namespace n on n.oid = t.typnamespace "
              "where t.typname = :name and (cast(:schema as text) is null or n.nspname = :schema) "
              "order by n.nspname = 'public' desc, n.nspname", name=e_name, schema=e_schema).all()
    types = [t for t in types if t.typtype == "e"]
    if not types:
        raise UsageError(f"no enum type {enum!r} in the database")
    if len(types) > 1 and not e_schema:
        raise UsageError(f"enum {enum!r} exists in several schemas ({', '.join(t.nspname for t in types)})",
                         hint="name it as schema.type")
    type_oid, type_schema = types[0].oid, types[0].nspname
    values = list(q("select enumlabel from pg_enum where enumtypid = :oid order by enumsortorder", oid=type_oid).scalars())
    rel = q("select c.oid, n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.oid = to_regclass(:t) and c.relkind in ('r', 'p')", t=table).first()
    if rel is None:
        raise UsageError(f"no table {table!r} in the database")
    col = q("select a.attnum, a.atttypid, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) as default from pg_attribute a "
            "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
            "where a.attrelid = :rel and a.attname = :col and a.attnum > 0 and not a.attisdropped",
            rel=rel.oid, col=column).first()
    if col is None:
        raise UsageError(f"table {rel.relname} has no column {column!r}")
    if col.atttypid != type_oid:
        raise UsageError(f"column {rel.relname}.{column} is of type {col.type}, not the enum {e_name}")
    users = q("select n.nspname || '.' || c.relname || '.' || a.attname from pg_attribute a "
              "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
              "join pg_type t on t.oid = :oid where a.atttypid in (t.oid, t.typarray) and a.attnum > 0 "
              "and not a.attisdropped and c.relkind in ('r', 'p', 'v', 'm', 'c') "
              "and not (a.attrelid = :rel and a.attname = :col) order by 1", oid=type_oid, rel=rel.oid, col=column).scalars().all()
    if users:
        raise UsageError(f"enum {e_name} is used by {', '.join(users)} too: the procedure changes one column and drops "
                         "the old type", hint="change those columns first, or write the migration by hand")
    views = q("select distinct v.relname from pg_depend d join pg_rewrite r on r.oid = d.objid "
              "join pg_class v on v.oid = r.ev_class where d.refobjid = :rel and d.refobjsubid = :num "
              "and v.oid <> :rel", rel=rel.oid, num=col.attnum).scalars().all()
    if views:
        raise UsageError(f"views use {rel.relname}.{column} ({', '.join(views)}): dropping the old column would fail",
                         hint="drop and recreate the views around the change, by hand")
    constraints = q("select conname from pg_constraint where conrelid = :rel and :num = any(conkey) and contype <> 'n'",
                    rel=rel.oid, num=col.attnum).scalars().all()
    if constraints:
        raise UsageError(f"constraints use {rel.relname}.{column} ({', '.join(constraints)}): the procedure would drop them",
                         hint="write this change by hand")
    indexes = q("select pg_get_indexdef(i.indexrelid) from pg_index i where i.indrelid = :rel "
                "and (:num = any(i.indkey) or pg_get_indexdef(i.indexrelid) ~ :pattern) order by 1",
                rel=rel.oid, num=col.attnum, pattern=rf"\m{re.escape(column)}\M").scalars().all()
    for definition in indexes:
        if "'" in definition:
            raise UsageError(f"an index on {rel.relname}.{column} names values ({definition}): it cannot be recreated as it is",
                             hint="write this change by hand")
    default = None
    if col.default:
        match = re.fullmatch(r"'((?:[^']|'')*)'::[\w.\"]+", col.default)
        if not match:
            raise UsageError(f"the default of {rel.relname}.{column} ({col.default}) is not a plain enum value")
        default = match.group(1).replace("''", "'")
    key = list(q("select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
                 "where i.indrelid = :rel and i.indisprimary order by array_position(i.indkey, a.attnum)", rel=rel.oid).scalars())
    not_null_name = q("select conname from pg_constraint where conrelid = :rel and contype = 'n' and conkey = array[cast(:num as int2)]",
                      rel=rel.oid, num=col.attnum).scalar()
    ident = sa.dialects.postgresql.dialect().identifier_preparer.quote
    qualified = f"{ident(rel.nspname)}.{ident(rel.relname)}"
    counts = {(v if v is not None else NULL): int(n) for v, n in
              conn.exec_driver_sql(f"select cast({ident(column)} as text), count(*) from {qualified} group by 1").all()}
    return Target(enum_schema=type_schema, enum=e_name, values=values, table_schema=rel.nspname, table=rel.relname,
                  column=column, not_null=bool(col.attnotnull), default=default, indexes=list(indexes), key=key,
                  counts=counts, not_null_name=not_null_name)


def validate(target: Target, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The mapping in the enum's order; UsageError for a value it does not know or one it leaves unmapped."""
    unknown = [old for old, _ in pairs if old not in target.values]
    if unknown:
        raise UsageError(f"{', '.join(unknown)} {'is not a value' if len(unknown) == 1 else 'are not values'} of enum "
                         f"{target.enum} (its values: {', '.join(target.values)})")
    mapping = dict(pairs)
    unmapped = [v for v in target.values if v not in mapping]
    if unmapped:
        rows = sum(target.counts.get(v, 0) for v in unmapped)
        raise UsageError(f"the mapping leaves {', '.join(unmapped)} of enum {target.enum} unmapped ({rows} row(s) hold "
                         f"{'it' if len(unmapped) == 1 else 'them'})",
                         hint=f"map every value: --map {unmapped[0]}=NEW, or --map {unmapped[0]} to keep it")
    return {v: mapping[v] for v in target.values}


def invertible(mapping: dict[str, str]) -> bool:
    return len(set(mapping.values())) == len(mapping)


# -- the migration --------------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return sa.dialects.postgresql.dialect().identifier_preparer.quote(name)


def _qualified(schema: str, name: str) -> str:
    return _ident(name) if schema == "public" else f"{_ident(schema)}.{_ident(name)}"


def _lit(value: str) -> str:
    # op.execute() wraps the string in text(): a colon would start a bind parameter
    return "'" + value.replace("'", "''").replace(":", "\\:") + "'"


def statements(target: Target, mapping: dict[str, str], new_type: str, new_values: list[str]) -> list[tuple[str, str]]:
    """(comment, SQL) of the six steps, from the values of ``mapping``'s keys to ``new_values``."""
    table = _qualified(target.table_schema, target.table)
    old_type, tmp_type = _qualified(target.enum_schema, target.enum), _qualified(target.enum_schema, new_type)
    col, tmp_col = _ident(target.column), _ident(f"{target.column}_new")
    cases = " ".join(f"WHEN {_lit(old)} THEN {_lit(new)}" for old, new in mapping.items())
    out = [
        ("1. create a new enum type", f"CREATE TYPE {tmp_type} AS ENUM ({', '.join(_lit(v) for v in new_values)})"),
        ("2. add a new column with the new type", f"ALTER TABLE {table} ADD COLUMN {tmp_col} {tmp_type}"),
        ("3. migrate data from the old column to the new column, through the mapping",
         f"UPDATE {table} SET {tmp_col} = CAST(CASE CAST({col} AS text) {cases} END AS {tmp_type})"),
        ("   every row that had a value has its mapped value",
         f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM {table} WHERE {col} IS NOT NULL AND {tmp_col} IS NULL) THEN "
         f"RAISE EXCEPTION {_lit(f'enum change of {target.table}.{target.column} stopped, a row holds a value the mapping does not cover')}; "
         "END IF; END $$"),
    ]
    if target.not_null:
        out.append(("   the old column is NOT NULL: so is the new one", f"ALTER TABLE {table} ALTER COLUMN {tmp_col} SET NOT NULL"))
    out += [
        ("4. drop the old column", f"ALTER TABLE {table} DROP COLUMN {col}"),
        ("5. rename the new column", f"ALTER TABLE {table} RENAME COLUMN {tmp_col} TO {col}"),
    ]
    if target.not_null_name:
        name = _lit(target.not_null_name)
        out.append(("   the NOT NULL constraint keeps its name (PostgreSQL 18 names them; older servers skip this)",
                    "DO $$ DECLARE c text; BEGIN "
                    "SELECT con.conname INTO c FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid "
                    f"AND a.attnum = con.conkey[1] WHERE con.conrelid = CAST({_lit(table)} AS regclass) AND con.contype = 'n' "
                    f"AND a.attname = {_lit(target.column)}; "
                    f"IF c IS NOT NULL AND c <> {name} THEN "
                    f"EXECUTE 'ALTER TABLE ' || {_lit(table)} || ' RENAME CONSTRAINT ' || quote_ident(c) || ' TO ' || quote_ident({name}); "
                    "END IF; END $$"))
    if target.default is not None:
        out.append(("   the old column's default, mapped", f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {_lit(mapping[target.default])}"))
    for definition in target.indexes:
        out.append(("   the old column's index, recreated", definition.replace(":", "\\:")))
    out += [
        ("6. drop the old enum type", f"DROP TYPE {old_type}"),
        ("   and give the new type the old type's name", f"ALTER TYPE {tmp_type} RENAME TO {_ident(target.enum)}"),
    ]
    return out


def _body(steps: list[tuple[str, str]]) -> str:
    lines = []
    for comment, sql in steps:
        lines.append(f"    # {comment.strip()}" if not comment.startswith("   ") else f"    #    {comment.strip()}")
        lines.append(f"    op.execute({sql!r})")
    return "\n".join(lines)


def revision_id(target: Target, mapping: dict[str, str], down_revision: str) -> str:
    """The same change on the same parent is the same revision: staging's file is production's."""
    key = json.dumps([target.enum_schema, target.enum, target.table_schema, target.table, target.column,
                      list(mapping.items()), down_revision])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def render(target: Target, mapping: dict[str, str], revision: str, down_revision: str) -> str:
    new_values = ordered_unique(mapping.values())
    tmp_type = f"{target.enum}_new"
    changed = {o: n for o, n in mapping.items() if o != n}
    title = f"change enum {target.enum}: " + (", ".join(f"{o} -> {n}" for o, n in changed.items()) or "same values")
    title = title.replace("\\", "/").replace('"', "'")
    width = max(len(o) for o in mapping)
    table = "\n".join(f"    {o.ljust(width)} -> {n}" for o, n in mapping.items())
    spec = {"enum": target.enum, "table": target.table, "column": target.column, "mapping": mapping,
            "old_values": list(target.values), "new_values": new_values}
    up = _body(statements(target, mapping, tmp_type, new_values))
    if invertible(mapping):
        reverse = {n: o for o, n in mapping.items()}
        back = Target(**{**target.as_dict(), "values": new_values,
                         "default": mapping[target.default] if target.default is not None else None})
        down_doc = "The reverse mapping (the mapping is one-to-one), through the same six steps."
        down = _body(statements(back, reverse, tmp_type, list(target.values)))
    else:
        merged = {n: [o for o, m in mapping.items() if m == n] for n in new_values}
        merged = {n: olds for n, olds in merged.items() if len(olds) > 1}
        said = "; ".join(f"{', '.join(olds)} all became {n}" for n, olds in merged.items())
        down_doc = "No reverse: the mapping is not one-to-one."
        message = (f"cannot downgrade {revision}: the enum change of {target.table}.{target.column} is not one-to-one "
                   f"({said}): the old values cannot be told apart again; restore the backup taken before the change")
        down = f"    raise RuntimeError({message!r})"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f'''"""{title}

The guide's enum change procedure, generated by `swrun enum-change` (PostgreSQL enums are
immutable: a value cannot be renamed or removed in place):
{chr(10).join("  " + s for s in PROCEDURE)}
  and the new type takes the old type's name.

Mapping of {target.table}.{target.column} (old -> new):
{table}

Revision ID: {revision}
Revises: {down_revision}
Create Date: {now}

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = {revision!r}
down_revision: Union[str, Sequence[str], None] = {down_revision!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# what swrun generated this from (swrun enum-change reads it back)
ENUM_CHANGE = {json.dumps(spec, indent=4)}


def upgrade() -> None:
    """{title}."""
{up}


def downgrade() -> None:
    """{down_doc}"""
{down}
'''


def spec_of(path: Path) -> dict | None:
    """The ``ENUM_CHANGE`` a generated file records, or None."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ENUM_CHANGE" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def _same_change(spec: dict | None, enum: str, table: str, column: str, pairs: list[tuple[str, str]]) -> bool:
    return bool(spec) and spec.get("enum") == _split(enum)[1] and spec.get("table") == _split(table)[1] \
        and spec.get("column") == column and spec.get("mapping") == dict(pairs)


# -- the steps --------------------------------------------------------------------------------------------


def plan(ctx: RunContext, *, enum: str, table: str, column: str, mapping: str) -> StepResult:
    """Read-only: the enum, the column, the rows per value, the mapping checked; where the migration goes."""
    for name, value in (("enum", enum), ("table", table), ("column", column)):
        if not (value or "").strip():
            raise UsageError(f"the enum change needs --{name}")
    pairs = parse_mapping(mapping)
    project = ctx.project
    with Timer() as t:
        if len(project.heads) > 1:
            raise StateError(f"the project has {len(project.heads)} heads ({', '.join(project.heads)})",
                             hint=f"merge them first: alembic merge -m 'merge heads' {' '.join(project.heads)}")
        head = project.heads[0] if project.heads else None
        current = project.current(ctx.url)
        project.check_current(current)
        existing = None
        parent = head
        if head and _same_change(spec_of(project.file_of(head)), enum, table, column, pairs):
            parent = (project.revisions[head].down_revision or None)
            if tuple(current) == (head,):
                raise StateError(f"this enum change is revision {head} ({project.file_of(head).name}), already applied")
            existing = head
        if tuple(current) != ((parent,) if parent else ()):
            raise StateError(f"the database is at {', '.join(current) or '<base>'}, not at head {parent}: the enum change "
                             "goes on top of head", hint="deploy the pending revisions first: swrun deploy")
        with connect(ctx.engine) as conn:
            target = inspect(conn, enum, table, column)
            ordered = validate(target, pairs)
            if existing and spec_of(project.file_of(existing)).get("old_values") != target.values:
                raise StateError(f"{project.file_of(existing).name} was generated for the values "
                                 f"{', '.join(spec_of(project.file_of(existing))['old_values'])}; the database's {target.enum} has "
                                 f"{', '.join(target.values)}")
            taken = conn.execute(sa.text("select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace "
                                         "where t.typname = :n and n.nspname = :s"),
                                 {"n": f"{target.enum}_new", "s": target.enum_schema}).first()
            column_taken = conn.execute(sa.text("select 1 from pg_attribute where attrelid = to_regclass(:t) and attname = :c "
                                                "and not attisdropped"),
                                        {"t": f"{_ident(target.table_schema)}.{_ident(target.table)}", "c": f"{column}_new"}).first()
            fingerprint = row_fingerprint(conn, target, ordered)
        if taken:
            raise UsageError(f"a type {target.enum}_new already exists (a leftover of an earlier attempt?)",
                             hint=f"drop it if nothing uses it: DROP TYPE {target.enum}_new")
        if column_taken:
            raise UsageError(f"table {target.table} already has a column {column}_new")
    rows = [{"value": v, "rows": target.counts.get(v, 0), "maps to": ordered[v],
             "": "" if ordered[v] == v else "changes"} for v in target.values]
    if target.counts.get(NULL):
        rows.append({"value": NULL, "rows": target.counts[NULL], "maps to": NULL, "": ""})
    new_values = ordered_unique(ordered.values())
    result = StepResult("enum-plan", seconds=t.seconds)
    result.data = {"target": target.as_dict(), "mapping": ordered, "new_values": new_values, "parent": parent,
                   "existing_revision": existing, "invertible": invertible(ordered), "rows": sum(target.counts.values()),
                   "fingerprint": fingerprint, "key": target.key}
    result.tables[f"{target.table}.{target.column} per value, before"] = pd.DataFrame(rows, columns=["value", "rows", "maps to", ""])
    changes = [f"{o} -> {n}" for o, n in ordered.items() if o != n]
    result.summary = (f"enum {target.enum} ({', '.join(target.values)}) -> ({', '.join(new_values)}) on "
                      f"{target.table}.{target.column}; changes: {', '.join(changes) or 'none'}; rows per value: "
                      + ", ".join(f"{r['value']} {r['rows']}" for r in rows)
                      + ("" if invertible(ordered) else "; not one-to-one: the downgrade will refuse"))
    if not target.key:
        result.outcome = "warning"
        result.summary += f"; {target.table} has no primary key: rows are checked by their counts only"
    return result


def generate(ctx: RunContext, planned: StepResult, *, rev_id: str = "") -> StepResult:
    """Write the migration (or find the one generated before for the same change) and review it."""
    project = ctx.project
    data = planned.data
    target = Target(**data["target"])
    mapping = data["mapping"]
    parent = data["parent"]
    with Timer() as t:
        existing = data.get("existing_revision")
        if existing:
            path, revision, reused = project.file_of(existing), existing, True
        else:
            revision = rev_id.strip() or revision_id(target, mapping, parent or "")
            if revision in project.revisions:
                raise UsageError(f"revision {revision} already exists ({project.file_of(revision).name})",
                                 hint="choose another --rev-id")
            directory = project.file_of(parent).parent if parent else project.version_dirs()[0]
            slug = re.sub(r"[^a-z0-9]+", "_", f"change enum {target.enum}".lower()).strip("_")
            path = directory / f"{revision}_{slug}.py"
            if path.exists():
                raise UsageError(f"{path} exists already")
            from ..records import write_atomic  # a half-written migration must never be found by Alembic

            write_atomic(path, render(target, mapping, revision, parent), mode=0o644)
            reused = False
        fresh = Project.load(project.ini_path)  # the new file is part of the graph now
        if revision not in fresh.revisions or fresh.heads != (revision,):
            raise StateError(f"{path.name} did not become the project's only head (heads: {', '.join(fresh.heads)})")
        findings = lint.lint_file(path, revision, lint.EnumState({target.enum: list(target.values)}))
    result = StepResult("enum-generate", seconds=t.seconds)
    result.data = {"revision": revision, "file": str(path), "reused": reused, "findings": [f.as_dict() for f in findings]}
    result.tables["review (swrun's rules)"] = findings_frame(findings).drop(columns=["status", "file"])
    result.code = {path.name: path.read_text(encoding="utf-8")}
    verb = "reused" if reused else "wrote"
    result.summary = (f"{verb} {path.name} (revision {revision}, on {parent or '<base>'}); review: {len(findings)} finding(s) "
                      f"({count_findings(findings)})")
    return result


def row_fingerprint(conn, target: Target, mapping: dict[str, str] | None = None) -> dict:
    """Rows, and a hash summed over every row's key and value (the value mapped, when ``mapping`` is given).

    Equal before (mapped) and after: every row is still there, each with its mapped value.
    """
    table = f"{_ident(target.table_schema)}.{_ident(target.table)}"
    col = f"cast({_ident(target.column)} as text)"
    value = f"(cast(:new as text[]))[array_position(cast(:old as text[]), {col})]" if mapping else col
    key = "concat_ws('|', " + ", ".join(f"cast({_ident(k)} as text)" for k in target.key) + ")" if target.key else "''"
    sql = (f"select count(*), coalesce(sum(cast(cast('x' || substr(md5({key} || '=' || coalesce({value}, '{NULL}')), 1, 15) "
           f"as bit(60)) as bigint)), 0) from {table}")
    params = {"old": list(mapping), "new": list(mapping.values())} if mapping else {}
    rows, digest = conn.execute(sa.text(sql), params).one()
    return {"rows": int(rows), "hash": str(digest) if target.key else None}


def check(ctx: RunContext, planned: StepResult, generated: StepResult | None = None) -> StepResult:
    """After the upgrade: every value's rows where the mapping sends them, every row kept with its mapped value."""
    data = planned.data
    before = Target(**data["target"])
    mapping: dict[str, str] = data["mapping"]
    new_values: list[str] = data["new_values"]
    with Timer() as t:
        with connect(ctx.engine) as conn:
            after = inspect(conn, before.enum if before.enum_schema == "public" else f"{before.enum_schema}.{before.enum}",
                            f"{_ident(before.table_schema)}.{_ident(before.table)}", before.column)
            fingerprint = row_fingerprint(conn, Target(**{**after.as_dict(), "key": before.key}))
    checks: list[dict] = []

    def add(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "result": "pass" if passed else "failed", "detail": detail})

    rows = []
    for new in new_values:
        sources = [o for o, n in mapping.items() if n == new]
        expected = sum(before.counts.get(o, 0) for o in sources)
        got = after.counts.get(new, 0)
        rows.append({"value": new, "from": ", ".join(sources), "rows before": expected, "rows after": got,
                     "result": "ok" if got == expected else "MISMATCH"})
    if before.counts.get(NULL) or after.counts.get(NULL):
        rows.append({"value": NULL, "from": NULL, "rows before": before.counts.get(NULL, 0),
                     "rows after": after.counts.get(NULL, 0),
                     "result": "ok" if before.counts.get(NULL, 0) == after.counts.get(NULL, 0) else "MISMATCH"})
    strays = {v: n for v, n in after.counts.items() if v not in new_values and v != NULL}
    add("enum values", after.values == new_values, f"{after.enum}: {', '.join(after.values)} (expected {', '.join(new_values)})")
    bad = [r["value"] for r in rows if r["result"] != "ok"]
    add("rows per value", not bad and not strays,
        "every value's rows are where the mapping sends them" if not bad and not strays else f"mismatch for {', '.join(bad + list(strays))}")
    expected_fp = data["fingerprint"]
    add("row count", fingerprint["rows"] == expected_fp["rows"], f"{expected_fp['rows']} before, {fingerprint['rows']} after")
    if before.key:
        add("every row with its mapped value", fingerprint["hash"] == expected_fp["hash"],
            f"hash over ({', '.join(before.key)}, value) of every row: {'equal' if fingerprint['hash'] == expected_fp['hash'] else 'differs'} "
            "(before: the old value through the mapping)")
    add("NOT NULL kept", after.not_null == before.not_null, f"{'NOT NULL' if after.not_null else 'nullable'}")
    want_default = mapping[before.default] if before.default is not None else None
    add("default mapped", after.default == want_default, f"default {after.default!r} (expected {want_default!r})")
    failed = [c for c in checks if c["result"] != "pass"]
    result = StepResult("enum-check", outcome="failed" if failed else "ok", seconds=t.seconds)
    result.data = {"checks": checks, "per_value": rows, "counts_after": after.counts, "fingerprint_after": fingerprint}
    result.tables[f"{before.table}.{before.column} per value, before and after"] = pd.DataFrame(
        rows, columns=["value", "from", "rows before", "rows after", "result"])
    result.tables["checks"] = pd.DataFrame(checks, columns=["check", "result", "detail"])
    result.summary = (f"{len(checks) - len(failed)}/{len(checks)} checks passed; rows per value before -> after: "
                      + ", ".join((f"{r['from']} {r['rows before']} -> {r['value']} {r['rows after']}" if r["from"] != r["value"]
                                   else f"{r['value']} {r['rows before']} -> {r['rows after']}") + ("" if r["result"] == "ok" else " MISMATCH")
                                  for r in rows)
                      + f"; {fingerprint['rows']} row(s) in all")
    if failed:
        result.error = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    return result
