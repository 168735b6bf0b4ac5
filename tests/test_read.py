"""Reading intake files: one test per user rule, with real files written into tmp_path.

Workbooks are made with openpyxl (.xlsx) and xlwt (.xls), CSV files from bytes; the odd binary
cases (password-protected OOXML, VBA storage, BIFF FILEPASS) are derived from real xlwt output.
All names and ID numbers are synthetic (``idnumber.make``).
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest
import xlwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xlwt import CompoundDoc

from rosterlink.core import idnumber
from rosterlink.core.findings import FileRejected, message
from rosterlink.core.settings import Limits
from rosterlink.core.spec import catalogue
from rosterlink.intake import read

HARDSHIP_HEADER = [
    "序号",
    "户主姓名",
    "户主身份证号",
    "镇街",
    "村(居)",
    "家庭人口",
    "致困原因",
    "人均年收入(元)",
    "联系电话",
]
TITLE = "山亭区特困家庭花名册"
FILED_BY = "填报单位(盖章):山亭区民政局      填报日期:2024年5月6日"


def an_id(seq: int, born: dt.date = dt.date(1975, 3, 9)) -> str:
    return idnumber.make("370406", born, seq)


def household(seq: int, town: str | None = "店子镇") -> list[object]:
    return [seq, f"测试户{seq}", an_id(seq), town, f"测试村{seq}", 3, "因病", 1234.5, f"1380000{seq:04d}"]


@dataclass
class Sheet:
    """A worksheet to write: ``rows[i]`` is Excel row ``i + 1``; ``[]`` is a blank row."""

    name: str
    rows: list[list[object]]
    merges: list[str] = field(default_factory=list)
    hidden: bool = False


def write_xlsx(path: Path, *sheets: Sheet) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for spec in sheets:
        ws = book.create_sheet(spec.name)
        for r, row in enumerate(spec.rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    ws.cell(row=r, column=c, value=value)
        for cells in spec.merges:
            ws.merge_cells(cells)
        if spec.hidden:
            ws.sheet_state = "hidden"
    book.save(path)
    return path


def write_xls(path: Path, rows: list[list[object]], merges: list[tuple[int, int, int, int]] = ()) -> Path:
    """``merges``: (first_row, last_row, first_col, last_col), 0-based, value at the top-left."""
    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("花名册")
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    covered = set()
    for r0, r1, c0, c1 in merges:
        ws.write_merge(r0, r1, c0, c1, rows[r0][c0])
        covered |= {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None or (r, c) in covered:
                continue
            if isinstance(value, dt.date):
                ws.write(r, c, value, date_style)
            else:
                ws.write(r, c, value)
    book.save(str(path))
    return path


def xls_bytes(rows: list[list[object]]) -> bytes:
    buffer = io.BytesIO()
    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("S")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    book.save(buffer)
    return buffer.getvalue()


def write_plain_xlsx(
    path: Path, rows: list[list[object]], part: str = "worksheets/sheet1.xml", extra: str = ""
) -> Path:
    """A minimal xlsx written directly (openpyxl needs ~10 s for 100,000 rows): inline strings.

    ``part``: where the worksheet lives, relative to ``xl/``; ``extra``: raw XML after the rows.
    """

    def cell(value: object) -> str:
        if isinstance(value, str):
            return f'<c t="inlineStr"><is><t>{value}</t></is></c>'
        return f"<c><v>{value}</v></c>"

    body = "".join(f'<row r="{r}">{"".join(map(cell, row))}</row>' for r, row in enumerate(rows, start=1))
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006"
    ct, sml = "application/vnd.openxmlformats", "spreadsheetml"
    parts = {
        "[Content_Types].xml": (
            f'<Types xmlns="{package}/content-types">'
            f'<Default Extension="rels" ContentType="{ct}-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ct}-officedocument.{sml}.sheet.main+xml"/>'
            f'<Override PartName="/xl/{part}" ContentType="{ct}-officedocument.{sml}.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
            '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{package}/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="{part}"/></Relationships>'
        ),
        f"xl/{part}": f'<worksheet xmlns="{main}"><sheetData>{body}{extra}</sheetData></worksheet>',
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def rename_ole_entry(data: bytes, index: int, name: str, kind: int) -> bytes:
    """Rewrite directory entry ``index`` (counted from Root Entry) of a compound file."""
    root = data.find("Root Entry".encode("utf-16-le"))
    start = root + 128 * index
    encoded = name.encode("utf-16-le") + b"\0\0"
    entry = bytearray(data[start : start + 128])
    entry[0:64] = encoded.ljust(64, b"\0")
    entry[0x40:0x42] = len(encoded).to_bytes(2, "little")
    entry[0x42] = kind
    return data[:start] + bytes(entry) + data[start + 128 :]


def hardship_sheet(name: str = "花名册", count: int = 3) -> Sheet:
    return Sheet(name, [[TITLE], HARDSHIP_HEADER, *(household(i) for i in range(1, count + 1))], ["A1:I1"])


def reject_code(path: Path, department: str = "civil_affairs", limits: Limits | None = None) -> str:
    with pytest.raises(FileRejected) as caught:
        read.read_file(path, department, limits or Limits())
    return caught.value.code


# --------------------------------------------------------------------------- header and rows


def test_header_found_below_title_rows_with_excel_row_numbers(tmp_path):
    # Rows 1-2 empty, title (merged) on 3, 填报单位 on 4, header on 5, data from 6.
    path = write_xlsx(
        tmp_path / "特困.xlsx",
        Sheet(
            "花名册",
            [
                [],
                [],
                [TITLE],
                [FILED_BY],
                HARDSHIP_HEADER,
                household(1),
                household(2),
            ],
            ["A3:I3", "A4:I4"],
        ),
    )

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.roster == "hardship"
    assert table.header_row == 5
    assert table.frame["_row"].tolist() == [6, 7]
    assert table.frame["head_id_number"].tolist() == [an_id(1), an_id(2)]


def test_frame_has_row_column_then_every_roster_field_as_object_dtype(tmp_path):
    rows = [["姓名", "身份证号", "镇街", "备注"], ["测试甲", an_id(1), "西集镇", "x"]]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert list(table.frame.columns) == ["_row", *catalogue().rosters["hardship"].fields]
    assert all(str(dtype) == "object" for dtype in table.frame.dtypes)
    record = table.frame.iloc[0].to_dict()
    assert record["_row"] == 2
    assert isinstance(record["_row"], int)
    assert record["village"] is None
    assert record["phone"] is None
    assert "x" not in record.values()  # the unknown 备注 column is kept out
    assert table.headers == {"head_name": "姓名", "head_id_number": "身份证号", "town": "镇街"}


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ("*户主姓名(必填)", "head_name"),
        ("姓 名", "head_name"),
        ("户主身份证号", "head_id_number"),
        ("身份证号码", "head_id_number"),
        ("公民身份号码", "head_id_number"),
        ("身份证号码（18位）", "head_id_number"),
        ("镇（街）", "town"),
        ("村（居）", "village"),
        ("户主\n姓名", "head_name"),
    ],
)
def test_header_variants_resolve_to_canonical_fields(tmp_path, written, field):
    header = {"head_name": "户主姓名", "head_id_number": "身份证号", "town": "镇街", "village": "村"}
    header[field] = written
    rows = [list(header.values()), ["测试甲", an_id(1), "店子镇", "测试村"]]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.headers[field] == written
    assert table.frame[field].notna().all()


def test_same_header_means_different_fields_in_different_rosters(tmp_path):
    rows = [
        ["姓名", "身份证号", "镇街", "职级", "工作单位"],
        ["测试乙", an_id(2), "北庄镇", "科员", "区直机关"],
    ]
    cadres = write_xlsx(tmp_path / "干部.xlsx", Sheet("干部", rows))
    households = write_xlsx(tmp_path / "户.xlsx", Sheet("户", [row[:3] for row in rows]))

    (cadre,) = read.read_file(cadres, "organization").tables
    (hardship,) = read.read_file(households, "civil_affairs").tables

    assert cadre.roster == "cadre"
    assert cadre.frame.loc[0, "name"] == "测试乙"
    assert cadre.frame.loc[0, "linked_town"] == "北庄镇"
    assert hardship.roster == "hardship"
    assert hardship.frame.loc[0, "head_name"] == "测试乙"
    assert hardship.frame.loc[0, "town"] == "北庄镇"


def test_vertically_merged_town_is_filled(tmp_path):
    rows = [
        [TITLE],
        HARDSHIP_HEADER,
        household(1, "水泉镇"),
        household(2, None),
        household(3, None),
        household(4, "徐庄镇"),
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows, ["A1:I1", "D3:D5"]))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame["town"].tolist() == ["水泉镇", "水泉镇", "水泉镇", "徐庄镇"]
    assert table.frame["head_name"].notna().all()  # the merged title row is not data


def test_footer_and_blank_rows_are_skipped(tmp_path):
    rows = [
        [TITLE],
        HARDSHIP_HEADER,
        household(1),
        [],
        household(2),
        [None, None, None, None, "   "],
        ["合计", None, None, None, None, 6],
        [None, "合 计:936户"],
        ["注：本表由各镇街汇总"],
        ["制表人:测试丙", None, None, "审核人:测试丁"],
        [None, None, None, None, None, None, None, None, "山亭区民政局制表"],
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows, ["A1:I1"]))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame["_row"].tolist() == [3, 5]


def test_mostly_empty_row_below_header_is_kept_for_the_validator(tmp_path):
    rows = [HARDSHIP_HEADER, household(1), [None, None, None, None, None, 4]]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame["_row"].tolist() == [2, 3]
    assert table.frame.loc[1, "household_size"] == 4


def test_repeated_header_row_is_not_data(tmp_path):
    rows = [HARDSHIP_HEADER, household(1), HARDSHIP_HEADER, household(2)]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame["_row"].tolist() == [2, 4]


def test_two_row_header_with_cells_merged_down_is_read(tmp_path):
    rows = [
        ["户主姓名", "身份证号", "镇街", "家庭情况", None],
        [None, None, None, "家庭人口", "致困原因"],
        ["测试甲", an_id(1), "桑村镇", 2, "因残"],
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows, ["A1:A2", "B1:B2", "C1:C2", "D1:E1"]))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.header_row == 2
    assert table.frame["_row"].tolist() == [3]
    assert table.frame.loc[0, "household_size"] == 2
    assert table.frame.loc[0, "cause"] == "因残"


def test_empty_strings_become_none_and_other_values_stay_raw(tmp_path):
    joined = dt.datetime(1948, 5, 1)
    rows = [
        ["姓名", "身份证号", "入党时间", "镇街", "联系电话"],
        ["测试甲", an_id(1), joined, " 城头镇 ", ""],
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "organization").tables

    record = table.frame.iloc[0]
    assert table.roster == "old_member"
    assert record["joined_date"] in (joined, joined.date())
    assert record["town"] == " 城头镇 "  # nothing stripped
    assert record["phone"] is None


def test_numeric_id_cell_arrives_as_number(tmp_path):
    numeric_id = int(an_id(5)[:17] + "0")
    path = write_xlsx(
        tmp_path / "a.xlsx", Sheet("S", [["户主姓名", "身份证号", "镇街"], ["测试甲", numeric_id, "店子镇"]])
    )

    (table,) = read.read_file(path, "civil_affairs").tables

    value = table.frame.loc[0, "head_id_number"]
    assert isinstance(value, float)
    assert value == pytest.approx(numeric_id, rel=1e-15)


def test_adjustment_sheet_detected_by_its_type_column(tmp_path):
    rows = [
        ["户主姓名", "身份证号码", "镇街", "调整类型", "调整时间", "调整原因"],
        ["测试甲", an_id(1), "冯卯镇", "退出", dt.datetime(2024, 4, 1), "收入提高"],
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.roster == "hardship_adjustment"
    assert table.frame.loc[0, "adjustment_type"] == "退出"
    assert table.frame.loc[0, "adjustment_reason"] == "收入提高"


def test_cadre_change_sheet_with_rank_column_is_a_change_list(tmp_path):
    rows = [
        ["姓名", "身份证号", "职级", "变动类型", "变动时间"],
        ["测试乙", an_id(2), "科员", "退休", "2024-03-01"],
    ]
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", rows))

    (table,) = read.read_file(path, "organization").tables

    assert table.roster == "cadre_change"


def test_several_sheets_each_detected(tmp_path):
    adjustments = Sheet(
        "调整",
        [
            ["户主姓名", "身份证号", "镇街", "调整类型", "调整日期"],
            ["测试乙", an_id(9), "凫城镇", "新增", "2024-01-02"],
        ],
    )
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet("花名册", 2), Sheet("Sheet2", []), adjustments)

    result = read.read_file(path, "civil_affairs")

    assert [(t.sheet, t.roster, len(t.frame)) for t in result.tables] == [
        ("花名册", "hardship", 2),
        ("调整", "hardship_adjustment", 1),
    ]
    assert result.notes == []  # the empty Sheet2 is not worth a note


def test_sheet_without_header_is_skipped_with_note(tmp_path):
    path = write_xlsx(
        tmp_path / "a.xlsx", hardship_sheet(), Sheet("说明", [["本表填报说明"], ["请如实填写"]])
    )

    result = read.read_file(path, "civil_affairs")

    assert [t.sheet for t in result.tables] == ["花名册"]
    assert result.notes == [message("sheet_no_roster", sheet="说明")]


def test_sheet_short_of_one_signature_column_says_which_column(tmp_path):
    rows = [["户主姓名", "身份证号", "村(居)"], ["测试甲", an_id(1), "测试村"]]
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet(), Sheet("缺列", rows))

    result = read.read_file(path, "civil_affairs")

    assert result.notes == [
        message("sheet_missing_columns", sheet="缺列", roster="特困家庭花名册", missing="“镇街”")
    ]


def test_hidden_sheet_is_skipped_with_note(tmp_path):
    old = hardship_sheet("上月", 2)
    old.hidden = True
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet(), old)

    result = read.read_file(path, "civil_affairs")

    assert [t.sheet for t in result.tables] == ["花名册"]
    assert result.notes == [message("sheet_hidden", sheet="上月")]


def test_header_without_data_rows_gives_empty_table_and_note(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", [[TITLE], HARDSHIP_HEADER, ["合计:0户"]]))

    result = read.read_file(path, "civil_affairs")

    assert len(result.tables) == 1
    assert result.tables[0].frame.empty
    assert result.notes == [message("sheet_no_rows", sheet="S", roster="特困家庭花名册")]


def test_file_without_any_recognised_sheet_is_rejected(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", [["序号", "项目", "金额"], [1, "办公", 30]]))

    assert reject_code(path) == "file_no_roster"


def test_workbook_without_cells_is_empty(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("Sheet1", []))

    assert reject_code(path) == "file_empty"


def test_file_in_wrong_department_is_rejected(tmp_path):
    rows = [["姓名", "身份证号", "工作单位", "职级"], ["测试乙", an_id(2), "区直机关", "副科级"]]
    path = write_xlsx(tmp_path / "干部名册.xlsx", hardship_sheet(), Sheet("干部", rows))

    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs")

    assert caught.value.code == "file_wrong_department"
    assert caught.value.message_zh == message(
        "file_wrong_department", roster="干部名册", owner="组织部", folder="organization"
    )


# --------------------------------------------------------------------------- legacy .xls


def test_legacy_xls_is_read(tmp_path):
    rows = [
        [TITLE, None, None, None, None],
        ["户主姓名", "身份证号", "镇街", "村(居)", "调整时间"],
        ["测试甲", an_id(1), "西集镇", "测试村", dt.date(2024, 2, 3)],
        ["测试乙", an_id(2), None, "测试村", dt.date(2024, 2, 4)],
        ["合计:2户", None, None, None, None],
    ]
    path = write_xls(tmp_path / "老表.xls", rows, merges=[(0, 0, 0, 4), (2, 3, 2, 2)])

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.roster == "hardship"
    assert table.header_row == 2
    assert table.frame["_row"].tolist() == [3, 4]
    assert table.frame["head_id_number"].tolist() == [an_id(1), an_id(2)]
    assert table.frame["town"].tolist() == ["西集镇", "西集镇"]  # merged in the .xls too


def test_xls_saved_with_xlsx_name_is_read_by_content(tmp_path):
    path = tmp_path / "改名.xlsx"
    path.write_bytes(xls_bytes([["户主姓名", "身份证号", "镇街"], ["测试甲", an_id(1), "店子镇"]]))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame.loc[0, "head_name"] == "测试甲"


# --------------------------------------------------------------------------- CSV


def test_gbk_csv_is_decoded(tmp_path):
    path = tmp_path / "特困.csv"
    path.write_bytes(f"户主姓名,身份证号,镇街,村(居)\r\n测试甲,{an_id(1)},店子镇,测试村\r\n".encode("gbk"))

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.sheet == "特困"
    assert table.frame.loc[0, "head_name"] == "测试甲"
    assert table.frame.loc[0, "village"] == "测试村"
    assert table.frame["_row"].tolist() == [2]


def test_utf8_bom_csv_is_decoded(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(codecs.BOM_UTF8 + f"户主姓名,身份证号,镇街\n测试甲,{an_id(1)},桑村镇\n".encode())

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.headers["head_name"] == "户主姓名"  # no BOM glued to the first header
    assert table.frame.loc[0, "town"] == "桑村镇"


def test_utf8_bom_csv_with_broken_bytes_is_not_read_as_gbk(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(
        codecs.BOM_UTF8 + "户主姓名,身份证号,镇街\n测试甲,".encode() + "店子镇".encode("gbk") + b",x\n"
    )

    assert reject_code(path) == "file_encoding"


def test_undecodable_csv_is_rejected_not_garbled(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("户主姓名,身份证号,镇街\n".encode() + b"\xff\xfe\xfd,1,2\n")

    assert reject_code(path) == "file_encoding"


def test_utf16_csv_is_rejected_as_encoding(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("户主姓名,身份证号,镇街\n".encode("utf-16"))

    assert reject_code(path) == "file_encoding"


def test_csv_with_nul_byte_is_rejected(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n\x00,1\n")

    assert reject_code(path) == "file_nul_byte"


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_csv_delimiter_is_sniffed(tmp_path, delimiter):
    path = tmp_path / "a.csv"
    lines = [["户主姓名", "身份证号", "镇街", "致困原因"], ["测试甲", an_id(1), "店子镇", "因病"]]
    path.write_text("\n".join(delimiter.join(line) for line in lines) + "\n", encoding="utf-8")

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame.loc[0, "cause"] == "因病"


def test_csv_record_numbered_by_its_first_line(tmp_path):
    path = tmp_path / "a.csv"
    text = (
        f'山亭区特困家庭花名册,,\n户主姓名,身份证号,镇街,致困原因\n测试甲,{an_id(1)},店子镇,"因病\n因残"\n\n'
        f"测试乙,{an_id(2)},店子镇,因学\n"
    )
    path.write_text(text, encoding="utf-8")

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.header_row == 2
    assert table.frame["_row"].tolist() == [3, 6]
    assert table.frame.loc[0, "cause"] == "因病\n因残"
    assert all(isinstance(v, str) for v in table.frame["head_id_number"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(
            st.one_of(st.just(""), st.text('测试甲乙丙丁村镇 ,"\n0123456789X', max_size=8)),
            min_size=3,
            max_size=3,
        ),
        max_size=15,
    )
)
def test_every_nonblank_csv_record_is_read_once(tmp_path, cells):
    import csv

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["户主姓名", "身份证号", "镇街"])
    writer.writerows(cells)
    path = tmp_path / "p.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")

    (table,) = read.read_file(path, "civil_affairs").tables

    expected = [[v or None for v in row] for row in cells if any(v.strip() for v in row)]
    assert table.frame[["head_name", "head_id_number", "town"]].values.tolist() == expected


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("suffix", [".doc", ".pdf", ".txt", ".ods", ""])
def test_unsupported_file_type_is_rejected(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(b"whatever")

    with pytest.raises(FileRejected) as caught:
        read.inspect_file(path, Limits())

    assert caught.value.code == "file_unsupported_type"


def test_file_over_size_limit_is_rejected_with_readable_sizes(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())

    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs", Limits(max_file_bytes=1024))

    assert caught.value.code == "file_too_large"
    assert "1.0 KB" in caught.value.message_zh
    assert "KB" in caught.value.message_zh


@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".csv"])
def test_empty_file_is_rejected(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(b"")

    assert reject_code(path) == "file_empty"


def test_zip_bomb_xlsx_is_rejected(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/image1.bin", bytes(20 * 1024 * 1024))  # ~20 KB packed

    assert reject_code(path) == "file_zip_bomb"


def test_xlsx_over_uncompressed_limit_is_rejected(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())

    assert reject_code(path, limits=Limits(max_uncompressed_bytes=1000)) == "file_zip_bomb"


def test_sparse_sheet_is_rejected_before_it_is_loaded(tmp_path):
    # 5 KB on disk, but calamine would allocate 1,000,000 x 100 cells.
    path = write_xlsx(tmp_path / "a.xlsx", Sheet("S", [HARDSHIP_HEADER, household(1)]))
    book = openpyxl.load_workbook(path)
    book["S"].cell(row=1_000_000, column=100, value="x")
    book.save(path)

    assert reject_code(path) == "file_too_large"


def test_row_limit_is_enforced(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet(count=5))

    assert reject_code(path, limits=Limits(max_rows=4)) == "file_too_large"


def test_too_many_columns_is_rejected(tmp_path):
    xlsx = write_xlsx(tmp_path / "a.xlsx", Sheet("S", [HARDSHIP_HEADER + ["x"] * 300]))
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(",".join(HARDSHIP_HEADER) + "\n" + ",".join(["1"] * 20) + "\n", encoding="utf-8")

    assert reject_code(xlsx) == "file_too_many_columns"
    assert reject_code(csv_path, limits=Limits(max_columns=12)) == "file_too_many_columns"


def test_too_many_columns_in_xls_is_rejected(tmp_path):
    path = write_xls(tmp_path / "a.xls", [HARDSHIP_HEADER + ["x"] * 10])

    assert reject_code(path, limits=Limits(max_columns=12)) == "file_too_many_columns"


@pytest.mark.parametrize("suffix", [".xlsm", ".xltm"])
def test_macro_file_types_are_rejected(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(b"PK\x03\x04")

    assert reject_code(path) == "file_macro"


def test_macro_workbook_is_rejected(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 not really vba")

    assert reject_code(path) == "file_macro"


@pytest.mark.parametrize(("vba", "code"), [(False, "file_unsupported_type"), (True, "file_macro")])
def test_binary_xlsb_is_unsupported_or_macro(tmp_path, vba, code):
    path = tmp_path / "a.xlsb"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.bin", b"\x83\x01\x00")
        if vba:
            archive.writestr("xl/vbaProject.bin", b"vba")

    assert reject_code(path) == code


def test_xls_with_vba_storage_is_rejected(tmp_path):
    path = tmp_path / "a.xls"
    path.write_bytes(rename_ole_entry(xls_bytes([["户主姓名"]]), 2, "_VBA_PROJECT_CUR", kind=1))

    assert reject_code(path) == "file_macro"


def test_encrypted_xlsx_is_rejected(tmp_path):
    # Excel saves a password-protected .xlsx as an OLE2 file holding an EncryptedPackage stream.
    path = tmp_path / "加密.xlsx"
    data = rename_ole_entry(xls_bytes([["户主姓名"]]), 1, "EncryptedPackage", kind=2)
    path.write_bytes(rename_ole_entry(data, 2, "EncryptionInfo", kind=2))

    assert reject_code(path) == "file_encrypted"


def test_encrypted_xls_is_rejected(tmp_path):
    # A BIFF8 FILEPASS record (RC4) right after the workbook's BOF marks a password-protected .xls.
    book = xlwt.Workbook(encoding="utf-8")
    book.add_sheet("S").write(0, 0, "户主姓名")
    biff = book.get_biff_data()
    bof_end = 4 + struct.unpack("<HH", biff[:4])[1]
    filepass = struct.pack("<HH", 0x002F, 54) + struct.pack("<HHH", 1, 1, 1) + bytes(48)
    buffer = io.BytesIO()
    CompoundDoc.XlsDoc().save(buffer, biff[:bof_end] + filepass + biff[bof_end:])
    path = tmp_path / "加密.xls"
    path.write_bytes(buffer.getvalue())

    assert reject_code(path) == "file_encrypted"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.xlsx", b"this is not a workbook at all" * 10),
        ("truncated.xlsx", None),
        ("word.xlsx", "zip-without-workbook"),
        ("random.xls", b"\x00\x01garbage" * 50),
        ("html.xls", "<html><table><tr><td>户主姓名</td></tr></table></html>".encode()),
        ("ole-no-workbook.xls", "ole-no-workbook"),
    ],
)
def test_corrupt_xlsx_is_rejected(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        whole = write_xlsx(tmp_path / "whole.xlsx", hardship_sheet()).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif content == "zip-without-workbook":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("word/document.xml", "<w:document/>")
    elif content == "ole-no-workbook":
        path.write_bytes(rename_ole_entry(xls_bytes([["x"]]), 1, "WordDocument", kind=2))
    else:
        path.write_bytes(content)

    assert reject_code(path) == "file_corrupt"


def test_library_exception_becomes_file_rejected_without_cell_values(tmp_path, monkeypatch):
    secret = an_id(7)
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())

    def explode(*_args, **_kwargs):
        raise ValueError(f"cannot parse {secret}")

    monkeypatch.setattr(read, "_table", explode)
    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs")

    assert caught.value.code == "file_unreadable"
    assert caught.value.detail == "ValueError"
    assert secret not in str(caught.value)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_unknown_department_is_a_programming_error(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", hardship_sheet())

    with pytest.raises(ValueError, match="department"):
        read.read_file(path, "finance")


def test_hundred_thousand_rows_are_all_read_with_exact_row_numbers(tmp_path):
    rows = [[TITLE], HARDSHIP_HEADER]
    rows += [
        [
            i + 1,
            f"测试户{i}",
            f"37040619750309{i % 1000:03d}X",
            "店子镇",
            "测试村",
            3,
            "因病",
            1.5,
            "13800000000",
        ]
        for i in range(100_000)
    ]
    path = write_plain_xlsx(tmp_path / "big.xlsx", rows)

    (table,) = read.read_file(path, "civil_affairs").tables

    assert len(table.frame) == 100_000
    assert table.frame["_row"].iloc[-1] == 100_002
    assert table.frame["head_name"].iloc[-1] == "测试户99999"


@pytest.mark.parametrize("part", ["worksheets/sheet1.xml", "data/elsewhere.xml"])
def test_sparse_sheet_is_found_wherever_the_workbook_keeps_it(tmp_path, part):
    far_cell = '<row r="1000000"><c r="CV1000000" t="inlineStr"><is><t>x</t></is></c></row>'
    path = write_plain_xlsx(tmp_path / "a.xlsx", [HARDSHIP_HEADER, household(1)], part=part, extra=far_cell)

    assert reject_code(path) == "file_too_large"


def test_workbook_with_sheet_outside_worksheets_folder_is_read(tmp_path):
    path = write_plain_xlsx(tmp_path / "a.xlsx", [HARDSHIP_HEADER, household(1)], part="data/elsewhere.xml")

    (table,) = read.read_file(path, "civil_affairs").tables

    assert table.frame["head_id_number"].tolist() == [an_id(1)]


@pytest.mark.parametrize("night", [1, 2])
def test_sample_intake_is_read_as_its_truth_says(tmp_path, night):
    from rosterlink.synthetic import sample

    truth = sample.generate(tmp_path, scale=0.1, night=night)

    for expected in truth.files.values():
        result = read.read_file(tmp_path / expected.path, expected.department)
        tables = {table.sheet: table for table in result.tables}
        assert {table.roster for table in result.tables} == {expected.roster}, expected.path
        for info in expected.sheets:
            table = tables[info.name]
            row_numbers = set(table.frame["_row"])
            assert table.header_row == info.header_row, (expected.path, info.name)
            assert len(table.frame) == info.rows, (expected.path, info.name)
            assert not row_numbers & {*info.blank_rows, *info.footer_rows}
        read_rows = {(table.sheet, row) for table in result.tables for row in table.frame["_row"]}
        assert {(bad.sheet, bad.row) for bad in expected.bad_rows} <= read_rows
