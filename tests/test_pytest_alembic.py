"""pytest-alembic's four default tests on the demo chain, against the embedded PostgreSQL.

pytest-alembic hands its Engine to env.py in ``config.attributes["connection"]``; the demo's
env.py accepts it. Its pytest plugin is disabled (``-p no:pytest_alembic`` in pyproject.toml:
0.13 breaks collection on pytest 9), so the runner its fixtures would build is built here, the
way ``pytest_alembic.plugin.fixtures.alembic_runner`` does, on this test's own fresh database.
"""

from __future__ import annotations

import pytest
from pytest_alembic import tests as default_tests
from pytest_alembic.config import Config
from pytest_alembic.runner import runner

from conftest import HEAD, current_revision
from swrun.migrations import DEMO_INI


@pytest.fixture
def alembic_runner(engine):
    with runner(config=Config.from_raw_config({"file": str(DEMO_INI)}), engine=engine) as context:
        yield context


@pytest.mark.parametrize("name", ["test_single_head_revision", "test_upgrade", "test_model_definitions_match_ddl",
                                  "test_up_down_consistency"])
def test_pytest_alembic_default_test_passes_on_the_demo(name, alembic_runner, db_url):
    getattr(default_tests, name)(alembic_runner)
    if name != "test_single_head_revision":  # the others really migrated this database
        assert current_revision(db_url) == HEAD
