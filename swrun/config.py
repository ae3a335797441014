"""The settings of one run: which project, which database, which environment, where files go."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SQLAlchemy (0.6 s to import) stays off the path to the runner's kernel start
    from sqlalchemy.engine import URL, Engine

    from . import database
    from .migrations import Project

URL_ENV = "SWRUN_DATABASE_URL"
ENVIRONMENTS = ("development", "test", "staging", "production")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def default_operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class RunContext:
    """Everything a checklist step needs; steps take one of these and nothing global.

    The URL given here (or found in ``$SWRUN_DATABASE_URL``) is the only place the
    password lives; everything printed or stored uses :attr:`redacted_url`.
    """

    project_path: str | None = None
    database_url: str | None = None
    environment: str = "development"
    backup_dir: Path = Path("backups")
    run_id: str = field(default_factory=new_run_id)
    operator: str = field(default_factory=default_operator)
    lock_wait_s: float = 30.0
    lock_timeout: str = "2s"  # per attempt; lock timeouts are retried (swrun/lock_retry.py)
    lock_retries: int = 10
    lock_retry_budget: str = "5min"
    statement_timeout: str = "0"  # per statement of the revisions; 0: no bound
    long_transaction_s: float = 300.0
    state_home: str | None = None

    @cached_property
    def project(self) -> "Project":
        from .migrations import Project  # Alembic stays off the runner's start-up path

        from .database import project_driver

        project = Project.load(self.project_path)
        # the driver of the URL as given (asyncpg, psycopg) is the project's env.py's; read without
        # starting the embedded server (whose URL names no driver)
        given = self.database_url if self.database_url is not None else os.environ.get(URL_ENV)
        project.driver = project_driver(given)
        return project

    @cached_property
    def given_url(self) -> str:
        """The URL as given (or the embedded server's, started if need be), not yet parsed."""
        given = self.database_url if self.database_url is not None else os.environ.get(URL_ENV)
        if given is not None:  # given but empty is an error, never a silent switch to the embedded server
            return given
        from .embedded import EmbeddedServer

        return EmbeddedServer(self.state_home).start().url()

    @cached_property
    def url(self) -> URL:
        from . import database

        return database.normalize_url(self.given_url)

    @property
    def uses_embedded(self) -> bool:
        return self.database_url is None and os.environ.get(URL_ENV) is None

    @property
    def redacted_url(self) -> str:
        from . import database

        return database.redact(self.url)

    @cached_property
    def engine(self) -> Engine:
        from . import database

        return database.make_engine(self.url)

    @property
    def identity(self) -> database.Identity:
        from . import database

        return database.identity(self.url)

    def scrub(self, text: str) -> str:
        from . import database

        return database.scrub(text, self.url)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
