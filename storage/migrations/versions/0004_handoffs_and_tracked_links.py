"""Handoffs to managers, their messages in the managers' chat, and tracked links.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handoffs',
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rule', sa.String(length=256), nullable=False),
    sa.Column('qualified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('manager_id', sa.String(length=64), nullable=True),
    sa.Column('manager_name', sa.String(length=128), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('amount', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_handoffs_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_handoffs'))
    )
    with op.batch_alter_table('handoffs', schema=None) as batch_op:
        batch_op.create_index('ix_handoffs_status_qualified', ['status', 'qualified_at'], unique=False)

    op.create_table('manager_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('message_ref', sa.String(length=64), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_manager_messages_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manager_messages')),
    sa.UniqueConstraint('channel', 'message_ref', name=op.f('uq_manager_messages_channel'))
    )
    with op.batch_alter_table('manager_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manager_messages_lead_id'), ['lead_id'], unique=False)

    op.create_table('tracked_links',
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_tracked_links_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_tracked_links')),
    sa.UniqueConstraint('lead_id', 'url', 'event', name=op.f('uq_tracked_links_lead_id'))
    )


def downgrade() -> None:
    op.drop_table('tracked_links')
    with op.batch_alter_table('manager_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manager_messages_lead_id'))

    op.drop_table('manager_messages')
    with op.batch_alter_table('handoffs', schema=None) as batch_op:
        batch_op.drop_index('ix_handoffs_status_qualified')

    op.drop_table('handoffs')
