"""follow-through: visit logs matched to pairs, nightly per-household figures

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visit",
        sa.Column("visit_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("sheet", sa.String(length=255), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("cadre_key", sa.String(length=16), nullable=False),
        sa.Column("household_key", sa.String(length=16), nullable=False),
        sa.Column("pairing_id", sa.Integer(), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("visit_kind", sa.String(length=16), nullable=False),
        sa.Column("problems_found", sa.Integer(), server_default="0", nullable=False),
        sa.Column("problems_solved", sa.Integer(), server_default="0", nullable=False),
        sa.Column("help_kind", sa.String(length=16), nullable=True),
        sa.Column("help_value", sa.Float(), nullable=True),
        sa.Column("help_source", sa.String(length=128), nullable=True),
        sa.Column("help_source_kind", sa.String(length=16), nullable=True),
        sa.Column("opinions", sa.Text(), nullable=True),
        sa.Column("opinion_topic", sa.String(length=128), nullable=True),
        sa.Column("opinion_department", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("matched_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["intake_file.file_id"],
        ),
        sa.PrimaryKeyConstraint("visit_id"),
        sa.UniqueConstraint("file_id", "sheet", "row_number", name="uq_visit_row"),
    )
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_cadre_key"), ["cadre_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_visit_household_key"), ["household_key"], unique=False)

    op.create_table(
        "followup_household",
        sa.Column("household_key", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("town", sa.String(length=32), nullable=True),
        sa.Column("cadre_key", sa.String(length=16), nullable=False),
        sa.Column("paired_on", sa.Date(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("first_in_person_on", sa.Date(), nullable=True),
        sa.Column("last_contact_on", sa.Date(), nullable=True),
        sa.Column("days_since_contact", sa.Integer(), nullable=True),
        sa.Column("in_person_visits", sa.Integer(), nullable=False),
        sa.Column("phone_contacts", sa.Integer(), nullable=False),
        sa.Column("problems_found", sa.Integer(), nullable=False),
        sa.Column("problems_solved", sa.Integer(), nullable=False),
        sa.Column("help_value_year", sa.Float(), nullable=False),
        sa.Column("help_flag", sa.String(length=8), nullable=True),
        sa.Column("public_fund_entries", sa.Integer(), nullable=False),
        sa.Column("visited_in_person", sa.Integer(), nullable=False),
        sa.Column("overdue", sa.Integer(), nullable=False),
        sa.Column("carried_over", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("household_key"),
    )
    with op.batch_alter_table("followup_household", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_followup_household_cadre_key"), ["cadre_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("followup_household", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_followup_household_cadre_key"))
    op.drop_table("followup_household")
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_household_key"))
        batch_op.drop_index(batch_op.f("ix_visit_cadre_key"))
    op.drop_table("visit")
