"""Ids never reused, a random link key per subscriber, and an append-only consent history.

SQLite reuses the highest rowid after a delete unless the table is AUTOINCREMENT, which needs a table
rebuild (batch mode); PostgreSQL sequences never go back. Existing subscribers get a random link key
and keep links without one working (``legacy_links``); their consent record becomes the first entry
of their history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("legacy_links", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    bind = op.get_bind()
    subscribers = sa.table(
        "subscribers",
        sa.column("id", BigId),
        sa.column("link_key", sa.String()),
        sa.column("legacy_links", sa.Boolean()),
    )
    ids = [row[0] for row in bind.execute(sa.select(subscribers.c.id))]
    if ids:
        bind.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == sa.bindparam("row_id"))
            .values(link_key=sa.bindparam("key"), legacy_links=sa.true()),
            [{"row_id": row_id, "key": secrets.token_urlsafe(12)} for row_id in ids],
        )
    with op.batch_alter_table(
        "subscribers",
        schema=None,
        recreate="always" if bind.dialect.name == "sqlite" else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.alter_column("link_key", existing_type=sa.String(length=32), nullable=False)
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(
            "deliveries",
            schema=None,
            recreate="always",
            table_kwargs={"sqlite_autoincrement": True},
        ):
            pass

    op.create_table(
        "consent_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("subscriber_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("wording", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_consent_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_events_subscriber_id"), ["subscriber_id"], unique=False
        )
    op.execute(
        "INSERT INTO consent_events (subscriber_id, kind, at, source, ip, user_agent, wording) "
        "SELECT id, 'signup', consent_at, consent_source, consent_ip, consent_user_agent, "
        "consent_wording FROM subscribers WHERE consent_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_subscriber_id"))
    op.drop_table("consent_events")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("legacy_links")
        batch_op.drop_column("link_key")
