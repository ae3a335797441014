"""``swrun check``: the guide's rules in the pull request, before any database sees the change.

* :mod:`.gitrefs`     git plumbing: the base's migration files from git's objects, never the work tree
* :mod:`.sources`     migration files as text, read with ``ast`` (revision, parents, their lines)
* :mod:`.never`       the NEVER rules: base files renamed, deleted, modified; revisions inserted before
* :mod:`.heads`       the revision graph after the merge: more heads, the ``alembic merge`` command
* :mod:`.acknowledge` ``# swrun: acknowledge <id> <reason>`` in the migration file
* :mod:`.review`      swrun's rules, squawk, enum checks, models against migrations
* :mod:`.execute`     one throwaway database: base heads, the stairway, the deploy runbook
* :mod:`.writers`     text, GitHub annotations and step summary, JSON, JUnit XML
* :mod:`.findings`    the finding codes (stable, documented in docs/ci.md) and the report

Exit codes: 0 clean, 1 findings, 2 or more: could not check (swrun.errors' codes).
"""

from .findings import CODES, Finding, Report  # noqa: F401
from .run import check  # noqa: F401
