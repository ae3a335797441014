"""fill from count

A data migration that reads a SELECT's result: offline, the connection returns nothing to read.

Revision ID: b1c2d3e4f5a6
Revises: a0b1c2d3e4f5
"""
from alembic import op
import sqlalchemy as sa

revision = "b1c2d3e4f5a6"
down_revision = "a0b1c2d3e4f5"
branch_labels = None
depends_on = None

SECRET_CODE = "h3-bound-code-91c2"


def upgrade():
    bind = op.get_bind()
    count = bind.execute(sa.text("select count(*) from bins")).fetchone()[0]
    bind.execute(sa.text("update bins set fill_level = :level where code <> :code"),
                 {"level": min(int(count), 100), "code": SECRET_CODE})


def downgrade():
    op.execute("update bins set fill_level = 0")
