"""The guide's NEVER rules against git: each migration file of the base, and what the change did to it.

The base's files are those of the merge base (what the change's author branched from): a file
there may have run on any database, so the change must leave it as it is.

* the same path, other content                      -> SW101 modified-applied-file
* its revision now defined by a file of another name -> SW102 renamed-applied-file (SW101 too if it changed)
* its path gone and its revision defined by no file  -> SW103 deleted-applied-file
* a new revision whose down_revision already has a child on the base -> SW104 inserted-before
"""

from __future__ import annotations

import difflib

from ..guards import NEVER_DELETE, NEVER_MODIFY, NEVER_RENAME
from .findings import GUIDE, Finding
from .sources import Source, by_revision


def _first_change(old: str, new: str) -> int:
    """The first line of ``new`` that differs from ``old`` (1-based)."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    for tag, _, _, j1, _ in matcher.get_opcodes():
        if tag != "equal":
            return j1 + 1
    return 1


def _changed_lines(old: str, new: str) -> int:
    return sum(1 for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---")))


def findings(base: dict[str, Source], change: dict[str, Source]) -> list[Finding]:
    out: list[Finding] = []
    change_revs = by_revision(change)
    for path in sorted(base):
        old = base[path]
        new = change.get(path)
        rev = old.revision
        if new is not None and new.revision == rev:
            if new.text != old.text:
                out.append(Finding(
                    "SW101", f"{path} (revision {rev}) exists on the base and the change modifies it "
                             f"({_changed_lines(old.text, new.text)} line(s) differ, the first at line {_first_change(old.text, new.text)})",
                    file=path, line=_first_change(old.text, new.text), detail=rev or path, rule=GUIDE[NEVER_MODIFY],
                    fix="restore the file (git checkout <base> -- <file>) and put the correction in a new migration",
                    revision=rev))
            continue
        moved = change_revs.get(rev) if rev else None
        if moved is not None and moved.path != path:
            out.append(Finding(
                "SW102", f"{path} (revision {rev}) exists on the base and the change renames it to {moved.path}",
                file=moved.path, line=moved.line_of("revision"), detail=rev, rule=GUIDE[NEVER_RENAME],
                fix=f"give the file its name back: git mv {moved.path} {path}", revision=rev))
            if moved.text != old.text:
                out.append(Finding(
                    "SW101", f"{path} (revision {rev}), renamed to {moved.path}, is modified too "
                             f"({_changed_lines(old.text, moved.text)} line(s) differ)",
                    file=moved.path, line=_first_change(old.text, moved.text), detail=rev, rule=GUIDE[NEVER_MODIFY],
                    fix="restore its content and put the correction in a new migration", revision=rev))
            continue
        if new is not None and new.error:
            out.append(Finding(
                "SW101", f"{path} (revision {rev}) exists on the base and the change modifies it: it {new.error}",
                file=path, line=_first_change(old.text, new.text), detail=rev or path, rule=GUIDE[NEVER_MODIFY],
                fix="restore the file (git checkout <base> -- <file>) and put the correction in a new migration", revision=rev))
            continue
        if new is not None:  # the same path now defines another revision: the old one is gone
            out.append(Finding(
                "SW101", f"{path} defined revision {rev} on the base; the change makes it define {new.revision}",
                file=path, line=new.line_of("revision"), detail=rev or path, rule=GUIDE[NEVER_MODIFY],
                fix="restore the file and add the new revision in a file of its own", revision=rev))
            continue
        out.append(Finding(
            "SW103", f"{path} (revision {rev}) exists on the base and the change deletes it",
            file=path, line=1, detail=rev or path, rule=GUIDE[NEVER_DELETE],
            fix=f"restore it (git checkout <base> -- {path}); reverse its changes with a new migration instead",
            revision=rev))
    out.extend(inserted_before(base, change))
    return out


def inserted_before(base: dict[str, Source], change: dict[str, Source]) -> list[Finding]:
    """New revisions that hang off a parent which, on the base, already has a child."""
    base_revs = by_revision(base)
    children: dict[str, list[str]] = {}
    for src in base_revs.values():
        for parent in src.down:
            children.setdefault(parent, []).append(src.revision)
    heads = sorted(r for r in base_revs if r not in children)
    on_top = " or ".join(repr(h) for h in heads) or "the base's head"
    out: list[Finding] = []
    for rev, src in sorted(by_revision(change).items()):
        if rev in base_revs:
            continue
        for parent in src.down:
            existing = sorted(children.get(parent, []))
            if not existing:
                continue
            out.append(Finding(
                "SW104", f"new revision {rev} ({src.name}) is inserted before {', '.join(existing)}: its down_revision "
                         f"{parent} already has the child {', '.join(existing)} on the base, which databases may have applied",
                file=src.path, line=src.line_of("down_revision"), detail=f"{rev}:{parent}", revision=rev,
                rule=GUIDE[NEVER_MODIFY] + "; a revision goes on top of the chain, never into it",
                fix=f"set down_revision = {on_top} in {src.name} (on top of the chain) and restore any file it rewired"))
    return out
