"""What the link stage writes to the warehouse, in one transaction: each row's lineage
(``source_row``, which holds the row's entity key: migration 0013), reviewers' decisions marked
applied, tonight's review queue, household merges, the entity tables (``household``, ``household_category``,
``cadre``, ``petition_case``, rebuilt from their rows, latest value wins), and the rows that
describe an entity nobody listed moved to ``rejected_row``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.spec import catalogue
from rosterlink.link.records import Kind, Record
from rosterlink.link.review import record_applied
from rosterlink.link.state import Night
from rosterlink.warehouse import IN_LIST, batched, insert_many, insert_rows, now, schema

WRITE_KEYS = 10_000  # entities rebuilt at a time (what is built for the write is held for these only)
LINEAGE_COLUMNS = (
    "file_id",
    "sheet",
    "row_number",
    "entity_kind",
    "entity_key",
    "link_method",
    "match_probability",
)
"""The ``source_row`` columns the stage writes for each row it links."""
_UNKNOWN_REASON = {"household": "household_unknown", "cadre": "cadre_unknown", "case": "case_unknown"}


def write(conn: sa.Connection, night: Night) -> None:
    """Everything tonight decided (see the module's docstring)."""
    s = schema.source_row
    file_names = dict(
        conn.execute(sa.select(schema.intake_file.c.file_id, schema.intake_file.c.file_name)).all()
    )
    # reviewers' decisions applied
    record_applied(conn, night.applied)
    for kind in night.kinds.values():
        recs, moved = kind.recs, kind.moved
        insert_rows(  # a tuple per row (a first night writes every row's lineage, its key with it)
            conn,
            s,
            LINEAGE_COLUMNS,
            (
                (rec.file_id, rec.sheet, rec.row_number, kind.kind, moved.get(rid, key), method, p)
                for rid, (key, method, p) in sorted(kind.assigned.items())
                for rec in (recs[rid],)
            ),
        )
        moved_old = [
            {
                "_f": kind.recs[rid].file_id,
                "_s": kind.recs[rid].sheet,
                "_n": kind.recs[rid].row_number,
                "_key": key,
            }
            for rid, key in kind.moved.items()
            if not kind.recs[rid].pending and rid not in kind.split_rows
        ]
        if moved_old:
            conn.execute(
                s.update()
                .where(
                    s.c.file_id == sa.bindparam("_f"),
                    s.c.sheet == sa.bindparam("_s"),
                    s.c.row_number == sa.bindparam("_n"),
                )
                .values(entity_key=sa.bindparam("_key")),
                moved_old,
            )
        split = [
            {
                "_f": kind.recs[rid].file_id,
                "_s": kind.recs[rid].sheet,
                "_n": kind.recs[rid].row_number,
                "_key": kind.moved[rid],
            }
            for rid in sorted(kind.split_rows)
        ]
        if split:
            conn.execute(
                s.update()
                .where(
                    s.c.file_id == sa.bindparam("_f"),
                    s.c.sheet == sa.bindparam("_s"),
                    s.c.row_number == sa.bindparam("_n"),
                )
                .values(entity_key=sa.bindparam("_key"), link_method="review_split", match_probability=None),
                split,
            )
        reject_orphans(conn, kind.orphaned)
        if kind.merges:
            insert_many(conn, schema.household_merge, kind.merges)
    # tonight's reviews, each row (with both records as shown to people) made as it is written
    insert_many(conn, schema.link_review, night.reviews.rows(night.kinds, file_names))
    write_households(conn, night.kinds["household"])
    write_cadres(conn, night.kinds["cadre"])
    # cases
    insert_rows(
        conn,
        s,
        LINEAGE_COLUMNS,
        (
            (rec.file_id, rec.sheet, rec.row_number, "case", night.cases.assigned[rec.record_id], "id", None)
            for rec in night.cases.rows
            if rec.record_id in night.cases.assigned
        ),
    )
    reject_orphans(conn, night.cases.orphaned)
    upsert_cases(conn, set(night.cases.assigned.values()))


# --- entity tables ------------------------------------------------------------------------------
def _given(value: object) -> bool:
    """A value written in a row: neither missing nor empty."""
    return value is not None and value != ""


def _latest(values: list) -> object:
    """The most recent non-empty value (records are in load order)."""
    for value in reversed(values):
        if _given(value):
            return value
    return None


def _in_order(kind: Kind, key: str) -> list[Record]:
    """The rows of ``key``, in load order."""
    members = kind.members.get(key, ())
    if len(members) == 1:  # (most entities on a first night)
        return [kind.recs[members[0]]]
    return sorted((kind.recs[m] for m in members), key=lambda x: x.record_id)


def household_values(recs: list[Record]) -> dict[str, object]:
    """A household's columns from its rows (in load order): the most recent non-empty value of
    each (:func:`_latest`), the head's name as written next to an ID number first; one pass, from
    the latest row back."""
    head = name = id_number = town = village = phone = None
    for x in reversed(recs):
        if _given(x.name):
            if name is None:
                name = x.name
            if head is None and x.id_number:
                # the name as written next to an ID number is the authoritative one
                head = x.name
        if id_number is None and _given(written := x.id_number or x.raw_id):
            id_number = written
        if town is None and _given(x.town):
            town = x.town
        if village is None and _given(x.village):
            village = x.village
        if phone is None and _given(x.phone):
            phone = x.phone
    return {
        "head_name": head or name,
        "head_id_number": id_number,
        "town": town,
        "village": village,
        "phone": phone,
        "first_seen_file": recs[0].file_id,
    }


def write_households(conn: sa.Connection, kind: Kind) -> None:
    """Rebuild the households tonight touched from their rows; drop the retired ones."""
    h, hc = schema.household, schema.household_category
    if kind.retired:
        retired = sorted(kind.retired)
        for chunk in batched(retired, IN_LIST):
            conn.execute(hc.delete().where(hc.c.household_key.in_(chunk)))
            conn.execute(h.delete().where(h.c.household_key.in_(chunk)))
    touched = sorted(kind.touched - kind.retired)
    # only the households tonight touched are read back (a quiet or small night reads a few rows,
    # not the whole table), all of them before anything is written (on PostgreSQL a lookup after
    # tonight's first rows are in would be planned on the statistics of the table without them)
    existing = {}
    categories: dict[str, set[str]] = defaultdict(set)
    for chunk in batched(touched, IN_LIST):
        for row in conn.execute(
            sa.select(
                h.c.household_key,
                h.c.head_name,
                h.c.head_id_number,
                h.c.town,
                h.c.village,
                h.c.phone,
                h.c.first_seen_file,
            ).where(h.c.household_key.in_(chunk))
        ):
            existing[row.household_key] = row
        for k2, category in conn.execute(
            sa.select(hc.c.household_key, hc.c.category).where(hc.c.household_key.in_(chunk))
        ):
            categories[k2].add(category)
    # then rebuilt WRITE_KEYS at a time: what is built for the write (a first night touches every
    # household) is held for these only
    for chunk in batched(touched, WRITE_KEYS):
        _write_households(conn, kind, chunk, existing, categories)


def _write_households(
    conn: sa.Connection,
    kind: Kind,
    touched: list[str],
    existing: dict[str, sa.Row],
    categories: dict[str, set[str]],
) -> None:
    h, hc = schema.household, schema.household_category
    inserts, updates, cat_insert, cat_delete = [], [], [], []
    for key in touched:
        recs = _in_order(kind, key)
        if not recs:
            continue
        values = household_values(recs)
        old = existing.get(key)
        if old is None:
            inserts.append(
                {"household_key": key, **values, "head_name": values["head_name"] or "", "status": "active"}
            )
        else:
            change = {k: v for k, v in values.items() if v is not None and getattr(old, k) != v}
            if change:
                updates.append((key, change))
        wanted = {x.category for x in recs if x.category}
        for category in sorted(wanted - categories.get(key, set())):
            cat_insert.append({"household_key": key, "category": category, "status": "active"})
        for category in sorted(categories.get(key, set()) - wanted):
            cat_delete.append((key, category))
    insert_many(conn, h, inserts)
    _bulk_update(conn, h, "household_key", updates)
    for key, category in cat_delete:
        conn.execute(hc.delete().where(hc.c.household_key == key, hc.c.category == category))
    insert_many(conn, hc, cat_insert)


def write_cadres(conn: sa.Connection, kind: Kind) -> None:
    """Rebuild the cadres tonight touched from their rows."""
    c = schema.cadre
    touched = sorted(kind.touched - kind.retired)
    existing = {  # all read before anything is written (see write_households)
        row.cadre_key: row
        for chunk in batched(touched, IN_LIST)
        for row in conn.execute(sa.select(c).where(c.c.cadre_key.in_(chunk)))
    }
    parsed: dict[str, dict] = {}  # a roster's few thousand distinct attrs texts, each parsed once
    for chunk in batched(touched, WRITE_KEYS):
        _write_cadres(conn, kind, chunk, existing, parsed)


_CADRE_ATTRS = (
    ("town", "linked_town"),
    ("sex", "sex"),
    ("rank", "rank"),
    ("rank_title", "rank_title"),
    ("unit", "unit"),
    ("post", "post"),
)
"""The cadre's columns taken from its rows' ``attrs``, and the field each is read from."""


def cadre_values(recs: list[Record], parsed: dict[str, dict]) -> dict[str, object]:
    """A cadre's columns from its rows (in load order): the most recent non-empty value of each
    (:func:`_latest`); one pass, from the latest row back, a row's ``attrs`` read only while a
    column taken from them is still missing. ``parsed``: the attrs already parsed, by their text
    (filled here; the values are only read)."""
    name = id_number = phone = None
    found: dict[str, object] = {}
    for x in reversed(recs):
        if name is None and _given(x.name):
            name = x.name
        if id_number is None and _given(written := x.id_number or x.raw_id):
            id_number = written
        if phone is None and _given(x.phone):
            phone = x.phone
        if len(found) < len(_CADRE_ATTRS):
            text = x.attrs or "{}"
            attrs = parsed.get(text)
            if attrs is None:
                attrs = parsed[text] = json.loads(text)
            for column, source in _CADRE_ATTRS:
                if column not in found and _given(value := attrs.get(source)):
                    found[column] = value
    return {
        "name": name,
        "id_number": id_number,
        "phone": phone,
        **{column: found.get(column) for column, _ in _CADRE_ATTRS},
    }


def _write_cadres(
    conn: sa.Connection,
    kind: Kind,
    touched: list[str],
    existing: dict[str, sa.Row],
    parsed: dict[str, dict],
) -> None:
    c = schema.cadre
    inserts, updates = [], []
    for key in touched:
        recs = _in_order(kind, key)
        if not recs:
            continue
        values = cadre_values(recs, parsed)
        old = existing.get(key)
        if old is None:
            inserts.append({"cadre_key": key, **values, "name": values["name"] or "", "status": "active"})
        else:
            change = {k: v for k, v in values.items() if v is not None and getattr(old, k) != v}
            if change:
                updates.append((key, change))
    insert_many(conn, c, inserts)
    _bulk_update(conn, c, "cadre_key", updates)


def _bulk_update(conn: sa.Connection, table: sa.Table, key_col: str, updates: list[tuple[str, dict]]) -> None:
    """executemany per set of changed columns."""
    by_cols: dict[tuple, list[dict]] = defaultdict(list)
    for key, change in updates:
        cols = tuple(sorted(change))
        by_cols[cols].append({"_key": key, **{f"_v_{k}": v for k, v in change.items()}})
    for cols, rows in by_cols.items():
        conn.execute(
            table.update()
            .where(table.c[key_col] == sa.bindparam("_key"))
            .values(**{k: sa.bindparam(f"_v_{k}") for k in cols}),
            rows,
        )


def reject_orphans(conn: sa.Connection, orphaned: Sequence[Record | sa.Row]) -> None:
    """An event for an entity nobody listed cannot be applied: reject it, fix the file's counts."""
    if not orphaned:
        return
    fields = catalogue().fields
    f, r = schema.intake_file, schema.source_record
    for rec in orphaned:
        kind = rec.kind if isinstance(rec, Record) else rec.entity_kind
        kind_field = "case_number" if kind == "case" else catalogue().rosters[rec.roster].person["id_number"]
        header = _header_of(conn, rec.file_id, rec.sheet, kind_field) or fields[kind_field].label
        code = _UNKNOWN_REASON[kind]
        conn.execute(
            schema.rejected_row.insert().values(
                file_id=rec.file_id,
                sheet=rec.sheet,
                row_number=rec.row_number,
                field=kind_field,
                header=header,
                value=None,
                reason_code=code,
                message=message(code, header=header),
                created_at=now(),
            )
        )
        conn.execute(r.delete().where(r.c.record_id == rec.record_id))
        conn.execute(
            f.update()
            .where(f.c.file_id == rec.file_id)
            .values(rows_loaded=f.c.rows_loaded - 1, rows_rejected=f.c.rows_rejected + 1)
        )


def _header_of(conn: sa.Connection, file_id: int, sheet: str, field_name: str) -> str | None:
    s = schema.intake_sheet
    headers = conn.execute(sa.select(s.c.headers).where(s.c.file_id == file_id, s.c.sheet == sheet)).scalar()
    return json.loads(headers).get(field_name) if headers else None


def upsert_cases(conn: sa.Connection, keys: set[str]) -> None:
    """Rebuild the descriptive columns of touched cases from all their records (latest wins)."""
    if not keys:
        return
    r, s = schema.source_record, schema.source_row
    rows = conn.execute(
        sa.select(r, s.c.entity_key)
        .join(s, schema.lineage_of(r, s))
        .where(s.c.entity_key.in_(sorted(keys)), s.c.entity_kind == "case")
        .order_by(r.c.record_id)
    ).all()
    by_key: dict[str, list[sa.Row]] = defaultdict(list)
    for rec in rows:
        by_key[rec.entity_key].append(rec)
    k = schema.petition_case
    present = set(conn.execute(sa.select(k.c.case_key).where(k.c.case_key.in_(sorted(by_key)))).scalars())
    inserts, updates = [], []
    for key, recs in sorted(by_key.items()):
        attrs = [json.loads(rec.attrs) for rec in recs]
        values = {
            "case_number": recs[0].case_number,
            "petitioner_name": _latest([rec.person_name for rec in recs]),
            "petitioner_id_number": _latest([rec.id_number for rec in recs]),
            "town": _latest([rec.town for rec in recs]),
            **{
                f: _latest([a.get(f) for a in attrs])
                for f in (
                    "topic",
                    "summary",
                    "responsible_unit",
                    "work_team",
                    "resolution_plan",
                    "stabilisation_measures",
                )
            },
            "registered_on": _as_date(_latest([a.get("registered_date") for a in attrs])),
        }
        if key in present:
            updates.append((key, {c: v for c, v in values.items() if v is not None}))
        else:
            inserts.append({"case_key": key, **values, "status": "open"})
    insert_many(conn, k, inserts)
    _bulk_update(conn, k, "case_key", updates)


def _as_date(value: object) -> object:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value
