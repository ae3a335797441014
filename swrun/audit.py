"""What ``runbooks/audit.ipynb`` calls: the deployment history from the record index, as tables and a plot.

Everything reads ``reports/index.jsonl`` through :mod:`swrun.store`; no record file is
opened except by :func:`integrity`, which runs the same checks as ``swrun reports verify``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import store
from .errors import UsageError

PERIODS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}
AUDIT_RUNBOOK = "audit"
# what a run was, by the name it is indexed under: only deployments count as deployments
KINDS = {"deploy": "deployment", "upgrade": "deployment", "enum_change": "deployment", "backup": "backup",
         "rehearse": "rehearsal", "stamp": "stamp", "rollback": "rollback", "start_fresh": "rollback",
         "doctor": "diagnosis", "audit": "audit"}
_COLUMNS = ["run_id", "kind", "runbook", "environment", "operator", "host", "started", "finished", "seconds", "outcome",
            "failed_step", "revision_before", "revision_after", "fingerprint", "database", "record"]


def _revs(value) -> str:
    return store._revs(value)


def load(reports_dir: str | Path = "reports", *, environments: str = "", since: str = "", until: str = "",
         include_audit: bool = False) -> pd.DataFrame:
    """One row per indexed run (audit runs left out unless asked), oldest first."""
    index = store.read_index(Path(reports_dir))
    entries = store.filter_entries(
        index.entries,
        since=store.parse_time(since) if since else None,
        until=store.parse_time(until, end=True) if until else None,
    )
    wanted = {e.strip() for e in environments.split(",") if e.strip()}
    rows = []
    for e in entries:
        if wanted and e.get("environment") not in wanted:
            continue
        if not include_audit and e.get("runbook") == AUDIT_RUNBOOK:
            continue
        db = e.get("database") or {}
        rows.append({
            "run_id": e["run_id"], "kind": kind_of(e), "runbook": e.get("runbook"), "environment": e.get("environment"),
            "operator": e.get("operator"), "host": e.get("host"), "started": e.get("started"), "finished": e.get("finished"),
            "outcome": e.get("outcome"), "failed_step": e.get("failed_step") or "",
            "revision_before": _revs(e.get("revision_before")), "revision_after": _revs(e.get("revision_after")),
            "fingerprint": e.get("fingerprint") or "", "database": f"{db.get('database')}@{db.get('host')}:{db.get('port')}",
            "record": e.get("record"),
        })
    df = pd.DataFrame(rows, columns=[c for c in _COLUMNS if c != "seconds"])
    df["started"] = pd.to_datetime(df["started"], utc=True, format="ISO8601")
    df["finished"] = pd.to_datetime(df["finished"], utc=True, format="ISO8601")
    df.insert(_COLUMNS.index("seconds"), "seconds", (df["finished"] - df["started"]).dt.total_seconds().round(1))
    return df.sort_values("started", kind="stable").reset_index(drop=True)


def kind_of(entry: dict) -> str:
    """deployment, backup, rehearsal, stamp, rollback, diagnosis, audit (or the runbook's name)."""
    runbook = str(entry.get("runbook") or "")
    return KINDS.get(runbook, runbook or "unknown")


def deployments(df: pd.DataFrame) -> pd.DataFrame:
    """Only the runs that deploy migrations (deploy, upgrade, enum change): not backups, stamps, rollbacks."""
    return df[df["kind"] == "deployment"].reset_index(drop=True) if "kind" in df else df


def other_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that are not deployments, per kind and environment: how many, how many failed, the last."""
    cols = ["kind", "environment", "runs", "failed", "last"]
    rest = df[df["kind"] != "deployment"] if "kind" in df else df.iloc[0:0]
    if rest.empty:
        return pd.DataFrame(columns=cols)
    grouped = rest.groupby(["kind", "environment"])
    out = pd.DataFrame({
        "runs": grouped.size(),
        "failed": grouped["outcome"].apply(lambda o: int((o != "succeeded").sum())),
        "last": grouped["started"].max().dt.strftime("%Y-%m-%d %H:%M"),
    }).reset_index()
    return out[cols]


def overview(df: pd.DataFrame) -> pd.DataFrame:
    """Deployments per environment: runs, succeeded, failed, interrupted, first and last run."""
    df = deployments(df)
    if df.empty:
        return pd.DataFrame(columns=["environment", "runs", "succeeded", "failed", "interrupted", "first", "last"])
    counts = pd.crosstab(df["environment"], df["outcome"])
    for outcome in ("succeeded", "failed", "interrupted"):
        if outcome not in counts:
            counts[outcome] = 0
    out = pd.DataFrame({
        "runs": df.groupby("environment").size(),
        "succeeded": counts["succeeded"], "failed": counts["failed"], "interrupted": counts["interrupted"],
        "first": df.groupby("environment")["started"].min().dt.strftime("%Y-%m-%d %H:%M"),
        "last": df.groupby("environment")["started"].max().dt.strftime("%Y-%m-%d %H:%M"),
    })
    return out.reset_index()


def per_period(df: pd.DataFrame, period: str = "week") -> pd.DataFrame:
    """Deployments per environment per day, week (ISO) or month."""
    fmt = _period_format(period)
    df = deployments(df)
    if df.empty:
        return pd.DataFrame()
    table = pd.crosstab(df["started"].dt.strftime(fmt).rename(period), df["environment"])
    table.columns.name = None
    return table


def shown(df: pd.DataFrame):
    """A table as the record shows it (text left-aligned, whole numbers whole, ``-`` for missing)."""
    from .display import Table

    return Table(df)


def _period_format(period: str) -> str:
    try:
        return PERIODS[period]
    except KeyError:
        raise UsageError(f"period must be one of {', '.join(PERIODS)}, not {period!r}") from None


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every run that did not succeed: when, where, who, which step."""
    cols = ["run_id", "started", "environment", "kind", "runbook", "operator", "outcome", "failed_step", "revision_before", "record"]
    bad = df[df["outcome"] != "succeeded"][cols].copy()
    bad["started"] = bad["started"].dt.strftime("%Y-%m-%d %H:%M")
    return bad.reset_index(drop=True)


def operators(df: pd.DataFrame) -> pd.DataFrame:
    """Who deployed: runs per operator and environment, failures, last run."""
    df = deployments(df)
    if df.empty:
        return pd.DataFrame(columns=["operator", "runs", "failed", "last"])
    table = pd.crosstab(df["operator"], df["environment"])
    table.columns.name = None
    table.insert(0, "runs", df.groupby("operator").size())
    table["failed"] = df[df["outcome"] != "succeeded"].groupby("operator").size().reindex(table.index, fill_value=0)
    table["last"] = df.groupby("operator")["started"].max().dt.strftime("%Y-%m-%d %H:%M")
    return table.sort_values("runs", ascending=False).reset_index()


def staging_to_production(df: pd.DataFrame, staging: str = "staging", production: str = "production") -> pd.DataFrame:
    """For each migration set (fingerprint): its first successful staging run, the first successful
    production run after it, and the time between. A production run with no staging run before it is flagged."""
    cols = ["fingerprint", "revision", "staging_run", "staging_at", "production_run", "production_at", "hours", "note"]
    df = deployments(df)
    ok = df[(df["outcome"] == "succeeded") & (df["fingerprint"] != "")]
    rows = []
    for fp, group in ok.groupby("fingerprint", sort=False):
        st = group[group["environment"] == staging]
        pr = group[group["environment"] == production]
        first_st = st.iloc[0] if len(st) else None
        after = pr[pr["started"] >= first_st["started"]] if first_st is not None else pr.iloc[0:0]
        first_pr = after.iloc[0] if len(after) else None
        note = ""
        if first_st is None and len(pr):
            first_pr, note = pr.iloc[0], "production without a staging run"
        elif first_pr is None and len(pr):
            note = "production only before staging"
        elif first_pr is None:
            note = "not yet in production"
        if first_st is None and first_pr is None:
            continue
        hours = ((first_pr["started"] - first_st["started"]).total_seconds() / 3600
                 if first_st is not None and first_pr is not None else None)
        revision = (first_pr if first_pr is not None else first_st)["revision_after"]
        rows.append({
            "fingerprint": fp[:12], "revision": revision,
            "staging_run": first_st["run_id"] if first_st is not None else "",
            "staging_at": first_st["started"].strftime("%Y-%m-%d %H:%M") if first_st is not None else "",
            "production_run": first_pr["run_id"] if first_pr is not None else "",
            "production_at": first_pr["started"].strftime("%Y-%m-%d %H:%M") if first_pr is not None else "",
            "hours": round(hours, 2) if hours is not None else None, "note": note,
        })
    return pd.DataFrame(rows, columns=cols)


def plot(df: pd.DataFrame, period: str = "week"):
    """Deployments per period, stacked by environment, failures marked; a matplotlib Figure."""
    from matplotlib.figure import Figure

    _png_in_notebooks()
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    table = per_period(df, period)
    df = deployments(df)
    if table.empty:
        ax.text(0.5, 0.5, "no runs in the index", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    bottom = None
    x = range(len(table.index))
    for env in table.columns:
        ax.bar(x, table[env], bottom=bottom, label=env)
        bottom = table[env] if bottom is None else bottom + table[env]
    fmt = _period_format(period)
    failed = df[df["outcome"] != "succeeded"]["started"].dt.strftime(fmt).value_counts()
    marks = [(i, bottom.iloc[i]) for i, p in enumerate(table.index) if p in failed.index]
    if marks:
        ax.scatter([m[0] for m in marks], [m[1] + 0.15 for m in marks], marker="v", color="black", label="has failures", zorder=3)
    ax.set_xticks(list(x), list(table.index), rotation=45 if len(table.index) > 8 else 0, ha="right" if len(table.index) > 8 else "center")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("runs")
    ax.set_title(f"deployments per {period}")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def _png_in_notebooks() -> None:
    """Let a notebook show a returned Figure as PNG (kept in the record), without pyplot."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        from matplotlib.figure import Figure

        shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png"))


def integrity(reports_dir: str | Path = "reports", *, database_url: str | None = None, ignore_run: str = "") -> pd.DataFrame:
    """``swrun reports verify`` as a table of problems (empty: verified). ``ignore_run`` is the
    auditing run itself, whose record is being written and is not indexed yet."""
    report = store.verify(Path(reports_dir), key=store.record_key(), database_url=database_url)
    problems = [p.as_dict() for p in report.problems if not (ignore_run and p.run_id == ignore_run and p.kind == "unindexed")]
    # this run's own record is the placeholder written at its start: it is running, not unfinished
    notes = [n for n in report.notes if not (ignore_run and n.startswith(f"incomplete: run {ignore_run} "))]
    status = "; ".join([*notes, f"database copy: {report.database}"])
    df = pd.DataFrame(problems, columns=["kind", "run_id", "line", "message"])
    df.attrs["status"] = status
    return df
