"""The fleet file: TOML read with tomllib, every problem found before anything starts.

Each problem is one line (:class:`FleetFileError` carries them all); a URL with a
password in it is refused (secrets come from ``url_env``, resolved on the coordinator
and handed to a worker as an environment value, never written anywhere).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

FLEET_KEYS = {"project", "environment", "canary", "wave_size", "max_failures", "max_per_server"}
TARGET_KEYS = {"name", "url", "url_env"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_PERCENT = re.compile(r"^\s*(\d{1,3}(?:\.\d+)?)\s*%\s*$")


class FleetFileError(UsageError):
    """The fleet file has problems: one line each, all of them."""

    def __init__(self, path: Path, problems: list[str]):
        super().__init__(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        self.lines = [f"{path}: {p}" for p in problems]


@dataclass
class Target:
    name: str
    url_env: str | None = None
    url: str | None = field(default=None, repr=False)  # resolved on the coordinator; never shown
    redacted: str = ""
    server: str = ""  # host:port, for max_per_server
    identity: dict = field(default_factory=dict)


@dataclass
class FleetSpec:
    path: Path
    project: str | None
    environment: str
    canary: int
    wave_size: int | str
    max_failures: int
    max_per_server: int
    targets: list[Target]

    def wave_length(self) -> int:
        """Targets per wave after the canary: an int, or a percentage of those targets (at least 1)."""
        rest = max(0, len(self.targets) - self.canary)
        if isinstance(self.wave_size, str):
            share = float(_PERCENT.fullmatch(self.wave_size).group(1))
            return max(1, math.ceil(rest * share / 100))
        return self.wave_size


def _int(fleet: dict, key: str, default: int, low: int, problems: list[str]) -> int:
    value = fleet.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        problems.append(f"[fleet] {key} must be a whole number >= {low}, got {str(value)[:40]!r}")
        return default
    return value


def load(path: str | Path, environ: dict[str, str] | None = None) -> FleetSpec:
    """Read and validate the fleet file and resolve its targets' URLs; FleetFileError lists every problem."""
    from .. import database, params

    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no fleet file {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a fleet file") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(path, [f"not valid TOML: {' '.join(str(exc).split())[:200]}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the fleet file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    problems: list[str] = []
    for key in sorted(set(doc) - {"fleet", "target"}):
        problems.append(f"unknown top-level key {key[:40]!r} (known: [fleet], [[target]])")
    fleet = doc.get("fleet", {})
    if not isinstance(fleet, dict):
        problems.append("[fleet] must be a table")
        fleet = {}
    for key in sorted(set(fleet) - FLEET_KEYS):
        problems.append(f"[fleet]: unknown key {key[:40]!r} (known: {', '.join(sorted(FLEET_KEYS))})")

    environment = fleet.get("environment", "development")
    try:
        environment = params.environment_name(environment if isinstance(environment, str) else str(environment))
    except UsageError as exc:
        problems.append(f"[fleet] environment: {exc.line()}")
        environment = "development"
    project = fleet.get("project")
    if project is not None:
        if not isinstance(project, str) or not project.strip():
            problems.append("[fleet] project must be the path of an alembic.ini")
            project = None
        else:
            resolved = (path.parent / project).resolve()  # relative to the fleet file, as Alembic reads script_location
            if not resolved.is_file():
                problems.append(f"[fleet] project {project[:200]!r}: no such file ({resolved})")
            project = str(resolved)
    canary = _int(fleet, "canary", 1, 0, problems)
    max_failures = _int(fleet, "max_failures", 0, 0, problems)
    max_per_server = _int(fleet, "max_per_server", 2, 1, problems)
    wave_size = fleet.get("wave_size", 10)
    if isinstance(wave_size, str):
        match = _PERCENT.fullmatch(wave_size)
        if not match or not 0 < float(match.group(1)) <= 100:
            problems.append(f"[fleet] wave_size must be a whole number >= 1 or a percentage like \"25%\", got {wave_size[:40]!r}")
            wave_size = 10
    elif isinstance(wave_size, bool) or not isinstance(wave_size, int) or wave_size < 1:
        problems.append(f"[fleet] wave_size must be a whole number >= 1 or a percentage like \"25%\", got {str(wave_size)[:40]!r}")
        wave_size = 10

    raw_targets = doc.get("target", [])
    if not isinstance(raw_targets, list) or not all(isinstance(t, dict) for t in raw_targets):
        problems.append("targets are [[target]] tables")
        raw_targets = []
    if not raw_targets:
        problems.append("no [[target]]: a fleet needs at least one target")
    targets, seen = [], set()
    for i, raw in enumerate(raw_targets, 1):
        name = raw.get("name")
        label = f"target {name!r}" if isinstance(name, str) and _NAME.fullmatch(name or "") else f"target #{i}"
        for key in sorted(set(raw) - TARGET_KEYS):
            problems.append(f"{label}: unknown key {key[:40]!r} (known: {', '.join(sorted(TARGET_KEYS))})")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{label}: name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
            continue
        if name in seen:
            problems.append(f"{label}: duplicate name")
            continue
        seen.add(name)
        target = Target(name=name)
        url, url_env = raw.get("url"), raw.get("url_env")
        if url is None and url_env is None:
            problems.append(f"{label}: neither url nor url_env")
            continue
        if url is not None and url_env is not None:
            problems.append(f"{label}: both url and url_env; give one")
            continue
        if url_env is not None:
            if not isinstance(url_env, str) or not _ENV_NAME.fullmatch(url_env):
                problems.append(f"{label}: url_env must be an environment variable name")
                continue
            target.url_env = url_env
            url = environ.get(url_env)
            if url is None or not url.strip():
                problems.append(f"{label}: ${url_env} is not set" if url is None else f"{label}: ${url_env} is empty")
                continue
        elif not isinstance(url, str):
            problems.append(f"{label}: url must be a string")
            continue
        try:
            parsed = database.normalize_url(url)
        except Exception as exc:  # the message of a URL that does not parse is scrubbed: it may hold a password
            why = exc.line() if isinstance(exc, UsageError) else type(exc).__name__
            problems.append(f"{label}: {'$' + url_env if url_env else 'url'} is not a PostgreSQL URL: "
                            f"{database.redact_text(why)[:200]}")
            continue
        if target.url_env is None and (parsed.password or "password" in parsed.query):
            problems.append(f"{label}: url has a password in it; put the URL in an environment variable and name it in url_env")
            continue
        ident = database.identity(parsed)
        target.url = url
        target.redacted = database.redact(parsed)
        target.server = f"{ident.host}:{ident.port}"
        target.identity = {"host": ident.host, "port": ident.port, "database": ident.database}
        targets.append(target)
    if problems:
        raise FleetFileError(path, problems)
    return FleetSpec(path=path, project=project, environment=environment, canary=min(canary, len(targets)),
                     wave_size=wave_size, max_failures=max_failures, max_per_server=max_per_server, targets=targets)
