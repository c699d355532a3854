"""The due-row index ends with the id, the claim's tie-break: PostgreSQL walked every row of
one due moment and sorted them (a broadcast's 20,000 rows share it: 10 ms a claim against
0.2 ms); SQLite already had the rowid at the end of every index.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_status_due_id', 'outbox', ['status', 'due_at', 'id'])
    op.drop_index('ix_outbox_status_due', table_name='outbox')


def downgrade() -> None:
    op.create_index('ix_outbox_status_due', 'outbox', ['status', 'due_at'])
    op.drop_index('ix_outbox_status_due_id', table_name='outbox')
