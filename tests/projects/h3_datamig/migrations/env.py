"""Alembic environment of the Smart Waste AI demo.

Offline (``--sql``): renders SQL from the URL alone, no connection.
Online: uses the Connection a caller put in ``config.attributes["connection"]``
(Alembic cookbook, "Sharing a Connection across one or more programmatic
migration commands"); otherwise builds a NullPool engine from
``sqlalchemy.url``, which alembic.ini leaves empty: swrun supplies it.

Transaction mode (e.g. ``transaction_per_migration``) is not set here; a caller
can pass extra ``context.configure()`` keywords as a dict in
``config.attributes["configure_kwargs"]``.

This file prints nothing.
"""

import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Connection

try:
    from swrun.demo.smartwaste import models
except ModuleNotFoundError:  # swrun not installed: use the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from swrun.demo.smartwaste import models

config = context.config

# Set up loggers from alembic.ini (all at WARN) unless the caller manages
# logging itself; never disable loggers the caller already has.
if config.config_file_name is not None and config.attributes.get(
    "configure_logger", True
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = models.metadata

# keywords shared by offline and online mode; the caller's extras win
_CONFIGURE_KWARGS = {"target_metadata": target_metadata, "compare_type": True}
_CONFIGURE_KWARGS.update(config.attributes.get("configure_kwargs") or {})


def _database_url() -> str:
    url = (config.get_main_option("sqlalchemy.url") or "").strip()
    if not url:
        raise RuntimeError(
            "sqlalchemy.url is empty in %s: set it (e.g. "
            "Config.set_main_option('sqlalchemy.url', ...)) or pass a "
            "Connection in config.attributes['connection']"
            % (config.config_file_name or "the Alembic config")
        )
    return url


def run_migrations_offline() -> None:
    """Emit SQL to the script output instead of running it."""
    context.configure(
        url=_database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_CONFIGURE_KWARGS,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **_CONFIGURE_KWARGS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a shared Connection, or on a fresh NullPool engine."""
    shared = config.attributes.get("connection")
    if shared is not None:
        if not isinstance(shared, Connection):
            raise TypeError(
                "config.attributes['connection'] must be a sqlalchemy "
                "Connection, got %r" % (type(shared).__name__,)
            )
        _run_on(shared)
        return

    section = dict(config.get_section(config.config_ini_section, {}))
    section["sqlalchemy.url"] = _database_url()
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
