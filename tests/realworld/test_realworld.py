"""The Alembic chains real packages ship, unmodified, through swrun's CLI on a fresh database.

optuna (``optuna/storages/_rdb/alembic``: its env.py builds its engine from sqlalchemy.url) and
mlflow-skinny (``mlflow/store/db_migrations``: its env.py takes ``config.attributes["connection"]``
when given, and its chain starts on the tables of ``initial_models``, which mlflow creates with
``create_all`` before its first upgrade; swrun's scratch builds get them from ``[swrun] baseline``).

One story per chain, on one database (the tests of a chain run in order, on one xdist worker):
the default deploy, a second deploy with nothing pending, rollback then deploy, doctor and the
stamp check at head.
"""

from __future__ import annotations

import re

import pytest

from conftest import new_database
from realworld.corpus import Chain, database_state, error_lines, failure, package_dir, steps, write_ini
from swrun import database
from swrun.migrations import Project


def _mlflow_initial_tables(url: str) -> None:
    """What mlflow's ``_initialize_tables`` does before its first ``upgrade``."""
    from mlflow.store.tracking.dbmodels.initial_models import Base

    eng = database.make_engine(database.normalize_url(url))
    try:
        Base.metadata.create_all(eng)
    finally:
        eng.dispose()


CHAINS = {
    "optuna": {"script": ("optuna", "storages/_rdb/alembic"), "swrun": {}, "prepare": None},
    "mlflow": {"script": ("mlflow", "store/db_migrations"),
               "swrun": {"baseline": "mlflow.store.tracking.dbmodels.initial_models:Base.metadata"},
               "prepare": _mlflow_initial_tables},
}


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.xdist_group(f"realworld-{name}"))
                                        for name in CHAINS])
def chain(request, pg, tmp_path_factory):
    spec = CHAINS[request.param]
    module, inside = spec["script"]
    home = tmp_path_factory.mktemp(f"realworld-{request.param}")
    ini = write_ini(home / "project", package_dir(module) / inside, spec["swrun"])
    (home / "work").mkdir()
    databases = new_database(pg)
    url = next(databases)
    if spec["prepare"]:
        spec["prepare"](url)
    project = Project.load(ini)
    story = Chain(ini, url, home / "work")
    story.name, story.heads = request.param, set(project.heads)
    (story.head,) = project.heads
    story.parent = project.revisions[story.head].down_revision
    story.revisions = len(project.revisions)
    story.tables_before = len(database_state(url)["schema"]["tables"])
    yield story
    next(databases, None)


@pytest.fixture(scope="module")
def first_deploy(chain):
    return chain.cli("deploy")


def _deployed(chain, first_deploy) -> None:
    if first_deploy.returncode != 0:
        pytest.fail(f"the first deploy of {chain.name} failed, so this step cannot run: {error_lines(first_deploy)}")


def test_the_default_deploy_applies_the_whole_chain(chain, first_deploy):
    assert first_deploy.returncode == 0, failure(first_deploy)
    assert "Traceback" not in first_deploy.stdout + first_deploy.stderr
    assert chain.current() == chain.heads
    done = steps(chain.workdir, first_deploy)
    assert len(done["status"]["data"]["pending"]) == chain.revisions
    for step in ("preview", "guards", "backup", "rehearse", "upgrade", "verify"):
        assert done[step]["outcome"] in ("ok", "warning"), (step, done[step]["summary"])
    if chain.tables_before:  # mlflow: the application's own tables were there before the first revision
        assert re.search(rf"no alembic_version, but {chain.tables_before} table\(s\) exist", done["status"]["summary"]), \
            done["status"]["summary"]


def test_a_second_deploy_finds_nothing_pending(chain, first_deploy):
    _deployed(chain, first_deploy)
    before = database_state(chain.url)
    again = chain.cli("deploy")
    assert again.returncode == 0, failure(again)
    done = steps(chain.workdir, again)
    assert done["status"]["data"]["pending"] == []
    assert "up to date" in done["status"]["summary"]
    after = database_state(chain.url)
    assert (after["alembic_version"], after["schema"], after["rows"]) == \
        (before["alembic_version"], before["schema"], before["rows"])


def test_rollback_then_deploy(chain, first_deploy):
    _deployed(chain, first_deploy)
    back = chain.cli("rollback")
    assert back.returncode == 0, failure(back)
    assert chain.current() == {chain.parent}
    assert steps(chain.workdir, back)["rollback-plan"]["data"]["undo"] == [chain.head]
    forward = chain.cli("deploy")
    assert forward.returncode == 0, failure(forward)
    assert chain.current() == chain.heads
    assert steps(chain.workdir, forward)["status"]["data"]["pending"] == [chain.head]


def test_doctor_finds_no_problem_at_head(chain, first_deploy):
    _deployed(chain, first_deploy)
    before = database_state(chain.url)
    proc = chain.cli("doctor")
    assert proc.returncode == 0, failure(proc)
    assert "no problems found" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert database_state(chain.url) == before  # read-only: not one row, not the ledger


def test_the_stamp_check_at_head_finds_the_schemas_equal(chain, first_deploy):
    _deployed(chain, first_deploy)
    before = database_state(chain.url)
    proc = chain.cli("stamp", chain.head)
    assert proc.returncode == 0, failure(proc)
    check = steps(chain.workdir, proc)["stamp-check"]
    assert check["outcome"] == "ok" and check["data"]["matched"], check["summary"]
    after = database_state(chain.url)
    assert (after["alembic_version"], after["schema"], after["rows"]) == \
        (before["alembic_version"], before["schema"], before["rows"])


def test_plain_alembic_builds_the_same_schema(chain, first_deploy, pg):
    """The reference: plain ``alembic upgrade heads`` on another fresh database ends at the schema swrun left."""
    from alembic import command
    from alembic.config import Config

    _deployed(chain, first_deploy)
    databases = new_database(pg)
    url = next(databases)
    try:
        if CHAINS[chain.name]["prepare"]:
            CHAINS[chain.name]["prepare"](url)
        cfg = Config(str(chain.ini))
        cfg.set_main_option("sqlalchemy.url", database.normalize_url(url).render_as_string(hide_password=False).replace("%", "%%"))
        command.upgrade(cfg, "heads")
        plain = database_state(url)
    finally:
        next(databases, None)
    swrun_built = database_state(chain.url)
    assert plain["alembic_version"] == swrun_built["alembic_version"]
    assert plain["schema"] == swrun_built["schema"]
