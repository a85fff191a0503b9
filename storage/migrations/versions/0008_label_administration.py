"""label administration: aliases for renamed and merged names, retirement, and an audit of changes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTERs, not a batch: on SQLite a batch rebuilds the table, and dropping ``label``
    # (which every sample references) fails the foreign-key check.
    op.add_column('label', sa.Column('alias_of', sa.Integer(), nullable=True))
    op.add_column('label', sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'label_change',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('sources', sa.JSON(), nullable=False),
        sa.Column('target', sa.String(length=1000), nullable=True),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('samples', sa.BigInteger(), nullable=False),
        sa.Column('version', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('label_change')
    op.execute("ALTER TABLE label DROP COLUMN retired_at")  # SQLite 3.35+ and PostgreSQL
    op.execute("ALTER TABLE label DROP COLUMN alias_of")
