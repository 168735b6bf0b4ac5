"""The warehouse at scale: the bulk write paths (COPY on PostgreSQL, executemany on SQLite), the
status refresh as SQL, the indexes of migration 0005 and the atomic pairing rebuild.

No timings here (``benchmarks/bench_warehouse.py`` measures them); these tests check that the fast
paths store exactly what the plain ones do, and that readers never see a half-written night.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from rosterlink import status, warehouse
from rosterlink.ops import faults
from rosterlink.pairing import rebuild as pairing
from rosterlink.warehouse import schema

ROOT = Path(__file__).resolve().parents[1]
RECEIVED = dt.datetime(2026, 11, 19, 16, 30)
D = dt.date

AWKWARD = [
    "张三",
    "王\t五",
    "李\n四",
    "赵\r\n六",
    'quote "double"',
    "quote 'single'",
    "back\\slash",
    "\\N",
    "\\.",
    "",
    " 前后空格 ",
    "comma, semi; pipe |",
    "emoji 😀 and 𠀀",
    "tab\tand\\t literal",
    json.dumps(
        {"姓名": "张三", "note": "a\tb\nc\\d\"e'", "n": None, "list": [1, 2.5, "三"]}, ensure_ascii=False
    ),
    None,
]
SHORT = [v for v in AWKWARD if v is None or len(v) < 60]  # for the varchar(64) columns


def _file(conn: sa.Connection, file_id: int = 1, rows_read: int = 0) -> int:
    conn.execute(
        schema.intake_file.insert().values(
            file_id=file_id,
            department="civil_affairs",
            file_name=f"f{file_id}.xlsx",
            sha256="0" * 64,
            size_bytes=1,
            status="pending",
            rows_read=rows_read,
            received_at=RECEIVED,
        )
    )
    return file_id


def _staged(n: int = len(AWKWARD)) -> list[dict]:
    return [
        {
            "file_id": 1,
            "sheet": f"表{i % 3}\t'x'",
            "row_number": i + 3,
            "roster": "hardship",
            "payload": AWKWARD[i % len(AWKWARD)] or "{}",
            "findings": AWKWARD[(i + 1) % len(AWKWARD)],
            "state": "valid",
        }
        for i in range(n)
    ]


def _rejected(n: int = len(AWKWARD)) -> list[dict]:
    return [
        {
            "file_id": 1,
            "sheet": "Sheet1",
            "row_number": i + 3,
            "field": "head_name",
            "header": AWKWARD[(i + 2) % len(AWKWARD)],
            "value": AWKWARD[i % len(AWKWARD)],
            "reason_code": "bad",
            "message": AWKWARD[(i + 3) % len(AWKWARD)] or "消息",
            "created_at": RECEIVED + dt.timedelta(seconds=i),
        }
        for i in range(n)
    ]


def _records(n: int = len(AWKWARD)) -> list[dict]:
    return [
        {
            "file_id": 1,
            "sheet": "Sheet1",
            "row_number": i + 3,
            "department": "civil_affairs",
            "roster": "hardship",
            "entity_kind": "household",
            "category": None if i % 4 else "hardship",
            "person_name": SHORT[i % len(SHORT)],
            "id_number": None,
            "case_number": None,
            "town": "山城街道",
            "village": SHORT[(i + 5) % len(SHORT)],
            "phone": None,
            "event": "add" if i % 2 else None,
            "event_date": D(2026, 11, 1) + dt.timedelta(days=i) if i % 3 else None,
            "attrs": AWKWARD[(i + 7) % len(AWKWARD)] or "{}",
            "loaded_at": RECEIVED,
        }
        for i in range(n)
    ]


def _dump(conn: sa.Connection, table: sa.Table, key: str) -> list[tuple]:
    skip = {"id", "record_id"}  # surrogate keys: equal only up to the sequence
    cols = [c for c in table.c if c.name not in skip]
    return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(table.c[key], table.c.row_number)).all()]


def _write_all(url: str, plain: bool) -> dict[str, list[tuple]]:
    eng = warehouse.connect(url)
    tables = (
        (schema.staged_row, _staged()),
        (schema.rejected_row, _rejected()),
        (schema.source_record, _records()),
    )
    with eng.begin() as conn:
        _file(conn)
        for table, rows in tables:
            if plain:  # the reference: SQLAlchemy's own executemany INSERT
                conn.execute(table.insert(), rows)
            else:
                assert warehouse.insert_many(conn, table, iter(rows), batch=4) == len(rows)
    with eng.connect() as conn:
        return {t.name: _dump(conn, t, "sheet" if t is schema.staged_row else "file_id") for t, _ in tables}


@pytest.mark.postgres
def test_copy_stores_exactly_what_executemany_stores_awkward_values_included(sqlite_url, tmp_path):
    from conftest import fresh_pg_database

    with fresh_pg_database() as (_, copy_url), fresh_pg_database() as (_, plain_url):
        copied = _write_all(copy_url, plain=False)
        plain = _write_all(plain_url, plain=True)
        lite = _write_all(sqlite_url, plain=False)
        lite_plain = _write_all(f"sqlite:///{tmp_path / 'plain.db'}", plain=True)
    assert copied == plain
    assert lite == lite_plain
    assert copied == lite  # the same values back on both engines
    payloads = {row[4] for row in copied["staged_row"]}
    assert {v for v in AWKWARD if v} <= payloads | {row[5] for row in copied["staged_row"]}
    assert any(row[5] is None for row in copied["staged_row"])  # NULL stays NULL, "" stays ""


def _raw(url: str, table: sa.Table) -> list[tuple]:
    """The table's rows as SQLite stores them (text, integers, reals, NULLs), not as SQLAlchemy
    converts them back."""
    skip = {"id", "record_id"}
    cols = ", ".join(c.name for c in table.c if c.name not in skip)
    eng = warehouse.connect(url)
    with eng.connect() as conn:
        return sorted(conn.exec_driver_sql(f"SELECT {cols} FROM {table.name}").all(), key=repr)


def test_sqlite_bulk_paths_store_exactly_what_sqlalchemy_stores(tmp_path):
    """insert_many and update_many on SQLite go to the driver with plain tuples; the stored values
    (dates and datetimes as text, NULL and "" kept apart, awkward text) equal SQLAlchemy's own
    executemany, byte for byte."""
    tables = (schema.staged_row, schema.rejected_row, schema.source_record)
    fast_url, plain_url = f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'plain.db'}"
    _write_all(fast_url, plain=False)
    _write_all(plain_url, plain=True)
    for table in tables:
        assert _raw(fast_url, table) == _raw(plain_url, table)
    changes = [
        {"record_id": i + 1, "category": f"c{i:06d}", "event_date": D(2026, 12, 1), "phone": None}
        for i in range(0, 80, 3)
    ]
    with warehouse.connect(fast_url).begin() as conn:
        assert warehouse.update_many(conn, schema.source_record, ["record_id"], changes) == len(changes)
    r = schema.source_record
    with warehouse.connect(plain_url).begin() as conn:
        for c in changes:
            conn.execute(
                r.update()
                .where(r.c.record_id == c["record_id"])
                .values(category=c["category"], event_date=c["event_date"], phone=c["phone"])
            )
    assert _raw(fast_url, r) == _raw(plain_url, r)
    assert any(row for row in _raw(fast_url, r) if "2026-12-01" in row)


@pytest.mark.postgres
def test_copy_rows_belong_to_the_transaction_and_a_rollback_removes_them(pg_url):
    eng = warehouse.connect(pg_url)
    with eng.begin() as conn:
        _file(conn)

    def insert_then_fail() -> None:
        with eng.begin() as conn:
            warehouse.insert_many(conn, schema.staged_row, _staged(50))
            # a reader outside the transaction does not see them
            with warehouse.engine(pg_url).connect() as other:
                assert other.execute(sa.select(sa.func.count()).select_from(schema.staged_row)).scalar() == 0
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        insert_then_fail()
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.staged_row)).scalar() == 0


@pytest.mark.parametrize("engine_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_update_many_updates_by_key_on_both_engines(engine_kind, request):
    url = request.getfixturevalue("sqlite_url" if engine_kind == "sqlite" else "pg_url")
    eng = warehouse.connect(url)
    with eng.begin() as conn:
        _file(conn)
        warehouse.insert_many(conn, schema.staged_row, _staged(40))
        sheets = sorted({r["sheet"] for r in _staged(40)})
        changes = [
            {
                "file_id": 1,
                "sheet": r["sheet"],
                "row_number": r["row_number"],
                "state": "rejected",
                "findings": AWKWARD[r["row_number"] % len(AWKWARD)],
            }
            for r in _staged(40)[::3]
        ]
        assert (
            warehouse.update_many(conn, schema.staged_row, ["file_id", "sheet", "row_number"], changes) == 14
        )
    with eng.connect() as conn:
        got = {
            (r.sheet, r.row_number): (r.state, r.findings) for r in conn.execute(sa.select(schema.staged_row))
        }
    assert sheets
    assert len(got) == 40
    for r in _staged(40):
        want = (
            ("rejected", AWKWARD[r["row_number"] % len(AWKWARD)])
            if (r["row_number"] - 3) % 3 == 0
            else ("valid", r["findings"])
        )
        assert got[(r["sheet"], r["row_number"])] == want


# --- status refresh: SQL against the former Python semantics --------------------------------------------
def _reference(conn: sa.Connection) -> dict:
    """The status refresh as it was written in Python (rosterlink 1.x status.compute), the oracle."""
    r, s = schema.source_record, schema.source_row

    def events(roster: str) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = defaultdict(list)
        for key, date, record_id, event in conn.execute(
            sa.select(s.c.entity_key, r.c.event_date, r.c.record_id, r.c.event)
            .join(s, schema.lineage_of(r, s))
            .where(r.c.roster == roster, r.c.event.is_not(None))
        ):
            out[key].append((date or dt.date.min, record_id, event))
        for evs in out.values():
            evs.sort()
        return out

    def last(evs: list[tuple], default: str, mapping: dict[str, str]) -> tuple:
        if not evs:
            return default, None
        date, _, event = evs[-1]
        return mapping.get(event, default), (None if date == dt.date.min else date)

    hc = schema.household_category
    adjustments = events("hardship_adjustment")
    categories = {}
    for key, category in conn.execute(sa.select(hc.c.household_key, hc.c.category)):
        categories[(key, category)] = (
            last(adjustments.get(key, []), "active", {"add": "active", "exit": "exited"})
            if category == "hardship"
            else ("active", None)
        )
    by_household: dict[str, list] = defaultdict(list)
    for (key, _), value in categories.items():
        by_household[key].append(value)
    households = {
        key: ("active", None)
        if any(s == "active" for s, _ in values)
        else ("exited", max((d for _, d in values if d), default=None))
        for key, values in by_household.items()
    }
    changes = events("cadre_change")
    cadres = {
        key: last(changes.get(key, []), "active", {"join": "active", "leave": "departed"})
        for (key,) in conn.execute(sa.select(schema.cadre.c.cadre_key))
    }
    closures, ledger = events("case_closure"), events("case")
    cases = {}
    for (key,) in conn.execute(sa.select(schema.petition_case.c.case_key)):
        if closures.get(key):
            cases[key] = ("closed", closures[key][-1][0] if closures[key][-1][0] != dt.date.min else None)
        else:
            cases[key] = last(ledger.get(key, []), "open", {"open": "open", "closed": "closed"})
    return {"household_category": categories, "household": households, "cadre": cadres, "case": cases}


def _event_world(eng: sa.Engine) -> None:
    """Tricky event sequences, each on its own entity."""
    h = ["H001", "H002", "H003", "H004", "H005", "H006", "H007", "H008", "H009"]
    with eng.begin() as conn:
        _file(conn)
        conn.execute(
            schema.household.insert(),
            [{"household_key": k, "head_name": "户主", "status": "active"} for k in h],
        )
        cats = [(k, "hardship") for k in h] + [("H004", "orphan"), ("H009", "old_member")]
        conn.execute(
            schema.household_category.insert(),
            [{"household_key": k, "category": c, "status": "active"} for k, c in cats],
        )
        conn.execute(
            schema.cadre.insert(),
            [
                {"cadre_key": k, "name": "干部", "status": "active"}
                for k in ("C001", "C002", "C003", "C004", "C005")
            ],
        )
        conn.execute(
            schema.petition_case.insert(),
            [
                {"case_key": k, "case_number": f"XF-{k}", "status": "open"}
                for k in ("K001", "K002", "K003", "K004", "K005")
            ],
        )
        rows = [
            # H001: same-day add then exit: the later record wins -> exited
            ("hardship_adjustment", "H001", "add", D(2026, 11, 5)),
            ("hardship_adjustment", "H001", "exit", D(2026, 11, 5)),
            # H002: same-day exit then add -> active
            ("hardship_adjustment", "H002", "exit", D(2026, 11, 5)),
            ("hardship_adjustment", "H002", "add", D(2026, 11, 5)),
            # H003: exit, later an add (re-admitted), loaded in the other order -> active
            ("hardship_adjustment", "H003", "add", D(2026, 11, 20)),
            ("hardship_adjustment", "H003", "exit", D(2026, 10, 1)),
            # H004: hardship exited but still an orphan household -> active
            ("hardship_adjustment", "H004", "exit", D(2026, 11, 2)),
            # H005: an undated exit is older than any dated row -> the dated add wins
            ("hardship_adjustment", "H005", "add", D(2026, 1, 1)),
            ("hardship_adjustment", "H005", "exit", None),
            # H006: only an undated exit -> exited, since unknown
            ("hardship_adjustment", "H006", "exit", None),
            # H007: an unknown event word counts as the default (active) but dates the status
            ("hardship_adjustment", "H007", "exit", D(2026, 3, 1)),
            ("hardship_adjustment", "H007", "moved", D(2026, 4, 1)),
            # H008: no events at all (missing from a later roster is NOT an exit) -> active
            # H009: hardship exited, old member stays active
            ("hardship_adjustment", "H009", "exit", D(2026, 6, 1)),
            # cadres: leave then join the same day; join then leave; undated leave after dated join
            ("cadre_change", "C001", "leave", D(2026, 11, 1)),
            ("cadre_change", "C001", "join", D(2026, 11, 1)),
            ("cadre_change", "C002", "join", D(2026, 9, 1)),
            ("cadre_change", "C002", "leave", D(2026, 10, 1)),
            ("cadre_change", "C003", "join", D(2026, 9, 1)),
            ("cadre_change", "C003", "leave", None),
            ("cadre_change", "C005", "leave", None),
            # cases: closed by the ledger; a closure row beats a later ledger 'open'; ledger reopened
            ("case", "K001", "open", D(2026, 1, 1)),
            ("case", "K001", "closed", D(2026, 5, 1)),
            ("case", "K002", "open", D(2026, 12, 1)),
            ("case_closure", "K002", "closed", D(2026, 6, 1)),
            ("case_closure", "K002", "closed", D(2026, 7, 1)),
            ("case", "K003", "closed", D(2026, 2, 1)),
            ("case", "K003", "open", D(2026, 3, 1)),
            ("case_closure", "K004", "closed", None),
            # a row with an event but no entity yet, and a row with an entity but no event: ignored
            ("case", None, "closed", D(2026, 1, 1)),
            ("case", "K005", None, D(2026, 1, 1)),
        ]
        conn.execute(
            schema.source_record.insert(),
            [
                {
                    "file_id": 1,
                    "sheet": "Sheet1",
                    "row_number": i + 3,
                    "department": "d",
                    "roster": roster,
                    "entity_kind": "x",
                    "event": event,
                    "event_date": date,
                    "attrs": "{}",
                    "loaded_at": RECEIVED,
                }
                for i, (roster, key, event, date) in enumerate(rows)
            ],
        )
        conn.execute(  # the linked rows' keys, in their lineage
            schema.source_row.insert(),
            [
                {"file_id": 1, "sheet": "Sheet1", "row_number": i + 3, "entity_kind": "x", "entity_key": key}
                for i, (_, key, _, _) in enumerate(rows)
                if key is not None
            ],
        )
        # H001's household row says exited from an earlier night: only changes are written
        conn.execute(
            schema.household.update()
            .where(schema.household.c.household_key == "H008")
            .values(status="exited")
        )


def _statuses(conn: sa.Connection) -> dict:
    hc, h, c, k = schema.household_category, schema.household, schema.cadre, schema.petition_case
    return {
        "household_category": {
            (a, b): (s, d)
            for a, b, s, d in conn.execute(
                sa.select(hc.c.household_key, hc.c.category, hc.c.status, hc.c.status_since)
            )
        },
        **{
            name: {
                key: (s, d) for key, s, d in conn.execute(sa.select(t.c[col], t.c.status, t.c.status_since))
            }
            for name, t, col in (
                ("household", h, "household_key"),
                ("cadre", c, "cadre_key"),
                ("case", k, "case_key"),
            )
        },
    }


@pytest.mark.parametrize("engine_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_status_sql_equals_the_python_semantics_on_tricky_event_sequences(engine_kind, request):
    url = request.getfixturevalue("sqlite_url" if engine_kind == "sqlite" else "pg_url")
    eng = warehouse.connect(url)
    _event_world(eng)
    with eng.connect() as conn:
        want = _reference(conn)
        assert status.compute(conn) == want
        before = _statuses(conn)
    assert want["household"] == {
        "H001": ("exited", D(2026, 11, 5)),
        "H002": ("active", None),
        "H003": ("active", None),
        "H004": ("active", None),
        "H005": ("active", None),
        "H006": ("exited", None),
        "H007": ("active", None),
        "H008": ("active", None),
        "H009": ("active", None),
    }
    assert want["household_category"][("H007", "hardship")] == ("active", D(2026, 4, 1))
    assert want["cadre"] == {
        "C001": ("active", D(2026, 11, 1)),
        "C002": ("departed", D(2026, 10, 1)),
        "C003": ("active", D(2026, 9, 1)),
        "C004": ("active", None),
        "C005": ("departed", None),
    }
    assert want["case"] == {
        "K001": ("closed", D(2026, 5, 1)),
        "K002": ("closed", D(2026, 7, 1)),
        "K003": ("open", D(2026, 3, 1)),
        "K004": ("closed", None),
        "K005": ("open", None),
    }

    summary = status.refresh(eng, as_of=D(2026, 12, 1))
    assert summary["changed"] == {
        "case_closed": 3,
        "cadre_departed": 2,
        "household_active": 1,
        "household_exited": 2,
    }
    with eng.connect() as conn:
        after = _statuses(conn)
    for name, values in want.items():
        for key, (st, since) in values.items():
            # the status is written; its date moves only when the status changed
            assert after[name][key][0] == st, (name, key)
            expected_since = since if before[name][key][0] != st else before[name][key][1]
            assert after[name][key][1] == expected_since, (name, key)
    # a second refresh changes nothing
    assert status.refresh(eng, as_of=D(2026, 12, 1))["changed"] == {}


@pytest.mark.parametrize("engine_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_refused_mass_end_rolls_the_status_sql_back(engine_kind, request):
    url = request.getfixturevalue("sqlite_url" if engine_kind == "sqlite" else "pg_url")
    eng = warehouse.connect(url)
    _event_world(eng)
    with eng.begin() as conn:  # every household of the world paired with an active cadre
        conn.execute(
            schema.pairing.insert(),
            [
                {
                    "cadre_key": "C004",
                    "target_kind": "household",
                    "target_key": f"H00{i}",
                    "valid_from": D(2026, 1, 1),
                    "made_reason": "new_target",
                }
                for i in range(1, 10)
                if i != 8
            ],
        )
    with eng.connect() as conn:
        before = _statuses(conn)
    with pytest.raises(status.NightRefused):
        status.refresh(eng, max_end_share=0.05, as_of=D(2026, 12, 1))
    with eng.connect() as conn:
        assert _statuses(conn) == before
    assert status.refresh(eng, max_end_share=0.05, allow_mass_end=True, as_of=D(2026, 12, 1))["changed"]


# --- indexes ---------------------------------------------------------------------------------------------
INDEXES = {
    "source_record": {"ix_source_record_roster_event", "ix_source_record_kind"},
    "staged_row": {"ix_staged_row_file_state"},
    "pairing": {"ix_pairing_current_target", "ix_pairing_valid_from", "ix_pairing_valid_to"},
    "link_review": {"ix_link_review_status", "ix_link_review_signature"},
    "intake_file": {"ix_intake_file_run_id", "ix_intake_file_status"},
}


@pytest.mark.parametrize("engine_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_migrations_create_the_indexes(engine_kind, request):
    url = request.getfixturevalue("sqlite_url" if engine_kind == "sqlite" else "pg_url")
    inspector = sa.inspect(warehouse.connect(url))
    for table, names in INDEXES.items():
        assert names <= {ix["name"] for ix in inspector.get_indexes(table)}, table


def _scale_world(eng: sa.Engine, households: int = 20000, files: int = 20) -> None:
    """Enough rows for the planner to prefer an index where the night looks rows up."""
    with eng.begin() as conn:
        for f in range(1, files + 1):
            _file(conn, f)
        rosters = ("hardship", "hardship_adjustment", "cadre_change", "case", "orphan")
        warehouse.insert_many(
            conn,
            schema.source_record,
            (
                {
                    "file_id": 1 + i % files,
                    "sheet": "Sheet1",
                    "row_number": i,
                    "department": "d",
                    "roster": rosters[i % len(rosters)],
                    "entity_kind": "household",
                    "category": "hardship",
                    "event": "add",
                    "event_date": D(2026, 1, 1) + dt.timedelta(i % 300),
                    "attrs": "{}",
                    "loaded_at": RECEIVED,
                }
                for i in range(households)
            ),
        )
        warehouse.insert_many(  # every row but one in fifty linked
            conn,
            schema.source_row,
            (
                {
                    "file_id": 1 + i % files,
                    "sheet": "Sheet1",
                    "row_number": i,
                    "entity_kind": "household",
                    "entity_key": f"H{i:06d}",
                }
                for i in range(households)
                if i % 50
            ),
        )
        warehouse.insert_many(
            conn,
            schema.staged_row,
            (
                {
                    "file_id": 1 + i % files,
                    "sheet": "Sheet1",
                    "row_number": i,
                    "roster": "hardship",
                    "payload": "{}",
                    "state": "valid" if i % 10 else "rejected",
                }
                for i in range(households)
            ),
        )
        warehouse.insert_many(
            conn,
            schema.pairing,
            (
                {
                    "cadre_key": f"C{i % 2000:06d}",
                    "target_kind": "household",
                    "target_key": f"H{i % households:06d}",
                    "valid_from": D(2025, 1, 1) + dt.timedelta(i % 600),
                    "valid_to": None if i >= 3 * households else D(2025, 1, 1) + dt.timedelta(i % 600 + 1),
                    "made_reason": "new_target",
                }
                for i in range(4 * households)
            ),
        )
        conn.exec_driver_sql("ANALYZE")


@pytest.mark.postgres
def test_the_planner_uses_the_indexes_for_the_nights_lookups(pg_url):
    eng = warehouse.connect(pg_url)
    _scale_world(eng)
    queries = {
        # status: a roster's events of a day, latest first
        "ix_source_record_roster_event": "SELECT event, event_date FROM source_record "
        "WHERE roster = 'cadre_change' AND event_date = DATE '2026-03-01' ORDER BY record_id DESC",
        # link: the rows of a kind, in load order
        "ix_source_record_kind": "SELECT record_id FROM source_record "
        "WHERE entity_kind = 'case' ORDER BY record_id",
        # load: a file's valid staged rows
        "ix_staged_row_file_state": "SELECT row_number FROM staged_row "
        "WHERE file_id = 3 AND state = 'rejected'",
        # pairing, dashboard, exports: the current pair of a target
        "ix_pairing_current_target": "SELECT cadre_key FROM pairing "
        "WHERE valid_to IS NULL AND target_kind = 'household' AND target_key = 'H000042'",
        # exports: pairs made / ended tonight
        "ix_pairing_valid_from": "SELECT pairing_id FROM pairing WHERE valid_from = DATE '2026-06-01'",
        "ix_pairing_valid_to": "SELECT pairing_id FROM pairing WHERE valid_to = DATE '2026-06-01'",
    }
    with eng.connect() as conn:
        for index, query in queries.items():
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
            assert index in plan, (index, plan)
        # the current-pairs partial index is a fraction of the table's size
        sizes = dict(
            conn.exec_driver_sql(
                "SELECT c.relname, c.relpages FROM pg_class c WHERE c.relname IN "
                "('ix_pairing_current_target', 'ix_pairing_target_key')"
            ).all()
        )
        assert sizes["ix_pairing_current_target"] < sizes["ix_pairing_target_key"]


@pytest.mark.postgres
def test_the_load_keeps_the_planner_on_the_index_as_a_first_night_fills_the_table(pg_url):
    """A first night's files of one department, loaded with no ANALYZE but the load's own: each
    file's re-sent-row lookup must go by the index on (department, row_hash). Planned without
    statistics, it took the index for the department alone and filtered every row of the
    department, once per 500 hashes (quadratic: 200,000 rows took 288 s instead of 13 s, a
    province's million would take hours)."""
    from rosterlink.warehouse import load

    eng = warehouse.connect(pg_url)
    files, per_file = 3, load.GROWTH_MIN_ROWS
    with eng.begin() as conn:
        for f in range(1, files + 1):
            _file(conn, f, rows_read=per_file)
            warehouse.insert_many(
                conn,
                schema.staged_row,
                (
                    {
                        "file_id": f,
                        "sheet": "Sheet1",
                        "row_number": n + 3,
                        "roster": "hardship",
                        "payload": json.dumps(
                            {"head_name": f"户主{f}-{n}", "town": "城关镇", "village": f"{n % 70}村"},
                            ensure_ascii=False,
                        ),
                        "findings": "[]",
                        "state": "valid",
                    }
                    for n in range(per_file)
                ),
            )
    loaded = list(load.load_files(eng, range(1, files + 1)))
    assert sum(done.rows_loaded for done in loaded) == files * per_file
    with eng.connect() as conn:
        # the plan a prepared statement gets once the driver prepares it (psycopg does after five
        # runs): a generic one, made from the table's statistics alone
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        # as load._recorded asks it: 500 hashes at a time, the first row of each in record order
        hashes = ", ".join(f"${i + 3}" for i in range(warehouse.IN_LIST))
        conn.exec_driver_sql(
            f"PREPARE lookup(varchar, integer, {', '.join(['varchar'] * warehouse.IN_LIST)}) AS "
            "SELECT row_hash, file_id, sheet, row_number FROM source_record "
            f"WHERE department = $1 AND row_hash IN ({hashes}) AND file_id <> $2 ORDER BY record_id"
        )
        values = ", ".join(f"'h{i}'" for i in range(warehouse.IN_LIST))
        explained = conn.exec_driver_sql(f"EXPLAIN EXECUTE lookup('civil_affairs', 3, {values})")
        plan = [r[0] for r in explained]
    # by the index on both columns: not every row of the department, filtered one by one
    conditions = [line for line in plan if "Index Cond" in line]
    assert any("row_hash" in line for line in conditions), "\n".join(plan)[:3000]


@pytest.mark.postgres
def test_the_pairing_checks_are_planned_as_joins_when_the_pairs_outgrow_memory(pg_url):
    """The rebuild's checks (every active household paired, every open case led) must be planned as
    anti-joins. Written as NOT IN (subquery), PostgreSQL ran them as a subplan per household once the
    current pairs no longer fitted in work_mem: a province's quiet night never finished its pairing
    stage. Here the pairs are made to outgrow a small work_mem, and every check's plan is read."""
    eng = warehouse.connect(pg_url)
    _scale_world(eng)
    asked: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, params, context, executemany) -> None:
        asked.append((statement, params))

    with eng.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", keep)
        pairing.count_checks(conn)
        sa.event.remove(conn, "before_cursor_execute", keep)
        conn.exec_driver_sql("SET work_mem = '64kB'")
        assert len(asked) == 4
        for statement, params in asked:
            plan = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params)]
            assert not any("SubPlan" in line for line in plan), "\n".join(plan)


# --- the pairing rebuild: atomic to a concurrent reader -----------------------------------------------------
def _pair_world(eng: sa.Engine) -> None:
    with eng.begin() as conn:
        conn.execute(
            schema.household.insert(),
            [
                {
                    "household_key": f"H{i:03d}",
                    "head_name": "户主",
                    "town": "山城街道" if i % 2 else "北庄镇",
                    "status": "active",
                }
                for i in range(1, 61)
            ],
        )
        conn.execute(
            schema.cadre.insert(),
            [
                {
                    "cadre_key": f"C{i:03d}",
                    "name": "干部",
                    "rank": "section",
                    "unit": f"单位{i % 3}",
                    "town": "山城街道" if i % 2 else "北庄镇",
                    "status": "active",
                }
                for i in range(1, 21)
            ],
        )


def _current_set(conn: sa.Connection) -> set[tuple]:
    p = schema.pairing
    return set(
        conn.execute(
            sa.select(p.c.pairing_id, p.c.cadre_key, p.c.target_key).where(p.c.valid_to.is_(None))
        ).all()
    )


@pytest.mark.postgres
def test_a_reader_during_the_rebuild_sees_last_nights_complete_pairs_then_tonights(pg_url, monkeypatch):
    eng = warehouse.connect(pg_url)
    _pair_world(eng)
    pairing.rebuild(eng, D(2026, 11, 20), "run-1")
    with eng.begin() as conn:  # tonight: five cadres leave, ten households arrive
        conn.execute(
            schema.cadre.update()
            .where(schema.cadre.c.cadre_key.in_([f"C{i:03d}" for i in range(1, 6)]))
            .values(status="departed")
        )
        conn.execute(
            schema.household.insert(),
            [
                {"household_key": f"H{i:03d}", "head_name": "户主", "town": "北庄镇", "status": "active"}
                for i in range(61, 71)
            ],
        )
    with eng.connect() as conn:
        last_night = _current_set(conn)
    assert len(last_night) == 60

    reached, go_on, seen, errors = threading.Event(), threading.Event(), {}, []
    real_point = faults.point

    def paused(name: str) -> None:
        real_point(name)
        if name == "pairing.mid":  # tonight's ends and new pairs are written, not committed
            reached.set()
            assert go_on.wait(60)

    monkeypatch.setattr(faults, "point", paused)

    def night() -> None:
        try:
            seen["summary"] = pairing.rebuild(eng, D(2026, 11, 21), "run-2")
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    worker = threading.Thread(target=night)
    worker.start()
    assert reached.wait(120), errors
    reader = sa.create_engine(pg_url)  # a dashboard or export: its own connection, never blocked
    with reader.connect() as other:
        other.exec_driver_sql("SET statement_timeout = '10s'")
        seen["during"] = _current_set(other)
        seen["view_during"] = other.exec_driver_sql("SELECT COUNT(*) FROM current_pairing").scalar()
    go_on.set()
    worker.join(120)
    assert not errors, errors
    with reader.connect() as other:
        tonight = _current_set(other)
    reader.dispose()
    assert seen["during"] == last_night
    assert seen["view_during"] == 60
    assert len(tonight) == 70
    assert tonight != last_night
    assert seen["summary"]["made_total"] > 10


@pytest.mark.postgres
def test_a_rebuild_killed_mid_write_leaves_last_nights_pairs(pg_url):
    eng = warehouse.connect(pg_url)
    _pair_world(eng)
    pairing.rebuild(eng, D(2026, 11, 20), "run-1")
    with eng.begin() as conn:
        conn.execute(
            schema.cadre.update().where(schema.cadre.c.cadre_key == "C001").values(status="departed")
        )
    with eng.connect() as conn:
        before = conn.execute(sa.select(schema.pairing).order_by(schema.pairing.c.pairing_id)).all()
    script = textwrap.dedent(f"""
        import datetime as dt
        from rosterlink import warehouse
        from rosterlink.pairing import rebuild as pairing
        pairing.rebuild(warehouse.connect({pg_url!r}), dt.date(2026, 11, 21), "run-2")
    """)
    env = {**os.environ, "ROSTERLINK_FAILPOINT": "pairing.mid=kill"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    with eng.connect() as conn:
        assert conn.execute(sa.select(schema.pairing).order_by(schema.pairing.c.pairing_id)).all() == before
    pairing.rebuild(eng, D(2026, 11, 21), "run-2")
    with eng.connect() as conn:
        assert len(_current_set(conn)) == 60
