"""exp01"""
from alembic import op
import sqlalchemy as sa

revision = 'exp01'
down_revision = 'base01'
branch_labels = ('expand',)
depends_on = None


def upgrade():
    op.execute('create table exp_a (id int)')


def downgrade():
    op.execute('drop table exp_a')
