"""jobs: the provider that made the outputs, why earlier providers were passed over, and what the job cost us
(micro-dollars: exact on every database)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("provider", sa.String(32), nullable=True))
        batch.add_column(sa.Column("provider_switches", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("cost_microusd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cost_microusd")
        batch.drop_column("provider_switches")
        batch.drop_column("provider")
