"""re-sent files: rows already recorded are counted, not loaded again nor rejected

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00

- ``intake_file.rows_already``: data rows identical to a row an earlier file of the same
  department already loaded (already recorded, 已计入); a file balances as
  ``rows_read = rows_loaded + rows_already + rows_rejected``;
- ``source_record.row_hash``: SHA-256 of the row's roster and normalised fields (how a re-sent row
  is recognised), indexed with the department;
- ``recorded_row``: each such row, and the earlier row it repeats;
- ``source_record.resent``: the row replaces a different row at the same place (sheet, row) of an
  earlier version of the same file (a changed row, 已更新), rather than being new.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intake_file", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rows_already", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("source_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("resent", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index("ix_source_record_department_hash", ["department", "row_hash"], unique=False)
    op.create_table(
        "recorded_row",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("sheet", sa.String(length=255), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("earlier_file_id", sa.Integer(), nullable=False),
        sa.Column("earlier_sheet", sa.String(length=255), nullable=False),
        sa.Column("earlier_row_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["intake_file.file_id"]),
        sa.PrimaryKeyConstraint("file_id", "sheet", "row_number"),
    )


def downgrade() -> None:
    op.drop_table("recorded_row")
    with op.batch_alter_table("source_record", schema=None) as batch_op:
        batch_op.drop_index("ix_source_record_department_hash")
        batch_op.drop_column("resent")
        batch_op.drop_column("row_hash")
    with op.batch_alter_table("intake_file", schema=None) as batch_op:
        batch_op.drop_column("rows_already")
