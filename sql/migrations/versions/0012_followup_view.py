"""the follow-through figures no longer move every row to the night: the night's date is added by a view

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 12:00:00

- ``followup_household`` (the contract name, with the same columns) becomes a view over the table
  ``followup_figures``, which keeps what a household's row shows but the night's date: ``as_of``
  comes from the last build (``followup_build``) and ``days_since_contact`` is counted from
  ``last_contact_on`` to it. Until now a night moved every row to its date in one UPDATE (at a
  province's million households, most of a quiet night's follow-through stage); now a quiet night
  writes only the households whose figures changed, and the build's one row.
- The report views over ``followup_household`` are dropped here and recreated after the migrations
  (``warehouse.create_views``); the table's index is renamed with it, and on PostgreSQL the space
  left free on its pages for the UPDATE (``fillfactor`` 60, migration 0009) is given back to new rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

REPORTS = ("followup_by_town", "followup_by_cadre", "followup_by_unit")
SHOWN = (
    "town",
    "cadre_key",
    "paired_on",
    "deadline",
    "first_in_person_on",
    "last_contact_on",
    "in_person_visits",
    "phone_contacts",
    "problems_found",
    "problems_solved",
    "help_value_year",
    "help_flag",
    "public_fund_entries",
    "visited_in_person",
    "overdue",
    "carried_over",
)


def view_sql(dialect: str) -> str:
    """``followup_household``: each household's figures with the night's date and the days since
    its last contact on that date (SQLite counts days with ``julianday``, PostgreSQL subtracts)."""
    if dialect == "sqlite":
        days = "CAST(julianday(b.as_of) - julianday(f.last_contact_on) AS INTEGER)"
    else:
        days = "b.as_of - f.last_contact_on"
    columns = ", ".join(f"f.{c}" for c in SHOWN)
    return (
        "CREATE VIEW followup_household AS\n"
        f"SELECT f.household_key, b.as_of, {days} AS days_since_contact, {columns}\n"
        "FROM followup_figures AS f\n"
        "LEFT JOIN followup_build AS b ON b.name = 'followup_household'"
    )


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    for view in REPORTS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute("ALTER TABLE followup_household RENAME TO followup_figures")
    op.execute("DROP INDEX IF EXISTS ix_followup_household_cadre_key")
    op.execute("CREATE INDEX ix_followup_figures_cadre_key ON followup_figures (cadre_key)")
    op.execute("ALTER TABLE followup_figures DROP COLUMN as_of")
    op.execute("ALTER TABLE followup_figures DROP COLUMN days_since_contact")
    if dialect == "postgresql":
        op.execute("ALTER TABLE followup_figures RESET (fillfactor)")
    op.execute(view_sql(dialect))


def downgrade() -> None:
    """The table again, as migration 0006 made it, filled from the view (the rows of the last build)."""
    for view in REPORTS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.create_table(
        "followup_household_old",
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
    columns = (
        "household_key, as_of, town, cadre_key, paired_on, deadline, first_in_person_on, "
        "last_contact_on, days_since_contact, in_person_visits, phone_contacts, problems_found, "
        "problems_solved, help_value_year, help_flag, public_fund_entries, visited_in_person, "
        "overdue, carried_over"
    )
    op.execute(
        f"INSERT INTO followup_household_old ({columns}) "
        f"SELECT {columns} FROM followup_household WHERE as_of IS NOT NULL"
    )
    op.execute("DROP VIEW followup_household")
    op.execute("DROP INDEX IF EXISTS ix_followup_figures_cadre_key")
    op.execute("DROP TABLE followup_figures")
    op.execute("ALTER TABLE followup_household_old RENAME TO followup_household")
    op.execute("CREATE INDEX ix_followup_household_cadre_key ON followup_household (cadre_key)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE followup_household SET (fillfactor = 60)")
