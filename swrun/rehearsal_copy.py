"""The rehearsal's copy: the whole backup, or only the tables the pending migrations touch.

A rehearsal proves a migration on real rows. Most migrations touch one small table of a large
database, so restoring every row costs the size of the database for what a few tables decide.
The targeted copy:

1. restores the dump's schema (every table, index, constraint, no rows: ``pg_restore -L`` with
   every ``TABLE DATA`` entry left out but the version table's and swrun's own) and runs the
   pending upgrade there, reading inside each revision's transaction the relation locks it
   holds. PostgreSQL keeps a table lock to the end of the transaction, and a read takes
   ``AccessShareLock``, so a data migration that reads another table through ``op.get_bind()``
   shows too. The statements each revision executed are read as well (PostgreSQL's parser),
   for what an autocommit block ran outside the transaction the locks are read in;
2. closes that set over foreign keys: the tables a restored table references (its rows must
   find their parents, or the constraint would not restore), the children of a table a
   revision writes rows of (a DELETE or key UPDATE meets them through ON DELETE / RESTRICT),
   and partitions and inheritance children of a selected table (they hold its rows);
3. restores the full schema with the rows of that set only, and the rehearsal runs there.

It falls back to the full copy when a revision's locks could not be read (it failed on the
empty schema, or executed SQL swrun cannot parse), when the set holds most of the database
(more than ``FULL_SHARE`` of its size), or when asked; ``auto`` takes it at once for a database
under ``SMALL_BYTES``, which restores whole faster than the schema-only pass would run.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL

from . import embedded, progress

COPIES = ("full", "touched", "auto")
FULL_SHARE = 0.5  # a touched set larger than this share of the database: the full copy costs little more
# below this size restoring every row takes less than the schema-only pass that finds the touched tables (one
# more upgrade of every pending revision): auto takes the full copy
SMALL_BYTES = 64 * 2**20
ALWAYS = ("alembic_version",)  # rows every copy needs: Alembic reads where the copy is
OWN_SCHEMAS = ("swrun",)

_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


@dataclass
class Plan:
    """Which copy, which tables with rows, and why."""

    copy: str  # "full" or "touched"
    reason: str
    touched: dict[str, str] = field(default_factory=dict)  # table -> strongest lock any pending revision took
    tables: list[str] = field(default_factory=list)  # tables restored with their rows (touched: the closure)
    added: dict[str, str] = field(default_factory=dict)  # table -> why the closure added it
    bytes_selected: int | None = None
    bytes_total: int | None = None

    def as_dict(self) -> dict:
        return {"copy": self.copy, "reason": self.reason, "touched": self.touched, "tables": self.tables,
                "added": self.added, "bytes_selected": self.bytes_selected, "bytes_total": self.bytes_total}


# -- pg_restore: the one place it runs -------------------------------------------------------
def pg_restore(dump: Path, url: URL, args: list[str], *, jobs: int = 1, listing: Path | None = None,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """pg_restore ``dump`` into the database of ``url`` (``args``: the connection and what to leave
    out). ``jobs`` > 1: parallel, which pg_restore allows for a directory dump and a custom-format
    file; ``listing``: restore only the entries of that ``--list`` file (``-L``)."""
    from .kernel import die_with_parent  # pg_restore dies with the kernel, never left filling the scratch copy

    parallel = ["-j", str(jobs)] if jobs > 1 else []
    chosen = ["-L", str(listing)] if listing is not None else []
    cmd = [str(embedded.pg_tool("pg_restore")), *args, *parallel, *chosen, "-d", url.database or "", str(dump)]
    return progress.run_tool(cmd, url=url, env=env, preexec_fn=die_with_parent)  # items of the TOC, live


def toc(dump: Path) -> list[str]:
    """The dump's table of contents, as ``pg_restore --list`` prints it (one entry a line)."""
    proc = subprocess.run([str(embedded.pg_tool("pg_restore")), "--list", str(dump)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ValueError(lines[-1] if lines else f"pg_restore --list exited {proc.returncode}")
    return proc.stdout.splitlines()


_DATA = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+(TABLE DATA|MATERIALIZED VIEW DATA)\s+(.*)$")


def data_entries(lines: list[str], known: set[str]) -> dict[int, str | None]:
    """Line index -> table ("schema.name") of every row-carrying entry. A line shows ``schema name
    owner`` unquoted, so it is matched against the tables the schema-only copy has (a name with a
    space would split wrongly otherwise); None: no known table matches (kept out of a targeted copy)."""
    by_prefix = sorted(known, key=len, reverse=True)
    out: dict[int, str | None] = {}
    for i, line in enumerate(lines):
        m = _DATA.match(line)
        if not m:
            continue
        rest = m.group(2)
        out[i] = next((t for t in by_prefix if rest == t.replace(".", " ", 1) or rest.startswith(t.replace(".", " ", 1) + " ")), None)
    return out


def listing(lines: list[str], keep_rows: set[str], known: set[str]) -> str:
    """The ``-L`` file: every entry, but rows only for ``keep_rows`` (a left-out line starts with ';')."""
    data = data_entries(lines, known)
    return "\n".join(f";{line}" if i in data and data[i] not in keep_rows else line for i, line in enumerate(lines)) + "\n"


# -- what the copy holds -------------------------------------------------------------------------
_TABLES = """select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
and n.nspname not like 'pg_toast%%' and n.nspname not like 'pg_temp%%'"""
_EDGES = """select cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname, k.contype,
       coalesce((select string_agg(a.attname, ',') from pg_attribute a
                 where a.attrelid = k.parent and a.attnum = any(k.keys)), '')
from (select conrelid as child, confrelid as parent, 'f' as contype, confkey as keys from pg_constraint where contype = 'f'
      union all select inhrelid, inhparent, 'i', null::int2[] from pg_inherits) k
join pg_class c on c.oid = k.child join pg_namespace cn on cn.oid = c.relnamespace
join pg_class p on p.oid = k.parent join pg_namespace pn on pn.oid = p.relnamespace"""
_SIZES = """select n.nspname || '.' || c.relname, pg_table_size(c.oid) from pg_class c
join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm')
and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%%'"""


def catalog(conn) -> tuple[set[str], list[tuple]]:
    """The copy's tables and its edges: (child, parent, 'f' foreign key | 'i' partition/inheritance,
    the parent's columns the foreign key references)."""
    edges = [(c, p, k, frozenset(filter(None, cols.split(",")))) for c, p, k, cols in conn.exec_driver_sql(_EDGES).all()]
    return set(conn.exec_driver_sql(_TABLES).scalars()), edges


def sizes(conn) -> dict[str, int]:
    """Each table's size on the target (heap and TOAST, no indexes): what its rows cost to restore."""
    return {name: int(size) for name, size in conn.exec_driver_sql(_SIZES).all()}


def qualified(name: str) -> str:
    """A lock reading's name ('users', or 'schema.table') as 'schema.table'."""
    return name if "." in name else f"public.{name}"


@dataclass
class Written:
    """What the executed statements do to rows that a foreign key's child feels: tables rows are
    removed from (DELETE, TRUNCATE, MERGE), and the columns an UPDATE sets, per table."""

    removed: set[str] = field(default_factory=set)
    updated: dict[str, set[str]] = field(default_factory=dict)

    def reaches(self, parent: str, keys: frozenset) -> bool:
        """A child of ``parent`` through a key on ``keys`` meets these writes (ON DELETE / ON UPDATE, RESTRICT)."""
        return parent in self.removed or bool(self.updated.get(parent, set()) & keys) or (parent in self.updated and not keys)


def named_in(sql_texts: list[str], known: set[str]) -> tuple[set[str], Written, list[str]]:
    """Tables the executed statements name (unqualified names: every schema's table of that name),
    what they write (see ``Written``), and the statements that could not be parsed.
    Bound-parameter placeholders stand as ``$1`` for the parser."""
    from pglast import ast

    from . import sql as sqlread

    by_name: dict[str, set[str]] = {}
    for t in known:
        by_name.setdefault(t.split(".", 1)[1], set()).add(t)
    named, written, unparsed = set(), Written(), []
    for text in sql_texts:
        for st in sqlread.statements(_PLACEHOLDER.sub("$1", text).replace("%%", "%")):
            if not st.parsed:
                unparsed.append(st.text[:200])
                continue
            for t in {*st.tables, *(t for t, _ in st.locks)}:
                found = {f"{t.schema}.{t.name}"} & known if t.schema else by_name.get(t.name, set())
                named |= found
                for a in st.actions:
                    if a.table != t:
                        continue
                    if a.op in ("delete", "truncate") or (a.op == "update" and not isinstance(st.node, ast.UpdateStmt)):
                        written.removed |= found
                    elif a.op == "update":
                        cols = {getattr(r, "name", None) for r in st.node.targetList or ()} - {None}
                        for f in found:
                            written.updated.setdefault(f, set()).update(cols)
    return named, written, unparsed


def closure(touched: set[str], written: Written, edges: list[tuple], always: set[str]) -> tuple[list[str], dict[str, str]]:
    """The tables whose rows the copy needs, and why each one beyond ``touched`` is there."""
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    for child, parent, kind, keys in edges:
        parents.setdefault(child, set()).add(parent)  # an FK's target, or a partition's parent
        if kind == "i" or written.reaches(parent, keys):
            children.setdefault(parent, set()).add(child)
    added: dict[str, str] = {}
    chosen = set(touched) | set(always)
    todo = list(chosen)
    while todo:
        t = todo.pop()
        for p in parents.get(t, ()):
            if p not in chosen:
                added[p] = f"referenced by {t}"
                chosen.add(p)
                todo.append(p)
        for c in children.get(t, ()):
            if c not in chosen:
                kind = next((k for ch, pa, k, _ in edges if ch == c and pa == t), "f")
                added[c] = (f"partition or child of {t}" if kind == "i"
                            else f"references {t}, whose rows or keys a revision deletes or changes")
                chosen.add(c)
                todo.append(c)
    return sorted(chosen), added


def decide(asked: str, *, touched: dict[str, str], written: Written, unreadable: str | None,
           known: set[str], edges: list[tuple], table_sizes: dict[str, int]) -> Plan:
    """The copy for ``asked`` (touched | auto), from what the schema-only pass saw."""
    if unreadable:
        return Plan("full", f"full copy: {unreadable}", touched=touched)
    always = {t for t in known if t.split(".", 1)[1] in ALWAYS or t.split(".", 1)[0] in OWN_SCHEMAS}
    present = {t for t in touched if t in known}
    tables, added = closure(present, written, edges, always)
    total = sum(table_sizes.values())
    chosen = sum(table_sizes.get(t, 0) for t in tables)
    plan = Plan("touched", "", touched=touched, tables=tables, added=added, bytes_selected=chosen, bytes_total=total)
    share = chosen / total if total else 0.0
    if asked == "auto" and total and share > FULL_SHARE:
        plan.copy = "full"
        plan.reason = (f"full copy: the tables the migrations touch and their foreign keys need are {share:.0%} of the "
                       f"database ({chosen / 2**20:.0f} of {total / 2**20:.0f} MiB), more than {FULL_SHARE:.0%}")
        return plan
    plan.reason = (f"targeted copy: {len(present)} touched table(s) and {len(added)} more their foreign keys need, "
                   f"{chosen / 2**20:.1f} MiB of the database's {total / 2**20:.1f} MiB"
                   + (f" ({share:.1%})" if total else "") + ("; asked for --rehearse-copy touched" if asked == "touched" else ""))
    return plan
