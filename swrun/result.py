"""The result every step (checklist, guard, recovery) returns: a short text, tables, and a JSON-able dict."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

MIME_TYPE = "application/vnd.swrun.step+json"
OUTCOMES = ("ok", "warning", "failed", "blocked", "skipped")


@dataclass
class StepResult:
    step: str
    outcome: str = "ok"
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)  # name -> pandas.DataFrame
    code: dict[str, str] = field(default_factory=dict)  # title -> SQL, shown as code blocks
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "warning", "skipped")

    def __str__(self) -> str:
        return f"{self.step}: {self.outcome} - {self.summary}"

    def as_dict(self) -> dict:
        return json.loads(json.dumps({
            "step": self.step,
            "outcome": self.outcome,
            "summary": self.summary,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "data": self.data,
        }, default=str))


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
