"""a row each time a night's stage changes what the exports show

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00

- ``content_change``: one row per stage of a night that changed entities, statuses, pairs or the
  follow-through figures (run, stage, how many changed, when). Its largest ``change_id`` is the
  warehouse's generation: a night that finds it where the town workbooks were last checked keeps
  them without reading the pairs again. Empty at first: the first night after this migration
  writes every town workbook whose content changed, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_change",
        sa.Column("change_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("change_id"),
    )


def downgrade() -> None:
    op.drop_table("content_change")
