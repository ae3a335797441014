"""The secrets test matrix: a real password role on the embedded server, passwords that stress
every encoding, each way a password can arrive (userinfo, ``?password=``) x every place a run
writes or prints (record, index, database copy, terminal, error lines, files under backups/,
the step journal), each searched for every encoding below. Zero hits.

The project's env.py and one of its migrations print the URL's password in odd spellings
(lower-case percent escapes, %2B/%2F, repr, JSON, base64, hex, HTML), write it into the
offline SQL, and another migration raises an exception quoting the URL: so the secret really
reaches the outputs, and the test proves swrun takes it out again.

The encoders are written here, independently of :mod:`swrun.redaction`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa

from conftest import DEMO_DIR, HEAD, add_revision, run_cli
from swrun import database, records, redaction, runner

PASSWORDS = {
    "specials": "Pa+ss/w%rd @:\"q'\\é",  # + / % @ : space, both quotes, a backslash, non-ASCII
    "short": "q Z",                       # three characters (with a space: %20 and + forms)
}
ARRIVALS = ("userinfo", "query")
# $PGPASSWORD in swrun's environment: libpq reads it, so it is a secret too (one password is enough)
MATRIX = [(w, a) for w in PASSWORDS for a in ARRIVALS] + [("specials", "environment")]
PRINTER_REV, RAISER_REV = "5ec7e75ec7e1", "5ec7e75ec7e2"


def encodings(user: str, password: str) -> dict[str, str]:
    """Every spelling of the password the matrix searches for."""
    pct = quote(password, safe="")
    basic = f"{user}:{password}".encode()
    forms = {
        "raw": password,
        "percent": pct,
        "percent-lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), pct),
        "percent-url": quote(password),  # '/' left as it is
        "percent-partial": "".join(quote(c, safe="") if i % 2 else c for i, c in enumerate(password)),
        "plus": quote_plus(password),
        "json": json.dumps(password, ensure_ascii=False)[1:-1],
        "json-ascii": json.dumps(password)[1:-1],
        "repr": repr(password)[1:-1],
        "repr-ascii": ascii(password)[1:-1],
        "json-of-repr": json.dumps(repr(password))[1:-1],
        "html": html.escape(password),
        "hex": password.encode().hex(),
        "base64": base64.b64encode(password.encode()).decode(),
        "base64-url": base64.urlsafe_b64encode(password.encode()).decode(),
        "base64-basic": base64.b64encode(basic).decode(),
        "base64-basic-url": base64.urlsafe_b64encode(basic).decode(),
    }
    return forms


# what env.py and the migrations print: every odd spelling of the password they can see
PRINTER = r'''
import base64 as _b64, json as _json, os as _os, sys as _sys, html as _html
from urllib.parse import quote as _q, quote_plus as _qp
import re as _re


def _swrun_test_leak(where):
    from sqlalchemy.engine import make_url
    raw = _os.environ.get("SWRUN_DATABASE_URL") or ""
    if not raw:
        try:
            from alembic import context as _context
            raw = _context.config.get_main_option("sqlalchemy.url") or ""
        except Exception:
            raw = ""
    try:
        url = make_url(raw)
    except Exception:
        return ""
    pw = url.password or url.query.get("password") or _os.environ.get("PGPASSWORD") or ""
    user = url.username or ""
    pct = _q(pw, safe="")
    forms = [raw, pw, pct, _re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), pct), _q(pw), _qp(pw),
             pct.replace("%2B", "+"), pw.replace("+", "%2B").replace("/", "%2F"), repr(pw), ascii(pw), _json.dumps(pw),
             _json.dumps(pw, ensure_ascii=False), _json.dumps({"url": raw}), repr(raw), _html.escape(pw), pw.encode().hex(),
             _b64.b64encode(pw.encode()).decode(), _b64.urlsafe_b64encode(pw.encode()).decode(),
             _b64.b64encode(f"{user}:{pw}".encode()).decode(), "Basic " + _b64.b64encode(f"{user}:{pw}".encode()).decode(),
             _b64.b64encode(raw.encode()).decode(), "".join(_q(c, safe="") if i % 2 else c for i, c in enumerate(pw))]
    text = f"{where}: " + " | ".join(forms)
    print(text)
    print(text, file=_sys.stderr)
    return text
'''

ENV_PY_LEAK = PRINTER + '\n_swrun_test_leak("env.py")\n'

PRINTER_BODY = ("import os, sys; exec(open(os.environ['SWRUN_TEST_PRINTER']).read(), globals()); "
                "text = _swrun_test_leak('migration'); "
                "from alembic import context; "
                "context.is_offline_mode() and op.get_context().impl.static_output('-- ' + text.replace(chr(10), ' '))")
RAISER_BODY = ("import os; exec(open(os.environ['SWRUN_TEST_PRINTER']).read(), globals()); "
               "raise RuntimeError('cannot reach ' + _swrun_test_leak('raise') + ' at ' + os.environ['SWRUN_DATABASE_URL'])")


def leaky_project(base: Path) -> tuple[Path, Path]:
    """A copy of the demo whose env.py prints the password in odd spellings, plus one migration
    that prints (and writes into the offline SQL) the same. Returns (alembic.ini, printer file)."""
    dest = base / "leaky"
    shutil.copytree(DEMO_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    printer = base / "printer.py"
    printer.write_text(PRINTER)
    env_py = dest / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("config = context.config\n", "config = context.config\n" + ENV_PY_LEAK, 1))
    add_revision(dest, PRINTER_REV, HEAD, PRINTER_BODY, slug="printer")
    return dest / "alembic.ini", printer


# -- the places -----------------------------------------------------------------------------------

def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def texts_of(path: Path) -> list[str]:
    """A file's text as stored, and, for JSON (a record, the index), every string in it decoded."""
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    out = [text, data.decode("latin-1")]
    docs = []
    try:
        docs.append(json.loads(text))
    except ValueError:
        for line in text.splitlines():
            try:
                docs.append(json.loads(line))
            except ValueError:
                pass
    for doc in docs:
        out.extend(_strings(doc))
    return out


def hits(places: dict[str, list[str]], secrets: dict[str, dict[str, str]]) -> list[str]:
    """Every (place, secret, encoding) found; also counts the checks made."""
    found = []
    for place, texts in places.items():
        for name, forms in secrets.items():
            for enc, form in forms.items():
                hits.checks += 1
                if any(form in t for t in texts):
                    found.append(f"{place}: {name} as {enc}")
    return found


hits.checks = 0


def gather(workdir: Path, procs, db_url: str) -> dict[str, list[str]]:
    reports, backups = workdir / "reports", workdir / "backups"
    record_files = [p for p in reports.rglob("*") if p.is_file() and p.name != "index.jsonl"]
    places = {
        "record": [t for p in record_files for t in texts_of(p)],
        "index": [t for p in reports.rglob("index.jsonl") for t in texts_of(p)],
        "backups": [t for p in backups.rglob("*") if p.is_file() for t in texts_of(p)],
        "terminal": [t for proc in procs for t in (proc.stdout, proc.stderr)],
        "error lines": [line for proc in procs for line in proc.stderr.splitlines() if "error" in line.lower()],
        "any file": [t for p in workdir.rglob("*") if p.is_file() for t in texts_of(p)],
    }
    engine = database.make_engine(database.normalize_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("select entry::text from swrun.run_records").scalars().all()
    finally:
        engine.dispose()
    places["database copy"] = list(rows) + [s for r in rows for s in _strings(json.loads(r))]
    assert record_files and places["index"] and rows, "a run kept no record, index entry or database copy"
    return places


# -- the role --------------------------------------------------------------------------------------

def make_role(db_url: str, password: str) -> str:
    role = f"sec_{uuid.uuid4().hex[:8]}"
    engine = database.make_engine(database.normalize_url(db_url))
    try:
        with engine.connect() as conn:
            sql = conn.execute(sa.text("select format('create role %I login superuser password %L', :r, :p)"),
                               {"r": role, "p": password}).scalar()
            cur = conn.connection.dbapi_connection.cursor()
            cur.execute(sql)  # no parameters: psycopg2 leaves the % in the password alone
            conn.connection.dbapi_connection.commit()
    finally:
        engine.dispose()
    return role


def drop_role(db_url: str, role: str) -> None:
    engine = database.make_engine(database.normalize_url(db_url))
    try:
        with engine.connect() as conn:
            conn.connection.dbapi_connection.autocommit = True
            cur = conn.connection.dbapi_connection.cursor()
            cur.execute(f'drop owned by "{role}"; drop role "{role}"')
    finally:
        engine.dispose()


def role_url(pg, dbname: str, role: str, password: str, arrival: str) -> tuple[str, dict[str, str]]:
    """The URL for the role, and the environment swrun gets (``$PGPASSWORD`` for that arrival)."""
    base = pg.status().tcp_url(database=dbname, user=role)
    if arrival == "userinfo":
        return base.replace(f"{role}@", f"{role}:{quote(password, safe='')}@", 1), {}
    if arrival == "environment":
        return base, {"PGPASSWORD": password}
    return f"{base}?password={quote(password, safe='')}", {}


# -- the matrix ------------------------------------------------------------------------------------

@pytest.mark.parametrize("which, arrival", MATRIX)
def test_no_password_in_any_place(which, arrival, pg, db_url, tmp_path, workdir):
    password = PASSWORDS[which]
    role = make_role(db_url, password)
    try:
        dbname = db_url.split("?", 1)[0].rsplit("/", 1)[-1]
        url, given = role_url(pg, dbname, role, password, arrival)
        wrong, wrong_env = role_url(pg, dbname, role, password + "x", arrival)
        ini, printer = leaky_project(tmp_path)
        env = {"SWRUN_TEST_PRINTER": str(printer), **given}
        # the password is really needed: the TCP listener refuses a wrong one
        refused = run_cli("status", "--database-url", wrong, "--project", ini, env={**env, **wrong_env}, cwd=workdir)
        assert refused.returncode == 4 and "authentication failed" in refused.stderr, refused.stderr
        deployed = run_cli("deploy", "--database-url", url, "--project", ini, "--env", "staging", env=env, cwd=workdir)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert "***" in deployed.stderr or arrival == "environment"  # the URL as shown: redacted
        # the migration's output really reached the record (redacted): the matrix searches real text
        record = next((workdir / "reports").rglob("*_deploy_*.ipynb")).read_text()
        assert "migration: " in record and "env.py: " in record
        assert (workdir / "backups").is_dir() and any((workdir / "backups").glob("*_apply.sql"))
        # a migration that raises an exception quoting the URL: a failed run, its record and lines
        add_revision(ini.parent, RAISER_REV, PRINTER_REV, RAISER_BODY, slug="raiser")
        failed = run_cli("deploy", "--database-url", url, "--project", ini, "--env", "staging", env=env, cwd=workdir)
        assert failed.returncode == 9 and "raise" in failed.stderr, failed.stderr[-3000:]
        # the same exception met by a verb that runs env.py in swrun's own process (no kernel)
        previewed = run_cli("preview", "--database-url", url, "--project", ini, env=env, cwd=workdir)
        assert "raise: " in previewed.stdout + previewed.stderr, previewed.stderr[-3000:]
        secrets = {"password": encodings(role, password), "wrong password": encodings(role, password + "x")}
        found = hits(gather(workdir, [refused, deployed, failed, previewed], db_url), secrets)
        assert found == []
    finally:
        drop_role(db_url, role)


def test_failing_runs_print_no_password(pg, db_url, tmp_path, workdir):
    """A wrong password and URLs that do not parse: one line, the right exit code, no password."""
    password = PASSWORDS["specials"]
    role = make_role(db_url, password)
    try:
        dbname = db_url.split("?", 1)[0].rsplit("/", 1)[-1]
        port = pg.status().port
        enc = quote(password, safe="")
        ini, printer = leaky_project(tmp_path)
        env = {"SWRUN_TEST_PRINTER": str(printer)}
        procs = []
        wrong, _ = role_url(pg, dbname, role, password[::-1], "userinfo")
        procs.append(run_cli("deploy", "--database-url", wrong, "--project", ini, "--env", "staging", env=env, cwd=workdir))
        for bad in (f"postgresql://{role}:{enc}@127.0.0.1:port{enc}/{dbname}",        # non-numeric port
                    f"postgresql://{role}:{enc}@127.0.0.1:{port},localhost:{port}/{dbname}",  # several hosts
                    f"postgresql://{role}@/{dbname}?host=127.0.0.1&host=localhost&password={enc}",
                    f"postgresql://{role}:{password}@127.0.0.1:{port}/{dbname}",      # not encoded: does not parse
                    f"postgresql://{role}@127.0.0.1:{port}/{dbname}?port=x&password={enc}"):
            proc = run_cli("deploy", "--database-url", bad, "--project", ini, env=env, cwd=workdir)
            assert proc.returncode == 2, (bad, proc.stderr)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("swrun: error:"), proc.stderr
            assert "Traceback" not in proc.stderr
            procs.append(proc)
        assert procs[0].returncode in (4, 9) and "authentication failed" in procs[0].stderr
        places = {"terminal": [t for p in procs for t in (p.stdout, p.stderr)],
                  "error lines": [line for p in procs for line in p.stderr.splitlines() if "error" in line],
                  "files": [t for p in workdir.rglob("*") if p.is_file() for t in texts_of(p)]}
        secrets = {"password": encodings(role, password), "wrong password": encodings(role, password[::-1])}
        assert hits(places, secrets) == []
    finally:
        drop_role(db_url, role)


def test_the_journal_and_progress_lines_hold_no_password(tmp_path):
    """The step journal (what a killed run leaves) and the progress lines, from a cell's result."""
    import nbformat

    from swrun.result import MIME_TYPE

    password = PASSWORDS["specials"]
    url = database.normalize_url(f"postgresql://app:{quote(password, safe='')}@db/prod")  # remembered by swrun
    secrets = {"password": encodings("app", password)}
    leaked = " ".join(secrets["password"].values())
    cell = nbformat.v4.new_code_cell("", metadata={"tags": ["step:upgrade"]})
    cell.outputs = [nbformat.v4.new_output("display_data", data={MIME_TYPE: {
        "step": "upgrade", "outcome": "failed", "summary": f"failed: {leaked}", "error": leaked, "data": {"url": leaked}}})]
    journal = tmp_path / ".x.journal"
    stream = io.StringIO()
    progress = runner._Progress(True, journal, stream=stream)
    progress.on_cell_start(cell, 0)
    progress.on_cell_executed(cell, 0, {})
    err = stream.getvalue()
    assert "***" in err
    assert hits({"journal": texts_of(journal), "progress": [err]}, secrets) == []
    assert records.secret_forms(url)  # the URL's password is among the run's secrets


def test_scrub_file_redacts_a_written_file(tmp_path):
    password = PASSWORDS["specials"]
    path = tmp_path / "x_apply.sql"
    forms = encodings("app", password)
    path.write_text("-- " + " ".join(forms.values()) + "\nselect 1;\n")
    path.chmod(0o600)
    n = records.scrub_file(path, redaction.Secrets([password], user="app"))
    assert n >= len(set(forms.values())) - 1
    assert hits({"file": texts_of(path)}, {"password": forms}) == []
    assert "select 1;" in path.read_text() and path.stat().st_mode & 0o777 == 0o600
