"""add bin last emptied

Revision ID: e1f2a3b4c5d6
Revises: d4e5f6a7b8c9
Create Date: 2026-01-27 11:38:14.561902

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "e1f2a3b4c5d6"
down_revision: Union[str, Sequence[str], None] = "d4e5f6a7b8c9"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "bins",
        sa.Column("last_emptied_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Backfill from the latest pickup of each bin.
    op.execute(
        "UPDATE bins SET last_emptied_at = p.last_collected "
        "FROM (SELECT bin_id, MAX(collected_at) AS last_collected "
        "FROM pickups GROUP BY bin_id) AS p "
        "WHERE p.bin_id = bins.id"
    )
    op.create_index(
        op.f("ix_bins_last_emptied_at"), "bins", ["last_emptied_at"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_bins_last_emptied_at"), table_name="bins")
    op.drop_column("bins", "last_emptied_at")
