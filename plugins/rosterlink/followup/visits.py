"""Follow-through of the pairs (走访帮扶): visit logs matched to pairs, and the nightly figures.

Units drop visit and help logs (走访记录, roster ``visit``, folder ``visits/``); they are read,
normalised, validated (``expectations/visit.json``) and loaded like every roster. After the pairs
are rebuilt, :func:`match` ties each loaded log row to the pair it reports on:

- the cadre by the ID number (``cadre_id_number``); the household among the households that cadre
  is or was paired with, by the head's ID number, or by the head's name when no ID is given;
- the pair must be in force on the visit date (``valid_from <= visit_date``, and not ended before
  it): otherwise the row is rejected (``visit_before_pair`` / ``visit_after_pair``);
- the same cadre, household, date and kind (in person / phone) counts once: a repeat, in the same
  file or a later one, is rejected as ``visit_duplicate`` naming the first one.

A rejected row goes to ``rejected_row`` with a Chinese message (so the clerk's feedback workbook
lists it), leaves ``source_record`` and moves from the file's loaded to its rejected count, so the
file still balances (``file_reconciliation``). A matched row becomes a ``visit`` row.

Then :func:`rebuild_followup` writes ``followup_household``: one row per household with a pair in
force tonight, over the household's whole visit history (visits made by an earlier cadre carry
over to the household), against the first-visit deadline and the help band of
``config/followup.json``. The views ``followup_by_cadre``, ``followup_by_unit`` and
``followup_by_town`` aggregate it. :func:`write_opinion_workbooks` writes the opinions heard, one
workbook per responsible department (topic -> department mapping in the same file), without ID
numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.masking import mask_text
from rosterlink.core.spec import catalogue, header_key, load_json
from rosterlink.warehouse import now, schema

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

IN_PERSON, PHONE = "in_person", "phone"
KIND_LABELS = {IN_PERSON: "入户走访", PHONE: "电话联系"}
HELP_KIND_LABELS = {"in_kind": "实物", "money": "资金"}
SOURCE_LABELS = {"own": "个人", "public": "公款/财政/集体", "unstated": "未填写", "other": "其他"}
FLAG_LABELS = {"above": "高于标准", "below": "低于标准"}


# --- programme settings (config/followup.json) -------------------------------------------------------
@dataclass(frozen=True)
class FollowupConfig:
    festival_deadlines: tuple[dt.date, ...]
    min_days_after_pairing: int
    fallback_days: int
    help_min: float
    help_max: float
    public_words: tuple[str, ...]
    own_words: tuple[str, ...]
    no_problem_words: tuple[str, ...]
    default_department: str
    topics: tuple[tuple[str, tuple[str, ...]], ...]  # (department, words), first match wins

    @classmethod
    def from_mapping(cls, d: Mapping) -> FollowupConfig:
        first, band, sources, depts = d["first_visit"], d["help_band"], d["help_sources"], d["departments"]
        return cls(
            festival_deadlines=tuple(
                sorted(dt.date.fromisoformat(v) for v in first["festival_deadlines"].values())
            ),
            min_days_after_pairing=int(first.get("min_days_after_pairing", 14)),
            fallback_days=int(first.get("fallback_days", 60)),
            help_min=float(band["min"]),
            help_max=float(band["max"]),
            public_words=tuple(sources["public"]),
            own_words=tuple(sources["own"]),
            no_problem_words=tuple(header_key(w) for w in d.get("no_problem_words", [])),
            default_department=str(depts["default"]),
            topics=tuple((t["department"], tuple(t["words"])) for t in depts["topics"]),
        )

    @classmethod
    def load(cls) -> FollowupConfig:
        return cls.from_mapping(load_json("followup.json"))

    def deadline(self, paired_on: dt.date) -> dt.date:
        """The first visit in person is due by the first configured Mid-Autumn deadline at least
        ``min_days_after_pairing`` days after the household was first paired; a household paired
        after the last configured festival has ``fallback_days``."""
        earliest = paired_on + dt.timedelta(days=self.min_days_after_pairing)
        for day in self.festival_deadlines:
            if day >= earliest:
                return day
        return paired_on + dt.timedelta(days=self.fallback_days)

    def source_kind(self, text: str | None) -> str:
        """own | public | unstated | other, from the words of 资金来源; public wins over own."""
        if not text or not str(text).strip():
            return "unstated"
        value = str(text)
        if any(w in value for w in self.public_words):
            return "public"
        if any(w in value for w in self.own_words):
            return "own"
        return "other"

    def department(self, topic: str | None, text: str | None) -> str:
        """The department that can act on an opinion: by its topic, else by words of the opinion."""
        for value in (topic, text):
            if not value:
                continue
            for dept, words in self.topics:
                if dept in value or any(w in value for w in words):
                    return dept
        return self.default_department

    def is_nothing(self, text: str | None) -> bool:
        return not text or header_key(text) in self.no_problem_words


_NUMBERING = re.compile(r"（\d+）|\(\d+\)|\d+[、．]|\d+\.(?!\d)|[①②③④⑤⑥⑦⑧⑨⑩]")
_SEPARATORS = re.compile(r"[；;。\n\r]+")


def count_items(text: str | None, cfg: FollowupConfig) -> int:
    """How many problems a cell names: a plain number is the count; else items separated by
    ``；`` ``。`` line breaks or numbering (``1、`` ``（2）`` ``③``); 无/暂无 is none."""
    if cfg.is_nothing(text):
        return 0
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    items = [p.strip(" ,，、") for p in _SEPARATORS.split(_NUMBERING.sub(";", value))]
    return sum(1 for p in items if p and not cfg.is_nothing(p))


# --- matching log rows to pairs ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pair:
    pairing_id: int
    cadre_key: str
    household_key: str  # resolved through merges
    valid_from: dt.date
    valid_to: dt.date | None


def _surviving(conn: sa.Connection) -> dict[str, str]:
    """retired household key -> the key that survives it now (merge chains followed)."""
    m = schema.household_merge
    direct = dict(conn.execute(sa.select(m.c.retired_key, m.c.surviving_key).order_by(m.c.merge_id)).all())

    def resolve(key: str) -> str:
        seen = set()
        while key in direct and key not in seen:
            seen.add(key)
            key = direct[key]
        return key

    return {k: resolve(k) for k in direct}


def _header(headers: dict[tuple[int, str], dict], file_id: int, sheet: str, field_name: str) -> str:
    return headers.get((file_id, sheet), {}).get(field_name) or catalogue().fields[field_name].label


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def match(
    eng: sa.Engine, as_of: dt.date, run_id: str | None = None, cfg: FollowupConfig | None = None
) -> dict:
    """Tie tonight's loaded visit log rows to pairs, reject the rest, rebuild the figures: ONE
    transaction. Idempotent: rows already matched are skipped, rejected rows are gone from
    ``source_record``."""
    cfg = cfg or FollowupConfig.load()
    r, v, f, c, h, p = (
        schema.source_record,
        schema.visit,
        schema.intake_file,
        schema.cadre,
        schema.household,
        schema.pairing,
    )
    outcome: dict[str, int] = defaultdict(int)
    with eng.begin() as conn:
        surviving = _surviving(conn)
        # visits follow their household through merges
        for retired, key in surviving.items():
            conn.execute(v.update().where(v.c.household_key == retired).values(household_key=key))
        pending = conn.execute(
            sa.select(
                r.c.record_id,
                r.c.file_id,
                r.c.sheet,
                r.c.row_number,
                r.c.person_name,
                r.c.id_number,
                r.c.attrs,
            )
            .select_from(
                r.outerjoin(
                    v,
                    sa.and_(
                        v.c.file_id == r.c.file_id, v.c.sheet == r.c.sheet, v.c.row_number == r.c.row_number
                    ),
                )
            )
            .where(r.c.roster == "visit", v.c.visit_id.is_(None))
            .order_by(r.c.file_id, r.c.sheet, r.c.row_number)
        ).all()
        if pending:
            cadre_by_id = {i: k for k, i in conn.execute(sa.select(c.c.cadre_key, c.c.id_number)) if i}
            heads = {
                k: (i, n)
                for k, i, n in conn.execute(sa.select(h.c.household_key, h.c.head_id_number, h.c.head_name))
            }
            pairs_by_cadre: dict[str, list[_Pair]] = defaultdict(list)
            for row in conn.execute(
                sa.select(p.c.pairing_id, p.c.cadre_key, p.c.target_key, p.c.valid_from, p.c.valid_to)
                .where(p.c.target_kind == "household")
                .order_by(p.c.pairing_id)
            ):
                pairs_by_cadre[row.cadre_key].append(
                    _Pair(
                        row.pairing_id,
                        row.cadre_key,
                        surviving.get(row.target_key, row.target_key),
                        row.valid_from,
                        row.valid_to,
                    )
                )
            seen: dict[tuple, str] = {}
            for x in conn.execute(
                sa.select(
                    v.c.cadre_key,
                    v.c.household_key,
                    v.c.visit_date,
                    v.c.visit_kind,
                    v.c.file_id,
                    v.c.sheet,
                    v.c.row_number,
                    f.c.file_name,
                ).select_from(v.join(f, f.c.file_id == v.c.file_id))
            ):
                seen.setdefault(
                    (x.cadre_key, x.household_key, x.visit_date, x.visit_kind),
                    _where(x.file_name, x.sheet, x.row_number),
                )
            s = schema.intake_sheet
            file_ids = sorted({x.file_id for x in pending})
            headers = {
                (x.file_id, x.sheet): json.loads(x.headers or "{}")
                for x in conn.execute(
                    sa.select(s.c.file_id, s.c.sheet, s.c.headers).where(s.c.file_id.in_(file_ids))
                )
            }
            names = dict(
                conn.execute(sa.select(f.c.file_id, f.c.file_name).where(f.c.file_id.in_(file_ids))).all()
            )
            rejected_by_file: dict[int, int] = defaultdict(int)
            for rec in pending:
                attrs = json.loads(rec.attrs or "{}")
                found = _match_one(rec, attrs, cadre_by_id, heads, pairs_by_cadre, seen, cfg)
                if isinstance(found, tuple):  # (code, field, value, extra)
                    code, field_name, value, extra = found
                    header = _header(headers, rec.file_id, rec.sheet, field_name)
                    conn.execute(
                        schema.rejected_row.insert().values(
                            file_id=rec.file_id,
                            sheet=rec.sheet,
                            row_number=rec.row_number,
                            field=field_name,
                            header=header,
                            value=mask_text(value) if value is not None else None,
                            reason_code=code,
                            message=message(
                                code, header=header, value=mask_text(value) if value else "", **extra
                            ),
                            created_at=now(),
                        )
                    )
                    conn.execute(r.delete().where(r.c.record_id == rec.record_id))
                    rejected_by_file[rec.file_id] += 1
                    outcome[code] += 1
                    continue
                found["file_id"], found["sheet"], found["row_number"] = rec.file_id, rec.sheet, rec.row_number
                found["record_id"], found["run_id"], found["matched_at"] = rec.record_id, run_id, now()
                conn.execute(v.insert().values(**found))
                seen[
                    (found["cadre_key"], found["household_key"], found["visit_date"], found["visit_kind"])
                ] = _where(names.get(rec.file_id, ""), rec.sheet, rec.row_number)
                outcome["matched"] += 1
            for file_id, n in rejected_by_file.items():
                conn.execute(
                    f.update()
                    .where(f.c.file_id == file_id)
                    .values(rows_loaded=f.c.rows_loaded - n, rows_rejected=f.c.rows_rejected + n)
                )
                ledger = conn.execute(
                    sa.select(f.c.rows_loaded, f.c.rows_rejected).where(f.c.file_id == file_id)
                ).one()
                conn.execute(
                    f.update()
                    .where(f.c.file_id == file_id)
                    .values(
                        message=message(
                            "file_loaded", loaded=ledger.rows_loaded, rejected=ledger.rows_rejected
                        )
                    )
                )
        households = rebuild_followup(conn, as_of, cfg)
    summary = {
        "rows_matched": outcome.pop("matched", 0),
        "rows_rejected": dict(sorted(outcome.items())),
        "households": households,
    }
    log.info(
        "follow-through: %d visit rows matched, %d rejected, %d households followed",
        summary["rows_matched"],
        sum(summary["rows_rejected"].values()),
        households,
    )
    return summary


def _where(file_name: str, sheet: str, row_number: int) -> str:
    return f"“{file_name}”工作表“{sheet}”第{row_number}行"


def _match_one(
    rec: sa.Row,
    attrs: dict,
    cadre_by_id: dict[str, str],
    heads: dict[str, tuple],
    pairs_by_cadre: dict[str, list[_Pair]],
    seen: dict[tuple, str],
    cfg: FollowupConfig,
) -> dict | tuple:
    """A ``visit`` row (dict) or why not: (reason code, field, value for the clerk, message values)."""
    cadre_id = attrs.get("cadre_id_number")
    cadre_key = cadre_by_id.get(cadre_id) if cadre_id else None
    if cadre_key is None:
        return ("visit_cadre_unknown", "cadre_id_number", cadre_id, {})
    pairs = pairs_by_cadre.get(cadre_key, [])
    theirs = {q.household_key for q in pairs}
    if rec.id_number:
        candidates = {k for k in theirs if heads.get(k, (None, None))[0] == rec.id_number}
        if not candidates:
            return ("visit_household_unknown", "head_id_number", rec.id_number, {})
    else:
        wanted = header_key(rec.person_name)
        candidates = {k for k in theirs if header_key(heads.get(k, (None, None))[1]) == wanted}
        if not candidates:
            return ("visit_household_unknown", "head_name", rec.person_name, {})
        if len(candidates) > 1:
            return ("visit_household_ambiguous", "head_name", rec.person_name, {})
    household_key = next(iter(candidates))
    day = _as_date(attrs.get("visit_date"))
    kind = attrs.get("visit_kind")
    own = [q for q in pairs if q.household_key == household_key]
    holding = [q for q in own if q.valid_from <= day and (q.valid_to is None or day <= q.valid_to)]
    if not holding:
        if all(q.valid_from > day for q in own):
            started = min(q.valid_from for q in own)
            return ("visit_before_pair", "visit_date", day.isoformat(), {"started": started.isoformat()})
        ended = max(q.valid_to for q in own if q.valid_to is not None and q.valid_to < day)
        return ("visit_after_pair", "visit_date", day.isoformat(), {"ended": ended.isoformat()})
    first = seen.get((cadre_key, household_key, day, kind))
    if first is not None:
        return ("visit_duplicate", "visit_date", day.isoformat(), {"first": first})
    helped = any(attrs.get(k) not in (None, "") for k in ("help_kind", "help_content", "help_value"))
    value = attrs.get("help_value")
    opinions = attrs.get("opinions")
    opinions = None if cfg.is_nothing(opinions) else opinions
    topic = attrs.get("opinion_topic")
    return {
        "cadre_key": cadre_key,
        "household_key": household_key,
        "pairing_id": holding[-1].pairing_id,
        "visit_date": day,
        "visit_kind": kind,
        "problems_found": count_items(attrs.get("problems_found"), cfg),
        "problems_solved": count_items(attrs.get("problems_solved"), cfg),
        "help_kind": attrs.get("help_kind"),
        "help_value": float(value) if value not in (None, "") else None,
        "help_source": attrs.get("help_source"),
        "help_source_kind": cfg.source_kind(attrs.get("help_source")) if helped else None,
        "opinions": opinions,
        "opinion_topic": topic if opinions else None,
        "opinion_department": cfg.department(topic, opinions) if opinions else None,
    }


# --- nightly figures -------------------------------------------------------------------------------------
def rebuild_followup(conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig) -> int:
    """Rewrite ``followup_household`` for ``as_of``; returns the number of households."""
    p, v, h, fh = schema.pairing, schema.visit, schema.household, schema.followup_household
    surviving = _surviving(conn)
    first_paired: dict[str, dt.date] = {}
    current: dict[str, str] = {}
    for row in conn.execute(
        sa.select(p.c.cadre_key, p.c.target_key, p.c.valid_from, p.c.valid_to)
        .where(p.c.target_kind == "household", p.c.valid_from <= as_of)
        .order_by(p.c.pairing_id)
    ):
        key = surviving.get(row.target_key, row.target_key)
        first_paired[key] = min(first_paired.get(key, row.valid_from), row.valid_from)
        if row.valid_to is None or row.valid_to > as_of:
            current[key] = row.cadre_key
    towns = dict(conn.execute(sa.select(h.c.household_key, h.c.town)).all())
    visits: dict[str, list] = defaultdict(list)
    for x in conn.execute(
        sa.select(
            v.c.household_key,
            v.c.cadre_key,
            v.c.visit_date,
            v.c.visit_kind,
            v.c.problems_found,
            v.c.problems_solved,
            v.c.help_value,
            v.c.help_source_kind,
        )
        .where(v.c.visit_date <= as_of)
        .order_by(v.c.visit_date, v.c.visit_id)
    ):
        visits[x.household_key].append(x)
    conn.execute(fh.delete())
    rows = []
    for key in sorted(current):
        seen = visits.get(key, [])
        in_person = [x for x in seen if x.visit_kind == IN_PERSON]
        last = max((x.visit_date for x in seen), default=None)
        help_year = sum(x.help_value or 0.0 for x in seen if x.visit_date.year == as_of.year)
        flag = None
        if help_year > 0:
            flag = "below" if help_year < cfg.help_min else "above" if help_year > cfg.help_max else None
        deadline = cfg.deadline(first_paired[key])
        visited = bool(in_person)
        rows.append(
            {
                "household_key": key,
                "as_of": as_of,
                "town": towns.get(key),
                "cadre_key": current[key],
                "paired_on": first_paired[key],
                "deadline": deadline,
                "first_in_person_on": in_person[0].visit_date if in_person else None,
                "last_contact_on": last,
                "days_since_contact": (as_of - last).days if last else None,
                "in_person_visits": len(in_person),
                "phone_contacts": sum(1 for x in seen if x.visit_kind == PHONE),
                "problems_found": sum(x.problems_found for x in seen),
                "problems_solved": sum(x.problems_solved for x in seen),
                "help_value_year": round(help_year, 2),
                "help_flag": flag,
                "public_fund_entries": sum(1 for x in seen if x.help_source_kind == "public"),
                "visited_in_person": int(visited),
                "overdue": int(not visited and as_of > deadline),
                "carried_over": int(any(x.cadre_key != current[key] for x in seen)),
            }
        )
    if rows:
        conn.execute(fh.insert(), rows)
    return len(rows)


def headline(eng: sa.Engine) -> dict:
    """The district's follow-through figures as they stand (CLI summary, dashboard)."""
    with eng.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("followup_household"):
            return {}
        fh = conn.exec_driver_sql(
            "SELECT COUNT(*), COALESCE(SUM(visited_in_person),0), COALESCE(SUM(overdue),0), "
            "COALESCE(SUM(CASE WHEN last_contact_on IS NULL THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN visited_in_person = 0 AND phone_contacts > 0 THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN help_flag = 'above' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN help_flag = 'below' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(carried_over),0), MAX(as_of) FROM followup_household"
        ).one()
        vs = conn.exec_driver_sql(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN visit_kind = 'in_person' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(problems_found),0), COALESCE(SUM(problems_solved),0), COALESCE(SUM(help_value),0), "
            "COALESCE(SUM(CASE WHEN help_source_kind = 'public' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN opinions IS NOT NULL THEN 1 ELSE 0 END),0) FROM visit"
        ).one()
    return {
        "as_of": str(fh[8]) if fh[8] else None,
        "households": int(fh[0]),
        "visited_in_person": int(fh[1]),
        "not_visited_in_person": int(fh[0]) - int(fh[1]),
        "overdue": int(fh[2]),
        "never_contacted": int(fh[3]),
        "phone_only": int(fh[4]),
        "help_above_band": int(fh[5]),
        "help_below_band": int(fh[6]),
        "carried_over": int(fh[7]),
        "visits": int(vs[0]),
        "in_person_visits": int(vs[1]),
        "phone_contacts": int(vs[0]) - int(vs[1]),
        "problems_found": int(vs[2]),
        "problems_solved": int(vs[3]),
        "help_value": round(float(vs[4]), 2),
        "public_fund_entries": int(vs[5]),
        "opinions": int(vs[6]),
    }


def by_view(conn: sa.Connection, view: str) -> list[dict]:
    """Rows of one of the ``followup_by_*`` views as dicts."""
    if view not in ("followup_by_cadre", "followup_by_unit", "followup_by_town"):
        raise ValueError(view)
    return [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {view}"))]


# --- outputs: opinions workbooks, sheets of the pairing workbook ---------------------------------------
OPINION_COLUMNS = (
    "走访日期",
    "镇街",
    "村(居)",
    "户主姓名",
    "家庭编号",
    "走访干部",
    "工作单位",
    "走访方式",
    "意见类别",
    "意见建议",
    "来源文件",
    "工作表",
    "行号",
)
OPINION_WIDTHS = (12, 12, 16, 10, 11, 10, 26, 10, 12, 60, 40, 12, 8)


def _opinions(conn: sa.Connection) -> list[sa.Row]:
    v, h, c, f = schema.visit, schema.household, schema.cadre, schema.intake_file
    return conn.execute(
        sa.select(
            v.c.visit_date,
            h.c.town,
            h.c.village,
            h.c.head_name,
            v.c.household_key,
            c.c.name.label("cadre_name"),
            c.c.unit,
            v.c.visit_kind,
            v.c.opinion_topic,
            v.c.opinions,
            v.c.opinion_department,
            f.c.file_name,
            v.c.sheet,
            v.c.row_number,
        )
        .select_from(
            v.join(f, f.c.file_id == v.c.file_id)
            .outerjoin(h, h.c.household_key == v.c.household_key)
            .outerjoin(c, c.c.cadre_key == v.c.cadre_key)
        )
        .where(v.c.opinions.is_not(None))
        .order_by(v.c.opinion_department, v.c.visit_date.desc(), h.c.town, v.c.household_key, v.c.visit_id)
    ).all()


def write_opinion_workbooks(eng: sa.Engine, settings: Settings, as_of: dt.date) -> list[Path]:
    """``<export_dir>/意见建议_<YYYYMMDD>/<department>.xlsx``: every opinion heard on a visit, for the
    department that can act on it, newest first; each line names its log file, sheet and row. No ID
    numbers; everything goes through the export writer (masked, defused, text cells)."""
    from rosterlink.export import workbooks as export

    with eng.connect() as conn:
        rows = _opinions(conn)
    by_dept: dict[str, list[sa.Row]] = defaultdict(list)
    for row in rows:
        by_dept[row.opinion_department or FollowupConfig.load().default_department].append(row)
    folder = Path(settings.export_dir) / f"意见建议_{export._date_tag(as_of)}"  # noqa: SLF001
    written = []
    for dept in sorted(by_dept):
        book = export._Book(stamp=export._midnight(as_of))  # noqa: SLF001
        sheet = book.sheet("意见建议", OPINION_WIDTHS, columns=OPINION_COLUMNS)
        for q in by_dept[dept]:
            sheet.row(
                (
                    q.visit_date,
                    q.town,
                    q.village,
                    q.head_name,
                    q.household_key,
                    q.cadre_name,
                    q.unit,
                    KIND_LABELS.get(q.visit_kind, q.visit_kind),
                    q.opinion_topic,
                    q.opinions,
                    q.file_name,
                    q.sheet,
                    q.row_number,
                ),
                wrap=(9,),
            )
        info = book.sheet("说明", (16, 70), freeze=False)
        for label, value in (
            ("责任部门", dept),
            ("截至", as_of),
            ("条数", len(by_dept[dept])),
            (
                "说明",
                "结对干部走访时收集的群众意见建议，请研究办理。每条可按来源文件、工作表、行号"
                "追溯到走访记录；不含身份证号。",
            ),
        ):
            info.append([info.cell(label, font=export.BOLD), info.cell(value)])
        safe = re.sub(r'[\\/:*?"<>|]', "_", dept)
        written.append(book.save(folder / f"{safe}.xlsx"))
    log.info("follow-through: %d opinions written to %d department workbooks", len(rows), len(written))
    return written


FOLLOWUP_COLUMNS = (
    "镇街",
    "结对家庭",
    "已入户走访",
    "未入户走访",
    "超期未走访",
    "从未联系",
    "最长未联系(天)",
    "入户走访次数",
    "电话联系次数",
    "发现问题",
    "解决问题",
    "帮扶金额(元)",
    "帮扶高于标准户",
    "帮扶低于标准户",
    "公款帮扶记录",
    "换人后延续",
)
WARN_COLUMNS = (
    "预警",
    "镇街",
    "村(居)",
    "户主姓名",
    "家庭编号",
    "结对干部",
    "工作单位",
    "首次走访期限",
    "最近联系",
    "本年帮扶金额(元)",
    "说明",
)


def followup_sheets(
    book: object, conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig | None = None
) -> None:
    """The pairing workbook's 走访帮扶 sheet (per town) and 走访预警 sheet (households and entries to act on)."""
    from rosterlink.export import workbooks as export

    cfg = cfg or FollowupConfig.load()
    towns = {r["town"]: r for r in by_view(conn, "followup_by_town")}
    sheet = book.sheet("走访帮扶", (12,) + (11,) * (len(FOLLOWUP_COLUMNS) - 1), columns=FOLLOWUP_COLUMNS)
    keys = (
        "households",
        "households",
        "not_visited_in_person",
        "overdue",
        "never_contacted",
        "max_days_since_contact",
        "in_person_visits",
        "phone_contacts",
        "problems_found",
        "problems_solved",
        "help_value",
        "help_above_band",
        "help_below_band",
        "public_fund_entries",
        "carried_over",
    )
    for town in export._town_order(list(towns)):  # noqa: SLF001
        r = towns[town]
        line = [r[k] for k in keys]
        line[1] = r["households"] - r["not_visited_in_person"]
        line[10] = round(float(line[10] or 0), 2)
        sheet.row(
            (town if town != "(unknown)" else export.UNKNOWN_TOWN_SHEET, *line),
            fill=export.RED if r["overdue"] or r["public_fund_entries"] else None,
        )
    warn = book.sheet("走访预警", (12, 12, 16, 10, 11, 10, 26, 13, 12, 14, 60), columns=WARN_COLUMNS)
    lines = warnings(conn, as_of, cfg)
    # help outside the band and public funds are listed in full; overdue households up to the cap
    # (a province where no visit log arrived yet has a million: the town sheets mark each of them)
    overdue_total = sum(1 for w in lines if w[0] == "超期未走访")
    overdue_shown = 0
    for w in lines:
        if w[0] == "超期未走访":
            if overdue_shown >= export.SHEET_LIST_MAX:
                continue
            overdue_shown += 1
        warn.row(w, fill=export.RED if w[0] in ("超期未走访", "公款帮扶") else export.YELLOW)
    if overdue_shown < overdue_total:
        warn.row(
            (
                f"超期未入户走访共{overdue_total}户，此表只列出前{overdue_shown}户（帮扶金额和资金来源的提示全部列出）；"
                "各镇街工作表的“走访情况”列逐户标出。",
            ),
            fill=export.YELLOW,
        )


def warnings(conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig) -> list[tuple]:
    """Lines to act on: overdue households, help outside the band, help recorded from public funds."""
    fh, h, c, v = schema.followup_household, schema.household, schema.cadre, schema.visit
    out = []
    for r in conn.execute(
        sa.select(fh, h.c.village, h.c.head_name, c.c.name.label("cadre_name"), c.c.unit)
        .select_from(
            fh.outerjoin(h, h.c.household_key == fh.c.household_key).outerjoin(
                c, c.c.cadre_key == fh.c.cadre_key
            )
        )
        .where(sa.or_(fh.c.overdue == 1, fh.c.help_flag.is_not(None)))
        .order_by(fh.c.town, fh.c.household_key)
    ):
        base = (
            r.town,
            r.village,
            r.head_name,
            r.household_key,
            r.cadre_name,
            r.unit,
            r.deadline,
            r.last_contact_on,
            r.help_value_year,
        )
        if r.overdue:
            note = (
                "尚未入户走访"
                + ("（仅电话联系）" if r.phone_contacts else "")
                + f"，已过{r.deadline:%Y年%m月%d日}期限"
            )
            out.append(("超期未走访", *base, note))
        if r.help_flag:
            band = f"标准为每户每年{cfg.help_min:g}至{cfg.help_max:g}元"
            out.append(
                (f"帮扶{FLAG_LABELS[r.help_flag]}", *base, f"本年帮扶合计{r.help_value_year:g}元，{band}")
            )
    for r in conn.execute(
        sa.select(
            v.c.visit_date,
            v.c.household_key,
            v.c.help_value,
            v.c.help_source,
            h.c.town,
            h.c.village,
            h.c.head_name,
            c.c.name.label("cadre_name"),
            c.c.unit,
        )
        .select_from(
            v.outerjoin(h, h.c.household_key == v.c.household_key).outerjoin(
                c, c.c.cadre_key == v.c.cadre_key
            )
        )
        .where(v.c.help_source_kind == "public")
        .order_by(h.c.town, v.c.household_key, v.c.visit_date)
    ):
        out.append(
            (
                "公款帮扶",
                r.town,
                r.village,
                r.head_name,
                r.household_key,
                r.cadre_name,
                r.unit,
                None,
                r.visit_date,
                r.help_value,
                f"{r.visit_date:%Y-%m-%d}的帮扶记录资金来源为“{r.help_source}”：帮扶应由干部个人出资，请核实",
            )
        )
    return out


def household_followup(conn: sa.Connection) -> dict[str, sa.Row]:
    """household_key -> its followup_household row (for the town sheets)."""
    fh = schema.followup_household
    return {r.household_key: r for r in conn.execute(sa.select(fh))}
