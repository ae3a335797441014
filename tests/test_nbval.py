"""CI runs the runbooks through nbval: executed against a throwaway database, their outputs
must match the expected outputs committed in the notebooks (after tests/nbval_sanitize.cfg)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

RUNBOOKS = REPO / "swrun" / "runbooks"
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"
NBVAL_RUNBOOKS = ["deploy"]


def nbval(notebook: Path, db_url: str):
    env = {**os.environ, "SWRUN_DATABASE_URL": db_url, "SWRUN_PLAIN_OUTPUT": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(notebook), "--nbval-sanitize-with", str(SANITIZE),
         "-p", "no:cacheprovider", "-q", "--rootdir", str(notebook.parent)],
        capture_output=True, text=True, env=env, cwd=notebook.parent, timeout=600,
    )


@pytest.mark.parametrize("name", NBVAL_RUNBOOKS)
def test_runbook_outputs_match_the_committed_ones(name, db_url, tmp_path):
    copy = tmp_path / f"{name}.ipynb"
    shutil.copy(RUNBOOKS / f"{name}.ipynb", copy)
    proc = nbval(copy, db_url)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout


def test_nbval_catches_a_changed_output(db_url, tmp_path):
    nb = nbformat.read(str(RUNBOOKS / "deploy.ipynb"), as_version=4)
    status_cell = next(c for c in nb.cells if "step:status" in c.metadata.get("tags", []))
    first = status_cell.outputs[0]
    assert "7 pending to head" in first["data"]["text/plain"]
    first["data"]["text/plain"] = first["data"]["text/plain"].replace("7 pending", "6 pending")
    changed = tmp_path / "deploy.ipynb"
    nbformat.write(nb, str(changed))
    proc = nbval(changed, db_url)
    assert proc.returncode != 0
    assert "6~pending~to~head" in proc.stdout and "1 failed" in proc.stdout  # sanitized form
