"""The staging table as the stages use it: a sheet written by the read stage comes back as the
same ``SheetTable`` (normalised rows, findings); validation marks rows; the load stage takes only
the valid ones and keeps no child's ID number."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from rosterlink import warehouse
from rosterlink.core import pseudonym
from rosterlink.core.findings import WARNING, Finding
from rosterlink.core.spec import catalogue
from rosterlink.core.tables import SheetTable
from rosterlink.warehouse import load, schema, staging

ID = "370406198203040016"


def _hardship_table(rows: list[dict]) -> SheetTable:
    fields = catalogue().rosters["hardship"].fields
    frame = pd.DataFrame(
        [{"_row": 4 + i, **{f: r.get(f) for f in fields}} for i, r in enumerate(rows)],
        columns=["_row", *fields],
        dtype=object,
    )
    return SheetTable("困难户", "hardship", 3, {"head_name": "户主"}, frame)


@pytest.fixture
def eng(sqlite_url):
    return _with_file(sqlite_url)


def test_a_staged_sheet_reads_back_as_the_sheet_table_it_was(eng):
    table = _hardship_table(
        [{"head_name": "张三", "head_id_number": ID, "household_size": "3"}, {"head_name": "李四"}]
    )
    findings = [Finding("困难户", 5, "head_id_number", "id_missing", "缺少身份证号", WARNING)]
    with eng.begin() as conn:
        staging.write_notes(conn, 1, ["跳过了工作表 说明"])
        assert staging.write_sheet(conn, 1, table, table.frame, findings) == 2
    with eng.connect() as conn:
        (staged,) = staging.read_sheets(conn, [1])  # the note is no sheet with a roster
        assert staging.read_sheets(conn, [2]) == []
    assert isinstance(staged.table, SheetTable)
    assert (staged.file_id, staged.table.sheet, staged.table.roster) == (1, "困难户", "hardship")
    assert (staged.table.header_row, staged.table.headers) == (3, {"head_name": "户主"})
    back = staged.table.frame
    assert list(back.columns) == list(table.frame.columns)
    assert back.where(pd.notna(back), None).to_dict("records") == table.frame.to_dict("records")
    assert staged.findings == findings


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_row_staged_before_its_roster_gained_a_field_reads_back_with_it_empty(backend, request):
    """A staged row whose payload lacks one of the roster's fields (staged by an earlier version,
    before the field was added) reads back with that field empty, and every column has the values
    and types the staged payloads give, on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    eng = request.getfixturevalue("eng") if backend == "sqlite" else _with_file(url)
    table = _hardship_table(
        [
            {"head_name": "张三", "head_id_number": ID, "household_size": 3},
            {"head_name": "李四", "town": "店子镇", "household_size": 2},
        ]
    )
    with eng.begin() as conn:
        staging.write_sheet(conn, 1, table, table.frame, [])
        st_ = schema.staged_row
        payload = json.loads(conn.execute(sa.select(st_.c.payload).where(st_.c.row_number == 5)).scalar_one())
        del payload["town"]
        conn.execute(st_.update().where(st_.c.row_number == 5).values(payload=json.dumps(payload)))
    with eng.connect() as conn:
        (staged,) = staging.read_sheets(conn, [1])
        payloads = [
            json.loads(p) for p in conn.execute(sa.select(st_.c.payload).order_by(st_.c.row_number)).scalars()
        ]
    fields = catalogue().rosters["hardship"].fields
    expected = pd.DataFrame(
        [{"_row": n, **p} for n, p in zip((4, 5), payloads, strict=True)], columns=["_row", *fields]
    ).astype(object)
    back = staged.table.frame
    assert pd.isna(back.loc[1, "town"])
    assert back.loc[1, "head_name"] == "李四"
    pd.testing.assert_frame_equal(back, expected)
    assert [type(v) for v in back["household_size"]] == [int, int]
    eng.dispose()


def _with_file(url: str) -> sa.Engine:
    """A warehouse at ``url`` with one intake file (file_id 1), as the ``eng`` fixture makes."""
    eng = warehouse.connect(url)
    with eng.begin() as conn:
        conn.execute(
            schema.intake_file.insert().values(
                file_id=1,
                department="civil_affairs",
                file_name="civil_affairs/a.xlsx",
                sha256="0" * 64,
                size_bytes=1,
                received_at=warehouse.now(),
                status="pending",
            )
        )
    return eng


def test_only_valid_rows_reach_the_load_and_a_file_loads_once(eng):
    rows = [{"head_name": "张三", "head_id_number": ID, "town": "店子镇"}, {"head_name": "李四"}]
    table = _hardship_table(rows)
    with eng.begin() as conn:
        staging.write_sheet(conn, 1, table, table.frame, [])
        staging.mark_sheet(conn, 1, "困难户", {5})
        f = schema.intake_file
        conn.execute(f.update().where(f.c.file_id == 1).values(rows_read=2, rows_rejected=1))
    with eng.connect() as conn:
        valid = list(staging.valid_rows(conn, 1))
    assert [(r.sheet, r.row_number) for r in valid] == [("困难户", 4)]
    assert valid[0].payload["head_id_number"] == ID

    assert list(load.load_files(eng, [1])) == [load.LoadedFile(1, 1, 0, "civil_affairs/a.xlsx")]
    assert list(load.load_files(eng, [1])) == []  # loaded: not again
    with eng.connect() as conn:
        record = conn.execute(sa.select(schema.source_record)).one()
        ledger = conn.execute(sa.select(schema.intake_file)).one()
        assert staging.clear_finished(conn) == 2
    assert (record.person_name, record.id_number, record.town) == ("张三", ID, "店子镇")
    assert (ledger.status, ledger.rows_loaded) == ("loaded", 1)


def test_a_file_that_does_not_reconcile_is_not_loaded(eng):
    table = _hardship_table([{"head_name": "张三"}])
    with eng.begin() as conn:
        staging.write_sheet(conn, 1, table, table.frame, [])
        staging.mark_sheet(conn, 1, "困难户", [])
        f = schema.intake_file
        conn.execute(f.update().where(f.c.file_id == 1).values(rows_read=5, rows_rejected=0))
    with pytest.raises(load.ReconciliationError):
        list(load.load_files(eng, [1]))
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.source_record)).scalar() == 0
        assert conn.execute(sa.select(schema.intake_file.c.status)).scalar() == "pending"


def test_a_child_id_number_is_kept_only_as_birth_month_and_keyed_token():
    child = "370406201503040028"
    row = staging.StagedRow(
        "孤儿", 4, "orphan", {"child_name": "小明", "child_id_number": child, "guardian_name": "王五"}
    )
    key = b"a-key-of-sixteen-chars"
    record = load.to_record(1, "civil_affairs", row, key)
    attrs = json.loads(record["attrs"])
    assert child not in json.dumps(record, default=str)
    assert attrs["child_birth_ym"] == "2015-03"
    assert attrs["child_id_token"] == pseudonym.token(key, child)
    assert record["person_name"] == "王五"
    assert "child_id_token" not in json.loads(load.to_record(1, "civil_affairs", row)["attrs"])


# --- a child's ID number at every moment after loading ----------------------------------------------
@pytest.mark.slow
def test_a_night_that_fails_after_loading_leaves_no_childs_id_in_the_staging_table(
    tmp_path, sqlite_url, run_night, monkeypatch
):
    """The night stops in the link stage, after its files are loaded: the night's last task, which
    clears the staging table, never runs. No child's full ID number may stay behind until the next
    good night."""
    from intake_files import write_xlsx

    from rosterlink.core import idnumber

    child_id = idnumber.make("370406", dt.date(2016, 3, 4), 7)
    guardian_id = idnumber.make("370406", dt.date(1958, 3, 4), 8)
    intake = tmp_path / "intake"
    write_xlsx(
        intake / "womens_federation" / "失亲儿童家庭名单.xlsx",
        "失亲儿童家庭名单",
        ["儿童姓名", "儿童身份证号", "监护人姓名", "监护人身份证号", "与儿童关系", "镇街", "村(居)"],
        [["刘小明", child_id, "刘桂芳", guardian_id, "祖母", "店子镇", "东庄村"]],
    )
    monkeypatch.setenv("ROSTERLINK_FAILPOINT", "link.mid=fail")
    assert run_night(intake, sqlite_url, tmp_path / "exports", as_of="2026-11-25") == "failed"
    eng = warehouse.connect(sqlite_url)
    with eng.connect() as conn:
        assert conn.execute(sa.select(schema.intake_file.c.status)).scalars().all() == ["loaded"]
        staged = conn.execute(sa.select(schema.staged_row.c.payload)).scalars().all()
        stored = [
            str(v)
            for table in (schema.source_record, schema.staged_row, schema.rejected_row, schema.row_warning)
            for row in conn.execute(sa.select(table)).all()
            for v in row
        ]
    assert staged, "the staged row is still there for the night's Data Docs"
    assert json.loads(staged[0])["guardian_id_number"] == guardian_id
    assert not any(child_id in v for v in stored)


@pytest.mark.postgres
def test_on_postgresql_loading_a_file_clears_the_childs_id_from_its_staged_rows(tmp_path, pg_url):
    """The same rule through the load stage on PostgreSQL (the bulk update's COPY path)."""
    from intake_files import intake, run_stages, write_xlsx

    from rosterlink.core import idnumber

    child_id = idnumber.make("370406", dt.date(2016, 3, 4), 7)
    cfg = intake(tmp_path, pg_url)
    path = write_xlsx(
        cfg.intake_dir / "womens_federation" / "失亲儿童家庭名单.xlsx",
        "失亲儿童家庭名单",
        ["儿童姓名", "儿童身份证号", "监护人姓名", "与儿童关系", "镇街", "村(居)"],
        [
            ["刘小明", child_id, "刘桂芳", "祖母", "店子镇", "东庄村"],
            ["王小红", child_id, "", "祖母", "店子镇", "东庄村"],
        ],
    )
    run_stages(cfg, "womens_federation", path, dt.date(2026, 11, 25))
    with warehouse.connect(pg_url).connect() as conn:
        staged = conn.execute(sa.select(schema.staged_row.c.state, schema.staged_row.c.payload)).all()
    assert sorted(state for state, _ in staged) == ["rejected", "valid"]  # 王小红 has no guardian
    assert not any(child_id in payload for _, payload in staged)


# --- the load's fingerprints and stored values, whatever the engine ------------------------------------
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=["Cs"])),  # any text a cell can hold (no lone surrogate)
    st.dates(),  # written as text, as every value JSON has no form for
)


@settings(max_examples=300, deadline=None)
@given(
    roster=st.sampled_from(sorted(catalogue().rosters)),
    payload=st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), _SCALARS, max_size=12),
)
def test_a_staged_row_has_the_fingerprint_its_parsed_payload_had(roster, payload):
    """The load fingerprints a staged row from its payload's text as staged; rows loaded before
    were fingerprinted from the parsed payload. A row re-sent after this change must still be
    known as already recorded: both fingerprints are the same, whatever the values (and the
    staged text parses to what ``json.loads`` gives)."""
    text = warehouse.dumps(payload)
    assert text == json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str)
    parsed = json.loads(text)
    assert load.staged_row_hash(roster, text) == load.row_hash(roster, parsed)
    assert warehouse.dumps(warehouse.loads(text)) == text  # NaN != NaN: compared as written


def _stored(url: str) -> dict[str, list[tuple]]:
    """What the load wrote, as the engine gives it back (surrogate ids and clock stamps left out)."""
    skip = {"record_id", "loaded_at", "received_at", "processed_at", "created_at", "id", "sha256"}
    out = {}
    with warehouse.connect(url).connect() as conn:
        for table in (
            schema.source_record,
            schema.recorded_row,
            schema.staged_row,
            schema.intake_file,
            schema.rejected_row,
        ):
            cols = [c for c in table.c if c.name not in skip]
            out[table.name] = sorted((tuple(row) for row in conn.execute(sa.select(*cols)).all()), key=repr)
    return out


def _two_nights_of_files(root, url) -> list[str]:
    """A women's federation roster (children: their ID numbers replaced), a hardship adjustment
    list (events and dates), then the roster corrected and dropped again (one changed row, the rest
    already recorded)."""
    from intake_files import intake, run_stages, write_xlsx

    from rosterlink.core import idnumber

    cfg = intake(root, url)
    kids = [idnumber.make("370406", dt.date(2014 + i, 3, 4), i) for i in range(3)]
    guardians = [idnumber.make("370406", dt.date(1960 + i, 5, 6), i) for i in range(3)]
    headers = ["儿童姓名", "儿童身份证号", "监护人姓名", "监护人身份证号", "与儿童关系", "镇街", "村(居)"]
    roster = [
        ["刘小明", kids[0], "刘桂芳", guardians[0], "祖母", "店子镇", "东庄村"],
        ["王小红", kids[1], "王建国", guardians[1], "祖父", "店子镇", '西庄村 "二组"'],
        ["张小丽", kids[2], "", guardians[2], "外婆", "店子镇", "南庄村"],  # no guardian: rejected
    ]
    path = cfg.intake_dir / "womens_federation" / "失亲儿童家庭名单.xlsx"
    run_stages(
        cfg, "womens_federation", write_xlsx(path, "失亲儿童家庭名单", headers, roster, fixed_times=True)
    )
    heads = [idnumber.make("370406", dt.date(1950 + i, 1, 2), i) for i in range(4)]
    adjust = cfg.intake_dir / "civil_affairs" / "困难群众调整名单.xlsx"
    write_xlsx(
        adjust,
        "困难群众调整名单",
        ["户主姓名", "户主身份证号", "镇街", "村(居)", "调整类型", "调整时间", "调整原因"],
        [
            [
                name,
                heads[i],
                "店子镇",
                "东庄村",
                "新增" if i % 2 else "退出",
                f"2026-0{i + 1}-1{i}",
                "核实",
            ]
            for i, name in enumerate(["赵大明", "钱二虎", "孙秀英", "李四海"])
        ],
        fixed_times=True,
    )
    run_stages(cfg, "civil_affairs", adjust, dt.date(2026, 11, 25))
    roster[0][6] = "北庄村"  # the clerk's correction
    run_stages(
        cfg, "womens_federation", write_xlsx(path, "失亲儿童家庭名单", headers, roster, fixed_times=True)
    )
    return kids


@pytest.mark.postgres
def test_the_load_stores_the_same_rows_on_postgresql_as_on_sqlite(tmp_path, sqlite_url, pg_url, monkeypatch):
    """The load writes ``source_record`` with COPY on PostgreSQL and executemany on SQLite: the
    same files give the same stored rows, fingerprints, already recorded rows, staged rows (the
    child's ID number blanked) and ledger on both."""
    monkeypatch.setenv("ROSTERLINK_PSEUDONYM_KEY", "a-key-of-sixteen-chars")
    kids = _two_nights_of_files(tmp_path / "lite", sqlite_url)
    assert _two_nights_of_files(tmp_path / "pg", pg_url) == kids
    lite, pg = _stored(sqlite_url), _stored(pg_url)
    assert lite == pg
    assert len(lite["source_record"]) == 2 + 4 + 1  # the corrected row only, the second time
    assert len(lite["recorded_row"]) == 1
    resent = [row for row in lite["source_record"] if row[-1] is True]
    assert len(resent) == 1
    assert "北庄村" in resent[0]
    stored = [str(v) for rows in lite.values() for row in rows for v in row]
    assert not any(kid in v for kid in kids for v in stored)
