"""The one workbook writer (rosterlink.core.workbook), read back with openpyxl."""

from __future__ import annotations

import datetime as dt
import zipfile

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosterlink.core import workbook
from rosterlink.core.workbook import BOLD, GREEN, HEADER, PERCENT, PLAIN, RED, TITLE, TOP, WRAP, Book, Style

STAMP = dt.datetime(2026, 11, 25)
FULL_ID = "370406195001011234"


def _sheet_xml(path, n: int = 1) -> str:
    with zipfile.ZipFile(path) as z:
        return z.read(f"xl/worksheets/sheet{n}.xml").decode("utf-8")


@pytest.mark.parametrize("value", ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)", "=1+1"])
def test_a_string_that_looks_like_a_formula_is_written_as_text(tmp_path, value):
    book = Book(stamp=STAMP)
    book.sheet("s").row((value,))
    target = book.save(tmp_path / "f.xlsx")
    assert "<f>" not in _sheet_xml(target)
    cell = openpyxl.load_workbook(target)["s"]["A1"]
    assert cell.data_type == "s"
    assert cell.value == "'" + value


def test_id_and_phone_numbers_in_strings_are_masked_unless_the_book_says_not_to(tmp_path):
    text = f"户主{FULL_ID}，电话13912345678"
    masked = Book(stamp=STAMP)
    masked.sheet("s").row((text,))
    plain = Book(stamp=STAMP, mask=False)
    plain.sheet("s").row((text,))
    a = openpyxl.load_workbook(masked.save(tmp_path / "a.xlsx"))["s"]["A1"].value
    b = openpyxl.load_workbook(plain.save(tmp_path / "b.xlsx"))["s"]["A1"].value
    assert a == "户主370406********1234，电话139****5678"
    assert b == text


def test_unmasked_strings_are_still_defused_and_stripped_of_characters_xml_cannot_hold(tmp_path):
    book = Book(stamp=STAMP, mask=False)
    book.sheet("s").row(("=1+1\x07",))
    assert openpyxl.load_workbook(book.save(tmp_path / "f.xlsx"))["s"]["A1"].value == "'=1+1"


def test_a_table_longer_than_the_row_limit_continues_on_sheets_with_the_same_header(tmp_path, monkeypatch):
    """Excel holds 1,048,576 rows a sheet; the rows go on, in order, on ``<title>(2)``, ``<title>(3)``
    ... each with the header row, frozen and filtered like the first."""
    monkeypatch.setattr(workbook, "MAX_SHEET_ROWS", 4)  # header + 3 data rows per sheet
    book = Book(stamp=STAMP)
    sheet = book.sheet("本次变化", (10, 10), columns=("序号", "姓名"))
    for i in range(8):
        sheet.row((i + 1, f"张{i + 1}"))
    book.sheet("说明").row(("end",))
    wb = openpyxl.load_workbook(book.save(tmp_path / "long.xlsx"))
    assert wb.sheetnames == ["本次变化", "本次变化(2)", "本次变化(3)", "说明"]
    seen = []
    for name in wb.sheetnames[:3]:
        ws = wb[name]
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0] == ("序号", "姓名"), name
        assert len(rows) <= 4
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:B{len(rows)}"
        seen += [r[0] for r in rows[1:]]
    assert seen == list(range(1, 9))


def test_a_long_sheet_title_keeps_its_suffix_within_31_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "MAX_SHEET_ROWS", 2)
    book = Book(stamp=STAMP)
    sheet = book.sheet("很长的工作表名称" * 5, columns=("a",))
    for i in range(3):
        sheet.row((i,))
    names = openpyxl.load_workbook(book.save(tmp_path / "t.xlsx")).sheetnames
    assert [len(n) for n in names] == [31, 31, 31]
    assert names[1].endswith("(2)")
    assert names[2].endswith("(3)")


def test_styles_reach_the_cell(tmp_path):
    book = Book(stamp=STAMP)
    sheet = book.sheet("s", columns=("名称", "比例"))
    sheet.row(("标题",), TITLE)
    sheet.row(("缺", 0.25), RED | BOLD, styles={1: PERCENT})
    sheet.row(("很长的说明",), WRAP)
    sheet.row((dt.date(2026, 11, 25), None), GREEN)
    ws = openpyxl.load_workbook(book.save(tmp_path / "s.xlsx"))["s"]
    header = ws["A1"]
    assert header.font.b
    assert header.fill.fgColor.rgb == "FFDDEBF7"
    assert ws["A2"].font.b
    assert ws["A2"].font.sz == 14
    for ref in ("A3", "B3"):
        assert ws[ref].fill.fill_type == "solid"
        assert ws[ref].fill.fgColor.rgb == "FFFFC7CE"
        assert ws[ref].font.b
    assert ws["B3"].number_format == "0.0%"
    assert ws["A3"].number_format == "General"
    assert ws["A4"].alignment.wrap_text
    assert ws["A4"].alignment.vertical == "top"
    assert ws["A5"].number_format == "yyyy-mm-dd"
    assert ws["A5"].fill.fgColor.rgb == "FFC6EFCE"
    assert ws["B5"].value is None  # an empty cell with a fill is a blank cell that shows the fill
    assert ws["B5"].fill.fgColor.rgb == "FFC6EFCE"


def test_a_row_beside_a_wrapped_cell_can_read_from_the_top(tmp_path):
    book = Book(stamp=STAMP)
    sheet = book.sheet("s", columns=("编号", "依据"))
    sheet.row((7, "很长的说明"), TOP, styles={1: WRAP})
    ws = openpyxl.load_workbook(book.save(tmp_path / "s.xlsx"))["s"]
    assert ws["A2"].alignment.vertical == "top"
    assert not ws["A2"].alignment.wrap_text
    assert ws["B2"].alignment.vertical == "top"
    assert ws["B2"].alignment.wrap_text


def test_values_are_shown_as_people_read_them(tmp_path):
    book = Book(stamp=STAMP)
    sheet = book.sheet("s")
    sheet.row((True, False, float("nan"), dt.datetime(2026, 11, 25, 8, 30), 3, None, ""))
    ws = openpyxl.load_workbook(book.save(tmp_path / "v.xlsx"))["s"]
    assert [c.value for c in ws[1]][:5] == ["是", "否", "nan", dt.datetime(2026, 11, 25, 8, 30), 3]
    assert ws["C1"].data_type == "s"
    assert ws["D1"].number_format == "yyyy-mm-dd hh:mm"
    assert ws.max_column == 5  # None and "" without a fill write no cell


def test_style_combination_adds_bold_and_wrap_and_takes_the_right_hand_fill_and_format():
    combined = [RED | BOLD, HEADER | RED, BOLD | PERCENT, WRAP | PLAIN, TITLE | BOLD]
    assert combined == [
        Style(fill="#FFC7CE", bold=True),
        Style(fill="#FFC7CE", bold=True),
        Style(bold=True, num_format="0.0%"),
        Style(wrap=True),
        Style(bold=True, size=14),
    ]


def test_one_format_per_style_in_order_of_first_use():
    book = Book(stamp=STAMP)
    sheet = book.sheet("s")
    a = sheet.cell("x", RED)
    b = sheet.cell("y", RED)
    c = sheet.cell(dt.date(2026, 1, 1), RED)
    assert a is not None
    assert b is not None
    assert c is not None
    assert a[1] is b[1]
    assert c[1] is not a[1]
    assert sheet.cell("z")[1] is None  # a plain cell has no format at all


def test_the_same_content_gives_the_same_bytes_with_the_stamp_as_creation_time(tmp_path):
    def write(name: str):
        book = Book(stamp=STAMP)
        book.sheet("s", columns=("a",)).row(("b",), RED)
        return book.save(tmp_path / name)

    first, second = write("1.xlsx"), write("2.xlsx")
    assert first.read_bytes() == second.read_bytes()
    props = openpyxl.load_workbook(first).properties
    assert props.created == STAMP
    assert props.creator == "rosterlink"


def test_a_failure_before_the_replace_keeps_the_previous_workbook_and_no_temp_file(tmp_path):
    target = tmp_path / "w.xlsx"
    target.write_bytes(b"last night")

    def fail() -> None:
        raise OSError("no space left on device")

    book = Book(stamp=STAMP, before_replace=fail)
    book.sheet("s").row(("x",))
    with pytest.raises(OSError, match="no space"):
        book.save(target)
    assert target.read_bytes() == b"last night"
    assert [p.name for p in tmp_path.iterdir()] == ["w.xlsx"]


def test_file_names_and_dates_of_the_night():
    assert workbook.date_tag(dt.date(2026, 11, 5)) == "20261105"
    assert workbook.midnight(dt.date(2026, 11, 5)) == dt.datetime(2026, 11, 5, 0, 0)
    assert workbook.sheet_title("a/b:c", []) == "a_b_c"
    assert workbook.sheet_title("Sheet", ["sheet"]) == "Sheet(2)"


def test_a_printed_sheet_reads_back_a4_landscape_one_page_wide_with_its_header_on_every_page(tmp_path):
    """Every page a clerk prints shows the header row, one page wide; headers are not cut off."""
    book = Book(stamp=STAMP)
    sheet = book.sheet("走访帮扶", (12, 11), columns=("镇街", "最长未联系(天)"), printed=True)
    sheet.row(("店子镇", 3))
    book.sheet("说明").row(("不打印",))
    wb = openpyxl.load_workbook(book.save(tmp_path / "p.xlsx"))
    ws = wb["走访帮扶"]
    assert ws.page_setup.orientation == "landscape"
    assert int(ws.page_setup.paperSize) == 9  # A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert (int(ws.page_setup.fitToWidth or 1), int(ws.page_setup.fitToHeight)) == (1, 0)
    assert ws.print_title_rows == "$1:$1"
    assert ws.column_dimensions["A"].width >= 12  # wide enough already: kept
    assert ws.column_dimensions["B"].width >= 2 * 5 + 4  # 5 wide characters and "(天)"
    assert wb["说明"].page_setup.orientation is None


def test_a_printed_sheet_continues_with_the_same_print_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "MAX_SHEET_ROWS", 3)
    book = Book(stamp=STAMP)
    sheet = book.sheet("名单", (10,), columns=("姓名",), printed=True)
    for i in range(4):
        sheet.row((f"张{i}",))
    wb = openpyxl.load_workbook(book.save(tmp_path / "c.xlsx"))
    assert wb.sheetnames == ["名单", "名单(2)"]
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape"
        assert ws.print_title_rows == "$1:$1"


def test_the_same_printed_book_gives_the_same_bytes(tmp_path):
    def write(name: str) -> bytes:
        book = Book(stamp=STAMP)
        sheet = book.sheet("镇", (10, 10), columns=("干部姓名", "首次入户走访"), printed=True)
        sheet.row(("王", dt.date(2026, 11, 1)))
        sheet.row(("=1+1", "@x"), styles={0: workbook.AS_TYPED})
        return book.save(tmp_path / name).read_bytes()

    assert write("a.xlsx") == write("b.xlsx")


def test_a_value_as_typed_keeps_its_formula_look_as_text_behind_the_quote_prefix(tmp_path):
    book = Book(stamp=STAMP)
    book.sheet("s").row(
        ("=1+1", "+86", "普通", "=1+1"),
        styles={0: workbook.AS_TYPED, 1: workbook.AS_TYPED, 2: workbook.AS_TYPED},
    )
    target = book.save(tmp_path / "t.xlsx")
    assert "<f>" not in _sheet_xml(target)
    ws = openpyxl.load_workbook(target)["s"]
    assert [(c.value, c.data_type, c.quotePrefix) for c in ws[1]] == [
        ("=1+1", "s", True),
        ("+86", "s", True),
        ("普通", "s", False),
        ("'=1+1", "s", False),  # without AS_TYPED: defused as before
    ]


AS_TYPED = workbook.AS_TYPED
_CELL_VALUES = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["", "=1+1", "+1", "-2", "@x", "370406198001011239", "13912345678", "东村\x07"]),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_CELL_VALUES, max_size=8),
    st.sampled_from([PLAIN, GREEN, RED | WRAP, HEADER, PERCENT, AS_TYPED, AS_TYPED | GREEN]),
    st.booleans(),
)
def test_a_row_of_cells_in_one_style_is_each_cell_in_that_style(values, style, mask):
    """``Sheet.cells`` (a row in one style: a string's format looked up once for the row) gives what
    ``Sheet.cell`` gives for each value: masked, defused, the same format, blanks the same."""
    book = Book(dt.datetime(2026, 1, 1), mask=mask)
    sheet = book.sheet("x")
    assert sheet.cells(values, style) == [sheet.cell(v, style) for v in values]
