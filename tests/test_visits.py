"""Follow-through (走访帮扶): real visit log files through the real night (Airflow dag.test).

A small district of four households in one town and two cadres is paired on night 1 (2026-08-01).
The units then drop visit logs written here as .xlsx and GBK .csv; the figures are checked against
a count made by hand from the rows below.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.export import opinions
from rosterlink.followup import config, figures, match

from loaded_rows import id_number

TOWN = "店子镇"
HOUSEHOLDS = {"A": ("张桂兰", 1), "B": ("李守田", 2), "C": ("王秀英", 3), "D": ("赵德明", 4)}
CADRES = {"X": ("刘建国", 501), "Y": ("陈晓东", 502)}
VISIT_HEADERS = (
    "序号",
    "干部姓名",
    "干部身份证号",
    "工作单位",
    "户主姓名",
    "户主身份证号",
    "走访时间",
    "走访方式",
    "发现问题",
    "解决问题",
    "帮扶类型",
    "帮扶内容",
    "折合金额(元)",
    "资金来源",
    "意见建议",
    "意见类别",
)


def q(url: str, sql: str) -> list[tuple]:
    with warehouse.connect(url).connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def write_xlsx(path: Path, title: str, headers: tuple, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append((title,))
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(headers))
    ws.append(headers)
    for row in rows:
        ws.append(row)
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str) and len(cell.value) == 18 and cell.value[:17].isdigit():
                cell.data_type = "s"
    wb.save(path)


def write_csv(path: Path, headers: tuple, rows: list[tuple], encoding: str = "gbk") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)


def household_id(label: str) -> str:
    return id_number(HOUSEHOLDS[label][1])


def cadre_id(label: str) -> str:
    return id_number(CADRES[label][1])


def write_rosters(intake: Path) -> None:
    write_xlsx(
        intake / "civil_affairs" / "特困家庭花名册.xlsx",
        "店子镇特困家庭花名册",
        ("户主姓名", "身份证号码", "镇街", "村(居)", "家庭人口"),
        [(name, id_number(n), TOWN, "东庄村", 2) for name, n in HOUSEHOLDS.values()],
    )
    write_xlsx(
        intake / "organization" / "干部名册.xlsx",
        "干部名册",
        ("姓名", "身份证号", "工作单位", "职务", "职级", "联系镇街"),
        [(name, id_number(n), "区财政局", "科长", "正科级", TOWN) for name, n in CADRES.values()],
    )


def pairs_by_household(url: str) -> dict[str, str]:
    """household label -> cadre label, as the pairing workbook tells the units."""
    ids = {id_number(n): label for label, (_, n) in HOUSEHOLDS.items()}
    cadre_ids = {id_number(n): label for label, (_, n) in CADRES.items()}
    rows = q(
        url,
        "SELECT h.head_id_number, c.id_number FROM pairing p JOIN household h ON h.household_key = "
        "p.target_key JOIN cadre c ON c.cadre_key = p.cadre_key WHERE p.valid_to IS NULL",
    )
    return {ids[h]: cadre_ids[c] for h, c in rows}


def visit(
    cadre: str,
    house: str,
    day: str,
    kind: str = "入户走访",
    found: str = "",
    solved: str = "",
    help_kind: str = "",
    content: str = "",
    value: object = "",
    source: str = "",
    opinion: str = "",
    topic: str = "",
    *,
    house_id: str | None = None,
    cadre_number: str | None = None,
) -> tuple:
    name = HOUSEHOLDS[house][0] if house in HOUSEHOLDS else house
    return (
        CADRES[cadre][0],
        cadre_number or cadre_id(cadre),
        "区财政局",
        name,
        house_id if house_id is not None else household_id(house),
        day,
        kind,
        found,
        solved,
        help_kind,
        content,
        value,
        source,
        opinion,
        topic,
    )


def night2_log(pairs: dict[str, str]) -> tuple[list[tuple], dict]:
    """The visit log of night 2 and what each row must become (Excel row -> reason code or None)."""
    by_cadre: dict[str, list[str]] = {}
    for house, cadre in sorted(pairs.items()):
        by_cadre.setdefault(cadre, []).append(house)
    (x, (a, b)), (y, (c, d)) = sorted(by_cadre.items())
    rows = [
        visit(
            x,
            a,
            "2026-08-20",
            "入户走访",
            "1、看病贵；2、房屋漏雨",
            "房屋漏雨",
            "实物",
            "米、面、油",
            300,
            "个人出资",
            "希望提高看病报销比例",
            "医疗",
        ),  # row 3: valid
        visit(x, a, "2026-09-01", "电话", "无", "", "", "", "", "", "", ""),  # row 4: valid, phone
        visit(x, b, "2026-08-25", "电话联系", "孩子上学远", "", "", "", "", "", "", ""),  # row 5: phone only
        visit(
            y,
            c,
            "2026-09-10",
            "入户",
            "无",
            "",
            "资金",
            "慰问金",
            5000,
            "财政专项资金",
            "村里道路坑洼，希望修路",
            "",
        ),  # row 6: public funds, above band
        visit(
            y,
            d,
            "2026-09-12",
            "上门走访",
            "低保待遇没办下来",
            "",
            "实物",
            "鸡蛋",
            20,
            "自筹",
            "希望尽快办理低保",
            "",
        ),  # row 7: below band
        visit(
            x,
            a,
            "2026.8.20",
            "入户走访",
            "1、看病贵；2、房屋漏雨",
            "房屋漏雨",
            "实物",
            "米、面、油",
            300,
            "个人出资",
            "希望提高看病报销比例",
            "医疗",
        ),  # row 8: duplicate of row 3
        visit(x, c, "2026-09-15", "入户走访"),  # row 9: not X's household
        visit(y, d, "2026-07-20", "入户走访"),  # row 10: before the pair began
        visit(x, a, "2026-09-20", "入户走访", cadre_number=id_number(999)),  # row 11: cadre unknown
        visit(y, c, "2026-09-21", ""),  # row 12: no kind (GX)
    ]
    expected = {
        3: None,
        4: None,
        5: None,
        6: None,
        7: None,
        8: "visit_duplicate",
        9: "visit_household_unknown",
        10: "visit_before_pair",
        11: "visit_cadre_unknown",
        12: "required_missing",
    }
    return [(i + 1, *r) for i, r in enumerate(rows)], {
        "expected": expected,
        "x": x,
        "y": y,
        "a": a,
        "b": b,
        "c": c,
        "d": d,
    }


@pytest.fixture
def district(tmp_path: Path) -> dict:
    return {"intake": tmp_path / "intake", "exports": tmp_path / "exports"}


def two_nights(district: dict, url: str, run_night) -> dict:
    write_rosters(district["intake"])
    assert run_night(district["intake"], url, district["exports"], as_of="2026-08-01") == "success"
    rows, facts = night2_log(pairs_by_household(url))
    write_xlsx(
        district["intake"] / "visits" / "区财政局走访记录.xlsx",
        "区财政局结对帮扶走访记录",
        VISIT_HEADERS,
        rows,
    )
    assert run_night(district["intake"], url, district["exports"], as_of="2026-10-10") == "success"
    return facts


@pytest.mark.slow
def test_visit_logs_are_matched_or_rejected_with_reasons_and_the_figures_match_a_hand_count(
    district, sqlite_url, run_night, monkeypatch
):
    facts = two_nights(district, sqlite_url, run_night)
    url = sqlite_url
    # every row accounted for: 10 read, 5 loaded, 5 rejected, and the file still balances
    assert q(
        url, "SELECT rows_read, rows_loaded, rows_rejected FROM intake_file WHERE department = 'visits'"
    ) == [(10, 5, 5)]
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    rejected = dict(
        q(
            url,
            "SELECT r.row_number, r.reason_code FROM rejected_row r JOIN intake_file f "
            "ON f.file_id = r.file_id WHERE f.department = 'visits'",
        )
    )
    assert rejected == {row: code for row, code in facts["expected"].items() if code}
    assert q(url, "SELECT COUNT(*) FROM visit") == [(5,)]
    # a retried follow-through stage matches nothing twice and rejects nothing twice
    again = match.match(warehouse.connect(url), dt.date(2026, 10, 10))
    assert (again["rows_matched"], again["rows_rejected"], again["households"]) == (0, {}, 4)
    assert q(url, "SELECT COUNT(*) FROM visit") == [(5,)]
    assert q(
        url,
        "SELECT COUNT(*) FROM rejected_row r JOIN intake_file f ON f.file_id = r.file_id "
        "WHERE f.department = 'visits'",
    ) == [(5,)]

    # the figures, counted by hand from the log above (night of 2026-10-10; deadline 2026-09-25)
    fig = figures.headline(warehouse.connect(url))
    assert {
        k: fig[k]
        for k in (
            "households",
            "visited_in_person",
            "not_visited_in_person",
            "overdue",
            "never_contacted",
            "phone_only",
            "in_person_visits",
            "phone_contacts",
            "problems_found",
            "problems_solved",
            "help_value",
            "public_fund_entries",
            "help_above_band",
            "help_below_band",
            "opinions",
        )
    } == {
        "households": 4,
        "visited_in_person": 3,
        "not_visited_in_person": 1,
        "overdue": 1,
        "never_contacted": 0,
        "phone_only": 1,
        "in_person_visits": 3,
        "phone_contacts": 2,
        "problems_found": 4,
        "problems_solved": 1,
        "help_value": 5320.0,
        "public_fund_entries": 1,
        "help_above_band": 1,
        "help_below_band": 1,
        "opinions": 3,
    }
    per_house = {
        r[0]: r[1:]
        for r in q(
            url,
            """
        SELECT h.head_name, f.visited_in_person, f.overdue, f.days_since_contact, f.help_flag, f.deadline
        FROM followup_household f JOIN household h ON h.household_key = f.household_key""",
        )
    }
    name = {k: HOUSEHOLDS[facts[k]][0] for k in "abcd"}
    assert per_house[name["a"]][:4] == (1, 0, 39, None)  # last contact 09-01 by phone
    assert per_house[name["b"]][:4] == (0, 1, 46, None)  # phone only, past the deadline
    assert per_house[name["c"]][:4] == (1, 0, 30, "above")  # 5000 > 3000
    assert per_house[name["d"]][:4] == (1, 0, 28, "below")  # 20 < 200
    assert {str(r[4]) for r in per_house.values()} == {"2026-09-25"}
    by_cadre = {
        r[0]: r[1:]
        for r in q(
            url,
            "SELECT name, households, not_visited_in_person, overdue, "
            "in_person_visits, phone_contacts, public_fund_entries "
            "FROM followup_by_cadre",
        )
    }
    assert by_cadre[CADRES[facts["x"]][0]] == (2, 1, 1, 1, 2, 0)
    assert by_cadre[CADRES[facts["y"]][0]] == (2, 0, 0, 2, 0, 1)
    assert q(
        url, "SELECT town, households, overdue, problems_found, public_fund_entries FROM followup_by_town"
    ) == [(TOWN, 4, 1, 4, 1)]
    assert q(url, "SELECT unit, cadres, households, in_person_visits FROM followup_by_unit") == [
        ("区财政局", 2, 4, 3)
    ]

    # the clerk's feedback workbook lists every rejected row with its message
    fb = openpyxl.load_workbook(district["intake"] / "visits" / "feedback" / "区财政局走访记录.结果.xlsx")
    listed = {r[1]: r[4] for r in fb["错误明细"].iter_rows(min_row=2, values_only=True)}
    assert set(listed) == {8, 9, 10, 11, 12}
    assert "重复" in listed[8]
    assert "早于" in listed[10]
    assert "2026-08-01" in listed[10]
    assert "不在该干部的结对家庭中" in listed[9]
    assert "干部名册" in listed[11]

    # the pairing summary's follow-through sheets, and the town workbook's columns
    wb = openpyxl.load_workbook(district["exports"] / "结对汇总_20261010.xlsx")
    assert {"走访帮扶", "走访预警"} <= set(wb.sheetnames)
    own = openpyxl.load_workbook(district["exports"] / "分镇结对名单" / f"{TOWN}_结对名单.xlsx")
    town = list(own["结对名单"].iter_rows(values_only=True))
    state = {r[4]: r[14] for r in town[1:]}
    assert state[name["b"]] == "超期未入户走访（仅电话联系）"
    assert state[name["a"]] == "已入户走访1次"
    warn = list(wb["走访预警"].iter_rows(min_row=2, values_only=True))
    assert sorted(r[0] for r in warn) == ["公款帮扶", "帮扶低于标准", "帮扶高于标准", "超期未走访"]
    # more overdue households than the sheet lists (a province before its first logs): the help and
    # public-fund lines stay, the overdue ones stop at the cap and a last line says how many and where
    from rosterlink import export
    from rosterlink.core import settings as settings_mod
    from rosterlink.export import common

    monkeypatch.setattr(common, "SHEET_LIST_MAX", 0)
    capped = settings_mod.Settings(
        intake_dir=district["intake"], warehouse_url=url, export_dir=district["exports"] / "capped"
    )
    path, _ = export.write_pairing_workbooks(warehouse.connect(url), capped, dt.date(2026, 10, 10))
    warn_capped = list(openpyxl.load_workbook(path)["走访预警"].iter_rows(min_row=2, values_only=True))
    assert sorted(r[0] for r in warn_capped[:-1]) == ["公款帮扶", "帮扶低于标准", "帮扶高于标准"]
    assert "超期未入户走访共1户" in warn_capped[-1][0]
    assert "走访情况" in warn_capped[-1][0]
    summary = list(wb["走访帮扶"].iter_rows(min_row=2, values_only=True))
    assert summary[0][:6] == (TOWN, 4, 3, 1, 1, 0)

    # the Airflow page's follow-through section shows the same counts
    from rosterlink.dashboard import data, page

    html = page.render_page(
        data.figures(warehouse.connect(url)), warehouse="w", generated=dt.datetime(2026, 10, 10, 8)
    )
    for key, value in (
        ("followup.overdue", "1"),
        ("followup.visited_in_person", "3"),
        ("followup.public_fund_entries", "1"),
        (f"followup.{TOWN}.problems_found", "4"),
        (f"followup.{TOWN}.help_value", "5,320"),
    ):
        assert f'data-figure="{key}">{value}<' in html, key


@pytest.mark.slow
def test_opinions_reach_one_workbook_per_responsible_department_without_id_numbers(
    district, sqlite_url, run_night
):
    two_nights(district, sqlite_url, run_night)
    folder = district["exports"] / "意见建议_20261010"
    assert sorted(p.name for p in folder.iterdir()) == ["交通运输局.xlsx", "卫健局.xlsx", "民政局.xlsx"]
    ids = [id_number(n) for _, n in [*HOUSEHOLDS.values(), *CADRES.values()]]
    for path in folder.iterdir():
        wb = openpyxl.load_workbook(path)
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    assert cell.data_type != "f"
                    text = str(cell.value or "")
                    assert not any(i in text or i[:6] + "********" in text for i in ids), (path.name, text)
    lines = list(openpyxl.load_workbook(folder / "卫健局.xlsx")["意见建议"].iter_rows(values_only=True))
    assert lines[0] == opinions.OPINION_COLUMNS
    (line,) = lines[1:]
    assert line[9] == "希望提高看病报销比例"
    assert line[8] == "医疗"
    assert (line[10], line[11], line[12]) == (
        "visits/区财政局走访记录.xlsx",
        "Sheet",
        3,
    )  # traceable to the visit


@pytest.mark.slow
def test_visit_history_carries_over_when_the_household_cadre_changes(district, sqlite_url, run_night):
    facts = two_nights(district, sqlite_url, run_night)
    url, x, y = sqlite_url, facts["x"], facts["y"]
    write_xlsx(
        district["intake"] / "organization" / "干部变动名单.xlsx",
        "干部变动名单",
        ("姓名", "身份证号", "变动类型", "变动时间"),
        [(CADRES[x][0], cadre_id(x), "调离", "2026-10-15")],
    )
    # X leaves: his two households go to Y on the night of 2026-10-16 (half the pairs end: allowed)
    assert (
        run_night(district["intake"], url, district["exports"], as_of="2026-10-16", allow_mass_end=True)
        == "success"
    )
    # a later log (GBK csv): X's visit after his pair ended, Y's first visit to a household taken over
    write_csv(
        district["intake"] / "visits" / "走访记录_10月.csv",
        VISIT_HEADERS,
        [
            (1, *visit(x, facts["b"], "2026-10-20", "入户走访")),
            (
                2,
                *visit(
                    y,
                    facts["b"],
                    "2026-10-26",
                    "入户走访",
                    "屋顶漏雨",
                    "屋顶漏雨",
                    "实物",
                    "防水布",
                    150,
                    "个人",
                ),
            ),
        ],
    )
    assert run_night(district["intake"], url, district["exports"], as_of="2026-10-30") == "success"
    assert dict(
        q(
            url,
            "SELECT r.row_number, r.reason_code FROM rejected_row r JOIN intake_file f "
            "ON f.file_id = r.file_id WHERE f.file_name LIKE '%10月.csv'",
        )
    ) == {2: "visit_after_pair"}
    y_key = q(url, f"SELECT cadre_key FROM cadre WHERE id_number = '{cadre_id(y)}'")[0][0]
    rows = {
        r[0]: r[1:]
        for r in q(
            url,
            """
        SELECT h.head_name, f.cadre_key, f.visited_in_person, f.in_person_visits, f.carried_over, f.overdue
        FROM followup_household f JOIN household h ON h.household_key = f.household_key""",
        )
    }
    a, b = HOUSEHOLDS[facts["a"]][0], HOUSEHOLDS[facts["b"]][0]
    assert rows[a] == (y_key, 1, 1, 1, 0)  # A's visit by X still counts for A, now Y's
    assert rows[b] == (y_key, 1, 1, 1, 0)  # B: X's phone call carried over, Y's visit ends the overdue
    by_cadre = {
        r[0]: r[1:]
        for r in q(
            url, "SELECT name, status, households, in_person_visits, phone_contacts FROM followup_by_cadre"
        )
    }
    assert by_cadre[CADRES[x][0]] == ("departed", 0, 1, 2)  # the visits X made stay his
    assert by_cadre[CADRES[y][0]] == ("active", 4, 3, 0)


@pytest.mark.slow
def test_on_postgresql_the_visit_logs_give_the_same_figures(district, pg_url, run_night):
    two_nights(district, pg_url, run_night)
    fig = figures.headline(warehouse.connect(pg_url))
    assert (
        fig["households"],
        fig["overdue"],
        fig["in_person_visits"],
        fig["public_fund_entries"],
        fig["help_above_band"],
        fig["help_below_band"],
        fig["problems_found"],
    ) == (4, 1, 3, 1, 1, 1, 4)
    assert q(
        pg_url, "SELECT rows_read, rows_loaded, rows_rejected FROM intake_file WHERE department = 'visits'"
    ) == [(10, 5, 5)]
    assert q(pg_url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]


def test_problem_counts_and_fund_sources_follow_the_programme_words():
    cfg = config.FollowupConfig.load()
    assert config.count_items("1、看病贵；2、房屋漏雨", cfg) == 2
    assert config.count_items("（1）缺劳力（2）住房旧（3）孩子上学", cfg) == 3
    assert config.count_items("无", cfg) == 0
    assert config.count_items("3", cfg) == 3
    assert config.count_items("看病、吃药难", cfg) == 1
    assert [cfg.source_kind(s) for s in ("个人出资", "村集体经济", "财政专项资金", "", "单位工会")] == [
        "own",
        "public",
        "public",
        "unstated",
        "other",
    ]
    assert cfg.deadline(dt.date(2026, 8, 1)) == dt.date(2026, 9, 25)
    assert cfg.deadline(dt.date(2026, 9, 20)) == dt.date(2027, 9, 15)
    assert cfg.department("医疗", None) == "卫健局"
    assert cfg.department(None, "希望尽快办理低保") == "民政局"
    assert cfg.department(None, "感谢党和政府") == cfg.default_department


@pytest.mark.slow
def test_sample_visit_logs_of_the_reference_district_give_the_generators_figures(
    tmp_path, sqlite_url, run_night
):
    from rosterlink.synthetic import sample
    from rosterlink.synthetic import visits as sample_visits

    intake, exports = tmp_path / "intake", tmp_path / "exports"
    sample.generate(intake, night=1)
    assert run_night(intake, sqlite_url, exports, as_of="2026-08-03") == "success"
    truth = sample_visits.generate(intake, sqlite_url, dt.date(2026, 11, 20))
    assert len(truth.files) == 2
    assert {f.format for f in truth.files.values()} == {"xlsx", "csv"}
    kinds = {b.kind for f in truth.files.values() for b in f.bad_rows}
    assert kinds == {
        "unmatched_pair",
        "before_pair",
        "duplicate_visit",
        "unknown_cadre",
        "bad_date",
        "missing_required",
    }
    assert run_night(intake, sqlite_url, exports, as_of="2026-11-20") == "success"

    ledger = {
        r[0]: r[1:]
        for r in q(
            sqlite_url,
            "SELECT file_name, status, rows_read, rows_loaded, rows_rejected "
            "FROM intake_file WHERE department = 'visits'",
        )
    }
    for rel, f in truth.files.items():
        assert ledger[rel] == ("loaded", f.rows, f.good_rows, len(f.bad_rows)), rel
        listed = q(
            sqlite_url,
            "SELECT r.sheet, r.row_number, r.field, r.reason_code FROM rejected_row r "
            f"JOIN intake_file f ON f.file_id = r.file_id WHERE f.file_name = '{rel}'",
        )
        assert sorted((x[0], x[1]) for x in listed) == sorted((b.sheet, b.row) for b in f.bad_rows), rel
        for bad in f.bad_rows:
            assert any(
                x[:2] == (bad.sheet, bad.row) and x[2] == bad.field and x[3] in bad.codes for x in listed
            ), bad
    assert q(sqlite_url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    fig = figures.headline(warehouse.connect(sqlite_url))
    assert {k: fig[k] for k in truth.followup} == truth.followup
    assert truth.followup["phone_only"] > 0
    assert 0 < truth.followup["overdue"] < truth.followup["households"] / 4
    folder = exports / "意见建议_20261120"
    for dept, n in truth.departments.items():
        ws = openpyxl.load_workbook(folder / f"{dept}.xlsx")["意见建议"]
        assert ws.max_row - 1 == n, dept
    # the reference figures of the district are untouched by the visit logs
    assert q(sqlite_url, "SELECT COUNT(*) FROM household WHERE status = 'active'") == [(1457,)]
    assert q(sqlite_url, "SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL") == [(1506,)]


def _summary(path: Path) -> dict:
    """The feedback workbook's 汇总 sheet as {label: value}."""
    ws = openpyxl.load_workbook(path)["汇总"]
    return {r[0]: r[1] for r in ws.iter_rows(values_only=True) if r and r[0] is not None}


@pytest.mark.slow
def test_a_corrected_visit_log_dropped_again_counts_one_changed_row_and_the_rest_as_already_recorded(
    district, sqlite_url, run_night
):
    """Issue 13: a unit fixes one row (the unknown cadre of row 11) and drops the whole log again,
    as its feedback workbook tells it to. The rows counted the night before are already recorded
    (已计入), not rejected duplicates; only the real problems are listed; the counts add up."""
    url = sqlite_url
    facts = two_nights(district, url, run_night)
    pairs = pairs_by_household(url)
    rows, _ = night2_log(pairs)
    fixed = list(rows)
    fixed[8] = (  # Excel row 11, with the right cadre now (and an opinion heard on that visit)
        9,
        *visit(facts["x"], facts["a"], "2026-09-20", "入户走访", opinion="希望村里安装路灯", topic="交通"),
    )
    rejected_before = q(url, "SELECT SUM(rows_rejected) FROM intake_file")[0][0]
    write_xlsx(
        district["intake"] / "visits" / "区财政局走访记录.xlsx",
        "区财政局结对帮扶走访记录",
        VISIT_HEADERS,
        fixed,
    )
    assert run_night(district["intake"], url, district["exports"], as_of="2026-10-11") == "success"

    ((file_id, read, loaded, already, rejected, msg),) = q(
        url,
        "SELECT file_id, rows_read, rows_loaded, rows_already, rows_rejected, message FROM intake_file "
        "WHERE department = 'visits' ORDER BY file_id DESC LIMIT 1",
    )
    # rows 3-7 were counted on night 2, and row 8 repeats row 3: already recorded; 11 is the fix
    assert (read, loaded, already, rejected) == (10, 1, 6, 3)
    assert msg == "新增0行，更新1行，已计入6行（与之前报送的内容相同，无需处理），退回3行。"
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    assert q(
        url,
        f"SELECT rows_read, rows_loaded, rows_already, rows_rejected, balanced "
        f"FROM file_reconciliation WHERE file_id = {file_id}",
    ) == [(10, 1, 6, 3, 1)]
    # only the real problems are rejected: no duplicates of what night 2 counted
    assert dict(q(url, f"SELECT row_number, reason_code FROM rejected_row WHERE file_id = {file_id}")) == {
        9: "visit_household_unknown",
        10: "visit_before_pair",
        12: "required_missing",
    }
    assert q(url, "SELECT SUM(rows_rejected) FROM intake_file")[0][0] == rejected_before + 3
    # each already recorded row says which row of night 2 it repeats (row 8 repeats row 3)
    assert q(
        url,
        "SELECT row_number, earlier_file_id, earlier_row_number FROM recorded_row "
        f"WHERE file_id = {file_id} ORDER BY row_number",
    ) == [(r, file_id - 1, 3 if r == 8 else r) for r in (3, 4, 5, 6, 7, 8)]
    # the fixed row is a visit now; nothing counted twice
    assert q(url, "SELECT COUNT(*) FROM visit") == [(6,)]
    assert q(url, f"SELECT row_number FROM visit WHERE file_id = {file_id}") == [(11,)]

    feedback = district["intake"] / "visits" / "feedback" / "区财政局走访记录.结果.xlsx"
    lines = _summary(feedback)
    assert lines["其中：新增行数"] == 0
    assert lines["其中：更新行数（见“更新的行”）"] == 1
    assert lines["已计入行数（与之前报送的内容相同，无需处理）"] == 6
    assert lines["退回行数（见“错误明细”）"] == 3
    wb = openpyxl.load_workbook(feedback)
    assert {r[1] for r in wb["错误明细"].iter_rows(min_row=2, values_only=True)} == {9, 10, 12}
    assert [r[:2] for r in wb["更新的行"].iter_rows(min_row=2, values_only=True)] == [
        (wb["错误明细"]["A2"].value, 11)
    ]
    # the opinions workbooks mark what is new since the last night: only the opinion of the fix
    marks = {}
    for path in (district["exports"] / "意见建议_20261011").iterdir():
        for line in openpyxl.load_workbook(path)["意见建议"].iter_rows(min_row=2, values_only=True):
            marks[line[9]] = line[13]
    assert marks == {
        "希望提高看病报销比例": None,
        "村里道路坑洼,希望修路": None,  # NFKC: the full-width comma folded
        "希望尽快办理低保": None,
        "希望村里安装路灯": "新增",
    }


@pytest.mark.slow
def test_a_corrected_roster_dropped_again_applies_the_changed_row_and_counts_the_rest_once(
    district, sqlite_url, run_night
):
    """Issue 13, for a roster: one household's village corrected, the whole roster dropped again.
    The changed row is applied, the other rows are already recorded, nothing is double-counted."""
    url = sqlite_url
    write_rosters(district["intake"])
    assert run_night(district["intake"], url, district["exports"], as_of="2026-08-01") == "success"
    pairs_before = q(url, "SELECT pairing_id, cadre_key, target_key FROM pairing WHERE valid_to IS NULL")
    records_before = q(url, "SELECT COUNT(*) FROM source_record")[0][0]
    names = list(HOUSEHOLDS.values())
    write_xlsx(
        district["intake"] / "civil_affairs" / "特困家庭花名册.xlsx",
        "店子镇特困家庭花名册",
        ("户主姓名", "身份证号码", "镇街", "村(居)", "家庭人口"),
        [(name, id_number(n), TOWN, "西庄村" if n == 2 else "东庄村", 2) for name, n in names],
    )
    assert run_night(district["intake"], url, district["exports"], as_of="2026-08-02") == "success"

    ((read, loaded, already, rejected, msg),) = q(
        url,
        "SELECT rows_read, rows_loaded, rows_already, rows_rejected, message FROM intake_file "
        "WHERE department = 'civil_affairs' ORDER BY file_id DESC LIMIT 1",
    )
    assert (read, loaded, already, rejected) == (4, 1, 3, 0)
    assert "更新1行" in msg
    assert "已计入3行" in msg
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    assert q(url, "SELECT COUNT(*) FROM source_record")[0][0] == records_before + 1
    # applied: the household's village is the corrected one; still four households, same pairs
    assert q(url, f"SELECT village FROM household WHERE head_id_number = '{id_number(2)}'") == [("西庄村",)]
    assert q(url, "SELECT COUNT(*) FROM household WHERE status = 'active'") == [(4,)]
    assert q(url, "SELECT COUNT(*) FROM household_category WHERE status = 'active'") == [(4,)]
    assert (
        q(url, "SELECT pairing_id, cadre_key, target_key FROM pairing WHERE valid_to IS NULL") == pairs_before
    )
    assert q(url, "SELECT COUNT(*) FROM rejected_row") == [(0,)]
    lines = _summary(district["intake"] / "civil_affairs" / "feedback" / "特困家庭花名册.结果.xlsx")
    assert (lines["其中：新增行数"], lines["其中：更新行数（见“更新的行”）"]) == (0, 1)
    assert lines["已计入行数（与之前报送的内容相同，无需处理）"] == 3
    # the data team's figures tell the already recorded rows apart too (CLI summary, dashboard)
    from rosterlink.figures import headline_figures

    assert headline_figures(sa.create_engine(url))["rows"]["already"] == 3


@pytest.mark.slow
def test_a_visit_corrected_after_it_was_counted_replaces_the_visit_it_gave(district, sqlite_url, run_night):
    """Issue 13: the unit corrects the amount of a visit already counted (row 3: 300 -> 350 元) and
    drops the log again: the visit takes the corrected amount, nothing is counted twice, nothing
    is rejected as a duplicate of itself."""
    url = sqlite_url
    facts = two_nights(district, url, run_night)
    rows, _ = night2_log(pairs_by_household(url))
    fixed = list(rows)
    fixed[0] = (1, *rows[0][1:12], 350, *rows[0][13:])  # Excel row 3: 折合金额(元)
    log_file = district["intake"] / "visits" / "区财政局走访记录.xlsx"
    write_xlsx(log_file, "区财政局结对帮扶走访记录", VISIT_HEADERS, fixed)
    assert run_night(district["intake"], url, district["exports"], as_of="2026-10-11") == "success"
    ((file_id, read, loaded, already, rejected, msg),) = q(
        url,
        "SELECT file_id, rows_read, rows_loaded, rows_already, rows_rejected, message FROM intake_file "
        "WHERE department = 'visits' ORDER BY file_id DESC LIMIT 1",
    )
    # row 3 changed; 4-7 counted before and row 8 repeats what row 3 said then: already recorded;
    # 9-12 are still the real problems of night 2
    assert (read, loaded, already, rejected) == (10, 1, 5, 4)
    assert msg.startswith("新增0行，更新1行，已计入5行")
    assert dict(q(url, f"SELECT row_number, reason_code FROM rejected_row WHERE file_id = {file_id}")) == {
        row: code for row, code in facts["expected"].items() if code and row != 8
    }
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    assert q(url, "SELECT COUNT(*) FROM visit") == [(5,)]
    assert q(url, "SELECT file_id, row_number, help_value FROM visit WHERE visit_date = '2026-08-20'") == [
        (file_id, 3, 350.0)
    ]
    assert figures.headline(warehouse.connect(url))["help_value"] == 5370.0
