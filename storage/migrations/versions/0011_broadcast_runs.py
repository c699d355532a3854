"""Each `leadbot broadcast` that queues messages is recorded with an id of its own, so its
progress can be shown and what is still queued of it cancelled.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('broadcast_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('broadcast', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('segment', sa.Text(), nullable=True),
    sa.Column('at', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queued', sa.Integer(), nullable=False),
    sa.Column('first_row', sa.BigInteger(), nullable=True),
    sa.Column('last_row', sa.BigInteger(), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_runs'))
    )


def downgrade() -> None:
    op.drop_table('broadcast_runs')
