"""Runbook parameters: declared in the notebook's ``parameters`` cell, checked before any kernel starts.

papermill only warns about an unknown name, so ``-p traget abc123`` would quietly deploy
``head``. Here an unknown name, a value of the wrong type, or a missing required value
is an error. A declaration is one line::

    target: str = "head"          # revision to deploy to
    operator: str = None          # required
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from typing import Any

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
    raise UsageError(f"parameter {param.name!r} expects {param.type.__name__}, got {str(value)[:60]!r}")


def validate(nb, given: dict[str, Any]) -> dict[str, Any]:
    """Check and convert the given values against the notebook's declarations."""
    decl = declared(nb)
    if not decl:
        raise UsageError("the runbook has no cell tagged 'parameters'")
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in decl:
            close = difflib.get_close_matches(name, decl, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(decl))}"
            raise UsageError(f"unknown parameter {name!r}", hint=hint)
        out[name] = coerce(decl[name], value)
    missing = [p.name for p in decl.values() if p.required and out.get(p.name, p.default) in (None, "")]
    if missing:
        raise UsageError(f"missing required parameter(s): {', '.join(missing)}")
    return out
