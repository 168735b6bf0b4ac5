"""Hostile files dropped beside good ones: each is rejected with a message, the night goes on,
and nothing outside the intake root is read."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest

from rosterlink import warehouse
from rosterlink.synthetic import sample


def q(url: str, sql: str) -> list[tuple]:
    with warehouse.connect(url).connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def zip_bomb(path: Path) -> None:
    """A valid-looking .xlsx whose sheet inflates to gigabytes (a few MB on disk)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            block = b"\0" * (1 << 20)
            for _ in range(1024):  # 1 GiB of zeros
                sheet.write(block)
    path.write_bytes(buf.getvalue())


def widest_sheet(path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["户主姓名", "户主身份证号", "镇街"])
    ws.cell(row=2, column=16384, value="XFD")
    wb.save(path)


def macro_workbook(path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["户主姓名", "户主身份证号", "镇街"])
    plain = io.BytesIO()
    wb.save(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")


@pytest.mark.slow
def test_hostile_files_are_rejected_and_the_night_goes_on(tmp_path, sqlite_url, run_night):
    intake = tmp_path / "intake"
    truth = sample.generate(intake, scale=0.05).to_dict()
    civil = intake / "civil_affairs"
    zip_bomb(civil / "炸弹.xlsx")
    with (civil / "超大.xlsx").open("wb") as f:  # 200 MB (sparse on disk)
        f.truncate(200 * 1024 * 1024)
    widest_sheet(civil / "16384列.xlsx")
    (civil / "空字符.csv").write_bytes("户主姓名,户主身份证号,镇街\n王伟,\x00,店子镇\n".encode())
    macro_workbook(civil / "宏.xlsm")
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("户主姓名,户主身份证号,镇街\n外部,370406198001011239,店子镇\n", encoding="utf-8")
    os.symlink(secret, civil / "链接.csv")
    os.symlink(secret.parent, intake / "petition" / "外部目录")
    (intake / "organization" / "说明..txt.csv").write_text("not a roster at all\n", encoding="utf-8")

    assert run_night(intake, sqlite_url, tmp_path / "exports", as_of="2026-11-25") == "success"

    ledger = {
        name: (status, code)
        for name, status, code in q(sqlite_url, "SELECT file_name, status, reason_code FROM intake_file")
    }
    expected = {
        "civil_affairs/炸弹.xlsx": "file_zip_bomb",
        "civil_affairs/超大.xlsx": "file_too_large",
        "civil_affairs/16384列.xlsx": "file_too_many_columns",
        "civil_affairs/空字符.csv": "file_nul_byte",
        "civil_affairs/宏.xlsm": "file_macro",
        "civil_affairs/链接.csv": "file_outside_intake",
        "petition/外部目录": "file_outside_intake",
        "organization/说明..txt.csv": "file_no_roster",
    }
    for name, code in expected.items():
        assert ledger[name] == ("rejected", code), name
    messages = q(sqlite_url, "SELECT message FROM intake_file WHERE status = 'rejected'")
    assert all(m and any("\u4e00" <= ch <= "\u9fff" for ch in m) for (m,) in messages)
    # the good files of the night are loaded as if nothing else had been there
    for name in truth["files"]:
        assert ledger[name] == ("loaded", None), name
    # nothing from outside the intake root reached the warehouse
    assert q(sqlite_url, "SELECT COUNT(*) FROM source_record WHERE person_name = '外部'") == [(0,)]
    # each clerk gets a feedback workbook saying why
    assert (civil / "feedback" / "炸弹.结果.xlsx").is_file()


XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def workbook_strings(path: Path) -> list[str]:
    """Every string cell of every sheet, as Excel shows it (calamine decodes ``_x000B_``)."""
    import python_calamine

    book = python_calamine.CalamineWorkbook.from_path(str(path))
    return [
        value
        for name in book.sheet_names
        for row in book.get_sheet_by_name(name).to_python()
        for value in row
        if isinstance(value, str)
    ]


@pytest.mark.slow
def test_vertical_tab_pasted_from_word_reaches_the_review_queue_cleaned(
    tmp_path, sqlite_url, run_night, airflow_db, caplog
):
    import xlsxwriter

    from rosterlink.core import idnumber

    intake = tmp_path / "intake"
    (intake / "civil_affairs").mkdir(parents=True)
    (intake / "womens_federation").mkdir(parents=True)
    head_id = idnumber.make("370406", dt.date(1958, 6, 2), 2)  # a woman: the guardian is a grandmother
    # Excel keeps a pasted vertical tab as _x000B_; XlsxWriter writes it the same way
    book = xlsxwriter.Workbook(str(intake / "civil_affairs" / "特困家庭.xlsx"))
    sheet = book.add_worksheet("花名册")
    sheet.write_row(0, 0, ["户主姓名", "户主身份证号", "镇街", "村(居)", "致困原因", "联系电话"])
    sheet.write_row(1, 0, ["刘桂芳", head_id, "店子镇", "东庄\x0b村", "因病\x0b住院", "13800001234"])
    book.close()
    (intake / "womens_federation" / "失亲儿童.csv").write_text(
        "儿童姓名,监护人姓名,与儿童关系,镇街,村(居),联系电话\n刘小明,刘桂芳,祖母,店子镇,,\n", encoding="utf-8"
    )
    started = time.time()

    assert run_night(intake, sqlite_url, tmp_path / "exports", as_of="2026-11-25") == "success"

    assert q(sqlite_url, "SELECT village FROM source_record WHERE department = 'civil_affairs'") == [
        ("东庄 村",)
    ]
    (attrs,) = q(sqlite_url, "SELECT attrs FROM source_record WHERE department = 'civil_affairs'")[0]
    assert "住院" in attrs
    assert not XML_ILLEGAL.search(json.loads(attrs)["cause"])
    assert q(sqlite_url, "SELECT COUNT(*) FROM link_review WHERE status = 'pending'") == [(1,)]
    review = intake / "review" / "待核实.xlsx"
    assert "东庄 村" in workbook_strings(review)
    written = [review, *intake.glob("*/feedback/*.xlsx"), *(tmp_path / "exports").rglob("*.xlsx")]
    assert len(written) > 2
    for path in written:
        assert not any(XML_ILLEGAL.search(value) for value in workbook_strings(path)), path.name
    # no value reached the log: neither the captured records nor the task logs of this night
    assert "东庄" not in caplog.text
    for log_file in (airflow_db / "logs").rglob("*"):
        if log_file.is_file() and log_file.stat().st_mtime >= started:
            assert "东庄" not in log_file.read_text(encoding="utf-8", errors="replace"), log_file.name
