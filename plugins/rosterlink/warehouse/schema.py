"""The warehouse schema as SQLAlchemy Core tables: the current shape, used by the code.

Changes reach databases only through Alembic migrations in ``sql/migrations/versions/`` (generated
from this module with ``alembic revision --autogenerate`` and then frozen). The tables marked
*contract* are what reports, BI tools and checks rely on; their columns are only ever added to.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# --- intake ledger (contract: intake_file) -------------------------------------------------------
intake_file = sa.Table(
    "intake_file",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("department", sa.String(32), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),  # relative to the intake root, as dropped
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    # pending -> loaded | rejected ; duplicate at scan time. 'pending' only while a night is running.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_loaded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_warned", sa.Integer, nullable=False, server_default="0"),
    # rows identical to a row an earlier file of the department loaded (已计入): neither loaded
    # again nor rejected; rows_read = rows_loaded + rows_already + rows_rejected
    sa.Column("rows_already", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("message", sa.Text),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("intake_file.file_id")),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("processed_at", sa.DateTime),
    sa.Column("run_id", sa.String(250)),
    sa.Column("feedback_path", sa.String(1024)),
    sa.UniqueConstraint("file_name", "sha256", name="uq_intake_file_name_sha"),
)

intake_sheet = sa.Table(
    "intake_sheet",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), primary_key=True),
    sa.Column("sheet", sa.String(255), primary_key=True),
    sa.Column("roster", sa.String(32)),
    sa.Column("header_row", sa.Integer),
    sa.Column("headers", sa.Text),  # JSON: canonical field -> header as written
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("note", sa.Text),
)

# --- staging between a file's read, its validation and the load -----------------------------------
staged_row = sa.Table(
    "staged_row",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), primary_key=True),
    sa.Column("sheet", sa.String(255), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("roster", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON of the normalised fields
    sa.Column("findings", sa.Text),  # JSON list of the normaliser's findings for the row
    sa.Column("state", sa.String(16), nullable=False),  # normalised | valid | rejected
)


def _finding_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), nullable=False, index=True),
        sa.Column("sheet", sa.String(255), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("header", sa.String(255)),  # the header the clerk used
        sa.Column("value", sa.Text),  # masked where personal
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        # set when ``rosterlink purge`` blanked value and message (retention); the row itself stays
        sa.Column("purged_at", sa.DateTime),
    )


# contract: rejected_row(file_id, sheet, row_number, field, reason_code, message)
rejected_row = _finding_table("rejected_row")
row_warning = _finding_table("row_warning")

# --- loaded rows, one per valid source row ------------------------------------------------------
source_record = sa.Table(
    "source_record",
    metadata,
    sa.Column("record_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), nullable=False),
    sa.Column("sheet", sa.String(255), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("department", sa.String(32), nullable=False),
    sa.Column("roster", sa.String(32), nullable=False),
    sa.Column("entity_kind", sa.String(16), nullable=False),  # household | cadre | case | pin
    sa.Column("category", sa.String(16)),  # hardship | orphan | old_member for household rows
    sa.Column("person_name", sa.String(64)),
    sa.Column("id_number", sa.String(18), index=True),
    sa.Column("case_number", sa.String(64), index=True),
    sa.Column("town", sa.String(32)),
    sa.Column("village", sa.String(128)),
    sa.Column("phone", sa.String(20)),
    sa.Column("event", sa.String(16)),  # add | exit | join | leave | open | closed
    sa.Column("event_date", sa.Date),
    sa.Column("attrs", sa.Text, nullable=False),  # JSON of the remaining normalised fields
    sa.Column("loaded_at", sa.DateTime, nullable=False),
    sa.Column("row_hash", sa.String(64)),  # roster + normalised fields: how a re-sent row is known
    # replaces a different row at the same place of an earlier version of the file (a changed row)
    sa.Column("resent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("file_id", "sheet", "row_number", name="uq_source_record_row"),
)

# a valid row identical to a row an earlier file of the department loaded (a re-sent file): already
# recorded (已计入), not loaded again; it names the earlier row it repeats (lineage of every data row)
recorded_row = sa.Table(
    "recorded_row",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), primary_key=True),
    sa.Column("sheet", sa.String(255), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("earlier_file_id", sa.Integer, nullable=False),
    sa.Column("earlier_sheet", sa.String(255), nullable=False),
    sa.Column("earlier_row_number", sa.Integer, nullable=False),
)

# contract: source_row(file_id, sheet, row_number, entity_kind, entity_key)
# Each loaded row's lineage, and the only place its entity key is kept (migration 0013): a row of
# source_record without one is a row the link stage has not reached yet (see ``lineage_of``).
source_row = sa.Table(
    "source_row",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), primary_key=True),
    sa.Column("sheet", sa.String(255), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("entity_kind", sa.String(16), nullable=False),
    sa.Column("entity_key", sa.String(16), nullable=False, index=True),
    # how the row found its entity: id | model | new | review_split (null for rows linked before 0002)
    sa.Column("link_method", sa.String(16)),
    sa.Column("match_probability", sa.Float),  # the model's probability when link_method = model
)


def lineage_of(record: sa.FromClause, row: sa.FromClause) -> sa.ColumnElement[bool]:
    """The join of a loaded row (``record``) and its lineage (``row``), which holds the row's entity
    key: the same place in the same file."""
    return sa.and_(
        row.c.file_id == record.c.file_id,
        row.c.sheet == record.c.sheet,
        row.c.row_number == record.c.row_number,
    )


def not_linked(record: sa.FromClause = source_record) -> sa.ColumnElement[bool]:
    """A loaded row the link stage has not reached yet: one without a lineage row."""
    return ~sa.exists().where(lineage_of(record, source_row))


# --- entities (contract) ---------------------------------------------------------------------------
household = sa.Table(
    "household",
    metadata,
    sa.Column("household_key", sa.String(16), primary_key=True),
    sa.Column("head_name", sa.String(64), nullable=False),
    sa.Column("head_id_number", sa.String(18), index=True),
    sa.Column("town", sa.String(32)),
    sa.Column("village", sa.String(128)),
    sa.Column("phone", sa.String(20)),
    sa.Column("status", sa.String(16), nullable=False),  # active | exited
    sa.Column("first_seen_file", sa.Integer),
    sa.Column("status_since", sa.Date),
)

household_category = sa.Table(
    "household_category",
    metadata,
    sa.Column("household_key", sa.String(16), sa.ForeignKey("household.household_key"), primary_key=True),
    sa.Column("category", sa.String(16), primary_key=True),  # hardship | orphan | old_member
    sa.Column("status", sa.String(16), nullable=False),  # active | exited
    sa.Column("status_since", sa.Date),
)

cadre = sa.Table(
    "cadre",
    metadata,
    sa.Column("cadre_key", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("id_number", sa.String(18), index=True),
    sa.Column("sex", sa.String(1)),
    sa.Column("rank", sa.String(16)),  # county | section | ordinary
    sa.Column("rank_title", sa.String(32)),  # as written: 正科级, 副县级 ...
    sa.Column("unit", sa.String(128)),
    sa.Column("post", sa.String(128)),
    sa.Column("town", sa.String(32)),  # linked town
    sa.Column("phone", sa.String(20)),
    sa.Column("status", sa.String(16), nullable=False),  # active | departed
    sa.Column("status_since", sa.Date),
)

petition_case = sa.Table(
    "petition_case",
    metadata,
    sa.Column("case_key", sa.String(16), primary_key=True),
    sa.Column("case_number", sa.String(64), nullable=False, unique=True),
    sa.Column("petitioner_name", sa.String(64)),
    sa.Column("petitioner_id_number", sa.String(18)),
    sa.Column("town", sa.String(32)),
    sa.Column("topic", sa.String(128)),
    sa.Column("summary", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),  # open | closed
    sa.Column("status_since", sa.Date),
    sa.Column("responsible_unit", sa.String(128)),
    sa.Column("registered_on", sa.Date),
    sa.Column("work_team", sa.Text),
    sa.Column("resolution_plan", sa.Text),
    sa.Column("stabilisation_measures", sa.Text),
)

# contract: pairing(cadre_key, target_kind, target_key, valid_from, valid_to, end_reason)
pairing = sa.Table(
    "pairing",
    metadata,
    sa.Column("pairing_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cadre_key", sa.String(16), nullable=False, index=True),
    sa.Column("target_kind", sa.String(16), nullable=False),  # household | case
    sa.Column("target_key", sa.String(16), nullable=False, index=True),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date),  # null while current
    sa.Column("end_reason", sa.String(32)),
    sa.Column("made_reason", sa.String(32), nullable=False),  # new_target | cadre_left | pinned | ...
    sa.Column("cost", sa.Integer),
    sa.Column("cost_detail", sa.Text),  # JSON of the cost components
    sa.Column("run_id", sa.String(250)),
)

night_run = sa.Table(
    "night_run",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16), nullable=False),  # running | success | failed | refused
    sa.Column("summary", sa.Text),  # JSON figures of the night
)

# one row each time a night's stage changed what the exports show (entities, statuses, pairs, the
# follow-through figures): the largest change_id is the warehouse's generation. The town workbooks
# keep the generation they were last checked against; a night that finds it unchanged keeps them
# without reading a row (rosterlink.export.town_books). Rows are only ever added.
content_change = sa.Table(
    "content_change",
    metadata,
    sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250)),  # null: a stage run outside a night (tests, benchmarks)
    sa.Column("stage", sa.String(32), nullable=False),  # load | link | status | pairing | follow_through
    sa.Column("changes", sa.Integer, nullable=False),  # rows (or decisions, pairs, households) changed
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

# What the status and pairing stages last settled on (one row per stage, migration 0011): written
# when the stage ran and changed nothing, with a digest of everything it reads and the summary it
# reported; a later night with the same digest keeps the result without computing it again
# (rosterlink.warehouse.builds). No row, or another digest: the stage computes as before.
stage_build = sa.Table(
    "stage_build",
    metadata,
    sa.Column("stage", sa.String(32), primary_key=True),  # status | pairing | link_sizes
    sa.Column("as_of", sa.Date, nullable=False),  # the night it was computed for
    sa.Column("run_id", sa.String(250)),
    sa.Column("token", sa.String(64), nullable=False),  # builds.inputs_token
    sa.Column("summary", sa.Text, nullable=False),  # the stage's summary then, JSON
    sa.Column("built_at", sa.DateTime, nullable=False),
)

# one row per lock name: who runs the night, and when it last showed it was alive
night_lock = sa.Table(
    "night_lock",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("holder", sa.String(255), nullable=False),  # host:pid of the process that last refreshed it
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)


# --- linkage: review queue, merges, models ----------------------------------------------------------
# A candidate pair a person must judge. reason: model_uncertain (probability between the review and
# link thresholds) | cluster_bridge (a link that would merge two clusters that already hold several
# rows, or two holders of different ID numbers) | id_name_conflict (one ID number, two names) |
# name_village_id_conflict (one name and village, two ID numbers). display_l/_r hold both records'
# fields as a clerk may see them (masked); evidence the per-field levels and match weights (JSON).
link_review = sa.Table(
    "link_review",
    metadata,
    sa.Column("review_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entity_kind", sa.String(16), nullable=False),  # household | cadre
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("record_id_l", sa.Integer, nullable=False, index=True),  # the record already resolved
    sa.Column("record_id_r", sa.Integer, nullable=False, index=True),  # the newer record
    sa.Column("entity_key_l", sa.String(16)),  # keys when the pair was queued
    sa.Column("entity_key_r", sa.String(16)),
    sa.Column("display_l", sa.Text, nullable=False),
    sa.Column("display_r", sa.Text, nullable=False),
    sa.Column("match_weight", sa.Float),
    sa.Column("match_probability", sa.Float),
    sa.Column("evidence", sa.Text, nullable=False),
    # a rule's conflict (one ID under two names, one name and village under two IDs): a digest of
    # what makes it the same conflict on another night (migration 0008), indexed: never queued twice
    sa.Column("signature", sa.String(32), index=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | decided
    sa.Column("decision", sa.String(16)),  # same | different
    sa.Column("decided_by", sa.String(128)),
    sa.Column("decided_at", sa.DateTime),
    sa.Column("note", sa.Text),
    sa.Column("applied_at", sa.DateTime),  # when a night's link stage applied the decision
    sa.Column("outcome", sa.Text),  # what applying it did (merged H.. into H.., split into H..)
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("entity_kind", "reason", "record_id_l", "record_id_r", name="uq_link_review_pair"),
)

# Two households found to be one: the retired key lives on as a pointer to the surviving (older) key.
household_merge = sa.Table(
    "household_merge",
    metadata,
    sa.Column("merge_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("retired_key", sa.String(16), nullable=False, index=True),
    sa.Column("surviving_key", sa.String(16), nullable=False, index=True),
    sa.Column("merged_at", sa.DateTime, nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # model | reviewer
    sa.Column("review_id", sa.Integer),
    sa.Column("match_probability", sa.Float),
    sa.Column("evidence", sa.Text),  # JSON: the pair of records that tied them, per-field evidence
)

# The linkage model's parameters as trained on a night (or the configured prior), for audit and reuse.
link_model = sa.Table(
    "link_model",
    metadata,
    sa.Column("model_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entity_kind", sa.String(16), nullable=False),
    sa.Column("trained_at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # em | prior
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("id_less_records", sa.Integer, nullable=False),
    sa.Column("entities", sa.Integer, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),  # JSON: m/u per comparison level, prior
    sa.Column("seconds", sa.Float),
)

# --- indexes for the night's lookups at scale (migration 0005) ----------------------------------------
sa.Index(
    "ix_source_record_roster_event",
    source_record.c.roster,
    source_record.c.event_date,
    source_record.c.record_id,
)
sa.Index("ix_source_record_kind", source_record.c.entity_kind, source_record.c.record_id)  # migration 0013
sa.Index("ix_source_record_department_hash", source_record.c.department, source_record.c.row_hash)
sa.Index("ix_staged_row_file_state", staged_row.c.file_id, staged_row.c.state)
sa.Index(
    "ix_pairing_current_target",
    pairing.c.target_kind,
    pairing.c.target_key,
    postgresql_where=pairing.c.valid_to.is_(None),
    sqlite_where=pairing.c.valid_to.is_(None),
)
sa.Index("ix_pairing_valid_from", pairing.c.valid_from)
sa.Index("ix_pairing_valid_to", pairing.c.valid_to)
sa.Index("ix_link_review_status", link_review.c.status)
sa.Index("ix_intake_file_run_id", intake_file.c.run_id)
sa.Index("ix_intake_file_status", intake_file.c.status)


# --- follow-through of the pairs (走访帮扶): visits and the nightly per-household figures -----------
# One row per visit log row that matched a pair (rosterlink.followup.match); the source row stays in
# source_record. The household's key follows merges; the cadre is the one who made the visit.
visit = sa.Table(
    "visit",
    metadata,
    sa.Column("visit_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.Integer, sa.ForeignKey("intake_file.file_id"), nullable=False),
    sa.Column("sheet", sa.String(255), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("record_id", sa.Integer, nullable=False),
    sa.Column("cadre_key", sa.String(16), nullable=False, index=True),
    sa.Column("household_key", sa.String(16), nullable=False, index=True),
    sa.Column("pairing_id", sa.Integer, nullable=False),
    sa.Column("visit_date", sa.Date, nullable=False),
    sa.Column("visit_kind", sa.String(16), nullable=False),  # in_person | phone
    sa.Column("problems_found", sa.Integer, nullable=False, server_default="0"),
    sa.Column("problems_solved", sa.Integer, nullable=False, server_default="0"),
    sa.Column("help_kind", sa.String(16)),  # in_kind | money
    sa.Column("help_value", sa.Float),  # yuan
    sa.Column("help_source", sa.String(128)),  # as written
    sa.Column("help_source_kind", sa.String(16)),  # own | public | other (null: no help)
    sa.Column("opinions", sa.Text),
    sa.Column("opinion_topic", sa.String(128)),
    sa.Column("opinion_department", sa.String(64)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("matched_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("file_id", "sheet", "row_number", name="uq_visit_row"),
)


def _figure_columns() -> list[sa.Column]:
    """What a household's follow-through row shows (fresh columns for each table that has them)."""
    return [
        sa.Column("town", sa.String(32)),
        sa.Column("cadre_key", sa.String(16), nullable=False, index=True),  # the current cadre
        sa.Column("paired_on", sa.Date, nullable=False),  # the household's first pair began
        sa.Column("deadline", sa.Date, nullable=False),  # first visit in person due by
        sa.Column("first_in_person_on", sa.Date),
        sa.Column("last_contact_on", sa.Date),
        sa.Column("in_person_visits", sa.Integer, nullable=False),
        sa.Column("phone_contacts", sa.Integer, nullable=False),
        sa.Column("problems_found", sa.Integer, nullable=False),
        sa.Column("problems_solved", sa.Integer, nullable=False),
        sa.Column("help_value_year", sa.Float, nullable=False),  # the night's calendar year
        sa.Column("help_flag", sa.String(8)),  # above | below the band (null: inside, or no help yet)
        sa.Column("public_fund_entries", sa.Integer, nullable=False),
        sa.Column("visited_in_person", sa.Integer, nullable=False),  # 0 | 1
        # 0 | 1: not visited in person and past the deadline
        sa.Column("overdue", sa.Integer, nullable=False),
        sa.Column("carried_over", sa.Integer, nullable=False),  # 0 | 1: visits by an earlier cadre count here
    ]


# Brought up to date every night: one row per household with a pair current on the night (the visit
# history of the household, whoever its cadre was), against the first-visit deadline and the help
# band: what the row shows but the night's date. Only the households whose row can have changed are
# computed again (followup_build); the other rows are not touched (migration 0012). Read through the
# view followup_household, which adds the night's date.
followup_figures = sa.Table(
    "followup_figures",
    metadata,
    sa.Column("household_key", sa.String(16), primary_key=True),
    *_figure_columns(),
)

views = sa.MetaData()
"""The views the package reads through SQLAlchemy (made by the migrations, not by ``metadata``)."""

# The contract's follow-through table, a view (migration 0012): followup_figures with the night's date
# (as_of, from followup_build) and the days since the household's last contact on that date.
followup_household = sa.Table(
    "followup_household",
    views,
    sa.Column("household_key", sa.String(16), primary_key=True),
    sa.Column("as_of", sa.Date),
    sa.Column("days_since_contact", sa.Integer),  # null: never contacted
    *_figure_columns(),
)

# What followup_household was last built from (one row, migration 0009): the night, the code and
# settings, and the marks of the pairs, visits and merges then, so the next night computes again
# only the households whose row can have changed (rosterlink.followup.figures.refresh_followup).
# Without this row (or when anything here does not fit tonight) the next night rebuilds in full.
followup_build = sa.Table(
    "followup_build",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # followup_household
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("built_at", sa.DateTime, nullable=False),
    sa.Column("code_version", sa.Integer, nullable=False),
    sa.Column("config_digest", sa.String(64), nullable=False),  # the deadline rule and the help band
    sa.Column("full", sa.Integer, nullable=False),  # 0 | 1: the last build was a full rebuild
    sa.Column("households", sa.Integer, nullable=False),
    sa.Column("pairings", sa.Integer, nullable=False),  # household pairs, ended or not
    sa.Column("open_pairings", sa.Integer, nullable=False),  # household pairs without valid_to
    sa.Column("last_pairing_id", sa.Integer, nullable=False),
    sa.Column("visits", sa.Integer, nullable=False),
    sa.Column("last_visit_id", sa.Integer, nullable=False),
    sa.Column("last_merge_id", sa.Integer, nullable=False),
)
sa.Index("ix_visit_visit_date", visit.c.visit_date)
