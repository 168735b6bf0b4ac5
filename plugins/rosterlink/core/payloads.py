"""What the nightly DAG's tasks pass each other through XCom, and their small summaries.

Only file ids, names and counts: rows travel through the warehouse (``staged_row``), never
through XCom. The mapped tasks pass a file on as it grows: :class:`ScannedFile` from the scan,
then :class:`FileItem` with the read and validate stages' status and counts.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ScannedFile(TypedDict):
    """A file the scan found pending: one mapped ``read_and_validate_file`` task each."""

    file_id: int
    department: str
    file_name: str  # as a person may read it: ID numbers and phones masked (the ledger has the path)


class FileItem(ScannedFile):
    """A file after the read stage (``read`` or ``rejected``) and the validate stage (``validated``)."""

    status: NotRequired[str]  # read | rejected | validated
    reason_code: NotRequired[str]  # why a file was rejected whole
    rows_read: NotRequired[int]
    rows_rejected: NotRequired[int]


class NightStarted(TypedDict):
    run_id: str
    as_of: str  # YYYY-MM-DD


class LoadSummary(TypedDict):
    files_loaded: int
    rows_loaded: int


class FeedbackWritten(TypedDict):
    """The ``write_feedback`` task's result: the workbooks written tonight."""

    feedback: list[str]  # one feedback workbook per file a clerk dropped
    opinions: list[str]  # one opinions workbook per responsible department


class TownBatch(TypedDict):
    """One batch of tonight's towns (the plan in the town folder names them): its task writes the
    workbooks of those whose content changed."""

    batch: int  # from 1
    towns: int
    rows: int  # households, pairs and key cases its towns list


class TownBatchWritten(TypedDict):
    batch: int
    written: int


class PairingWorkbookWritten(TypedDict):
    """The pairing workbooks written tonight: the summary, and the folder of the town workbooks with
    how many of them were rewritten tonight out of how many there are."""

    pairing: str
    town_folder: str
    towns_written: int
    towns_total: int


class ChangeLogWritten(TypedDict):
    change_log: str
