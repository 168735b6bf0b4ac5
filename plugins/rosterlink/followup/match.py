"""Follow-through of the pairs (走访帮扶): visit logs matched to the pairs they report on.

Units drop visit and help logs (走访记录, roster ``visit``, folder ``visits/``); they are read,
normalised, validated (``expectations/visit.json``) and loaded like every roster. After the pairs
are rebuilt, :func:`match` ties each loaded log row to the pair it reports on:

- the cadre by the ID number (``cadre_id_number``); the household among the households that cadre
  is or was paired with, by the head's ID number, or by the head's name when no ID is given;
- the pair must be in force on the visit date (``valid_from <= visit_date``, and not ended before
  it): otherwise the row is rejected (``visit_before_pair`` / ``visit_after_pair``);
- the same cadre, household, date and kind (in person / phone) counts once: a repeat, in the same
  file or a later one, is rejected as ``visit_duplicate`` naming the first one;
- a changed row of a re-sent log (``source_record.resent``: the unit corrected the row at this
  place of an earlier version of the same file) replaces the visit that place gave before: the
  earlier visit and its record give way to the corrected one (the earlier file's ledger keeps its
  counts: it was loaded that night). Rows identical to what was loaded never reach this stage
  (the load stage counts them as already recorded).

A rejected row goes to ``rejected_row`` with a Chinese message (so the clerk's feedback workbook
lists it), leaves ``source_record`` and moves from the file's loaded to its rejected count, so the
file still balances (``file_reconciliation``). A matched row becomes a ``visit`` row.

Then, in the same transaction, :func:`rosterlink.followup.figures.refresh_followup` brings the
night's figures (``followup_household``) up to date: it computes again the households whose row
can have changed (told which households tonight's visits touched) and moves every other row to the
night; it rebuilds them all when it cannot tell (:func:`~rosterlink.followup.figures.rebuild_followup`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TypedDict

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.masking import mask_text
from rosterlink.core.spec import catalogue, header_key
from rosterlink.followup.config import FollowupConfig, count_items
from rosterlink.followup.figures import refresh_followup, surviving_keys
from rosterlink.warehouse import now, schema
from rosterlink.warehouse.load import ledger_message

log = logging.getLogger(__name__)


class MatchSummary(TypedDict):
    """What :func:`match` did: rows matched, rows rejected by reason code, households followed, and
    how many households' figures were added, removed or changed in anything but the night's date
    (``figures_changed``: 0 with ``rows_matched`` 0 means the follow-through shows what it showed
    the night before, but for ``as_of`` and ``days_since_contact``)."""

    rows_matched: int
    rows_rejected: dict[str, int]
    households: int
    figures_changed: int


@dataclass(frozen=True)
class _Pair:
    pairing_id: int
    cadre_key: str
    household_key: str  # resolved through merges
    valid_from: dt.date
    valid_to: dt.date | None


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
) -> MatchSummary:
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
    touched: set[str] = set()  # households whose visits tonight added, removed or moved
    removed = 0
    with eng.begin() as conn:
        surviving = surviving_keys(conn)
        # visits follow their household through merges
        for retired, key in surviving.items():
            moved = conn.execute(v.update().where(v.c.household_key == retired).values(household_key=key))
            if moved.rowcount:
                touched.update((retired, key))
        pending = conn.execute(
            sa.select(
                r.c.record_id,
                r.c.file_id,
                r.c.sheet,
                r.c.row_number,
                r.c.person_name,
                r.c.id_number,
                r.c.attrs,
                r.c.resent,
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
                if rec.resent:
                    gone = _supersede(conn, rec, seen)
                    touched.update(gone)
                    removed += len(gone)
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
                touched.add(found["household_key"])
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
                conn.execute(
                    f.update().where(f.c.file_id == file_id).values(message=ledger_message(conn, file_id))
                )
        matched = outcome.pop("matched", 0)
        figures = refresh_followup(conn, as_of, cfg, touched, matched - removed)
    summary: MatchSummary = {
        "rows_matched": matched,
        "rows_rejected": dict(sorted(outcome.items())),
        "households": figures.households,
        "figures_changed": figures.changed,
    }
    log.info(
        "follow-through: %d visit rows matched, %d rejected, %d households followed, "
        "figures changed for %d (%s)",
        summary["rows_matched"],
        sum(summary["rows_rejected"].values()),
        figures.households,
        figures.changed,
        "rebuilt in full" if figures.full else "computed again where they could change",
    )
    return summary


def _supersede(conn: sa.Connection, rec: sa.Row, seen: dict[tuple, str]) -> list[str]:
    """A changed row of a re-sent log: the visit the same place of an earlier version of the file
    (same department and file name, same sheet and row) gave gives way, with its record. Returns
    the households of the visits removed (one per visit)."""
    r, v, f = schema.source_record, schema.visit, schema.intake_file
    this = f.alias("this")
    earlier = conn.execute(
        sa.select(
            v.c.visit_id,
            v.c.record_id,
            v.c.cadre_key,
            v.c.household_key,
            v.c.visit_date,
            v.c.visit_kind,
            f.c.file_name,
        )
        .select_from(v.join(f, f.c.file_id == v.c.file_id))
        .join(this, sa.and_(this.c.department == f.c.department, this.c.file_name == f.c.file_name))
        .where(
            this.c.file_id == rec.file_id,
            f.c.file_id < rec.file_id,
            v.c.sheet == rec.sheet,
            v.c.row_number == rec.row_number,
        )
    ).all()
    for old in earlier:
        conn.execute(v.delete().where(v.c.visit_id == old.visit_id))
        conn.execute(r.delete().where(r.c.record_id == old.record_id))
        key = (old.cadre_key, old.household_key, old.visit_date, old.visit_kind)
        if seen.get(key) == _where(old.file_name, rec.sheet, rec.row_number):
            del seen[key]
    return [old.household_key for old in earlier]


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
    if day is None:  # the visit roster's suite requires a date: a row without one is never loaded
        raise ValueError(f"visit row without a date: file_id={rec.file_id} row {rec.row_number}")
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
