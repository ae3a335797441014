"""`swrun reports site`: a static HTML site of every record, loaded in a real headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from swrun import store
from test_store import kept, one_error_line, reports  # noqa: F401  (fixtures)

CHROMIUM = shutil.which("chromium")


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The DOM Chromium builds from the page, after it loaded, as a user's browser would."""
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def links(dom: str) -> dict[str, str]:
    """run id -> href of every link in the runs table."""
    return {html.unescape(text): html.unescape(href) for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a>', dom)}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_site_lists_every_run_in_chromium(reports, kept, tmp_path):  # noqa: F811
    proc = run_cli("reports", "site", "--reports-dir", reports)
    assert proc.returncode == 0, proc.stderr
    index = reports / "site" / "index.html"
    assert proc.stdout.startswith(f"{index} (3 page(s) written")

    dom = dump_dom(index, tmp_path)
    assert "<title>swrun deployment records</title>" in dom
    found = links(dom)
    assert set(found) == set(kept.ids.values())
    for run_id, href in found.items():
        assert href == f"records/{run_id}.html"
        assert (index.parent / href).is_file()
    rows = re.findall(r'<tr data-run="([0-9a-f]+)">(.*?)</tr>', dom, flags=re.S)
    assert [r for r, _ in rows] == [kept.ids["production"], kept.ids["failed"], kept.ids["staging"]]  # newest first
    failed_row = dict(rows)[kept.ids["failed"]]
    assert "failed at upgrade" in failed_row and "bob@ops" in failed_row and "production" in failed_row

    # a record's page renders in the browser without Jupyter: its banner, its inputs, its outputs
    page = dump_dom(index.parent / found[kept.ids["staging"]], tmp_path)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert f"deploy run {kept.ids['staging']}: SUCCEEDED" in text
    assert 'backup = rb.run("backup")' in text and "verified with pg_restore --list" in text

    # owner-only
    for path in [index.parent, *index.parent.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path

    # unchanged records are not exported again
    again = run_cli("reports", "site", "--reports-dir", reports)
    assert again.returncode == 0 and "0 page(s) written, 3 unchanged" in again.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_site_with_an_unreadable_record(reports, kept, tmp_path):  # noqa: F811
    entry = store.find(store.read_index(reports).entries, kept.ids["failed"])
    (reports / entry["record"]).write_text("{ not a notebook")
    out = tmp_path / "site"
    proc = run_cli("reports", "site", "--reports-dir", reports, "--out", out)
    assert proc.returncode == 1
    assert f"run {kept.ids['failed']}: record file" in one_error_line(proc) and "is not a notebook" in proc.stderr
    dom = dump_dom(out / "index.html", tmp_path)
    assert set(links(dom)) == {kept.ids["staging"], kept.ids["production"]}
    assert f"{kept.ids['failed']} <span class=\"missing\">(record unreadable)</span>" in dom
