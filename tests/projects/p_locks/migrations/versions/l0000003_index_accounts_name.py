"""index accounts.name CONCURRENTLY (an autocommit block: waits for open writers of accounts)

Revision ID: l0000003
Revises: l0000002
"""
from alembic import op

revision = "l0000003"
down_revision = "l0000002"
branch_labels = None
depends_on = None


def upgrade():
    with op.get_context().autocommit_block():
        op.create_index("ix_accounts_name", "accounts", ["name"], postgresql_concurrently=True)


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_accounts_name", table_name="accounts", postgresql_concurrently=True)
