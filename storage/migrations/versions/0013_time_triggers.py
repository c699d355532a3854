"""Time: chains that run again (the run's number and occasion), the leads' dates (birthdays,
renewals) for the yearly scan, identities by when they were last seen for the inactivity
scan, and bookings of `slots:` calendars.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sequence_runs') as batch:
        batch.add_column(sa.Column('run_no', sa.Integer(), server_default='1', nullable=False))
        batch.add_column(sa.Column('occasion', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_identities_last_seen_at'), 'identities', ['last_seen_at'], unique=False)
    op.create_table('lead_dates',
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=97), nullable=False),
    sa.Column('month', sa.Integer(), nullable=False),
    sa.Column('day', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_dates_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', 'name', name=op.f('pk_lead_dates'))
    )
    op.create_index('ix_lead_dates_name_month_day', 'lead_dates', ['name', 'month', 'day'], unique=False)
    op.create_table('bookings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('calendar', sa.String(length=32), nullable=False),
    sa.Column('resource', sa.String(length=32), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('place', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('question', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_bookings_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings')),
    sa.UniqueConstraint('calendar', 'resource', 'starts_at', 'place', name=op.f('uq_bookings_calendar'))
    )
    op.create_index('ix_bookings_starts_at', 'bookings', ['starts_at'], unique=False)
    op.create_index(op.f('ix_bookings_lead_id'), 'bookings', ['lead_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_bookings_lead_id'), table_name='bookings')
    op.drop_index('ix_bookings_starts_at', table_name='bookings')
    op.drop_table('bookings')
    op.drop_index('ix_lead_dates_name_month_day', table_name='lead_dates')
    op.drop_table('lead_dates')
    op.drop_index(op.f('ix_identities_last_seen_at'), table_name='identities')
    with op.batch_alter_table('sequence_runs') as batch:
        batch.drop_column('occasion')
        batch.drop_column('run_no')
