"""The edition states without ``ready``: no code ever set it, and a draft is what it meant.

An edition is ``draft`` (built, may be rebuilt), ``sending``, ``sent`` or ``cancelled`` (see
``newsletter.edition_states``). A row that says ``ready`` becomes ``draft``; the CHECK constraint
of ``issues.status`` no longer accepts ``ready``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NAME = "ck_issues_issue_status"
NOW = "status IN ('draft', 'sending', 'sent', 'cancelled')"
BEFORE = "status IN ('draft', 'ready', 'sending', 'sent', 'cancelled')"


def _check(condition: str) -> None:
    with op.batch_alter_table("issues", schema=None, recreate="auto") as batch_op:
        batch_op.drop_constraint(op.f(NAME), type_="check")
        batch_op.create_check_constraint(op.f(NAME), condition)


def upgrade() -> None:
    op.execute("UPDATE issues SET status = 'draft' WHERE status = 'ready'")
    _check(NOW)


def downgrade() -> None:
    _check(BEFORE)
