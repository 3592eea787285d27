"""Sponsor placements scheduled by date range, the placement each edition carries, and click counts.

A placement is the sponsored slot of every edition in its date range; ``issues`` records the one it
carried. ``sponsor_clicks`` holds only a number per placement and edition date: nothing about readers.

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

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sponsor_placements",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("text", sa.String(length=400), nullable=False),
        sa.Column("image_url", sa.String(length=2000), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sponsor_placements")),
    )
    op.create_index("ix_sponsor_placements_dates", "sponsor_placements", ["start_date", "end_date"])
    op.create_table(
        "sponsor_clicks",
        sa.Column("placement_id", BigId, nullable=False),
        sa.Column("edition_date", sa.Date(), nullable=False),
        sa.Column("clicks", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["placement_id"],
            ["sponsor_placements.id"],
            name=op.f("fk_sponsor_clicks_placement_id_sponsor_placements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("placement_id", "edition_date", name=op.f("pk_sponsor_clicks")),
    )
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sponsor_placement_id", BigId, nullable=True))
        batch_op.create_index(
            batch_op.f("ix_issues_sponsor_placement_id"), ["sponsor_placement_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_issues_sponsor_placement_id_sponsor_placements"),
            "sponsor_placements",
            ["sponsor_placement_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_issues_sponsor_placement_id_sponsor_placements"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_issues_sponsor_placement_id"))
        batch_op.drop_column("sponsor_placement_id")
    op.drop_table("sponsor_clicks")
    op.drop_index("ix_sponsor_placements_dates", table_name="sponsor_placements")
    op.drop_table("sponsor_placements")
