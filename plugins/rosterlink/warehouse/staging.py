"""The staging table (``staged_row``, with ``intake_sheet``): rows between reading and loading.

The read stage writes each recognised sheet's normalised rows here (:func:`write_sheet`), the
validate stage and the night's Data Docs read a sheet back as the :class:`SheetTable` it was
(:func:`read_sheets`) and mark its rows valid or rejected (:func:`mark_sheet`), the load stage
takes the valid rows (:func:`valid_rows`), and the night's last task clears the rows of finished
files (:func:`clear_finished`). Rows travel this way, never through XCom.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from rosterlink.core.findings import Finding
from rosterlink.core.spec import catalogue
from rosterlink.core.tables import SheetTable
from rosterlink.warehouse import bulk, schema
from rosterlink.warehouse.bulk import insert_rows, update_many
from rosterlink.warehouse.db import dumps, loads


@dataclass
class StagedSheet:
    """One staged sheet: ``table.frame`` holds the normalised rows as staged (``_row`` then the
    roster's fields, object dtype, in row order), ``findings`` the normaliser's findings for them."""

    file_id: int
    table: SheetTable
    findings: list[Finding]


@dataclass(frozen=True)
class StagedRow:
    """A valid staged row, as the load stage reads it."""

    sheet: str
    row_number: int
    roster: str
    payload: dict[str, Any]


def clear_file(conn: sa.Connection, file_id: int) -> None:
    """Remove what an earlier, interrupted attempt at this file left behind (staged rows, sheets,
    rejected rows, warnings and rows found already recorded)."""
    tables = (
        schema.staged_row,
        schema.rejected_row,
        schema.row_warning,
        schema.recorded_row,
        schema.intake_sheet,
    )
    for table in tables:
        conn.execute(table.delete().where(table.c.file_id == file_id))


def write_notes(conn: sa.Connection, file_id: int, notes: Sequence[str]) -> None:
    """The read stage's notes on a file (a skipped sheet ...), as sheets ``(说明1)``, ``(说明2)`` ..."""
    for number, note in enumerate(notes, start=1):
        conn.execute(
            schema.intake_sheet.insert().values(
                file_id=file_id, sheet=f"(说明{number})", roster=None, note=note
            )
        )


HEADER_MAX = 255
"""The most characters of a header kept (``rejected_row.header`` and ``row_warning.header``)."""


def shorten_header(text: str) -> str:
    """A header as written, cut to :data:`HEADER_MAX` characters (ending ``…``) when longer."""
    return text if len(text) <= HEADER_MAX else text[: HEADER_MAX - 1] + "…"


def write_sheet(
    conn: sa.Connection, file_id: int, table: SheetTable, frame: pd.DataFrame, findings: Iterable[Finding]
) -> int:
    """Stage a sheet: its ``intake_sheet`` entry and one ``staged_row`` per row of the normalised
    ``frame`` with the row's findings. Returns the number of rows."""
    by_row: dict[int, list[dict]] = {}
    for finding in findings:
        by_row.setdefault(finding.row_number, []).append(finding.as_dict())
    conn.execute(
        schema.intake_sheet.insert().values(
            file_id=file_id,
            sheet=table.sheet,
            roster=table.roster,
            header_row=table.header_row,
            # every later stage quotes a header from here: kept short enough for the warehouse
            headers=dumps({f: shorten_header(str(h)) for f, h in table.headers.items()}),
            rows_read=len(frame),
        )
    )
    rows, names, values = _payloads(frame)
    none = dumps([])  # (most rows have no finding)
    insert_rows(  # a tuple per row, not a dictionary
        conn,
        schema.staged_row,
        _STAGED_COLUMNS,
        (
            (
                file_id,
                table.sheet,
                row,
                table.roster,
                dumps(dict(zip(names, payload, strict=True))),
                dumps(found) if (found := by_row.get(row)) else none,
                "normalised",
            )
            for row, payload in zip(rows, values, strict=True)
        ),
    )
    return len(frame)


_STAGED_COLUMNS = ("file_id", "sheet", "row_number", "roster", "payload", "findings", "state")
"""The ``staged_row`` columns :func:`write_sheet` writes, in the order of its tuples."""


def _payloads(frame: pd.DataFrame) -> tuple[list[int], list[str], Iterable[tuple[Any, ...]]]:
    """The rows of a normalised frame for JSON, a column at a time: their numbers (``_row``), the
    other columns' names, and each row's values in that order (NaN/NA -> None)."""
    clean = frame.astype(object).where(pd.notna(frame), None)
    names = [str(k) for k in clean.columns if k != "_row"]
    rows = [int(r) for r in clean["_row"]]
    columns = [clean[k].tolist() for k in clean.columns if k != "_row"]
    return rows, names, zip(*columns, strict=True) if columns else [()] * len(rows)


def read_sheets(conn: sa.Connection, file_ids: Sequence[int] | None = None) -> list[StagedSheet]:
    """The staged sheets with a roster of ``file_ids`` (of every staged file if None), in file and
    sheet order, each rebuilt as the :class:`SheetTable` it was read as (with the normalised rows)."""
    s, st = schema.intake_sheet, schema.staged_row
    query = sa.select(s).where(s.c.roster.is_not(None)).order_by(s.c.file_id, s.c.sheet)
    if file_ids is not None:
        query = query.where(s.c.file_id.in_(sorted(set(file_ids)) or [-1]))
    out = []
    for sheet in conn.execute(query).all():
        # the driver's plain tuples: (row number, payload, findings)
        staged = bulk.driver_rows(
            conn,
            sa.select(st.c.row_number, st.c.payload, st.c.findings)
            .where(st.c.file_id == sheet.file_id, st.c.sheet == sheet.sheet)
            .order_by(st.c.row_number),
        )
        fields = catalogue().rosters[sheet.roster].fields
        # a row of values per staged row, in the frame's column order: the frame a list of
        # dictionaries would give (a field a payload lacks is NaN, as pandas fills it)
        rows = []
        for number, payload, _ in staged:
            values = loads(payload)
            rows.append((number, *(values.get(f, np.nan) for f in fields)))
        frame = pd.DataFrame(rows, columns=["_row", *fields]).astype(object)
        table = SheetTable(
            sheet=sheet.sheet,
            roster=sheet.roster,
            header_row=sheet.header_row,
            headers=json.loads(sheet.headers or "{}"),
            frame=frame,
        )
        findings = [  # (most rows have none: "[]" is not parsed)
            Finding(**f) for _, _, found in staged if found not in (None, "", "[]") for f in loads(found)
        ]
        out.append(StagedSheet(sheet.file_id, table, findings))
    return out


def mark_sheet(conn: sa.Connection, file_id: int, sheet: str, rejected_rows: Iterable[int]) -> None:
    """A validated sheet: every staged row ``valid``, but ``rejected_rows`` ``rejected``."""
    st = schema.staged_row
    conn.execute(st.update().where(st.c.file_id == file_id, st.c.sheet == sheet).values(state="valid"))
    bad = sorted(set(rejected_rows))
    if bad:
        conn.execute(
            st.update()
            .where(st.c.file_id == file_id, st.c.sheet == sheet, st.c.row_number.in_(bad))
            .values(state="rejected")
        )


def valid_rows(conn: sa.Connection, file_id: int) -> Iterator[StagedRow]:
    """A file's valid staged rows, in sheet and row order (each payload parsed as it is reached)."""
    return (StagedRow(s, n, r, loads(p)) for s, n, r, p in valid_payloads(conn, file_id))


def valid_payloads(conn: sa.Connection, file_id: int) -> list[tuple[str, int, str, str]]:
    """A file's valid staged rows as the driver reads them, ``(sheet, row_number, roster, payload)``
    with the payload's JSON text as staged, in sheet and row order: the load stage's one read of
    them (it parses each payload once, and fingerprints the text as it is)."""
    st = schema.staged_row
    return bulk.driver_rows(
        conn,
        sa.select(st.c.sheet, st.c.row_number, st.c.roster, st.c.payload)
        .where(st.c.file_id == file_id, st.c.state == "valid")
        .order_by(st.c.sheet, st.c.row_number),
    )


def minor_fields(roster: str) -> tuple[str, ...]:
    """The fields of ``roster`` that hold a child's data (``"minor": true`` in ``rosters.json``)."""
    cat = catalogue()
    return tuple(f for f in cat.rosters[roster].fields if cat.fields[f].minor)


def without_minors(
    roster: str, payload: dict[str, Any], minors: tuple[str, ...] | None = None
) -> dict[str, Any] | None:
    """``payload`` with a child's data (the roster's :func:`minor_fields`, or ``minors``) blanked;
    None when it holds none."""
    held = [f for f in (minor_fields(roster) if minors is None else minors) if payload.get(f) is not None]
    return {**payload, **dict.fromkeys(held)} if held else None


def forget_minors(
    conn: sa.Connection, file_id: int, valid: Sequence[tuple[str, int, dict[str, Any]]] | None = None
) -> int:
    """Blank a child's data (the ``minor`` fields) in every staged row of a file, valid or rejected:
    the load stage calls it in the file's transaction, so that no child's ID number stays in the
    staging table once the file is loaded, whatever happens to the rest of the night. Returns how
    many rows were rewritten.

    ``valid``: the caller has read the file's valid rows already (the load stage) and gives those
    that held a child's data, each ``(sheet, row_number, payload blanked)`` (:func:`without_minors`);
    only the file's other rows are read here."""
    st = schema.staged_row
    minors = {r: fields for r in catalogue().rosters if (fields := minor_fields(r))}
    query = sa.select(st.c.sheet, st.c.row_number, st.c.roster, st.c.payload).where(
        st.c.file_id == file_id, st.c.roster.in_(sorted(minors) or [""])
    )
    if valid is not None:
        query = query.where(st.c.state != "valid")
    changed = [(sheet, number, blanked) for sheet, number, blanked in valid or ()]
    for sheet, number, roster, payload in bulk.driver_rows(conn, query):
        blanked = without_minors(roster, loads(payload), minors[roster])
        if blanked is not None:
            changed.append((sheet, number, blanked))
    rows = [
        {"file_id": file_id, "sheet": sheet, "row_number": number, "payload": dumps(blanked)}
        for sheet, number, blanked in changed
    ]
    return update_many(conn, st, ["file_id", "sheet", "row_number"], rows)


def clear_finished(conn: sa.Connection) -> int:
    """Remove the staged rows of every file that is no longer pending; returns how many."""
    st, f = schema.staged_row, schema.intake_file
    done = sa.select(f.c.file_id).where(f.c.status != "pending")
    return conn.execute(st.delete().where(st.c.file_id.in_(done))).rowcount or 0
