"""Promo redemptions (with the lookup form of every code and lockout of guessers) and the
referral programme.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('redeem_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redeem_failures'))
    )
    with op.batch_alter_table('redeem_failures', schema=None) as batch_op:
        batch_op.create_index('ix_redeem_failures_source_failed_at', ['source', 'failed_at'], unique=False)

    op.create_table('referrals',
    sa.Column('friend_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('referrer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('void_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('void_reason', sa.String(length=128), nullable=True),
    sa.Column('qualified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reward_code', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['friend_id'], ['leads.id'], name=op.f('fk_referrals_friend_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['referrer_id'], ['leads.id'], name=op.f('fk_referrals_referrer_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('friend_id', name=op.f('pk_referrals'))
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referrals_referrer_id'), ['referrer_id'], unique=False)

    op.create_table('promo_redemptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('promo', sa.String(length=64), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('amount', sa.String(length=32), nullable=True),
    sa.Column('by', sa.String(length=128), nullable=False),
    sa.Column('request_key', sa.String(length=96), nullable=True),
    sa.ForeignKeyConstraint(['code_id'], ['promo_codes.id'], name=op.f('fk_promo_redemptions_code_id_promo_codes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_promo_redemptions_lead_id_leads'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promo_redemptions')),
    sa.UniqueConstraint('request_key', name=op.f('uq_promo_redemptions_request_key'))
    )
    with op.batch_alter_table('promo_redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promo_redemptions_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_promo_redemptions_promo_lead', ['promo', 'lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_promo_redemptions_redeemed_at'), ['redeemed_at'], unique=False)

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referral_code', sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_leads_referral_code'), ['referral_code'])

    with op.batch_alter_table('promo_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lookup', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True))
    # Codes issued before this release: their lookup form (see PromoCode.lookup).
    op.execute(
        "UPDATE promo_codes SET lookup = "
        "upper(replace(replace(replace(code, '-', ''), '_', ''), ' ', ''))"
    )
    with op.batch_alter_table('promo_codes', schema=None) as batch_op:
        batch_op.alter_column('lookup', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index('ix_promo_codes_expires_at', ['expires_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_promo_codes_lookup'), ['lookup'])



def downgrade() -> None:
    with op.batch_alter_table('promo_codes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_promo_codes_lookup'), type_='unique')
        batch_op.drop_index('ix_promo_codes_expires_at')
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('lookup')

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_leads_referral_code'), type_='unique')
        batch_op.drop_column('referral_code')

    with op.batch_alter_table('promo_redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promo_redemptions_redeemed_at'))
        batch_op.drop_index('ix_promo_redemptions_promo_lead')
        batch_op.drop_index(batch_op.f('ix_promo_redemptions_lead_id'))

    op.drop_table('promo_redemptions')
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referrals_referrer_id'))

    op.drop_table('referrals')
    with op.batch_alter_table('redeem_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_redeem_failures_source_failed_at')

    op.drop_table('redeem_failures')
