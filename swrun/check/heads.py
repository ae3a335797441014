"""Heads after the merge: the revision graph as it will be once the change merges into the base.

The merged files are the base tip's, with the change's own edits (what it added, modified and
deleted since the merge base) applied on top: what ``git merge`` leaves in the version
directories when nothing conflicts. Two pull requests that each add a revision on the same
parent each look fine alone; here the second one sees the first's revision and two heads.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .findings import ALWAYS_TEST, Finding
from .sources import Source


@dataclass
class Graph:
    files: dict[str, Source]
    revisions: dict[str, Source] = field(default_factory=dict)
    duplicates: dict[str, list[Source]] = field(default_factory=dict)

    def __post_init__(self):
        for path in sorted(self.files):
            src = self.files[path]
            if not src.revision:
                continue
            if src.revision in self.revisions:
                self.duplicates.setdefault(src.revision, [self.revisions[src.revision]]).append(src)
            else:
                self.revisions[src.revision] = src

    @property
    def heads(self) -> list[str]:
        """Alembic's heads: revisions no down_revision names (depends_on does not make a head)."""
        named = {p for src in self.revisions.values() for p in src.down}
        return sorted(r for r in self.revisions if r not in named)

    def ancestors(self, rev: str) -> set[str]:
        seen, stack = set(), [rev]
        while stack:
            r = stack.pop()
            if r in seen or r not in self.revisions:
                continue
            seen.add(r)
            stack.extend(self.revisions[r].down)
        return seen


def merged_files(tip: dict[str, Source], fork: dict[str, Source], change: dict[str, Source]) -> dict[str, Source]:
    merged = dict(tip)
    for path in fork:
        if path not in change:
            merged.pop(path, None)
    for path, src in change.items():
        if path not in fork or fork[path].text != src.text:
            merged[path] = src
    return merged


def merge_command(heads: list[str]) -> str:
    message = "merge heads " + " and ".join(heads)
    return f"alembic merge -m {shlex.quote(message)} " + " ".join(heads)


def findings(base: Graph, merged: Graph, change_paths: set[str], target: str) -> list[Finding]:
    out: list[Finding] = []
    for rev, sources in sorted(merged.duplicates.items()):
        ours = next((s for s in sources if s.path in change_paths), sources[-1])
        out.append(Finding("SW105", f"revision {rev} is defined by {len(sources)} files after the merge: "
                                    f"{', '.join(s.path for s in sources)}",
                           file=ours.path, line=ours.line_of("revision"), detail=rev, revision=rev,
                           fix=f"give the new revision in {ours.name} another id (alembic revision generates one)"))
    for rev, src in sorted(merged.revisions.items()):
        for parent in src.down:
            if parent not in merged.revisions:
                out.append(Finding("SW202", f"revision {rev} ({src.name}) names down_revision {parent}, which no "
                                            f"migration file defines after the merge",
                                   file=src.path, line=src.line_of("down_revision"), detail=f"{rev}:{parent}", revision=rev,
                                   fix="restore the parent's file, or point down_revision at an existing revision"))
    before, after = base.heads, merged.heads
    if len(after) > len(before):
        new = [h for h in after if h not in before]
        # the heads to merge: the new ones, and the old ones they share a root with
        roots = set().union(*(merged.ancestors(h) for h in new)) if new else set()
        joined = sorted(set(new) | {h for h in after if h in before and merged.ancestors(h) & roots})
        ours = next((merged.revisions[h] for h in new if merged.revisions[h].path in change_paths), None) \
            or merged.revisions[new[0]] if new else None
        theirs = [h for h in joined if merged.revisions[h].path not in change_paths]
        where = f"; {', '.join(theirs)} is on {target}" if theirs else ""
        out.append(Finding(
            "SW201", f"after merging into {target} the chain has {len(after)} heads ({', '.join(after)}), "
                     f"the base {len(before)} ({', '.join(before) or 'none'}){where}: "
                     "alembic upgrade head stops with 'Multiple head revisions are present'",
            file=ours.path if ours else None, line=ours.line_of("down_revision") if ours else 1,
            detail="+".join(joined), revision=ours.revision if ours else None,
            rule=ALWAYS_TEST + " (one head, as production's deploy expects)",
            fix=f"{merge_command(joined)}  (or point down_revision at the other head)"))
    return out
