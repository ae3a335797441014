"""base01"""
from alembic import op
import sqlalchemy as sa

revision = 'base01'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.execute('create table base_t (id int)')


def downgrade():
    op.execute('drop table base_t')
