"""Where a migration file went: the project's git history, read with plain ``git`` commands.

The guide: "Can't locate revision identified by 'xxxxx'" usually means a migration file was
deleted, a migration file was renamed, or you're on the wrong branch. :func:`trace` tells
which, from

* the working tree against HEAD (``git diff HEAD -M --name-status``): deleted or moved, not committed yet;
* ``git log --all -M --diff-filter=DR --name-status -- <versions dir>``: the commit that deleted
  or renamed it (each candidate's content at ``<commit>^`` is read to confirm it defined the revision);
* ``git log --all -S<revision>``: a commit on another branch that added it;

and says how to get it back (``git checkout <commit>^ -- <path>``, ``git mv``, ``git checkout <branch>``).
Nothing here writes to the repository.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shlex
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path


class GitError(Exception):
    pass


@dataclass
class Trace:
    revision: str
    kind: str  # deleted, renamed, uncommitted-delete, uncommitted-rename, other-branch, not-in-history, no-repository, no-git
    repo: str | None = None
    path: str | None = None  # where the file was (relative to the repository)
    new_path: str | None = None  # where a rename put it
    commit: str | None = None
    short: str | None = None
    author: str | None = None
    date: str | None = None
    subject: str | None = None
    branches: list[str] = field(default_factory=list)
    sha256: str | None = None  # of the file as it was before it went
    restore: list[str] = field(default_factory=list)  # commands, run in the repository

    @property
    def found(self) -> bool:
        return self.kind not in ("not-in-history", "no-repository", "no-git")

    def as_dict(self) -> dict:
        return asdict(self)

    def evidence(self) -> str:
        where = f"in {self.short} \"{self.subject}\" ({self.author}, {self.date[:10] if self.date else '?'})" if self.commit else ""
        on = f" on {', '.join(self.branches)}" if self.branches else ""
        if self.kind == "deleted":
            return f"git history: {self.path} was deleted {where}{on}"
        if self.kind == "renamed":
            return f"git history: {self.path} was renamed to {self.new_path} {where}{on}"
        if self.kind == "uncommitted-delete":
            return f"git: {self.path} is deleted in the working tree (not committed; HEAD still has it)"
        if self.kind == "uncommitted-rename":
            return f"git: {self.path} was moved to {self.new_path} in the working tree (not committed)"
        if self.kind == "other-branch":
            return (f"git history: {self.path} was added {where}, which the checked-out branch does not contain"
                    f" (it is on {', '.join(self.branches) or 'no branch'}): you're on the wrong branch")
        if self.kind == "not-in-history":
            return f"git history of {self.repo}: no commit ever added or removed a file defining {self.revision}"
        if self.kind == "no-repository":
            return "the project is not in a git repository: no history to look in"
        return "git is not installed: no history looked up"


def _git(repo: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "LC_ALL": "C", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=repo, capture_output=True, text=True,
                              env=env, timeout=60)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out") from None
    if check and proc.returncode != 0:
        raise GitError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {args[0]} failed")
    return proc.stdout


def repository(path: Path) -> Path | None:
    here = Path(path)
    while not here.is_dir() and here != here.parent:
        here = here.parent
    try:
        top = _git(here, "rev-parse", "--show-toplevel").strip()
    except GitError:
        return None
    return Path(top) if top else None


def revision_in(source: str) -> str | None:
    """The ``revision = "..."`` a migration file's source assigns, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = [t.id for t in node.targets if isinstance(t, ast.Name)], node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets, value = [node.target.id], node.value
        if "revision" in targets and isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def _show(repo: Path, spec: str) -> str | None:
    try:
        return _git(repo, "show", spec)
    except GitError:
        return None


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def _branches(repo: Path, commit: str) -> list[str]:
    try:
        out = _git(repo, "branch", "-a", "--format=%(refname:short)", "--contains", commit)
    except GitError:
        return []
    return [b.strip() for b in out.splitlines() if b.strip() and "HEAD" not in b]


def _in_head(repo: Path, commit: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=repo, capture_output=True).returncode == 0


_FORMAT = "%x1e%H%x1f%h%x1f%an%x1f%aI%x1f%s"


def _log_entries(text: str):
    """(commit, short, author, date, subject, [(status, path, new_path)]) from ``git log --format=_FORMAT --name-status``."""
    for chunk in text.split("\x1e"):
        if not chunk.strip():
            continue
        head, _, rest = chunk.partition("\n")
        parts = head.split("\x1f")
        if len(parts) < 5:
            continue
        files = []
        for line in rest.splitlines():
            cols = line.split("\t")
            if len(cols) >= 2 and cols[0]:
                files.append((cols[0][0], cols[1], cols[2] if len(cols) > 2 else None))
        yield (*parts[:5], files)


def trace(project_dir: Path, version_dirs: list[Path], revision: str) -> Trace:
    """Where the file that defined ``revision`` went, and how to restore it."""
    try:
        repo = repository(project_dir)
    except GitError:
        return Trace(revision, "no-git")
    if repo is None:
        return Trace(revision, "no-repository")
    try:
        found = _trace(repo, version_dirs, revision) or Trace(revision, "not-in-history", repo=str(repo))
    except GitError as exc:
        return Trace(revision, "not-in-history", repo=f"{repo} (git: {exc})")
    # runnable from anywhere: paths are the repository's
    found.restore = [c.replace("git ", f"git -C {shlex.quote(str(repo))} ", 1) for c in found.restore]
    return found


def _rel(repo: Path, path: Path) -> str:
    try:
        return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(repo)))
    except ValueError:
        return str(path)


def _trace(repo: Path, version_dirs: list[Path], revision: str) -> Trace | None:
    rels = [_rel(repo, d) for d in version_dirs]

    def under_versions(path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in rels)

    # 1. the working tree against HEAD: deleted or moved, not committed yet
    try:
        changed = _git(repo, "diff", "HEAD", "-M", "--name-status", "--")
    except GitError:
        changed = ""  # no commit yet
    for line in changed.splitlines():
        cols = line.split("\t")
        if len(cols) < 2 or cols[0][:1] not in ("D", "R") or not under_versions(cols[1]):
            continue
        before = _show(repo, f"HEAD:{cols[1]}")
        if revision_in(before or "") != revision:
            continue
        if cols[0].startswith("R") and len(cols) > 2:
            return Trace(revision, "uncommitted-rename", str(repo), cols[1], cols[2], sha256=_sha(before),
                         restore=[f"git mv {cols[2]} {cols[1]}"])
        return Trace(revision, "uncommitted-delete", str(repo), cols[1], sha256=_sha(before),
                     restore=[f"git checkout HEAD -- {cols[1]}"])

    # 2. a commit that deleted or renamed it (newest first)
    log = _git(repo, "log", "--all", "-M", "--diff-filter=DR", "--name-status", f"--format={_FORMAT}", "--", *rels)
    entries = [(commit, short, author, date, subject, status, path, new_path)
               for commit, short, author, date, subject, files in _log_entries(log) for status, path, new_path in files]
    # files named after their revision (the guide's convention) first; a few hundred others at most
    named = [e for e in entries if revision in Path(e[6]).name]
    entries = named + [e for e in entries if e not in named and e[6].endswith(".py")][:300]
    for commit, short, author, date, subject, status, path, new_path in entries:
        before = _show(repo, f"{commit}^:{path}")
        if revision_in(before or "") != revision:
            continue
        if status == "D":  # limited to the versions directory, a move out of it shows as a deletion
            moved = _git(repo, "show", "-M", "--name-status", "--format=", commit, check=False)
            for mline in moved.splitlines():
                cols = mline.split("\t")
                if cols[0].startswith("R") and len(cols) > 2 and cols[1] == path:
                    status, new_path = "R", cols[2]
        found = Trace(revision, "renamed" if status == "R" else "deleted", str(repo), path, new_path, commit, short,
                      author, date, subject, _branches(repo, commit), _sha(before))
        if status == "R" and new_path and (repo / new_path).exists():
            found.restore = [f"git mv {new_path} {path}"]
        else:
            found.restore = [f"git checkout {short}^ -- {path}"]
        return found

    # 3. a commit that added it somewhere the checked-out branch does not have
    added = _git(repo, "log", "--all", f"-S{revision}", "--diff-filter=A", "--name-status", f"--format={_FORMAT}")
    for commit, short, author, date, subject, files in _log_entries(added):
        for _status, path, _new in files:
            content = _show(repo, f"{commit}:{path}")
            if revision_in(content or "") != revision:
                continue
            if _in_head(repo, commit):
                continue  # on this branch: steps 1 and 2 would have found where it went
            branches = _branches(repo, commit)
            restore = [f"git checkout {branches[0]}"] if branches else []
            restore.append(f"git checkout {short} -- {path}")
            return Trace(revision, "other-branch", str(repo), path, None, commit, short, author, date, subject, branches,
                         _sha(content), restore)
    return None
