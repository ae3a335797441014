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
