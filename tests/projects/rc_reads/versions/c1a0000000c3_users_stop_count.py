"""users stop count

Alters users only, but reads route_stops through op.get_bind(): the copy needs route_stops' rows (tests/test_rehearse_copy.py).

Revision ID: c1a0000000c3
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa

revision = "c1a0000000c3"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("stop_count", sa.Integer(), nullable=True))
    n = op.get_bind().execute(sa.text("select count(*) from route_stops")).scalar()
    op.execute(f"comment on column users.stop_count is 'route_stops rows: {int(n)}'")


def downgrade():
    op.drop_column("users", "stop_count")
