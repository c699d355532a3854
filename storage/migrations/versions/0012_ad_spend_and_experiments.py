"""Ad spend per source (for CPL, CPA and ROMI in `leadbot report`), the decisions of A/B
tests that finished themselves, and an index on leads by arrival for the reports.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ad_spend',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('first_day', sa.Date(), nullable=False),
    sa.Column('last_day', sa.Date(), nullable=False),
    sa.Column('amount', sa.String(length=32), nullable=False),
    sa.Column('note', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_key', sa.String(length=96), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_spend')),
    sa.UniqueConstraint('request_key', name=op.f('uq_ad_spend_request_key'))
    )
    op.create_index('ix_ad_spend_first_day', 'ad_spend', ['first_day', 'last_day'], unique=False)
    op.create_table('experiment_decisions',
    sa.Column('sequence', sa.String(length=64), nullable=False),
    sa.Column('step', sa.String(length=64), nullable=False),
    sa.Column('winner', sa.String(length=32), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('why', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('sequence', 'step', name=op.f('pk_experiment_decisions'))
    )
    op.create_index(op.f('ix_leads_created_at'), 'leads', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_leads_created_at'), table_name='leads')
    op.drop_table('experiment_decisions')
    op.drop_index('ix_ad_spend_first_day', table_name='ad_spend')
    op.drop_table('ad_spend')
