"""Guards: the guide's NEVER and ALWAYS rules, checked before anything changes.

* :mod:`.ledger` - the integrity ledger (``swrun.migration_ledger`` in the target database):
  the name and sha256 of every applied revision's file, compared with the files on disk
  (NEVER rename, NEVER delete, NEVER modify an applied migration; the naming convention).
* :mod:`.lint` - review of what is about to run: swrun's Alembic-aware rules over the
  migration source (``ast``) and squawk over the offline SQL (ALWAYS review).
* :mod:`.enums` - enum values: the models against ``pg_enum`` (NEVER change enum values),
  and the ``ALTER TYPE ... ADD VALUE`` that ``swrun revision --autogenerate`` writes.
* :mod:`.gates` - what a production deploy needs: a staging record of the same migration
  set, every danger finding acknowledged, no lock holders on the touched tables, no long
  transaction, disk for the backup.
* :mod:`.review` - ``swrun revision``: Alembic's autogenerate, then lint and the enum check.

Every check returns :class:`Finding` objects: a stable id (``<rule>:<revision>[:<detail>]``),
a severity (info, warning, danger) and one readable message. A finding that breaks one of
the guide's NEVER rules carries that rule and blocks a run in every environment; a
``danger`` finding blocks a production deploy; either is let through only by its id in
the run's ``acknowledge`` parameter.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SEVERITIES = ("info", "warning", "danger")

# The guide's "NEVER Do These Things", numbered as it numbers them.
NEVER_RENAME = "NEVER rename migration files"
NEVER_DELETE = "NEVER delete migration files"
NEVER_MODIFY = "NEVER modify an applied migration"
NEVER_ENUM = "NEVER change enum values after they exist in the database"
NEVER_RULES = (NEVER_RENAME, NEVER_DELETE, NEVER_MODIFY, NEVER_ENUM)

ENUM_PROCEDURE = ("the guide's enum change procedure: 1. create a new enum type, 2. add a new column with the new type, "
                  "3. migrate the data from the old column to the new one, 4. drop the old column, "
                  "5. rename the new column, 6. drop the old enum type")


@dataclass
class Finding:
    """One thing a guard found. ``id`` is stable across runs: it is what ``acknowledge`` names."""

    id: str
    rule: str
    severity: str
    message: str
    revision: str | None = None
    file: str | None = None
    never: str | None = None  # the guide's NEVER rule it breaks: blocks in every environment
    source: str = "swrun"  # swrun (our rules), squawk, ledger, enums
    acknowledged: bool = False

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def blocks_everywhere(self) -> bool:
        return bool(self.never) and not self.acknowledged

    def as_dict(self) -> dict:
        return dict(vars(self))  # every field is a flat value: no need for asdict's deep copy

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        return cls(**{k: data.get(k) for k in ("id", "rule", "severity", "message", "revision", "file", "never")},
                   source=data.get("source", "swrun"), acknowledged=bool(data.get("acknowledged")))


def parse_file(path: Path) -> tuple[str, ast.Module]:
    """A revision file's source and syntax tree (SyntaxError if it does not parse).

    The ledger reads each file's header and the lint its body: one parse serves both, and
    the cache follows the file's size and modification time, so an edited file is read again."""
    st = os.stat(path)
    return _parse(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4096)
def _parse(path: str, _mtime_ns: int, _size: int) -> tuple[str, ast.Module]:
    with open(path, "rb") as fh:
        data = fh.read()
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads it
    return text, ast.parse(data, filename=path)


COLUMNS = ["id", "severity", "source", "revision", "file", "message", "status"]


def frame(findings: list[Finding]):
    """Findings as a DataFrame, most severe first, with what each means for this run."""
    import pandas as pd

    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    rows = []
    for f in sorted(findings, key=lambda f: (not f.never, order[f.severity], f.source != "swrun", _natural(f.id))):
        status = "acknowledged" if f.acknowledged else (f.never if f.never else "")
        rows.append({"id": f.id, "severity": f.severity, "source": f.source, "revision": f.revision or "",
                     "file": f.file or "", "message": f.message, "status": status})
    return pd.DataFrame(rows, columns=COLUMNS)


def _natural(text: str) -> tuple:
    """"squawk:x:r:9" before "squawk:x:r:10"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def parse_ids(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the comma-separated lists runbook parameters carry."""
    return [part.strip() for part in (text or "").replace("\n", ",").split(",") if part.strip()]


def count(findings: list[Finding]) -> str:
    """``"1 danger, 3 warning, 40 info"`` (only the severities present)."""
    parts = [f"{sum(1 for f in findings if f.severity == s)} {s}" for s in reversed(SEVERITIES)
             if any(f.severity == s for f in findings)]
    return ", ".join(parts) or "none"
