"""Records as HTML: one record through nbconvert, or a static site of all of them.

The HTML is readable without Jupyter and without a network: inputs and outputs are shown,
images are embedded, and the scripts nbconvert's template would fetch from CDNs
(require.js, MathJax, mermaid) are left out; records need none of them, and a
Content-Security-Policy forbids any script in the page, so text that reached a record
(an error message, say) cannot run in an auditor's browser. Files are written
owner-only (0600, directories 0700).
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from . import records, store
from .store import StoreError

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block extra_css -%}
<meta http-equiv="Content-Security-Policy" content="script-src 'none'; connect-src 'none'; object-src 'none'">
{%- endblock extra_css -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def exporter():
    """An nbconvert HTMLExporter for records: inputs and outputs, no external scripts."""
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(extra_loaders=[jinja2.DictLoader({"swrun-record.html.j2": _TEMPLATE})],
                        template_file="swrun-record.html.j2", exclude_input=False, exclude_output=False,
                        embed_images=True)


def record_html(nb, exp=None) -> str:
    meta = nb.metadata.get("swrun", {})
    title = f"{meta.get('runbook', 'run')} {meta.get('run_id', '')} ({meta.get('environment', '')}): {meta.get('outcome', '')}"
    body, _ = (exp or exporter()).from_notebook_node(_for_people(nb), resources={"metadata": {"name": title}})
    return body


def _for_people(nb):
    """The record without the step results' JSON bundles: they are for programs (and are in
    metadata["swrun"]); nbconvert would show their text fallback as noise."""
    import copy

    from .result import MIME_TYPE

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("outputs"):
            cell.outputs = [o for o in cell.outputs if MIME_TYPE not in o.get("data", {})]
    return nb


def _write_private(path: Path, text: str) -> None:
    with store.private_umask():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        records.write_atomic(path, text, mode=0o600)


def export_html(reports_dir: Path, run: str, out: Path | None = None) -> Path:
    """Write the HTML of one run's record, next to the record unless ``out`` is given."""
    index = store.read_index(reports_dir)
    entry = store.find(index.entries, run)
    nb = store.read_record(reports_dir, entry)
    path = store.record_file(reports_dir, entry)
    target = Path(out) if out else path.with_suffix(".html")
    if target.is_dir():
        target = target / path.with_suffix(".html").name
    _write_private(target, record_html(nb))
    return target


@dataclass
class SiteResult:
    index: Path
    pages: int = 0
    reused: int = 0
    problems: list[str] = field(default_factory=list)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }
h1 { font-size: 1.4rem; } p.meta { color: #555; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f6; position: sticky; top: 0; }
td.run { font-family: ui-monospace, monospace; }
.succeeded { color: #137333; } .failed { color: #b3261e; font-weight: bold; } .interrupted { color: #b06000; }
.missing { color: #b3261e; }
"""


def build_site(reports_dir: Path, out_dir: Path | None = None) -> SiteResult:
    """An index page of every indexed run, newest first, linking each record's HTML.

    A record that cannot be read is listed without a link and reported; the others are
    all written. Pages whose record has not changed since they were made are kept.
    """
    reports_dir = Path(reports_dir)
    index = store.read_index(reports_dir)
    out_dir = Path(out_dir) if out_dir else reports_dir / store.SITE_DIR
    pages_dir = out_dir / "records"
    result = SiteResult(out_dir / "index.html")
    result.problems.extend(str(p) for p in index.problems)
    exp = None
    rows = []
    for entry in sorted(index.entries, key=lambda e: e.get("started") or "", reverse=True):
        page = pages_dir / f"{entry['run_id']}.html"
        link = None
        try:
            src = store.record_file(reports_dir, entry)
            if page.exists() and src.exists() and page.stat().st_mtime >= src.stat().st_mtime:
                result.reused += 1
            else:
                nb = store.read_record(reports_dir, entry)
                exp = exp or exporter()
                _write_private(page, record_html(nb, exp))
                result.pages += 1
            link = f"records/{entry['run_id']}.html"
        except StoreError as exc:
            result.problems.append(exc.line())
        rows.append(_row(entry, link))
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>swrun deployment records</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>swrun deployment records</h1>\n"
        f"<p class=\"meta\">{len(index.entries)} run(s) from {html.escape(str(index.path))}; generated {generated}. "
        "Check them with <code>swrun reports verify</code>.</p>\n"
        "<table id=\"runs\">\n<thead><tr><th>run</th><th>started (UTC)</th><th>environment</th><th>runbook</th>"
        "<th>outcome</th><th>operator</th><th>revision</th><th>database</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows) + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )
    _write_private(result.index, doc)
    return result


def _row(e: dict, link: str | None) -> str:
    esc = html.escape
    run = esc(e["run_id"])
    cell = f'<a href="{esc(link)}">{run}</a>' if link else f'{run} <span class="missing">(record unreadable)</span>'
    outcome = e.get("outcome") or ""
    shown = outcome + (f" at {e['failed_step']}" if e.get("failed_step") else "")
    db = e.get("database") or {}
    before, after = store._revs(e.get("revision_before")), store._revs(e.get("revision_after"))
    revs = f"at {after}" if before == after and after != "-" else f"{before} → {after}"
    return (f'<tr data-run="{run}"><td class="run">{cell}</td><td>{esc(store._short_time(e.get("started")))}</td>'
            f'<td>{esc(str(e.get("environment") or ""))}</td><td>{esc(str(e.get("runbook") or ""))}</td>'
            f'<td class="{esc(outcome)}">{esc(shown)}</td><td>{esc(str(e.get("operator") or ""))}</td>'
            f'<td>{esc(revs)}</td><td>{esc(str(db.get("database") or ""))}@{esc(str(db.get("port") or ""))}</td></tr>')

