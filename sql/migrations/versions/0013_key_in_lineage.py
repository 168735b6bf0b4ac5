"""a loaded row's entity key is kept once, in its lineage (``source_row``)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 06:30:00

Until now the link stage wrote each row's entity key twice: into the row's lineage
(``source_row``, one narrow row per loaded row, written as it is linked) and onto the loaded row
itself (``source_record.entity_key``, by an UPDATE of every row it linked). On PostgreSQL that
UPDATE writes a new version of every wide loaded row and an entry in each of the table's indexes
(the key is indexed, so it is never a heap-only update): most of the link stage's time on the
server at province size, for a copy of what the lineage already holds. The key now lives in
``source_row`` only; the readers join it on the row's place (``file_id, sheet, row_number``, the
lineage's primary key and the loaded rows' unique constraint). A loaded row without a lineage row
is a row the link stage has not reached yet.

- Before the column goes, any keyed row without lineage gets one (``link_method`` null, as for
  rows linked before 0002), and a lineage row whose key differs from its loaded row's takes the
  loaded row's (the key the status stage read).
- The indexes that led with, or held, the key are replaced: ``source_record(entity_kind,
  record_id)`` (a kind's rows in load order, the link stage's read) and ``source_record(roster,
  event_date, record_id)`` (the status refresh's events).
- The report view over ``source_record`` is dropped first and recreated after the migrations
  (``warehouse.create_views``), as in 0012.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _place(row: str, record: str) -> str:
    """The lineage row ``row`` of the loaded row ``record``: the same place in the same file."""
    return (
        f"{row}.file_id = {record}.file_id AND {row}.sheet = {record}.sheet "
        f"AND {row}.row_number = {record}.row_number"
    )


_OLD_INDEXES = ("ix_source_record_entity_key", "ix_source_record_roster_event", "ix_source_record_kind_key")


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS household_evidence")
    op.execute(
        "INSERT INTO source_row (file_id, sheet, row_number, entity_kind, entity_key) "
        "SELECT r.file_id, r.sheet, r.row_number, r.entity_kind, r.entity_key FROM source_record AS r "
        "WHERE r.entity_key IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM source_row AS s WHERE {_place('s', 'r')})"
    )
    op.execute(
        "UPDATE source_row SET entity_key = (SELECT r.entity_key FROM source_record AS r WHERE "
        f"{_place('source_row', 'r')}) WHERE EXISTS (SELECT 1 FROM source_record AS r WHERE "
        f"{_place('source_row', 'r')} AND r.entity_key IS NOT NULL "
        "AND r.entity_key <> source_row.entity_key)"
    )
    for name in _OLD_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("ALTER TABLE source_record DROP COLUMN entity_key")
    op.create_index("ix_source_record_kind", "source_record", ["entity_kind", "record_id"])
    op.create_index("ix_source_record_roster_event", "source_record", ["roster", "event_date", "record_id"])


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS household_evidence")
    op.drop_index("ix_source_record_roster_event", table_name="source_record")
    op.drop_index("ix_source_record_kind", table_name="source_record")
    op.execute("ALTER TABLE source_record ADD COLUMN entity_key VARCHAR(16)")
    op.execute(
        "UPDATE source_record SET entity_key = (SELECT s.entity_key FROM source_row AS s WHERE "
        f"{_place('s', 'source_record')})"
    )
    op.create_index("ix_source_record_entity_key", "source_record", ["entity_key"])
    op.create_index(
        "ix_source_record_roster_event", "source_record", ["roster", "entity_key", "event_date", "record_id"]
    )
    op.create_index("ix_source_record_kind_key", "source_record", ["entity_kind", "entity_key"])
