"""The database: engine creation for SQLite and PostgreSQL, and the one transaction helper.

``with database.transaction() as session:`` commits on success and rolls back on error. On SQLite every
writing transaction starts with ``BEGIN IMMEDIATE``, so that several processes (web, scheduler,
workers) queue for the write lock instead of failing half-way; WAL mode lets readers go on meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session

from newsletter.errors import DatabaseError

SUPPORTED = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def parse_url(database_url: str) -> URL:
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise DatabaseError(
            f"cannot parse the database URL {database_url!r}",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/name",
        ) from None
    if url.get_backend_name() not in SUPPORTED:
        raise DatabaseError(
            f"unsupported database URL scheme {url.drivername!r} in NEWSLETTER_DATABASE_URL",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/name",
        )
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def redact(database_url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def create_database_engine(database_url: str, *, echo: bool = False) -> Engine:
    """An engine for a SQLite or PostgreSQL URL. Does not connect yet."""
    url = parse_url(database_url)
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url, echo=echo)
        engine = create_engine(url, echo=echo, pool_size=5, max_overflow=5)
    except NoSuchModuleError:
        raise DatabaseError(f"no driver for the database URL scheme {url.drivername!r}") from None
    _ping_when_idle(engine)
    return engine


#: A pooled connection unused for longer than this is checked with a round trip before it is used.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection before use only when it has sat idle.

    ``pool_pre_ping`` checks every connection at every checkout: a round trip for each transaction,
    which on a busy worker or page costs as much as a statement. A connection that was in use less
    than :data:`PING_AFTER_IDLE_SECONDS` ago is handed out as it is; one idle for longer (a server
    restart, a proxy's idle timeout, a failover) is pinged, and a dead one is replaced before the
    caller sees it. A connection that breaks while in use fails its statement as it would anyway,
    and SQLAlchemy then discards the whole pool's connections of before the failure.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                # The pool drops this connection and checks out another (a new one if need be).
                raise DisconnectionError(f"a pooled connection was dead: {exc}") from exc
            raise


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An engine and the transaction helper every service uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, database_url: str, *, echo: bool = False) -> Database:
        return cls(create_database_engine(database_url, echo=echo))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error.

        ``readonly`` starts a deferred transaction on SQLite, which does not wait for the write lock.
        """
        try:
            with self.engine.connect() as connection:
                if readonly:
                    connection = connection.execution_options(sqlite_begin="DEFERRED")
                with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                    yield session
        except (OperationalError, ProgrammingError) as exc:
            raise _explain(exc, self.engine.url) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _explain(exc: OperationalError | ProgrammingError, url: URL) -> DatabaseError:
    original = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    where = url.render_as_string(hide_password=True)
    lowered = original.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return DatabaseError(
            f"the database {where} is not set up: {original}",
            hint="run 'newsletter db upgrade' first",
        )
    if "connect" in lowered or "connection" in lowered or "unable to open" in lowered:
        return DatabaseError(
            f"cannot connect to the database {where}: {original}",
            hint="check NEWSLETTER_DATABASE_URL and that the database server is running",
        )
    return DatabaseError(f"database error on {where}: {original}")
