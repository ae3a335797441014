"""exp02"""
from alembic import op
import sqlalchemy as sa

revision = 'exp02'
down_revision = 'exp01'
branch_labels = None
depends_on = None


def upgrade():
    op.execute('create table exp_b (id int)')


def downgrade():
    op.execute('drop table exp_b')
