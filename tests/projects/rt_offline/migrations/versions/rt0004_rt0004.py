"""rt0004"""
from alembic import op
import sqlalchemy as sa

revision = 'rt0004'
down_revision = 'rt0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_items_name', 'items', ['name'])


def downgrade():
    op.drop_index('ix_items_name', 'items')
