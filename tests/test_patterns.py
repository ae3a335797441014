"""One fixture project per pattern real Alembic projects use, each through the default ``swrun deploy``
on a fresh database (tests/projects/p_*: two or three revisions each, every env.py as such projects
write it; the async one is Alembic's own template).

- p_url_env: env.py takes its URL from $P_APP_DATABASE_URL; ``[swrun] url_env`` (or ``--url-env``)
  routes it; without either, swrun refuses in one line and the database env.py reached is unchanged;
- p_attr_connection / p_attr_engine: env.py runs only on what a caller shares in
  ``config.attributes["connection"]``, a Connection / an Engine;
- p_async: ``alembic init -t async``'s env.py (``asyncio.run``) with a ``postgresql+asyncpg://`` URL;
- p_branches: expand and contract branches (labels), deployed with ``--to heads``, one rolled back;
- p_orm_data: a data migration through an ORM Session, which offline SQL cannot render.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import current_revision, new_database, run_cli, scalar
from realworld.corpus import database_state, error_lines, failure, steps

PROJECTS = Path(__file__).parent / "projects"
URL_VAR = "P_APP_DATABASE_URL"


def project(name: str, tmp_path: Path, *, without_swrun_section: bool = False) -> Path:
    """A private copy of a fixture project; its alembic.ini."""
    dest = tmp_path / name
    shutil.copytree(PROJECTS / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    ini = dest / "alembic.ini"
    if without_swrun_section:
        ini.write_text(re.sub(r"\[swrun\]\n(?:[^\[\n].*\n|\n)*", "", ini.read_text()))
        assert "url_env" not in ini.read_text()
    return ini


def cli(verb: str, ini: Path, url: str, *args: str, cwd: Path, env: dict | None = None):
    return run_cli(verb, "--project", ini, "--database-url", url, *args, cwd=cwd, env=env, timeout=300)


def revisions_at(url: str) -> set[str]:
    found = current_revision(url)
    return set(found.split(",")) if found else set()


def app_setting(url: str) -> dict:
    """The application's own setting, as its users write it: with the driver they installed
    (``postgresql://`` means psycopg 3 to SQLAlchemy 2.1, which swrun does not install)."""
    return {URL_VAR: url.replace("postgresql://", "postgresql+psycopg2://", 1)}


def plain_upgrade(ini: Path, url: str, target: str, env: dict) -> None:
    """Plain Alembic, as the application would run it (its env.py reads the URL from the environment)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", target], capture_output=True,
                          text=True, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture
def other_url(pg):
    """A second database on the same server: the one an env.py's own settings point at."""
    yield from new_database(pg)


# -- env.py reads its URL from the environment ---------------------------------------------------------


@pytest.mark.parametrize("routing", ["ini", "flag"])
def test_env_var_url_routed_by_swrun_deploys_the_named_database(routing, db_url, other_url, tmp_path, workdir):
    ini = project("p_url_env", tmp_path, without_swrun_section=routing == "flag")
    untouched = database_state(other_url)
    extra = ("--url-env", URL_VAR) if routing == "flag" else ()
    proc = cli("deploy", ini, db_url, *extra, cwd=workdir, env={URL_VAR: other_url})  # the app's setting: elsewhere
    assert proc.returncode == 0, failure(proc)
    assert revisions_at(db_url) == {"a0e102"}
    assert steps(workdir, proc)["rehearse"]["outcome"] in ("ok", "warning")
    assert database_state(other_url) == untouched


def test_env_var_url_without_url_env_refuses_at_once_and_changes_nothing(db_url, other_url, tmp_path, workdir):
    ini = project("p_url_env", tmp_path, without_swrun_section=True)
    plain_upgrade(ini, other_url, "a0e101", app_setting(other_url))
    live, target = database_state(other_url), database_state(db_url)
    proc = cli("deploy", ini, db_url, cwd=workdir, env=app_setting(other_url))
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert URL_VAR in line, line  # it names the setting that sent env.py elsewhere
    assert "Traceback" not in proc.stdout + proc.stderr
    assert database_state(other_url) == live and database_state(db_url) == target


@pytest.mark.parametrize("command", [("deploy",), ("doctor",), ("stamp", "a0e101"), ("rehearse",)])
def test_env_var_url_without_url_env_never_migrates_the_live_database(command, db_url, tmp_path, workdir):
    """The issue's story: the application's setting points at the live database, which swrun is asked
    to deploy, diagnose, stamp or rehearse. Every scratch or copy database swrun builds would be
    migrated on the live one instead; swrun refuses before any migration runs."""
    ini = project("p_url_env", tmp_path, without_swrun_section=True)
    plain_upgrade(ini, db_url, "a0e101", app_setting(db_url))
    live = database_state(db_url)
    proc = cli(*command[:1], ini, db_url, *command[1:], cwd=workdir, env=app_setting(db_url))
    assert proc.returncode != 0, failure(proc)
    (line,) = error_lines(proc)
    assert URL_VAR in line, line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert database_state(db_url) == live  # alembic_version, schema, rows, ledger


# -- env.py runs on what the caller shares, sync or async, with data migrations ---------------------------


@pytest.mark.parametrize("name, head", [("p_attr_connection", "c0e102"), ("p_attr_engine", "e0e102"),
                                        ("p_async", "a5e102"), ("p_orm_data", "d0e103")])
def test_the_default_deploy_runs_the_pattern(name, head, db_url, tmp_path, workdir):
    ini = project(name, tmp_path)
    url = db_url.replace("postgresql://", "postgresql+asyncpg://", 1) if name == "p_async" else db_url
    proc = cli("deploy", ini, url, cwd=workdir)
    assert proc.returncode == 0, failure(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert revisions_at(db_url) == {head}
    done = steps(workdir, proc)
    for step in ("backup", "rehearse", "upgrade", "verify"):
        assert done[step]["outcome"] in ("ok", "warning"), (step, done[step]["summary"])
    # the revisions really ran inside the upgrade step (an async env.py that only scheduled them would not)
    assert [r["revision"] for r in done["upgrade"]["data"]["applied"]][-1] == head
    assert scalar(db_url, "select count(*) from information_schema.columns where table_name = 'accounts'") == 3
    if name == "p_orm_data":
        assert scalar(db_url, "select string_agg(email, ',' order by id) from accounts") == \
            "ada@example.com,grace@example.com,edsger@example.com"
        preview = json.dumps(done["preview"])
        assert "no offline SQL" in preview and "d0e103" in preview, done["preview"]["summary"]
        assert re.search(r"insert into accounts", json.dumps(done["rehearse"]), re.I), "executed SQL not recorded"


# -- branches by design ------------------------------------------------------------------------------------


def test_expand_and_contract_branches_deploy_to_heads_and_one_rolls_back(db_url, tmp_path, workdir):
    ini = project("p_branches", tmp_path)
    proc = cli("deploy", ini, db_url, "--to", "heads", cwd=workdir)
    assert proc.returncode == 0, failure(proc)
    assert revisions_at(db_url) == {"b0e00001", "b0c00002"}
    assert steps(workdir, proc)["verify"]["outcome"] in ("ok", "warning")

    back = cli("rollback", ini, db_url, "--to", "contract@-1", cwd=workdir)
    assert back.returncode == 0, failure(back)
    assert revisions_at(db_url) == {"b0e00001", "b0c00001"}  # the expand branch untouched
    assert steps(workdir, back)["rollback-plan"]["data"]["undo"] == ["b0c00002"]
    assert scalar(db_url, "select count(*) from information_schema.columns where table_name = 'audit_log'") == 2
    assert scalar(db_url, "select count(*) from information_schema.columns where table_name = 'accounts'") == 3
