"""credit_grants.refund_owed: units a refund could not take back yet (held by a running job); pending_refunds:
``charge.refunded`` events that arrived before their order was known

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_grants") as batch:
        batch.add_column(sa.Column("refund_owed", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "pending_refunds",
        sa.Column("payment_intent_id", sa.String(255), primary_key=True),
        sa.Column("charge_id", sa.String(255), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("amount_refunded", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("pending_refunds")
    with op.batch_alter_table("credit_grants") as batch:
        batch.drop_column("refund_owed")
