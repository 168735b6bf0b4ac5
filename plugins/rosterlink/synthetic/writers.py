"""The department offices' files: .xlsx, .xls and .csv writers with each office's layout and mess.

One ``write_*`` function per roster (night 1: hardship, orphan, cadres, old members, cases;
nights >= 2: adjustments, cadre changes, closures) writes a file from a
:class:`~rosterlink.synthetic.population.Population` (or a night's
:class:`~rosterlink.synthetic.population.Round`) and returns its
:class:`~rosterlink.synthetic.truth.FileTruth`. The cell-level mess (spaced or full-width ID
numbers, dates as text, numbers in text cells) comes from the ``rng`` each writer is given.
:func:`save_xlsx`, :func:`xlsx_sheet`, :func:`csv_bytes`, :class:`Cell` and :class:`FileRecord` are
shared with the visit-log generator. Same content -> same bytes (fixed zip timestamps and
workbook properties).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rosterlink.core import idnumber, spec
from rosterlink.synthetic import population
from rosterlink.synthetic.population import Bad, Cadre, Case, Household, Person, Population, Round
from rosterlink.synthetic.truth import BAD_KINDS, WARNING_KINDS, BadRow, FileTruth, SheetInfo

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

FIXED_TIMESTAMP = dt.datetime(2026, 11, 20, 9, 0, 0)
_ZIP_TIME = (2026, 11, 20, 9, 0, 0)
_EXCEL_EPOCH = dt.date(1899, 12, 30)
FORMULA_NAME = '=HYPERLINK("http://x","点我")'
_FW_DIGITS = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
_SEX_LABEL = {"M": "男", "F": "女"}
XLWT_MISSING = "the sample's legacy .xls file needs xlwt: pip install -e '.[sample]'"

Row = Sequence[object] | None  # a sheet row's cell values (None: a blank row)
Footer = str | list[tuple[int, str, int]] | None  # see xlsx_sheet
RowWarning = tuple[str, str, object]  # (kind, field, value to write) of a warning row


# ---------------------------------------------------------------------------------------------
# cell mess


@dataclass
class Cell:
    """A value with an Excel number format (xlsx/xls writers)."""

    value: object
    number_format: str | None = None


def _messy_id(id_: str, rng: random.Random) -> str:
    s = id_
    if s.endswith("X") and rng.random() < 0.5:
        s = s[:-1] + "x"
    r = rng.random()
    if r < 0.04:
        return f"{s[:6]} {s[6:14]} {s[14:]}"
    if r < 0.065:
        return s.translate(_FW_DIGITS)
    if r < 0.08:
        return s + " "
    if r < 0.09:
        return s[:6] + "\u3000" + s[6:]
    return s


def _messy_phone(phone: str | None, rng: random.Random, *, numeric_ok: bool) -> object:
    if phone is None:
        return None
    if not phone.startswith("1"):
        return phone
    r = rng.random()
    if r < 0.06:
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if r < 0.11:
        return f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
    if numeric_ok and r < 0.2:
        return int(phone)
    return phone


def _date_text(d: dt.date, style: str) -> str:
    return {
        "iso": f"{d:%Y-%m-%d}",
        "cn": f"{d.year}年{d.month}月{d.day}日",
        "dot": f"{d.year}.{d.month}.{d.day}",
        "slash0": f"{d:%Y/%m/%d}",
        "slash": f"{d.year}/{d.month}/{d.day}",
    }[style]


def _messy_date_xlsx(d: dt.date, rng: random.Random) -> Cell:
    r = rng.random()
    if r < 0.35:
        return Cell(dt.datetime(d.year, d.month, d.day), "yyyy-mm-dd")
    if r < 0.5:
        return Cell(dt.datetime(d.year, d.month, d.day), 'yyyy"年"m"月"d"日"')
    if r < 0.65:
        return Cell((d - _EXCEL_EPOCH).days, "General")  # an Excel serial in a General cell
    return Cell(_date_text(d, rng.choice(("cn", "dot", "slash0"))))


def _messy_date_csv(d: dt.date, rng: random.Random, *, month_only_ok: bool = False) -> str:
    if month_only_ok and rng.random() < 0.12:
        return f"{d.year}年{d.month}月"
    styles = (("iso", 40), ("slash", 20), ("cn", 20), ("dot", 10), ("slash0", 10))
    return _date_text(d, population.weighted(rng, styles))


def _corrupt_checksum(id18: str, rng: random.Random) -> str:
    right = idnumber.check_digit(id18[:17])
    wrong = rng.choice([c for c in "0123456789X" if c != right])
    return id18[:17] + wrong


def _numeric_id_value(person: Person) -> float:
    return float(int(person.id18))


# ---------------------------------------------------------------------------------------------
# writers


def save_xlsx(wb: Workbook, path: Path) -> None:
    """Save with fixed properties and fixed zip timestamps: same content -> same bytes."""
    from openpyxl.writer.excel import ExcelWriter

    wb.properties.created = FIXED_TIMESTAMP
    wb.properties.modified = FIXED_TIMESTAMP
    wb.properties.creator = "Administrator"
    wb.properties.lastModifiedBy = "Administrator"
    raw = io.BytesIO()
    archive = zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
    ExcelWriter(wb, archive).save()  # closes the archive; unlike save_workbook, keeps `modified`
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, src.read(info.filename))
    path.write_bytes(out.getvalue())


def _runs(rows: Sequence[Row], col: int) -> list[tuple[int, int]]:
    """(first, last) index of runs of >= 2 consecutive non-blank rows with the same value in col."""
    out = []
    i = 0
    while i < len(rows):
        row = rows[i]
        if row is None or row[col] is None:
            i += 1
            continue
        j = i
        while j + 1 < len(rows) and (below := rows[j + 1]) is not None and below[col] == row[col]:
            j += 1
        if j > i:
            out.append((i, j))
        i = j + 1
    return out


def xlsx_sheet(
    ws: Worksheet,
    *,
    title: str,
    subtitle: str | None,
    headers: list[str],
    rows: Sequence[Row],
    merge_cols: Sequence[int] = (),
    footers: Sequence[Footer] = (),
    widths: Sequence[float] = (),
    text_cols: Sequence[int] = (),
) -> tuple[int, list[int | None], list[int], list[int]]:
    """Write one sheet; ``rows`` items are lists of cell values or None (a blank row).

    ``footers`` items: None (a blank row), a str (in column A) or a list of ``(column, text, span)``
    (1-based column; span > 1 merges the cell to the right). Returns the header row number, the
    Excel row number of every item (None for blanks), the blank rows and the footer rows."""
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    ncol = len(headers)
    last = get_column_letter(ncol)
    ws["A1"] = title
    ws["A1"].font = Font(name="宋体", size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.merge_cells(f"A1:{last}1")
    ws.row_dimensions[1].height = 30
    r = 2
    if subtitle:
        ws.cell(2, 1, subtitle).data_type = "s"
        ws.merge_cells(f"A2:{last}2")
        r = 3
    header_row = r
    for c, h in enumerate(headers, 1):
        cell = ws.cell(r, c, h)
        cell.data_type = "s"
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    first = r + 1
    skip: set[tuple[int, int]] = set()
    merges = []
    for col in merge_cols:
        for i, j in _runs(rows, col):
            merges.append((first + i, first + j, col + 1))
            skip.update((k, col) for k in range(i + 1, j + 1))
    numbers: list[int | None] = []
    for i, row in enumerate(rows):
        rn = first + i
        numbers.append(None if row is None else rn)
        if row is None:
            continue
        for c, v in enumerate(row):
            if v is None or (i, c) in skip:
                continue
            fmt = None
            if isinstance(v, Cell):
                fmt = v.number_format
                v = v.value
            cell = ws.cell(rn, c + 1)
            cell.value = v
            if isinstance(v, str):
                cell.data_type = "s"  # never a formula, whatever the text starts with
            if fmt:
                cell.number_format = fmt
            elif c in text_cols and isinstance(v, str):
                cell.number_format = "@"
    for a, b, col in merges:
        ws.merge_cells(start_row=a, start_column=col, end_row=b, end_column=col)
        ws.cell(a, col).alignment = Alignment(horizontal="center", vertical="center")
    r = first + len(rows)
    blanks = [first + i for i, row in enumerate(rows) if row is None]
    footer_rows = []
    for item in footers:
        if item is None:
            blanks.append(r)
        else:
            footer_rows.append(r)
            for col, text, span in [(1, item, 1)] if isinstance(item, str) else item:
                ws.cell(r, col, text).data_type = "s"
                if span > 1:
                    ws.merge_cells(start_row=r, start_column=col, end_row=r, end_column=col + span - 1)
        r += 1
    for c, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(c)].width = w
    return header_row, numbers, blanks, footer_rows


def csv_bytes(headers: list[str], rows: Sequence[Sequence[object]], encoding: str) -> bytes:
    """A CSV file as an office exports it: header line, CRLF line ends, None as an empty field."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode(encoding)


class FileRecord:
    """Collects a file's truth while it is being written."""

    def __init__(
        self, path: str, department: str, roster: str, fmt: str, encoding: str | None = None
    ) -> None:
        self.truth = FileTruth(path, department, roster, fmt, encoding, [], 0, 0, 0, 0, [])

    def sheet(
        self, name: str, header_row: int, rows: int, blanks: Sequence[int] = (), footers: Sequence[int] = ()
    ) -> None:
        """A sheet of ``rows`` data rows under the header at ``header_row``."""
        self.truth.sheets.append(SheetInfo(name, header_row, rows, list(blanks), list(footers)))
        self.truth.rows += rows

    def bad(
        self, sheet: str, row: int | None, b: Bad[Household] | Bad[Cadre] | Bad[Case], header: str
    ) -> None:
        """Row ``row`` (the clerk's row number) of ``sheet`` is bad row ``b``."""
        assert row is not None  # a bad row is written, never a blank
        self.truth.bad_rows.append(BadRow(sheet, row, b.field, header, b.kind, list(BAD_KINDS[b.kind])))

    def warn(
        self, sheet: str, row: int | None, warning: RowWarning, headers: Sequence[str], fields: Sequence[str]
    ) -> None:
        """Row ``row`` of ``sheet`` loads with a flagged value (``warning``)."""
        assert row is not None  # a warning row is written, never a blank
        kind, fld, _ = warning
        header = headers[list(fields).index(fld)]
        self.truth.warning_rows.append(BadRow(sheet, row, fld, header, kind, list(WARNING_KINDS[kind])))

    def done(self, entities: int, duplicates: int = 0) -> FileTruth:
        """The file's truth, bad and warning rows in sheet and row order."""
        t = self.truth
        t.bad_rows.sort(key=lambda b: ([s.name for s in t.sheets].index(b.sheet), b.row))
        t.warning_rows.sort(key=lambda b: ([s.name for s in t.sheets].index(b.sheet), b.row))
        t.good_rows = t.rows - len(t.bad_rows)
        t.entities = entities
        t.duplicate_rows = duplicates
        return t


def _apply_person_bad(
    b: Bad[Household] | Bad[Cadre] | Bad[Case],
    values: dict[str, object],
    rng: random.Random,
    *,
    name_key: str,
    id_key: str,
    id18: str,
) -> None:
    """Put the bad row's defect into its cell values (dict keyed by canonical field)."""
    if b.kind == "numeric_id":
        values[id_key] = Cell(_numeric_id_value(b.extra["person"]), "0")
    elif b.kind == "numeric_id_text":
        values[id_key] = f"{int(id18[:17]) * 10.0:.5E}"  # what Excel exports from a number cell: 3.70406E+17
    elif b.kind == "bad_checksum":
        values[id_key] = _corrupt_checksum(id18, rng)
    elif b.kind == "bad_length":
        cut = rng.randrange(6, 17)
        values[id_key] = id18[:cut] + id18[cut + 1 :]
    elif b.kind == "empty_name":
        values[name_key] = None
    elif b.kind == "formula_name":
        values[name_key] = FORMULA_NAME
    elif b.kind == "missing_required":
        values[b.field] = None


# --- night 1: hardship roster (.xlsx, two sheets) --------------------------------------------

_HARDSHIP_COLS = (
    "seq",
    "town",
    "village",
    "head_name",
    "head_id_number",
    "household_size",
    "cause",
    "income",
    "phone",
    "remark",
)
_HARDSHIP_HEADERS = (
    [
        "序号",
        "镇(街)",
        "村（居）",
        "户主姓名",
        "*户主身份证号(必填)",
        "家庭人口",
        "致困原因",
        "人均年收入(元)",
        "联系电话",
        "备注",
    ],
    [
        "序号",
        "镇街",
        "村(居)",
        "姓名",
        "身份证号码",
        "人口数",
        "困难类型",
        "人均年收入(元)",
        "手机号码",
        "备注",
    ],
)
_REMARKS = ("低保户", "残疾人家庭", "独居老人", "重病患者", "五保户")


def _hardship_values(h: Household, rng: random.Random) -> dict[str, object]:
    income: object = int(h.income) if float(h.income).is_integer() else h.income
    r = rng.random()
    if r < 0.04:
        income = f"{income}元"
    elif r < 0.08:
        income = f"{income}"
    size: object = h.size if rng.random() > 0.05 else f"{h.size}人"
    return {
        "town": h.town,
        "village": h.village,
        "head_name": h.head.name,
        "head_id_number": _messy_id(h.head.id18, rng),
        "household_size": size,
        "cause": h.cause,
        "income": income,
        "phone": _messy_phone(h.phone, rng, numeric_ok=True),
        "remark": rng.choice(_REMARKS) if rng.random() < 0.08 else None,
    }


def _put_warning(values: dict[str, object], warning: RowWarning | None) -> None:
    """A warning row's flagged value replaces the field's (a warning without a value keeps it)."""
    if warning is not None and warning[2] is not None:
        values[warning[1]] = warning[2]


def write_hardship(out_dir: Path, rel: str, pop: Population, rng: random.Random, fill: dt.date) -> FileTruth:
    """The civil affairs office's hardship roster: .xlsx, two sheets of towns, merged town cells."""
    from openpyxl import Workbook

    rec = FileRecord(rel, "civil_affairs", "hardship", "xlsx")
    wb = Workbook()
    wb.remove(wb.active)
    towns = pop.towns
    half = (len(towns) + 1) // 2
    parts = [("特困家庭(一)", towns[:half]), ("特困家庭(二)", towns[half:])]
    n_dup = min(len(pop.hardship), max(1, round(0.01 * len(pop.hardship))))
    dup_pool = [h for h in pop.hardship if h.head.id18 not in pop.warn["hardship"]]
    n_dup = min(n_dup, len(dup_pool))
    dup_ids = {h.head.id18 for h in rng.sample(dup_pool, n_dup)}
    bad_by_town: dict[str, list[Bad[Household]]] = {}
    outside_bad: list[Bad[Household]] = []
    for b in pop.bad["hardship"]:
        if b.entity.town in towns:
            bad_by_town.setdefault(b.entity.town, []).append(b)
        else:
            outside_bad.append(b)
    village_rank = {t: {v: i for i, v in enumerate(vs)} for t, vs in pop.villages.items()}

    # an item: (good | dup | bad, the household, its bad row) or None for a blank row
    Item = tuple[str, Household, Bad[Household] | None]
    for s, (sheet_name, sheet_towns) in enumerate(parts):
        ws = wb.create_sheet(sheet_name)
        items: list[Item | None] = []
        blank_before = {rng.randint(1, 2)} if s == 0 else set(rng.sample(range(1, 6), rng.randint(0, 2)))
        groups = 0
        for town in sheet_towns:
            group = sorted(
                (h for h in pop.hardship if h.town == town),
                key=lambda h: (village_rank[town][h.village], h.head.id18),
            )
            entries: list[Item] = [("good", h, None) for h in group]
            for h in group:
                if h.head.id18 in dup_ids:
                    at = entries.index(("good", h, None))
                    entries.insert(rng.randint(at + 1, len(entries)), ("dup", h, None))
            for b in bad_by_town.get(town, []):
                entries.insert(rng.randint(0, len(entries)), ("bad", b.entity, b))
            if not entries:
                continue
            if groups in blank_before and items:
                items.append(None)
            groups += 1
            items.extend(entries)
        if s == len(parts) - 1:
            items.extend(("bad", b.entity, b) for b in outside_bad)
        rows: list[Row] = []
        seq = 0
        households = 0
        for item in items:
            if item is None:
                rows.append(None)
                continue
            kind, h, bad = item
            seq += 1
            values = _hardship_values(h, rng)
            if bad is not None:
                _apply_person_bad(
                    bad, values, rng, name_key="head_name", id_key="head_id_number", id18=h.head.id18
                )
            else:
                households += kind == "good"
                _put_warning(values, pop.warn["hardship"].get(h.head.id18))
            values["seq"] = seq
            rows.append([values.get(k) for k in _HARDSHIP_COLS])
        headers = _HARDSHIP_HEADERS[s % 2]
        footers: list[Footer] = [
            None,
            [(1, f"合计:{households}户", 4)],
            "制表人:孙丽        审核人:刘强" if s == 0 else [(2, "制表人:孙丽", 1), (6, "审核人:刘强", 1)],
        ]
        district = spec.district().name
        header_row, numbers, blanks, footer_rows = xlsx_sheet(
            ws,
            title=f"{district}特困家庭花名册",
            subtitle=f"填报单位(盖章):{district}民政局    填报日期:{fill.year}年{fill.month}月{fill.day}日",
            headers=headers,
            rows=rows,
            merge_cols=(1,),
            footers=footers,
            widths=(6, 12, 12, 10, 22, 8, 12, 12, 15, 10),
            text_cols=(4,),
        )
        rec.sheet(sheet_name, header_row, sum(1 for x in rows if x is not None), blanks, footer_rows)
        first_row: dict[str, int] = {}
        for item, rn in zip(items, numbers, strict=True):
            if item is None or rn is None:
                continue
            kind, h, bad = item
            if bad is not None:
                rec.bad(sheet_name, rn, bad, headers[_HARDSHIP_COLS.index(bad.field)])
            elif kind == "good":
                first_row[h.head.id18] = rn
                if h.head.id18 in pop.warn["hardship"]:
                    rec.warn(sheet_name, rn, pop.warn["hardship"][h.head.id18], headers, _HARDSHIP_COLS)
        for item, rn in zip(items, numbers, strict=True):
            if item is not None and rn is not None and item[0] == "dup":
                first = first_row[item[1].head.id18]
                rec.truth.duplicates.append({"sheet": sheet_name, "row": rn, "first_row": first})
    save_xlsx(wb, out_dir / rel)
    return rec.done(entities=len(pop.hardship), duplicates=n_dup)


# --- night 1: orphan families (.xls) ---------------------------------------------------------

_ORPHAN_COLS = (
    "seq",
    "child_name",
    "child_id_number",
    "situation",
    "guardian_name",
    "guardian_id_number",
    "relation",
    "town",
    "village",
    "phone",
)
_ORPHAN_HEADERS = [
    "序号",
    "儿童姓名",
    "儿童身份证号",
    "失亲情况",
    "监护人姓名",
    "监护人身份证号",
    "与儿童关系",
    "镇街",
    "村居",
    "联系电话",
]


def _orphan_rows(f: Household, rng: random.Random) -> list[dict[str, object]]:
    guardian_id = _messy_id(f.head.id18, rng)
    phone = _messy_phone(f.phone, rng, numeric_ok=True)
    out: list[dict[str, object]] = []
    for child, situation in f.children:
        out.append(
            {
                "child_name": child.name,
                "child_id_number": _messy_id(child.id18, rng),
                "situation": situation,
                "guardian_name": f.head.name,
                "guardian_id_number": guardian_id,
                "relation": f.relation,
                "town": f.town,
                "village": f.village,
                "phone": phone,
            }
        )
    return out


def write_orphan(out_dir: Path, rel: str, pop: Population, rng: random.Random, fill: dt.date) -> FileTruth:
    """The women's federation's orphan-family list: legacy .xls (xlwt), village cells merged down."""
    try:
        import xlwt
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(XLWT_MISSING, name="xlwt") from exc

    rec = FileRecord(rel, "womens_federation", "orphan", "xls")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    village_rank = {t: {v: i for i, v in enumerate(vs)} for t, vs in pop.villages.items()}

    def key(f: Household) -> tuple[int, int, str]:
        village = village_rank.get(f.town, {}).get(f.village, 99)
        return (town_rank.get(f.town, len(pop.towns)), village, f.head.id18)

    # (family, its bad row or None), in roster order
    entries: list[tuple[Household, Bad[Household] | None]] = [(f, None) for f in pop.orphan]
    entries += [(b.entity, b) for b in pop.bad["orphan"]]
    entries.sort(key=lambda e: key(e[0]))
    rows: list[list[object]] = []
    owners: list[tuple[Household, Bad[Household] | None]] = []
    for fam, bad in entries:
        for values in _orphan_rows(fam, rng):
            if bad is not None:
                if bad.kind == "numeric_id":
                    values["guardian_id_number"] = _numeric_id_value(bad.extra["person"])
                else:
                    _apply_person_bad(
                        bad,
                        values,
                        rng,
                        name_key="child_name" if bad.field == "child_name" else "guardian_name",
                        id_key="guardian_id_number",
                        id18=fam.head.id18,
                    )
            else:
                _put_warning(values, pop.warn["orphan"].get(fam.head.id18))
            values["seq"] = len(rows) + 1
            rows.append([values.get(k) for k in _ORPHAN_COLS])
            owners.append((fam, bad))

    wb = xlwt.Workbook(encoding="utf-8")
    sheet_name = "失亲儿童家庭"
    ws = wb.add_sheet(sheet_name)
    title_style = xlwt.easyxf("font: name 宋体, bold on, height 320; align: horiz center, vert center")
    head_style = xlwt.easyxf(
        "font: bold on; align: horiz center, vert center, wrap on; "
        "borders: left thin, right thin, top thin, bottom thin"
    )
    merged_style = xlwt.easyxf("align: horiz center, vert center")
    num_style = xlwt.easyxf(num_format_str="0")
    ncol = len(_ORPHAN_HEADERS)
    ws.write_merge(0, 0, 0, ncol - 1, f"{spec.district().name}失亲儿童家庭花名册", title_style)
    ws.row(0).height_mismatch = True
    ws.row(0).height = 600
    for c, h in enumerate(_ORPHAN_HEADERS):
        ws.write(1, c, h, head_style)
    first = 2  # 0-based sheet row of the first data row (Excel row 3)
    village_col = _ORPHAN_COLS.index("village")
    runs = _runs([[(r[7], r[8])] for r in rows], 0)  # same town AND village
    covered: set[int] = set()
    for i, j in runs:
        ws.write_merge(first + i, first + j, village_col, village_col, rows[i][village_col], merged_style)
        covered.update(range(i, j + 1))
    for i, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is None or (c == village_col and i in covered):
                continue
            if isinstance(v, float) and c == _ORPHAN_COLS.index("guardian_id_number"):
                ws.write(first + i, c, v, num_style)
            else:
                ws.write(first + i, c, v)
    families = len(pop.orphan)
    children = sum(len(f.children) for f in pop.orphan)
    blank = first + len(rows)  # 0-based index of the blank row under the data, then two footers
    ws.write(blank + 1, 0, f"合计：{families}户{children}人")
    ws.write(
        blank + 2,
        0,
        f"填报单位：{spec.district().name}妇联    填报时间：{fill.year}年{fill.month}月{fill.day}日",
    )
    for c, w in enumerate((6, 10, 22, 14, 10, 22, 10, 10, 12, 14)):
        ws.col(c).width = 256 * w
    buf = io.BytesIO()
    wb.save(buf)
    (out_dir / rel).write_bytes(buf.getvalue())

    rec.sheet(sheet_name, 2, len(rows), [blank + 1], [blank + 2, blank + 3])  # Excel = 0-based + 1
    for i, (fam, bad) in enumerate(owners):
        if bad is not None:
            rec.bad(sheet_name, first + i + 1, bad, _ORPHAN_HEADERS[_ORPHAN_COLS.index(bad.field)])
        elif fam.head.id18 in pop.warn["orphan"]:
            warning = pop.warn["orphan"][fam.head.id18]
            rec.warn(sheet_name, first + i + 1, warning, _ORPHAN_HEADERS, _ORPHAN_COLS)
    return rec.done(entities=families)


# --- night 1: cadre roster (.xlsx) -----------------------------------------------------------

_CADRE_COLS = ("seq", "name", "sex", "id_number", "unit", "post", "rank", "linked_town", "phone")
_CADRE_HEADERS = ["序号", "姓名", "性别", "身份证号码", "工作单位", "职务", "职级", "联系镇街", "联系电话"]


def _pad_name(name: str | None, rng: random.Random, share: float) -> str | None:
    """Cadre rosters often pad two-character names with a full-width space: ``王　伟``."""
    if name and len(name) == 2 and rng.random() < share:
        return name[0] + "\u3000" + name[1]
    return name


def _cadre_values(c: Cadre, rng: random.Random, pad: float = 0.15) -> dict[str, object]:
    return {
        "name": _pad_name(c.person.name, rng, pad),
        "sex": _SEX_LABEL[c.person.sex],
        "id_number": _messy_id(c.person.id18, rng),
        "unit": c.unit,
        "post": c.post,
        "rank": c.rank_label,
        "linked_town": c.linked_town,
        "phone": _messy_phone(c.phone, rng, numeric_ok=True),
    }


def write_cadres(out_dir: Path, rel: str, pop: Population, rng: random.Random, fill: dt.date) -> FileTruth:
    """The organisation department's cadre roster: .xlsx, unit merged down, an instructions sheet."""
    from openpyxl import Workbook

    rec = FileRecord(rel, "organization", "cadre", "xlsx")
    order = population.unit_order(pop.towns)
    rank_order = {r: i for i, r in enumerate(population.RANK_ORDER)}

    def key(c: Cadre) -> tuple[int, int, str]:
        return (order.get(c.unit, len(order)), rank_order[c.rank_label], c.person.id18)

    entries: list[tuple[Cadre, Bad[Cadre] | None]] = [(c, None) for c in pop.cadres]
    entries += [(b.entity, b) for b in pop.bad["cadre"]]
    entries.sort(key=lambda e: key(e[0]))
    rows: list[Row] = []
    for i, (cadre, bad) in enumerate(entries):
        if bad is None:
            values = _cadre_values(cadre, rng)
            _put_warning(values, pop.warn["cadre"].get(cadre.person.id18))
        else:
            values = _cadre_values(cadre, rng, pad=0.0)
            _apply_person_bad(bad, values, rng, name_key="name", id_key="id_number", id18=cadre.person.id18)
        values["seq"] = i + 1
        rows.append([values.get(k) for k in _CADRE_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "干部名册"
    header_row, numbers, blanks, footer_rows = xlsx_sheet(
        ws,
        title=f"{spec.district().name}机关事业单位干部花名册",
        subtitle=None,
        headers=_CADRE_HEADERS,
        rows=rows,
        merge_cols=(4,),
        footers=[None, f"合计：{len(pop.cadres)}人", "制表人：王敏    审核人：张建国"],
        widths=(6, 10, 6, 22, 24, 28, 10, 12, 15),
        text_cols=(3,),
    )
    notes = wb.create_sheet("填表说明")
    for r, text in enumerate(
        (
            "填表说明",
            "1.身份证号码一列请先设置为文本格式再录入,避免末尾几位变成0。",
            "2.职级按正县级、副县级、正科级、副科级、科员、办事员、一般干部填写。",
            "3.联系镇街填写所联系帮扶的镇(街道)全称。",
        ),
        1,
    ):
        notes.cell(r, 1, text).data_type = "s"
    notes.column_dimensions["A"].width = 70
    save_xlsx(wb, out_dir / rel)
    rec.sheet("干部名册", header_row, len(rows), blanks, footer_rows)
    for (cadre, bad), rn in zip(entries, numbers, strict=True):
        if bad is not None:
            rec.bad("干部名册", rn, bad, _CADRE_HEADERS[_CADRE_COLS.index(bad.field)])
        elif cadre.person.id18 in pop.warn["cadre"]:
            rec.warn("干部名册", rn, pop.warn["cadre"][cadre.person.id18], _CADRE_HEADERS, _CADRE_COLS)
    return rec.done(entities=len(pop.cadres))


# --- night 1: pre-1949 party members (GBK .csv) ----------------------------------------------

_OLD_HEADERS = ["序号", "姓 名", "性别", "公民身份号码", "入党时间", "乡镇(街道)", "村", "联系电话"]
_OLD_FIELDS = ("seq", "name", "sex", "id_number", "joined_date", "town", "village", "phone")


def write_old_members(out_dir: Path, rel: str, pop: Population, rng: random.Random) -> FileTruth:
    """The organisation department's pre-1949 party members: GBK .csv, a third with 15-digit IDs."""
    rec = FileRecord(rel, "organization", "old_member", "csv", "gbk")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    entries: list[tuple[Household, Bad[Household] | None]] = [(m, None) for m in pop.old_member]
    entries += [(b.entity, b) for b in pop.bad["old_member"]]
    entries.sort(key=lambda e: (town_rank.get(e[0].town, 99), e[0].head.id18))
    rows: list[list[object]] = []
    for i, (m, bad) in enumerate(entries):
        id_value = m.id15 if m.id15 else _messy_id(m.head.id18, rng).replace("\u3000", " ")
        if m.id15 and rng.random() < 0.1:
            id_value = m.id15[:6] + " " + m.id15[6:]
        assert m.joined is not None  # every old member joined the party on a known day
        values: dict[str, object] = {
            "seq": i + 1,
            "name": m.head.name,
            "sex": _SEX_LABEL[m.head.sex],
            "id_number": id_value,
            "joined_date": _messy_date_csv(m.joined, rng, month_only_ok=True),
            "town": m.town,
            "village": m.village,
            "phone": _messy_phone(m.phone, rng, numeric_ok=False),
        }
        if bad is not None:
            if bad.kind == "bad_birthdate":
                assert m.id15 is not None  # the bad birth date is written into a 15-digit ID
                values["id_number"] = m.id15[:8] + "13" + m.id15[10:]  # month 13
            else:
                _apply_person_bad(bad, values, rng, name_key="name", id_key="id_number", id18=m.head.id18)
        rows.append([values.get(k) for k in _OLD_FIELDS])
    rows.append([None] * len(_OLD_HEADERS))  # the empty line Excel leaves at the end of an export
    (out_dir / rel).write_bytes(csv_bytes(_OLD_HEADERS, rows, "gbk"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows) - 1, [len(rows) + 1])
    for i, (_, bad) in enumerate(entries):
        if bad is not None:
            rec.bad(sheet, i + 2, bad, _OLD_HEADERS[_OLD_FIELDS.index(bad.field)])
    return rec.done(entities=len(pop.old_member))


# --- night 1: key petition cases (UTF-8 BOM .csv) --------------------------------------------

_CASE_HEADERS = [
    "序号",
    "案件编号",
    "信访人",
    "信访人身份证号",
    "所属镇街",
    "诉求类别",
    "诉求摘要",
    "责任单位",
    "登记时间",
    "办理状态",
]
_CASE_FIELDS = (
    "seq",
    "case_number",
    "petitioner_name",
    "petitioner_id_number",
    "town",
    "topic",
    "summary",
    "responsible_unit",
    "registered_date",
    "case_status",
)


def write_cases(out_dir: Path, rel: str, pop: Population, rng: random.Random) -> FileTruth:
    """The petition office's key-case ledger: UTF-8-with-BOM .csv, in case-number order."""
    rec = FileRecord(rel, "petition", "case", "csv", "utf-8-sig")
    entries: list[tuple[Case, Bad[Case] | None]] = [(c, None) for c in pop.cases]
    entries += [(b.entity, b) for b in pop.bad["case"]]
    entries.sort(key=lambda e: e[0].number)
    rows: list[list[object]] = []
    for i, (c, bad) in enumerate(entries):
        summary = c.summary.replace("，", ",") if rng.random() < 0.3 else c.summary  # ASCII commas: quoted
        values: dict[str, object] = {
            "seq": i + 1,
            "case_number": c.number,
            "petitioner_name": c.petitioner.name,
            "petitioner_id_number": _messy_id(c.petitioner.id18, rng).replace("\u3000", " "),
            "town": c.town,
            "topic": c.topic,
            "summary": summary,
            "responsible_unit": c.unit,
            "registered_date": _messy_date_csv(c.registered, rng),
            "case_status": c.status,
        }
        if bad is not None:
            _apply_person_bad(
                bad,
                values,
                rng,
                name_key="petitioner_name",
                id_key="petitioner_id_number",
                id18=c.petitioner.id18,
            )
        else:
            _put_warning(values, pop.warn["case"].get(c.number))
        rows.append([values.get(k) for k in _CASE_FIELDS])
    (out_dir / rel).write_bytes(csv_bytes(_CASE_HEADERS, rows, "utf-8-sig"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows))
    for i, (c, bad) in enumerate(entries):
        if bad is not None:
            rec.bad(sheet, i + 2, bad, _CASE_HEADERS[_CASE_FIELDS.index(bad.field)])
        elif c.number in pop.warn["case"]:
            rec.warn(sheet, i + 2, pop.warn["case"][c.number], _CASE_HEADERS, _CASE_FIELDS)
    return rec.done(entities=len(pop.cases))


# --- night >= 2: hardship adjustment list (.xlsx) --------------------------------------------

_ADJ_COLS = (
    "seq",
    "adjustment_type",
    "head_name",
    "head_id_number",
    "town",
    "village",
    "household_size",
    "cause",
    "income",
    "phone",
    "adjustment_date",
    "adjustment_reason",
)
_ADJ_HEADERS = [
    "序号",
    "调整类型",
    "户主姓名",
    "身份证号码",
    "镇街",
    "村(居)",
    "家庭人口",
    "致困原因",
    "人均年收入(元)",
    "联系电话",
    "调整时间",
    "调整原因",
]


def _change_date(b: Bad[Household] | Bad[Cadre], rng: random.Random) -> Cell:
    """A change row's date cell: the malformed text of a bad_date row, else the change date, messed."""
    return Cell(b.extra["value"]) if b.kind == "bad_date" else _messy_date_xlsx(b.extra["date"], rng)


def write_adjustments(out_dir: Path, rel: str, rnd: Round, pop: Population, rng: random.Random) -> FileTruth:
    """Night >= 2, civil affairs: the hardship adjustment list (.xlsx; exits and additions)."""
    from openpyxl import Workbook

    rec = FileRecord(rel, "civil_affairs", "hardship_adjustment", "xlsx")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    # (household, its bad row or None, adjustment type, reason, date cell)
    entries: list[tuple[Household, Bad[Household] | None, str, str, Cell]] = []
    for h, kind, reason, day in rnd.exits:
        entries.append((h, None, kind, reason, _messy_date_xlsx(day, rng)))
    for h, reason, day in rnd.adds:
        entries.append((h, None, "新增", reason, _messy_date_xlsx(day, rng)))
    for b in rnd.bad["hardship_adjustment"]:
        date = _change_date(b, rng)
        entries.append((b.entity, b, b.extra["type"], b.extra["reason"], date))
    entries.sort(key=lambda e: (town_rank.get(e[0].town, 99), e[0].head.id18))
    rows: list[Row] = []
    for i, (h, bad, adj_type, reason, date) in enumerate(entries):
        values = _hardship_values(h, rng)
        values.update(seq=i + 1, adjustment_type=adj_type, adjustment_date=date, adjustment_reason=reason)
        if bad is not None and bad.kind != "bad_date":
            _apply_person_bad(
                bad, values, rng, name_key="head_name", id_key="head_id_number", id18=h.head.id18
            )
        rows.append([values.get(k) for k in _ADJ_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "动态调整"
    fill = rnd.fill_date
    district = spec.district().name
    header_row, numbers, blanks, footer_rows = xlsx_sheet(
        ws,
        title=f"{district}特困家庭动态调整名单",
        subtitle=f"填报单位(盖章):{district}民政局    填报日期:{fill.year}年{fill.month}月{fill.day}日",
        headers=_ADJ_HEADERS,
        rows=rows,
        footers=[None, f"合计:退出{len(rnd.exits)}户,新增{len(rnd.adds)}户", "制表人:孙丽"],
        widths=(6, 10, 10, 22, 12, 12, 8, 12, 12, 15, 14, 28),
        text_cols=(3,),
    )
    save_xlsx(wb, out_dir / rel)
    rec.sheet("动态调整", header_row, len(rows), blanks, footer_rows)
    for (_, bad, *_), rn in zip(entries, numbers, strict=True):
        if bad is not None:
            rec.bad("动态调整", rn, bad, _ADJ_HEADERS[_ADJ_COLS.index(bad.field)])
    return rec.done(entities=len(rnd.exits) + len(rnd.adds))


# --- night >= 2: cadre changes (.xlsx) -------------------------------------------------------

_CHANGE_COLS = (
    "seq",
    "name",
    "sex",
    "id_number",
    "change_type",
    "change_date",
    "unit",
    "post",
    "rank",
    "linked_town",
    "phone",
)
_CHANGE_HEADERS = [
    "序号",
    "姓名",
    "性别",
    "身份证号码",
    "变动类型",
    "变动时间",
    "工作单位",
    "职务",
    "职级",
    "联系镇街",
    "联系电话",
]


def write_cadre_changes(
    out_dir: Path, rel: str, rnd: Round, pop: Population, rng: random.Random
) -> FileTruth:
    """Night >= 2, organisation department: the cadre change list (.xlsx; departures and joins)."""
    from openpyxl import Workbook

    rec = FileRecord(rel, "organization", "cadre_change", "xlsx")
    # (cadre, its bad row or None, change type, date cell)
    entries: list[tuple[Cadre, Bad[Cadre] | None, str, Cell]] = []
    for c, kind, day in rnd.departures:
        entries.append((c, None, kind, _messy_date_xlsx(day, rng)))
    for c, day in rnd.joins:
        entries.append((c, None, "新增", _messy_date_xlsx(day, rng)))
    for b in rnd.bad["cadre_change"]:
        date = _change_date(b, rng)
        entries.append((b.entity, b, b.extra["type"], date))
    kind_rank = {"调离": 0, "退休": 1, "新增": 2}
    order = population.unit_order(pop.towns)

    def key(e: tuple[Cadre, Bad[Cadre] | None, str, Cell]) -> tuple[int, int, int, str]:
        c = e[0]
        unit = order.get(c.unit, len(order))
        return (kind_rank[e[2]], unit, population.RANK_ORDER.index(c.rank_label), c.person.id18)

    entries.sort(key=key)
    rows: list[Row] = []
    for i, (c, bad, change, date) in enumerate(entries):
        values = _cadre_values(c, rng, pad=0.1)
        values.update(seq=i + 1, change_type=change, change_date=date)
        if bad is not None and bad.kind != "bad_date":
            _apply_person_bad(bad, values, rng, name_key="name", id_key="id_number", id18=c.person.id18)
        rows.append([values.get(k) for k in _CHANGE_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "干部变动"
    fill = rnd.fill_date
    header_row, numbers, blanks, footer_rows = xlsx_sheet(
        ws,
        title=f"{spec.district().name}干部变动情况表",
        subtitle=f"报送单位:区委组织部干部科    报送时间:{fill.year}年{fill.month}月{fill.day}日",
        headers=_CHANGE_HEADERS,
        rows=rows,
        footers=[None, "制表人:王敏"],
        widths=(6, 10, 6, 22, 10, 14, 24, 28, 10, 12, 15),
        text_cols=(3,),
    )
    save_xlsx(wb, out_dir / rel)
    rec.sheet("干部变动", header_row, len(rows), blanks, footer_rows)
    for (_, bad, *_), rn in zip(entries, numbers, strict=True):
        if bad is not None:
            rec.bad("干部变动", rn, bad, _CHANGE_HEADERS[_CHANGE_COLS.index(bad.field)])
    return rec.done(entities=len(rnd.departures) + len(rnd.joins))


# --- night >= 2: case closures (UTF-8 BOM .csv) ----------------------------------------------

_CLOSURE_HEADERS = ["序号", "案件编号", "办理状态", "销号时间"]


def write_closures(out_dir: Path, rel: str, rnd: Round, rng: random.Random) -> FileTruth:
    """Night >= 2, petition office: the case closure list (UTF-8-with-BOM .csv)."""
    rec = FileRecord(rel, "petition", "case_closure", "csv", "utf-8-sig")
    # (case, its bad row or None, closure date text)
    entries: list[tuple[Case, Bad[Case] | None, str]] = [
        (c, None, _messy_date_csv(day, rng)) for c, day in rnd.closures
    ]
    entries += [(b.entity, b, b.extra["value"]) for b in rnd.bad["case_closure"]]
    entries.sort(key=lambda e: e[0].number)
    rows = [[i + 1, c.number, "已销号", date] for i, (c, _, date) in enumerate(entries)]
    (out_dir / rel).write_bytes(csv_bytes(_CLOSURE_HEADERS, rows, "utf-8-sig"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows))
    for i, (_, bad, _) in enumerate(entries):
        if bad is not None:
            rec.bad(sheet, i + 2, bad, "销号时间")
    return rec.done(entities=len(rnd.closures))
