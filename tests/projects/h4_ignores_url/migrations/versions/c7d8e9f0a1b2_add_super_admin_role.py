"""add super admin role

Revision ID: c7d8e9f0a1b2
Revises: a1b2c3d4e5f6
Create Date: 2026-01-20 16:25:52.730881

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "c7d8e9f0a1b2"
down_revision: Union[str, Sequence[str], None] = "a1b2c3d4e5f6"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add 'SUPER_ADMIN' to user_role.

    PostgreSQL cannot use an enum value in the transaction that added it, so
    the ALTER runs in an autocommit block: the migrations before it are
    committed first, and later ones (d4e5f6a7b8c9 uses the value) run in a new
    transaction.
    """
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE user_role ADD VALUE IF NOT EXISTS 'SUPER_ADMIN'")


def downgrade() -> None:
    """Remove 'SUPER_ADMIN' by rebuilding the type (PostgreSQL cannot drop a value).

    Users holding the removed value are demoted to ADMIN first.
    """
    op.execute("UPDATE users SET role = 'ADMIN' WHERE role = 'SUPER_ADMIN'")
    op.execute("ALTER TYPE user_role RENAME TO user_role_old")
    op.execute("CREATE TYPE user_role AS ENUM ('CITIZEN', 'DRIVER', 'ADMIN')")
    # The default is typed user_role_old now: drop it around the type change.
    op.execute("ALTER TABLE users ALTER COLUMN role DROP DEFAULT")
    op.execute(
        "ALTER TABLE users ALTER COLUMN role TYPE user_role "
        "USING role::text::user_role"
    )
    op.execute("ALTER TABLE users ALTER COLUMN role SET DEFAULT 'CITIZEN'")
    op.execute("DROP TYPE user_role_old")
