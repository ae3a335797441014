"""Production gates: what must be true before a production database is changed.

=================  ==================================================================  ===============
gate               passes when                                                          override
=================  ==================================================================  ===============
never              no finding breaks one of the guide's NEVER rules (every env)         acknowledge ID
staging            a successful staging deploy of the same migration set (same          staging
                   fingerprint: every revision file's name and sha256) reaching the
                   same target, as the record store's index has it, its record file
                   unchanged since it was indexed
danger             every ``danger`` finding is acknowledged                             acknowledge ID
locks              no other session holds a lock on a table the pending SQL touches     locks
long-transactions  no transaction open longer than the threshold                        long-transactions
disk               free space where the backup goes exceeds the database's size         -
backup             a verified backup from this same run (checked before the upgrade)    -
executed-sql       the rehearsal's executed SQL: its danger findings acknowledged; a    acknowledge ID
                   revision with neither offline nor executed SQL acknowledged
                   (``not-reviewed:<rev>``) (checked before the upgrade)
rehearsal          the same run rehearsed these migrations up, down and up on a         rehearsal
                   restored copy of its backup (checked before the upgrade)
=================  ==================================================================  ===============

A gate that blocks says why and what to do; an override is a runbook parameter
(``override_gates``), and the record keeps it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import sqlalchemy as sa

from ..errors import UsageError
from . import Finding, parse_ids

PRODUCTION = "production"
STAGING = "staging"
OVERRIDABLE = ("staging", "locks", "long-transactions", "rehearsal")


@dataclass
class Gate:
    gate: str
    result: str  # pass | blocked | overridden | n/a
    detail: str
    proceed: str = ""  # how to get past it, when it blocks

    def as_dict(self) -> dict:
        return {"gate": self.gate, "result": self.result, "detail": self.detail, "proceed": self.proceed}


def parse_overrides(text: str | None) -> list[str]:
    names = parse_ids(text)
    unknown = [n for n in names if n not in OVERRIDABLE]
    if unknown:
        raise UsageError(f"unknown gate(s) in override_gates: {', '.join(unknown)}",
                         hint=f"gates that can be overridden: {', '.join(OVERRIDABLE)}")
    return names


def apply_acknowledgements(findings: list[Finding], ids: Iterable[str], *, later: set[str] = frozenset(), split: bool = False):
    """Mark the named findings acknowledged; an id no finding has is an error (a typo must not pass).

    ``later``: revisions the rehearsal's executed SQL will review after this: an unknown id
    ``<rule>:<revision>[:...]`` naming one of them is deferred (returned second when ``split``),
    and checked against the rehearsal's findings before the upgrade (:func:`executed_gate`)."""
    ids = list(dict.fromkeys(ids))
    known = {f.id: f for f in findings}
    deferred = [i for i in ids if i not in known and len(i.split(":")) >= 2 and i.split(":")[1] in later]
    unknown = [i for i in ids if i not in known and i not in deferred]
    if unknown:
        close = [k for k in known if any(k.startswith(u.split(":")[0] + ":") for u in unknown)]
        hint = f"ids of this run's findings that come close: {', '.join(sorted(close)[:5])}" if close else \
            "acknowledge only ids listed in the guards section of this run's record"
        raise UsageError(f"unknown acknowledgement id(s): {', '.join(unknown)}", hint=hint)
    for i in ids:
        if i in known:
            known[i].acknowledged = True
    taken = [i for i in ids if i in known]
    return (taken, deferred) if split else taken


# -- what was not reviewed ----------------------------------------------------------------------

NOT_REVIEWED = "not-reviewed"
NO_OFFLINE_SQL = "no-offline-sql"


def not_reviewed(what: str, why: str) -> Finding:
    """A review that could not run (the lint, squawk, the SQL): a danger, never silence."""
    return Finding(f"{NOT_REVIEWED}:{what}", NOT_REVIEWED, "danger", f"not reviewed: {what}: {why}", source="swrun")


def no_offline_sql_findings(missing: Iterable[dict]) -> list[Finding]:
    """One finding per revision with no offline SQL (the preview's ``no_offline_sql``). The danger
    gate leaves them to the check before the upgrade: the rehearsal's executed SQL reviews such a
    revision; without it, production needs this id acknowledged."""
    out = []
    for m in missing:
        rev = m.get("revision")
        where = f" ({m['where']})" if m.get("where") else ""
        out.append(Finding(f"{NOT_REVIEWED}:{rev}", NO_OFFLINE_SQL, "danger",
                           f"no offline SQL{where}: {m.get('reason')}; the rehearsal's executed SQL is reviewed before the "
                           "upgrade, and without it production needs this acknowledged", revision=rev, source="swrun"))
    return out


def executed_gate(guards_data: dict, rehearse_data: dict | None) -> Gate:
    """Production, before the upgrade: the rehearsal's executed SQL as the danger gate sees the lint's.

    Blocks on a danger finding of the executed SQL nobody acknowledged (an acknowledgement of the
    lint's finding with the same id counts), on a revision with neither offline nor executed SQL
    not acknowledged (``not-reviewed:<revision>``), and on a deferred acknowledgement no executed
    finding has (a typo must not pass)."""
    rehearse_data = rehearse_data or {}
    findings = [Finding.from_dict(f) for f in guards_data.get("findings", [])]
    acked = {f.id for f in findings if f.acknowledged}
    deferred = list(guards_data.get("deferred_acknowledgements") or [])
    executed = [Finding.from_dict(f) for f in rehearse_data.get("executed_findings") or []]
    reviewed = set(rehearse_data.get("executed_revisions") or []) if not rehearse_data.get("executed_review_error") else set()
    open_danger = [f for f in executed if f.severity == "danger" and f.id not in acked and f.id not in deferred]
    unseen = [f for f in findings if f.rule == NO_OFFLINE_SQL and f.revision not in reviewed and not f.acknowledged]
    typos = [i for i in deferred if i not in {f.id for f in executed}]
    problems, proceed = [], []
    if open_danger:
        problems.append(f"{len(open_danger)} danger finding(s) in the SQL the rehearsal executed, not acknowledged: "
                        + ", ".join(f.id for f in open_danger))
        proceed.append(",".join(f.id for f in open_danger))
    if unseen:
        why = f" (the executed SQL was not reviewed: {rehearse_data['executed_review_error']})" \
            if rehearse_data.get("executed_review_error") else ""
        problems.append(f"no SQL reviewed for {', '.join(f.revision for f in unseen)}: no offline SQL, "
                        f"and no executed SQL from a rehearsal{why}")
        proceed.append(",".join(f.id for f in unseen))
    if typos:
        problems.append(f"acknowledged id(s) no finding of the executed SQL has: {', '.join(typos)}")
    if problems:
        return Gate("executed-sql", "blocked", "; ".join(problems),
                    ("review it, then acknowledge: --acknowledge " + ",".join(proceed)) if proceed else
                    "acknowledge only ids listed in this run's guards or rehearse section")
    counted = sum(1 for f in executed if f.severity == "danger")
    return Gate("executed-sql", "pass", f"{len(reviewed)} revision(s)' executed SQL reviewed; {counted} danger finding(s), all acknowledged"
                if counted else f"{len(reviewed)} revision(s)' executed SQL reviewed, no unacknowledged danger")


# -- the staging record ---------------------------------------------------------------------------


def staging_record(reports_dir: Path, fingerprint: str, reached: Callable[[list[str]], bool] = lambda after: True,
                   staging_env: str = STAGING) -> tuple[Path | None, dict | None, str]:
    """The newest successful staging deploy of this migration set whose final revision ``reached``
    accepts, as ``(record file, index entry, "")``; or ``(None, None, why)`` with the reason a
    record that claims one does not count.

    The index decides, not the files: a record file copied in, or edited after its run (a
    failed staging run marked succeeded), does not pass the gate. An entry counts while its own
    hash matches, its signature too when ``$SWRUN_RECORD_KEY`` is set, and its record file's
    sha256 is the one indexed.
    """
    from .. import store

    def wanted(e: dict) -> bool:
        return (e.get("environment") == staging_env and e.get("runbook") in ("deploy", "upgrade") and e.get("outcome") == "succeeded"
                and e.get("fingerprint") == fingerprint and reached(list(e.get("revision_after") or [])))

    reports_dir = Path(reports_dir)
    entries = store.read_index(reports_dir).entries if reports_dir.is_dir() else []
    key = store.record_key()
    why = ""
    for e in reversed(entries):  # appended as runs end: newest last
        if not wanted(e):
            continue
        who = f"staging run {e.get('run_id')}"
        faults = store.entry_faults(e, key)
        if faults:
            why = why or (f"{who}: its index entry was edited" if "edited" in faults
                          else f"{who}: its index entry is not signed with this store's key (${store.KEY_ENV})")
            continue
        try:
            path = store.record_file(reports_dir, e)
            if store.file_sha256(path) == e.get("record_sha256"):
                return path, e, ""
            why = why or f"{who}: its record {e.get('record')} was edited after it was indexed"
        except FileNotFoundError:
            why = why or f"{who}: its record {e.get('record')} is missing"
        except (store.StoreError, OSError) as exc:  # a path outside the reports directory, unreadable
            why = why or f"{who}: its record cannot be read: {exc}"
    if not why:
        why = _unindexed_claim(reports_dir / staging_env, wanted)
    return None, None, why


def _unindexed_claim(root: Path, wanted: Callable[[dict], bool]) -> str:
    """A record file under ``root`` that claims what the index does not: named, to say why it does not count."""
    if not root.is_dir():
        return ""
    for path in sorted(root.rglob("*.ipynb"), key=lambda p: p.name, reverse=True):  # names start with the UTC time
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("swrun", {})
        except (OSError, ValueError):
            continue
        if wanted({**meta, "environment": meta.get("environment", root.name)}):
            return f"{path} claims one, but the record store's index has no such run: the file was added or edited"
    return ""


# -- sessions -----------------------------------------------------------------------------------


def lock_holders(conn, tables: list[str]) -> list[dict]:
    """Other sessions holding (or waiting for) a lock on any of ``tables`` in this database."""
    if not tables:
        return []
    rows = conn.execute(sa.text(
        "select l.pid, a.usename, a.application_name, c.relname, l.mode, l.granted, "
        "coalesce(left(a.query, 80), '') as query "
        "from pg_locks l join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace "
        "join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'relation' and l.pid <> pg_backend_pid() "
        "and l.database = (select oid from pg_database where datname = current_database()) "
        "and c.relname = any(:tables) and n.nspname = any(current_schemas(false)) "
        "order by l.pid, c.relname"), {"tables": list(tables)}).mappings().all()
    return [dict(r) for r in rows]


def long_transactions(conn, seconds: float) -> list[dict]:
    rows = conn.execute(sa.text(
        "select pid, usename, state, extract(epoch from now() - xact_start)::float as age_s, left(query, 80) as query "
        "from pg_stat_activity where xact_start is not null and pid <> pg_backend_pid() and datname = current_database() "
        "and now() - xact_start > make_interval(secs => :s) order by age_s desc"), {"s": float(seconds)}).mappings().all()
    return [dict(r) for r in rows]


def disk(conn, backup_dir: Path) -> tuple[bool, str]:
    size = int(conn.exec_driver_sql("select pg_database_size(current_database())").scalar())
    directory = Path(backup_dir)
    probe = directory if directory.exists() else next((p for p in directory.resolve().parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    return free > size, f"{free / 2**30:.1f} GiB free in {probe}, database is {size / 2**20:.1f} MiB"


# -- evaluation ---------------------------------------------------------------------------------


def evaluate(*, environment: str, findings: list[Finding], overrides: list[str], fingerprint: str | None,
             target: Iterable[str], reports_dir: Path, reached: Callable[[list[str]], bool] = lambda after: True,
             conn=None, tables: Iterable[str] = (), long_tx_s: float = 300.0,
             backup_dir: Path = Path("backups"), staging_env: str = STAGING) -> list[Gate]:
    """Every gate for this run, in the order of the table above.

    ``reached(revision_after)``: whether a staging run that ended there ran every revision this run will.
    """
    gates: list[Gate] = []
    never = [f for f in findings if f.never and not f.acknowledged]
    gates.append(Gate("never", "blocked" if never else "pass",
                      "; ".join(f"{f.id} ({f.never})" for f in never) if never else "no finding breaks a NEVER rule",
                      "restore the file(s) as the finding says; to go on regardless, acknowledge the id(s)" if never else ""))
    if environment != PRODUCTION:
        for name in ("staging", "danger", "locks", "long-transactions", "disk", "rehearsal", "executed-sql"):
            gates.append(Gate(name, "n/a", f"production only (this is {environment})"))
        return gates
    target = list(target)

    # staging
    path, entry, why = staging_record(reports_dir, fingerprint, reached, staging_env) if fingerprint else (None, None, "")
    if path is not None:
        gates.append(Gate("staging", "pass", f"staging run {entry.get('run_id')} succeeded with this migration set "
                                             f"({entry.get('finished') or entry.get('started')}): {path}"))
    else:
        detail = (f"no successful {staging_env} deploy of this migration set (fingerprint {str(fingerprint)[:12]}...) "
                  f"reaching {', '.join(target) or '<base>'} in the record store under {Path(reports_dir)}"
                  + (f" ({why})" if why else ""))
        overridden = "staging" in overrides
        gates.append(Gate("staging", "overridden" if overridden else "blocked", detail,
                          "" if overridden else "deploy the same files to staging first: swrun deploy --env staging; "
                          "or override: --override-gates staging"))

    # danger
    # a revision with no offline SQL is the executed-SQL gate's, checked before the upgrade
    danger = [f for f in findings if f.severity == "danger" and not f.acknowledged and not f.never and f.rule != NO_OFFLINE_SQL]
    acked = [f for f in findings if f.severity == "danger" and f.acknowledged]
    if danger:
        gates.append(Gate("danger", "blocked", f"{len(danger)} danger finding(s) not acknowledged: {', '.join(f.id for f in danger)}",
                          f"review them, then acknowledge each: --acknowledge {','.join(f.id for f in danger)}"))
    else:
        gates.append(Gate("danger", "pass", f"{len(acked)} danger finding(s), all acknowledged" if acked else "no danger finding"))

    # sessions
    if conn is not None:
        holders = lock_holders(conn, list(tables))
        if holders:
            who = "; ".join(f"pid {h['pid']} ({h['usename']}, {h['application_name'] or '-'}) {h['mode']} on {h['relname']}"
                            f"{'' if h['granted'] else ' (waiting)'}" for h in holders[:5])
            gates.append(Gate("locks", "overridden" if "locks" in overrides else "blocked",
                              f"{len({h['pid'] for h in holders})} other session(s) lock tables the migrations touch: {who}",
                              "" if "locks" in overrides else "wait for them to finish (or end them), then run again; "
                              "or override: --override-gates locks"))
        else:
            gates.append(Gate("locks", "pass", f"no other session locks {', '.join(tables)}" if tables else "the SQL touches no existing table"))
        old = long_transactions(conn, long_tx_s)
        if old:
            who = "; ".join(f"pid {r['pid']} ({r['usename']}) open {r['age_s']:.0f}s: {r['query']}" for r in old[:5])
            gates.append(Gate("long-transactions", "overridden" if "long-transactions" in overrides else "blocked",
                              f"{len(old)} transaction(s) open longer than {long_tx_s:g}s: {who}",
                              "" if "long-transactions" in overrides else "wait for them to end (DDL would queue behind them "
                              "and block every query after it); or override: --override-gates long-transactions"))
        else:
            gates.append(Gate("long-transactions", "pass", f"none open longer than {long_tx_s:g}s"))
        ok, detail = disk(conn, backup_dir)
        gates.append(Gate("disk", "pass" if ok else "blocked", detail, "" if ok else "free space where the backup goes (--backup-dir)"))
    gates.append(Gate("backup", "pending", "checked before the upgrade: a verified backup from this run"))
    gates.append(Gate("executed-sql", "pending", "checked before the upgrade: danger findings in the SQL the rehearsal "
                                                 "executed, and revisions with no SQL reviewed at all, acknowledged"))
    gates.append(Gate("rehearsal", "overridden" if "rehearsal" in overrides else "pending",
                      "checked before the upgrade: this run's rehearsal of these migrations (up, down, up) on a copy of its backup"
                      + ("; overridden: the upgrade may run without it" if "rehearsal" in overrides else "")))
    return gates


def blocking(gates: list[Gate]) -> list[Gate]:
    return [g for g in gates if g.result == "blocked"]
