"""rt0001"""
from alembic import op
import sqlalchemy as sa

revision = 'rt0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('items', sa.Column('id', sa.Integer, primary_key=True), sa.Column('name', sa.Text))


def downgrade():
    op.drop_table('items')
