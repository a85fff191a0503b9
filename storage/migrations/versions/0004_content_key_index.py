"""index the content hash by its 16-character prefix; drop the unused external_id index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 08:30:00

Content dedupe now looks samples up by ``substr(content_hash, 1, 16)`` and compares the
full hash after (storage.models.content_key). The full-width index was four times
larger and the costliest b-tree to insert into; nothing queried ``external_id``.

Two things to know. Alembic cannot reflect expression indexes on SQLite, so a later
``batch_alter_table('sample')`` (which rebuilds the table) would silently drop this index:
recreate it after such a batch (tests/unit/storage/test_ingest_store.py checks the index
exists at head). On PostgreSQL the index is built without CONCURRENTLY, so writes to a
large ``sample`` table wait while it builds: stop ingesting daemons during the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _content_key() -> sa.ColumnElement[str]:
    # Spelled exactly as storage.models.content_key, which queries must match.
    return sa.func.substr(sa.column('content_hash'), sa.literal_column('1'), sa.literal_column('16'))


def upgrade() -> None:
    op.drop_index('ix_sample_content_hash', table_name='sample')
    op.drop_index('ix_sample_external_id', table_name='sample')
    op.create_index('ix_sample_content_key', 'sample', [_content_key()], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sample_content_key', table_name='sample')
    op.create_index('ix_sample_external_id', 'sample', ['external_id'], unique=False)
    op.create_index('ix_sample_content_hash', 'sample', ['content_hash'], unique=False)
