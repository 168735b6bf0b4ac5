"""The warehouse side of pairing: read the state, plan the ends, rebuild the pairs in one transaction.

:func:`rebuild` (the nightly task) reads statuses, current pairs, pins and merges, runs
:func:`~rosterlink.pairing.plan.plan_night` and :func:`~rosterlink.pairing.solve.solve`, ends and writes
pairs (history is never deleted) and returns the night's summary; :func:`plan_ends` is the plan's
ends alone, for the status stage's report.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pandas as pd
import sqlalchemy as sa

from rosterlink.core import plain
from rosterlink.ops import faults
from rosterlink.pairing import changed
from rosterlink.pairing.plan import MERGED, PINNED, UNPLACED_LISTED, NightPlan, plan_night
from rosterlink.pairing.solve import CASE, HOUSEHOLD, Assignment, PairingConfig, object_array, solve
from rosterlink.warehouse import builds, dumps, insert_many, schema


class PairingChecks(TypedDict):
    """The programme's rules counted on the pairs as written tonight (all 0 on a good night)."""

    households_without_cadre: int
    cases_without_leader: int
    targets_with_several_pairs: int
    pairs_on_inactive: int


class PairingSummary(PairingChecks):
    """What :func:`rebuild` did: the ``rebuild_pairings`` task's result."""

    as_of: str
    run_id: str
    ended: dict[str, int]  # pairs ended tonight, by reason
    made: dict[str, int]  # pairs made tonight, by reason
    kept: int
    unplaced: dict[str, list[str]]  # target keys left without a cadre (at most UNPLACED_LISTED a kind)
    unplaced_reasons: dict[str, int]
    unplaced_total: int
    carried_after_merge: int
    pins: dict[str, Any]
    same_town_share: float | None
    same_town_share_made: float | None
    household_load_spread: dict[str, dict[str, int]]
    case_load_spread: dict[str, dict[str, int]]
    cost: dict[str, Any]
    ended_total: NotRequired[int]
    made_total: NotRequired[int]
    seconds: NotRequired[float]
    settled_since: NotRequired[str]  # kept, not computed: nothing it reads changed since this night


log = logging.getLogger(__name__)


# --- warehouse side ----------------------------------------------------------------------------------
def _rows(conn: sa.Connection, query, columns: list[str]) -> pd.DataFrame:
    data = conn.execute(query).all()
    return (
        pd.DataFrame([tuple(r) for r in data], columns=columns, dtype=object)
        if data
        else pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    )


def _pins(conn: sa.Connection) -> pd.DataFrame:
    """The pin sheets, resolved to keys: the latest pin per target wins."""
    r, h, c, k = schema.source_record, schema.household, schema.cadre, schema.petition_case
    recs = conn.execute(
        sa.select(
            r.c.record_id, r.c.file_id, r.c.sheet, r.c.row_number, r.c.id_number, r.c.case_number, r.c.attrs
        )
        .where(sa.or_(r.c.roster == "pin", r.c.entity_kind == "pin"))
        .order_by(r.c.record_id)
    ).all()
    cols = ["pin_ref", "cadre_key", "target_kind", "target_key", "problem"]
    if not recs:
        return pd.DataFrame({col: pd.Series([], dtype=object) for col in cols})
    cadre_by_id = {i: key for key, i in conn.execute(sa.select(c.c.cadre_key, c.c.id_number)) if i}
    house_by_id: dict[str, str] = {}  # an ID number -> its active household first, then the lowest key
    for key, i, _ in conn.execute(
        sa.select(h.c.household_key, h.c.head_id_number, h.c.status).order_by(
            sa.case((h.c.status == "active", 0), else_=1), h.c.household_key
        )
    ):
        if i:
            house_by_id.setdefault(i, key)
    case_by_number = dict(conn.execute(sa.select(k.c.case_number, k.c.case_key)).all())
    out, latest = [], {}
    for rec in recs:
        try:
            attrs = json.loads(rec.attrs or "{}")
        except ValueError:
            attrs = {}
        ref = f"{rec.file_id}:{rec.sheet}:{rec.row_number}"
        cadre_id = rec.id_number or attrs.get("cadre_id_number")
        cadre_key = cadre_by_id.get(cadre_id) if cadre_id else None
        found = []
        if attrs.get("target_id_number"):
            found.append((HOUSEHOLD, house_by_id.get(attrs["target_id_number"])))
        case_no = attrs.get("target_case_number") or rec.case_number
        if case_no:
            found.append((CASE, case_by_number.get(case_no)))
        if not found:
            out.append(
                {
                    "pin_ref": ref,
                    "cadre_key": cadre_key,
                    "target_kind": None,
                    "target_key": None,
                    "problem": "no_target",
                }
            )
            continue
        for kind, key in found:
            problem = None if cadre_key else "cadre_not_found"
            if problem is None and key is None:
                problem = "target_not_found"
            row = {
                "pin_ref": ref,
                "cadre_key": cadre_key,
                "target_kind": kind,
                "target_key": key,
                "problem": problem,
            }
            if key is not None:
                latest[(kind, key)] = len(out)  # the department's latest word on a target wins
            out.append(row)
    keep = set(latest.values())
    rows = [row for i, row in enumerate(out) if row["target_key"] is None or i in keep]
    return pd.DataFrame(rows, columns=cols, dtype=object)


def _read_state(conn: sa.Connection) -> dict:
    h, c, k, p, m = (
        schema.household,
        schema.cadre,
        schema.petition_case,
        schema.pairing,
        schema.household_merge,
    )
    current = _rows(
        conn,
        sa.select(p.c.pairing_id, p.c.cadre_key, p.c.target_kind, p.c.target_key)
        .where(p.c.valid_to.is_(None))
        .order_by(p.c.pairing_id),
        ["pairing_id", "cadre_key", "target_kind", "target_key"],
    )
    # the latest ended pair of each target (by end date, then pairing id), chosen in the database:
    # one row per target, however many nights of history the table holds
    ranked = (
        sa.select(
            p.c.target_kind,
            p.c.target_key,
            p.c.cadre_key,
            p.c.end_reason,
            p.c.valid_to,
            p.c.pairing_id,
            sa.func.row_number()
            .over(
                partition_by=(p.c.target_kind, p.c.target_key),
                order_by=(p.c.valid_to.desc(), p.c.pairing_id.desc()),
            )
            .label("recency"),
        )
        .where(p.c.valid_to.is_not(None))
        .subquery()
    )
    history = _rows(
        conn,
        sa.select(ranked.c.target_kind, ranked.c.target_key, ranked.c.cadre_key, ranked.c.end_reason)
        .where(ranked.c.recency == 1)
        .order_by(ranked.c.valid_to, ranked.c.pairing_id),
        ["target_kind", "target_key", "cadre_key", "end_reason"],
    )
    return {
        "current": current,
        "households": _rows(
            conn,
            sa.select(h.c.household_key, h.c.town, h.c.status).order_by(h.c.household_key),
            ["household_key", "town", "status"],
        ),
        "cases": _rows(
            conn,
            sa.select(k.c.case_key, k.c.town, k.c.status).order_by(k.c.case_key),
            ["case_key", "town", "status"],
        ),
        "cadres": _rows(
            conn,
            sa.select(c.c.cadre_key, c.c.rank, c.c.unit, c.c.town, c.c.status).order_by(c.c.cadre_key),
            ["cadre_key", "rank", "unit", "town", "status"],
        ),
        "pins": _pins(conn),
        "history": history,
        "merges": _rows(
            conn,
            sa.select(m.c.retired_key, m.c.surviving_key).order_by(m.c.merge_id),
            ["retired_key", "surviving_key"],
        ),
    }


def _count(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def plan_ends(conn: sa.Connection, as_of: dt.date, config: PairingConfig | None = None) -> dict:
    """How many current pairs tonight's statuses WOULD end (by reason), without writing anything.

    The status stage calls this (inside its own transaction, after setting the statuses and before
    committing) to refuse a night that would end more than a configured share of the pairs.
    """
    case_rank = (config or PairingConfig()).case_rank
    counted = changed.ends_counted(conn, case_rank)
    if counted is not None:  # counted in the database: no pair is read into memory
        by_reason, total = counted
        return _ends(as_of, by_reason, total, sum(by_reason.values()))
    state = _read_state(conn)
    plan = plan_night(**state, case_rank=case_rank)
    by_reason = _count(plan.ends["end_reason"])
    total = plan.total_current
    # a merged household's pair that carries on with the survivor is not a pair the programme loses
    return _ends(as_of, by_reason, total, int(sum(by_reason.values())) - len(plan.carried))


def _ends(as_of: dt.date, by_reason: dict[str, int], total: int, ending: int) -> dict:
    """What :func:`plan_ends` reports: the pairs ending by reason, of how many current ones."""
    return {
        "as_of": as_of.isoformat(),
        "total_current": total,
        "ending": ending,
        "by_reason": by_reason,
        "share": (ending / total) if total else 0.0,
    }


def _lock(conn: sa.Connection) -> None:
    """Hold the write lock for the whole rebuild, so what we read is what we change."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE pairing IN SHARE ROW EXCLUSIVE MODE")
    else:  # SQLite: a (no-op) write opens the write transaction before the first read
        p = schema.pairing
        conn.execute(p.update().where(sa.false()).values(run_id=p.c.run_id))


def insert_pairs(conn: sa.Connection, rows: list[dict]) -> int:
    """Write new pairs (a seam the tests break to prove the rebuild is one transaction)."""
    return insert_many(conn, schema.pairing, rows)


def _end_pairs(conn: sa.Connection, ends: pd.DataFrame, as_of: dt.date) -> int:
    if not len(ends):
        return 0
    p = schema.pairing
    stmt = (
        p.update()
        .where(p.c.pairing_id == sa.bindparam("pid"), p.c.valid_to.is_(None))
        .values(valid_to=sa.bindparam("vto"), end_reason=sa.bindparam("why"))
    )
    params = [
        {"pid": int(pid), "vto": as_of, "why": why}
        for pid, why in zip(ends["pairing_id"], ends["end_reason"], strict=True)
    ]
    for i in range(0, len(params), 5000):
        conn.execute(stmt, params[i : i + 5000])
    return len(params)


def _pin_cost(plan: NightPlan, pinned: pd.DataFrame, state: dict, cfg: PairingConfig) -> list[dict]:
    """Cost components of a pinned pair, for the record (the optimiser did not choose it)."""
    towns = {
        **dict(
            zip(
                object_array(state["households"]["household_key"]),
                object_array(state["households"]["town"]),
                strict=True,
            )
        ),
        **{
            ("case", k): t
            for k, t in zip(
                object_array(state["cases"]["case_key"]), object_array(state["cases"]["town"]), strict=True
            )
        },
    }
    cad = plan.cadres.set_index("cadre_key")
    out = []
    for row in pinned.itertuples(index=False):
        town = towns.get(row.target_key if row.target_kind == HOUSEHOLD else ("case", row.target_key))
        ctown = cad["town"].get(row.cadre_key)
        t_cost = 0 if town is not None and town == ctown else cfg.town_penalty
        file_id, _, rest = str(row.pin_ref).partition(":")
        sheet, _, row_number = rest.rpartition(":")
        detail = {
            "town": t_cost,
            "rank": 0,
            "unit": 0,
            "load": 0,
            "pin": {
                "file_id": int(file_id) if file_id.isdigit() else file_id,
                "sheet": sheet,
                "row_number": int(row_number) if row_number.isdigit() else row_number,
            },
        }
        out.append({"cost": t_cost, "cost_detail": dumps(detail)})
    return out


def _carried_rows(plan: NightPlan, state: dict, cfg: PairingConfig) -> list[dict]:
    """Pairs carried from a merged household to its survivor, with their (town) cost for the record."""
    if not len(plan.carried):
        return []
    hh = state["households"]
    towns = dict(zip(object_array(hh["household_key"]), object_array(hh["town"]), strict=True))
    cadre_town = plan.cadres.set_index("cadre_key")["town"]
    rows = []
    for r in plan.carried.itertuples(index=False):
        town = towns.get(r.target_key)
        t_cost = 0 if town is not None and town == cadre_town.get(r.cadre_key) else cfg.town_penalty
        rows.append(
            {
                "cadre_key": r.cadre_key,
                "target_kind": r.target_kind,
                "target_key": r.target_key,
                "made_reason": MERGED,
                "cost": t_cost,
                "cost_detail": dumps(
                    {"town": t_cost, "rank": 0, "unit": 0, "load": 0, "merged_from": r.merged_from}
                ),
            }
        )
    return rows


def code_token(config: PairingConfig) -> str:
    """The pairing engine's code and settings: a new version, or other weights, solve again
    (:mod:`rosterlink.warehouse.builds`)."""
    return builds.code_digest(Path(__file__).parent.glob("*.py")) + repr(config)


def kept(eng: sa.Engine, as_of: dt.date, run_id: str, config: PairingConfig) -> PairingSummary | None:
    """Tonight's summary without rebuilding, when the pairs last settled (nothing ended, nothing
    made) on a night with the same inputs (:func:`rosterlink.warehouse.builds.kept`): the same
    statuses, entities and pairs would be planned and solved the same way and change nothing
    again. None: :func:`rebuild`."""
    summary = builds.kept(eng, "pairing", as_of, code_token(config))
    if summary is None:
        return None
    summary.update(as_of=as_of.isoformat(), run_id=run_id, seconds=0.0)
    return PairingSummary(**summary)  # type: ignore[typeddict-item]


def settle(
    eng: sa.Engine, as_of: dt.date, run_id: str, config: PairingConfig, summary: PairingSummary
) -> None:
    """After the rebuild: when it ended and made nothing, keep what it settled on, so the next
    night with the same inputs keeps it; else forget the last build."""
    settled = not summary.get("ended_total", 1) and not summary.get("made_total", 1)
    builds.settle(eng, "pairing", as_of, run_id, code_token(config), dict(summary) if settled else None)


def rebuild(
    eng: sa.Engine, as_of: dt.date, run_id: str, config: PairingConfig | None = None
) -> PairingSummary:
    """Tonight's pairs, in ONE transaction: end, keep, pin, solve for freed and new targets, write.

    That transaction is the swap: readers (dashboard, exports, ``current_pairing``) see last night's
    complete pairs until it commits and tonight's after, never a half-written set, and are not
    blocked (the lock taken is SHARE ROW EXCLUSIVE on PostgreSQL, which plain reads do not wait
    for); a rebuild that fails or is killed mid-write leaves last night's pairs. New pairs go in by
    COPY on PostgreSQL (:func:`warehouse.insert_many`).

    The plan is asked of the database (:func:`rosterlink.pairing.changed.plan`: the pairs that end,
    the targets that wait, the cadres' loads; the pairs kept are only counted), unless there are
    pins or a merged-away household, when the whole state is read (:func:`full_rebuild`). A
    settled night (nothing ends, nothing waits) keeps every pair and writes nothing.

    Returns a JSON-able summary: ended/made by reason, kept, unplaced keys, same-town share, load
    spread per rank, cases without a leader and households without a cadre (both should be 0).
    """
    cfg = config or PairingConfig()
    t0 = time.perf_counter()
    with eng.begin() as conn:
        _lock(conn)
        night = changed.plan(conn, cfg.case_rank)
        if night is None:
            summary, ended, written = full_rebuild(conn, as_of, run_id, cfg)
        else:
            if night.settled:
                log.info("pairing: nothing ends and nothing waits for a cadre: every pair is kept")
            summary, ended, written = changed_rebuild(conn, night, as_of, run_id, cfg)
    summary["ended_total"], summary["made_total"] = ended, written
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    log.info(
        "pairing: ended %s, made %s, kept %d, unplaced %d, cases without leader %d",
        plain.counts(summary["ended"]),
        plain.counts(summary["made"]),
        summary["kept"],
        summary["unplaced_total"],
        summary["cases_without_leader"],
    )
    return summary


def full_rebuild(
    conn: sa.Connection, as_of: dt.date, run_id: str, cfg: PairingConfig
) -> tuple[PairingSummary, int, int]:
    """The night's whole state read, planned, solved and written on ``conn``'s transaction; the
    summary, pairs ended, pairs made."""
    state = _read_state(conn)
    plan = plan_night(**state, case_rank=cfg.case_rank)
    result = solve(plan.targets[["target_kind", "target_key", "town", "preferred_unit"]], plan.cadres, cfg)
    rows = _solved_rows(plan, result)
    pin_costs = _pin_cost(plan, plan.pinned, state, cfg)
    for r, c in zip(plan.pinned.itertuples(index=False), pin_costs, strict=True):
        rows.append(
            {
                "cadre_key": r.cadre_key,
                "target_kind": r.target_kind,
                "target_key": r.target_key,
                "made_reason": PINNED,
                **c,
            }
        )
    rows += _carried_rows(plan, state, cfg)
    ended, written, checks = _write(conn, plan, rows, as_of, run_id)
    summary = _summary(
        plan, result, rows, len(plan.kept), _same_town(plan, rows, state), as_of, run_id, checks
    )
    return summary, ended, written


def changed_rebuild(
    conn: sa.Connection, night: changed.ChangedPlan, as_of: dt.date, run_id: str, cfg: PairingConfig
) -> tuple[PairingSummary, int, int]:
    """What :func:`full_rebuild` does and says, from the plan the database gave (no pins, no
    merged-away household: nothing pinned, nothing carried); the pairs kept are only counted."""
    plan = night.plan
    result = solve(plan.targets[["target_kind", "target_key", "town", "preferred_unit"]], plan.cadres, cfg)
    rows = _solved_rows(plan, result)
    ended, written, checks = _write(conn, plan, rows, as_of, run_id)
    # the same-town share over the kept household pairs and tonight's new ones
    towns = dict(
        zip(object_array(plan.targets["target_key"]), object_array(plan.targets["town"]), strict=True)
    )
    cadre_towns = dict(
        zip(object_array(plan.cadres["cadre_key"]), object_array(plan.cadres["town"]), strict=True)
    )
    new = [(r["cadre_key"], r["target_key"]) for r in rows if r["target_kind"] == HOUSEHOLD]
    same = night.kept_same_town + sum(
        1 for c, t in new if towns.get(t) is not None and towns.get(t) == cadre_towns.get(c)
    )
    n = night.kept_households + len(new)
    summary = _summary(plan, result, rows, night.kept, (same / n) if n else None, as_of, run_id, checks)
    return summary, ended, written


_SOLVED_COLUMNS = (
    "cadre_key",
    "target_kind",
    "target_key",
    "made_reason",
    "cost",
    "cost_town",
    "cost_rank",
    "cost_unit",
    "cost_load",
)


def _solved_rows(plan: NightPlan, result: Assignment) -> list[dict]:
    """The pairs the solver made, as rows to write."""
    made = result.pairs.merge(
        plan.targets[["target_kind", "target_key", "made_reason"]],
        on=["target_kind", "target_key"],
        how="left",
    )
    # a column at a time (a row at a time, pandas iterates its Arrow-backed strings one by one)
    columns = [made[name].tolist() for name in _SOLVED_COLUMNS]
    return [
        {
            "cadre_key": cadre_key,
            "target_kind": target_kind,
            "target_key": target_key,
            "made_reason": made_reason,
            "cost": int(cost),
            "cost_detail": dumps(
                {"town": int(town), "rank": int(rank), "unit": int(unit), "load": int(load)}
            ),
        }
        for cadre_key, target_kind, target_key, made_reason, cost, town, rank, unit, load in zip(
            *columns, strict=True
        )
    ]


def _write(
    conn: sa.Connection, plan: NightPlan, rows: list[dict], as_of: dt.date, run_id: str
) -> tuple[int, int, PairingChecks]:
    """End tonight's ends, write the new pairs (in a stable order), check the programme's rules."""
    rows.sort(key=lambda x: (x["target_kind"], x["target_key"]))
    for row in rows:
        row.update(valid_from=as_of, valid_to=None, end_reason=None, run_id=run_id)
    ended = _end_pairs(conn, plan.ends, as_of)
    written = insert_pairs(conn, rows)
    faults.point("pairing.mid")
    return ended, written, _checked(conn)


def _checked(conn: sa.Connection) -> PairingChecks:
    """The programme's rules on what is now written; a state that breaks them is never committed."""
    checks = count_checks(conn)
    broken = {
        k: v for k, v in checks.items() if k in ("pairs_on_inactive", "targets_with_several_pairs") and v
    }
    if broken:  # never commit a state that breaks the programme's rules: roll the night back
        raise RuntimeError(f"pairing rebuild would leave {broken}; rolled back")
    return checks


def count_checks(conn: sa.Connection) -> PairingChecks:
    """The programme's rules, counted on what is now written (same transaction)."""
    h, k, c, p = schema.household, schema.petition_case, schema.cadre, schema.pairing

    def paired(kind: str, key: sa.ColumnElement) -> sa.Exists:
        # EXISTS, not NOT IN (subquery): PostgreSQL plans NOT IN as a subplan per row once the
        # current pairs no longer fit in work_mem, a province's million pairs for each of its
        # million households; NOT EXISTS is an anti-join (the same answer: keys are never null)
        return sa.exists().where(p.c.valid_to.is_(None), p.c.target_kind == kind, p.c.target_key == key)

    def n(q) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar() or 0)

    return {
        "households_without_cadre": n(
            sa.select(h.c.household_key).where(h.c.status == "active", ~paired(HOUSEHOLD, h.c.household_key))
        ),
        "cases_without_leader": n(
            sa.select(k.c.case_key).where(k.c.status == "open", ~paired(CASE, k.c.case_key))
        ),
        "targets_with_several_pairs": n(
            sa.select(p.c.target_kind, p.c.target_key)
            .where(p.c.valid_to.is_(None))
            .group_by(p.c.target_kind, p.c.target_key)
            .having(sa.func.count() > 1)
        ),
        "pairs_on_inactive": n(
            sa.select(p.c.pairing_id)
            .select_from(
                p.outerjoin(c, c.c.cadre_key == p.c.cadre_key)
                .outerjoin(h, sa.and_(p.c.target_kind == HOUSEHOLD, h.c.household_key == p.c.target_key))
                .outerjoin(k, sa.and_(p.c.target_kind == CASE, k.c.case_key == p.c.target_key))
            )
            .where(
                p.c.valid_to.is_(None),
                sa.or_(
                    sa.func.coalesce(c.c.status, "") != "active",
                    sa.and_(p.c.target_kind == HOUSEHOLD, sa.func.coalesce(h.c.status, "") != "active"),
                    sa.and_(p.c.target_kind == CASE, sa.func.coalesce(k.c.status, "") != "open"),
                ),
            )
        ),
    }


def _same_town(plan: NightPlan, rows: list[dict], state: dict) -> float | None:
    """The share of all current household pairs after tonight whose cadre's town is the household's."""
    hh_town = dict(
        zip(
            object_array(state["households"]["household_key"]),
            object_array(state["households"]["town"]),
            strict=True,
        )
    )
    cad_town = dict(
        zip(object_array(state["cadres"]["cadre_key"]), object_array(state["cadres"]["town"]), strict=True)
    )
    current = [
        (r.cadre_key, r.target_key) for r in plan.kept.itertuples(index=False) if r.target_kind == HOUSEHOLD
    ]
    current += [(r["cadre_key"], r["target_key"]) for r in rows if r["target_kind"] == HOUSEHOLD]
    same = [hh_town.get(t) is not None and hh_town.get(t) == cad_town.get(c) for c, t in current]
    return (sum(same) / len(same)) if same else None


def _summary(
    plan: NightPlan,
    result: Assignment,
    rows: list[dict],
    kept: int,
    same_town: float | None,
    as_of: dt.date,
    run_id: str,
    checks: PairingChecks,
) -> PairingSummary:
    made = pd.Series([r["made_reason"] for r in rows], dtype=object)
    left_out = result.unplaced
    unplaced = {
        kind: sorted(left_out.loc[left_out["target_kind"] == kind, "target_key"])[:UNPLACED_LISTED]
        for kind in (HOUSEHOLD, CASE)
    }
    f = result.figures
    return {
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "ended": _count(plan.ends["end_reason"]),
        "made": _count(made),
        "kept": kept,
        "unplaced": unplaced,
        "unplaced_reasons": _count(result.unplaced["reason"]),
        "unplaced_total": len(result.unplaced),
        "carried_after_merge": len(plan.carried),
        "pins": {
            "applied": len(plan.pinned),
            "holding": plan.pins_holding,
            "problems": _count(plan.pin_problems["reason"]),
            "problem_rows": plan.pin_problems["pin_ref"].tolist()[:200],
        },
        "same_town_share": same_town,
        "same_town_share_made": f["same_town_share_households"],
        "household_load_spread": f["household_load_spread"],
        "case_load_spread": f["case_load_spread"],
        "cost": {"total": f["total_cost"], "lower_bound": f["lower_bound"], "optimal": f["optimal"]},
        **checks,
    }
