"""The "Smart Waste AI" demo Alembic project (PostgreSQL).

Files:

* ``alembic.ini``            - Alembic config; ``sqlalchemy.url`` is left empty,
                               swrun supplies it at run time.
* ``migrations/``            - ``env.py``, ``script.py.mako`` and ``versions/``
                               (a linear chain of 7 revisions).
* ``models.py``              - SQLAlchemy models matching the schema at head.
"""

from pathlib import Path

#: Directory holding this demo project.
PROJECT_DIR = Path(__file__).resolve().parent
#: Path of the demo project's ``alembic.ini``.
ALEMBIC_INI = PROJECT_DIR / "alembic.ini"
#: Revision id of the first revision (``initial schema``).
BASE_REVISION = "3b11939b5277"
#: Revision id of the head revision.
HEAD_REVISION = "f7a8b9c0d1e2"

__all__ = ["PROJECT_DIR", "ALEMBIC_INI", "BASE_REVISION", "HEAD_REVISION"]
