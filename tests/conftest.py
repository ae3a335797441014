"""Fixtures: one real embedded PostgreSQL for the session, a fresh database per test.

Nothing is mocked: tests run Alembic chains, pg_dump, papermill kernels and the swrun CLI
against this server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from swrun import database
from swrun.embedded import EmbeddedServer
from swrun.migrations import DEMO_INI

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = DEMO_INI.parent
HEAD = "f7a8b9c0d1e2"


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    home = Path(os.environ.get("SWRUN_TEST_HOME") or tmp_path_factory.mktemp("swrun-home"))
    home.chmod(0o755)
    server = EmbeddedServer(home)
    server.start()
    # a CLI run that falls back to the embedded server uses this one, never a stray one of its own
    os.environ["SWRUN_HOME"] = str(home)
    yield server
    server.stop()
    if not os.environ.get("SWRUN_TEST_HOME"):
        shutil.rmtree(home, ignore_errors=True)


def new_database(pg):
    """Yield the URL of a new, empty database on the test server; drop it afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    yield url
    pg.drop_database(name)


@pytest.fixture
def db_url(pg):
    """A new, empty database; dropped after the test."""
    yield from new_database(pg)


@pytest.fixture
def engine(db_url):
    eng = database.make_engine(database.normalize_url(db_url))
    yield eng
    eng.dispose()


@pytest.fixture
def project_copy(tmp_path):
    """A private copy of the demo project, for tests that edit, add or remove migrations."""
    dest = tmp_path / "smartwaste"
    shutil.copytree(DEMO_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty directory so reports/ and backups/ land in the test's tmp_path."""
    wd = tmp_path / "work"
    wd.mkdir()
    monkeypatch.chdir(wd)
    return wd


def add_revision(project_dir: Path, rev: str, down: str | None, upgrade_body: str, downgrade_body: str = "pass",
                 slug: str = "extra", versions: str = "migrations/versions", extra_header: str = "") -> Path:
    """Write a revision file into a copied project."""
    down_repr = repr(down)
    path = project_dir / versions / f"{rev}_{slug}.py"
    path.write_text(
        f'"""{slug}\n\nRevision ID: {rev}\nRevises: {down}\n"""\n'
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        f"revision = {rev!r}\ndown_revision = {down_repr}\nbranch_labels = None\ndepends_on = None\n{extra_header}\n\n"
        f"def upgrade():\n    {upgrade_body}\n\n\ndef downgrade():\n    {downgrade_body}\n"
    )
    return path


def run_cli(*args, env=None, cwd=None, timeout=180):
    """Run ``python -m swrun`` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("SWRUN_PLAIN_OUTPUT", None)
    return subprocess.run([sys.executable, "-m", "swrun", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def scalar(url: str, sql: str):
    eng = database.make_engine(database.normalize_url(url))
    try:
        with eng.begin() as conn:  # commits: tests use it to break things on purpose too
            return conn.exec_driver_sql(sql).scalar()
    finally:
        eng.dispose()


def current_revision(url: str):
    try:
        return scalar(url, "select string_agg(version_num, ',') from alembic_version")
    except sa.exc.ProgrammingError:
        return None


def default_sigint() -> None:
    """preexec_fn for a process a test will Ctrl-C: a shell's background job starts with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler; a terminal's user has one."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

