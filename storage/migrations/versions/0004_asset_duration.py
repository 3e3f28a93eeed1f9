"""assets: a video's duration in seconds; jobs: kinds up to 32 characters (remove_background, image_to_video)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("duration_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("kind", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("kind", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False)
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("duration_seconds")
