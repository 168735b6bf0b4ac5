"""the status and pairing stages remember what they last settled on

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:00:00

- ``stage_build``: one row per stage (``status``, ``pairing``), written when the stage ran and
  changed nothing: the night, a digest of everything the stage reads (the warehouse's generation
  as the link, status and pairing stages moved it, the loaded rows, the events in force on the
  night, the entities' and pairs' counts, the code and settings) and the summary it reported. A
  later night whose digest is the same keeps the stage's result without computing it again.
  Empty at first: the first nights after this migration compute as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_build",
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("built_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("stage"),
    )


def downgrade() -> None:
    op.drop_table("stage_build")
