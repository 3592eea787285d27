"""Counts per SMTP relay (sent, deferred, failed, skipped), for several relays with failover.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

COUNT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_counts",
        sa.Column("relay", sa.String(length=300), nullable=False),
        sa.Column("sent", COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("deferred", COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("failed", COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("relay", name=op.f("pk_relay_counts")),
    )


def downgrade() -> None:
    op.drop_table("relay_counts")
