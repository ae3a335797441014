"""Migration files as text: the base's (from git) and the change's (the work tree), read with ``ast``.

Nothing is imported: a broken or hostile file is only parsed. Each file gives its revision,
its parents (``down_revision`` for the graph, ``depends_on`` kept apart) and the lines those
are assigned on, which the findings point at.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from .gitrefs import Repo


@dataclass
class Source:
    path: str  # repository-relative, '/' separated
    text: str
    revision: str | None = None
    down: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict)  # revision / down_revision -> line
    error: str | None = None  # does not parse

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def line_of(self, key: str) -> int:
        return self.lines.get(key, 1)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _strings(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def parse(path: str, data: bytes) -> Source:
    text = _decode(data)
    src = Source(path, text)
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        src.error = f"does not parse: {exc.msg} (line {exc.lineno})"
        return src
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names, value = [t.id for t in node.targets if isinstance(t, ast.Name)], node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names, value = [node.target.id], node.value
        else:
            continue
        for name in names:
            if name not in ("revision", "down_revision", "depends_on"):
                continue
            try:
                literal = ast.literal_eval(value)
            except Exception:
                literal = None
            src.lines[name] = node.lineno
            if name == "revision" and isinstance(literal, str):
                src.revision = literal
            elif name == "down_revision":
                src.down = _strings(literal)
            elif name == "depends_on":
                src.depends = _strings(literal)
    return src


def from_git(repo: Repo, commit: str, dirs: list[str], recursive: bool) -> dict[str, Source]:
    found: dict[str, Source] = {}
    for directory in dirs:
        for path, data in repo.files(commit, directory, recursive).items():
            found[path] = parse(path, data)
    return found


def from_work_tree(repo: Repo, dirs: list[Path], recursive: bool) -> dict[str, Source]:
    """The change: the files as they are on disk (in a CI checkout, HEAD's), as Alembic reads them."""
    found: dict[str, Source] = {}
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.py") if recursive else directory.glob("*.py")):
            if path.name.startswith((".#", "__init__")) or "__pycache__" in path.parts or not path.is_file():
                continue
            rel = repo.relative(path)
            found[rel] = parse(rel, path.read_bytes())
    return found


def by_revision(sources: dict[str, Source]) -> dict[str, Source]:
    """revision -> its file (the first by path when several define it)."""
    out: dict[str, Source] = {}
    for path in sorted(sources):
        src = sources[path]
        if src.revision and src.revision not in out:
            out[src.revision] = src
    return out
