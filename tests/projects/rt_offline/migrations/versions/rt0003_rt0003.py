"""rt0003"""
from alembic import op
import sqlalchemy as sa

revision = 'rt0003'
down_revision = 'rt0002'
branch_labels = None
depends_on = None


def upgrade():
    count = op.get_bind().execute(sa.text('select count(*) from items')).fetchone()[0]
    op.execute(f"insert into items (name) values ('seen {count}')")


def downgrade():
    op.execute("delete from items where name like 'seen %'")
