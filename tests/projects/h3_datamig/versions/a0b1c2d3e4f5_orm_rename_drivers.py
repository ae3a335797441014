"""orm rename drivers

A data migration through an ORM Session bound to Alembic's connection: it cannot
render offline (``alembic upgrade --sql`` fails on it), plain ``alembic upgrade`` runs it.

Revision ID: a0b1c2d3e4f5
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy import orm

revision = "a0b1c2d3e4f5"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None

# a value only bound parameters carry: it must never reach a file or record
SECRET_NOTE = "h3-bound-secret-7f3a"


class _Base(orm.DeclarativeBase):
    pass


class _Pickup(_Base):
    __tablename__ = "pickups"
    id = sa.Column(sa.Integer, primary_key=True)
    notes = sa.Column(sa.Text)


def upgrade():
    session = orm.Session(bind=op.get_bind())
    for pickup in session.execute(sa.select(_Pickup).order_by(_Pickup.id)).scalars():
        pickup.notes = SECRET_NOTE
    session.flush()


def downgrade():
    op.get_bind().execute(sa.text("update pickups set notes = null where notes = :n"), {"n": SECRET_NOTE})
