"""A tracked link remembers its first click: a click counts once per lead and button, so
opening a link again and again does not add to the score.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.drop_column('clicked_at')
