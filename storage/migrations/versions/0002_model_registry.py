"""model registry: runs, versions, evaluations, decisions, aliases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 03:36:53.715399
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('error_reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('parent_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('candidate_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('train_examples', sa.Integer(), nullable=False),
    sa.Column('replay_examples', sa.Integer(), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_run_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_training_run_trigger'), ['trigger'], unique=False)

    op.create_table('model_version',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('parent', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('strategy', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('data_watermark', sa.BigInteger(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('buffer_members', sa.JSON(), nullable=False),
    sa.Column('buffer_state', sa.JSON(), nullable=False),
    sa.Column('artifact_path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('checksum', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('promotion_decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('candidate', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('production_before', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('promotion_decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotion_decision_candidate'), ['candidate'], unique=False)

    op.create_table('alias',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version'], ['model_version.name'], ),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('evaluation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('eval_set', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.ForeignKeyConstraint(['version'], ['model_version.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'version', 'eval_set', 'metric', 'label', name='uq_evaluation_cell')
    )
    with op.batch_alter_table('evaluation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evaluation_version'), ['version'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('evaluation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evaluation_version'))
        batch_op.drop_index(batch_op.f('ix_evaluation_run_id'))

    op.drop_table('evaluation')
    op.drop_table('alias')
    with op.batch_alter_table('promotion_decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotion_decision_candidate'))

    op.drop_table('promotion_decision')
    op.drop_table('model_version')
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_run_trigger'))
        batch_op.drop_index(batch_op.f('ix_training_run_status'))

    op.drop_table('training_run')
