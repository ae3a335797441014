"""The sample outputs in README.md and docs/*.md are what the commands print now (times and ids aside).

scripts/doc_samples.py runs every sample's commands, in one scratch directory and in order (one
deploy serves every page), and compares; it also checks the generated parameter tables. When this
fails, the docs are stale: ``python scripts/doc_samples.py`` rewrites them from real runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "doc_samples.py"


def load():
    spec = importlib.util.spec_from_file_location("doc_samples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("doc_samples", module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_every_page_with_samples_is_found_and_the_readme_shows_a_deploy():
    samples = load().collect()
    pages = {s.page.name for s in samples}
    assert {"README.md", "ops.md", "auditors.md", "reference.md"} <= pages, pages
    readme = next(s for s in samples if s.page.name == "README.md")
    assert readme.commands[0][0] == "swrun deploy" and readme.commands[0][1], "the README's deploy sample is empty"
    assert all(any(output for _, output in s.commands) for s in samples), "a sample without any output"


def test_normalize_masks_times_ids_and_widths_but_not_words():
    normalize = load().normalize
    a = ["  ✓ backup ok (0.06s): swrun_20261201T235010Z_f228c6e1be34.dump: 818 bytes, sha256 e49453dc9ed4...",
         "c44a9ed517a5  2026-12-02 01:55  development  deploy   succeeded  root@vm   <base> -> f7a8b9c0d1e2"]
    b = ["  ✓ backup ok (1.26s): swrun_20261202T000000Z_0123456789ab.dump: 1,818 bytes, sha256 ffffffffffff...",
         "0123456789ab  2026-12-03 11:05  development deploy succeeded root@vm <base> -> f7a8b9c0d1e2"]
    assert normalize(a) == normalize(b)
    assert normalize(["at f7a8b9c0d1e2"]) != normalize(["at e1f2a3b4c5d6"])  # revisions are content
    assert normalize(["swrun: SUCCEEDED"]) != normalize(["swrun: FAILED"])


def test_the_docs_samples_match_what_the_commands_print(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "all match" in proc.stdout
