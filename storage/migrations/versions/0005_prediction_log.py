"""the prediction log, and samples flagged as feedback on a logged prediction

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:20:00

``sample.feedback`` is added with ``op.add_column`` (no batch rebuild): a rebuilt
``sample`` table on SQLite would lose the expression index of 0004.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('abstained', sa.Boolean(), nullable=False),
    sa.Column('text_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('true_label', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_prediction_request_id'), 'prediction', ['request_id'], unique=False)
    op.create_index(op.f('ix_prediction_created_at'), 'prediction', ['created_at'], unique=False)
    op.create_index('ix_prediction_version_joined', 'prediction', ['version', 'true_label'], unique=False)
    op.add_column('sample', sa.Column('feedback', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('sample', schema=None) as batch_op:
        batch_op.drop_column('feedback')
    if op.get_bind().dialect.name == 'sqlite':  # the batch rebuilt the table without 0004's expression index
        content_key = sa.func.substr(sa.column('content_hash'), sa.literal_column('1'), sa.literal_column('16'))
        op.create_index('ix_sample_content_key', 'sample', [content_key], unique=False)
    op.drop_index('ix_prediction_version_joined', table_name='prediction')
    op.drop_index(op.f('ix_prediction_created_at'), table_name='prediction')
    op.drop_index(op.f('ix_prediction_request_id'), table_name='prediction')
    op.drop_table('prediction')
