"""SQLAlchemy models of the Smart Waste AI demo, matching the schema at head.

Keep this module in step with ``migrations/versions``: autogenerate against a
database at head must produce no operations (``alembic check`` is clean).

The MetaData carries a naming convention so every index and constraint name is
deterministic; the migrations spell the same names out explicitly.
"""

from __future__ import annotations

import datetime
import decimal
import enum

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UserRole(str, enum.Enum):
    """Values are UPPERCASE and equal to the member names (see the guide)."""

    CITIZEN = "CITIZEN"  # Matches PostgreSQL: 'CITIZEN'
    DRIVER = "DRIVER"  # Matches PostgreSQL: 'DRIVER'
    ADMIN = "ADMIN"  # Matches PostgreSQL: 'ADMIN'
    SUPER_ADMIN = "SUPER_ADMIN"  # added by c7d8e9f0a1b2


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    full_name: Mapped[str | None] = mapped_column(sa.String(200))
    role: Mapped[UserRole] = mapped_column(
        sa.Enum(UserRole, name="user_role"),
        nullable=False,
        server_default=UserRole.CITIZEN.value,
    )
    created_at: Mapped[datetime.datetime] = mapped_column(
        sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


class UserPreferences(Base):
    __tablename__ = "user_preferences"

    user_id: Mapped[int] = mapped_column(
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    language: Mapped[str] = mapped_column(
        sa.String(8), nullable=False, server_default="en"
    )
    notify_email: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, server_default=sa.true()
    )
    notify_sms: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, server_default=sa.false()
    )


class Bin(Base):
    __tablename__ = "bins"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    latitude: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(9, 6), nullable=False)
    longitude: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(9, 6), nullable=False)
    capacity_liters: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    fill_level: Mapped[int] = mapped_column(
        sa.Integer, nullable=False, server_default=sa.text("0")
    )
    created_at: Mapped[datetime.datetime] = mapped_column(
        sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )
    last_emptied_at: Mapped[datetime.datetime | None] = mapped_column(
        sa.DateTime(timezone=True), index=True
    )


class CollectionRoute(Base):
    __tablename__ = "collection_routes"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    driver_id: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("users.id"))
    scheduled_date: Mapped[datetime.date] = mapped_column(sa.Date, nullable=False)


class Pickup(Base):
    __tablename__ = "pickups"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    route_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("collection_routes.id"), nullable=False
    )
    bin_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("bins.id"), nullable=False)
    collected_at: Mapped[datetime.datetime] = mapped_column(
        sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )
    weight_kg: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(8, 2))
    notes: Mapped[str | None] = mapped_column(sa.Text)


class RouteStop(Base):
    __tablename__ = "route_stops"
    __table_args__ = (sa.UniqueConstraint("route_id", "position"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    route_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("collection_routes.id"), nullable=False
    )
    bin_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("bins.id"), nullable=False)
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)


#: The MetaData swrun uses for enum and schema checks (see ``[swrun]`` in alembic.ini).
metadata = Base.metadata

__all__ = [
    "Base",
    "metadata",
    "NAMING_CONVENTION",
    "UserRole",
    "User",
    "UserPreferences",
    "Bin",
    "CollectionRoute",
    "Pickup",
    "RouteStop",
]
