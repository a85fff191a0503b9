"""ingest schema: labels, samples, offsets, dead letters

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 02:52:51.190922
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.create_table('consumer_offset',
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('high_watermark', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('topic', 'partition')
    )
    op.create_table('dead_letter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('raw_size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('topic', 'partition', 'offset', name='uq_dead_letter_position')
    )
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_reason'), ['reason'], unique=False)

    op.create_table('label',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('sample_count', sa.BigInteger(), nullable=False),
    sa.Column('heldout_count', sa.BigInteger(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('label', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_label_name'), ['name'], unique=True)

    op.create_table('sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('held_out', sa.Boolean(), nullable=False),
    sa.Column('event_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['label.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('topic', 'partition', 'offset', name='uq_sample_position')
    )
    with op.batch_alter_table('sample', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sample_content_hash'), ['content_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_sample_external_id'), ['external_id'], unique=False)
        batch_op.create_index('ix_sample_label_split', ['label_id', 'held_out'], unique=False)

    # ### end Alembic commands ###

def downgrade() -> None:
    with op.batch_alter_table('sample', schema=None) as batch_op:
        batch_op.drop_index('ix_sample_label_split')
        batch_op.drop_index(batch_op.f('ix_sample_external_id'))
        batch_op.drop_index(batch_op.f('ix_sample_content_hash'))

    op.drop_table('sample')
    with op.batch_alter_table('label', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_label_name'))

    op.drop_table('label')
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letter_reason'))

    op.drop_table('dead_letter')
    op.drop_table('consumer_offset')
