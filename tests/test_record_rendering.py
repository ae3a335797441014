"""What a record shows people: no emoji, the guide's checklist ticked, tables an auditor reads at a glance.

One real deploy (and a refused stamp and a backup on the same database) through the CLI, module-scoped;
the record rendered to HTML as `swrun reports export` renders it.
"""

from __future__ import annotations

import html as html_mod
import re
from pathlib import Path

import pandas as pd
import pytest

from swrun import checklist, display, schema, site, store

from conftest import HEAD, new_database, run_cli

# code points with the Unicode Emoji property that records used to carry, and their neighbours:
# the pictographs, dingbats, misc symbols and technical blocks, arrows that are emoji, variation selector 16, ZWJ
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A-\u23FF\u2194-\u2199\u21A9\u21AA"
                   "\u25AA-\u25FE\u2934\u2935\u3030\u303D\u3297\u3299\uFE0F\u200D\u203C\u2049\u2122\u2139]")


@pytest.fixture(scope="module")
def runs(pg, tmp_path_factory):
    root = tmp_path_factory.mktemp("rendering")
    gen = new_database(pg)
    url = next(gen)
    try:
        deployed = run_cli("deploy", "--database-url", url, cwd=root)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        # the live schema is at head: stamping an older revision is refused, nothing moves
        refused = run_cli("stamp", "e1f2a3b4c5d6", "--database-url", url, cwd=root)
        assert refused.returncode == 9, refused.stderr[-3000:]
        backed_up = run_cli("backup", "--database-url", url, cwd=root)
        assert backed_up.returncode == 0, backed_up.stderr[-3000:]
        yield root, refused
    finally:
        next(gen, None)


def entries(root: Path) -> list[dict]:
    return store.read_index(root / "reports").entries


def record(root: Path, runbook: str):
    entry = next(e for e in entries(root) if e["runbook"] == runbook)
    return entry, store.read_record(root / "reports", entry)


def test_a_deploy_record_has_no_emoji_and_ticks_the_checklist_items_its_steps_passed(runs):
    root, _ = runs
    entry, nb = record(root, "deploy")
    page = site.record_html(nb)
    found = sorted({f"U+{ord(c):04X}" for c in EMOJI.findall(page)})
    assert not found, f"emoji code points in the record's HTML: {found}"
    steps = {s["step"]: s["outcome"] for s in nb.metadata["swrun"]["steps"]}
    items = re.findall(r'<li class="task-list-item">(<input[^>]*>)(.*?)</li>', page, re.S)
    assert len(items) == len(checklist.ITEMS), items
    for item, (box, text) in zip(checklist.ITEMS, items):
        label = html_mod.unescape(re.sub(r"<[^>]+>", "", text))
        assert item.text.replace("`", "") in label, (item.text, label)
        passed = all(steps.get(s) in ("ok", "warning") for s in item.steps)
        applies = not item.text.startswith("Tested migration on staging")  # a development run: n/a
        if passed and applies:
            assert "checked" in box, f"unchecked box for a passed step: {label}"
        else:
            assert "checked" not in box, f"ticked, though its steps did not all pass: {label}"
    watch = next(t for t in items if "Monitor for errors" in t[1])
    assert "skipped" in watch[1]  # watch_seconds is 0: marked, not ticked
    # the plot of each revision's time and lock hold on the copy, against the preflight's traffic
    rehearse_cell = next(c for c in nb.cells if "step:rehearse" in c.get("metadata", {}).get("tags", []))
    assert any("image/png" in o.get("data", {}) for o in rehearse_cell.outputs)
    # the banner: the outcome as a word, the revisions moved
    banner = nb.cells[0].source
    assert f"deploy run `{entry['run_id']}`: SUCCEEDED" in banner
    assert f"| revision | <base> → {HEAD} |" in banner.replace("&lt;", "<").replace("&gt;", ">")


def test_record_tables_show_counts_as_integers_missing_as_a_dash_and_flags_labelled(runs):
    root, _ = runs
    _, nb = record(root, "deploy")
    verify_cell = next(c for c in nb.cells if "step:verify" in c.get("metadata", {}).get("tags", []))
    counts = next(o for o in verify_cell.outputs if o.get("data", {}).get("text/plain", "").startswith("row counts"))
    text, shown = counts["data"]["text/plain"], counts["data"]["text/html"]
    assert "NaN" not in text and "None" not in text and ".0 " not in text + " "
    users = next(line for line in text.splitlines() if line.startswith("public.users"))
    assert users.split()[:3] == ["public.users", "-", "6"], users  # before: no table; after: 6 rows
    assert '<td style="text-align: left">public.users</td>' in shown  # text left, numbers right
    assert '<td style="text-align: right">6</td>' in shown
    status_cell = next(c for c in nb.cells if "step:status" in c.get("metadata", {}).get("tags", []))
    history = next(o for o in status_cell.outputs if o.get("data", {}).get("text/plain", "").startswith("history"))
    assert " False " not in history["data"]["text/plain"] and " no " in history["data"]["text/plain"]


def test_a_refused_stamp_names_its_revision_and_labels_column_differences(runs):
    root, refused = runs
    entry, nb = record(root, "stamp")
    assert entry["outcome"] == "failed" and entry["revision_before"] == [HEAD] == entry["revision_after"]
    assert f"| revision | at {HEAD} (unchanged) |" in nb.cells[0].source
    assert "text False" not in refused.stdout and "text True" not in refused.stdout
    assert re.search(r"public\.pickups\.notes\s+only in the live database\s+text, nullable", refused.stdout), refused.stdout


def test_each_run_is_indexed_under_its_own_name_and_revisions(runs):
    root, _ = runs
    listed = run_cli("reports", "list", "--reports-dir", root / "reports")
    assert listed.returncode == 0, listed.stderr
    by_runbook = {e["runbook"]: e for e in entries(root)}
    assert set(by_runbook) == {"deploy", "stamp", "backup"}
    assert by_runbook["backup"]["record"].split("_")[-2] == "backup"
    assert "? -> ?" not in listed.stdout and "backup" in listed.stdout


def test_the_audit_counts_deployments_apart_from_other_runs(runs):
    from swrun import audit

    root, _ = runs
    df = audit.load(root / "reports")
    assert list(audit.overview(df)["runs"]) == [1]  # the deploy; not the stamp, not the backup
    other = audit.other_runs(df)
    assert set(other["kind"]) == {"stamp", "backup"} and list(other.sort_values("kind")["failed"]) == [0, 1]


def test_display_helpers():
    df = pd.DataFrame({"table": ["a.b", "c.d"], "before": [None, 3], "after": [1, 8], "seconds": [0.0256, 1.5],
                       "applied": [True, False]})
    text = display.frame_text(df).splitlines()
    assert text[0].split() == ["table", "before", "after", "seconds", "applied"]
    assert text[1].split() == ["a.b", "-", "1", "0.0256", "yes"] and text[2].split() == ["c.d", "3", "8", "1.5", "no"]
    assert text[1].startswith("a.b ")  # text left-aligned
    for outcome in ("ok", "warning", "failed", "blocked", "skipped", "succeeded", "interrupted"):
        assert not EMOJI.search(display.mark_md(outcome)) and display.mark_word(outcome).lower().startswith(outcome[:4])
    # a column's nullability is labelled, never "text False"
    assert schema._detail(("public", "t", "c", "text", False, ""), 3, "columns") == "text, nullable"
    assert schema._detail(("public", "t", "c", "integer", True, "0"), 3, "columns") == "integer, NOT NULL, default 0"


def test_checklist_ticks_passed_items_and_marks_failed_and_skipped_ones():
    results = [{"step": "preflight", "outcome": "ok", "summary": "fine"},
               {"step": "backup", "outcome": "ok", "summary": "dumped", "data": {"verified": True}},
               {"step": "upgrade", "outcome": "failed", "summary": "boom", "error": "revision x failed"},
               {"step": "verify", "outcome": "skipped", "summary": "not run: upgrade failed"}]
    md = checklist.ticked(results, "production", guide=None)
    assert "- [x] Backed up production database" in md and "- [x] Scheduled deployment during low-traffic period" in md
    failed = next(line for line in md.splitlines() if "Run `alembic upgrade head`" in line)
    assert failed.startswith("- [ ]") and "**FAILED**" in failed and "revision x failed" in failed
    skipped = next(line for line in md.splitlines() if "Verify application works" in line)
    assert skipped.startswith("- [ ]") and "**skipped**" in skipped
    assert "- [ ] Tested migration on local database" in md  # no rehearse step in this run
    assert not EMOJI.search(md)
