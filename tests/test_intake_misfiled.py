"""Issue 15, the intake side: one bad file never stops a night, a misfiled roster is never loaded
as the wrong thing, and nothing a clerk dropped is passed over in silence.

Every file here is written as a clerk's office would produce it (openpyxl workbooks with title
rows and merged group headers, a file name in GBK bytes as an unzipped Windows archive leaves it)
and goes through the stage functions the nightly DAG calls (scan, read, validate, load, feedback);
the night-level promise runs the real DAG through ``dag.test()``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from rosterlink import tasks, warehouse
from rosterlink.core import idnumber, settings
from rosterlink.export import feedback
from rosterlink.intake import read, stage
from rosterlink.intake import scan as intake
from rosterlink.warehouse import schema


def an_id(seq: int, born: dt.date = dt.date(1968, 5, 2)) -> str:
    return idnumber.make("370406", born, seq)


def _cfg(tmp_path: Path, url: str) -> settings.Settings:
    return settings.load(intake_dir=tmp_path / "intake", warehouse_url=url, export_dir=tmp_path / "exports")


def _xlsx(path: Path, rows: list[list[object]], merges: tuple[str, ...] = ()) -> Path:
    """A one-sheet workbook; ``rows[i]`` is Excel row ``i + 1``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Sheet1"
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)
    for cells in merges:
        ws.merge_cells(cells)
    book.save(path)
    return path


def _ledger(url: str) -> dict[str, sa.Row]:
    t = schema.intake_file
    with warehouse.connect(url).connect() as conn:
        return {r.file_name: r for r in conn.execute(sa.select(t).order_by(t.c.file_id))}


def _read_night(cfg: settings.Settings, run_id: str) -> dict[str, dict]:
    """What the DAG's scan_intake task and the read half of its read_and_validate_file tasks do:
    scan, then read every queued file."""
    return {item["file_name"]: dict(tasks.read_file(cfg, item)) for item in tasks.scan(cfg, run_id)}


def _load_night(cfg: settings.Settings, run_id: str) -> dict[str, dict]:
    """Scan, read, validate and load: the night up to the warehouse."""
    items = [tasks.read_and_validate_file(cfg, item) for item in tasks.scan(cfg, run_id)]
    tasks.load(cfg, items)
    return {item["file_name"]: dict(item) for item in items}


# --------------------------------------------------------------------------- clerks' files

TITLE_MERGE = "A1:H1"


SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"


def a_name(seq: int) -> str:
    """A synthetic person's name (names hold no digits)."""
    return (
        SURNAMES[seq % len(SURNAMES)] + GIVEN[seq % len(GIVEN)] + GIVEN[(seq // len(GIVEN) + 3) % len(GIVEN)]
    )


def hardship_rows(first: int = 1, count: int = 2) -> list[list[object]]:
    return [
        ["山亭区特困家庭花名册"],
        ["序号", "户主姓名", "身份证号", "镇街", "村(居)", "家庭人口", "致困原因", "联系电话"],
        *(
            [i, a_name(i), an_id(i), "店子镇", "测试村", 3, "因病", f"1380000{i:04d}"]
            for i in range(first, first + count)
        ),
    ]


def old_member_rows() -> list[list[object]]:
    return [
        ["建国前入党老党员名册"],
        ["序号", "姓名", "性别", "身份证号", "入党时间", "镇街", "村(居)", "联系电话"],
        [
            1,
            "测试老党员",
            "男",
            an_id(101, dt.date(1928, 3, 1)),
            dt.datetime(1947, 6, 1),
            "店子镇",
            "测试村",
            None,
        ],
    ]


def cadre_rows() -> list[list[object]]:
    # the cadre roster whose linked-town column is headed 镇街, as the organization department writes it
    return [
        ["山亭区帮扶干部名册"],
        ["序号", "姓名", "性别", "身份证号", "工作单位", "职务", "职级", "镇街"],
        [1, "测试干部甲", "男", an_id(201), "区财政局", "科员", "一级科员", "店子镇"],
        [2, "测试干部乙", "女", an_id(202), "区民政局", "副局长", "副科级", "西集镇"],
    ]


def visit_rows() -> list[list[object]]:
    return [
        ["走访帮扶记录"],
        ["序号", "干部姓名", "干部身份证号", "户主姓名", "户主身份证号", "镇街", "走访时间", "走访方式"],
        [1, "测试干部甲", an_id(201), a_name(1), an_id(1), "店子镇", dt.datetime(2026, 11, 3), "入户走访"],
    ]


def cadre_change_rows() -> list[list[object]]:
    return [
        ["干部变动名单"],
        ["序号", "姓名", "身份证号", "变动类型", "变动时间", "工作单位", "职级", "镇街"],
        [1, "测试干部甲", an_id(201), "调离", dt.datetime(2026, 11, 1), "区财政局", "一级科员", "店子镇"],
    ]


def orphan_rows(title: bool = False) -> tuple[list[list[object]], tuple[str, ...]]:
    """The women's federation's standard layout: 儿童信息 / 监护人信息 merged over 姓名 / 身份证号,
    the single columns merged down over both header rows."""
    rows: list[list[object]] = [
        ["儿童信息", None, None, "监护人信息", None, None, "镇街", "村(居)", "联系电话"],
        ["姓名", "身份证号", "失亲情况", "姓名", "身份证号", "与儿童关系", None, None, None],
        [
            "测试童甲",
            an_id(301, dt.date(2015, 4, 1)),
            "父母双亡",
            "测试监护甲",
            an_id(302),
            "祖父",
            "店子镇",
            "测试村",
            None,
        ],
        [
            "测试童乙",
            an_id(303, dt.date(2016, 7, 9)),
            "父亡母改嫁",
            "测试监护乙",
            an_id(304),
            "祖母",
            "西集镇",
            "测试村",
            None,
        ],
    ]
    merges = ("A1:C1", "D1:F1", "G1:G2", "H1:H2", "I1:I2")
    if title:
        rows = [["失亲儿童家庭名单"], *rows]
        merges = ("A1:I1", "A2:C2", "D2:F2", "G2:G3", "H2:H3", "I2:I3")
    return rows, merges


# --------------------------------------------------------------------------- 1. a GBK file name


def test_file_name_in_gbk_bytes_is_rejected_with_a_reason_and_the_others_are_read(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _xlsx(cfg.intake_dir / "petition" / "正常.xlsx", hardship_rows())  # any other file of the night
    intake.ensure_folders(cfg.intake_dir)
    gbk_name = os.fsencode(cfg.intake_dir / "civil_affairs") + b"/" + "特困名单.xlsx".encode("gbk")
    source = _xlsx(tmp_path / "src.xlsx", hardship_rows())
    with open(gbk_name, "wb") as handle:  # a bytes path, as an unzipped archive leaves it
        handle.write(source.read_bytes())

    todo = intake.scan(warehouse.connect(sqlite_url), cfg, "night-1")

    ledger = _ledger(sqlite_url)
    assert [t["file_name"] for t in todo] == ["petition/正常.xlsx"]
    bad = next(r for r in ledger.values() if r.department == "civil_affairs")
    assert bad.status == "rejected"
    assert bad.reason_code == "file_name_encoding"
    assert "特困名单" in bad.message  # the name decoded best-effort for the clerk
    assert "重新命名" in bad.message
    # the next night does not record it again, and does not queue it
    again = intake.scan(warehouse.connect(sqlite_url), cfg, "night-2")
    assert [t["file_name"] for t in again] == ["petition/正常.xlsx"]
    # the clerk's feedback is named and titled as the clerk sees the file in Windows
    (written,) = feedback.write_feedback(warehouse.connect(sqlite_url), cfg, [bad.file_id])
    assert written == cfg.intake_dir / "civil_affairs" / "feedback" / "特困名单.结果.xlsx"
    book = openpyxl.load_workbook(written, read_only=True)
    summary = dict(r[:2] for r in book["汇总"].iter_rows(values_only=True) if len(r) >= 2)
    assert summary["文件名"] == "civil_affairs/特困名单.xlsx"
    assert summary["原因"] == bad.message
    assert len(_ledger(sqlite_url)) == 2


# --------------------------------------------------------------------------- 2. misfiled rosters


@pytest.mark.parametrize(
    ("name", "rows", "owner"),
    [
        ("老党员名册.xlsx", old_member_rows(), "organization"),
        ("干部名册.xlsx", cadre_rows(), "organization"),
        ("走访记录.xlsx", visit_rows(), "visits"),
        ("干部变动名单.xlsx", cadre_change_rows(), "organization"),
    ],
)
def test_another_departments_roster_in_civil_affairs_is_rejected_not_loaded_as_hardship(
    tmp_path, sqlite_url, name, rows, owner
):
    cfg = _cfg(tmp_path, sqlite_url)
    _xlsx(cfg.intake_dir / "civil_affairs" / name, rows, (TITLE_MERGE,))
    # the same roster where it belongs (its own title: another copy, not the same bytes)
    _xlsx(cfg.intake_dir / owner / name, [[f"{rows[0][0]}（报{owner}）"], *rows[1:]], (TITLE_MERGE,))

    items = _read_night(cfg, "night-1")
    ledger = _ledger(sqlite_url)

    misfiled = ledger[f"civil_affairs/{name}"]
    assert items[f"civil_affairs/{name}"]["status"] == "rejected"
    assert misfiled.reason_code == "file_wrong_department"
    assert f"“{owner}”文件夹" in misfiled.message  # tells the clerk where it goes
    with warehouse.connect(sqlite_url).connect() as conn:
        staged = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.staged_row)
            .where(schema.staged_row.c.file_id == misfiled.file_id)
        ).scalar_one()
    assert staged == 0
    # in its own folder the same file is read, as its own roster
    assert items[f"{owner}/{name}"]["status"] == "read"


def test_roster_is_recognised_by_its_headers_in_any_folder(tmp_path):
    path = _xlsx(tmp_path / "干部名册.xlsx", cadre_rows(), (TITLE_MERGE,))
    assert read.read_file(path, "organization").tables[0].roster == "cadre"
    assert read.read_file(path, None).tables[0].roster == "cadre"
    hardship = _xlsx(tmp_path / "特困.xlsx", hardship_rows(), (TITLE_MERGE,))
    assert read.read_file(hardship, "civil_affairs").tables[0].roster == "hardship"


# --------------------------------------------------------------------------- 3. moved after rejection


def test_file_rejected_in_the_wrong_folder_then_moved_to_the_right_one_is_loaded(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    wrong = _xlsx(cfg.intake_dir / "civil_affairs" / "干部名册.xlsx", cadre_rows(), (TITLE_MERGE,))
    first = _load_night(cfg, "night-1")
    assert first["civil_affairs/干部名册.xlsx"]["status"] == "rejected"

    right = cfg.intake_dir / "organization" / "干部名册.xlsx"
    wrong.rename(right)  # the clerk moves it, as the feedback said
    second = _load_night(cfg, "night-2")

    row = _ledger(sqlite_url)["organization/干部名册.xlsx"]
    assert row.status == "loaded", row.message
    assert row.reason_code is None
    assert row.rows_loaded == 2
    assert second["organization/干部名册.xlsx"]["status"] == "validated"


def test_a_misfiled_file_and_its_copy_in_the_right_folder_the_same_night_load_that_night(
    tmp_path, sqlite_url
):
    """The clerk drops the cadre roster into civil affairs' folder, then (reading the feedback, or
    unsure) copies it into the organization department's folder before the night: the copy loads
    that night, not one night late as a duplicate of the misfiled one; the misfiled one is rejected
    with the folder it belongs in. A third copy in the right folder is a duplicate as before."""
    cfg = _cfg(tmp_path, sqlite_url)
    rows = cadre_rows()
    _xlsx(cfg.intake_dir / "civil_affairs" / "干部名册.xlsx", rows, (TITLE_MERGE,))
    misfiled = (cfg.intake_dir / "civil_affairs" / "干部名册.xlsx").read_bytes()
    (cfg.intake_dir / "organization").mkdir(parents=True)
    (cfg.intake_dir / "organization" / "干部名册.xlsx").write_bytes(misfiled)  # same bytes, both folders
    (cfg.intake_dir / "organization" / "干部名册(1).xlsx").write_bytes(misfiled)  # and once more

    _load_night(cfg, "night-1")
    ledger = _ledger(sqlite_url)
    rejected = ledger["civil_affairs/干部名册.xlsx"]
    copy = ledger["organization/干部名册(1).xlsx"]
    again = ledger["organization/干部名册.xlsx"]
    assert (rejected.status, rejected.reason_code) == ("rejected", "file_wrong_department")
    assert (copy.status, copy.rows_loaded) == ("loaded", 2)
    assert (again.status, again.reason_code) == ("duplicate", "file_duplicate")

    _load_night(cfg, "night-2")
    assert _ledger(sqlite_url)["organization/干部名册(1).xlsx"].rows_loaded == 2  # loaded once


# --------------------------------------------------------------------------- 4. two-row group header


@pytest.mark.parametrize("title", [False, True])
def test_womens_federation_roster_with_group_header_loads_child_and_guardian_apart(tmp_path, title):
    rows, merges = orphan_rows(title)
    path = _xlsx(tmp_path / "失亲儿童.xlsx", rows, merges)

    result = read.read_file(path, "womens_federation")

    (table,) = result.tables
    assert table.roster == "orphan"
    frame = table.frame
    assert list(frame["child_name"]) == ["测试童甲", "测试童乙"]
    assert list(frame["guardian_name"]) == ["测试监护甲", "测试监护乙"]
    assert list(frame["child_id_number"]) == [
        an_id(301, dt.date(2015, 4, 1)),
        an_id(303, dt.date(2016, 7, 9)),
    ]
    assert list(frame["guardian_id_number"]) == [an_id(302), an_id(304)]
    assert list(frame["relation"]) == ["祖父", "祖母"]
    assert list(frame["town"]) == ["店子镇", "西集镇"]
    assert list(frame["_row"]) == ([4, 5] if title else [3, 4])


def test_womens_federation_layout_dropped_into_civil_affairs_is_not_a_hardship_roster(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    rows, merges = orphan_rows()
    _xlsx(cfg.intake_dir / "civil_affairs" / "失亲儿童.xlsx", rows, merges)
    _xlsx(cfg.intake_dir / "womens_federation" / "失亲儿童.xlsx", *orphan_rows(title=True))

    items = _read_night(cfg, "night-1")
    ledger = _ledger(sqlite_url)

    assert items["womens_federation/失亲儿童.xlsx"]["status"] == "read"
    assert items["womens_federation/失亲儿童.xlsx"]["rows_read"] == 2
    assert ledger["civil_affairs/失亲儿童.xlsx"].reason_code == "file_wrong_department"
    assert "womens_federation" in ledger["civil_affairs/失亲儿童.xlsx"].message


# --------------------------------------------------------------------------- 5. files outside the folders


def test_every_file_a_person_dropped_is_recorded_and_told_where_it_belongs(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    root = cfg.intake_dir
    _xlsx(root / "特困名单.xlsx", hardship_rows(), (TITLE_MERGE,))  # at the intake root
    _xlsx(root / "民政局" / "特困名单11月.xlsx", hardship_rows(3), (TITLE_MERGE,))  # a folder of its own
    _xlsx(root / "Civil_Affairs" / "干部名册.xlsx", cadre_rows(), (TITLE_MERGE,))
    (root / "说明.txt").write_text("请各部门按时报送\n", encoding="utf-8")
    _xlsx(root / "civil_affairs" / "_备份" / "特困.xlsx", hardship_rows(5), (TITLE_MERGE,))
    _xlsx(root / "civil_affairs" / "_特困补报.xlsx", hardship_rows(7), (TITLE_MERGE,))
    # what the product itself writes in the intake tree is not intake
    _xlsx(root / "civil_affairs" / "feedback" / "旧.结果.xlsx", [["报送文件处理结果"]])
    _xlsx(root / "feedback" / "旧.结果.xlsx", [["报送文件处理结果"]])
    _xlsx(root / "review" / "待核实.xlsx", [["待核实"]])
    (root / "civil_affairs" / "Thumbs.db").write_bytes(b"\x00")

    items = _read_night(cfg, "night-1")
    ledger = _ledger(sqlite_url)

    assert sorted(ledger) == sorted(
        [
            "特困名单.xlsx",
            "民政局/特困名单11月.xlsx",
            "Civil_Affairs/干部名册.xlsx",
            "说明.txt",
            "civil_affairs/_备份/特困.xlsx",
            "civil_affairs/_特困补报.xlsx",
        ]
    )
    # files in a department folder are that department's, whatever their names start with
    assert items["civil_affairs/_备份/特困.xlsx"]["status"] == "read"
    assert items["civil_affairs/_特困补报.xlsx"]["status"] == "read"
    for name, folder in [
        ("特困名单.xlsx", "civil_affairs"),
        ("民政局/特困名单11月.xlsx", "civil_affairs"),
        ("Civil_Affairs/干部名册.xlsx", "organization"),
    ]:
        row = ledger[name]
        assert (row.status, row.reason_code) == ("rejected", "file_misplaced"), name
        assert f"“{folder}”文件夹" in row.message, name
    assert "“civil_affairs”（民政局）" in ledger["说明.txt"].message  # not a roster: every folder listed

    written = feedback.write_feedback(
        warehouse.connect(sqlite_url), cfg, [r.file_id for r in _ledger(sqlite_url).values()]
    )
    paths = {p.relative_to(root).as_posix() for p in written}
    assert "feedback/民政局_特困名单11月.结果.xlsx" in paths
    assert "feedback/特困名单.结果.xlsx" in paths
    book = openpyxl.load_workbook(root / "feedback" / "民政局_特困名单11月.结果.xlsx", read_only=True)
    summary = [tuple(r) for r in book["汇总"].iter_rows(values_only=True)]
    assert ("原因", ledger["民政局/特困名单11月.xlsx"].message) in summary
    assert ("报送部门", "未归类（放错文件夹）") in summary  # as the dashboard names it, never a code
    # the feedback written tonight is not intake tomorrow
    intake.scan(warehouse.connect(sqlite_url), cfg, "night-2")
    assert len(_ledger(sqlite_url)) == 6


# --------------------------------------------------------------------------- 6. feedback names


def test_two_files_whose_feedback_names_collide_each_get_their_own_workbook(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _xlsx(cfg.intake_dir / "civil_affairs" / "2024" / "特困.xlsx", hardship_rows(1), (TITLE_MERGE,))
    _xlsx(cfg.intake_dir / "civil_affairs" / "2024_特困.xlsx", hardship_rows(3), (TITLE_MERGE,))
    _read_night(cfg, "night-1")
    eng = warehouse.connect(sqlite_url)
    ledger = _ledger(sqlite_url)

    written = feedback.write_feedback(eng, cfg, [r.file_id for r in ledger.values()])

    assert len({p.name for p in written}) == 2
    for row in _ledger(sqlite_url).values():
        book = openpyxl.load_workbook(cfg.intake_dir / row.feedback_path, read_only=True)
        summary = dict(r[:2] for r in book["汇总"].iter_rows(values_only=True) if len(r) >= 2)
        assert summary["文件名"] == row.file_name


def test_feedback_name_taken_on_an_earlier_night_is_not_reused_by_another_file(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    eng = warehouse.connect(sqlite_url)
    _xlsx(cfg.intake_dir / "civil_affairs" / "2024" / "特困.xlsx", hardship_rows(1), (TITLE_MERGE,))
    _read_night(cfg, "night-1")
    feedback.write_feedback(eng, cfg, [r.file_id for r in _ledger(sqlite_url).values()])
    _xlsx(cfg.intake_dir / "civil_affairs" / "2024_特困.xlsx", hardship_rows(3), (TITLE_MERGE,))
    _read_night(cfg, "night-2")
    second = _ledger(sqlite_url)["civil_affairs/2024_特困.xlsx"]

    feedback.write_feedback(eng, cfg, [second.file_id])

    first, second = _ledger(sqlite_url).values()
    assert first.feedback_path != second.feedback_path
    book = openpyxl.load_workbook(cfg.intake_dir / first.feedback_path, read_only=True)
    summary = dict(r[:2] for r in book["汇总"].iter_rows(values_only=True) if len(r) >= 2)
    assert summary["文件名"] == "civil_affairs/2024/特困.xlsx"


# --------------------------------------------------------------------------- 7. overwritten mid-night


def test_file_overwritten_between_scan_and_read_is_loaded_once_under_its_own_row(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    path = _xlsx(cfg.intake_dir / "civil_affairs" / "特困.xlsx", hardship_rows(1, 2), (TITLE_MERGE,))
    (scanned,) = tasks.scan(cfg, "night-1")
    _xlsx(path, hardship_rows(1, 3), (TITLE_MERGE,))  # the clerk saves a corrected copy over it

    item = tasks.read_file(cfg, scanned)
    tasks.load(cfg, [tasks.validate_file(cfg, item)])

    old = _ledger(sqlite_url)["civil_affairs/特困.xlsx"]
    assert item["status"] == "rejected"
    assert (old.status, old.reason_code, old.rows_loaded) == ("rejected", "file_changed_during_read", 0)
    assert "无需重新报送" in old.message

    _load_night(cfg, "night-2")
    _load_night(cfg, "night-3")
    t = schema.intake_file
    with warehouse.connect(sqlite_url).connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.file_id)).all()
    assert [(r.status, r.rows_loaded) for r in rows] == [("rejected", 0), ("loaded", 3)]
    assert rows[1].sha256 == intake.sha256_of(path)


def test_file_changed_while_it_is_read_is_not_loaded_under_the_scanned_row(tmp_path, sqlite_url, monkeypatch):
    cfg = _cfg(tmp_path, sqlite_url)
    path = _xlsx(cfg.intake_dir / "civil_affairs" / "特困.xlsx", hardship_rows(1, 2), (TITLE_MERGE,))
    (scanned,) = tasks.scan(cfg, "night-1")
    real_read = read.read_file

    def read_while_copied_over(*args, **kwargs):
        result = real_read(*args, **kwargs)
        _xlsx(path, hardship_rows(1, 4), (TITLE_MERGE,))  # a copy landing while the reader works
        return result

    monkeypatch.setattr(stage.read, "read_file", read_while_copied_over)
    item = tasks.read_file(cfg, scanned)

    assert item["status"] == "rejected"
    assert _ledger(sqlite_url)["civil_affairs/特困.xlsx"].reason_code == "file_changed_during_read"


# --------------------------------------------------------------------------- the night goes on


@pytest.mark.slow
def test_bad_names_and_stray_files_never_stop_the_night(tmp_path, sqlite_url, run_night):
    intake_dir = tmp_path / "intake"
    intake.ensure_folders(intake_dir)
    _xlsx(intake_dir / "civil_affairs" / "特困.xlsx", hardship_rows(1, 3), (TITLE_MERGE,))
    _xlsx(intake_dir / "organization" / "干部名册.xlsx", cadre_rows(), (TITLE_MERGE,))
    source = _xlsx(tmp_path / "src.xlsx", hardship_rows(10, 2), (TITLE_MERGE,))
    gbk = os.fsencode(intake_dir / "civil_affairs") + b"/" + "特困补报.xlsx".encode("gbk")
    with open(gbk, "wb") as handle:  # a bytes path
        handle.write(source.read_bytes())
    _xlsx(intake_dir / "民政局" / "特困名单.xlsx", hardship_rows(20, 2), (TITLE_MERGE,))
    _xlsx(intake_dir / "civil_affairs" / "走访记录.xlsx", visit_rows(), (TITLE_MERGE,))

    assert run_night(intake_dir, sqlite_url, tmp_path / "exports", as_of="2026-11-25") == "success"

    ledger = _ledger(sqlite_url)
    assert len(ledger) == 5
    by_code = {r.file_name: (r.status, r.reason_code) for r in ledger.values()}
    assert by_code["civil_affairs/特困.xlsx"] == ("loaded", None)
    assert by_code["organization/干部名册.xlsx"] == ("loaded", None)
    assert by_code["民政局/特困名单.xlsx"] == ("rejected", "file_misplaced")
    assert by_code["civil_affairs/走访记录.xlsx"] == ("rejected", "file_wrong_department")
    (bad,) = [r for r in ledger.values() if r.reason_code == "file_name_encoding"]
    assert bad.status == "rejected"
    # every file got its feedback, each its own
    paths = [r.feedback_path for r in ledger.values()]
    assert all(paths), paths
    assert len(set(paths)) == 5
    assert (intake_dir / "feedback" / "民政局_特困名单.结果.xlsx").is_file()


def test_an_error_under_a_group_header_names_the_group_with_the_column(tmp_path, sqlite_url):
    # the guardian's ID number is mistyped: the clerk must be told it is the guardian's 身份证号,
    # not the child's (both columns read 身份证号 on the second header row)
    cfg = _cfg(tmp_path, sqlite_url)
    rows, merges = orphan_rows(title=True)
    good = str(rows[3][4])
    rows[3][4] = good[:-1] + ("0" if good[-1] != "0" else "1")  # a wrong check digit
    _xlsx(cfg.intake_dir / "womens_federation" / "失亲儿童.xlsx", rows, merges)

    items = _load_night(cfg, "night-1")

    (item,) = items.values()
    t = schema.rejected_row
    with warehouse.connect(sqlite_url).connect() as conn:
        found = conn.execute(
            sa.select(t.c.field, t.c.header, t.c.row_number).where(t.c.file_id == item["file_id"])
        ).all()
    assert [(f, h, r) for f, h, r in found if f == "guardian_id_number"] == [
        ("guardian_id_number", "监护人信息/身份证号", 4)
    ]
    (written,) = feedback.write_feedback(warehouse.connect(sqlite_url), cfg, [item["file_id"]])
    book = openpyxl.load_workbook(written, read_only=True)
    cells = [str(v) for row in book["错误明细"].iter_rows(values_only=True) for v in row if v is not None]
    assert "监护人信息/身份证号" in cells
    text = " ".join(cells)
    assert str(rows[3][4]) not in text  # the mistyped number is masked in the feedback
    assert good not in text
