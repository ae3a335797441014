"""Real Alembic chains as their packages ship them, and the small alembic.ini swrun needs for one.

A package's ``env.py`` and revision files are used where pip installed them, unmodified. Only
the ini is ours: ``script_location`` into site-packages, a quiet logging setup (such env.py files
call ``fileConfig`` on it), and a ``[swrun]`` section.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from conftest import current_revision, run_cli

LOGGING = """
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


def package_dir(module: str) -> Path:
    """Where an installed package lives (never imported here: its own env.py does that)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed (pip install '.[test]')"
    return Path(spec.origin).parent


def write_ini(dest: Path, script_location: Path, swrun: dict[str, str] | None = None, url: str = "") -> Path:
    """An alembic.ini for a chain that lives elsewhere; ``swrun`` becomes its [swrun] section."""
    dest.mkdir(parents=True, exist_ok=True)
    text = f"[alembic]\nscript_location = {script_location}\nsqlalchemy.url = {url}\n"
    if swrun:
        text += "\n[swrun]\n" + "".join(f"{key} = {value}\n" for key, value in swrun.items())
    ini = dest / "alembic.ini"
    ini.write_text(text + LOGGING)
    return ini


def record(workdir: Path, proc) -> dict:
    """The run's swrun metadata, from the record the runner named on the terminal."""
    found = re.search(r"record: (\S+\.ipynb)", proc.stderr)
    assert found, proc.stderr
    return nbformat.read(str(workdir / found.group(1)), as_version=4).metadata["swrun"]


def steps(workdir: Path, proc) -> dict:
    return {s["step"]: s for s in record(workdir, proc)["steps"]}


def error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]


def failure(proc) -> str:
    """What to show when a command did not do what it should: its last lines."""
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@dataclass
class Chain:
    """One project's ini, its database and the directory its runs leave records in."""

    ini: Path
    url: str
    workdir: Path
    env: dict = field(default_factory=dict)

    def cli(self, verb: str, *args: str, timeout: int = 300):
        return run_cli(verb, "--project", self.ini, "--database-url", self.url, *args, env=self.env, cwd=self.workdir,
                       timeout=timeout)

    def current(self) -> set[str]:
        found = current_revision(self.url)
        return set(found.split(",")) if found else set()


def database_state(url: str) -> dict:
    """Everything a command that must not touch a database could change there: its revision,
    schema, row counts and swrun's ledger. Two equal states: nothing was migrated or recorded."""
    from swrun import database, schema

    eng = database.make_engine(database.normalize_url(url))
    try:
        with eng.connect() as conn:
            ledger = conn.exec_driver_sql("select to_regclass('swrun.migration_ledger') is not null").scalar()
            return {
                "alembic_version": current_revision(url),
                "schema": schema.snapshot(conn),
                "rows": schema.row_counts(conn),
                "ledger": conn.exec_driver_sql("select count(*) from swrun.migration_ledger").scalar() if ledger else None,
            }
    finally:
        eng.dispose()
