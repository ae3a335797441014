"""seed accounts through the ORM

Revision ID: d0e103
Revises: d0e102
Create Date: 2026-12-01 12:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    """The table as this revision knows it (never the application's current models)."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str | None]


# revision identifiers, used by Alembic.
revision: str = 'd0e103'
down_revision: Union[str, Sequence[str], None] = 'd0e102'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    bind = op.get_bind()
    with Session(bind=bind) as session:
        session.add_all([Account(name=name) for name in ("ada", "grace", "edsger")])
        session.flush()
        # reads what it wrote back: a migration offline SQL cannot render
        for account in session.scalars(sa.select(Account).order_by(Account.id)):
            account.email = f"{account.name}@example.com"
        session.commit()


def downgrade() -> None:
    """Downgrade schema."""
    with Session(bind=op.get_bind()) as session:
        session.execute(sa.delete(Account))
        session.commit()
