"""Alembic environment: runs migrations on the engine the application built (see newsletter.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

import newsletter.models  # noqa: F401 - registers every table on the metadata
from subscribers.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run 'newsletter db upgrade'")
run_migrations()
