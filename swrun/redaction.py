"""The run's secrets and every spelling of them a program could print, replaced by ``***``.

A password reaches text in more forms than its own: percent-encoded (upper or lower case,
or only some characters), ``+`` for a space, JSON- or repr-escaped (``\\"``, ``\\\\``,
``\\u00e9``, ``\\xc3``, doubled when escaped JSON is escaped again), HTML entities, in hex,
and base64 (alone, or as HTTP basic auth's ``user:password``, standard or URL-safe, also
inside a longer base64 string). :class:`Secrets` compiles one regular expression that
matches each character of a secret in any of its forms, so mixed spellings are caught too.

Short secrets: every form of every secret is redacted wherever it stands, whatever its
length. A three-character password is also cut out of ordinary words and identifiers that
happen to contain it; a record made unsightly is the price of never printing the password
(choose a longer one). Only the structure of a JSON document is protected: its strings are
redacted one by one (:meth:`Secrets.redact_json`), never the text across them.

Standard library only: the runner imports this before its kernel starts.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_INNER_BASE64 = 6  # a base64 run this long, taken from inside a longer string, is not chance

# secret values this process has met (URLs it parsed, PGPASSWORD, a passfile): the last line
# of defence (the CLI's error line, the runner's progress) scrubs with these
_remembered: set[str] = set()
_users: set[str] = set()  # their user names, for base64 of user:password


def remember(values: Iterable[str], user: str | None = None) -> None:
    _remembered.update(v for v in values if v)
    if user:
        _users.add(user)


def remembered() -> frozenset[str]:
    return frozenset(_remembered)


def _ci(hex_text: str) -> str:
    """Hex digits in either case."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in hex_text)


_NAMED_ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f", "\\": "\\\\", '"': '"', "'": "'", "/": "/"}
_HTML = {"&": ["amp"], "<": ["lt"], ">": ["gt"], '"': ["quot"], "'": ["apos"]}


def _char(ch: str) -> str:
    """A pattern for one character in any of the forms an encoder can give it."""
    cp = ord(ch)
    utf8 = ch.encode("utf-8", "surrogatepass")
    alts = [re.escape(ch)]
    alts.append("".join("%" + _ci(f"{b:02x}") for b in utf8))  # percent-encoding, either case
    if ch == " ":
        alts.append(r"\+")  # form encoding (quote_plus)
    escapes = []  # after one or more backslashes: repr, JSON, and either escaped again
    if cp < 0x10000:
        escapes.append("u" + _ci(f"{cp:04x}"))
    else:
        hi, lo = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
        escapes.append("U" + _ci(f"{cp:08x}"))
        escapes.append("u" + _ci(f"{hi:04x}") + r"\\+u" + _ci(f"{lo:04x}"))
    if cp < 0x100:
        escapes.append("x" + _ci(f"{cp:02x}"))
    if len(utf8) > 1:  # repr of the UTF-8 bytes
        escapes.append(r"\\+".join("x" + _ci(f"{b:02x}") for b in utf8))
    if ch in _NAMED_ESCAPES:
        escapes.append(re.escape(_NAMED_ESCAPES[ch]))
    alts.append(r"\\+(?:" + "|".join(escapes) + ")")
    if ch == "\\":
        alts.append(r"\\+")
    entities = [f"#{cp}", "#[xX]" + _ci(f"{cp:x}")] + _HTML.get(ch, [])
    alts.append("&(?:" + "|".join(entities) + ");")
    return "(?:" + "|".join(alts) + ")"


def _spelled(text: str) -> str:
    return "".join(_char(c) for c in text)


_B64_CHAR = {"+": r"(?:\+|%2[bB])", "/": r"(?:\\*/|%2[fF])", "=": r"(?:=|%3[dD])"}


def _plain(form: str) -> str:
    """A base64 or hex form: its letters stand as they are; only ``+/=`` get escaped in URLs and JSON."""
    return "".join(_B64_CHAR.get(c, re.escape(c)) for c in form)


def _base64_forms(data: bytes, inner: bool) -> set[str]:
    """base64 of ``data`` (standard and URL-safe, with and without padding); with ``inner``
    also the characters that encode it at any offset inside a longer base64 string."""
    forms = set()
    for k in range(3 if inner else 1):
        enc = base64.b64encode(b"\0" * k + data).decode()
        start, stop = -(-8 * k // 6), (8 * (k + len(data))) // 6
        core = enc[start:stop]
        if k == 0:
            forms.add(enc)
            forms.add(enc.rstrip("="))
        if len(core) >= _MIN_INNER_BASE64 or k == 0:
            forms.add(core)
    forms |= {f.replace("+", "-").replace("/", "_") for f in forms}
    return {f for f in forms if f}


def encoded_forms(secret: str, user: str | None = None) -> set[str]:
    """The literal encodings of a secret that are not spelled character by character."""
    data = secret.encode("utf-8", "surrogatepass")
    forms = _base64_forms(data, inner=True)
    for spelled in {quote(secret, safe=""), quote_plus(secret)} - {secret}:  # base64 of a whole URL holds these
        forms |= _base64_forms(spelled.encode(), inner=True)
    if user:
        forms |= _base64_forms(f"{user}:{secret}".encode("utf-8", "surrogatepass"), inner=True)
    forms |= {data.hex(), data.hex().upper()}
    return forms


class Secrets:
    """A set of secret values and the one pattern that finds any of them in any form."""

    def __init__(self, values: Iterable[str] = (), user: str | Iterable[str] | None = None):
        self.values = frozenset(v for v in values if v)
        users = [user] if isinstance(user, str) else sorted(user or ())
        encoded: set[str] = set()
        for value in self.values:
            encoded |= encoded_forms(value)
            for name in users:
                encoded |= encoded_forms(value, name)
        # longest first, so that user:password's base64 wins over a piece of it
        parts = [_plain(f) for f in sorted(encoded - self.values, key=lambda f: (-len(f), f))]
        parts += [_spelled(v) for v in sorted(self.values, key=lambda v: (-len(v), v))]
        self.pattern = re.compile("|".join(parts)) if parts else None

    def __bool__(self) -> bool:
        return self.pattern is not None

    def __iter__(self):
        return iter(sorted(self.values))

    def __or__(self, other: "Secrets") -> "Secrets":
        return Secrets(self.values | other.values)

    def redact(self, text: str) -> tuple[str, int]:
        if self.pattern is None or not text:
            return text, 0
        return self.pattern.subn(MASK, text)

    def scrub(self, text: str) -> str:
        return self.redact(text)[0]

    def found(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None

    def redact_value(self, value: Any) -> tuple[Any, int]:
        """Strings anywhere in nested dicts and lists (keys too), redacted; a copy where changed."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            out, total = {}, 0
            for k, v in value.items():
                k2, n1 = self.redact_value(k) if isinstance(k, str) else (k, 0)
                v2, n2 = self.redact_value(v)
                out[k2] = v2
                total += n1 + n2
            return (out, total) if total else (value, 0)
        if isinstance(value, (list, tuple)):
            pairs = [self.redact_value(v) for v in value]
            total = sum(n for _, n in pairs)
            return (type(value)(v for v, _ in pairs), total) if total else (value, 0)
        return value, 0

    def redact_json(self, text: str, dump) -> tuple[str, int]:
        """A JSON document with its strings redacted one by one and written back by ``dump``;
        never cuts through its structure. Text that is no JSON is redacted as text."""
        if not self.found(text):
            return text, 0
        try:
            doc = json.loads(text)
        except ValueError:
            return self.redact(text)
        doc, n = self.redact_value(doc)
        return (dump(doc), n) if n else (text, 0)


# -- where libpq takes a password from ----------------------------------------------------------

def _first(value):
    return value[0] if isinstance(value, (tuple, list)) and value else value


def _passfile_passwords(path: Path, user: str | None) -> set[str]:
    """Passwords of a libpq passfile's lines for this user (or any user): ``host:port:db:user:password``."""
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return set()
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields, cur, escaped = [], "", False
        for ch in line:
            if escaped:
                cur, escaped = cur + ch, False
            elif ch == "\\":
                escaped = True
            elif ch == ":" and len(fields) < 4:
                fields.append(cur)
                cur = ""
            else:
                cur += ch
        fields.append(cur)
        if len(fields) == 5 and (fields[3] in ("*", user) or not user):
            found.add(fields[4])
    return found


def secret_values(url, environ: dict[str, str] | None = None) -> set[str]:
    """Every password libpq could use for ``url`` (a SQLAlchemy URL): its userinfo, its
    ``password`` query parameters, ``$PGPASSWORD``, and the matching lines of the passfile
    (``passfile`` parameter, ``$PGPASSFILE`` or ``~/.pgpass``)."""
    environ = os.environ if environ is None else environ
    found = set()
    if url is not None:
        if url.password:
            found.add(str(url.password))
        given = url.query.get("password")
        found |= {str(v) for v in (given if isinstance(given, tuple) else (given,)) if v}
    if environ.get("PGPASSWORD"):
        found.add(environ["PGPASSWORD"])
    passfile = _first(url.query.get("passfile")) if url is not None else None
    passfile = passfile or environ.get("PGPASSFILE") or (Path(environ.get("HOME") or Path.home()) / ".pgpass")
    found |= _passfile_passwords(Path(passfile).expanduser(), getattr(url, "username", None))
    return {v for v in found if v}


@functools.lru_cache(maxsize=32)
def _compiled(values: frozenset[str], users: frozenset[str]) -> Secrets:
    return Secrets(values, user=users)


def for_url(url, environ: dict[str, str] | None = None) -> Secrets:
    """The secrets of a run on ``url``, with every one this process has met; remembered."""
    values = secret_values(url, environ)
    remember(values, getattr(url, "username", None))
    return _compiled(frozenset(values | _remembered), frozenset(_users))


def known() -> Secrets:
    """Every secret this process has met."""
    return _compiled(frozenset(_remembered), frozenset(_users))


def scrub_file(path: Path, secrets: Secrets) -> int:
    """Redact a text file in place (atomically, keeping its mode); returns the hits."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    cleaned, n = secrets.redact(text)
    if n:
        tmp = path.with_name(f".{path.name}.redacting")
        tmp.write_text(cleaned, encoding="utf-8")
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    return n


class ScrubbingStream:
    """A text stream that writes whole lines with every secret this process has met taken out:
    for the CLI's own stdout and stderr, where a project's env.py (run in swrun's process by
    ``status``, ``preview``, ...) may print the URL. A secret split across writes is caught, as
    lines are held until their newline (or a flush)."""

    def __init__(self, stream):
        self._stream, self._held, self._closed = stream, "", False

    def write(self, text: str) -> int:
        self._held += text
        if "\n" in self._held:
            done, self._held = self._held.rsplit("\n", 1)
            self._emit(known().scrub(done + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._held:
            self._emit(known().scrub(self._held))
            self._held = ""
        self._guarded(self._stream.flush)

    def _emit(self, text: str) -> None:
        self._guarded(lambda: self._stream.write(text))

    def _guarded(self, fn) -> None:
        # A reader that went away (`swrun reports list | head`) must not abort the work
        # mid-step, a deploy least of all: what it would have read is dropped, the run goes on
        # and its record is written as usual.
        if self._closed:
            return
        try:
            fn()
        except BrokenPipeError:
            self._closed = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_stdio() -> None:
    """Route this process's ``sys.stdout`` and ``sys.stderr`` through :class:`ScrubbingStream`."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ScrubbingStream):
            setattr(sys, name, ScrubbingStream(stream))
