"""samples keyed by their text alone, so a re-sent text with a new label supersedes the old sample

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:50:00

Existing samples get their key in batches, so that supersede covers them too.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    op.add_column('sample', sa.Column('text_key', sa.String(length=16), nullable=True))
    sample = sa.table('sample', sa.column('id', sa.Integer()), sa.column('text', sa.Text()),
                      sa.column('text_key', sa.String(16)))
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(sa.select(sample.c.id, sample.c.text).where(sample.c.id > last)
                                  .order_by(sample.c.id).limit(_BATCH)).all()
        if not rows:
            break
        connection.execute(sa.update(sample).where(sample.c.id == sa.bindparam('sample_id'))
                           .values(text_key=sa.bindparam('key')),
                           [{'sample_id': i, 'key': hashlib.sha256(t.encode('utf-8')).hexdigest()[:16]}
                            for i, t in rows])
        last = rows[-1][0]
    op.create_index('ix_sample_text_key', 'sample', ['text_key'], unique=False,
                    sqlite_where=sa.text('text_key IS NOT NULL'), postgresql_where=sa.text('text_key IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_sample_text_key', table_name='sample')
    op.execute("ALTER TABLE sample DROP COLUMN text_key")
