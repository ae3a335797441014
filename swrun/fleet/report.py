"""What the fleet notebook's cells call: the fleet's summary as tables, totals and a plot."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

OUTCOMES = ("succeeded", "failed", "interrupted", "skipped", "not started")
COLORS = {"succeeded": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00", "skipped": "#9e9e9e", "not started": "#616161"}


def _wave(n) -> str:
    return "canary" if n == 0 else f"wave {n}"


def _revs(revs) -> str:
    if revs is None:
        return "?"
    return ", ".join(str(r)[:12] for r in revs) or "<base>"


@dataclass
class Fleet:
    data: dict

    @property
    def targets(self) -> list[dict]:
        return self.data["targets"]

    def header(self):
        from IPython.display import Markdown

        d = self.data
        size = d["wave_size"] if isinstance(d["wave_size"], int) else f"{d['wave_size']} ({d['wave_length']} targets)"
        lines = [f"**Fleet run `{d['fleet_run']}`** ({d['environment']}): {len(self.targets)} target(s), "
                 f"canary {d['canary']}, waves of {size}, max_failures {d['max_failures']}, max_per_server {d['max_per_server']}.",
                 f"\nProject {d['project']}, migration set `{(d['fingerprint'] or '')[:12]}`; operator {d['operator']}; "
                 f"{d['started']} → {d['finished']}."]
        if d.get("stopped"):
            lines.append(f"\n**{d['stopped']}**: the targets after it were not started.")
        return Markdown("\n".join(lines))

    def targets_table(self) -> pd.DataFrame:
        rows = [{"wave": _wave(t["wave"]), "target": t["name"], "server": t["server"], "outcome": t["status"]
                 + (f" at {t['failed_step']}" if t.get("failed_step") else ""),
                 "seconds": t["seconds"], "revision before": _revs(t["revision_before"]),
                 "revision after": _revs(t["revision_after"]), "run": t["run_id"] or "", "record": t["record"] or "",
                 "message": (t["message"] or "")[:300] if t["status"] != "succeeded" else ""} for t in self.targets]
        return pd.DataFrame(rows, columns=["wave", "target", "server", "outcome", "seconds", "revision before",
                                           "revision after", "run", "record", "message"])

    def waves_table(self) -> pd.DataFrame:
        rows = []
        for n in sorted({t["wave"] for t in self.targets}):
            ts = [t for t in self.targets if t["wave"] == n]
            ran = [t for t in ts if t["started"] is not None]
            row = {"wave": _wave(n), "targets": len(ts)}
            row.update({o: sum(1 for t in ts if t["status"] == o) for o in OUTCOMES})
            row["started (s)"] = min((t["started"] for t in ran), default=None)
            row["finished (s)"] = max((t["finished"] for t in ran if t["finished"] is not None), default=None)
            rows.append(row)
        return pd.DataFrame(rows, columns=["wave", "targets", *OUTCOMES, "started (s)", "finished (s)"])

    def totals(self) -> pd.DataFrame:
        ran = [t for t in self.targets if t["seconds"] is not None]
        secs = pd.Series([t["seconds"] for t in ran], dtype="float64")
        wall = max((t["finished"] for t in ran if t["finished"] is not None), default=0.0)
        rows = [{"total": o, "value": str(sum(1 for t in self.targets if t["status"] == o))} for o in OUTCOMES]
        rows += [{"total": "targets", "value": str(len(self.targets))},
                 {"total": "wall time of the deploys (s)", "value": f"{wall:.1f}"},
                 {"total": "sum of target durations (s)", "value": f"{secs.sum():.1f}"},
                 {"total": "median target duration (s)", "value": f"{secs.median():.1f}" if len(secs) else "-"},
                 {"total": "fleet outcome", "value": self.data["outcome"]}]
        return pd.DataFrame(rows, columns=["total", "value"])

    def plot(self):
        """Targets finished over time, by outcome, with each wave's start marked: a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from IPython.display import Image

        fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
        done = sorted((t for t in self.targets if t["finished"] is not None), key=lambda t: t["finished"])
        for outcome in ("succeeded", "failed", "interrupted"):
            times = [t["finished"] for t in done if t["status"] == outcome]
            if times:
                ax.step([0.0, *times], list(range(len(times) + 1)), where="post", color=COLORS[outcome], label=outcome)
        ax.step([0.0, *[t["finished"] for t in done]], list(range(len(done) + 1)), where="post", color="black",
                linestyle=":", label="all finished")
        for n in sorted({t["wave"] for t in self.targets}):
            starts = [t["started"] for t in self.targets if t["wave"] == n and t["started"] is not None]
            if starts:
                ax.axvline(min(starts), color="#90a4ae", linewidth=0.8)
                ax.text(min(starts), len(self.targets), f" {_wave(n)}", fontsize=8, va="top", color="#455a64")
        ax.set_xlabel("seconds since the fleet run started")
        ax.set_ylabel("targets finished")
        ax.set_ylim(0, max(1, len(self.targets)) + 0.5)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"fleet run {self.data['fleet_run']}: progress", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return Image(buf.getvalue(), format="png")


def summary_path(reports_dir: str | Path, run_id: str) -> Path:
    """Where the coordinator leaves the fleet run's summary for the notebook (removed after)."""
    from ..params import check_pattern

    return Path(reports_dir) / f".fleet-{check_pattern('run_id', run_id)}.json"


def load(reports_dir: str, run_id: str) -> Fleet:
    return Fleet(json.loads(summary_path(reports_dir, run_id).read_text(encoding="utf-8")))
