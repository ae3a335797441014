"""con02"""
from alembic import op
import sqlalchemy as sa

revision = 'con02'
down_revision = 'con01'
branch_labels = None
depends_on = None


def upgrade():
    op.execute('create table con_b (id int)')


def downgrade():
    op.execute('drop table con_b')
