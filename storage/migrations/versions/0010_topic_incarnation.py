"""consumer offsets remember which incarnation of a topic they were read from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:00:00

A topic deleted and created again (or a memory-only broker restarted empty) starts a new
log at offset 0: ``topic_id`` tells the two apart, and ``offset_base`` shifts the new
log's stored positions past the old one's so neither collides with the other.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('consumer_offset') as batch:
        batch.add_column(sa.Column('topic_id', sa.String(length=36), nullable=True))
        batch.add_column(sa.Column('offset_base', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('consumer_offset') as batch:
        batch.drop_column('offset_base')
        batch.drop_column('topic_id')
