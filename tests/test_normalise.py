"""Normalising raw cells: one test per user rule, plus property tests (synthetic data only)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosterlink.core import idnumber
from rosterlink.core.findings import WARNING, severity
from rosterlink.core.masking import mask_phone
from rosterlink.core.spec import catalogue, district
from rosterlink.intake.normalise import (
    excel_serial_to_date,
    normalise_code,
    normalise_date,
    normalise_enum,
    normalise_id,
    normalise_int,
    normalise_money,
    normalise_name,
    normalise_phone,
    normalise_table,
    normalise_text,
    normalise_town,
    normalise_value,
)

TODAY = dt.date.today()
FULL_ID = re.compile(r"[0-9]{15,18}")
FULL_PHONE = re.compile(r"1[3-9][0-9]{9}")


@dataclass
class Table:
    """Stand-in for ``rosterlink.intake.read.SheetTable`` (same attributes, duck typed)."""

    sheet: str
    roster: str
    frame: pd.DataFrame
    header_row: int = 3
    headers: dict[str, str] = field(default_factory=dict)


def table(roster: str, rows: list[dict], headers: dict[str, str] | None = None) -> Table:
    fields = catalogue().rosters[roster].fields
    records = [{"_row": 4 + i, **{f: r.get(f) for f in fields}} for i, r in enumerate(rows)]
    frame = pd.DataFrame(records, columns=["_row", *fields], dtype=object)
    return Table("名单", roster, frame, headers=headers or {})


def an_id(region: str = "370406", born: dt.date = dt.date(1980, 1, 1), seq: int = 123) -> str:
    return idnumber.make(region, born, seq)


def id_ending_in_x() -> str:
    return next(i for s in range(1000) if (i := an_id(seq=s)).endswith("X"))


FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９ｘ")


# ---------------------------------------------------------------------------------------- IDs


@pytest.mark.parametrize(
    "raw",
    [
        370406198001011234,  # an int: Excel never stores this exactly
        3.70406198001012e17,  # what a numeric cell really holds
        370406800101123,  # even 15 digits in a number cell: refused, never trusted
        "3.70406E+17",  # the same cell exported as text
        "3.70406e17",
        "370406198001011000.0",
    ],
)
def test_id_in_numeric_cell_is_rejected_with_reason(raw):
    value, code, _ = normalise_id(raw)
    assert value is None
    assert code == "id_numeric_cell"


def test_id_in_numeric_cell_is_never_rounded_or_reconstructed():
    frame, findings = normalise_table(table("hardship", [{"head_id_number": 3.70406198001012e17}]))
    assert frame.loc[0, "head_id_number"] is None
    (finding,) = findings
    assert finding.reason_code == "id_numeric_cell"
    assert finding.severity == "error"
    assert "文本" in finding.message
    assert "15位" in finding.message
    assert not FULL_ID.search(finding.value or "")


def test_fifteen_digit_id_is_upgraded_to_eighteen():
    value, code, _ = normalise_id("370406800101123")
    assert code is None
    assert value == idnumber.upgrade_15("370406800101123")
    assert len(value) == 18
    assert value.startswith("37040619800101123")
    assert idnumber.is_valid_checksum(value)
    assert idnumber.birth_date(value) == dt.date(1980, 1, 1)


def test_fifteen_digit_id_with_invalid_birth_part_is_not_upgraded():
    value, code, _ = normalise_id("370406801301123")  # month 13
    assert value is None
    assert code == "id_bad_birthdate"


def test_lowercase_x_and_fullwidth_digits_are_normalised():
    good = id_ending_in_x()
    messy = "\u3000" + good.translate(FULLWIDTH) + " "  # full-width digits, full-width x, spaces
    assert normalise_id(messy).value == good
    assert normalise_id(good.lower()).value == good
    assert normalise_id(good[:-1] + "x").code is None


def test_id_spaces_hyphens_and_text_apostrophe_are_stripped():
    good = an_id()
    for raw in (
        f"{good[:6]} {good[6:14]} {good[14:]}",
        f"{good[:6]}-{good[6:14]}-{good[14:]}",
        f"{good[:6]}　{good[6:]}",
        f"'{good}",
        f"{good[:6]}－{good[6:]}",
    ):
        assert normalise_id(raw) == (good, None, {})


def test_bad_checksum_is_rejected():
    good = an_id()
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    value, code, _ = normalise_id(bad)
    assert (value, code) == (None, "id_bad_checksum")
    _, findings = normalise_table(
        table("hardship", [{"head_id_number": bad}], {"head_id_number": "身份证号码"})
    )
    (finding,) = findings
    assert finding.reason_code == "id_bad_checksum"
    assert finding.message.startswith("“身份证号码”最后一位校验码不正确")
    assert bad not in finding.message
    assert bad not in (finding.value or "")
    assert finding.value == bad[:6] + "*" * 8 + bad[-4:]


def test_unknown_region_code_is_warning_only():
    other = an_id(region="110101")
    value, code, _ = normalise_id(other)
    assert value == other
    assert code == "id_region_unknown"
    assert severity("id_region_unknown") == WARNING
    frame, findings = normalise_table(table("hardship", [{"head_id_number": other}]))
    assert frame.loc[0, "head_id_number"] == other
    (finding,) = findings
    assert (finding.reason_code, finding.severity) == ("id_region_unknown", WARNING)
    assert other not in finding.message


def test_known_neighbouring_region_codes_are_accepted_silently():
    for region in district().known_region_codes:
        assert normalise_id(an_id(region=region)).code is None


def test_id_with_wrong_length_reports_its_length():
    value, code, extra = normalise_id(an_id()[:17])
    assert (value, code, extra) == (None, "id_bad_length", {"length": 17})
    _, findings = normalise_table(table("cadre", [{"id_number": "1234567890"}]))
    assert "当前为10位" in findings[0].message


@pytest.mark.parametrize(
    "raw", ["37040619800101123A", "370406*******1234", "身份证丢失", "370406X98001011234"]
)
def test_id_with_other_characters_is_rejected(raw):
    assert normalise_id(raw).code == "id_bad_chars"


def test_id_birth_date_must_be_real_past_and_after_1900():
    not_a_day = "370406198002301234"  # 30 February
    future = idnumber.make("370406", TODAY + dt.timedelta(days=400), 1)
    too_old = idnumber.make("370406", dt.date(1899, 12, 31), 1)
    for raw in (not_a_day[:17] + idnumber.check_digit(not_a_day[:17]), future, too_old):
        assert normalise_id(raw).code == "id_bad_birthdate"


def test_id_starting_with_zero_is_rejected():
    first17 = "070406198001011234"[:17]
    assert normalise_id(first17 + idnumber.check_digit(first17)).code == "id_bad_region"


# ---------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw", ["=张三", "+张三", "-张三", "@张三", '=HYPERLINK("x")'])
def test_name_starting_with_equals_is_rejected(raw):
    assert normalise_name(raw) == (None, "name_invalid", {})


@pytest.mark.parametrize("raw", ["张3", "张三(已故)", "张三,李四", "Zhang#", "张三1", 123, 3.5])
def test_name_with_digits_or_ascii_symbols_is_rejected(raw):
    assert normalise_name(raw).code == "name_invalid"


def test_name_spaces_are_removed_and_middle_dots_kept():
    assert normalise_name(" 张 三 ").value == "张三"
    assert normalise_name("张\u3000三").value == "张三"
    assert normalise_name("买买提·吐尔逊").value == "买买提·吐尔逊"
    for variant in ("買買提・吐尔逊", "买买提•吐尔逊", "买买提‧吐尔逊", "买买提.吐尔逊"):
        assert "·" in normalise_name(variant).value


def test_name_too_long_or_only_dots_is_rejected():
    assert normalise_name("张" * 21).code == "name_invalid"
    assert normalise_name("张" * 20).code is None
    assert normalise_name("·").code == "name_invalid"


def test_empty_name_is_none_without_finding():
    for raw in (None, "", "   ", "\u3000", float("nan")):
        assert normalise_name(raw) == (None, None, {})


# ---------------------------------------------------------------------------------------- towns


def test_towns_accept_full_names_and_unambiguous_short_forms():
    assert normalise_town("店子镇").value == "店子镇"
    assert normalise_town(" 店 子 镇 ").value == "店子镇"
    assert normalise_town("店子").value == "店子镇"
    assert normalise_town("山城").value == "山城街道"
    assert normalise_town("山城街道办事处").value == "山城街道"
    assert normalise_town("山亭区店子镇").value == "店子镇"


def test_unknown_town_is_rejected_with_the_town_list():
    value, code, _ = normalise_town("火星镇")
    assert (value, code) == (None, "town_unknown")
    _, findings = normalise_table(table("hardship", [{"town": "火星镇"}], {"town": "镇(街)"}))
    (finding,) = findings
    assert finding.reason_code == "town_unknown"
    assert "“镇(街)”的值“火星镇”" in finding.message
    assert all(t in finding.message for t in district().towns)


def test_ambiguous_short_town_is_unknown():
    assert normalise_town("东", towns=("东镇", "东街道")).code == "town_unknown"
    assert normalise_town("东镇", towns=("东镇", "东街道")).value == "东镇"


# ---------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "raw",
    [
        "2016年8月12日",
        "2016.8.12",
        "2016/08/12",
        "2016-08-12",
        "20160812",
        "2016 年 8 月 12 日",
        "２０１６－０８－１２",
        "2016-08-12 00:00:00",
        "2016/8/12 0:00",
        dt.datetime(2016, 8, 12, 9, 30),
        dt.date(2016, 8, 12),
        pd.Timestamp("2016-08-12"),
        20160812,
    ],
)
def test_dates_in_office_formats_parse(raw):
    assert normalise_date(raw) == ("2016-08-12", None, {})


def test_excel_serial_date_parses():
    assert normalise_date(42594).value == "2016-08-12"
    assert normalise_date(42594.75).value == "2016-08-12"  # a time of day is dropped
    assert normalise_date("42594").value == "2016-08-12"  # the serial exported as text
    assert excel_serial_to_date(1) == dt.date(1900, 1, 1)
    assert excel_serial_to_date(59) == dt.date(1900, 2, 28)
    assert excel_serial_to_date(60) is None  # Lotus' 29 February 1900 never existed
    assert excel_serial_to_date(61) == dt.date(1900, 3, 1)


def test_month_only_date_is_first_of_month():
    assert normalise_date("2016年8月").value == "2016-08-01"
    assert normalise_date("1945.10").value == "1945-10-01"


@pytest.mark.parametrize("raw", ["去年", "2016年", "2016-02-30", "16.8.12", "abc", 2016, 1945.1, True, 0])
def test_unparseable_date_is_invalid(raw):
    assert normalise_date(raw) == (None, "date_invalid", {})


def test_date_before_1900_or_in_the_future_is_out_of_range():
    today = dt.date.today()  # not the module's TODAY: a run that crosses midnight must not fail
    assert normalise_date("1899-12-31").code == "date_out_of_range"
    assert normalise_date(today + dt.timedelta(days=1)).code == "date_out_of_range"
    assert (
        normalise_date((today + dt.timedelta(days=30)).strftime("%Y年%m月%d日")).code == "date_out_of_range"
    )
    assert normalise_date(today).value == today.isoformat()
    # the night's date decides, when given
    assert normalise_date("2026-12-02", today=dt.date(2026, 12, 1)).code == "date_out_of_range"
    assert normalise_date("2026-12-01", today=dt.date(2026, 12, 1)).value == "2026-12-01"


# ---------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        (13812345678.0, "13812345678"),
        (13812345678, "13812345678"),
        ("13812345678.0", "13812345678"),
        ("0632-1234567", "06321234567"),
        ("(0632)1234567", "06321234567"),
        ("13812345678/13912345678", "13812345678"),
    ],
)
def test_phone_normalises_or_is_flagged(raw, expected):
    assert normalise_phone(raw) == (expected, None, {})


@pytest.mark.parametrize("raw", ["12345", "1234567", "23812345678", "电话坏了", 12.5, "138123456789"])
def test_bad_phone_is_flagged_as_warning_and_dropped(raw):
    assert normalise_phone(raw) == (None, "phone_invalid", {})
    assert severity("phone_invalid") == WARNING


def test_bad_phone_finding_is_masked():
    _, findings = normalise_table(table("hardship", [{"phone": "138123456789"}]))
    (finding,) = findings
    assert finding.severity == WARNING
    assert finding.value == mask_phone("138123456789")
    assert "138123456789" not in finding.message


# ---------------------------------------------------------------------------------------- enums


def test_rank_words_map_to_three_ranks():
    for word in ("正县级", "副县级", "县级"):
        assert normalise_enum(word, "rank").value == "county"
    for word in ("正科级", "副科级"):
        assert normalise_enum(word, "rank").value == "section"
    for word in ("科员", "办事员", "一般干部"):
        assert normalise_enum(word, "rank").value == "ordinary"
    assert normalise_enum(" 副 科 级 ", "rank").value == "section"
    assert normalise_enum("section", "rank").value == "section"  # already a code


def test_every_configured_enum_word_maps_to_its_code():
    for name, codes in catalogue().enums.items():
        for code, words in codes.items():
            for word in words:
                assert normalise_enum(word, name) == (code, None, {})


def test_other_enums_map_to_codes():
    assert normalise_enum("新增", "adjustment_type").value == "add"
    assert normalise_enum("脱困", "adjustment_type").value == "exit"
    assert normalise_enum("调离", "change_type").value == "leave"
    assert normalise_enum("新增", "change_type").value == "join"
    assert normalise_enum("已化解", "case_status").value == "closed"
    assert normalise_enum("在办", "case_status").value == "open"
    assert normalise_enum("男", "sex").value == "M"
    assert normalise_enum("女", "sex").value == "F"


def test_unknown_enum_word_lists_the_choices():
    value, code, extra = normalise_enum("处长", "rank")
    assert (value, code) == (None, "enum_invalid")
    assert "正科级" in extra["choices"]
    assert "科员" in extra["choices"]
    _, findings = normalise_table(table("cadre", [{"rank": "处长"}], {"rank": "职 级"}))
    (finding,) = findings
    assert "“职 级”的值“处长”无法识别，可填写：正县级、" in finding.message


# ---------------------------------------------------------------------------------------- numbers, text


@pytest.mark.parametrize(
    ("raw", "expected"), [("3", 3), (3, 3), (3.0, 3), ("3人", 3), (" 4 口 ", 4), ("1,234", 1234)]
)
def test_int_accepts_numbers_and_units(raw, expected):
    assert normalise_int(raw) == (expected, None, {})


@pytest.mark.parametrize("raw", ["三人", 3.5, "-1", -2, "3-4", True])
def test_bad_int_is_rejected(raw):
    assert normalise_int(raw).code == "int_invalid"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1,234.5元", 1234.5), ("1234", 1234.0), (1200, 1200.0), (99.5, 99.5), ("￥800", 800.0)],
)
def test_money_accepts_separators_and_yuan(raw, expected):
    value, code, _ = normalise_money(raw)
    assert code is None
    assert value == expected
    assert isinstance(value, float)


@pytest.mark.parametrize("raw", ["约一千", "-5", "1.2.3", float("inf")])
def test_bad_money_is_rejected(raw):
    assert normalise_money(raw).code == "money_invalid"


def test_text_is_trimmed_and_formula_is_kept_but_flagged():
    assert normalise_text("  东村（一组） ") == ("东村(一组)", None, {})
    assert normalise_text("=SUM(A1:A3)") == ("=SUM(A1:A3)", "text_formula", {})
    assert normalise_text("@cmd") == ("@cmd", "text_formula", {})
    assert severity("text_formula") == WARNING
    assert normalise_text(12.0).value == "12"


def test_code_is_compacted_and_uppercased():
    assert normalise_code(" st-2024 -001 ").value == "ST-2024-001"
    assert normalise_code("山信〔2024〕12号").value == "山信〔2024〕12号"
    assert normalise_code(1001.0).value == "1001"
    assert normalise_code("=1+1").code == "code_invalid"


# ---------------------------------------------------------------------------------------- tables


def test_normalise_table_keeps_rows_order_and_row_numbers():
    rows = [
        {
            "name": "张三",
            "sex": "男",
            "id_number": an_id(seq=1),
            "unit": "区民政局",
            "rank": "副科级",
            "linked_town": "店子",
            "phone": 13812345678.0,
        },
        {"name": None, "sex": None, "id_number": None, "unit": None, "rank": None},
        {"name": "李四", "rank": "科员", "id_number": f" {an_id(seq=2)} "},
    ]
    t = table("cadre", rows)
    t.frame.index = [10, 11, 12]
    frame, findings = normalise_table(t)
    assert list(frame.columns) == ["_row", *catalogue().rosters["cadre"].fields]
    assert list(frame["_row"]) == [4, 5, 6]
    assert list(frame.index) == [10, 11, 12]
    assert all(frame[c].dtype == object for c in frame.columns if c != "_row")
    assert frame.loc[10, "rank"] == "section"
    assert frame.loc[10, "sex"] == "M"
    assert frame.loc[10, "linked_town"] == "店子镇"
    assert frame.loc[10, "phone"] == "13812345678"
    assert frame.loc[11].drop("_row").isna().all()
    assert frame.loc[12, "id_number"] == an_id(seq=2)
    assert findings == []


def test_fields_missing_from_the_sheet_are_none():
    t = Table("名单", "hardship", pd.DataFrame({"_row": [4], "head_name": ["张三"]}, dtype=object))
    frame, findings = normalise_table(t)
    assert frame.loc[0, "head_name"] == "张三"
    assert frame.loc[0, "phone"] is None
    assert findings == []


def test_finding_uses_header_as_written_else_the_label():
    rows = [{"head_name": "=x", "town": "火星"}]
    _, findings = normalise_table(table("hardship", rows, {"head_name": "*户主 姓名"}))
    by_field = {f.field: f for f in findings}
    assert by_field["head_name"].message.startswith("“*户主 姓名”")
    assert by_field["town"].message.startswith("“镇街”")  # no header given: the field label
    assert all(f.sheet == "名单" and f.row_number == 4 for f in findings)


def test_findings_never_carry_a_full_id_or_phone():
    good = an_id(seq=7)
    rows = [
        {"head_id_number": good[:-1] + ("0" if good[-1] != "0" else "1"), "phone": "138123456789"},
        {"head_id_number": good + "1", "phone": "1381234567"},
        {"head_id_number": an_id(region="110101"), "phone": "13812345678 转 3"},
        {"head_id_number": good[:15] + "ABC"},
    ]
    _, findings = normalise_table(table("hardship", rows))
    assert len(findings) >= 6
    for f in findings:
        for text in (f.message, f.value or ""):
            assert not FULL_ID.search(text), f
            assert not FULL_PHONE.search(text), f


# ---------------------------------------------------------------------------------------- properties

ANY_CELL = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet="0123456789０１２３ xX-.年月日/:Ee+", max_size=25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.decimals(allow_nan=False),
)
FIELD_TYPES = sorted({f.type for f in catalogue().fields.values()})


@settings(max_examples=300, deadline=None)
@given(raw=ANY_CELL, field_type=st.sampled_from(FIELD_TYPES))
def test_normalisers_never_raise_and_return_a_triple(raw, field_type):
    value, code, extra = normalise_value(field_type, raw)
    assert isinstance(extra, dict)
    if code is None:
        assert value is None or isinstance(value, (str, int, float))
    assert code != "unknown"  # "unknown" marks a normaliser bug caught by the safety net


@settings(max_examples=200, deadline=None)
@given(raw=ANY_CELL)
def test_each_normaliser_never_raises(raw):
    for fn in (
        normalise_id,
        normalise_name,
        normalise_town,
        normalise_date,
        normalise_phone,
        normalise_int,
        normalise_money,
        normalise_text,
        normalise_code,
    ):
        result = fn(raw)
        assert len(result) == 3
    assert len(normalise_enum(raw, "rank")) == 3


@settings(max_examples=300, deadline=None)
@given(
    region=st.integers(min_value=100000, max_value=999999).map(str),
    born=st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY),
    seq=st.integers(min_value=0, max_value=999),
    spaced=st.booleans(),
    wide=st.booleans(),
)
def test_seventeen_digits_and_correct_check_digit_round_trip(region, born, seq, spaced, wide):
    good = idnumber.make(region, born, seq)
    raw = good.lower()
    if spaced:
        raw = f"{raw[:6]} {raw[6:14]} {raw[14:]}"
    if wide:
        raw = raw.translate(str.maketrans("0123456789x", "０１２３４５６７８９ｘ"))
    value, code, _ = normalise_id(raw)
    assert value == good
    assert code in (None, "id_region_unknown")
    assert (code is None) == (region in district().known_region_codes)


@settings(max_examples=300, deadline=None)
@given(first17=st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_any_id_with_correct_check_digit_is_kept_exactly_or_refused_for_its_date_or_region(first17):
    raw = first17 + idnumber.check_digit(first17)
    value, code, _ = normalise_id(raw)
    assert value in (None, raw)
    if value is None:
        assert code in ("id_bad_birthdate", "id_bad_region")


@settings(max_examples=300, deadline=None)
@given(raw=ANY_CELL)
def test_parsed_dates_are_iso_and_in_range(raw):
    value, code, _ = normalise_date(raw)
    if value is not None:
        day = dt.date.fromisoformat(value)
        assert dt.date(1900, 1, 1) <= day <= TODAY
        assert code is None


@settings(max_examples=300, deadline=None)
@given(raw=ANY_CELL)
def test_normalised_phones_are_digits_of_a_valid_shape(raw):
    value, _, _ = normalise_phone(raw)
    if value is not None:
        assert re.fullmatch(r"1[3-9][0-9]{9}|0[1-9][0-9]{8,10}", value)


@settings(max_examples=100, deadline=None)
@given(cells=st.lists(st.tuples(ANY_CELL, ANY_CELL, ANY_CELL), min_size=0, max_size=8))
def test_normalise_table_keeps_every_row(cells):
    rows = [{"head_name": a, "head_id_number": b, "phone": c} for a, b, c in cells]
    frame, findings = normalise_table(table("hardship", rows))
    assert len(frame) == len(rows)
    assert list(frame["_row"]) == [4 + i for i in range(len(rows))]
    assert {f.row_number for f in findings} <= set(frame["_row"])


# --- a child's ID number where a grown-up's belongs ---------------------------------------------------
def test_a_childs_id_as_guardian_or_head_is_rejected_and_never_stored(tmp_path, sqlite_url):
    """The orphan list with the child's ID typed into the guardian's column, and a hardship list
    whose 户主 is 9 on the night's date: each row rejected with its age and a reason, the number
    kept nowhere; the grown-ups' rows load."""
    import sqlalchemy as sa
    from intake_files import intake, ledger, rows, run_stages, write_xlsx

    from rosterlink import warehouse
    from rosterlink.warehouse import schema

    as_of = dt.date(2026, 11, 25)
    child = an_id(born=dt.date(2017, 6, 1), seq=301)  # 9 on the night
    nearly = an_id(born=dt.date(2008, 11, 26), seq=302)  # 18 tomorrow: still a minor tonight
    grown = an_id(born=dt.date(2008, 11, 25), seq=303)  # 18 today
    gran = an_id(born=dt.date(1956, 2, 3), seq=304)
    cfg = intake(tmp_path, sqlite_url)
    orphan = write_xlsx(
        cfg.intake_dir / "womens_federation" / "失亲儿童家庭名单.xlsx",
        "失亲儿童家庭名单",
        ["儿童姓名", "儿童身份证号", "监护人姓名", "监护人身份证号", "与儿童关系", "镇街", "村(居)"],
        [
            ["刘小明", child, "刘桂芳", child, "祖母", "店子镇", "东庄村"],
            ["王小红", None, "王秀兰", gran, "祖母", "店子镇", "东庄村"],
        ],
    )
    hardship = write_xlsx(
        cfg.intake_dir / "civil_affairs" / "特困家庭名单.xlsx",
        "特困家庭名单",
        ["户主姓名", "身份证号码", "镇街", "村(居)"],
        [
            ["张小宝", child, "店子镇", "西庄村"],
            ["李明", nearly, "店子镇", "西庄村"],
            ["赵刚", grown, "店子镇", "西庄村"],
        ],
    )
    ids = [
        run_stages(cfg, "womens_federation", orphan, as_of),
        run_stages(cfg, "civil_affairs", hardship, as_of),
    ]
    assert [(ledger(cfg, i)["rows_loaded"], ledger(cfg, i)["rows_rejected"]) for i in ids] == [(1, 1), (1, 2)]
    rejected = sorted(
        (r["row_number"], r["field"], r["reason_code"], r["message"], r["value"])
        for i in ids
        for r in rows(cfg, schema.rejected_row, i)
    )
    assert [r[:3] for r in rejected] == [
        (3, "guardian_id_number", "id_minor_as_adult"),
        (3, "head_id_number", "id_minor_as_adult"),
        (4, "head_id_number", "id_minor_as_adult"),
    ]
    assert "未满18周岁（9岁）" in rejected[0][3]
    assert "未满18周岁（17岁）" in rejected[2][3]
    assert all(r[4] is None for r in rejected)
    with warehouse.connect(sqlite_url).connect() as conn:
        stored = [
            str(v)
            for table in (schema.source_record, schema.staged_row, schema.rejected_row, schema.row_warning)
            for row in conn.execute(sa.select(table)).all()
            for v in row
        ]
        names = conn.execute(sa.select(schema.source_record.c.person_name)).scalars().all()
    assert sorted(names) == ["王秀兰", "赵刚"]
    for number in (child, nearly):
        assert not any(number in v or number[-6:] in v for v in stored)


# --- one row per family member -------------------------------------------------------------------------
def test_a_roster_with_a_row_per_family_member_makes_one_household_per_head(tmp_path, sqlite_url):
    """户主姓名, 成员姓名, 与户主关系 and each member's ID number: the head's own row is the household,
    the members' rows are grouped under it (each accounted for, with a reason), a family without
    the head's own row is named; no member becomes a household, no member's ID is kept."""
    import sqlalchemy as sa
    from intake_files import intake, ledger, rows, run_stages, write_xlsx

    from rosterlink import tasks, warehouse
    from rosterlink.warehouse import schema

    head = an_id(born=dt.date(1962, 4, 5), seq=401)
    wife = an_id(born=dt.date(1964, 8, 9), seq=402)
    son = an_id(born=dt.date(2015, 1, 2), seq=403)
    other_wife = an_id(born=dt.date(1970, 3, 3), seq=404)
    cfg = intake(tmp_path, sqlite_url)
    path = write_xlsx(
        cfg.intake_dir / "civil_affairs" / "特困家庭成员名单.xlsx",
        "特困家庭成员名单",
        ["户主姓名", "成员姓名", "与户主关系", "身份证号码", "镇街", "村(居)"],
        [
            ["张建国", "张建国", "户主", head, "店子镇", "东庄村"],
            ["张建国", "李桂兰", "妻子", wife, "店子镇", "东庄村"],
            ["张建国", "张小宝", "儿子", son, "店子镇", "东庄村"],
            ["王明", "赵秀英", "妻子", other_wife, "店子镇", "西庄村"],
        ],
    )
    file_id = run_stages(cfg, "civil_affairs", path, dt.date(2026, 11, 25))
    tasks.link(cfg)
    entry = ledger(cfg, file_id)
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_rejected"]) == (4, 1, 3)
    rejected = sorted(
        (r["row_number"], r["reason_code"], r["message"]) for r in rows(cfg, schema.rejected_row, file_id)
    )
    assert [r[:2] for r in rejected] == [(4, "member_row"), (5, "member_row"), (6, "member_row_no_head")]
    assert "户主“张建国”家的家庭成员（妻子），已归入该户" in rejected[0][2]
    assert "没有户主本人的一行" in rejected[2][2]
    with warehouse.connect(sqlite_url).connect() as conn:
        households = conn.execute(
            sa.select(schema.household.c.head_name, schema.household.c.head_id_number)
        ).all()
        (attrs,) = conn.execute(sa.select(schema.source_record.c.attrs)).scalars().all()
        stored = [
            str(v)
            for table in (schema.source_record, schema.staged_row, schema.rejected_row, schema.household)
            for row in conn.execute(sa.select(table)).all()
            for v in row
        ]
    assert [tuple(h) for h in households] == [("张建国", head)]
    assert '"household_size": 3' in attrs
    for number in (wife, son, other_wife):
        assert not any(number in v for v in stored)


def test_a_cell_is_cleaned_alike_with_or_without_the_shortcut_for_every_character():
    """The shortcut that skips cleaning an already clean cell gives what cleaning it gives, for
    every Unicode character, alone, between letters and at either end."""
    from rosterlink.intake.normalise import _clean_str, _clean_str_fully

    for code in range(0x110000):
        ch = chr(code)
        for text in (ch, f" 张{ch}三 ", f"{ch}ab", f"ab{ch}"):
            assert _clean_str(text) == _clean_str_fully(text), hex(code)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("household_size", [3, 3.0, True, "3", "3人", 0.0, -0.0, 0, "0", None, float("nan")]),
        ("income", [0.0, -0.0, 0, "0", 1.5, "1.5", True, 1, 1.0]),
        ("town", ["店子", "店子镇", " 店子镇 ", 1, 1.0, True, None, "", "-"]),
    ],
)
def test_a_value_repeated_down_a_column_is_normalised_as_it_is_alone(field, values):
    """Equal cells of different types (1, 1.0 and True; 0.0 and -0.0) are each normalised as
    themselves, however often and in whatever order they repeat down a column."""
    spec = catalogue().fields[field]
    column = values * 700  # past the rows after which a column that hardly repeats stops keeping
    rows = pd.DataFrame({"_row": range(2, len(column) + 2), field: pd.Series(column, dtype=object)})
    table = Table("s", "hardship", rows)
    frame, _ = normalise_table(table, dt.date(2026, 1, 1))
    alone = [normalise_value(spec.type, v, today=dt.date(2026, 1, 1)).value for v in column]
    got = list(frame[field])
    assert [(type(v), repr(v)) for v in got] == [(type(v), repr(v)) for v in alone]


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_the_check_digit_is_the_standards_weighted_sum(first17):
    """GB 11643's check digit: the weights 2^(17-i) mod 11, the sum's remainder mapped to 1 0 X 9 8
    7 6 5 4 3 2; and the standard's own examples."""
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    assert idnumber.check_digit(first17) == "10X98765432"[total % 11]
    assert idnumber.check_digit("11010519491231002") == "X"
    assert idnumber.check_digit("44052418800101001") == "4"


def test_a_check_digit_of_anything_but_seventeen_digits_fails_as_before():
    with pytest.raises(ValueError, match="longer"):
        idnumber.check_digit("1234")
    with pytest.raises(ValueError, match="invalid literal"):
        idnumber.check_digit("1101051949123100²")  # a digit to str.isdigit, not to int()
    assert not idnumber.is_valid_checksum("11010519491231002x")


def test_a_cell_starting_with_a_digit_or_a_chinese_character_is_never_blank_for_every_character():
    """is_blank's shortcut (a cell starting with 0-9 or a CJK ideograph is not blank) agrees with
    cleaning the cell and looking, whatever character follows."""
    from rosterlink.intake.normalise import _NULL_WORDS, _PLACEHOLDER, _clean_str_fully, is_blank

    for first in ("0", "\u4e00", "\u9fff"):
        for code in range(0x110000):
            text = first + chr(code)
            cleaned = _clean_str_fully(text)
            assert is_blank(text) == (
                cleaned == "" or cleaned in _NULL_WORDS or bool(_PLACEHOLDER.match(cleaned))
            )


def test_a_column_that_repeats_early_and_not_later_is_normalised_alike_past_the_memo_limit(monkeypatch):
    """The column memo stops keeping values at its limit, and the values past it are normalised
    as they are alone."""
    monkeypatch.setattr("rosterlink.intake.normalise._ColumnMemo.MAX_KEPT", 10)
    column = ["3"] * 2500 + [str(i % 40) for i in range(2500)] + [3.0, "3人", None] * 10
    rows = pd.DataFrame(
        {"_row": range(2, len(column) + 2), "household_size": pd.Series(column, dtype=object)}
    )
    frame, _ = normalise_table(Table("s", "hardship", rows), dt.date(2026, 1, 1))
    assert list(frame["household_size"]) == [normalise_int(v).value for v in column]


def test_a_chinese_name_takes_the_shortcut_only_where_the_full_check_agrees_for_every_ideograph():
    """normalise_name's shortcut (CJK ideographs only, up to 20: kept as written) gives what every
    step gives, for every character of the CJK block alone, in a name, at the length limit and
    past it; and a name that is not all ideographs takes the full check."""
    from rosterlink.intake.normalise import NAME_MAX, _normalise_name_fully, normalise_name

    for code in range(0x4E00, 0xA000):
        ch = chr(code)
        for name in (ch, f"张{ch}", ch * NAME_MAX, ch * (NAME_MAX + 1)):
            assert normalise_name(name) == _normalise_name_fully(name), hex(code)
    for name in ("张·三", "张 三", " 张三", "张三\u200b", "张三1", "=张三", "㐀张", "\uf900三"):
        assert normalise_name(name) == _normalise_name_fully(name), name


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789Xx", min_size=17, max_size=19),
        st.text(alphabet="0123456789Xx -'\u3000０", max_size=20),
        st.builds(
            lambda region, born, seq: idnumber.make(region, born, seq),
            st.sampled_from(["370406", "370402", "110101", "010101", "999999"]),
            st.dates(dt.date(1890, 1, 1), dt.date(2030, 12, 31)),
            st.integers(0, 999),
        ),
    ),
    st.sampled_from([None, ("370406",), ()]),
    st.sampled_from([None, dt.date(2000, 1, 1)]),
)
def test_an_id_number_takes_the_shortcut_only_where_every_step_agrees(raw, regions, today):
    """normalise_id's shortcut (17 ASCII digits and a digit or X: straight to the number's own
    checks) gives what every cleaning step and check gives, findings included."""
    from rosterlink.intake.normalise import _normalise_id_fully, normalise_id

    assert normalise_id(raw, regions, today) == _normalise_id_fully(raw, regions, today)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789+- １", min_size=9, max_size=14))
def test_a_phone_number_takes_the_shortcut_only_where_every_step_agrees(raw):
    """normalise_phone's shortcut (11 ASCII digits, a mobile number as written) gives what every
    step gives."""
    from rosterlink.intake.normalise import _normalise_phone_fully, normalise_phone

    assert normalise_phone(raw) == _normalise_phone_fully(raw)
    mobile = "1" + raw[:10].rjust(10, "3")
    assert normalise_phone(mobile) == _normalise_phone_fully(mobile)
