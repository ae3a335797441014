"""Git plumbing: the base ref's migration files read from git's object store, never the work tree.

Only ``rev-parse``, ``merge-base``, ``ls-tree`` and ``cat-file --batch`` run: nothing is checked
out, stashed or written, so ``swrun check`` is safe in a developer's checkout with uncommitted
work. Every ref is validated (``rev-parse --verify --end-of-options``) before use.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ProjectError, UsageError

_REF = re.compile(r"[A-Za-z0-9._/@{}^~+-]{1,200}")  # what a ref, a sha or ref~N may be; never an option


class GitError(ProjectError):
    """git is missing, or the project is not in a git repository: nothing could be compared."""


def _git(root: Path | None, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):  # the repository is the one around the project
        env.pop(name, None)
    try:
        proc = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, env=env, timeout=120)
    except FileNotFoundError:
        raise GitError("git is not installed: swrun check compares the change with the base ref through git") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not answer within 120 s") from None
    if check and proc.returncode != 0:
        said = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1][:200]
        raise GitError(f"git {args[0]} failed: {said}")
    return proc.stdout


@dataclass(frozen=True)
class Repo:
    root: Path

    @classmethod
    def containing(cls, path: Path) -> "Repo":
        where = path if path.is_dir() else path.parent
        out = _git(where, "rev-parse", "--show-toplevel", check=False).decode().strip()
        if not out:
            raise GitError(f"{path} is not inside a git repository: swrun check compares the change with a base ref",
                           hint="run it in the repository's checkout (a CI checkout needs its history: fetch-depth: 0)")
        return cls(Path(out).resolve())

    def commit(self, ref: str) -> str:
        if not _REF.fullmatch(ref) or ref.startswith("-"):
            raise UsageError(f"invalid base ref {ref[:60]!r}")
        out = _git(self.root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        sha = out.decode().strip()
        if not sha:
            raise UsageError(f"unknown base ref {ref!r} in {self.root}",
                             hint="fetch it first (git fetch origin main; a CI checkout needs fetch-depth: 0), or name another with --base")
        return sha

    def default_branch(self) -> str:
        """origin/HEAD when the clone knows it, else the first of origin/main, main, origin/master, master."""
        out = _git(self.root, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False).decode().strip()
        if out:
            return out.removeprefix("refs/remotes/")
        for ref in ("origin/main", "main", "origin/master", "master"):
            if _git(self.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip():
                return ref
        raise UsageError(f"cannot tell the default branch of {self.root} (no origin/HEAD, main or master)",
                         hint="name the base with --base REF")

    def merge_base(self, a: str, b: str) -> str:
        out = _git(self.root, "merge-base", a, b, check=False).decode().split()
        if not out:
            raise UsageError(f"{a[:12]} and {b[:12]} have no common history",
                             hint="a shallow CI checkout lacks it: fetch the history (fetch-depth: 0)")
        return out[0]

    def relative(self, path: Path) -> str:
        try:
            return PurePosixPath(Path(path).resolve().relative_to(self.root)).as_posix()
        except ValueError:
            raise ProjectError(f"{path} is outside the git repository {self.root}: its history cannot be compared") from None

    def files(self, commit: str, directory: str, recursive: bool) -> dict[str, bytes]:
        """``path -> content`` of the ``.py`` files under ``directory`` (repository-relative) in ``commit``:
        one ``ls-tree`` and one ``cat-file --batch`` for all of them."""
        prefix = directory.rstrip("/") + "/" if directory not in ("", ".") else ""
        args = ["ls-tree", "-z", "--full-tree"] + (["-r"] if recursive else []) + [commit, "--", prefix or "."]
        listing = _git(self.root, *args)
        blobs: list[tuple[str, str]] = []
        for item in listing.split(b"\0"):
            if not item:
                continue
            meta, _, name = item.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            path = name.decode("utf-8", errors="surrogateescape")
            rest = path[len(prefix):]
            if kind != "blob" or mode == "120000" or not path.endswith(".py") or not path.startswith(prefix):
                continue
            if not recursive and "/" in rest:
                continue
            base = PurePosixPath(path).name
            if base.startswith((".#", "__init__")) or "__pycache__" in PurePosixPath(path).parts:
                continue
            blobs.append((path, sha))
        if not blobs:
            return {}
        out = _git(self.root, "cat-file", "--batch", input="".join(f"{sha}\n" for _, sha in blobs).encode())
        found: dict[str, bytes] = {}
        pos = 0
        for path, _ in blobs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            size = int(header[2])
            found[path] = out[end + 1:end + 1 + size]
            pos = end + 1 + size + 1
        return found
