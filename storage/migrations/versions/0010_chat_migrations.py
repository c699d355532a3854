"""Managers' chats that moved to a new id (a Telegram group upgraded to a supergroup), so that
a restart with the old id in the settings still posts where the managers are.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_migrations',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('from_chat', sa.String(length=64), nullable=False),
    sa.Column('to_chat', sa.String(length=64), nullable=False),
    sa.Column('migrated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'from_chat', name=op.f('pk_chat_migrations'))
    )


def downgrade() -> None:
    op.drop_table('chat_migrations')
