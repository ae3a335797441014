"""``swrun fleet status``: each target's revision(s) and pending count, read-only, in parallel.

Read on the same Dask cluster a deploy uses (a LocalCluster by default): each worker
reads through the project's env.py, as ``swrun status`` does, one at a time per process
(Alembic's context is module-global).
"""

from __future__ import annotations

from .spec import FleetSpec


def collect(spec: FleetSpec, *, scheduler: str | None = None, workers: int | None = None) -> list[dict]:
    from . import cluster
    from .worker import target_status

    with cluster.client(scheduler, workers) as (client, _):
        futures = [client.submit(target_status, {"name": t.name, "project": spec.project, "env": {"url": t.url}},
                                 key=f"swrun-status-{t.name}-{i}", pure=False) for i, t in enumerate(spec.targets)]
        results = client.gather(futures, errors="skip")
    by_name = {r["name"]: r for r in results}
    rows = []
    for t in spec.targets:
        r = by_name.get(t.name) or {"current": None, "pending": None, "error": "the Dask task failed"}
        rows.append({"target": t.name, "database": t.redacted, "server": t.server, "current": r["current"],
                     "pending": r["pending"], "error": r["error"]})
    return rows


def text(rows: list[dict]) -> str:
    import pandas as pd

    shown = [{"target": r["target"], "database": r["database"],
              "current": "?" if r["current"] is None else (", ".join(x[:12] for x in r["current"]) or "<base>"),
              "pending": "?" if r["pending"] is None else r["pending"], "error": r["error"] or ""} for r in rows]
    return pd.DataFrame(shown, columns=["target", "database", "current", "pending", "error"]).to_string(index=False)
