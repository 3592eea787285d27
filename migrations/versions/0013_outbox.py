"""The outbox of subscription mails (written with the subscriber change, delivered from the
table), and subscriber counts kept by triggers so that the admin's counts read a few rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


# As delivery_counts (0008): statement-level triggers with transition tables on PostgreSQL, the
# backend as the shard; row-level triggers on SQLite.
POSTGRESQL = [
    """
    CREATE FUNCTION subscriber_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO subscriber_counts (status, paused, shard, count)
          SELECT status, paused, pg_backend_pid(), count(*) FROM new_rows
          GROUP BY status, paused
        ON CONFLICT (status, paused, shard)
          DO UPDATE SET count = subscriber_counts.count + excluded.count;
      ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO subscriber_counts (status, paused, shard, count)
          SELECT status, paused, pg_backend_pid(), -count(*) FROM old_rows
          GROUP BY status, paused
        ON CONFLICT (status, paused, shard)
          DO UPDATE SET count = subscriber_counts.count + excluded.count;
      ELSE
        INSERT INTO subscriber_counts (status, paused, shard, count)
          SELECT status, paused, pg_backend_pid(), sum(change) FROM (
            SELECT status, paused, 1 AS change FROM new_rows
            UNION ALL
            SELECT status, paused, -1 AS change FROM old_rows
          ) AS changes
          GROUP BY status, paused
          HAVING sum(change) <> 0
        ON CONFLICT (status, paused, shard)
          DO UPDATE SET count = subscriber_counts.count + excluded.count;
      END IF;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER subscribers_count_insert AFTER INSERT ON subscribers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply()
    """,
    """
    CREATE TRIGGER subscribers_count_update AFTER UPDATE ON subscribers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply()
    """,
    """
    CREATE TRIGGER subscribers_count_delete AFTER DELETE ON subscribers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply()
    """,
]

_SQLITE_ADD = """
  INSERT INTO subscriber_counts (status, paused, shard, count)
    VALUES ({row}.status, {row}.paused, 0, {change})
  ON CONFLICT (status, paused, shard) DO UPDATE SET count = count + {change};
"""

SQLITE = [
    "CREATE TRIGGER subscribers_count_insert AFTER INSERT ON subscribers BEGIN"
    + _SQLITE_ADD.format(row="NEW", change="1")
    + "END",
    "CREATE TRIGGER subscribers_count_update AFTER UPDATE OF status, paused ON subscribers"
    " WHEN OLD.status IS NOT NEW.status OR OLD.paused IS NOT NEW.paused BEGIN"
    + _SQLITE_ADD.format(row="OLD", change="-1")
    + _SQLITE_ADD.format(row="NEW", change="1")
    + "END",
    "CREATE TRIGGER subscribers_count_delete AFTER DELETE ON subscribers BEGIN"
    + _SQLITE_ADD.format(row="OLD", change="-1")
    + "END",
]
TRIGGERS = ("subscribers_count_insert", "subscribers_count_update", "subscribers_count_delete")


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
    op.create_table(
        "subscriber_counts",
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("status", "paused", "shard", name=op.f("pk_subscriber_counts")),
    )
    # Lock the list while counting it, so that no write falls between the count and the triggers.
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("LOCK TABLE subscribers IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO subscriber_counts (status, paused, shard, count) "
        "SELECT status, paused, 0, count(*) FROM subscribers GROUP BY status, paused"
    )
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON subscribers" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS subscriber_counts_apply()")
    op.drop_table("subscriber_counts")
    op.drop_table("outbox_mails")
