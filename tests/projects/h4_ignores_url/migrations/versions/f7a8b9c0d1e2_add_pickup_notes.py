"""add pickup notes

Revision ID: f7a8b9c0d1e2
Revises: e1f2a3b4c5d6
Create Date: 2026-02-02 15:19:46.093357

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "f7a8b9c0d1e2"
down_revision: Union[str, Sequence[str], None] = "e1f2a3b4c5d6"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# (id, route_id, bin_id, position): the planned stop order of the seeded routes.
ROUTE_STOPS = [
    (1, 1, 1, 1),
    (2, 1, 2, 2),
    (3, 1, 7, 3),
    (4, 2, 3, 1),
    (5, 2, 5, 2),
    (6, 2, 8, 3),
    (7, 3, 4, 1),
    (8, 3, 6, 2),
    (9, 3, 1, 3),
]


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("pickups", sa.Column("notes", sa.Text(), nullable=True))
    route_stops = op.create_table(
        "route_stops",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bin_id"], ["bins.id"], name=op.f("fk_route_stops_bin_id_bins")
        ),
        sa.ForeignKeyConstraint(
            ["route_id"],
            ["collection_routes.id"],
            name=op.f("fk_route_stops_route_id_collection_routes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_stops")),
        sa.UniqueConstraint(
            "route_id", "position", name=op.f("uq_route_stops_route_id_position")
        ),
    )
    op.bulk_insert(
        route_stops,
        [
            {"id": id_, "route_id": route_id, "bin_id": bin_id, "position": position}
            for id_, route_id, bin_id, position in ROUTE_STOPS
        ],
    )
    op.execute(
        "SELECT setval(pg_get_serial_sequence('route_stops', 'id'), "
        "COALESCE(MAX(id), 0) + 1, false) FROM route_stops"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("route_stops")
    op.drop_column("pickups", "notes")
