"""first bin flagged

A data migration that needs a row to exist: it fails on the schema-only copy, so its locks are unknown and the rehearsal takes the full copy (tests/test_rehearse_copy.py).

Revision ID: c1a0000000e5
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa

revision = "c1a0000000e5"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    first = op.get_bind().execute(sa.text("select id from bins order by id limit 1")).one()
    op.execute(sa.text("update bins set fill_level = 100 where id = :id").bindparams(id=first.id))


def downgrade():
    pass
