"""Delivery counts kept by triggers, and an index on deliveries.sent_at, so that a metrics scrape
reads a few rows whatever the size of the ledger.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

# PostgreSQL: statement-level triggers with transition tables, one aggregated upsert per statement.
# The shard is the backend: two transactions never touch the same row (no lock waits, no deadlocks).
POSTGRESQL = [
    """
    CREATE FUNCTION delivery_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_counts (issue_id, status, shard, count)
          SELECT issue_id, status, pg_backend_pid(), count(*) FROM new_rows
          GROUP BY issue_id, status
        ON CONFLICT (issue_id, status, shard)
          DO UPDATE SET count = delivery_counts.count + excluded.count;
      ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO delivery_counts (issue_id, status, shard, count)
          SELECT issue_id, status, pg_backend_pid(), -count(*) FROM old_rows
          GROUP BY issue_id, status
        ON CONFLICT (issue_id, status, shard)
          DO UPDATE SET count = delivery_counts.count + excluded.count;
      ELSE
        INSERT INTO delivery_counts (issue_id, status, shard, count)
          SELECT issue_id, status, pg_backend_pid(), sum(change) FROM (
            SELECT issue_id, status, 1 AS change FROM new_rows
            UNION ALL
            SELECT issue_id, status, -1 AS change FROM old_rows
          ) AS changes
          GROUP BY issue_id, status
          HAVING sum(change) <> 0
        ON CONFLICT (issue_id, status, shard)
          DO UPDATE SET count = delivery_counts.count + excluded.count;
      END IF;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply()
    """,
    """
    CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply()
    """,
    """
    CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply()
    """,
]

_SQLITE_ADD = """
  INSERT INTO delivery_counts (issue_id, status, shard, count) VALUES ({row}.issue_id, {row}.status, 0, {change})
  ON CONFLICT (issue_id, status, shard) DO UPDATE SET count = count + {change};
"""

# SQLite: row-level triggers (one writer at a time, so one shard).
SQLITE = [
    "CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries BEGIN"
    + _SQLITE_ADD.format(row="NEW", change="1")
    + "END",
    "CREATE TRIGGER deliveries_count_update AFTER UPDATE OF status, issue_id ON deliveries"
    " WHEN OLD.status IS NOT NEW.status OR OLD.issue_id IS NOT NEW.issue_id BEGIN"
    + _SQLITE_ADD.format(row="OLD", change="-1")
    + _SQLITE_ADD.format(row="NEW", change="1")
    + "END",
    "CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries BEGIN"
    + _SQLITE_ADD.format(row="OLD", change="-1")
    + "END",
]


def upgrade() -> None:
    op.create_table(
        "delivery_counts",
        sa.Column("issue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "status", "shard", name=op.f("pk_delivery_counts")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_sent_at", ["sent_at"], unique=False)
    # Lock the ledger while counting it, so that no write falls between the count and the triggers.
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO delivery_counts (issue_id, status, shard, count) "
        "SELECT issue_id, status, 0, count(*) FROM deliveries GROUP BY issue_id, status"
    )
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    for trigger in (
        "deliveries_count_insert",
        "deliveries_count_update",
        "deliveries_count_delete",
    ):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON deliveries")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS delivery_counts_apply()")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_sent_at")
    op.drop_table("delivery_counts")
