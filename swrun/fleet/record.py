"""The fleet's own record: runbooks/fleet.ipynb, executed with papermill on the coordinator.

Its metadata (``metadata["swrun"]``, runbook ``fleet``) lists every target (wave, outcome,
duration, revisions, the run id and file of its own record, or why it did not start); the
cells show the waves, the targets, the totals and a plot of progress over time. It is
written and indexed like any record (the coordinator is the index's one writer); a fleet
spans many databases, so it has no copy in any of them.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from pathlib import Path

from .. import records

RUNBOOK = "fleet"


def summary(result, spec, *, operator: str, fingerprint: str, started, finished, t0: float) -> dict:
    """What the fleet notebook shows: plain JSON, times relative to the fleet's start."""
    targets = []
    for r in result.targets:
        row = asdict(r)
        for key in ("started", "finished"):
            row[key] = None if row[key] is None else round(row[key] - t0, 3)
        targets.append(row)
    return {"fleet_run": result.fleet_run, "record_run": result.record_run, "environment": spec.environment,
            "operator": operator, "fleet_file": str(spec.path), "project": spec.project or "(the demo)",
            "fingerprint": fingerprint, "canary": spec.canary, "wave_size": spec.wave_size,
            "wave_length": spec.wave_length(), "max_failures": spec.max_failures, "max_per_server": spec.max_per_server,
            "started": started.isoformat(), "finished": finished.isoformat(), "stopped": result.stopped,
            "outcome": result.outcome, "targets": targets}


def write(result, spec, *, reports_dir: Path, operator: str, fingerprint: str, started, finished, t0: float, out) -> Path | None:
    """Execute the fleet notebook, write it and index it. Never raises for the notebook: a record
    whose cells failed is still written, with the targets in its metadata."""
    from .. import runner, store

    data = summary(result, spec, operator=operator, fingerprint=fingerprint, started=started, finished=finished, t0=t0)
    path = runner.runbook_path(RUNBOOK)
    record = records.record_path(reports_dir, spec.environment, RUNBOOK, result.record_run, started)
    from .report import summary_path

    summary_file = summary_path(reports_dir, result.record_run)
    with store.private_umask():
        Path(reports_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        records.write_atomic(summary_file, json.dumps(data, default=str))
    nb, error = runner.load_notebook(path), None
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    kernel = runner._Kernel({**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}, os.getcwd())
    try:
        nb = runner._parameterize(nb, {"run_id": result.record_run, "reports_dir": str(reports_dir)}, path, record)
        kernel.start(preload="import swrun.fleet.report")
        runner._execute(nb, path, kernel, 60, 600, runner._Progress(False))
    except Exception as exc:
        error = f"the fleet notebook did not run to the end: {runner._execution_error(exc, None, 600)}"
        out(f"swrun: warning: {error}")
    finally:
        kernel.stop()
        summary_file.unlink(missing_ok=True)
    message = error or (result.stopped or "")
    if result.signal:
        message = f"interrupted ({runner.signal_name(result.signal)})" + (f"; {message}" if message else "")
    meta = {"run_id": result.record_run, "runbook": RUNBOOK, "environment": spec.environment, "operator": operator,
            "host": socket.gethostname(), "started": started.isoformat(), "finished": finished.isoformat(),
            "outcome": result.outcome, "failed_step": None, "message": message, "database": None, "identity": {},
            "revision_before": None, "revision_after": None, "fingerprint": fingerprint,
            "fleet": {"run": result.fleet_run, "target": None, "wave": None},
            "parameters": {k: data[k] for k in ("fleet_file", "project", "canary", "wave_size", "max_failures", "max_per_server")},
            "targets": data["targets"]}
    nb.metadata[runner.NAMESPACE] = meta
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_markdown_cell(_banner(meta, data), metadata={"tags": ["swrun-banner"]}))
    text, _ = records.redact(records.notebook_text(nb), records.redaction.known())  # every secret this process met
    with store.private_umask():
        try:
            records.prepare_dir(record)
            records.write_atomic(record, text)
        except Exception as exc:
            out(f"swrun: error: the fleet record {record} could not be written: {getattr(exc, 'strerror', None) or exc}")
            return None
    entry = store.entry_body(meta, record.relative_to(reports_dir).as_posix(),
                             __import__("hashlib").sha256(text.encode("utf-8")).hexdigest())
    try:
        store.append(reports_dir, entry, store.record_key())
    except Exception as exc:
        out(f"swrun: warning: the fleet record was not added to {store.index_path(reports_dir)}: {exc}")
    return record


def _banner(meta: dict, data: dict) -> str:
    icon = {"succeeded": "✅", "failed": "❌", "interrupted": "⚠️"}.get(meta["outcome"], "")
    counts: dict[str, int] = {}
    for t in data["targets"]:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    lines = [f"# {icon} fleet run `{data['fleet_run']}`: {meta['outcome'].upper()}"]
    if meta.get("message"):
        lines.append(f"\n> {meta['message']}")
    lines.append("\n| | |\n|---|---|")
    for key, value in (("environment", meta["environment"]), ("operator", meta["operator"]), ("record run", meta["run_id"]),
                       ("started", meta["started"]), ("finished", meta["finished"]),
                       ("targets", ", ".join(f"{n} {s}" for s, n in counts.items()))):
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)
