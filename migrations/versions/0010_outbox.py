"""The outbox of subscription mails: written with the subscriber change, delivered from the table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_mails",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("envelope_sender", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "sending",
                "sent",
                "failed",
                name="outbox_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_mails")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("outbox_mails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_mails_status_not_before", ["status", "not_before"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_outbox_mails_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("outbox_mails")
