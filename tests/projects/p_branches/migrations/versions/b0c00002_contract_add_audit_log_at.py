"""contract add audit log at

Revision ID: b0c00002
Revises: b0c00001
Create Date: 2026-12-01 12:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'b0c00002'
down_revision: Union[str, Sequence[str], None] = 'b0c00001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("audit_log", sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("audit_log", "at")
