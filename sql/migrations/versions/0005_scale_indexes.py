"""indexes for the night's lookups at province scale

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00

Every lookup a night does by a column that no primary key, unique constraint or earlier index
already leads with (the primary keys of ``staged_row``/``source_row`` and the unique
``source_record(file_id, sheet, row_number)`` already serve the per-file lookups):

- ``source_record(roster, entity_key, event_date, record_id)``: the status refresh's "latest event
  per entity" (sql/status/*.sql) and the pin sheets (roster = 'pin');
- ``source_record(entity_kind, entity_key)``: the link stage's rows of a kind, pending (key null);
- ``staged_row(file_id, state)``: load's valid rows of a file;
- ``pairing(target_kind, target_key) WHERE valid_to IS NULL``: the current pairs (partial, small:
  history grows, the current set does not), ``pairing(valid_from)``/``(valid_to)``: the night's
  made/ended pairs in the exports and the change log;
- ``link_review(status)``, ``intake_file(run_id)``, ``intake_file(status)``: pending reviews, the
  night's files.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CURRENT = sa.text("valid_to IS NULL")

INDEXES = (
    (
        "ix_source_record_roster_event",
        "source_record",
        ["roster", "entity_key", "event_date", "record_id"],
        {},
    ),
    ("ix_source_record_kind_key", "source_record", ["entity_kind", "entity_key"], {}),
    ("ix_staged_row_file_state", "staged_row", ["file_id", "state"], {}),
    (
        "ix_pairing_current_target",
        "pairing",
        ["target_kind", "target_key"],
        {"postgresql_where": _CURRENT, "sqlite_where": _CURRENT},
    ),
    ("ix_pairing_valid_from", "pairing", ["valid_from"], {}),
    ("ix_pairing_valid_to", "pairing", ["valid_to"], {}),
    ("ix_link_review_status", "link_review", ["status"], {}),
    ("ix_intake_file_run_id", "intake_file", ["run_id"], {}),
    ("ix_intake_file_status", "intake_file", ["status"], {}),
)


def upgrade() -> None:
    for name, table, columns, kw in INDEXES:
        op.create_index(name, table, columns, unique=False, **kw)


def downgrade() -> None:
    for name, table, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
