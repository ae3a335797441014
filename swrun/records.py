"""Where run records live and how they are written: owner-only, atomic, secret-free.

Layout: ``reports/<env>/<YYYY>/<MM>/<utc-time>_<runbook>_<run-id>.ipynb``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import redaction
from .errors import UsageError
from .redaction import Secrets

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(kind: str, value: str) -> str:
    """Names that become path parts: no separators, no traversal, no longer than a file name may be."""
    if not value or len(value) > 128 or not _NAME.fullmatch(value) or ".." in value:  # fullmatch: "$" lets "x\n" through
        raise UsageError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def record_path(reports_dir: Path, environment: str, runbook: str, run_id: str, when: dt.datetime) -> Path:
    check_name("environment", environment)
    check_name("runbook name", runbook)
    return (Path(reports_dir) / environment / f"{when:%Y}" / f"{when:%m}"
            / f"{when:%Y%m%dT%H%M%SZ}_{runbook}_{run_id}.ipynb")


def prepare_dir(path: Path) -> None:
    """Create the record's directory (owner-only) and prove it is writable, before any kernel starts."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".swrun-write-test"):
            pass
    except OSError as exc:
        raise UsageError(f"reports directory {path.parent} is not writable: {exc.strerror or exc}") from None


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write via a temporary file in the same directory and rename: never a half-written record."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def notebook_text(nb) -> str:
    """A notebook as nbformat writes it (keys sorted, multi-line strings split into lines), but
    by json's C encoder: nbformat indents, which forces the pure-Python encoder and costs
    0.5 s on the 6 MB record of a 500-revision deploy (0.07 s this way). Changes ``nb``."""
    from nbformat.v4.rwbase import split_lines, strip_transient

    return json.dumps(strip_transient(split_lines(nb)), sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def secret_forms(url: URL) -> Secrets:
    """The run's secrets (the URL's password wherever libpq takes it from, and every one this
    process has met), matched in every spelling a program could print: see :mod:`swrun.redaction`."""
    return redaction.for_url(url)


def _as_secrets(secrets) -> Secrets:
    return secrets if isinstance(secrets, Secrets) else Secrets(secrets)


def _dump_notebook(doc) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def redact(text: str, secrets: Secrets | list[str]) -> tuple[str, int]:
    """Replace every secret in ``text`` by ***; returns the text and how many were found.

    A JSON document (a record) keeps its structure: its strings are redacted one by one and
    it is written back as :func:`notebook_text` writes."""
    secrets = _as_secrets(secrets)
    if text.lstrip().startswith(("{", "[")):
        return secrets.redact_json(text, _dump_notebook)
    return secrets.redact(text)


def scrub_value(value, secrets: Secrets | list[str]):
    """A result, an index entry or any JSON-like value with its strings redacted (a copy where changed)."""
    return _as_secrets(secrets).redact_value(value)[0]


def scrub_known(value):
    """``value`` (text, or a JSON-like result) without any secret this process has met: for
    places that print or write without a run's context at hand (the runner's progress lines)."""
    return redaction.known().redact_value(value)[0]


def scrub_file(path: Path, secrets: Secrets | list[str]) -> int:
    """Redact a text file written by a run (a preview's SQL, ...) in place; returns the hits."""
    return redaction.scrub_file(path, _as_secrets(secrets))
