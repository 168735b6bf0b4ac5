"""How sheets and cells are read (issue 15): each case on a real file as an office would produce it,
through the stage functions the nightly DAG calls (``intake.stage.read_file``, then
``validate.stage.validate_file``) or ``intake.read.read_file`` where the read alone decides.

Workbooks are written with XlsxWriter (as Excel writes them: a control character as ``_x000B_``,
formatting on empty cells) or openpyxl (hidden rows and columns); CSV files from bytes. All ID
numbers are synthetic (``idnumber.make``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from hypothesis import given, settings
from hypothesis import strategies as st

from rosterlink import warehouse
from rosterlink.core import idnumber
from rosterlink.core.findings import FileRejected, message
from rosterlink.core.settings import Limits, Settings
from rosterlink.core.spec import catalogue
from rosterlink.intake import normalise, read, scan
from rosterlink.intake import stage as intake_stage
from rosterlink.validate import stage as validate_stage

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""What no xlsx (XML 1.0) may hold: an output holding it breaks or is garbled."""
FIELD_TYPES = {spec.type for spec in catalogue().fields.values()}

HEADER = ["序号", "户主姓名", "户主身份证号", "镇街", "村(居)", "致困原因"]


def an_id(seq: int) -> str:
    return idnumber.make("370406", dt.date(1975, 3, 9), seq)


NAMES = "零甲乙丙丁戊己庚辛壬癸"


def household(seq: int) -> list[object]:
    return [seq, f"测试{NAMES[seq]}", an_id(seq), "店子镇", f"测试村{seq}", "因病"]


def xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A workbook as Excel writes it (XlsxWriter: shared strings, ``_xHHHH_`` escapes)."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("花名册")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.write_string(r, c, value) if isinstance(value, str) else sheet.write(r, c, value)
    book.close()
    return path


@dataclass
class Night:
    """One file taken through the night's read and validate stages, and what they recorded."""

    url: str
    file_id: int
    status: str

    def q(self, sql: str) -> list[tuple]:
        with warehouse.connect(self.url).connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql, {"f": self.file_id}).all()]

    def ledger(self) -> tuple:
        (row,) = self.q("SELECT status, reason_code, message, rows_read FROM intake_file WHERE file_id = :f")
        return row

    def rejected(self) -> list[tuple]:
        sql = "SELECT row_number, reason_code FROM rejected_row WHERE file_id = :f ORDER BY row_number"
        return self.q(sql)

    def notes(self) -> list[str]:
        return [n for (n,) in self.q("SELECT note FROM intake_sheet WHERE file_id = :f AND note IS NOT NULL")]

    def staged(self) -> list[dict]:
        import json

        rows = self.q("SELECT row_number, payload FROM staged_row WHERE file_id = :f ORDER BY row_number")
        return [{"_row": n, **json.loads(d)} for n, d in rows]


def through_stages(tmp_path: Path, url: str, department: str, name: str, write) -> Night:
    intake = tmp_path / "intake"
    (intake / department).mkdir(parents=True)
    write(intake / department / name)
    settings = Settings(
        intake_dir=intake, warehouse_url=url, export_dir=tmp_path / "exports", limits=Limits(settle_seconds=0)
    )
    eng = warehouse.connect(url)
    (item,) = scan.scan(eng, settings, "test")
    done = validate_stage.validate_file(eng, intake_stage.read_file(eng, settings, item))
    return Night(url, item["file_id"], done["status"])


# --------------------------------------------------------------------------- 1. control characters


def test_vertical_tab_pasted_from_word_is_cleaned_at_normalisation(tmp_path, sqlite_url):
    rows = [HEADER, household(1), household(2)]
    rows[1][5] = "因病\x0b住院"  # Shift+Enter in Word, pasted into the cell
    rows[1][4] = "东庄\x0c村"
    rows[2][1] = "测试\x01乙"  # a stray control character in a name
    night = through_stages(tmp_path, sqlite_url, "civil_affairs", "特困.xlsx", lambda p: xlsx(p, rows))

    assert night.status == "validated"
    assert night.rejected() == []
    staged = {r["_row"]: r for r in night.staged()}
    assert not any(ch in repr(night.staged()) for ch in ("\\x0b", "\\x0c", "\\x01"))
    assert staged[2]["cause"] == "因病 住院"
    assert staged[2]["village"] == "东庄 村"
    assert staged[3]["head_name"] == "测试乙"


# --------------------------------------------------------------------------- 2. hidden columns and rows


def hidden_layout(path: Path) -> Path:
    """Last year's ID column kept but hidden (B), this year's visible (D); row 3 hidden."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "花名册"
    ws.append(["户主姓名", "身份证号", "镇街", "身份证号", "致困原因"])
    for seq in (1, 2, 3):
        ws.append([f"测试{NAMES[seq]}", an_id(100 + seq), "店子镇", an_id(seq), "因病"])
    ws.column_dimensions["B"].hidden = True
    ws.row_dimensions[3].hidden = True
    book.save(path)
    return path


def test_visible_column_wins_over_a_hidden_column_with_the_same_header(tmp_path):
    (table,) = read.read_file(hidden_layout(tmp_path / "a.xlsx"), "civil_affairs").tables

    assert table.frame["head_id_number"].tolist() == [an_id(1), an_id(2), an_id(3)]


def test_hidden_rows_are_loaded_with_a_note_for_the_clerk(tmp_path, sqlite_url):
    night = through_stages(tmp_path, sqlite_url, "civil_affairs", "特困.xlsx", hidden_layout)

    assert [r["_row"] for r in night.staged()] == [2, 3, 4]
    assert night.notes() == [message("sheet_hidden_rows", sheet="花名册", rows="第3行")]


def test_legacy_xls_hidden_column_loses_and_hidden_rows_are_noted(tmp_path):
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("花名册")
    rows = [["户主姓名", "身份证号", "镇街", "身份证号", "致困原因"]]
    rows += [[f"测试{NAMES[seq]}", an_id(100 + seq), "店子镇", an_id(seq), "因病"] for seq in (1, 2, 3)]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    ws.col(1).hidden = True
    ws.row(2).hidden = True  # Excel row 3
    book.save(str(tmp_path / "老表.xls"))

    result = read.read_file(tmp_path / "老表.xls", "civil_affairs")

    assert result.tables[0].frame["head_id_number"].tolist() == [an_id(1), an_id(2), an_id(3)]
    assert result.notes == [message("sheet_hidden_rows", sheet="花名册", rows="第3行")]


# --------------------------------------------------------------------------- 3. ="…" in CSV


def test_csv_ids_kept_as_text_with_an_equals_sign_are_read(tmp_path, sqlite_url):
    text = (
        "户主姓名,户主身份证号,镇街,联系电话\r\n"
        f'测试甲,="{an_id(1)}",店子镇,="13800001234"\r\n'
        f'测试乙,"=""{an_id(2)}""",店子镇,\r\n'
    )
    night = through_stages(
        tmp_path, sqlite_url, "civil_affairs", "特困.csv", lambda p: p.write_bytes(text.encode("gbk"))
    )

    assert night.rejected() == []
    staged = night.staged()
    assert [r["head_id_number"] for r in staged] == [an_id(1), an_id(2)]
    assert staged[0]["phone"] == "13800001234"


# --------------------------------------------------------------------------- 4. footers


def test_signature_and_date_footers_are_skipped_like_totals(tmp_path, sqlite_url):
    rows = [
        HEADER,
        household(1),
        household(2),
        ["合计：2户"],
        ["经办人：测试丙", None, None, "日期：2026年11月20日"],
        ["单位（盖章）：", None, None, "领导签字："],
        ["日期", "2026-11-20"],
        [None, "统计时间：2026年11月20日"],
        ["（以下空白）"],
        ["以下空白"],
    ]
    night = through_stages(tmp_path, sqlite_url, "civil_affairs", "特困.xlsx", lambda p: xlsx(p, rows))

    assert night.rejected() == []
    assert [r["_row"] for r in night.staged()] == [2, 3]


# ------------------------------------------------------------- 5. same header twice, missing column


def test_of_two_columns_with_the_same_header_the_filled_one_is_read(tmp_path):
    rows = [["户主姓名", "身份证号", "镇街", "身份证号"]]
    rows += [[f"测试{NAMES[seq]}", None, "店子镇", an_id(seq)] for seq in (1, 2)]

    (table,) = read.read_file(xlsx(tmp_path / "a.xlsx", rows), "civil_affairs").tables

    assert table.frame["head_id_number"].tolist() == [an_id(1), an_id(2)]


def test_two_filled_columns_with_the_same_header_that_differ_are_noted(tmp_path):
    rows = [["户主姓名", "身份证号", "镇街", "身份证号"]]
    rows += [[f"测试{NAMES[seq]}", an_id(seq), "店子镇", an_id(seq + (seq == 2))] for seq in (1, 2)]

    result = read.read_file(xlsx(tmp_path / "a.xlsx", rows), "civil_affairs")

    assert result.tables[0].frame["head_id_number"].tolist() == [an_id(1), an_id(2)]
    assert result.notes == [
        message(
            "sheet_duplicate_columns",
            sheet="花名册",
            count=2,
            header="身份证号",
            columns="B、D",
            chosen="B",
            rows="第3行",
        )
    ]


def test_missing_required_column_is_one_message_for_the_file_not_one_per_row(tmp_path, sqlite_url):
    rows = [["户主姓名", "身份证号", "镇街", "调整类型"]]
    rows += [[f"测试{NAMES[seq]}", an_id(seq), "店子镇", "新增"] for seq in (1, 2, 3)]
    night = through_stages(tmp_path, sqlite_url, "civil_affairs", "调整.xlsx", lambda p: xlsx(p, rows))

    status, code, text, rows_read = night.ledger()
    assert (status, code, rows_read) == ("rejected", "file_missing_columns", 0)
    assert text == message(
        "file_missing_columns", sheet="花名册", roster="特困家庭动态调整名单", missing="“调整时间”"
    )
    assert night.rejected() == []


# --------------------------------------------------------------------------- 6. formatting is not data


def formatted_out_to(path: Path, row: int, column: int) -> Path:
    """A 3-row roster; the clerk formatted an empty cell far away (or a whole column, row 1,048,576)."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("花名册")
    for r, values in enumerate([HEADER, household(1), household(2), household(3)]):
        sheet.write_row(r, 0, values)
    sheet.write_blank(row, column, None, book.add_format({"bg_color": "yellow"}))
    book.close()
    return path


@pytest.mark.parametrize(("row", "column"), [(1_048_575, 0), (2, 4_999), (1_048_575, 16_383)])
def test_formatted_empty_cells_far_away_do_not_reject_a_small_roster(tmp_path, row, column):
    (table,) = read.read_file(formatted_out_to(tmp_path / "a.xlsx", row, column), "civil_affairs").tables

    assert table.frame["_row"].tolist() == [2, 3, 4]


def test_a_value_far_away_is_still_measured(tmp_path):
    path = tmp_path / "a.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("花名册")
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, household(1))
    sheet.write_string(2, 4_999, "x")
    book.close()

    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs")
    assert caught.value.code == "file_too_many_columns"


# --------------------------------------------------------------------------- 7. Big5


def test_big5_csv_is_told_its_encoding_is_wrong(tmp_path, sqlite_url):
    text = f"戶主姓名,戶主身份證號,鎮街,村(居)\r\n劉桂芳,{an_id(1)},店子鎮,東莊村\r\n"
    night = through_stages(
        tmp_path, sqlite_url, "civil_affairs", "特困.csv", lambda p: p.write_bytes(text.encode("big5"))
    )

    status, code, shown, _ = night.ledger()
    assert (status, code) == ("rejected", "file_encoding_big5")
    assert "Big5" in shown
    assert "UTF-8 或 GBK" in shown


def test_gbk_csv_without_a_header_is_still_no_roster(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("序号,项目,金额\r\n1,办公用品,30\r\n2,繁體字測試,5\r\n".encode("gbk"))

    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs")
    assert caught.value.code == "file_no_roster"


def test_a_value_without_a_cell_reference_far_down_is_still_measured(tmp_path):
    from test_read import write_plain_xlsx

    far = '<row r="1000001"><c t="inlineStr"><is><t>x</t></is></c></row>'
    rows: list[list[object]] = [HEADER, household(1)]
    path = write_plain_xlsx(tmp_path / "a.xlsx", rows, extra=far)

    with pytest.raises(FileRejected) as caught:
        read.read_file(path, "civil_affairs")
    assert caught.value.code == "file_too_large"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), st.sampled_from(sorted(FIELD_TYPES)))
def test_no_normalised_value_or_shown_value_holds_a_character_no_output_may_hold(raw, field_type):
    value = normalise.normalise_value(field_type, raw).value

    for text in (value, normalise.display_value(field_type, raw)):
        assert not (isinstance(text, str) and XML_ILLEGAL.search(text)), repr(text)
