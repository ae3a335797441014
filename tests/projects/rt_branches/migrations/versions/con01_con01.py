"""con01"""
from alembic import op
import sqlalchemy as sa

revision = 'con01'
down_revision = 'base01'
branch_labels = ('contract',)
depends_on = None


def upgrade():
    op.execute('create table con_a (id int)')


def downgrade():
    op.execute('drop table con_a')
