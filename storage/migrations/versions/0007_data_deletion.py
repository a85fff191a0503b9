"""forget requests and retention: an audit table of deletions, and which versions learned forgotten samples

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'data_deletion',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('cause', sa.String(length=16), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('criteria', sa.JSON(), nullable=False),
        sa.Column('samples', sa.BigInteger(), nullable=False),
        sa.Column('heldout_samples', sa.BigInteger(), nullable=False),
        sa.Column('predictions', sa.BigInteger(), nullable=False),
        sa.Column('dead_letters', sa.BigInteger(), nullable=False),
        sa.Column('versions_affected', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('data_deletion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_deletion_cause'), ['cause'], unique=False)
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forgotten_samples', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_column('forgotten_samples')
    with op.batch_alter_table('data_deletion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_deletion_cause'))
    op.drop_table('data_deletion')
