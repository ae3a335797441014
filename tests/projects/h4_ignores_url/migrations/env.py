"""A copy of the demo's env.py as many real projects write it: the database URL comes from the
application's own settings (the APP_DATABASE_URL environment variable), and sqlalchemy.url is
ignored. swrun's URL reaches it only through ``[swrun] url_env = APP_DATABASE_URL``.
"""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from swrun.demo.smartwaste import models

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = models.metadata


def _database_url() -> str:
    url = os.environ.get("APP_DATABASE_URL", "").strip()
    if not url:
        raise RuntimeError("APP_DATABASE_URL is not set")
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
