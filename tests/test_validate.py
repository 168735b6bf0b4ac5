"""Validation through the real Great Expectations suites in expectations/ (no mocks).

Synthetic data only: ID numbers from ``rosterlink.core.idnumber.make``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosterlink.core import idnumber, spec
from rosterlink.core.findings import ERROR, WARNING, _messages
from rosterlink.core.paths import PROJECT_ROOT
from rosterlink.core.spec import catalogue, district
from rosterlink.core.tables import SheetTable
from rosterlink.intake.normalise import normalise_table
from rosterlink.validate.run import SuiteError, Validation, validate_table
from rosterlink.validate.suites import CONDITIONAL_REQUIRED, build_suite, main, suite_path, suite_text

EXPECTATIONS = PROJECT_ROOT / "expectations"
KINDS = sorted(catalogue().rosters)
TODAY = dt.date.today()
FULL_ID = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9X](?![0-9])")  # an ID-shaped number
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# GX gives every expectation and result a random UUID; its last group, a letter then eleven digits
# (about one id in seven thousand), reads as a phone number to FULL_PHONE. No data is in it.
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def without_uuids(text: str) -> str:
    return UUID.sub("<uuid>", text)


def an_id(seq: int = 1, region: str = "370406", born: dt.date = dt.date(1975, 3, 4)) -> str:
    return idnumber.make(region, born, seq)


def good_value(name: str, seq: int = 1) -> object:
    """A valid raw cell for a field, as an office would type it."""
    f = catalogue().fields[name]
    if f.enum:
        codes = catalogue().enums[f.enum]
        code = "join" if f.enum == "change_type" else next(iter(codes))
        return codes[code][0]
    return {
        "person_name": "张三",
        "id_number": an_id(seq),
        "town": "店子镇",
        "text": "东村",
        "int": "3人",
        "money": "1,200元",
        "phone": "138 1234 5678",
        "date": "2016年8月12日",
        "code": f"ST-2024-{seq:03d}",
    }[f.type]


def good_row(kind: str, seq: int = 1) -> dict:
    return {name: good_value(name, seq) for name in catalogue().rosters[kind].fields}


def make_table(kind: str, rows: list[dict], headers: dict[str, str] | None = None) -> SheetTable:
    fields = catalogue().rosters[kind].fields
    records = [{"_row": 5 + i, **{f: r.get(f) for f in fields}} for i, r in enumerate(rows)]
    frame = pd.DataFrame(records, columns=["_row", *fields], dtype=object)
    return SheetTable("Sheet1", kind, 3, headers or {}, frame)


def run(kind: str, rows: list[dict], headers: dict[str, str] | None = None) -> Validation:
    table = make_table(kind, rows, headers)
    frame, findings = normalise_table(table)
    return validate_table(table, frame, findings)


def only(findings, row: int = 5, field_name: str | None = None):
    hits = [f for f in findings if f.row_number == row and (field_name is None or f.field == field_name)]
    assert len(hits) == 1, hits
    return hits[0]


def assert_partition(table: SheetTable, result: Validation) -> None:
    rows = set(table.frame["_row"])
    valid = set(result.valid["_row"])
    rejected = {f.row_number for f in result.rejected}
    assert valid.isdisjoint(rejected)
    assert valid | rejected == rows
    assert len(result.valid) == len(valid)
    assert all(f.severity == ERROR and f.field and f.reason_code for f in result.rejected)
    assert all(re.search(r"[\u4e00-\u9fff]", f.message) for f in [*result.rejected, *result.warnings])
    assert all(f.severity == WARNING and f.row_number in valid for f in result.warnings)


# ---------------------------------------------------------------------------------------- suites


def test_suites_exist_for_every_roster_kind():
    for kind in KINDS:
        assert (EXPECTATIONS / f"{kind}.json").is_file(), kind
    assert suite_path("hardship") == EXPECTATIONS / "hardship.json"


def test_checked_in_suites_are_in_sync_with_rosters_json():
    for kind in KINDS:
        on_disk = (EXPECTATIONS / f"{kind}.json").read_text(encoding="utf-8")
        hint = f"run: python -m rosterlink.validate.suites --write-suites ({kind})"
        assert on_disk == suite_text(kind), hint
    assert main(["--check"]) == 0


def test_suites_load_in_gx_and_every_expectation_carries_field_reason_and_severity():
    import great_expectations as gx

    codes = _messages()
    for kind in KINDS:
        data = json.loads((EXPECTATIONS / f"{kind}.json").read_text(encoding="utf-8"))
        suite = gx.ExpectationSuite(**data)
        assert len(suite.expectations) == len(data["expectations"])
        roster = catalogue().rosters[kind]
        for e in data["expectations"]:
            meta = e["meta"]
            assert meta["field"] in roster.fields
            assert meta["reason_code"] in codes
            assert meta["severity"] in (ERROR, WARNING)
            assert e["severity"] == {"error": "critical", "warning": "warning"}[meta["severity"]]
        not_null = {
            e["kwargs"]["column"]
            for e in data["expectations"]
            if e["type"] == "expect_column_values_to_not_be_null" and "row_condition" not in e["kwargs"]
        }
        assert not_null == set(roster.required)


def test_id_and_town_rules_are_in_the_suite_and_towns_are_a_parameter():
    data = build_suite("hardship")
    by_column = {(e["type"], e["kwargs"]["column"]): e for e in data["expectations"]}
    regex = by_column[("expect_column_values_to_match_regex", "head_id_number")]
    assert regex["kwargs"]["regex"] == "^[1-9][0-9]{16}[0-9X]$"
    town = by_column[("expect_column_values_to_be_in_set", "town")]
    assert town["kwargs"]["value_set"] == {"$PARAMETER": "towns"}
    phone = by_column[("expect_column_values_to_match_regex", "phone")]
    assert phone["meta"]["severity"] == WARNING
    assert "店子镇" not in json.dumps(data, ensure_ascii=False)


def test_write_suites_cli_writes_every_kind(tmp_path):
    assert main(["--write-suites", "--dir", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == KINDS
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "pin.json").write_text("{}", encoding="utf-8")
    assert main(["--check", "--dir", str(tmp_path)]) == 1


# ---------------------------------------------------------------------------------------- good rows


@pytest.mark.parametrize("kind", KINDS)
def test_good_row_passes(kind):
    result = run(kind, [good_row(kind, 1), good_row(kind, 2)])
    assert result.rejected == []
    assert result.warnings == []
    assert list(result.valid["_row"]) == [5, 6]
    assert list(result.valid.columns) == ["_row", *catalogue().rosters[kind].fields]
    row = result.valid.iloc[0]
    for name in catalogue().rosters[kind].fields:
        ftype = catalogue().fields[name].type
        if ftype == "id_number":
            assert row[name] == an_id(1)
        elif ftype == "date":
            assert row[name] == "2016-08-12"
        elif ftype == "phone":
            assert row[name] == "13812345678"


# ---------------------------------------------------------------------------------------- rejections

REQUIRED = [(k, f) for k in KINDS for f in catalogue().rosters[k].required]


@pytest.mark.parametrize(("kind", "name"), REQUIRED)
def test_missing_required_field_rejects_row_with_reason(kind, name):
    bad = good_row(kind, 2) | {name: None}
    header = f"*{catalogue().fields[name].label}(必填)"
    result = run(kind, [good_row(kind, 1), bad], headers={name: header})
    assert list(result.valid["_row"]) == [5]
    finding = only(result.rejected, 6)
    expected = "id_missing" if catalogue().fields[name].type == "id_number" else "required_missing"
    assert (finding.field, finding.reason_code, finding.severity) == (name, expected, ERROR)
    assert finding.message.startswith(f"“{header}”")
    assert "必填" in finding.message or "为空" in finding.message


def test_bad_checksum_id_rejects_with_the_normalisers_reason():
    good = an_id(3)
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    result = run(
        "hardship", [good_row("hardship") | {"head_id_number": bad}], {"head_id_number": "身份证号码"}
    )
    assert result.valid.empty
    finding = only(result.rejected)
    assert (finding.field, finding.reason_code) == ("head_id_number", "id_bad_checksum")
    assert "校验码" in finding.message
    assert bad not in finding.message
    assert finding.value == bad[:6] + "********" + bad[-4:]


def test_id_in_numeric_cell_rejects_row():
    result = run("cadre", [good_row("cadre") | {"id_number": 3.70406197503040e17}])
    finding = only(result.rejected)
    assert (finding.field, finding.reason_code, finding.severity) == ("id_number", "id_numeric_cell", ERROR)
    assert "文本" in finding.message


def test_invalid_optional_id_still_rejects_the_row():
    # the child's ID is optional on the orphan roster, but a wrong ID is never loaded
    result = run("orphan", [good_row("orphan") | {"child_id_number": an_id(4)[:16]}])
    finding = only(result.rejected)
    assert (finding.field, finding.reason_code) == ("child_id_number", "id_bad_length")
    assert "当前为16位" in finding.message
    empty_child_id = run("orphan", [good_row("orphan") | {"child_id_number": None}])
    assert list(empty_child_id.valid["_row"]) == [5]


def test_unknown_town_rejects_row():
    result = run("case", [good_row("case") | {"town": "火星镇"}], {"town": "所属镇街"})
    finding = only(result.rejected)
    assert (finding.field, finding.reason_code) == ("town", "town_unknown")
    assert finding.message.startswith("“所属镇街”的值“火星镇”不在本区镇街名单内")
    assert "店子镇" in finding.message


def test_several_problems_in_one_row_give_several_findings():
    row = good_row("hardship") | {"head_name": "=A1", "head_id_number": None, "town": "火星"}
    result = run("hardship", [row])
    assert {f.field: f.reason_code for f in result.rejected} == {
        "head_name": "name_invalid",
        "head_id_number": "id_missing",
        "town": "town_unknown",
    }


def test_invalid_required_date_rejects_and_optional_date_only_warns():
    future = (TODAY + dt.timedelta(days=10)).isoformat()
    adjustment = run("hardship_adjustment", [good_row("hardship_adjustment") | {"adjustment_date": future}])
    finding = only(adjustment.rejected)
    assert (finding.field, finding.reason_code) == ("adjustment_date", "date_out_of_range")
    member = run("old_member", [good_row("old_member") | {"joined_date": "建国前"}])
    assert member.rejected == []
    warning = only(member.warnings)
    assert (warning.field, warning.reason_code, warning.severity) == ("joined_date", "date_invalid", WARNING)
    assert member.valid.loc[0, "joined_date"] is None


def test_bad_phone_is_only_a_warning():
    result = run("hardship", [good_row("hardship") | {"phone": "12345"}])
    assert result.rejected == []
    assert list(result.valid["_row"]) == [5]
    assert result.valid.loc[0, "phone"] is None
    warning = only(result.warnings)
    assert (warning.field, warning.reason_code, warning.severity) == ("phone", "phone_invalid", WARNING)


def test_unknown_region_code_is_a_warning_and_the_row_loads():
    other = an_id(5, region="110101")
    result = run("cadre", [good_row("cadre") | {"id_number": other}])
    assert result.rejected == []
    assert result.valid.loc[0, "id_number"] == other
    warning = only(result.warnings)
    assert (warning.reason_code, warning.severity) == ("id_region_unknown", WARNING)
    assert other not in warning.message


def test_formula_like_text_is_loaded_with_a_warning():
    result = run("case", [good_row("case") | {"summary": '=HYPERLINK("http://x")'}])
    assert result.rejected == []
    assert result.valid.loc[0, "summary"].startswith("=")
    assert only(result.warnings).reason_code == "text_formula"


def test_invalid_optional_enum_only_warns_but_invalid_required_enum_rejects():
    cadre = run("cadre", [good_row("cadre") | {"sex": "未知"}])
    assert cadre.rejected == []
    assert only(cadre.warnings).reason_code == "enum_invalid"
    cadre = run("cadre", [good_row("cadre") | {"rank": "处长"}])
    finding = only(cadre.rejected)
    assert (finding.field, finding.reason_code) == ("rank", "enum_invalid")
    assert "可填写：正县级" in finding.message


def test_warnings_are_not_reported_for_rejected_rows():
    row = good_row("hardship") | {"phone": "12345", "head_id_number": "坏号码"}
    result = run("hardship", [row])
    assert only(result.rejected).reason_code == "id_bad_chars"
    assert result.warnings == []


def test_valid_keeps_the_index_labels_and_order_of_the_passing_rows():
    rows = [good_row("pin", 1), good_row("pin", 2) | {"cadre_id_number": None}, good_row("pin", 3)]
    result = run("pin", rows)
    assert list(result.valid.index) == [0, 2]
    assert list(result.valid["_row"]) == [5, 7]


def test_values_the_normaliser_let_through_are_still_checked_by_the_suite():
    # a frame that did not come from normalise_table: the suite alone decides
    table = make_table("hardship", [good_row("hardship"), good_row("hardship", 2)])
    frame = pd.DataFrame(
        {
            "_row": [5, 6],
            "head_name": ["张三", "李4"],
            "head_id_number": ["12345", an_id(2)],
            "town": ["店子镇", "火星"],
            "village": [None, None],
            "household_size": [-1, 2],
            "cause": [None, None],
            "income": [None, None],
            "phone": [None, "999"],
        },
        dtype=object,
    )
    result = validate_table(table, frame, [])
    codes = {(f.row_number, f.field): f.reason_code for f in result.rejected}
    assert codes == {
        (5, "head_id_number"): "id_invalid",
        (6, "head_name"): "name_invalid",
        (6, "town"): "town_unknown",
    }
    assert result.valid.empty
    assert "12345" not in only(result.rejected, 5).message


# ---------------------------------------------------------------------------------------- conditional rules


def test_cadre_change_join_requires_rank_and_unit():
    assert CONDITIONAL_REQUIRED["cadre_change"][0]["required"] == ["rank", "unit"]
    join = good_row("cadre_change", 1) | {"change_type": "调入", "rank": None, "unit": None}
    leave = good_row("cadre_change", 2) | {"change_type": "退休", "rank": None, "unit": None}
    result = run("cadre_change", [join, leave])
    assert list(result.valid["_row"]) == [6]
    codes = {(f.row_number, f.field): f.reason_code for f in result.rejected}
    assert codes == {(5, "rank"): "required_when", (5, "unit"): "required_when"}
    assert "“变动类型”为新增/调入/新任时，“职级”为必填项" in only(result.rejected, 5, "rank").message


def test_cadre_change_join_with_unrecognised_rank_rejects_but_leave_only_warns():
    join = good_row("cadre_change", 1) | {"rank": "处长"}
    leave = good_row("cadre_change", 2) | {"change_type": "调离", "rank": "处长"}
    result = run("cadre_change", [join, leave])
    assert list(result.valid["_row"]) == [6]
    assert only(result.rejected, 5).reason_code == "enum_invalid"
    assert only(result.warnings, 6).reason_code == "enum_invalid"


# ---------------------------------------------------------------------------------------- configuration


def test_town_list_comes_from_the_district_config_at_run_time(tmp_path, monkeypatch):
    shutil.copy(spec.PACKAGE_CONFIG / "rosters.json", tmp_path / "rosters.json")
    d = json.loads((spec.PACKAGE_CONFIG / "district.json").read_text(encoding="utf-8"))
    d["towns"] = [*d["towns"], "新城镇"]
    (tmp_path / "district.json").write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    before = run("hardship", [good_row("hardship") | {"town": "新城镇"}])
    assert only(before.rejected).reason_code == "town_unknown"
    monkeypatch.setenv("ROSTERLINK_CONFIG_DIR", str(tmp_path))
    assert "新城镇" in district().towns
    after = run("hardship", [good_row("hardship") | {"town": "新城镇"}])
    assert after.rejected == []
    assert after.valid.loc[0, "town"] == "新城镇"


def test_a_suite_that_cannot_run_is_an_error_not_a_rejection(tmp_path):
    broken = {
        "name": "broken",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "no_such_column"},
                "meta": {"field": "head_name", "reason_code": "required_missing", "severity": "error"},
            }
        ],
    }
    (tmp_path / "hardship.json").write_text(json.dumps(broken), encoding="utf-8")
    table = make_table("hardship", [good_row("hardship")])
    frame, findings = normalise_table(table)
    with pytest.raises(SuiteError):
        validate_table(table, frame, findings, expectations_dir=tmp_path)


def test_empty_sheet_validates_to_nothing():
    result = run("hardship", [])
    assert result.valid.empty
    assert result.rejected == []
    assert result.warnings == []


def test_duplicate_row_numbers_are_refused():
    table = make_table("hardship", [good_row("hardship"), good_row("hardship")])
    table.frame["_row"] = [5, 5]
    frame, findings = normalise_table(table)
    with pytest.raises(ValueError, match="_row"):
        validate_table(table, frame, findings)


def test_expectations_dir_follows_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ROSTERLINK_EXPECTATIONS_DIR", str(tmp_path))
    assert suite_path("pin") == tmp_path.resolve() / "pin.json"


# ---------------------------------------------------------------------------------------- properties, speed

JUNK = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["=1+1", "-", "火星镇", "处长", "12345", "2099-01-01", "3.70406E+17", "abc", "  "]),
    st.floats(allow_nan=True, allow_infinity=False),
    st.integers(min_value=-10, max_value=10**18),
    st.dates(min_value=dt.date(1850, 1, 1), max_value=dt.date(2100, 1, 1)),
)


@st.composite
def roster_rows(draw):
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for i in range(n):
        row = {}
        for name in catalogue().rosters[kind].fields:
            good = good_value(name, i)
            row[name] = draw(st.one_of(st.just(good), JUNK)) if draw(st.booleans()) else good
        rows.append(row)
    return kind, rows


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=roster_rows())
def test_every_row_is_valid_xor_rejected(case):
    kind, rows = case
    table = make_table(kind, rows)
    frame, findings = normalise_table(table)
    result = validate_table(table, frame, findings)
    assert_partition(table, result)
    for f in [*result.rejected, *result.warnings]:
        for text in (f.message, f.value or ""):
            assert not FULL_ID.search(text), f
            assert not FULL_PHONE.search(text), f


def test_fifteen_hundred_rows_validate_quickly():
    rows = []
    for i in range(1500):
        born = dt.date(1960 + i % 40, 1 + i % 12, 1 + i % 28)
        row = good_row("cadre", i) | {"id_number": an_id(i % 1000, born=born)}
        if i % 50 == 0:
            row["id_number"] = row["id_number"][:-1] + ("0" if row["id_number"][-1] != "0" else "1")
        if i % 30 == 0:
            row["phone"] = "12345"
        rows.append(row)
    table = make_table("cadre", rows)
    validate_table(table, *normalise_table(make_table("cadre", rows[:2])))  # warm the GX context
    start = time.perf_counter()
    frame, findings = normalise_table(table)
    result = validate_table(table, frame, findings)
    elapsed = time.perf_counter() - start
    assert_partition(table, result)
    assert len(result.rejected) == 30
    assert len(result.valid) == 1470
    assert elapsed < 3.0, elapsed


# ------------------------------------------------------------------- the night's Data Docs (issues 13-15)
# A real workbook dropped by the civil affairs clerk, through the tasks the DAG calls: a clean
# sheet, and a sheet (named with a phone) whose rows miss an ID number; the file is named with a
# full ID number. Synthetic IDs only.
DOCS_NIGHT = dt.date(2026, 11, 25)
DOCS_HEADERS = ["户主姓名", "身份证号码", "镇街", "村(居)", "家庭人口", "联系电话"]
SHEET_PHONE = "13812345678"


def _hardship_workbook(intake, file_id_number: str):
    import openpyxl

    folder = intake / "civil_affairs"
    folder.mkdir(parents=True)
    wb = openpyxl.Workbook()
    good = wb.active
    good.title = "合格名单"
    bad = wb.create_sheet(f"联系人{SHEET_PHONE}")
    for ws, rows in ((good, range(1, 5)), (bad, range(5, 9))):
        ws.append(["山亭区特困家庭花名册"])
        ws.append(DOCS_HEADERS)
        for seq in rows:
            id_cell = "" if ws is bad and seq % 2 else an_id(seq)  # rows 3 and 5 of the bad sheet: no ID
            ws.append([f"张{'一二三四五六七八'[seq - 1]}", id_cell, "店子镇", "东村", "3", "13912340000"])
    path = folder / f"核对{file_id_number}.xlsx"
    wb.save(path)
    return path


def _docs_night(tmp_path, url: str):
    """One night's files read and validated through ``rosterlink.tasks`` (the DAG's callables)."""
    from rosterlink import tasks
    from rosterlink.core import settings as rl_settings

    intake = tmp_path / "intake"
    _hardship_workbook(intake, an_id(99))
    cfg = rl_settings.load(intake_dir=str(intake), warehouse_url=url, export_dir=str(tmp_path / "exports"))
    tasks.begin_night(cfg, "night-1", DOCS_NIGHT)
    items = [tasks.validate_file(cfg, tasks.read_file(cfg, i)) for i in tasks.scan(cfg, "night-1")]
    assert [i["status"] for i in items] == ["validated"]
    return cfg, items


@pytest.fixture
def docs_night(tmp_path):
    return _docs_night(tmp_path, f"sqlite:///{tmp_path / 'w.db'}")


@pytest.fixture
def docs_night_pg(tmp_path, pg_url):
    return _docs_night(tmp_path, pg_url)


def _site_text(site) -> dict[str, str]:
    return {p.relative_to(site).as_posix(): p.read_text(encoding="utf-8") for p in site.rglob("*.html")}


def test_data_docs_show_statuses_on_the_clerks_columns_offline_and_masked(docs_night):
    from rosterlink.validate import datadocs

    cfg, items = docs_night
    result = datadocs.build_night(cfg, items, as_of=DOCS_NIGHT, run_id="night-1")
    site = datadocs.night_dir(cfg.export_dir, DOCS_NIGHT)
    assert result == {"data_docs": str(site), "sheets": 2}
    pages = _site_text(site)
    index = pages["index.html"]
    # no URL of any kind: nothing to fetch, no icon font, no jQuery
    for name, text in pages.items():
        assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I), name
        assert "<script" not in text, name
        assert "font-awesome" not in text.lower(), name
        assert "$(" not in text, name
        # names masked on every page and in the page file names
        assert not FULL_ID.search(text), name
        assert not FULL_PHONE.search(without_uuids(text)), name
        assert not FULL_ID.search(name)
        assert not FULL_PHONE.search(name)
        # no internal helper column, no nameless data asset
        assert not re.search(r"_(err|region|date)_", text), name
        assert "Data asset" not in text, name
    # the index: one line per sheet, named by department, (masked) file and sheet, with a status
    # in words and a figure per line equal to the rows the night rejected
    assert index.count("<tr class=") == 2
    assert "民政局" in index
    assert f"核对{an_id(99)[:6]}********{an_id(99)[-4:]}.xlsx" in index
    assert "联系人138****5678" in index
    assert re.search(r'<tr class="ok".*?>通过</span>.*?合格名单', index, re.S)
    assert re.search(r'<tr class="bad".*?>未通过</span>.*?联系人138', index, re.S)
    assert 'id="failed-only"' in index
    shown = [int(n) for n in re.findall(r'data-figure="error_rows">(\d+)<', index)]
    assert sum(shown) == items[0]["rows_rejected"] == 2
    # the failing sheet's page: the rule on the ID column as the clerk headed it, row numbers only
    (page,) = [t for n, t in pages.items() if n.startswith("sheets/") and "联系人138" in t]
    failing = re.search(r'<tr class="bad">(.*?)</tr>', page, re.S)
    assert failing
    assert "身份证号码" in failing.group(1)
    assert "必填，不能为空" in failing.group(1)
    assert "整行退回" in failing.group(1)
    assert "第 3、5 行" in failing.group(1)
    assert ">满足</span>" in page  # the rules the sheet met are listed as met


def test_data_docs_are_built_from_the_validate_tasks_results_without_running_a_suite(docs_night, monkeypatch):
    import great_expectations as gx

    from rosterlink import tasks
    from rosterlink.validate import datadocs

    cfg, items = docs_night
    tasks.load(cfg, items)
    tasks.clear_staging(cfg)  # the rows the night read are gone, as after the night's last task

    def no_suite_run(*_a, **_k):
        raise AssertionError("a suite ran again")

    monkeypatch.setattr(gx.ValidationDefinition, "run", no_suite_run)
    monkeypatch.setattr(gx.Checkpoint, "run", no_suite_run)
    result = datadocs.build_night(cfg, items, as_of=DOCS_NIGHT, run_id="night-1")
    assert result["sheets"] == 2
    site = datadocs.night_dir(cfg.export_dir, DOCS_NIGHT)
    sheets = json.loads((site / "results.json").read_text(encoding="utf-8"))["sheets"]
    assert sum(s["error_rows"] for s in sheets) == items[0]["rows_rejected"] == 2
    assert sorted(s["rows"] for s in sheets) == [4, 4]


@pytest.mark.parametrize("night", ["docs_night", pytest.param("docs_night_pg", marks=pytest.mark.postgres)])
def test_a_killed_build_leaves_nothing_and_a_rerun_of_the_night_builds_its_docs(night, request):
    from rosterlink import tasks
    from rosterlink.validate import datadocs

    cfg, items = request.getfixturevalue(night)
    tasks.load(cfg, items)
    # the first run was killed while writing the pages: a half-written .building-* folder, no pages
    root = datadocs.docs_root(cfg.export_dir)
    leftover = root / f".building-{DOCS_NIGHT.isoformat()}-k1ll3d"
    (leftover / "sheets").mkdir(parents=True)
    (leftover / "sheets" / "file000001-1.html").write_text("<html>half", encoding="utf-8")
    site = datadocs.night_dir(cfg.export_dir, DOCS_NIGHT)
    assert not site.exists()
    # the rerun of the night: its files are loaded, nothing new to validate
    tasks.begin_night(cfg, "night-1-rerun", DOCS_NIGHT)
    rerun = [tasks.validate_file(cfg, tasks.read_file(cfg, i)) for i in tasks.scan(cfg, "night-1-rerun")]
    assert rerun == []
    result = datadocs.build_night(cfg, rerun, as_of=DOCS_NIGHT, run_id="night-1-rerun")
    assert result == {"data_docs": str(site), "sheets": 2}
    assert (site / "index.html").is_file()
    assert not [p.name for p in root.iterdir() if p.name.startswith((".building-", ".old-"))]
    assert datadocs.nights_with_docs(cfg.export_dir) == [DOCS_NIGHT.isoformat()]
    # a night with no file of its own still gets no pages
    tasks.begin_night(cfg, "night-2", dt.date(2026, 11, 26))
    assert datadocs.build_night(cfg, [], as_of=dt.date(2026, 11, 26), run_id="night-2")["data_docs"] is None


def test_kept_validation_results_hold_no_full_id_or_phone(docs_night):
    from rosterlink.validate import datadocs

    cfg, _ = docs_night
    (kept,) = datadocs.results_dir(cfg.export_dir).glob("file*.json")
    text = kept.read_text(encoding="utf-8")
    assert not FULL_ID.search(text)
    assert not FULL_PHONE.search(without_uuids(text))
    # the ids are GX's, not data: one that reads as a phone is not taken for one
    assert FULL_PHONE.search('"id": "99637a48-99ac-4416-9558-a17624887838"')
    assert not FULL_PHONE.search(without_uuids('"id": "99637a48-99ac-4416-9558-a17624887838"'))
    assert FULL_PHONE.search(without_uuids('"phone": "17624887838"'))
    assert json.loads(text)["sheets"][0]["result"]["results"]  # GX's own result, kept


# --- the night's date, not the machine's clock ----------------------------------------------------
def test_a_change_dated_after_the_nights_as_of_is_refused_with_the_nights_date(tmp_path, sqlite_url):
    """A night re-run for an earlier date (the machine's clock is later): an exit dated after that
    night must not take effect in it. Through the stages the DAG runs, on a real workbook."""
    from intake_files import intake, ledger, rows, run_stages, write_xlsx

    from rosterlink.warehouse import schema

    as_of = TODAY - dt.timedelta(days=60)
    later = as_of + dt.timedelta(days=15)  # after the night, before the machine's today
    cfg = intake(tmp_path, sqlite_url)
    path = write_xlsx(
        cfg.intake_dir / "civil_affairs" / "特困家庭动态调整名单.xlsx",
        "特困家庭动态调整名单",
        ["调整类型", "户主姓名", "身份证号码", "镇街", "村(居)", "调整日期", "调整原因"],
        [
            ["退出", "张秀英", an_id(1), "店子镇", "东庄村", as_of.isoformat(), "脱困"],
            ["退出", "王秀兰", an_id(2), "店子镇", "东庄村", later.isoformat(), "脱困"],
        ],
    )
    file_id = run_stages(cfg, "civil_affairs", path, as_of)
    entry = ledger(cfg, file_id)
    assert (entry["status"], entry["rows_read"], entry["rows_loaded"], entry["rows_rejected"]) == (
        "loaded",
        2,
        1,
        1,
    )
    (rejected,) = rows(cfg, schema.rejected_row, file_id)
    assert (rejected["row_number"], rejected["field"], rejected["reason_code"]) == (
        4,
        "adjustment_date",
        "date_out_of_range",
    )
    assert f"不能晚于本次处理日期{as_of.isoformat()}" in rejected["message"]
    assert [
        (r["person_name"], r["event"], r["event_date"]) for r in rows(cfg, schema.source_record, file_id)
    ] == [("张秀英", "exit", as_of)]
