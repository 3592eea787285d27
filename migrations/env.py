"""Alembic environment: runs migrations on the engine the application built (see newsletter.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

import newsletter.models  # noqa: F401 - registers every table on the metadata
from kernel import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A table rebuild (batch mode) drops and renames tables that others refer to: SQLite
            # must not enforce foreign keys meanwhile. The pragma works only outside a transaction.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(f"a migration broke a foreign key: {tuple(broken)}")
        finally:
            if sqlite:
                if connection.in_transaction():
                    connection.commit()
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run 'newsletter db upgrade'")
run_migrations()
