"""env.py reading its URL from $APP_DATABASE_URL (its own settings), never sqlalchemy.url."""
import os
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
url = os.environ["APP_DATABASE_URL"]
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
