"""Hostile files dropped beside good ones: each is rejected with a message, the night goes on,
and nothing outside the intake root is read."""

from __future__ import annotations

import io
import os
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
