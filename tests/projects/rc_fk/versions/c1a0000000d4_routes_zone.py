"""routes zone

Changes collection_routes, whose foreign key references users: the copy needs users' rows (tests/test_rehearse_copy.py).

Revision ID: c1a0000000d4
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa

revision = "c1a0000000d4"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("collection_routes", sa.Column("zone", sa.Text(), nullable=True))
    op.execute("update collection_routes set zone = 'north'")


def downgrade():
    op.drop_column("collection_routes", "zone")
