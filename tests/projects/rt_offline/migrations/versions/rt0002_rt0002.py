"""rt0002"""
from alembic import op
import sqlalchemy as sa

revision = 'rt0002'
down_revision = 'rt0001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('items', sa.Column('note', sa.Text))


def downgrade():
    op.drop_column('items', 'note')
