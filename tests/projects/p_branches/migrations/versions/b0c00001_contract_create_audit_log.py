"""contract create audit log

Revision ID: b0c00001
Revises: b0000001
Create Date: 2026-12-01 12:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'b0c00001'
down_revision: Union[str, Sequence[str], None] = 'b0000001'
branch_labels: Union[str, Sequence[str], None] = ('contract',)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table("audit_log", sa.Column("id", sa.Integer, primary_key=True), sa.Column("event", sa.Text))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("audit_log")
