"""swrun: the team's Alembic migration guide as executable, auditable runbooks."""

__version__ = "0.1.0"
