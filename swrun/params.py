"""Runbook parameters: declared in the notebook's ``parameters`` cell, checked before any kernel starts.

papermill only warns about an unknown name, so ``-p traget abc123`` would quietly deploy
``head``. Here an unknown name, a value of the wrong type, or a missing required value
is an error. A declaration is one line::

    target: str = "head"          # revision to deploy to
    operator: str = None          # required

Every value is also read as an attacker would write it (:func:`check_value`): strings have
a length limit and no control characters; names that reach SQL or a file name match a
strict pattern; durations are PostgreSQL durations; numbers are finite and in range; step
names exist. The settings the runner files a record under (environment, directories,
operator, run id) are the runner's: a notebook parameter cannot set them behind its back
(:func:`take_run_options`).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UsageError

_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    default: Any
    required: bool
    help: str = ""


def parameters_cell(nb) -> Any:
    for cell in nb["cells"]:  # a NotebookNode or the plain JSON: the runner validates before nbformat loads
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def declared(nb) -> dict[str, Parameter]:
    """The parameters a notebook declares, from its cell tagged ``parameters``."""
    cell = parameters_cell(nb)
    if cell is None:
        return {}
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    lines = source.splitlines()
    found: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            continue
        default = ast.literal_eval(value) if value is not None else None
        comment = lines[node.lineno - 1].partition("#")[2].strip()
        kind = _TYPES.get(annotation or "", type(default) if default is not None else str)
        found[name] = Parameter(name, kind, default, required="required" in comment.lower(), help=comment)
    return found


def step_names(nb) -> list[str]:
    """The steps a notebook has: its cells tagged ``step:NAME``, in order."""
    names = []
    for cell in nb["cells"]:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("step:") and tag[5:] not in names:
                names.append(tag[5:])
    return names


def coerce(param: Parameter, value: Any) -> Any:
    """A CLI string (or a Python value) as the parameter's declared type, or a UsageError."""
    if isinstance(value, param.type) and not (param.type is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    try:
        if param.type is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if param.type is int:
            return int(text)
        if param.type is float:
            return float(text)
        if param.type is str:
            if isinstance(value, (int, float, bool)) or value is None:
                raise ValueError
            return text
    except ValueError:
        pass
    raise UsageError(f"parameter {param.name!r} expects {param.type.__name__}, got {_shown(value)}")


# -- the settings the runner owns ---------------------------------------------------------------

# set by the runner alone: a -p value would make the record say what did not happen
RUNNER_ONLY = {"run_id": "the runner gives each run its id", "database": "use --database-url",
               "runbook": "the runbook is the one named on the command line"}
# the runner's settings a -p value may give instead of the option, once: (option, default)
RUN_OPTIONS = {"environment": ("--env", "development"), "reports_dir": ("--reports-dir", "reports"),
               "backup_dir": ("--backup-dir", "backups"), "operator": ("--operator", None),
               "project": ("--project", None)}


def take_run_options(pairs: Iterable[tuple[str, str]], options: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Split ``-p NAME VALUE`` pairs into the runbook's parameters and the runner's settings.

    A name given twice is an error (the last one silently winning hid typos and disputes);
    ``-p environment X`` with ``--env Y`` is an error unless X and Y name the same environment;
    ``options`` holds the options as given (None when not given) and comes back with the
    defaults filled in. The runner files the record under exactly these values, and the
    kernel gets the same ones.
    """
    given: dict[str, str] = {}
    for name, value in pairs:
        if name in given:
            raise UsageError(f"parameter {name!r} given twice ({_shown(given[name])} and {_shown(value)})",
                             hint="give each parameter once")
        given[name] = value
    out = dict(options)
    for name, (option, default) in RUN_OPTIONS.items():
        if name in given:
            value = given.pop(name)
            same = environment_name if name == "environment" else (lambda v: v)
            if out.get(name) is not None and same(out[name]) != same(value):
                raise UsageError(f"{option} {_shown(out[name])} and -p {name} {_shown(value)} disagree",
                                 hint=f"set the {name.replace('_', ' ')} once")
            out[name] = value
        if out.get(name) is None:
            out[name] = default
    return given, out


_PRODUCTION = "production"
_LOOKALIKE = re.compile(r"(pro?d|prd|live)")  # at the start: preprod is not production


def environment_name(value: Any) -> str:
    """The one spelling of an environment: stripped, lower case, a safe path part.

    ``Production`` and `` production `` are production (the gates compare with ``production``,
    the record is filed under it). A name that looks like production and is not (``prod``,
    ``production-eu``, ``live``) is refused: production's gates would not run for it."""
    from .records import check_name

    text = check_text("environment", "" if value is None else str(value), limit=64).strip().lower()
    check_name("environment", text)
    if text != _PRODUCTION and _LOOKALIKE.match(text):
        raise UsageError(f"environment {text!r} looks like production but is not 'production': "
                         "production's gates would not run for it", hint="use --env production")
    return text


def runner_values(environment: Any, operator: str | None, run_id: str | None) -> tuple[str, str | None, str | None]:
    """The runner's own settings, checked as the parameters are (library callers too)."""
    if operator is not None:
        operator = check_text("operator", operator, limit=256).strip() or None
    if run_id is not None:
        run_id = check_pattern("run_id", run_id)
    return environment_name(environment), operator, run_id


# -- values ------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
STRING_LIMIT = 1024
_LIMITS = {"mapping": 65536, "acknowledge": 16384, "project": 4096, "backup_dir": 4096, "reports_dir": 4096,
           "steps": 4096, "environments": 4096}
# values that become file names, database names or identifiers in swrun's own SQL: a strict pattern
_PATTERNS = {
    "run_id": (r"[a-z0-9][a-z0-9_-]{0,39}", "lower-case letters, digits, '_' and '-' (at most 40)"),
    "rev_id": (r"[A-Za-z0-9_]{1,64}", "letters, digits and '_' (at most 64)"),
    "target": (r"[A-Za-z0-9_.@+:-]{0,255}", "a revision id, head, heads, base, or branch@rev / rev+N / -N"),
    "acknowledge": (r"\s*[^\s,'\";\\`$]+(\s*,\s*[^\s,'\";\\`$]+)*\s*|\s*", "comma-separated finding ids"),
    "override_gates": (r"\s*[a-z-]+(\s*,\s*[a-z-]+)*\s*|\s*", "comma-separated gate names"),
    "environments": (r"\s*[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\s*|\s*", "comma-separated environment names"),
}
_CHOICES = {"backup_mode": ("custom", "custom-fast", "directory-fast"), "rehearse_on": ("embedded", "target"),
            "rehearse_copy": ("full", "touched", "auto"), "verify_restore": ("toc", "full"),
            "scratch": ("embedded", "target"), "period": ("day", "week", "month")}
_DURATIONS = ("lock_timeout", "statement_timeout", "lock_retry_budget")
# (low, high) for numbers; a float must also be finite
_RANGES = {"lock_wait_seconds": (0, 86400), "long_transaction_seconds": (0, 30 * 86400), "watch_seconds": (0, 86400),
           "steps_back": (0, 100000), "lock_retries": (0, 1000)}
NUMBER_RANGE = (-1e9, 1e9)


def _shown(value: Any) -> str:
    """A value quoted in an error line: short, one line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}...' ({len(str(value))} characters)"


def check_text(name: str, value: str, *, limit: int | None = None) -> str:
    limit = limit or _LIMITS.get(name, STRING_LIMIT)
    label = name if name.startswith("-") else f"parameter {name!r}"  # an option (--reports-dir) or a parameter
    if len(value) > limit:
        raise UsageError(f"{label} is {len(value)} characters long, at most {limit} are accepted")
    if _CONTROL.search(value):
        raise UsageError(f"{label} holds a control character (a newline, tab, NUL, ...): {_shown(value)}")
    return value


def check_path(name: str, value: str) -> str:
    """An operator's path (a directory or file to use): any place, but one the OS can open: at most
    4096 characters, each part at most 255 bytes, no control characters."""
    check_text(name, value, limit=4096)
    long = next((part for part in value.split("/") if len(part.encode()) > 255), None)
    if long is not None:
        raise UsageError(f"{name} {_shown(value)} has a part of {len(long.encode())} bytes: a file name has at most 255")
    return value


def check_pattern(name: str, value: str) -> str:
    pattern, what = _PATTERNS[name]
    check_text(name, value)
    if not re.fullmatch(pattern, value):
        raise UsageError(f"invalid {name} {_shown(value)}: {what}")
    return value


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*")
_UNIT_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}


def check_duration(name: str, value: str) -> str:
    """A PostgreSQL duration (``10s``, ``500ms``, ``2min``, ``0``), within int4 milliseconds.

    The one check of a duration: here before any kernel starts (no SQLAlchemy on the way to the
    kernel), and through ``database.check_duration`` in the kernel, where the upgrade binds the
    value with ``set_config()``."""
    match = _DURATION.fullmatch(check_text(name, str(value), limit=64))
    if not match or float(match[1]) * _UNIT_MS[match[2]] > 2147483647:
        raise UsageError(f"invalid {name} {_shown(value)}: a PostgreSQL duration such as 10s, 500ms, 2min or 0")
    return value.strip()


def check_steps(value: str, known: list[str]) -> str:
    """A comma-separated list of the notebook's step names: an unknown or empty name is an error."""
    items = [s.strip() for s in value.split(",")]
    if not any(items) or "" in items:
        raise UsageError(f"empty step name in steps {_shown(value)}", hint=f"steps: {','.join(known)}")
    for item in items:
        if item not in known:
            close = difflib.get_close_matches(item, known, n=1)
            raise UsageError(f"unknown step {_shown(item)}",
                             hint=f"did you mean {close[0]!r}?" if close else f"steps: {','.join(known)}")
    twice = next((s for s in items if items.count(s) > 1), None)
    if twice:
        raise UsageError(f"step {twice!r} named twice in steps {_shown(value)}")
    return ",".join(items)


def check_number(name: str, value: float | int, low_high: tuple[float, float] | None = None) -> float | int:
    low, high = low_high or _RANGES.get(name, NUMBER_RANGE)
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"parameter {name!r} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise UsageError(f"parameter {name!r} must be between {low:g} and {high:g}, got {value!r}")
    return value


def check_value(name: str, value: Any, steps: list[str] | None = None) -> Any:
    """One coerced value, checked for what its name does: SQL, a file name, a choice, a range."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return check_number(name, value)
    if not isinstance(value, str):
        return value
    check_text(name, value)
    if name in _DURATIONS:
        return check_duration(name, value)
    if name in _PATTERNS:
        return check_pattern(name, value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise UsageError(f"invalid {name} {_shown(value)}: one of {', '.join(_CHOICES[name])}")
    if name == "steps" and steps:
        return check_steps(value, steps)
    return value


def validate(nb, given: dict[str, Any]) -> dict[str, Any]:
    """Check and convert the given values against the notebook's declarations."""
    decl = declared(nb)
    if not decl:
        raise UsageError("the runbook has no cell tagged 'parameters'")
    steps = step_names(nb)
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name in RUNNER_ONLY:
            raise UsageError(f"parameter {name!r} is set by the runner", hint=RUNNER_ONLY[name])
        if name in RUN_OPTIONS:
            raise UsageError(f"parameter {name!r} is the runner's setting", hint=f"use {RUN_OPTIONS[name][0]}")
        if name not in decl:
            close = difflib.get_close_matches(name, decl, n=1) or [d for d in decl if d.lower() == name.lower()]
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(decl))}"
            raise UsageError(f"unknown parameter {_shown(name)}", hint=hint)
        out[name] = check_value(name, coerce(decl[name], value), steps)
    missing = [p.name for p in decl.values() if p.required and out.get(p.name, p.default) in (None, "")]
    if missing:
        raise UsageError(f"missing required parameter(s): {', '.join(missing)}")
    return out
