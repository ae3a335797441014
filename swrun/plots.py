"""Plots a record shows where people would rather look than read.

:func:`rehearsal_figure`: per revision, its time on the rehearsal's copy of the data and the
lock hold to expect in production, beside the transactions that would arrive during that hold
at the traffic the preflight measured. Built on matplotlib's Figure (no pyplot, no global
state); a notebook shows it as PNG, kept in the record.
"""

from __future__ import annotations


def rehearsal_figure(data: dict):
    """The rehearse step's ``data`` as a two-panel Figure, or None when it has no revisions."""
    rows = [r for r in (data or {}).get("revisions") or [] if isinstance(r, dict)]
    if not rows:
        return None
    from matplotlib.figure import Figure

    from .audit import _png_in_notebooks

    _png_in_notebooks()
    traffic = (data.get("activity") or {})
    tps = float(traffic.get("tps") or 0.0)
    labels = [f"{r['revision'][:12]} {str(r.get('description') or '')[:28]}" for r in rows][::-1]
    up = [float(r.get("up_seconds") or 0.0) for r in rows][::-1]
    hold = [float(r.get("hold_seconds") or 0.0) for r in rows][::-1]
    arriving = [float(r.get("transactions_in_hold") or 0.0) for r in rows][::-1]
    y = list(range(len(rows)))
    height = max(2.4, 0.42 * len(rows) + 1.4)
    fig = Figure(figsize=(10, height), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    bar = 0.38
    left.barh([i + bar / 2 for i in y], up, height=bar, color="#4c72b0", label="time on the copy (upgrade)")
    left.barh([i - bar / 2 for i in y], hold, height=bar, color="#c44e52", label="expected lock hold (blocks the application)")
    left.set_yticks(y, labels, fontsize="small")
    left.set_xlabel("seconds")
    left.set_title("time on the copy, and the lock hold to expect", fontsize="medium")
    right.barh(y, arriving, height=0.6, color="#dd8452", label="transactions arriving during the hold")
    right.set_xlabel("transactions")
    right.set_title("arriving while the lock is held", fontsize="medium")
    sessions = traffic.get("sessions")
    fig.suptitle(f"Rehearsal, per revision, against the traffic preflight measured: {tps:g} transactions/s"
                 + (f", {sessions} other session(s)" if sessions is not None else ""), fontsize="medium")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    for i, value in zip(y, arriving):
        right.text(value, i, f" {value:.1f}" if value < 10 else f" {value:.0f}", va="center", fontsize="x-small")
    if not any(arriving):
        right.text(0.5, 0.5, "no revision holds a blocking lock\nlong enough to queue a transaction",
                   ha="center", va="center", transform=right.transAxes, fontsize="small", color="#555555")
    return fig
