"""promotion decisions remember whether their event reached the broker (an outbox)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:55:00

Decisions already recorded are taken as delivered: their events went out (or were given
up on) under the code before this one, and must not be sent again after the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('promotion_decision', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_sent_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE promotion_decision SET event_sent_at = created_at WHERE outcome <> 'rejected'")


def downgrade() -> None:
    with op.batch_alter_table('promotion_decision', schema=None) as batch_op:
        batch_op.drop_column('event_sent_at')
