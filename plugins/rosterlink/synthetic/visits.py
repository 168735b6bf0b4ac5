"""Sample visit logs (走访记录) for the reference district, with the figures a correct night must give.

The units know their pairs from the town workbooks; this generator reads them from the warehouse
after a night (current and ended household pairs, with the cadre's and head's names and IDs) and
writes what the units would drop into ``visits/`` by ``as_of``:

- most households visited in person before the first-visit deadline, some late, some only by
  phone, some never contacted; later follow-up calls; problems found and solved; help in kind or
  money from the cadre's own means; opinions and suggestions, some with a topic;
- a few rows outside the rules: help from public funds, help far above and far below the band
  (still loaded, flagged), and rejected rows of each kind: a household the cadre is not paired with,
  a date before the pair began, the same visit logged twice, an unknown cadre, a bad date, no kind.

Two files: the district departments' log (.xlsx, title rows, merged unit column) and the towns'
log (GBK .csv). :func:`generate` returns :class:`VisitTruth`: the files' truth in the format of
:mod:`rosterlink.synthetic.sample` and the follow-through figures counted from the rows written.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import idnumber
from rosterlink.followup.config import FollowupConfig
from rosterlink.synthetic import sample, writers
from rosterlink.synthetic.truth import BadRow, FileTruth
from rosterlink.warehouse import schema

HEADERS = [
    "序号",
    "工作单位",
    "干部姓名",
    "干部身份证号",
    "户主姓名",
    "户主身份证号",
    "镇街",
    "村(居)",
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
]
COLS = [
    "seq",
    "unit",
    "cadre_name",
    "cadre_id_number",
    "head_name",
    "head_id_number",
    "town",
    "village",
    "visit_date",
    "visit_kind",
    "problems_found",
    "problems_solved",
    "help_kind",
    "help_content",
    "help_value",
    "help_source",
    "opinions",
    "opinion_topic",
]
PROBLEMS = (
    "看病贵",
    "住房漏雨",
    "缺劳动力",
    "孩子上学远",
    "低保待遇未落实",
    "饮水不便",
    "子女就业难",
    "冬季取暖难",
)
HELP_IN_KIND = ("米、面、油", "棉被两床", "取暖器一台", "学习用品", "鸡蛋、牛奶", "冬衣")
HELP_MONEY = ("慰问金", "助学金")
OWN_SOURCES = ("个人", "个人出资", "干部自费", "自筹")
PUBLIC_SOURCES = ("村集体经济", "财政专项资金")
OPINIONS = (
    ("希望提高看病报销比例", "医疗"),
    ("村里道路坑洼，希望修路", ""),
    ("希望帮助危房改造", "住房"),
    ("希望提供务工信息", "就业"),
    ("孩子上学路远，希望有校车", "教育"),
    ("希望尽快落实低保", ""),
    ("自来水经常停水", ""),
    ("感谢党和政府的关心", ""),
)


@dataclass
class VisitTruth:
    as_of: str
    files: dict[str, FileTruth]
    followup: dict  # the district's figures (rosterlink.followup.figures.headline keys)
    departments: dict[str, int] = field(default_factory=dict)  # opinions per responsible department

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1) + "\n"


@dataclass
class _Pair:
    cadre_key: str
    cadre_name: str
    cadre_id: str
    unit: str | None
    household_key: str
    head_name: str
    head_id: str | None
    town: str | None
    village: str | None
    valid_from: dt.date
    valid_to: dt.date | None


def _pairs(url: str) -> list[_Pair]:
    p, c, h = schema.pairing, schema.cadre, schema.household
    with warehouse.connect(url).connect() as conn:
        rows = conn.execute(
            sa.select(
                p.c.cadre_key,
                c.c.name,
                c.c.id_number,
                c.c.unit,
                p.c.target_key,
                h.c.head_name,
                h.c.head_id_number,
                h.c.town,
                h.c.village,
                p.c.valid_from,
                p.c.valid_to,
            )
            .select_from(
                p.join(c, c.c.cadre_key == p.c.cadre_key).join(h, h.c.household_key == p.c.target_key)
            )
            .where(p.c.target_kind == "household")
            .order_by(p.c.pairing_id)
        ).all()
    return [_Pair(*r) for r in rows if r[2]]


def _day_between(rng: random.Random, start: dt.date, end: dt.date) -> dt.date | None:
    if end < start:
        return None
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))


def generate(
    out_dir: Path,
    warehouse_url: str,
    as_of: dt.date,
    *,
    seed: int = sample.DEFAULT_SEED,
    truth_path: Path | None = None,
) -> VisitTruth:
    """Write the units' visit logs up to ``as_of`` for the pairs in the warehouse; return the truth."""
    cfg = FollowupConfig.load()
    rng = random.Random(f"{seed}:visits:{as_of}")
    pairs = [q for q in _pairs(warehouse_url) if q.valid_from < as_of]
    by_household: dict[str, list[_Pair]] = defaultdict(list)
    for q in pairs:
        by_household[q.household_key].append(q)
    current = {k: qs[-1] for k, qs in by_household.items() if qs[-1].valid_to is None}
    rows: list[dict] = []  # good rows: the visit, plus its truth
    bad: list[tuple[dict, str, str, tuple[str, ...]]] = []  # (row, field, kind, codes)

    def row(q: _Pair, day: dt.date, kind: str | None, **extra: object) -> dict:
        return {
            "unit": q.unit,
            "cadre_name": q.cadre_name,
            "cadre_id_number": q.cadre_id,
            "head_name": q.head_name,
            "head_id_number": q.head_id,
            "town": q.town,
            "village": q.village,
            "visit_date": day,
            "visit_kind": kind,
            "_kind": "in_person" if kind in ("入户走访", "入户", "上门走访") else "phone",
            "_household": q.household_key,
            "_cadre": q.cadre_key,
            "_found": 0,
            "_solved": 0,
            "_value": 0.0,
            "_public": False,
            "_opinion": None,
            **extra,
        }

    for key in sorted(by_household):
        history = by_household[key]
        first = history[0]
        deadline = cfg.deadline(first.valid_from)
        end = min(as_of, first.valid_to or as_of)
        lot = rng.random()
        day = _day_between(rng, first.valid_from + dt.timedelta(days=1), end)
        if lot < 0.12 or day is None:
            continue  # never contacted
        if lot < 0.20:  # by phone only
            rows.append(row(first, day, "电话"))
            continue
        late = lot < 0.26
        start = (
            deadline + dt.timedelta(days=1)
            if late and deadline < end
            else first.valid_from + dt.timedelta(days=1)
        )
        day = _day_between(rng, start, end if late else min(end, deadline)) or day
        found = rng.sample(PROBLEMS, rng.choice((0, 1, 1, 2, 2, 3)))
        solved = found[: rng.randint(0, len(found))]
        r = row(
            first,
            day,
            rng.choice(("入户走访", "入户", "上门走访")),
            problems_found="；".join(f"{i + 1}、{p}" for i, p in enumerate(found)) or "无",
            problems_solved="；".join(solved) or None,
            _found=len(found),
            _solved=len(solved),
        )
        if rng.random() < 0.7:
            money = rng.random() < 0.3
            value = float(rng.randrange(250, 1200, 10))
            r.update(
                help_kind="资金" if money else "实物",
                help_content=rng.choice(HELP_MONEY if money else HELP_IN_KIND),
                help_value=value,
                help_source=rng.choice(OWN_SOURCES),
                _value=value,
            )
        if rng.random() < 0.3:
            text, topic = rng.choice(OPINIONS)
            r.update(opinions=text, opinion_topic=topic or None, _opinion=cfg.department(topic or None, text))
        rows.append(r)
        later = history[
            -1
        ]  # a follow-up call, by the household's cadre of the day (carried over if it changed)
        follow = _day_between(
            rng, max(day, later.valid_from) + dt.timedelta(days=1), min(as_of, later.valid_to or as_of)
        )
        if rng.random() < 0.35 and follow is not None:
            rows.append(row(later, follow, "电话"))

    # help outside the rules: public funds, far above and far below the band (loaded, flagged)
    helped = [r for r in rows if r["_kind"] == "in_person" and r["_value"]]
    for r, source in zip(rng.sample(helped, 4), (*PUBLIC_SOURCES, *PUBLIC_SOURCES), strict=True):
        r.update(help_source=source, _public=True)
    singles = [
        r for r in helped if sum(1 for x in rows if x["_household"] == r["_household"] and x["_value"]) == 1
    ]
    for r in rng.sample(singles, 3):
        value = float(rng.randrange(5000, 9000, 100))
        r.update(help_kind="资金", help_content="慰问金", help_value=value, _value=value)
    for r in rng.sample([x for x in singles if x["_value"] < 3000], 3):
        value = float(rng.randrange(20, 90, 10))
        r.update(help_kind="实物", help_content="鸡蛋", help_value=value, _value=value)

    # rejected rows of each kind
    currents = sorted(current.values(), key=lambda q: q.household_key)
    for q in rng.sample(currents, 2):  # a household the cadre is not paired with
        other = rng.choice([x for x in currents if x.cadre_key != q.cadre_key])
        stranger = _Pair(
            q.cadre_key,
            q.cadre_name,
            q.cadre_id,
            q.unit,
            other.household_key,
            other.head_name,
            other.head_id,
            other.town,
            other.village,
            q.valid_from,
            None,
        )
        bad.append(
            (
                row(stranger, as_of - dt.timedelta(days=3), "入户走访"),
                "head_id_number",
                "unmatched_pair",
                ("visit_household_unknown",),
            )
        )
    for q in rng.sample(currents, 2):  # dated before the pair began
        bad.append(
            (
                row(q, q.valid_from - dt.timedelta(days=rng.randint(3, 20)), "入户走访"),
                "visit_date",
                "before_pair",
                ("visit_before_pair",),
            )
        )
    for r in rng.sample([x for x in rows if x["_kind"] == "in_person"], 2):  # the same visit logged twice
        bad.append(({**r, "_after": id(r)}, "visit_date", "duplicate_visit", ("visit_duplicate",)))
    q = currents[0]
    unknown = idnumber.make("370406", dt.date(1975, 3, 3), 987)
    bad.append(
        (
            row(
                _Pair(
                    q.cadre_key,
                    "周某某",
                    unknown,
                    q.unit,
                    q.household_key,
                    q.head_name,
                    q.head_id,
                    q.town,
                    q.village,
                    q.valid_from,
                    None,
                ),
                as_of - dt.timedelta(days=2),
                "入户走访",
            ),
            "cadre_id_number",
            "unknown_cadre",
            ("visit_cadre_unknown",),
        )
    )
    bad.append(
        (
            {**row(currents[1], as_of, "入户走访"), "visit_date": "2026年13月5日"},
            "visit_date",
            "bad_date",
            ("date_invalid",),
        )
    )
    bad.append(
        (
            row(currents[2], as_of - dt.timedelta(days=1), None),
            "visit_kind",
            "missing_required",
            ("required_missing",),
        )
    )

    files = _write(out_dir, as_of, rows, bad, rng)
    truth = VisitTruth(
        as_of=as_of.isoformat(), files=files, followup=_figures(rows, current, by_household, as_of, cfg)
    )
    for r in rows:
        if r["_opinion"]:
            truth.departments[r["_opinion"]] = truth.departments.get(r["_opinion"], 0) + 1
    if truth_path is not None:
        Path(truth_path).parent.mkdir(parents=True, exist_ok=True)
        Path(truth_path).write_text(truth.to_json(), encoding="utf-8")
    return truth


def _figures(
    rows: list[dict],
    current: dict[str, _Pair],
    by_household: dict[str, list[_Pair]],
    as_of: dt.date,
    cfg: FollowupConfig,
) -> dict:
    """The figures of rosterlink.followup.figures.headline, counted from the good rows written."""
    of: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        of[r["_household"]].append(r)
    visited = {k for k in current if any(r["_kind"] == "in_person" for r in of[k])}
    overdue = {k for k in current if k not in visited and as_of > cfg.deadline(by_household[k][0].valid_from)}
    year = [sum(r["_value"] for r in of[k] if r["visit_date"].year == as_of.year) for k in current]
    return {
        "households": len(current),
        "visited_in_person": len(visited),
        "not_visited_in_person": len(current) - len(visited),
        "overdue": len(overdue),
        "never_contacted": sum(1 for k in current if not of[k]),
        "phone_only": sum(1 for k in current if k not in visited and of[k]),
        "help_above_band": sum(1 for v in year if v > cfg.help_max),
        "help_below_band": sum(1 for v in year if 0 < v < cfg.help_min),
        "carried_over": sum(1 for k in current if any(r["_cadre"] != current[k].cadre_key for r in of[k])),
        "visits": len(rows),
        "in_person_visits": sum(1 for r in rows if r["_kind"] == "in_person"),
        "phone_contacts": sum(1 for r in rows if r["_kind"] == "phone"),
        "problems_found": sum(r["_found"] for r in rows),
        "problems_solved": sum(r["_solved"] for r in rows),
        "help_value": round(sum(r["_value"] for r in rows), 2),
        "public_fund_entries": sum(r["_public"] for r in rows),
        "opinions": sum(1 for r in rows if r["_opinion"]),
    }


def _write(out_dir: Path, as_of: dt.date, rows: list[dict], bad: list, rng: random.Random) -> dict:
    """Departments' log (.xlsx) and towns' log (GBK .csv); a duplicate follows its original."""

    def is_town(r: dict) -> bool:
        return bool(r["unit"]) and r["unit"].endswith(("人民政府", "办事处"))

    stamp = f"{as_of:%Y%m%d}"
    rels = {False: f"visits/区直部门走访记录_{stamp}.xlsx", True: f"visits/镇街走访记录_{stamp}.csv"}
    entries: dict[bool, list[tuple[dict, tuple | None]]] = {False: [], True: []}
    for r in sorted(rows, key=lambda r: (r["unit"] or "", r["cadre_name"], r["visit_date"], r["_household"])):
        entries[is_town(r)].append((r, None))
    dups = {b[0]["_after"]: b for b in bad if b[2] == "duplicate_visit"}
    for side in (False, True):
        out: list[tuple[dict, tuple | None]] = []
        for r, _ in entries[side]:
            out.append((r, None))
            if id(r) in dups:
                out.append((dups[id(r)][0], dups[id(r)][1:]))
        entries[side] = out
    for b in bad:
        if b[2] != "duplicate_visit":
            side = is_town(b[0])
            entries[side].insert(rng.randint(0, len(entries[side])), (b[0], b[1:]))
    (out_dir / "visits").mkdir(parents=True, exist_ok=True)
    files = {}
    for side, items in entries.items():
        rel = rels[side]
        rec = writers.FileRecord(rel, "visits", "visit", "csv" if side else "xlsx", "gbk" if side else None)
        values = []
        numbers: list[int | None]
        for i, (r, _) in enumerate(items):
            day = r["visit_date"]
            shown = (
                day
                if isinstance(day, str)
                else (day.isoformat() if side else writers.Cell(day, "yyyy-mm-dd"))
            )
            values.append([i + 1 if c == "seq" else shown if c == "visit_date" else r.get(c) for c in COLS])
        if side:
            (out_dir / rel).write_bytes(writers.csv_bytes(HEADERS, values, "gbk"))
            sheet, numbers = Path(rel).stem, [i + 2 for i in range(len(values))]
            rec.sheet(sheet, 1, len(values))
        else:
            from openpyxl import Workbook

            wb = Workbook()
            ws = wb.active
            ws.title = sheet = "走访记录"
            header_row, numbers, blanks, footers = writers.xlsx_sheet(
                ws,
                title="山亭区结对帮扶走访记录（区直部门）",
                subtitle=f"填报日期:{as_of.year}年{as_of.month}月{as_of.day}日",
                headers=HEADERS,
                rows=values,
                footers=[None, "制表人:办公室"],
                text_cols=(3, 5),
            )
            writers.save_xlsx(wb, out_dir / rel)
            rec.sheet(sheet, header_row, len(values), blanks, footers)
        for (_, why), number in zip(items, numbers, strict=True):
            if why is not None:
                assert number is not None  # a bad row is written, never a blank
                fld, kind, codes = why
                rec.truth.bad_rows.append(
                    BadRow(sheet, number, fld, HEADERS[COLS.index(fld)], kind, list(codes))
                )
        files[rel] = rec.done(entities=sum(1 for _, why in items if why is None))
    return files
