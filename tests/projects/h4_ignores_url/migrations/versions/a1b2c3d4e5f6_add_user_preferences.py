"""add user preferences

Revision ID: a1b2c3d4e5f6
Revises: 5e1f0c2a9d41
Create Date: 2026-01-14 10:47:09.116532

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "a1b2c3d4e5f6"
down_revision: Union[str, Sequence[str], None] = "5e1f0c2a9d41"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("language", sa.String(length=8), server_default="en", nullable=False),
        sa.Column("notify_email", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("notify_sms", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_preferences")),
    )
    # Every existing user gets the default preferences.
    op.execute(
        "INSERT INTO user_preferences (user_id) SELECT id FROM users ORDER BY id"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("user_preferences")
