#!/usr/bin/env python
"""Regenerate every sample output in README.md and docs/*.md from real runs, or check them.

A sample is a fenced block right after a marker line::

    <!-- sample: 10 -->
    ```console
    $ swrun deploy
    ...what it printed...
    ```

Every ``$ `` line is a command; the lines after it, up to the next command, are what it printed
(stdout and stderr as a terminal shows them). All samples of all pages run in one scratch
directory, in the order of their keys (``10`` before ``20``), so a later sample sees what an
earlier one did: one deploy serves the README, the ops and the auditors' pages. The scratch
directory is shown as ``/home/ops/demo``.

    python scripts/doc_samples.py            # rewrite the samples (and docs/img/*.png) from what runs print now
    python scripts/doc_samples.py --check    # exit 1 and show the differences (times and ids aside)

It also rebuilds the generated tables (``<!-- generated: parameters -->``: every runbook's declared
parameters) and, with Chromium installed, the screenshots in docs/img/ (the site's index and the
deploy's record, from the site the samples built).

tests/test_doc_samples.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs")
SHOWN_DIR = "/home/ops/demo"
MARKER = re.compile(r"^<!-- sample: (?P<key>[0-9]+) -->\s*$")
TIMEOUT_S = 600


@dataclass
class Sample:
    page: Path
    key: int
    start: int  # index of the fence line that opens the block
    end: int  # index of the closing fence line
    fence: str
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, output lines)


def pages(root: Path = ROOT) -> list[Path]:
    found = [root / "README.md"]
    found += sorted((root / "docs").glob("*.md"))
    return [p for p in found if p.is_file()]


def parse(page: Path) -> list[Sample]:
    lines = page.read_text(encoding="utf-8").splitlines()
    samples = []
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        if start >= len(lines) or not lines[start].startswith("```"):
            raise SystemExit(f"{page}:{i + 1}: a sample marker must be followed by a fenced block")
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise SystemExit(f"{page}:{start + 1}: the sample's block is not closed")
        sample = Sample(page, int(m["key"]), start, end, lines[start])
        for line in lines[start + 1:end]:
            if line.startswith("$ "):
                sample.commands.append((line[2:], []))
            elif sample.commands:
                sample.commands[-1][1].append(line)
            else:
                raise SystemExit(f"{page}:{start + 1}: a sample starts with a '$ ' command line")
        samples.append(sample)
        i = end + 1
    return samples


def collect(root: Path = ROOT) -> list[Sample]:
    samples = [s for p in pages(root) for s in parse(p)]
    return sorted(samples, key=lambda s: (s.key, str(s.page), s.start))


# a progress line of a phase that lasted more than 2 s ("rehearse: upgrade 43%: 3 of 7 revisions, ..."):
# how many appear depends on the machine's speed, so the samples leave them out (docs/progress.md shows them)
PROGRESS_LINE = re.compile(r"^\s*[\w-]+: [\w -]+?\s+\d{1,3}%(:|$)")


def _without_progress(lines: list[str]) -> list[str]:
    return [line for line in lines if not PROGRESS_LINE.match(line)]


def _shown(text: str, workdir: Path) -> str:
    """The output with the scratch directory shown as SHOWN_DIR (also where a URL percent-encodes it)."""
    real = str(workdir)
    for form, shown in ((real, SHOWN_DIR), (urllib.parse.quote(real, safe=""), urllib.parse.quote(SHOWN_DIR, safe=""))):
        text = text.replace(form, shown)
    return text


def _env() -> dict[str, str]:
    """A user's shell: no URL or key of the caller's, the embedded server in the scratch directory."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SWRUN_DATABASE_URL", "SWRUN_RECORD_KEY", "SWRUN_PLAIN_OUTPUT", "SWRUN_HOME", "SWRUN_URL_ENV")}
    env.update(COLUMNS="200", TERM="dumb", NO_COLOR="1", PYTHONUNBUFFERED="1")
    # `swrun` is this interpreter's console script, also when its virtualenv is not activated (CI)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_all(samples: list[Sample], workdir: Path) -> dict[int, list[list[str]]]:
    """Run every sample's commands in ``workdir``; returns id(sample) -> output lines per command."""
    env = _env()
    out: dict[int, list[list[str]]] = {}
    for sample in samples:
        got = []
        for command, _ in sample.commands:
            proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, timeout=TIMEOUT_S)
            got.append(_without_progress(_shown(proc.stdout, workdir).rstrip("\n").splitlines()))
        out[id(sample)] = got
    return out


def stop_server(workdir: Path) -> None:
    subprocess.run([sys.executable, "-m", "swrun", "db", "stop"], cwd=workdir, env=_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


# -- comparing modulo times and ids -------------------------------------------------------------------


def _revisions(root: Path = ROOT) -> set[str]:
    versions = root / "swrun" / "demo" / "smartwaste" / "migrations" / "versions"
    return {p.name.split("_", 1)[0] for p in versions.glob("*.py")}


def normalize(lines: list[str], revisions: set[str] | None = None) -> list[str]:
    """What must match: the text with times, durations, ids, hashes, ports, pids and sizes masked,
    and runs of spaces (table widths) collapsed."""
    revisions = _revisions() if revisions is None else revisions

    def hexes(m: re.Match) -> str:
        return m.group(0) if m.group(0) in revisions else "<id>"

    out = []
    for line in _without_progress(lines):
        s = re.sub(r"\d{8}T\d{6}Z", "<ts>", line)
        s = re.sub(r"/\d{4}/\d{2}/", "/<yyyy>/<mm>/", s)  # the record's directory: reports/<env>/<YYYY>/<MM>/
        # which revision holds the longest lock on the demo's tiny tables is a matter of milliseconds
        s = re.sub(r"longest blocking lock: [^;]*?\([0-9a-f]{12}\)", "longest blocking lock: <lock>", s)
        s = re.sub(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2})?( UTC)?)?", "<time>", s)
        s = re.sub(r"(?<![0-9a-f])[0-9a-f]{12,64}(?![0-9a-f])", hexes, s)  # also inside a file name
        s = re.sub(r"(port=|:)\d{4,5}\b", r"\1<port>", s)
        s = re.sub(r"%3A\d{4,5}\b", "%3A<port>", s)
        s = re.sub(r"\bpid \d+", "pid <n>", s)
        s = re.sub(r"\d[\d,]* bytes", "<n> bytes", s)
        s = re.sub(r"\d+(\.\d+)? ?(s|ms|GiB|MiB|KiB|kB|MB|GB|tx/s|transactions/s)\b", r"<n>\2", s)
        s = re.sub(r"\b\d+(\.\d+)? tx\b", "<n> tx", s)
        s = re.sub(r"\d+\.\d+", "<n>", s)
        s = re.sub(r"\s+", " ", s).strip()
        out.append(s)
    while out and not out[-1]:
        out.pop()
    return out


def write(samples: list[Sample], results: dict[int, list[list[str]]]) -> list[Path]:
    changed = []
    for page in sorted({s.page for s in samples}):
        lines = page.read_text(encoding="utf-8").splitlines()
        for sample in sorted((s for s in samples if s.page == page), key=lambda s: s.start, reverse=True):
            body = []
            for (command, _), got in zip(sample.commands, results[id(sample)]):
                body.append(f"$ {command}")
                body.extend(got)
            lines[sample.start + 1:sample.end] = body
        text = "\n".join(lines) + "\n"
        if text != page.read_text(encoding="utf-8"):
            page.write_text(text, encoding="utf-8")
            changed.append(page)
    return changed


def differences(samples: list[Sample], results: dict[int, list[list[str]]]) -> list[str]:
    problems = []
    revisions = _revisions()
    for sample in samples:
        for (command, documented), got in zip(sample.commands, results[id(sample)]):
            want, have = normalize(documented, revisions), normalize(got, revisions)
            if want != have:
                diff = "\n".join(difflib.unified_diff(want, have, "documented", "printed now", lineterm="", n=1))
                where = f"{sample.page.relative_to(ROOT)}:{sample.start + 1}"
                problems.append(f"{where}: `{command}` prints something else now "
                                f"(regenerate: python scripts/doc_samples.py)\n{diff}")
    return problems


# -- generated tables: <!-- generated: parameters --> ... <!-- /generated --> -------------------------------

GENERATED = re.compile(r"(<!-- generated: (?P<what>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def parameters_table() -> str:
    """Every runbook's declared parameters (its ``parameters`` cell, read as swrun.params reads it)."""
    import json

    from swrun import params
    from swrun.runner import RUNBOOKS_DIR

    out = []
    for path in sorted(RUNBOOKS_DIR.glob("*.ipynb")):
        declared = params.declared(json.loads(path.read_text(encoding="utf-8")))
        if not declared:
            continue
        out += [f"### {path.stem}", "", "| parameter | type | default | what it is |", "|---|---|---|---|"]
        for p in declared.values():
            default = "(required)" if p.required else repr(p.default)
            help_text = (p.help or "").replace("|", "\\|")
            out.append(f"| `{p.name}` | {getattr(p.type, '__name__', str(p.type))} | `{default}` | {help_text} |")
        out.append("")
    return "\n".join(out)


GENERATORS = {"parameters": parameters_table}


def generated(text: str) -> str:
    """``text`` with every generated block rebuilt."""
    def rebuild(m: re.Match) -> str:
        make = GENERATORS.get(m["what"])
        return m.group(1) + make().rstrip("\n") + "\n" + m.group(4) if make else m.group(0)

    return GENERATED.sub(rebuild, text)


def stale_generated(root: Path = ROOT) -> list[Path]:
    return [p for p in pages(root) if generated(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]


def write_generated(root: Path = ROOT) -> list[Path]:
    changed = stale_generated(root)
    for p in changed:
        p.write_text(generated(p.read_text(encoding="utf-8")), encoding="utf-8")
    return changed


# -- screenshots: docs/img/ -----------------------------------------------------------------------------

IMG_DIR = ROOT / "docs" / "img"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def screenshot(page: Path, out: Path, size: str, workdir: Path) -> None:
    """``page`` as headless Chromium draws it, the scratch directory shown as SHOWN_DIR."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: no screenshots (apt-get install chromium), or pass --no-screenshots")
    shown = page.with_name(f".shown-{page.name}")
    shown.write_text(_shown(page.read_text(encoding="utf-8"), workdir), encoding="utf-8")
    profile = tempfile.mkdtemp(prefix="swrun-chromium-")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                        f"--window-size={size}", shown.as_uri()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=180, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        shown.unlink(missing_ok=True)


def screenshots(workdir: Path) -> list[Path]:
    """The site's index and the first deploy's record page, from the site a sample built (`swrun reports site`)."""
    import json

    site = workdir / "reports" / "site"
    if not (site / "index.html").is_file():
        raise SystemExit("no reports/site/index.html: a sample must run `swrun reports site`")
    entries = [json.loads(line) for line in (workdir / "reports" / "index.jsonl").read_text().splitlines() if line.strip()]
    deploy = next(e for e in entries if e.get("runbook") == "deploy")
    made = [(site / "index.html", IMG_DIR / "site-index.png", "1280,330"),
            (site / "records" / f"{deploy['run_id']}.html", IMG_DIR / "record.png", "1280,1180")]
    for page, out, size in made:
        screenshot(page, out, size, workdir)
    return [out for _, out, _ in made]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting; exit 1 on a difference")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (printed)")
    parser.add_argument("--tables-only", action="store_true", help="only the generated tables (no commands run)")
    parser.add_argument("--no-screenshots", action="store_true", help="leave docs/img/ alone")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_generated()
        for p in stale:
            print(f"{p.relative_to(ROOT)}: a generated table is out of date (regenerate: python scripts/doc_samples.py)")
    else:
        stale = []
        for p in write_generated():
            print(f"{p.relative_to(ROOT)}: generated tables rebuilt")
    samples = [] if args.tables_only else collect()
    if not samples:
        return 1 if stale else 0
    workdir = Path(tempfile.mkdtemp(prefix="swrun-doc-samples-"))
    shots: list[Path] = []
    try:
        results = run_all(samples, workdir)
        if not args.check and not args.no_screenshots:
            shots = screenshots(workdir)
    finally:
        stop_server(workdir)
        if args.keep:
            print(f"scratch directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.check:
        problems = differences(samples, results)
        for p in problems:
            print(p, end="\n\n")
        print(f"{len(samples)} sample(s) in {len({s.page for s in samples})} page(s): "
              + (f"{len(problems)} differ" if problems else "all match"))
        return 1 if problems or stale else 0
    changed = write(samples, results)
    print(f"{len(samples)} sample(s) regenerated; changed: {', '.join(str(p.relative_to(ROOT)) for p in changed) or 'none'}")
    for shot in shots:
        print(f"screenshot: {shot.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
