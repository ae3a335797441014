"""promote platform admin

Revision ID: d4e5f6a7b8c9
Revises: c7d8e9f0a1b2
Create Date: 2026-01-21 09:02:37.448190

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "d4e5f6a7b8c9"
down_revision: Union[str, Sequence[str], None] = "c7d8e9f0a1b2"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PLATFORM_ADMIN = "admin@smartwaste.example"


def upgrade() -> None:
    """Data migration: the platform admin becomes SUPER_ADMIN."""
    op.execute(
        f"UPDATE users SET role = 'SUPER_ADMIN' WHERE email = '{PLATFORM_ADMIN}'"
    )


def downgrade() -> None:
    """Data migration: back to ADMIN."""
    op.execute(
        f"UPDATE users SET role = 'ADMIN' WHERE email = '{PLATFORM_ADMIN}'"
    )
