"""seed sample data

Revision ID: 5e1f0c2a9d41
Revises: 3b11939b5277
Create Date: 2026-01-07 14:03:21.904117

"""
import datetime
from decimal import Decimal
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "5e1f0c2a9d41"
down_revision: Union[str, Sequence[str], None] = "3b11939b5277"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = datetime.timezone.utc

# Lightweight table stubs: only the columns this revision writes.
users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("full_name", sa.String),
    sa.column("role", sa.String),
)
bins = sa.table(
    "bins",
    sa.column("id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("latitude", sa.Numeric),
    sa.column("longitude", sa.Numeric),
    sa.column("capacity_liters", sa.Integer),
    sa.column("fill_level", sa.Integer),
)
collection_routes = sa.table(
    "collection_routes",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("driver_id", sa.Integer),
    sa.column("scheduled_date", sa.Date),
)
pickups = sa.table(
    "pickups",
    sa.column("id", sa.Integer),
    sa.column("route_id", sa.Integer),
    sa.column("bin_id", sa.Integer),
    sa.column("collected_at", sa.DateTime(timezone=True)),
    sa.column("weight_kg", sa.Numeric),
)

USERS = [
    {"id": 1, "email": "admin@smartwaste.example", "full_name": "Platform Admin", "role": "ADMIN"},
    {"id": 2, "email": "ops-admin@smartwaste.example", "full_name": "Operations Admin", "role": "ADMIN"},
    {"id": 3, "email": "driver.ana@smartwaste.example", "full_name": "Ana Driver", "role": "DRIVER"},
    {"id": 4, "email": "driver.ben@smartwaste.example", "full_name": "Ben Driver", "role": "DRIVER"},
    {"id": 5, "email": "citizen.chloe@smartwaste.example", "full_name": "Chloe Citizen", "role": "CITIZEN"},
    {"id": 6, "email": "citizen.dev@smartwaste.example", "full_name": "Dev Citizen", "role": "CITIZEN"},
]


def _bin(id_, code, lat, lon, capacity, fill):
    return {
        "id": id_,
        "code": code,
        "latitude": Decimal(lat),
        "longitude": Decimal(lon),
        "capacity_liters": capacity,
        "fill_level": fill,
    }


BINS = [
    _bin(1, "BIN-0001", "52.520008", "13.404954", 240, 35),
    _bin(2, "BIN-0002", "52.516275", "13.377704", 240, 80),
    _bin(3, "BIN-0003", "52.507629", "13.390397", 660, 15),
    _bin(4, "BIN-0004", "52.530644", "13.383068", 1100, 92),
    _bin(5, "BIN-0005", "52.502889", "13.418528", 120, 0),
    _bin(6, "BIN-0006", "52.539898", "13.412472", 660, 55),
    _bin(7, "BIN-0007", "52.524437", "13.410530", 240, 70),
    _bin(8, "BIN-0008", "52.511234", "13.442890", 1100, 40),
]

ROUTES = [
    {"id": 1, "name": "Mitte Morning", "driver_id": 3, "scheduled_date": datetime.date(2026, 1, 12)},
    {"id": 2, "name": "Kreuzberg Loop", "driver_id": 4, "scheduled_date": datetime.date(2026, 1, 12)},
    {"id": 3, "name": "Prenzlauer Berg", "driver_id": 3, "scheduled_date": datetime.date(2026, 1, 13)},
]


def _pickup(id_, route_id, bin_id, day, hour, minute, kg):
    return {
        "id": id_,
        "route_id": route_id,
        "bin_id": bin_id,
        "collected_at": datetime.datetime(2026, 1, day, hour, minute, tzinfo=UTC),
        "weight_kg": Decimal(kg),
    }


PICKUPS = [
    _pickup(1, 1, 1, 12, 7, 5, "42.50"),
    _pickup(2, 1, 2, 12, 7, 20, "88.10"),
    _pickup(3, 1, 7, 12, 7, 41, "61.75"),
    _pickup(4, 2, 3, 12, 8, 2, "120.00"),
    _pickup(5, 2, 5, 12, 8, 30, "9.40"),
    _pickup(6, 2, 8, 12, 9, 15, "210.30"),
    _pickup(7, 3, 4, 13, 6, 50, "305.00"),
    _pickup(8, 3, 6, 13, 7, 10, "150.25"),
    _pickup(9, 3, 1, 13, 7, 35, "38.00"),
    _pickup(10, 3, 2, 13, 7, 55, "95.60"),
]

# (table, seeded rows) in FK order: parents first.
SEED = [
    ("users", users, USERS),
    ("bins", bins, BINS),
    ("collection_routes", collection_routes, ROUTES),
    ("pickups", pickups, PICKUPS),
]


def _sync_sequence(table: str) -> None:
    """Point the id sequence past the largest id (works offline too)."""
    op.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"COALESCE(MAX(id), 0) + 1, false) FROM {table}"
    )


def upgrade() -> None:
    """Insert the sample rows with explicit ids, then fix the id sequences."""
    for name, table, rows in SEED:
        op.bulk_insert(table, rows)
        _sync_sequence(name)


def downgrade() -> None:
    """Delete exactly the seeded rows (by id), children first."""
    for name, table, rows in reversed(SEED):
        ids = [row["id"] for row in rows]
        op.execute(table.delete().where(table.c.id.in_(ids)))
        _sync_sequence(name)
