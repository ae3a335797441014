"""URL handling and parameter validation: pure logic, no server."""

import nbformat
import pytest

from swrun import database, params, records
from swrun.errors import UsageError


@pytest.mark.parametrize("given", [
    "postgresql://app:s3cret@db.example:5433/prod",
    "postgres://app:s3cret@db.example:5433/prod",
    "postgresql+psycopg2://app:s3cret@db.example:5433/prod",
])
def test_urls_are_pinned_to_psycopg2(given):
    url = database.normalize_url(given)
    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.database, url.password) == ("db.example", 5433, "prod", "s3cret")


@pytest.mark.parametrize("given", ["mysql://u:p@h/d", "sqlite:///x.db", "", "not a url"])
def test_other_urls_are_refused(given):
    with pytest.raises(UsageError):
        database.normalize_url(given)


def test_redaction_hides_the_password_everywhere():
    url = database.normalize_url("postgresql://app:p%40ss%25word@db/prod")
    assert url.password == "p@ss%word"
    shown = database.redact(url)
    assert "p@ss" not in shown and "***" in shown
    assert database.scrub("connect failed for p@ss%word at postgresql://app:p@ss@db/x", url).count("p@ss") == 0
    assert database.redact_text("see postgresql://u:hunter22@h/d") == "see postgresql://u:***@h/d"


def test_secret_forms_cover_encodings():
    url = database.normalize_url("postgresql://app:a%2Fb%20c%22d@db/prod")
    text = 'a/b c"d a%2Fb%20c%22d a%2Fb+c%22d a/b c\\"d'
    cleaned, found = records.redact(text, records.secret_forms(url))
    assert found == 4 and "a/b" not in cleaned


def test_identity_never_holds_the_password():
    ident = database.identity(database.normalize_url("postgresql://app:s3cret@db.example:5433/prod"))
    assert ident.as_dict() == {"host": "db.example", "port": 5433, "database": "prod", "user": "app"}
    sock = database.identity(database.normalize_url("postgresql://postgres@/swrun?host=/tmp/x&port=6000"))
    assert (sock.host, sock.port) == ("/tmp/x", 6000)


def test_lock_key_is_stable_and_per_database():
    assert database.lock_key("a") == database.lock_key("a") != database.lock_key("b")
    assert -(2**63) <= database.lock_key("a") < 2**63


def _nb(source):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})
    return nbformat.v4.new_notebook(cells=[cell])


NB = _nb('target: str = "head"  # revision\nretries: int = 3\nratio: float = 0.5\ndry: bool = False\nwho: str = ""  # required\n')


def test_parameters_are_declared_from_the_cell():
    decl = params.declared(NB)
    assert {n: p.type for n, p in decl.items()} == {"target": str, "retries": int, "ratio": float, "dry": bool, "who": str}
    assert decl["who"].required and not decl["target"].required


def test_parameters_are_coerced_from_cli_strings():
    out = params.validate(NB, {"retries": "5", "ratio": "2", "dry": "yes", "who": "ops"})
    assert out == {"retries": 5, "ratio": 2.0, "dry": True, "who": "ops"}


@pytest.mark.parametrize("given, message", [
    ({"traget": "abc", "who": "x"}, "did you mean 'target'"),
    ({"retries": "many", "who": "x"}, "expects int"),
    ({"dry": "maybe", "who": "x"}, "expects bool"),
    ({}, "missing required parameter(s): who"),
])
def test_bad_parameters_are_refused(given, message):
    with pytest.raises(UsageError) as err:
        params.validate(NB, given)
    assert message in err.value.line()


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "prod uction"])
def test_path_parts_are_checked(name):
    with pytest.raises(UsageError):
        records.check_name("environment", name)


# -- URL shapes swrun refuses without echoing them ----------------------------------------------

SECRET = "Zx9+/%@: q"


@pytest.mark.parametrize("given, words", [
    ("postgresql://app:Zx9%2B%2F%25%40%3A%20q@db:port/prod", "port is not a number"),
    ("postgresql://app:Zx9%2B%2F%25%40%3A%20q@db:99999/prod", "port is not a number"),
    ("postgresql://app@db/prod?port=abc&password=Zx9%2B%2F%25%40%3A%20q", "port is not a number"),
    ("postgresql://app@db:5432/prod?port=5433&password=Zx9%2B%2F%25%40%3A%20q", "several ports"),
    ("postgresql://app:Zx9%2B%2F%25%40%3A%20q@db1,db2/prod", "several hosts"),
    ("postgresql://app:Zx9%2B%2F%25%40%3A%20q@db1:5432,db2:5433/prod", "several hosts"),
    ("postgresql://app@/prod?host=db1&host=db2&password=Zx9%2B%2F%25%40%3A%20q", "several hosts"),
    ("postgresql://app@/prod?host=db1,db2&password=Zx9%2B%2F%25%40%3A%20q", "several hosts"),
    ("postgresql://app:Zx9+/%@: q@db/prod", "cannot parse"),
    ("postgresql://app:p@ssw0rd-x@db/prod", "cannot parse"),
])
def test_bad_url_shapes_are_usage_errors_without_their_text(given, words):
    with pytest.raises(UsageError) as err:
        database.normalize_url(given)
    line = err.value.line()
    assert err.value.exit_code == 2 and words in line and "\n" not in line
    for piece in ("Zx9", "%2B", "ssw0rd", "db1", "prod"):
        assert piece not in line


def test_query_password_is_redacted_in_the_shown_url():
    url = database.normalize_url("postgresql://app@db/prod?sslmode=require&password=Zx9%2B%2F%25%40%3A%20q")
    shown = database.redact(url)
    assert "Zx9" not in shown and "password=***" in shown and "sslmode=require" in shown
    assert database.redact_text("dsn: host=db password='a b c' user=x") == "dsn: host=db password=*** user=x"


def test_libpq_tools_never_prompt_and_get_the_password_from_the_environment():
    from swrun.steps.backup import libpq_args

    for given in ("postgresql://app:Zx9%2B%2F%25%40%3A%20q@db:6000/prod?sslmode=require",
                  "postgresql://app@db:6000/prod?password=Zx9%2B%2F%25%40%3A%20q&sslmode=require"):
        args, env = libpq_args(database.normalize_url(given))
        assert args == ["--no-password", "-h", "db", "-p", "6000", "-U", "app"]
        assert env["PGPASSWORD"] == SECRET and env["PGSSLMODE"] == "require"
        assert not any("Zx9" in a for a in args)


# -- the encodings ------------------------------------------------------------------------------

def _spellings(user: str, pw: str) -> list[str]:
    import base64
    import html
    import json
    import re
    from urllib.parse import quote, quote_plus

    pct = quote(pw, safe="")
    basic = f"{user}:{pw}".encode()
    return [pw, pct, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), pct), quote(pw), quote_plus(pw), json.dumps(pw)[1:-1], json.dumps(pw, ensure_ascii=False)[1:-1],
            repr(pw)[1:-1], ascii(pw)[1:-1], json.dumps(repr(pw))[1:-1], json.dumps(json.dumps(pw))[1:-1], html.escape(pw),
            pw.encode().hex(), base64.b64encode(pw.encode()).decode(), base64.urlsafe_b64encode(pw.encode()).decode(),
            base64.b64encode(basic).decode(), base64.urlsafe_b64encode(basic).decode(),
            "".join(quote(c, safe="") if i % 2 else c for i, c in enumerate(pw)),
            "".join(quote(c, safe="").lower() if i % 3 == 1 else c for i, c in enumerate(pw))]


@pytest.mark.parametrize("pw", [SECRET, "Pa+ss/w%rd @:\"q'\\é", "abc", "日本語😀", "tab\tnew\nline"])
def test_every_spelling_is_redacted(pw):
    from swrun.redaction import Secrets

    secrets = Secrets([pw], user="app")
    for form in _spellings("app", pw):
        cleaned, n = secrets.redact(f"<{form}>")
        assert n >= 1 and cleaned.count("***") >= 1, form
        assert form not in cleaned


def test_base64_of_a_whole_url_loses_the_password():
    import base64
    from urllib.parse import quote

    from swrun.redaction import Secrets

    for prefix in ("postgresql://app:", "postgresql://app:x", "x postgresql://app:xy"):
        text = base64.b64encode(f"{prefix}{quote(SECRET, safe='')}@db/prod".encode()).decode()
        cleaned, n = Secrets([SECRET], user="app").redact(text)
        assert n == 1
        for part in cleaned.split("***"):
            decoded = base64.b64decode(part + "=" * (-len(part) % 4) if len(part) % 4 != 1 else part[:-1] + "==")
            assert b"Zx9" not in decoded and b"%2B" not in decoded


def test_a_record_keeps_its_structure_when_a_short_password_is_cut_out():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('print("abc")', outputs=[
        nbformat.v4.new_output("stream", name="stdout", text='url postgresql://u:abc@h/d "abc" \\"abc\\"\n')])])
    text = records.notebook_text(nb)
    cleaned, n = records.redact(text, ["abc"])
    assert n == 4 and "abc" not in cleaned
    assert nbformat.reads(cleaned, as_version=4).cells[0].outputs[0].text.count("***") == 3


def test_secrets_come_from_every_place_libpq_reads(tmp_path):
    from swrun import redaction

    passfile = tmp_path / "pgpass"
    passfile.write_text("# comment\ndb:5432:prod:app:from\\:passfile\n*:*:*:other:not-ours\n")
    url = database.normalize_url(f"postgresql://app:userinfo@db/prod?password=query&passfile={passfile}")
    found = redaction.secret_values(url, {"PGPASSWORD": "from-env"})
    assert found == {"userinfo", "query", "from-env", "from:passfile"}
