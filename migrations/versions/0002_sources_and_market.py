"""Source states (conditional GET), market totals and the Fear & Greed index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_globals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vs_currency", sa.String(length=10), nullable=False),
        sa.Column("total_market_cap", sa.Float(), nullable=True),
        sa.Column("total_volume", sa.Float(), nullable=True),
        sa.Column("market_cap_change_24h", sa.Float(), nullable=True),
        sa.Column("btc_dominance", sa.Float(), nullable=True),
        sa.Column("eth_dominance", sa.Float(), nullable=True),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_globals")),
    )
    with op.batch_alter_table("market_globals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_market_globals_fetched_at"), ["fetched_at"], unique=False
        )

    op.create_table(
        "sentiment_readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sentiment_readings")),
        sa.UniqueConstraint("measured_at", name=op.f("uq_sentiment_readings_measured_at")),
    )
    op.create_table(
        "source_states",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_source_states")),
    )


def downgrade() -> None:
    op.drop_table("source_states")
    op.drop_table("sentiment_readings")
    with op.batch_alter_table("market_globals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_market_globals_fetched_at"))

    op.drop_table("market_globals")
