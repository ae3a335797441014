"""Migrations that run only inside the application, on the connection it shares.

Alembic's cookbook, "Sharing a Connection across one or more programmatic migration
commands": the caller puts it in ``config.attributes["connection"]``.
"""
from logging.config import fileConfig

from alembic import context

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = None


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _shared():
    shared = config.attributes.get("connection")
    if shared is None:
        raise RuntimeError("no connection in config.attributes['connection']: these migrations run on the application's")
    return shared


def run_migrations_online() -> None:
    """The shared object is a Connection: configure on it as it is."""
    connection = _shared()
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
