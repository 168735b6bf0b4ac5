"""Exports: department feedback, the town workbooks and the pairing summary, and the change log, read
back with openpyxl."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
import xlsxwriter
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rosterlink import export, warehouse
from rosterlink.core.idnumber import make
from rosterlink.core.settings import Settings
from rosterlink.export import change_log, common, pairing_book, town_books
from rosterlink.warehouse import schema

AS_OF = dt.date(2026, 11, 20)
EARLIER = dt.date(2026, 3, 1)
RECEIVED = dt.datetime(2026, 11, 19, 16, 30)

FULL_ID = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")

HOSTILE_NAMES = ('=HYPERLINK("http://evil.example","点我")', "+1", "-2", "@x")


def _id(seq: int, born: dt.date = dt.date(1950, 1, 1)) -> str:
    return make("370406", born, seq)


def _phone(seq: int) -> str:
    return f"139{seq:08d}"


IDS = {key: _id(i) for i, key in enumerate(["h1", "h2", "h3", "h4", "h5", "c1", "c2", "c3", "p1"], 1)}


def _household(key: str, name: str, town: str, village: str, status: str = "active", seq: int = 1) -> dict:
    return {
        "household_key": key,
        "head_name": name,
        "head_id_number": IDS.get(key) or _id(seq),
        "town": town,
        "village": village,
        "phone": _phone(seq),
        "status": status,
    }


def _cadre(key: str, name: str, rank: str, town: str, status: str = "active", seq: int = 1) -> dict:
    return {
        "cadre_key": key,
        "name": name,
        "id_number": IDS.get(key) or _id(seq, dt.date(1975, 5, 5)),
        "rank": rank,
        "unit": f"{name}所在单位",
        "town": town,
        "phone": _phone(100 + seq),
        "status": status,
    }


def _pair(
    cadre: str,
    kind: str,
    target: str,
    since: dt.date,
    made: str,
    until: dt.date | None = None,
    end: str | None = None,
) -> dict:
    return {
        "cadre_key": cadre,
        "target_kind": kind,
        "target_key": target,
        "valid_from": since,
        "valid_to": until,
        "end_reason": end,
        "made_reason": made,
    }


def _finding(
    file_id: int,
    sheet: str,
    row: int,
    field: str,
    header: str | None,
    value: str | None,
    code: str,
    message: str,
) -> dict:
    return {
        "file_id": file_id,
        "sheet": sheet,
        "row_number": row,
        "field": field,
        "header": header,
        "value": value,
        "reason_code": code,
        "message": message,
        "created_at": RECEIVED,
    }


@pytest.fixture
def night(tmp_path: Path):
    eng = warehouse.connect(f"sqlite:///{tmp_path}/w.db")
    settings = Settings(
        intake_dir=tmp_path / "intake",
        warehouse_url=f"sqlite:///{tmp_path}/w.db",
        export_dir=tmp_path / "exports",
    )
    for dept in ("civil_affairs", "womens_federation", "organization", "petition"):
        (settings.intake_dir / dept).mkdir(parents=True)
    f = schema.intake_file
    base = {
        "sha256": "0" * 64,
        "size_bytes": 1000,
        "received_at": RECEIVED,
        "processed_at": RECEIVED,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_rejected": 0,
        "rows_warned": 0,
        "reason_code": None,
        "message": None,
    }
    with eng.begin() as conn:
        conn.execute(
            f.insert(),
            [
                {
                    **base,
                    "file_id": 1,
                    "department": "civil_affairs",
                    "file_name": "civil_affairs/2026年11月/特困家庭.xlsx",
                    "sha256": "1" * 64,
                    "status": "loaded",
                    "rows_read": 5,
                    "rows_loaded": 3,
                    "rows_rejected": 2,
                    "rows_warned": 1,
                },
                {
                    **base,
                    "file_id": 2,
                    "department": "womens_federation",
                    "file_name": "womens_federation/失亲儿童.xls",
                    "sha256": "2" * 64,
                    "status": "rejected",
                    "reason_code": "file_corrupt",
                    "message": "文件已损坏或不是有效的表格文件，无法打开。"
                    "请用Excel打开确认后另存为.xlsx重新报送。",
                },
                {
                    **base,
                    "file_id": 3,
                    "department": "petition",
                    "file_name": "petition/台账副本.xlsx",
                    "sha256": "3" * 64,
                    "status": "duplicate",
                    "reason_code": "file_duplicate",
                    "message": "此文件与已导入的“petition/台账.xlsx”内容完全相同，未重复导入。",
                },
                {
                    **base,
                    "file_id": 4,
                    "department": "organization",
                    "file_name": "organization/干部名册.xlsx",
                    "sha256": "4" * 64,
                    "status": "loaded",
                    "rows_read": 3,
                    "rows_loaded": 3,
                },
            ],
        )
        conn.execute(
            schema.intake_sheet.insert(),
            [
                {
                    "file_id": 1,
                    "sheet": "Sheet1",
                    "roster": "hardship",
                    "header_row": 3,
                    "rows_read": 5,
                    "note": None,
                },
                {
                    "file_id": 1,
                    "sheet": "说明",
                    "roster": None,
                    "header_row": None,
                    "rows_read": 0,
                    "note": "工作表“说明”中没有找到可识别的表头，未导入该表。",
                },
            ],
        )
        conn.execute(
            schema.rejected_row.insert(),
            [
                _finding(
                    1,
                    "Sheet1",
                    7,
                    "head_id_number",
                    "身份证号码",
                    "370406********123X",
                    "id_bad_checksum",
                    "“身份证号码”最后一位校验码不正确（370406********123X），请核对。",
                ),
                # a full ID slipped into a value upstream: the export masks it again
                _finding(
                    1,
                    "Sheet1",
                    9,
                    "town",
                    None,
                    f"店子 {IDS['h5']}",
                    "town_unknown",
                    "“镇街”的值不在本区镇街名单内，请填写规范的镇街全称。",
                ),
            ],
        )
        conn.execute(
            schema.row_warning.insert(),
            [
                _finding(
                    1,
                    "Sheet1",
                    8,
                    "phone",
                    "手机号",
                    "139****0001",
                    "phone_invalid",
                    "“手机号”的值不是11位手机号或有效固定电话，已接收但请核对更正。",
                ),
            ],
        )
        conn.execute(
            schema.source_row.insert(),
            [
                # rows 4 and 5 are one household
                {
                    "file_id": 1,
                    "sheet": "Sheet1",
                    "row_number": row,
                    "entity_kind": "household",
                    "entity_key": key,
                }
                for row, key in ((4, "h1"), (5, "h1"), (6, "h3"))
            ],
        )
        conn.execute(
            schema.household.insert(),
            [
                _household("h1", "张三", "山城街道", "东村", seq=1),
                _household("h2", HOSTILE_NAMES[0], "店子镇", "南村", seq=2),
                _household("h3", HOSTILE_NAMES[1], "山城街道", "西村", seq=3),
                _household("h4", HOSTILE_NAMES[2], "西集镇", "北村", status="exited", seq=4),
                _household("h5", HOSTILE_NAMES[3], "店子镇", "中村", seq=5),  # active, not paired
            ],
        )
        conn.execute(
            schema.household_category.insert(),
            [
                {"household_key": "h1", "category": "hardship", "status": "active"},
                {"household_key": "h1", "category": "old_member", "status": "active"},
                {"household_key": "h2", "category": "orphan", "status": "active"},
                {"household_key": "h3", "category": "hardship", "status": "active"},
                {"household_key": "h4", "category": "hardship", "status": "exited"},
                {"household_key": "h5", "category": "hardship", "status": "active"},
            ],
        )
        conn.execute(
            schema.cadre.insert(),
            [
                _cadre("c1", "李县长", "county", "店子镇", seq=1),
                _cadre("c2", "王科长", "section", "山城街道", seq=2),
                _cadre("c3", "赵干部", "ordinary", "西集镇", status="departed", seq=3),
            ],
        )
        case = {
            "petitioner_id_number": None,
            "responsible_unit": None,
            "work_team": None,
            "resolution_plan": None,
            "stabilisation_measures": None,
        }
        conn.execute(
            schema.petition_case.insert(),
            [
                {**case, **row}
                for row in [
                    {
                        "case_key": "k1",
                        "case_number": "XF2026-001",
                        "petitioner_name": "钱某",
                        "town": "店子镇",
                        "topic": "土地纠纷",
                        "status": "open",
                        "responsible_unit": "店子镇政府",
                        "work_team": "专班A",
                        "petitioner_id_number": IDS["p1"],
                    },
                    {
                        "case_key": "k2",
                        "case_number": "XF2026-002",
                        "petitioner_name": "孙某",
                        "town": "山城街道",
                        "topic": "拆迁补偿",
                        "status": "open",
                        "responsible_unit": "住建局",
                        "work_team": "专班B",
                        "resolution_plan": "方案",
                        "stabilisation_measures": "措施",
                    },
                    {
                        "case_key": "k3",
                        "case_number": "XF2026-003",
                        "petitioner_name": "周某",
                        "town": "西集镇",
                        "topic": "劳资",
                        "status": "closed",
                    },
                ]
            ],
        )
        conn.execute(
            schema.pairing.insert(),
            [
                _pair("c2", "household", "h1", EARLIER, "new_target"),
                _pair("c1", "household", "h2", AS_OF, "new_target"),
                _pair("c3", "household", "h3", EARLIER, "new_target", AS_OF, "cadre_departed"),
                _pair("c2", "household", "h3", AS_OF, "cadre_left"),
                _pair("c3", "household", "h4", EARLIER, "new_target", AS_OF, "household_exited"),
                _pair("c1", "case", "k1", EARLIER, "new_target"),
                _pair("c1", "case", "k3", EARLIER, "new_target", AS_OF, "case_closed"),
            ],
        )
    return eng, settings


def _rows(ws) -> list[tuple]:
    return [tuple(c.value for c in row) for row in ws.iter_rows()]


def _find_row(ws, text: str, *, first: bool = False):
    """The first row with a cell containing ``text`` (with ``first``: whose first cell is ``text``)."""
    for row in ws.iter_rows():
        if first and row[0].value == text:
            return row
        if not first and any(isinstance(c.value, str) and text in c.value for c in row):
            return row
    raise AssertionError(f"no row with {text!r} in {ws.title}")


def _all_xlsx(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.rglob("*.xlsx"))


# --- feedback --------------------------------------------------------------------------------------
def test_feedback_lands_in_the_files_own_department_folder_with_flattened_name(night):
    eng, settings = night
    written = export.write_feedback(eng, settings, [1, 2, 3])
    intake = settings.intake_dir
    assert sorted(p.relative_to(intake).as_posix() for p in written) == [
        "civil_affairs/feedback/2026年11月_特困家庭.结果.xlsx",
        "petition/feedback/台账副本.结果.xlsx",
        "womens_federation/feedback/失亲儿童.结果.xlsx",
    ]
    # a department only sees its own files; a file not of tonight gets nothing
    assert [p.name for p in (intake / "civil_affairs" / "feedback").iterdir()] == [
        "2026年11月_特困家庭.结果.xlsx"
    ]
    assert [p.name for p in (intake / "womens_federation" / "feedback").iterdir()] == ["失亲儿童.结果.xlsx"]
    assert not (intake / "organization" / "feedback").exists()
    with eng.connect() as conn:
        t = schema.intake_file
        paths = dict(conn.execute(sa.select(t.c.file_id, t.c.feedback_path)).all())
    assert paths == {
        1: "civil_affairs/feedback/2026年11月_特困家庭.结果.xlsx",
        2: "womens_federation/feedback/失亲儿童.结果.xlsx",
        3: "petition/feedback/台账副本.结果.xlsx",
        4: None,
    }


def test_feedback_summary_has_counts_sheets_merges_and_instruction(night):
    eng, settings = night
    [path] = export.write_feedback(eng, settings, [1])
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["汇总", "错误明细", "提示"]
    facts = {r[0]: r[1] for r in _rows(wb["汇总"]) if r and r[0]}
    assert facts["文件名"] == "civil_affairs/2026年11月/特困家庭.xlsx"
    assert facts["报送部门"] == "民政局"
    assert facts["处理结果"] == "已导入"
    assert facts["接收时间（北京时间）"] == "2026-11-20 00:30"
    assert facts["读取行数"] == 5
    assert facts["导入行数"] == 3
    assert facts["退回行数（见“错误明细”）"] == 2
    assert facts["有提示的行数（见“提示”）"] == 1
    assert facts["与本文件其他行为同一家庭或人员、已合并的行数"] == 2
    assert "错误明细" in facts["处理说明"]
    assert "重新放入本文件夹" in facts["处理说明"]
    sheet_line = _find_row(wb["汇总"], "Sheet1")
    assert [c.value for c in sheet_line] == ["Sheet1", "特困家庭花名册", 3, 5, None]
    assert "未导入该表" in _find_row(wb["汇总"], "说明", first=True)[4].value


def test_feedback_errors_list_each_rejected_row_with_excel_row_header_and_chinese_message(night):
    eng, settings = night
    [path] = export.write_feedback(eng, settings, [1])
    ws = openpyxl.load_workbook(path)["错误明细"]
    rows = _rows(ws)
    assert rows[0] == ("工作表", "行号", "列名", "填写内容", "问题及修改方法")
    assert rows[1][:4] == ("Sheet1", 7, "身份证号码", "370406********123X")  # the header the clerk used
    assert "校验码" in rows[1][4]
    assert rows[2][:3] == ("Sheet1", 9, "镇街")  # no header recorded: the field's label
    assert IDS["h5"] not in rows[2][3]
    assert rows[2][3].startswith("店子 370406")
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:E3"
    assert all(c.font.b for c in ws[1])
    for row in ws.iter_rows(min_row=2):
        assert all(c.fill.fgColor.rgb.endswith("FFC7CE") for c in row)
    warn = openpyxl.load_workbook(path)["提示"]
    assert _rows(warn)[1][:3] == ("Sheet1", 8, "手机号")
    assert warn["A2"].fill.fgColor.rgb.endswith("FFEB9C")


def test_a_childs_value_is_never_shown_in_feedback(night):
    eng, settings = night
    with eng.begin() as conn:
        conn.execute(
            schema.rejected_row.insert().values(
                _finding(
                    1,
                    "Sheet1",
                    12,
                    "child_id_number",
                    "儿童身份证号",
                    "370406********0012",
                    "id_bad_checksum",
                    "“儿童身份证号”最后一位校验码不正确，请核对。",
                )
            )
        )
    [path] = export.write_feedback(eng, settings, [1])
    row = [c.value for c in _find_row(openpyxl.load_workbook(path)["错误明细"], "儿童身份证号")]
    assert row[:4] == ["Sheet1", 12, "儿童身份证号", "（未成年人信息，不显示）"]


def test_file_rejected_whole_gets_feedback_with_its_reason(night):
    eng, settings = night
    [rejected, duplicate] = export.write_feedback(eng, settings, [2, 3])
    wb = openpyxl.load_workbook(rejected)
    facts = {r[0]: r[1] for r in _rows(wb["汇总"]) if r and r[0]}
    assert facts["处理结果"] == "整份退回"
    assert "已损坏" in facts["原因"]
    assert facts["报送部门"] == "妇联"
    assert "未导入" in facts["处理说明"]
    assert "提示" not in wb.sheetnames
    assert _rows(wb["错误明细"]) == [("工作表", "行号", "列名", "填写内容", "问题及修改方法")]
    facts = {r[0]: r[1] for r in _rows(openpyxl.load_workbook(duplicate)["汇总"]) if r and r[0]}
    assert facts["处理结果"] == "重复文件"
    assert "完全相同" in facts["原因"]


def test_same_stem_in_one_department_keeps_both_feedbacks(night):
    eng, settings = night
    with eng.begin() as conn:
        conn.execute(
            schema.intake_file.insert(),
            [
                {
                    "file_id": 10 + i,
                    "department": "civil_affairs",
                    "file_name": f"civil_affairs/名单.{ext}",
                    "sha256": str(i) * 64,
                    "size_bytes": 1,
                    "status": "loaded",
                    "received_at": RECEIVED,
                }
                for i, ext in enumerate(("xlsx", "csv"), 5)
            ],
        )
    written = export.write_feedback(eng, settings, [15, 16])
    assert sorted(p.name for p in written) == ["名单.csv.结果.xlsx", "名单.xlsx.结果.xlsx"]


def test_feedback_is_not_written_through_a_symlinked_feedback_folder(night, tmp_path):
    eng, settings = night
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (settings.intake_dir / "civil_affairs" / "feedback").symlink_to(elsewhere)
    assert export.write_feedback(eng, settings, [1]) == []
    assert list(elsewhere.iterdir()) == []


# --- pairing workbooks: one per town, and the district's summary -----------------------------------------
TOWNS = ("山城街道", "店子镇", "西集镇")


def _summary(eng, settings, as_of: dt.date = AS_OF):
    """The night's pairing workbooks written; the summary read back."""
    summary, _ = export.write_pairing_workbooks(eng, settings, as_of)
    return openpyxl.load_workbook(summary)


def _town(settings, town: str):
    return openpyxl.load_workbook(settings.export_dir / "分镇结对名单" / f"{town}_结对名单.xlsx")


def _texts(wb) -> str:
    return "\n".join(str(c.value) for ws in wb.worksheets for r in ws.iter_rows() for c in r if c.value)


def test_each_town_gets_its_own_workbook_with_only_its_households_and_cases(night):
    """Issue 14: a workbook per town under 分镇结对名单/ (what the town's party committee needs and
    no more), and a summary workbook for the district without the towns' pair lists."""
    eng, settings = night
    summary, towns = export.write_pairing_workbooks(eng, settings, AS_OF)
    assert summary == settings.export_dir / "结对汇总_20261120.xlsx"
    folder = settings.export_dir / "分镇结对名单"
    assert sorted(p.name for p in folder.glob("*.xlsx")) == sorted(f"{t}_结对名单.xlsx" for t in TOWNS)
    assert sorted(p.name for p in towns.written.values()) == sorted(f"{t}_结对名单.xlsx" for t in TOWNS)
    assert openpyxl.load_workbook(summary).sheetnames == [
        "汇总",
        "重点信访案件",
        "本次变化",
        "走访帮扶",
        "走访预警",
    ]

    wb = _town(settings, "山城街道")
    assert wb.sheetnames == ["汇总", "结对名单", "重点信访案件", "走访预警"]
    assert "山城街道结对名单（数据截至2026年11月20日）" in _rows(wb["汇总"])[0][0]
    ws = wb["结对名单"]
    assert _rows(ws)[0] == town_books.TOWN_COLUMNS
    assert ws.freeze_panes == "A2"
    assert {r[4] for r in _rows(ws)[1:]} == {"张三", "'+1"}  # h1 and h3, nobody of another town
    h1 = [c.value for c in _find_row(ws, "张三")]
    assert h1[:8] == [
        "王科长",
        "王科长所在单位",
        "科级",
        f"{_phone(102)[:3]}****{_phone(102)[-4:]}",
        "张三",
        f"{IDS['h1'][:6]}********{IDS['h1'][-4:]}",
        "东村",
        "特困家庭、建国前老党员",
    ]
    assert h1[8] == dt.datetime(2026, 3, 1)
    assert h1[9] is None
    assert [r[0] for r in _rows(wb["重点信访案件"])[1:]] == ["XF2026-002"]
    # nothing of another town's households or cases anywhere in the town's workbook
    text = _texts(wb)
    for other in ("南村", "中村", "北村", "XF2026-001", "钱某", IDS["h2"][-4:], IDS["h5"][-4:]):
        assert other not in text, other
    store = _texts(_town(settings, "店子镇"))
    assert "张三" not in store
    assert "XF2026-002" not in store
    assert "XF2026-001" in store


def test_new_and_ended_pairs_are_marked_in_the_town_workbooks(night):
    eng, settings = night
    export.write_pairing_workbooks(eng, settings, AS_OF)
    new = _find_row(_town(settings, "店子镇")["结对名单"], "李县长")
    assert [c.value for c in new][9:11] == ["新结对", "新纳入结对对象"]
    assert all(c.fill.fgColor.rgb.endswith("C6EFCE") for c in new)
    # h3 changed cadre tonight: the ended pair (grey) and the new one (green) side by side
    rows = [r for r in _town(settings, "山城街道")["结对名单"].iter_rows(min_row=2) if r[6].value == "西村"]
    assert [(r[0].value, r[9].value, r[10].value) for r in rows] == [
        ("赵干部", "结对结束", "干部调离或退休"),
        ("王科长", "新结对", "原结对干部调离或不再符合条件，重新结对"),
    ]
    assert rows[0][0].fill.fgColor.rgb.endswith("D9D9D9")
    assert _find_row(_town(settings, "西集镇")["结对名单"], "北村")[10].value == "家庭已退出/脱困"


def test_summary_counts_towns_and_lists_unpaired_households(night):
    eng, settings = night
    ws = _summary(eng, settings)["汇总"]
    rows: dict = {}
    for r in _rows(ws):
        rows.setdefault(r[0], r)
    # town, active, paired households, pairs, same-town share, cadres, new, ended, unpaired, the
    # town's workbook and the date its data is as of
    tonight = dt.datetime(2026, 11, 20)
    assert rows["山城街道"] == ("山城街道", 2, 2, 2, 1.0, 1, 1, 1, 0, "山城街道_结对名单.xlsx", tonight)
    assert rows["店子镇"] == ("店子镇", 2, 1, 1, 1.0, 1, 1, 0, 1, "店子镇_结对名单.xlsx", tonight)
    assert rows["西集镇"] == ("西集镇", 0, 0, 0, None, 0, 0, 1, 0, "西集镇_结对名单.xlsx", tonight)
    assert rows["合计"][1:4] == (4, 3, 3)
    assert "未结对的在册家庭：1户" in _find_row(ws, "未结对的在册家庭")[0].value
    unpaired = [c.value for c in _find_row(ws, "中村")]
    assert unpaired[:4] == ["店子镇", "中村", "'@x", f"{IDS['h5'][:6]}********{IDS['h5'][-4:]}"]
    # each town's own workbook has the same line (counted apart from the summary), and its own
    # unpaired household
    for name in TOWNS:
        own = [c.value for c in _find_row(_town(settings, name)["汇总"], name, first=True)]
        assert tuple(own[:9]) == rows[name][:9], name
    town = _town(settings, "店子镇")["汇总"]
    assert [c.value for c in _find_row(town, "中村")][:3] == ["店子镇", "中村", "'@x"]


def test_key_case_sheet_shows_five_ones_gaps(night):
    eng, settings = night
    ws = _summary(eng, settings)["重点信访案件"]
    assert _rows(ws)[0] == (
        "案件编号",
        "信访人",
        "所属镇街",
        "诉求类别",
        "包案领导",
        "责任单位",
        "五个一：包案领导",
        "五个一：工作专班",
        "五个一：化解方案",
        "五个一：责任单位",
        "五个一：稳控措施",
        "缺项",
    )
    assert len(set(_rows(ws)[0])) == len(_rows(ws)[0])  # no header twice
    cases = {r[0]: r for r in _rows(ws)[1:]}
    assert set(cases) == {"XF2026-001", "XF2026-002"}  # closed cases are not listed
    assert cases["XF2026-001"][4] == "李县长"
    assert cases["XF2026-001"][6:] == ("✓", "✓", "缺", "✓", "缺", "缺化解方案、稳控措施")
    assert cases["XF2026-002"][4] is None
    assert cases["XF2026-002"][6:] == ("缺", "✓", "✓", "✓", "✓", "缺包案领导")
    assert _find_row(ws, "XF2026-001")[8].fill.fgColor.rgb.endswith("FFC7CE")
    # the town's workbook lists its own case, the same way
    town = _rows(_town(settings, "店子镇")["重点信访案件"])
    assert town[1:] == [cases["XF2026-001"]]
    assert _rows(_town(settings, "西集镇")["重点信访案件"])[1:] == [
        ("本镇街没有在办的重点信访案件。",) + (None,) * 11
    ]


def test_changes_sheet_lists_made_and_ended_pairs_with_reasons(night):
    eng, settings = night
    ws = _summary(eng, settings)["本次变化"]
    body = _rows(ws)[1:]
    seen = {(r[0], r[1], r[6], r[12] or r[11]) for r in body}
    assert seen == {
        ("结对结束", "家庭", "赵干部", "干部调离或退休"),
        ("新结对", "家庭", "王科长", "原结对干部调离或不再符合条件，重新结对"),
        ("新结对", "家庭", "李县长", "新纳入结对对象"),
        ("结对结束", "家庭", "赵干部", "家庭已退出/脱困"),
        ("结对结束", "信访案件", "李县长", "案件已销号"),
    }
    case_row = next(r for r in body if r[1] == "信访案件")
    assert case_row[5] == "XF2026-003"
    assert case_row[10] == dt.datetime(2026, 11, 20)


def test_unknown_reason_codes_are_shown_in_chinese_never_as_the_code(night):
    eng, settings = night
    with eng.begin() as conn:
        conn.execute(
            schema.pairing.update()
            .where(schema.pairing.c.target_key == "h4")
            .values(end_reason="some_new_code")
        )
    export.write_pairing_workbooks(eng, settings, AS_OF)
    assert _find_row(_town(settings, "西集镇")["结对名单"], "北村")[10].value == "其他原因"


def _state(settings) -> dict[str, tuple[bytes, int]]:
    folder = settings.export_dir / "分镇结对名单"
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.xlsx"))}


def test_a_night_that_changes_one_town_rewrites_only_that_towns_workbook_and_the_summary(night):
    """Issue 14: only the towns whose pairs or follow-through changed are rewritten; the others keep
    their file (bytes and time) and the date their data is as of, which the summary shows."""
    eng, settings = night
    export.write_pairing_workbooks(eng, settings, AS_OF)
    before = _state(settings)
    time.sleep(0.05)  # a rewrite would show in the file's time

    # the next night: a new household in 店子镇 and its pair; 山城街道 does not change; 西集镇 has
    # nothing left (its household exited and its case closed the night before)
    tomorrow = AS_OF + dt.timedelta(days=1)
    with eng.begin() as conn:
        conn.execute(schema.household.insert().values(_household("h6", "吴六", "店子镇", "南村", seq=6)))
        conn.execute(schema.pairing.insert().values(_pair("c1", "household", "h6", tomorrow, "new_target")))
    summary, towns = export.write_pairing_workbooks(eng, settings, tomorrow)
    after = _state(settings)
    assert [p.name for p in towns.written.values()] == ["店子镇_结对名单.xlsx"]
    assert after["山城街道_结对名单.xlsx"] == before["山城街道_结对名单.xlsx"]
    assert after["店子镇_结对名单.xlsx"] != before["店子镇_结对名单.xlsx"]
    assert "西集镇_结对名单.xlsx" not in after  # a town with nothing left to show: its list removed
    store = _town(settings, "店子镇")
    assert "数据截至2026年11月21日" in _rows(store["汇总"])[0][0]
    assert "吴六" in {r[4] for r in _rows(store["结对名单"])}
    assert "数据截至2026年11月20日" in _rows(_town(settings, "山城街道")["汇总"])[0][0]
    # the summary is written every night, and says how old each town's workbook is
    assert summary.name == "结对汇总_20261121.xlsx"
    lines: dict = {}
    for r in _rows(openpyxl.load_workbook(summary)["汇总"]):
        lines.setdefault(r[0], r)  # the town's line (its unpaired households are listed below)
    assert lines["山城街道"][9:] == ("山城街道_结对名单.xlsx", dt.datetime(2026, 11, 20))
    assert lines["店子镇"][9:] == ("店子镇_结对名单.xlsx", dt.datetime(2026, 11, 21))
    assert "西集镇" not in lines

    # a quiet night after it rewrites no town
    _, towns = export.write_pairing_workbooks(eng, settings, tomorrow + dt.timedelta(days=1))
    assert towns.written == {}
    assert _state(settings) == after


def test_a_night_with_nothing_new_keeps_the_town_workbooks_without_reading_a_pair(night, monkeypatch):
    """Issue 14: when no stage has recorded a change since the workbooks were last all checked,
    the next night keeps them by looking at the files alone (a province's quiet night reads no
    pair); a file deleted meanwhile is still written again, and a stage's change (or a fix by hand
    that adds a pair) brings back the full check."""
    eng, settings = night
    export.write_pairing_workbooks(eng, settings, AS_OF)
    before = _state(settings)
    read: list = []
    real = town_books.read_towns
    monkeypatch.setattr(
        town_books,
        "read_towns",
        lambda conn, as_of, towns=None, cfg=None: read.append(towns) or real(conn, as_of, towns, cfg),
    )

    tomorrow = AS_OF + dt.timedelta(days=1)
    _, towns = export.write_pairing_workbooks(eng, settings, tomorrow)
    assert (towns.written, read) == ({}, [])
    assert _state(settings) == {k: v for k, v in before.items() if k != "西集镇_结对名单.xlsx"}  # gone

    (settings.export_dir / "分镇结对名单" / "山城街道_结对名单.xlsx").unlink()
    _, towns = export.write_pairing_workbooks(eng, settings, tomorrow)
    assert [p.name for p in towns.written.values()] == ["山城街道_结对名单.xlsx"]
    assert read == [["山城街道"]]  # that town alone was read

    # the pairing stage records that it made a pair: every town is checked again
    with eng.begin() as conn:
        conn.execute(schema.household.insert().values(_household("h6", "吴六", "店子镇", "南村", seq=6)))
        conn.execute(schema.pairing.insert().values(_pair("c1", "household", "h6", tomorrow, "new_target")))
    warehouse.record_change(eng, "run-2", "pairing", 1)
    read.clear()
    _, towns = export.write_pairing_workbooks(eng, settings, tomorrow)
    assert [p.name for p in towns.written.values()] == ["店子镇_结对名单.xlsx"]
    assert read == [["山城街道", "店子镇"]]  # every town read again

    # a fix by hand, recorded by no stage, that adds a pair: the counts show it
    with eng.begin() as conn:
        conn.execute(schema.household.insert().values(_household("h7", "郑七", "山城街道", "东村", seq=7)))
        conn.execute(schema.pairing.insert().values(_pair("c1", "household", "h7", tomorrow, "new_target")))
    _, towns = export.write_pairing_workbooks(eng, settings, tomorrow + dt.timedelta(days=1))
    assert [p.name for p in towns.written.values()] == ["山城街道_结对名单.xlsx"]
    assert "郑七" in {r[4] for r in _rows(_town(settings, "山城街道")["结对名单"])}


def test_a_deleted_or_edited_town_workbook_is_written_again(night):
    eng, settings = night
    export.write_pairing_workbooks(eng, settings, AS_OF)
    before = _state(settings)
    folder = settings.export_dir / "分镇结对名单"
    (folder / "山城街道_结对名单.xlsx").unlink()
    (folder / "店子镇_结对名单.xlsx").write_bytes(b"saved over by someone")
    _, towns = export.write_pairing_workbooks(eng, settings, AS_OF)
    assert sorted(p.name for p in towns.written.values()) == [
        "山城街道_结对名单.xlsx",
        "店子镇_结对名单.xlsx",
    ]
    after = _state(settings)
    assert {name: data for name, (data, _) in after.items()} == {
        name: data for name, (data, _) in before.items()
    }
    assert after["西集镇_结对名单.xlsx"][1] == before["西集镇_结对名单.xlsx"][1]  # untouched


def test_town_names_become_safe_distinct_file_names():
    names = town_books.file_names(["店子镇", "a/b", "a_b", None, "Town", "town"])
    assert names["店子镇"] == "店子镇_结对名单.xlsx"
    assert names[None] == "镇街未明确_结对名单.xlsx"
    assert names["a_b"] == "a_b_结对名单.xlsx"
    assert names["a/b"].startswith("a_b_")
    assert names["a/b"] != names["a_b"]
    assert len({n.lower() for n in names.values()}) == len(names)
    assert all(not set(n) & set('/\\:*?"<>|') for n in names.values())
    assert IDS["h1"] not in town_books.file_names([f"镇{IDS['h1']}"])[f"镇{IDS['h1']}"]


# --- change log --------------------------------------------------------------------------------------
def test_change_log_lists_ended_and_new_pairs_with_reasons_and_masked_ids(night):
    eng, settings = night
    path = export.write_change_log(eng, settings, AS_OF)
    assert path == settings.export_dir / "变动日志_20261120.xlsx"
    ws = openpyxl.load_workbook(path)["结对变动"]
    header, *body = _rows(ws)
    assert header == change_log.LOG_COLUMNS
    assert len(body) == 5
    by_reason = {(r[1], r[12]): r for r in body}
    assert set(by_reason) == {
        ("结对结束", "干部调离或退休"),
        ("新结对", "原结对干部调离或不再符合条件，重新结对"),
        ("新结对", "新纳入结对对象"),
        ("结对结束", "家庭已退出/脱困"),
        ("结对结束", "案件已销号"),
    }
    # organization-department staff read it: Chinese only, no reason code anywhere
    assert "原因代码" not in header
    codes = re.compile(r"^[a-z]+(_[a-z]+)+$")
    wb = openpyxl.load_workbook(path)
    assert not [c.value for w in wb.worksheets for r in w.iter_rows() for c in r if codes.match(str(c.value))]
    ended = by_reason[("结对结束", "家庭已退出/脱困")]
    assert ended[5] == "'-2"
    assert ended[6] == f"{IDS['h4'][:6]}********{IDS['h4'][-4:]}"
    assert ended[7] == "赵干部"
    assert ended[8] == f"{IDS['c3'][:6]}********{IDS['c3'][-4:]}"
    assert ended[11] == dt.datetime(2026, 11, 20)


# --- safety, determinism, atomicity, speed -------------------------------------------------------
def test_no_formula_and_no_full_id_or_phone_in_any_workbook(night, tmp_path):
    eng, settings = night
    result = export.write_all(eng, settings, AS_OF, [1, 2, 3])
    assert len(result["feedback"]) == 3
    assert result["pairing"].endswith("结对汇总_20261120.xlsx")
    assert len(result["towns"]) == 3
    books = _all_xlsx(tmp_path)
    assert len(books) == 8  # 3 feedback, the summary, 3 towns, the change log
    hostile_seen = set()
    for book in books:
        for ws in openpyxl.load_workbook(book).worksheets:
            for row in ws.iter_rows():
                for c in row:
                    assert c.data_type != "f", (book.name, ws.title, c.coordinate)
                    if isinstance(c.value, str):
                        assert c.data_type == "s"
                        # formula-like text is defused, or shown as typed behind Excel's quote prefix
                        assert c.quotePrefix or not c.value.startswith(("=", "+", "-", "@")), (
                            book.name,
                            ws.title,
                            c.value,
                        )
                        assert not FULL_ID.search(c.value), (book.name, ws.title, c.coordinate)
                        assert not FULL_PHONE.search(c.value), (book.name, ws.title, c.coordinate)
                        hostile_seen |= {n for n in HOSTILE_NAMES if c.value == "'" + n}
    assert hostile_seen == set(HOSTILE_NAMES)  # they are there, as text
    # and not as a formula in the raw XML either
    for book in books:
        with zipfile.ZipFile(book) as z:
            for name in z.namelist():
                if name.startswith("xl/worksheets/"):
                    xml = z.read(name).decode()
                    assert "<f>" not in xml
                    assert "<f " not in xml
                    assert not FULL_ID.search(xml)
                    assert not FULL_PHONE.search(xml)


def test_output_is_deterministic(night):
    eng, settings = night
    summary, towns = export.write_pairing_workbooks(eng, settings, AS_OF)
    first = [p.read_bytes() for p in (summary, *towns.written.values())]
    time.sleep(1.1)
    shutil.rmtree(settings.export_dir)
    summary, towns = export.write_pairing_workbooks(eng, settings, AS_OF)
    assert [p.read_bytes() for p in (summary, *towns.written.values())] == first
    for path in (summary, *towns.written.values()):
        props = openpyxl.load_workbook(path).properties
        assert props.created == props.modified == dt.datetime(2026, 11, 20)


def test_a_crash_while_writing_leaves_the_previous_workbook_and_no_temp_file(night, monkeypatch):
    eng, settings = night
    path = export.write_change_log(eng, settings, AS_OF)
    before = path.read_bytes()

    def boom(self):  # the zip is half written when the disk fills up
        Path(self.filename).write_bytes(b"PK\x03\x04 half a workbook")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xlsxwriter.Workbook, "_store_workbook", boom)
    with pytest.raises(RuntimeError):
        export.write_change_log(eng, settings, AS_OF)
    assert path.read_bytes() == before
    assert sorted(p.name for p in settings.export_dir.iterdir()) == [path.name]


def test_pairing_workbook_lists_all_1500_pairs_of_a_district(tmp_path):
    eng = warehouse.connect(f"sqlite:///{tmp_path}/w.db")
    settings = Settings(intake_dir=tmp_path / "in", warehouse_url="", export_dir=tmp_path / "out")
    towns = ["山城街道", "店子镇", "西集镇", "桑村镇", "北庄镇"]
    with eng.begin() as conn:
        conn.execute(
            schema.cadre.insert(),
            [
                {
                    "cadre_key": f"c{i}",
                    "name": f"干部{i}",
                    "id_number": make("370406", dt.date(1970, 1, 1 + i % 28), i % 1000),
                    "rank": ("county", "section", "ordinary")[i % 3],
                    "unit": "单位",
                    "town": towns[i % 5],
                    "phone": f"138{i:08d}",
                    "status": "active",
                }
                for i in range(500)
            ],
        )
        conn.execute(
            schema.household.insert(),
            [
                {
                    "household_key": f"h{i}",
                    "head_name": f"户主{i}",
                    "head_id_number": make("370406", dt.date(1940, 1 + i % 12, 1 + i % 28), i % 1000),
                    "town": towns[i % 5],
                    "village": f"村{i % 40}",
                    "status": "active",
                }
                for i in range(1500)
            ],
        )
        conn.execute(
            schema.household_category.insert(),
            [{"household_key": f"h{i}", "category": "hardship", "status": "active"} for i in range(1500)],
        )
        conn.execute(
            schema.pairing.insert(),
            [
                _pair(f"c{i % 500}", "household", f"h{i}", AS_OF if i % 10 == 0 else EARLIER, "new_target")
                for i in range(1500)
            ],
        )
    export.write_pairing_workbooks(eng, settings, AS_OF)
    export.write_change_log(eng, settings, AS_OF)
    listed = {town: _town(settings, town)["结对名单"].max_row - 1 for town in towns}
    assert listed == dict.fromkeys(towns, 300)
    summary = {
        r[0]: r for r in _rows(openpyxl.load_workbook(settings.export_dir / "结对汇总_20261120.xlsx")["汇总"])
    }
    for town in towns:
        own = [c.value for c in _find_row(_town(settings, town)["汇总"], town, first=True)]
        assert tuple(own[:9]) == summary[town][:9], town


def test_a_night_with_more_new_pairs_than_the_change_sheet_lists_says_where_they_are(night, monkeypatch):
    """A province's first night makes a million pairs: 本次变化 lists every ended pair and the first
    new ones, then names the change log, which lists them all."""
    eng, settings = night
    full = list(_summary(eng, settings)["本次变化"].iter_rows(min_row=2, values_only=True))
    new_total = sum(1 for r in full if r[0] == "新结对")
    ended = [r for r in full if r[0] == "结对结束"]
    assert new_total >= 2
    assert ended

    for cap in (new_total - 1, 0):  # the full list, in its order, less the new pairs past the cap
        monkeypatch.setattr(common, "SHEET_LIST_MAX", cap)
        rows = list(_summary(eng, settings)["本次变化"].iter_rows(min_row=2, values_only=True))
        first_new = [r for r in full if r[0] == "新结对"][:cap]
        assert rows[:-1] == [r for r in full if r[0] == "结对结束" or r in first_new]
        assert f"共{new_total}条" in rows[-1][0]

    monkeypatch.setattr(common, "SHEET_LIST_MAX", 1)
    rows = list(_summary(eng, settings)["本次变化"].iter_rows(min_row=2, values_only=True))
    assert [r for r in rows if r[0] == "结对结束"] == ended
    assert sum(1 for r in rows if r[0] == "新结对") == 1
    note = rows[-1][0]
    assert f"共{new_total}条" in note
    assert "变动日志_20261120.xlsx" in note
    log_rows = list(
        openpyxl.load_workbook(export.write_change_log(eng, settings, AS_OF))["结对变动"].iter_rows(
            min_row=2, values_only=True
        )
    )
    assert sum(1 for r in log_rows if r[1] == "新结对") == new_total


def test_towns_are_listed_in_the_district_order_then_unknown_towns_then_no_town():
    from rosterlink.core.spec import district, town_key, town_order

    first, second = district().towns[:2]
    towns = ["外镇", None, second, "别镇", first]
    assert town_order(towns) == [first, second, "别镇", "外镇", None]
    assert sorted(towns, key=town_key) == town_order(towns)


# --- workbooks people print ----------------------------------------------------------------------------
def test_printed_sheets_read_back_a4_landscape_fit_to_width_headers_on_every_page_and_whole(night):
    """Issue 13: the towns' pair lists, the case sheets and the follow-through sheets print on A4
    landscape, one page wide, the header row on every page, every header shown whole."""

    eng, settings = night
    wb = _summary(eng, settings)
    printed = [(wb, "重点信访案件"), (wb, "走访帮扶"), (wb, "走访预警")]
    for town in TOWNS:
        printed += [(_town(settings, town), name) for name in ("结对名单", "重点信访案件", "走访预警")]
    for book, name in printed:
        ws = book[name]
        assert ws.page_setup.orientation == "landscape", name
        assert int(ws.page_setup.paperSize) == int(ws.PAPERSIZE_A4), name  # 9: A4
        assert ws.sheet_properties.pageSetUpPr.fitToPage, name
        # one page wide (fitToWidth absent means 1, the OOXML default), as many pages down as needed
        assert (int(ws.page_setup.fitToWidth or 1), int(ws.page_setup.fitToHeight)) == (1, 0), name
        assert ws.print_title_rows == "$1:$1", name
        for col, cell in enumerate(ws[1], start=1):
            # equal widths side by side are stored as one range (min..max) under its first letter
            width = next(d.width for d in ws.column_dimensions.values() if d.min <= col <= d.max)
            # a wide (CJK) character takes two width units: the whole header fits
            shown = sum(2 if ord(ch) > 0x2E80 else 1 for ch in cell.value)
            assert width >= shown, (name, cell.value, width)
    # 走访帮扶's seven-character headers (最长未联系(天) ...) no longer in 11-wide columns
    assert next(d.width for d in wb["走访帮扶"].column_dimensions.values() if d.min <= 7 <= d.max) >= 15
    # the summaries are not printed lists: left as they were
    assert wb["汇总"].page_setup.orientation is None
    assert _town(settings, "店子镇")["汇总"].page_setup.orientation is None


def test_a_night_without_pair_changes_says_so_in_the_change_sheet(night):
    eng, settings = night
    ws = _summary(eng, settings, AS_OF + dt.timedelta(days=1))["本次变化"]
    rows = _rows(ws)
    assert rows[0] == pairing_book.CHANGE_COLUMNS
    assert [r[0] for r in rows[1:]] == ["本次没有结对变化：没有新结对，也没有结束的结对。"]


def test_feedback_names_a_noted_sheet_by_its_name_and_shows_a_formula_as_typed(night):
    """A skipped sheet 填表说明 is named as such (not "(说明1)"); a value the clerk typed as
    =SUM(A1) is shown as typed, a text cell behind Excel's quote prefix (never a live formula)."""
    eng, settings = night
    with eng.begin() as conn:
        conn.execute(
            schema.intake_sheet.insert().values(
                file_id=4,
                sheet="(说明1)",
                roster=None,
                note="工作表“填表说明”中没有找到可识别的表头，未导入该表。",
            )
        )
        conn.execute(
            schema.row_warning.insert().values(
                _finding(
                    4,
                    "干部",
                    5,
                    "post",
                    "职务",
                    "=SUM(A1)",
                    "text_formula",
                    "“职务”的值以=、+、-、@开头，可能是公式，已按文本处理，请核对。",
                )
            )
        )
    [path] = export.write_feedback(eng, settings, [4])
    wb = openpyxl.load_workbook(path)
    facts = {r[0]: r[1] for r in _rows(wb["汇总"]) if r and r[0]}
    assert facts["报送部门"] == "组织部"
    assert [c.value for c in _find_row(wb["汇总"], "填表说明")][:2] == ["填表说明", "未导入"]
    assert not [c for r in wb["汇总"].iter_rows() for c in r if c.value == "(说明1)"]
    cell = wb["提示"]["D2"]
    assert (cell.value, cell.data_type, cell.quotePrefix) == ("=SUM(A1)", "s", True)
    with zipfile.ZipFile(path) as z:
        assert all("<f" not in z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/"))


def test_a_quiet_night_after_a_quiet_night_counts_no_pair_for_the_summary_or_the_town_plan(
    night, monkeypatch
):
    """Issue 14: the summary's pair figures per town and the town workbooks' list of towns are kept
    with the inputs' token. A later night with the same token, on which no pair started or ended,
    takes them from there instead of counting a province's million pairs, and its summary is the one
    a full count gives. A change, or a night run for an earlier date, counts again."""
    from rosterlink.export import pairing_book

    eng, settings = night
    counted: list[dt.date] = []
    sized: list[dt.date] = []
    real_figures, real_sizes = pairing_book.pair_figures, town_books.town_sizes
    monkeypatch.setattr(
        pairing_book, "pair_figures", lambda conn, as_of: counted.append(as_of) or real_figures(conn, as_of)
    )
    monkeypatch.setattr(
        town_books, "town_sizes", lambda conn, as_of: sized.append(as_of) or real_sizes(conn, as_of)
    )

    def summary_lines(path: Path) -> list[tuple]:
        return _rows(openpyxl.load_workbook(path)["汇总"])[1:]

    def full_count(day: dt.date) -> list[tuple]:  # the same summary with every figure counted
        books = town_books.books(settings)
        return summary_lines(export.write_pairing_workbook(eng, settings, day, books, token=None))

    export.write_pairing_workbooks(eng, settings, AS_OF)  # pairs made and ended on AS_OF
    assert (counted, sized) == ([AS_OF], [AS_OF])
    day2, day3, day4 = (AS_OF + dt.timedelta(days=n) for n in (1, 2, 3))
    summary, _ = export.write_pairing_workbooks(eng, settings, day2)
    # the pairs in force are those of AS_OF; the towns are counted (西集镇 only had pairs ended that night)
    assert (counted, sized) == ([AS_OF], [AS_OF, day2])
    kept_lines = summary_lines(summary)
    assert kept_lines == full_count(day2)
    assert any(r[3] for r in kept_lines), "the summary shows pairs"
    counted.clear()
    sized.clear()
    summary, towns = export.write_pairing_workbooks(eng, settings, day3)
    assert (counted, sized, towns.written) == ([], [], {})
    assert summary_lines(summary) == full_count(day3)

    # a night run for an earlier date counts again (the figures were counted on AS_OF)
    before_night = AS_OF - dt.timedelta(days=1)
    counted.clear()
    export.write_pairing_workbooks(eng, settings, before_night)
    assert (counted, sized) == ([before_night], [before_night])

    # a stage makes a pair: the token moves, the figures are counted and show it
    with eng.begin() as conn:
        conn.execute(schema.household.insert().values(_household("h6", "吴六", "店子镇", "南村", seq=6)))
        conn.execute(schema.pairing.insert().values(_pair("c1", "household", "h6", day4, "new_target")))
    warehouse.record_change(eng, "run-4", "pairing", 1)
    counted.clear()
    sized.clear()
    summary, _ = export.write_pairing_workbooks(eng, settings, day4)
    assert (counted, sized) == ([day4], [day4])
    lines: dict = {}
    before: dict = {}
    for rows, into in ((summary_lines(summary), lines), (kept_lines, before)):
        for r in rows:
            into.setdefault(r[0], r)  # the town's line (its unpaired households are listed below)
    assert lines["店子镇"][3] == before["店子镇"][3] + 1  # one more pair in force
    assert summary_lines(summary) == full_count(day4)


# the texts the change order compares: an ordering by the database's own collation (en-US puts
# "a" before "B", "_" first, and sets accents aside) would differ from Python's order by code point
_ORDER_TEXT = st.one_of(st.none(), st.text(alphabet="aB_b东Äé\u0301😀 ", max_size=3))


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"])
def test_the_changes_sorted_by_the_database_are_the_changes_in_their_order(engine_kind, tmp_path):
    """The change log reads the night's changes sorted by the database, a batch at a time
    (``stream_changes``): the same pairs in the same order as reading them all and sorting them in
    Python (``changes``), for the district's towns, towns it does not know, empty and missing
    towns, villages and names, on SQLite and on a PostgreSQL database whose own collation (ICU
    en-US) sorts text otherwise. The summary's 本次变化 (``listed_changes``) reads only every ended
    pair and the first new ones: the changes less the new pairs past the cap, for every cap."""
    import contextlib

    from hypothesis import HealthCheck, example

    from rosterlink.core.spec import district
    from rosterlink.export.pairs import NEW, changes, listed_changes, read_pairs, stream_changes

    from conftest import fresh_pg_database

    known = list(district().towns[:2])
    towns = st.sampled_from([*known, "外镇", "Zed镇", "abc镇", "", None])
    targets = st.lists(st.tuples(towns, _ORDER_TEXT, _ORDER_TEXT), min_size=1, max_size=12)
    pair_specs = st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["ended", "new", "kept", "old"]), st.booleans()),
        max_size=30,
    )

    with contextlib.ExitStack() as stack:
        if engine_kind == "sqlite":
            url = f"sqlite:///{tmp_path}/w.db"
        else:
            url = stack.enter_context(fresh_pg_database(icu_locale="en-US"))[1]
        eng = warehouse.connect(url)

        @hypothesis_settings(
            max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
        )
        @given(targets, pair_specs)
        # villages and names that ICU en-US sorts otherwise ("_" < "a" < "b" < "B" < "Ä"), towns the
        # district does not know ("Zed镇" < "abc镇" < "外镇" by code point), empty and missing towns
        @example(
            [(known[0], v, "张") for v in ("b", "B", "_", "Ä", "a")], [(i, "new", False) for i in range(5)]
        )
        @example(
            [(t, "a", n) for t in ("abc镇", "外镇", None, "Zed镇", "", known[1]) for n in ("b", "B")],
            [(i, how, False) for i in range(12) for how in ("new", "ended")],
        )
        def check(houses, specs):
            when = {
                "ended": (AS_OF - dt.timedelta(days=9), AS_OF),
                "new": (AS_OF, None),
                "kept": (AS_OF - dt.timedelta(days=3), None),
                "old": (AS_OF - dt.timedelta(days=30), AS_OF - dt.timedelta(days=2)),
            }
            with eng.begin() as conn:
                for table in (schema.pairing, schema.household, schema.petition_case, schema.cadre):
                    conn.execute(table.delete())
                conn.execute(schema.cadre.insert(), [_cadre("C1", "干部", "section", known[0])])
                conn.execute(
                    schema.household.insert(),
                    [
                        {
                            "household_key": f"H{i:06d}",
                            "head_name": name or "",
                            "head_id_number": None,
                            "town": town,
                            "village": village,
                            "status": "active",
                        }
                        for i, (town, village, name) in enumerate(houses)
                    ],
                )
                conn.execute(
                    schema.petition_case.insert(),
                    [
                        {
                            "case_key": f"K{i:06d}",
                            "case_number": f"X-{i}",
                            "petitioner_name": name,
                            "town": town,
                        }
                        | {"status": "open"}
                        for i, (town, _, name) in enumerate(houses)
                    ],
                )
                rows = [
                    _pair(
                        "C1",
                        "case" if case else "household",
                        f"{'K' if case else 'H'}{target % len(houses):06d}",
                        when[how][0],
                        "new_target",
                        when[how][1],
                        "target_left" if when[how][1] else None,
                    )
                    for target, how, case in specs
                ]
                if rows:
                    conn.execute(schema.pairing.insert(), rows)
            with eng.connect() as conn:
                expected = changes(read_pairs(conn, AS_OF, current=False, changed=True), AS_OF)
                assert list(stream_changes(conn, AS_OF)) == expected
                new = [q for q in expected if q.change(AS_OF) == NEW]
                for cap in sorted({0, 1, 3, len(new) - 1, len(new), len(new) + 5} - {-1}):
                    listed, new_total = listed_changes(conn, AS_OF, cap)
                    assert new_total == len(new)
                    assert listed == [q for q in expected if q.change(AS_OF) != NEW or q in new[:cap]]

        check()
        eng.dispose()
