"""Read what a database holds: a schema snapshot, row counts, enum values, invalid indexes.

A snapshot is plain data (sets of tuples) so two of them can be diffed and stored in a record.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

# swrun's own bookkeeping lives in the "swrun" schema; it is not the application's schema.
_USER_SCHEMAS = "n.nspname not in ('pg_catalog', 'information_schema', 'swrun', 'pg_toast') and n.nspname not like 'pg_temp%%' and n.nspname not like 'pg_toast_temp%%'"


def snapshot(conn: Connection) -> dict[str, list[tuple]]:
    """Tables, columns (type, nullability, default), indexes, constraints and enum types."""
    q = conn.exec_driver_sql
    tables = q(f"""
        select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and {_USER_SCHEMAS} order by 1, 2""").all()
    columns = q(f"""
        select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped and {_USER_SCHEMAS}
        order by 1, 2, 3""").all()
    indexes = q(f"""
        select n.nspname, c.relname, pg_get_indexdef(i.indexrelid)
        from pg_index i join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace
        where {_USER_SCHEMAS} order by 1, 2""").all()
    constraints = q(f"""
        select n.nspname, t.relname, con.conname, pg_get_constraintdef(con.oid)
        from pg_constraint con join pg_class t on t.oid = con.conrelid join pg_namespace n on n.oid = t.relnamespace
        where {_USER_SCHEMAS} order by 1, 2, 3""").all()
    return {
        "tables": [tuple(r) for r in tables],
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
        "enums": [(schema, name, tuple(labels)) for schema, name, labels in enum_types(conn)],
    }


def enum_types(conn: Connection) -> list[tuple[str, str, list[str]]]:
    rows = conn.exec_driver_sql(f"""
        select n.nspname, t.typname, array_agg(e.enumlabel order by e.enumsortorder)
        from pg_type t join pg_enum e on e.enumtypid = t.oid join pg_namespace n on n.oid = t.typnamespace
        where {_USER_SCHEMAS} group by 1, 2 order by 1, 2""").all()
    return [(r[0], r[1], list(r[2])) for r in rows]


_KIND_KEYS = {"tables": 2, "columns": 3, "indexes": 2, "constraints": 3, "enums": 2}


def diff(before: dict, after: dict) -> list[dict]:
    """What changed between two snapshots: one row per added, removed or changed object."""
    rows = []
    for kind, key_len in _KIND_KEYS.items():
        old = {tuple(r[:key_len]): tuple(r) for r in map(tuple, before.get(kind, []))}
        new = {tuple(r[:key_len]): tuple(r) for r in map(tuple, after.get(kind, []))}
        for key in sorted(old.keys() | new.keys()):
            name = ".".join(str(k) for k in key)
            if key not in old:
                rows.append({"kind": kind[:-1] if kind != "indexes" else "index", "object": name, "change": "added", "before": "", "after": _detail(new[key], key_len, kind)})
            elif key not in new:
                rows.append({"kind": kind[:-1] if kind != "indexes" else "index", "object": name, "change": "removed", "before": _detail(old[key], key_len, kind), "after": ""})
            elif old[key] != new[key]:
                rows.append({"kind": kind[:-1] if kind != "indexes" else "index", "object": name, "change": "changed", "before": _detail(old[key], key_len, kind), "after": _detail(new[key], key_len, kind)})
    return rows


def _detail(row: tuple, key_len: int, kind: str = "") -> str:
    rest = row[key_len:]
    if kind == "columns" and len(rest) == 3:  # (type, attnotnull, default): labelled, never "text False"
        type_, not_null, default = rest
        return ", ".join([str(type_), "NOT NULL" if not_null else "nullable"] + ([f"default {default}"] if default else []))
    return " ".join(", ".join(x) if isinstance(x, (tuple, list)) else str(x) for x in rest)


def row_counts(conn: Connection) -> dict[str, int]:
    """Exact row counts of every application table."""
    tables = conn.exec_driver_sql(f"""
        select quote_ident(n.nspname) || '.' || quote_ident(c.relname), n.nspname || '.' || c.relname
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and not c.relispartition and {_USER_SCHEMAS} order by 2""").all()
    if not tables:
        return {}
    union = " union all ".join(f"select {i}, count(*) from {quoted}" for i, (quoted, _) in enumerate(tables))
    counts = dict(conn.exec_driver_sql(union).all())
    return {name: int(counts[i]) for i, (_, name) in enumerate(tables)}


def invalid_indexes(conn: Connection) -> list[str]:
    rows = conn.exec_driver_sql(f"""
        select n.nspname || '.' || c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_namespace n on n.oid = c.relnamespace where not i.indisvalid and {_USER_SCHEMAS} order by 1""").all()
    return [r[0] for r in rows]


def model_enums(metadata) -> dict[str, list[str]]:
    """Enum types the models declare, as PostgreSQL will store them (names for Python enums)."""
    import sqlalchemy as sa

    found: dict[str, list[str]] = {}
    if metadata is None:
        return found
    for table in metadata.tables.values():
        for column in table.columns:
            col_type = column.type
            if isinstance(col_type, sa.Enum) and col_type.name and getattr(col_type, "native_enum", True):
                found[col_type.name] = list(col_type.enums)
    return found
