"""The sample intake generator: determinism, exact reference counts, night-2 consistency, and
that what the truth calls good is good and what it calls bad is really bad in the written files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
import time
import unicodedata
import zipfile
from pathlib import Path

import openpyxl
import pytest
from python_calamine import CalamineWorkbook

from rosterlink.core import idnumber, spec
from rosterlink.synthetic.sample import (
    BAD_KINDS,
    FORMULA_NAME,
    WARNING_KINDS,
    Truth,
    generate,
    main,
    night_files,
)

ID_HEADERS = {
    "*户主身份证号(必填)",
    "身份证号码",
    "儿童身份证号",
    "监护人身份证号",
    "公民身份号码",
    "信访人身份证号",
}
TOWN_HEADERS = {"镇(街)", "镇街", "乡镇(街道)", "所属镇街", "联系镇街"}


# ---------------------------------------------------------------------------------------------
# helpers: read a written file back as {row number: [cells]} plus its header


def norm_id(value: object) -> str:
    """What any sane reader does to an ID text cell: NFKC, no whitespace, upper-case X."""
    assert isinstance(value, str), f"ID cell should be text, got {type(value).__name__}"
    s = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper()
    return idnumber.upgrade_15(s) if len(s) == 15 else s


def read_sheet(path: Path, sheet: str, header_row: int) -> tuple[list[str], dict[int, list[object]]]:
    """Header texts and every row below the header (1-based row numbers), merged cells NOT filled."""
    if path.suffix == ".xlsx":
        ws = openpyxl.load_workbook(path)[sheet]
        rows = {r: [c.value for c in row] for r, row in enumerate(ws.iter_rows(), 1)}
    elif path.suffix == ".xls":
        wb = CalamineWorkbook.from_path(str(path))
        data = wb.get_sheet_by_name(sheet).to_python()
        rows = {i + 1: [None if v == "" else v for v in row] for i, row in enumerate(data)}
    else:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("gbk")
        parsed = list(csv.reader(io.StringIO(text, newline="")))
        rows = {i + 1: [None if v == "" else v for v in row] for i, row in enumerate(parsed)}
    header = [str(h) if h is not None else "" for h in rows[header_row]]
    return header, {r: v for r, v in rows.items() if r > header_row}


def data_rows(out: Path, truth: Truth, rel: str):
    """Yield (sheet, row number, {header: value}, bad rows of that row) for every data row."""
    f = truth.files[rel]
    for info in f.sheets:
        header, rows = read_sheet(out / rel, info.name, info.header_row)
        skip = set(info.blank_rows) | set(info.footer_rows)
        for r, values in rows.items():
            if r in skip:
                continue
            bad = [b for b in f.bad_rows if b.sheet == info.name and b.row == r]
            yield info.name, r, dict(zip(header, values, strict=False)), bad


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, Truth, Truth]:
    """Scale 1.0, night 1 then night 2 into the same intake root."""
    root = tmp_path_factory.mktemp("full")
    out = root / "intake"
    t1 = generate(out, truth_path=root / "truth1.json")
    t2 = generate(out, night=2, truth_path=root / "truth2.json")
    return out, t1, t2


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_gives_identical_bytes(tmp_path):
    for d in ("a", "b"):
        generate(tmp_path / d / "in", scale=0.05, truth_path=tmp_path / d / "t1.json")
        generate(tmp_path / d / "in", scale=0.05, night=2, truth_path=tmp_path / d / "t2.json")
        if d == "a":
            time.sleep(1.1)  # a clock leaking into the files would now show
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) == 8 + 2
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_same_seed_gives_identical_cell_contents(tmp_path):
    t = generate(tmp_path / "a", scale=0.05)
    generate(tmp_path / "b", scale=0.05)
    for rel, f in t.files.items():
        for info in f.sheets:
            a = read_sheet(tmp_path / "a" / rel, info.name, 1)
            assert a == read_sheet(tmp_path / "b" / rel, info.name, 1)


def test_other_seed_gives_other_people(tmp_path):
    a = generate(tmp_path / "a", scale=0.05, seed=1)
    b = generate(tmp_path / "b", scale=0.05, seed=2)
    assert a.active["households"]["hardship"] != b.active["households"]["hardship"]


def test_xlsx_has_fixed_properties_and_zip_times(full):
    out, _, _ = full
    rel = night_files(1)["hardship"]
    wb = openpyxl.load_workbook(out / rel)
    assert wb.properties.created == wb.properties.modified == dt.datetime(2026, 11, 20, 9, 0)
    with zipfile.ZipFile(out / rel) as z:
        assert {i.date_time for i in z.infolist()} == {(2026, 11, 20, 9, 0, 0)}


# ---------------------------------------------------------------------------------------------
# counts


def test_night1_counts_are_the_reference_district(full):
    _, t1, _ = full
    ref = spec.district().reference_counts
    c = t1.counts
    assert c["households"] == {"hardship": 936, "orphan": 468, "old_member": 53, "total": 1457}
    assert c["cadres"] == {"county": 38, "section": 1088, "ordinary": 331, "total": 1457}
    assert c["cases"] == {"open": 49, "closed": 0, "total": 49}
    assert c["households"]["total"] == c["cadres"]["total"] == ref["pairs"]
    for cat, n in c["households"].items():
        if cat != "total":
            assert len(t1.active["households"][cat]) == n == len(set(t1.active["households"][cat]))
    assert c["orphan_children"] > 468


def test_night1_people_are_all_distinct(full):
    _, t1, _ = full
    ids = [i for ids in t1.active["households"].values() for i in ids]
    ids += [i for ids in t1.active["cadres"].values() for i in ids]
    assert len(ids) == len(set(ids)) == 2 * 1457


def test_night1_file_truth_adds_up(full):
    _, t1, _ = full
    files = night_files(1)
    assert set(t1.files) == set(files.values())
    for f in t1.files.values():
        assert f.rows == sum(s.rows for s in f.sheets)
        assert f.good_rows == f.rows - len(f.bad_rows)
        assert 4 <= len(f.bad_rows) <= 8
        for b in f.bad_rows:
            assert b.kind in BAD_KINDS
            assert b.codes == list(BAD_KINDS[b.kind])
    hardship = t1.files[files["hardship"]]
    assert hardship.entities == 936
    assert hardship.good_rows == 936 + hardship.duplicate_rows
    assert 5 <= hardship.duplicate_rows <= 15
    assert len(hardship.duplicates) == hardship.duplicate_rows
    assert len(hardship.sheets) == 2
    orphan = t1.files[files["orphan"]]
    assert orphan.entities == 468
    assert orphan.good_rows == t1.counts["orphan_children"]
    assert 15 <= orphan.good_rows - 468 <= 35  # ~5% of families list two children
    assert t1.files[files["cadre"]].good_rows == 1457
    assert t1.files[files["old_member"]].good_rows == 53
    assert t1.files[files["case"]].good_rows == 49


def test_files_hold_exactly_the_truths_good_entities(full):
    out, t1, _ = full
    files = night_files(1)

    def good_ids(rel: str, header_pick) -> list[str]:
        got = []
        for _, _, row, bad in data_rows(out, t1, rel):
            if not bad:
                got.append(norm_id(header_pick(row)))
        return got

    hardship = good_ids(files["hardship"], lambda r: r.get("*户主身份证号(必填)") or r.get("身份证号码"))
    assert len(hardship) == 936 + t1.files[files["hardship"]].duplicate_rows
    assert sorted(set(hardship)) == t1.active["households"]["hardship"]
    orphan = good_ids(files["orphan"], lambda r: r["监护人身份证号"])
    assert sorted(set(orphan)) == t1.active["households"]["orphan"]
    cadres = good_ids(files["cadre"], lambda r: r["身份证号码"])
    assert sorted(cadres) == sorted(i for ids in t1.active["cadres"].values() for i in ids)
    old = good_ids(files["old_member"], lambda r: r["公民身份号码"])
    assert sorted(old) == t1.active["households"]["old_member"]
    cases = [row["案件编号"] for _, _, row, bad in data_rows(out, t1, files["case"]) if not bad]
    assert sorted(cases) == t1.active["open_cases"]
    assert all(re.fullmatch(r"XF20\d\d-\d{4}", c) for c in cases)


def test_cadre_ranks_match_truth(full):
    out, t1, _ = full
    label_to_code = {w: code for code, words in spec.catalogue().enums["rank"].items() for w in words}
    by_rank: dict[str, list[str]] = {"county": [], "section": [], "ordinary": []}
    seen_labels = set()
    for _, _, row, bad in data_rows(out, t1, night_files(1)["cadre"]):
        if not bad:
            seen_labels.add(row["职级"])
            by_rank[label_to_code[row["职级"]]].append(norm_id(row["身份证号码"]))
            assert row["工作单位"] is None or isinstance(row["工作单位"], str)  # merged down runs
    assert {k: sorted(v) for k, v in by_rank.items()} == t1.active["cadres"]
    assert seen_labels == {"正县级", "副县级", "正科级", "副科级", "科员", "办事员", "一般干部"}


def test_every_good_id_is_valid(full):
    out, t1, t2 = full
    legacy = 0
    messy = 0
    for t in (t1, t2):
        for rel in t.files:
            for _, _, row, bad in data_rows(out, t, rel):
                if bad:
                    continue
                for header, value in row.items():
                    if header in ID_HEADERS and value is not None:
                        s = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value))
                        legacy += len(s) == 15
                        messy += value != s.upper() or len(s) == 15
                        assert idnumber.is_valid_checksum(norm_id(value)), (rel, value)
    assert 10 <= legacy <= 30  # about a third of the 53 old members
    assert messy > 50  # spaces, full-width digits, lowercase x


def test_town_cells_are_district_towns_in_good_rows(full):
    out, t1, _ = full
    towns = set(spec.district().towns)
    for rel, f in t1.files.items():
        warned = {(w.sheet, w.row) for w in f.warning_rows}
        for sheet, r, row, bad in data_rows(out, t1, rel):
            for header, value in row.items():
                if header in TOWN_HEADERS and value is not None and not bad and (sheet, r) not in warned:
                    assert value in towns, (rel, value)


def test_warning_rows_are_true_entities_with_a_flagged_value(full):
    out, t1, _ = full
    towns = set(spec.district().towns)
    seen = set()
    for rel, f in t1.files.items():
        rows = {(s, r): (row, bad) for s, r, row, bad in data_rows(out, t1, rel)}
        for w in f.warning_rows:
            seen.add(w.kind)
            assert w.codes == list(WARNING_KINDS[w.kind])
            row, bad = rows[(w.sheet, w.row)]
            assert not bad, "a warning row is a good row"
            value = row[w.header]
            if w.kind == "phone_invalid":
                digits = re.sub(r"\D", "", str(value))
                assert not re.fullmatch(r"1[3-9]\d{9}|0\d{9,11}", digits)
            elif w.kind == "region_unknown":
                s = norm_id(value)
                assert idnumber.is_valid_checksum(s)
                assert s[:6] not in spec.district().known_region_codes
                assert s in t1.active["households"]["hardship"]
            elif w.kind == "town_outside":
                assert value not in towns
            elif w.kind == "bad_date":
                assert not _parses_as_date(value)
                assert row["案件编号"] in t1.active["open_cases"]
    assert seen == set(WARNING_KINDS)


def test_duplicates_are_the_same_person(full):
    out, t1, _ = full
    rel = night_files(1)["hardship"]
    f = t1.files[rel]
    rows = {(s, r): row for s, r, row, _ in data_rows(out, t1, rel)}
    for d in f.duplicates:
        a, b = rows[(d["sheet"], d["first_row"])], rows[(d["sheet"], d["row"])]
        key = "*户主身份证号(必填)" if "*户主身份证号(必填)" in a else "身份证号码"
        name = "户主姓名" if "户主姓名" in a else "姓名"
        assert norm_id(a[key]) == norm_id(b[key])
        assert a[name] == b[name]


# ---------------------------------------------------------------------------------------------
# bad rows


def test_bad_rows_are_really_bad(full):
    out, t1, t2 = full
    towns = set(spec.district().towns)
    seen = set()
    for t in (t1, t2):
        for rel, f in t.files.items():
            rows = {(s, r): row for s, r, row, _ in data_rows(out, t, rel)}
            for b in f.bad_rows:
                seen.add(b.kind)
                value = rows[(b.sheet, b.row)][b.header]
                if b.kind == "numeric_id":
                    assert isinstance(value, float)
                    assert value > 1e17
                    assert not idnumber.is_valid_checksum(str(int(value)))
                elif b.kind == "numeric_id_text":
                    assert re.fullmatch(r"\d\.\d+E\+17", value)
                elif b.kind == "bad_checksum":
                    s = norm_id(value)
                    assert len(s) == 18
                    assert s[:17].isdigit()
                    assert not idnumber.is_valid_checksum(s)
                elif b.kind == "bad_length":
                    assert len(norm_id(value)) not in (15, 18)
                elif b.kind == "bad_birthdate":
                    s = re.sub(r"\s+", "", value)
                    assert len(s) == 15
                    assert int(s[8:10]) > 12
                elif b.kind == "town_outside":
                    assert value
                    assert value not in towns
                elif b.kind in ("empty_name", "missing_required"):
                    assert value is None
                elif b.kind == "formula_name":
                    assert value == FORMULA_NAME
                elif b.kind == "bad_date":
                    assert isinstance(value, str)
                    assert not _parses_as_date(value)
                else:  # pragma: no cover
                    raise AssertionError(b.kind)
    assert seen == set(BAD_KINDS)


def _parses_as_date(text: str) -> bool:
    m = re.fullmatch(r"(\d{4})[年./-](\d{1,2})[月./-](\d{1,2})日?", text)
    if not m:
        return False
    try:
        dt.date(*map(int, m.groups()))
    except ValueError:
        return False
    return True


def test_numeric_id_and_formula_cells_in_xlsx(full):
    out, t1, _ = full
    for key in ("hardship", "cadre"):
        rel = night_files(1)[key]
        wb = openpyxl.load_workbook(out / rel)
        f = t1.files[rel]
        for b in f.bad_rows:
            ws = wb[b.sheet]
            header = [c.value for c in ws[f.sheets[[s.name for s in f.sheets].index(b.sheet)].header_row]]
            cell = ws.cell(b.row, header.index(b.header) + 1)
            if b.kind == "numeric_id":
                assert cell.data_type == "n"
                assert isinstance(cell.value, float)
            if b.kind == "formula_name":
                assert cell.data_type == "s"
        with zipfile.ZipFile(out / rel) as z:
            for name in z.namelist():
                if name.startswith("xl/worksheets/"):
                    assert b"<f>" not in z.read(name)  # no live formula anywhere


def test_numeric_id_in_xls_is_a_number_cell(full):
    out, t1, _ = full
    rel = night_files(1)["orphan"]
    [b] = [b for b in t1.files[rel].bad_rows if b.kind == "numeric_id"]
    data = CalamineWorkbook.from_path(str(out / rel)).get_sheet_by_name(b.sheet).to_python()
    header = data[1]
    assert isinstance(data[b.row - 1][header.index(b.header)], float)


# ---------------------------------------------------------------------------------------------
# formats and layout


def test_gbk_csv_is_not_utf8(full):
    out, _, _ = full
    raw = (out / night_files(1)["old_member"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("gbk")
    assert text.splitlines()[0].split(",")[:4] == ["序号", "姓 名", "性别", "公民身份号码"]
    assert "\r\n" in text


def test_old_members_joined_before_1949_10_01(full):
    out, t1, _ = full
    for _, _, row, bad in data_rows(out, t1, night_files(1)["old_member"]):
        if bad:
            continue
        m = re.fullmatch(r"(\d{4})[年./-](\d{1,2})(?:[月./-](\d{1,2})日?|月)", row["入党时间"])
        assert m, row["入党时间"]
        assert dt.date(int(m[1]), int(m[2]), int(m[3] or 1)) < dt.date(1949, 10, 1)


def test_petition_csv_has_bom_and_all_cases_open(full):
    out, t1, _ = full
    raw = (out / night_files(1)["case"]).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    statuses = {row["办理状态"] for _, _, row, bad in data_rows(out, t1, night_files(1)["case"]) if not bad}
    assert statuses <= set(spec.catalogue().enums["case_status"]["open"])


def test_hardship_xlsx_layout(full):
    out, t1, _ = full
    rel = night_files(1)["hardship"]
    wb = openpyxl.load_workbook(out / rel)
    assert len(wb.sheetnames) == 2
    for ws in wb:
        merged = {str(r) for r in ws.merged_cells.ranges}
        assert "A1:J1" in merged
        assert ws["A1"].value == "山亭区特困家庭花名册"
        assert ws["A2"].value.startswith("填报单位(盖章):山亭区民政局")
        assert "A2:J2" in merged
        town_runs = [
            r for r in ws.merged_cells.ranges if r.min_col == r.max_col == 2 and r.max_row > r.min_row
        ]
        assert len(town_runs) >= 3
        for r in town_runs:
            assert ws.cell(r.min_row, 2).value in spec.district().towns
    assert wb.worksheets[0]["D3"].value == "户主姓名"
    assert wb.worksheets[0]["E3"].value == "*户主身份证号(必填)"
    assert wb.worksheets[0]["C3"].value == "村（居）"
    f = t1.files[rel]
    footers = [wb[s.name].cell(r, c).value for s in f.sheets for r in s.footer_rows for c in range(1, 11)]
    assert sum(int(re.fullmatch(r"合计:(\d+)户", v)[1]) for v in footers if v and v.startswith("合计")) == 936
    assert any(v and v.startswith("制表人") for v in footers)
    blanks = [s for s in f.sheets if len(s.blank_rows) > 1]
    assert blanks, "a blank row inside the data"
    for s in f.sheets:
        for r in s.blank_rows:
            assert all(c.value is None for c in wb[s.name][r])


def test_cadre_xlsx_and_orphan_xls_merges(full):
    out, _, _ = full
    wb = openpyxl.load_workbook(out / night_files(1)["cadre"])
    assert wb.sheetnames == ["干部名册", "填表说明"]
    ws = wb["干部名册"]
    assert "A1:I1" in {str(r) for r in ws.merged_cells.ranges}
    assert any(r.min_col == 5 and r.max_row > r.min_row for r in ws.merged_cells.ranges)  # 工作单位
    xls = CalamineWorkbook.from_path(str(out / night_files(1)["orphan"]))
    sheet = xls.get_sheet_by_index(0)
    ranges = sheet.merged_cell_ranges
    assert ((0, 0), (0, 9)) in ranges  # title
    assert any(a[1] == b[1] == 8 and b[0] > a[0] for a, b in ranges)  # 村居 merged down


def test_dates_come_in_several_shapes(full):
    out, _, t2 = full
    kinds = set()
    for rel in t2.files:
        for _, _, row, bad in data_rows(out, t2, rel):
            for header in ("调整时间", "变动时间", "销号时间"):
                v = row.get(header)
                if v is None or bad:
                    continue
                if isinstance(v, dt.datetime):
                    kinds.add("date")
                elif isinstance(v, int):
                    kinds.add("serial")
                    assert dt.date(1899, 12, 30) + dt.timedelta(days=v) <= dt.date(2026, 11, 20)
                elif "年" in v:
                    kinds.add("cn")
                elif "." in v:
                    kinds.add("dot")
                else:
                    kinds.add("slash-or-iso")
    assert kinds == {"date", "serial", "cn", "dot", "slash-or-iso"}


# ---------------------------------------------------------------------------------------------
# night 2


def test_night2_is_consistent_with_night1(full):
    _, t1, t2 = full
    ch = t2.changes
    n1_hardship = set(t1.active["households"]["hardship"])
    n1_people = {i for ids in t1.active["households"].values() for i in ids}
    n1_people |= {i for ids in t1.active["cadres"].values() for i in ids}
    n1_cadres = {i for ids in t1.active["cadres"].values() for i in ids}
    assert set(ch["exited_household_ids"]) <= n1_hardship
    assert not set(ch["new_household_ids"]) & n1_people
    assert set(ch["departed_cadre_ids"]) <= n1_cadres
    assert not set(ch["new_cadre_ids"]) & n1_people
    assert set(ch["closed_case_numbers"]) <= set(t1.active["open_cases"])
    assert len(ch["exited_household_ids"]) == 28
    assert len(ch["new_household_ids"]) == 19
    assert len(ch["departed_cadre_ids"]) == 29
    assert len(ch["new_cadre_ids"]) == 15
    assert len(ch["closed_case_numbers"]) == 5
    assert set(ch["exit_types"].values()) <= {"退出", "脱困"}
    c = t2.counts
    assert c["households"]["hardship"] == 936 - 28 + 19
    assert c["households"]["total"] == 1457 - 28 + 19
    assert c["cadres"]["total"] == 1457 - 29 + 15
    assert c["cases"] == {"open": 44, "closed": 5, "total": 49}
    assert set(t2.active["households"]["hardship"]) == (n1_hardship - set(ch["exited_household_ids"])) | set(
        ch["new_household_ids"]
    )
    assert sorted(t2.active["closed_cases"]) == ch["closed_case_numbers"]
    for r, ids in t2.active["cadres"].items():
        assert len(ids) == c["cadres"][r]


def test_night2_files_are_new_and_leave_night1_alone(full):
    out, t1, t2 = full
    assert not set(t1.files) & set(t2.files)
    for rel in t1.files:
        assert (out / rel).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(spec.DEPARTMENTS)
    assert len([p for p in out.rglob("*") if p.is_file()]) == 8


def test_night2_rows_match_changes(full):
    out, _, t2 = full
    files = night_files(2)
    adj = {}
    for _, _, row, bad in data_rows(out, t2, files["hardship_adjustment"]):
        if not bad:
            adj[norm_id(row["身份证号码"])] = row["调整类型"]
    assert sorted(k for k, v in adj.items() if v in ("退出", "脱困")) == t2.changes["exited_household_ids"]
    assert sorted(k for k, v in adj.items() if v == "新增") == t2.changes["new_household_ids"]
    chg = {}
    for _, _, row, bad in data_rows(out, t2, files["cadre_change"]):
        if not bad:
            chg[norm_id(row["身份证号码"])] = row
    assert (
        sorted(k for k, v in chg.items() if v["变动类型"] in ("调离", "退休"))
        == t2.changes["departed_cadre_ids"]
    )
    joins = {k: v for k, v in chg.items() if v["变动类型"] == "新增"}
    assert sorted(joins) == t2.changes["new_cadre_ids"]
    for v in joins.values():  # a new cadre carries rank, unit and linked town
        assert v["职级"]
        assert v["工作单位"]
        assert v["联系镇街"] in spec.district().towns
    closed = [row["案件编号"] for _, _, row, bad in data_rows(out, t2, files["case_closure"]) if not bad]
    assert sorted(closed) == t2.changes["closed_case_numbers"]
    # a bad-date row points at a real entity whose change must NOT happen
    for key, id_header, active in (
        ("hardship_adjustment", "身份证号码", set(t2.active["households"]["hardship"])),
        ("cadre_change", "身份证号码", {i for ids in t2.active["cadres"].values() for i in ids}),
        ("case_closure", "案件编号", set(t2.active["open_cases"])),
    ):
        rows = {(s, r): row for s, r, row, _ in data_rows(out, t2, files[key])}
        dated = [b for b in t2.files[files[key]].bad_rows if b.kind == "bad_date"]
        assert len(dated) == 1
        value = rows[(dated[0].sheet, dated[0].row)][id_header]
        assert (norm_id(value) if id_header != "案件编号" else value) in active


# ---------------------------------------------------------------------------------------------
# API surface


def test_truth_json_roundtrip(full, tmp_path):
    out, _, t2 = full
    path = tmp_path / "t.json"
    t = generate(tmp_path / "in", scale=0.05, truth_path=path)
    assert Truth.load(path) == t
    assert Truth.load(out.parent / "truth2.json") == t2


def test_truth_path_inside_out_dir_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside out_dir"):
        generate(tmp_path / "in", scale=0.05, truth_path=tmp_path / "in" / "truth.json")
    assert not (tmp_path / "in").exists()


def test_small_scale_is_fast(tmp_path):
    start = time.perf_counter()
    t = generate(tmp_path / "in", scale=0.05)
    generate(tmp_path / "in", scale=0.05, night=2)
    assert time.perf_counter() - start < 2.0
    assert t.counts["households"]["hardship"] == 47
    assert t.counts["cadres"]["county"] == 2


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "in"), "--scale", "0.05", "--truth", str(tmp_path / "t.json")]) == 0
    assert Truth.load(tmp_path / "t.json").night == 1
    assert main(["--out", str(tmp_path / "in"), "--scale", "0.05", "--night", "2"]) == 0
    assert "open_cases=" in capsys.readouterr().out


def test_cli_without_xlwt_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    from rosterlink import cli

    monkeypatch.setitem(sys.modules, "xlwt", None)  # import xlwt now fails, as when it is not installed
    assert cli.main(["sample", "--out", str(tmp_path / "in"), "--scale", "0.05"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install -e '.[sample]'" in err
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path / "in2"), "--scale", "0.05"])
    assert exited.value.code == 1
    assert "pip install -e '.[sample]'" in capsys.readouterr().err


@pytest.mark.parametrize("night", [3, 5])
def test_changes_of_later_nights_are_dated_on_their_night_never_before_an_earlier_addition(tmp_path, night):
    from rosterlink.core.settings import Limits
    from rosterlink.intake import normalise, read

    truth = generate(tmp_path / "in", scale=0.05, night=night)
    fill = dt.date.fromisoformat(truth.fill_date)
    dates = []
    for rel in night_files(night).values():
        department = rel.split("/", 1)[0]
        for table in read.read_file(tmp_path / "in" / rel, department, Limits()).tables:
            frame, _ = normalise.normalise_table(table)
            for column in ("adjustment_date", "change_date"):
                if column in frame.columns:
                    dates += [dt.date.fromisoformat(d) for d in frame[column] if isinstance(d, str)]
    assert dates, night_files(night)
    assert all(d == fill for d in dates), sorted(set(dates))


# --- make demo's supplementary list: the model links, the review queue fills --------------------------


def test_supplementary_list_is_linked_by_the_model_and_fills_the_review_queue(tmp_path, run_night):
    """`make demo` writes the town federations' list of guardians without ID numbers, so a newcomer
    sees what the product does with them: the re-reports as listed join their family by the model,
    the miswritten ones wait in the review queue (待核实.xlsx) for a person, not merged by a guess."""
    import sqlalchemy as sa

    from rosterlink.synthetic import supplement
    from rosterlink.synthetic.sample import DEFAULT_SEED

    intake = tmp_path / "intake"
    generate(intake, seed=DEFAULT_SEED)
    extra = supplement.write(intake, seed=DEFAULT_SEED)
    assert (intake / extra.rel).is_file()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert run_night(intake, url, tmp_path / "exports", "2026-08-03") == "success"

    eng = sa.create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.person_name, r.village, r.id_number, s.link_method, s.entity_key,"
                " (SELECT MIN(os.entity_key) FROM source_record o JOIN source_row os"
                "   ON os.file_id = o.file_id AND os.sheet = o.sheet AND os.row_number = o.row_number"
                "   WHERE o.id_number IS NOT NULL"
                "   AND o.roster = 'orphan' AND o.person_name = r.person_name AND o.village = r.village)"
                " FROM source_record r JOIN intake_file f ON f.file_id = r.file_id"
                " JOIN source_row s ON s.file_id = r.file_id AND s.sheet = r.sheet"
                "  AND s.row_number = r.row_number"
                " WHERE f.file_name = :p"
            ),
            {"p": extra.rel},
        ).all()
        pending = conn.execute(
            sa.text("SELECT COUNT(*) FROM link_review WHERE status = 'pending'")
        ).scalar_one()
    assert len(rows) == extra.rows
    assert all(r[2] is None for r in rows)  # no guardian ID on the list: every row went to the model
    as_listed = [r for r in rows if r[5] is not None]  # name and village as on the main list
    assert len(as_listed) >= extra.exact_families
    assert all(r[3] == "model" and r[4] == r[5] for r in as_listed), as_listed  # joined their family
    assert 1 <= pending <= extra.doubtful_families * 2
    book = tmp_path / "intake" / "review" / "待核实.xlsx"
    assert book.is_file()


def test_a_churn_night_after_a_night_1_written_elsewhere_is_the_churn_nights_own_night_2(tmp_path):
    """The province benchmark writes night 1 itself (its own 40 files) and asks the churn for the
    next night only: that night is the one the churn writes after its own night 1 (the same
    files, rows, changes and expected counts), and night 1 cannot be asked for again."""
    from rosterlink.synthetic.churn import Churn

    first = dt.date(2026, 11, 2)
    own = Churn(tmp_path / "own", seed=3, scale=0.2, first_night=first)
    own.write_night(1)
    expected = own.write_night(2)
    after = Churn(tmp_path / "after", seed=3, scale=0.2, first_night=first, night_1_written=True)
    with pytest.raises(ValueError, match="expected night 2"):
        after.write_night(1)
    night = after.write_night(2)
    assert night.changes["exits"] > 0
    assert night.changes["adds"] > 0
    assert (night.as_of, night.files, night.changes, night.expected) == (
        expected.as_of,
        expected.files,
        expected.changes,
        expected.expected,
    )
    for rel in night.files:
        if rel.endswith(".csv"):
            assert (tmp_path / "after" / rel).read_bytes() == (tmp_path / "own" / rel).read_bytes()
