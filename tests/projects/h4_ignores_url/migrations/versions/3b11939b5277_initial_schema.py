"""initial schema

Revision ID: 3b11939b5277
Revises: 
Create Date: 2026-01-05 09:12:44.318204

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "3b11939b5277"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The enum as first created; SUPER_ADMIN is added later by c7d8e9f0a1b2.
user_role = postgresql.ENUM("CITIZEN", "DRIVER", "ADMIN", name="user_role")


def upgrade() -> None:
    """Upgrade schema."""
    user_role.create(op.get_bind(), checkfirst=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=True),
        sa.Column(
            "role",
            postgresql.ENUM(name="user_role", create_type=False),
            server_default="CITIZEN",
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "bins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("latitude", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("longitude", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("capacity_liters", sa.Integer(), nullable=False),
        sa.Column("fill_level", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bins")),
        sa.UniqueConstraint("code", name=op.f("uq_bins_code")),
    )
    op.create_table(
        "collection_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("driver_id", sa.Integer(), nullable=True),
        sa.Column("scheduled_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["driver_id"],
            ["users.id"],
            name=op.f("fk_collection_routes_driver_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_routes")),
    )
    op.create_table(
        "pickups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=False),
        sa.Column(
            "collected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("weight_kg", sa.Numeric(precision=8, scale=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["bin_id"], ["bins.id"], name=op.f("fk_pickups_bin_id_bins")
        ),
        sa.ForeignKeyConstraint(
            ["route_id"],
            ["collection_routes.id"],
            name=op.f("fk_pickups_route_id_collection_routes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pickups")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("pickups")
    op.drop_table("collection_routes")
    op.drop_table("bins")
    op.drop_table("users")
    user_role.drop(op.get_bind(), checkfirst=False)
