"""The night's pairing plan, pure (DataFrames in, DataFrames out): what ends, what stays, what to solve.

:func:`plan_night` applies the dynamic-management rules (a departed cadre, an exited household, a
closed case, a merged household, a pin) to the current pairs and lists the targets :func:`solve
<rosterlink.pairing.solve.solve>` must assign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rosterlink.pairing.solve import CASE, HOUSEHOLD, key_index, object_array

# made_reason
NEW_TARGET, CADRE_LEFT, PINNED, MERGED = "new_target", "cadre_left", "pinned", "merged"
# end_reason
CADRE_DEPARTED, HOUSEHOLD_EXITED, CASE_CLOSED = "cadre_departed", "household_exited", "case_closed"
HOUSEHOLD_MERGED = "household_merged"  # the link stage found it to be another household
TARGET_MISSING, LEADER_NOT_COUNTY, PIN_CHANGED, SUPERSEDED = (
    "target_missing",
    "leader_not_county",
    "pin_changed",
    "superseded",
)
UNPLACED_LISTED = 1000  # keys listed in the summary per kind (the count is always complete)
# an ended pair whose target is still active and whose next cadre should come from the same unit
_CONTINUITY_ENDS = (CADRE_DEPARTED, LEADER_NOT_COUNTY)


# --- the night's plan: ends, keeps, pins, targets to solve (pure, on DataFrames) --------------------
@dataclass
class NightPlan:
    ends: pd.DataFrame  # pairing_id, cadre_key, target_kind, target_key, end_reason
    kept: pd.DataFrame  # pairing_id, cadre_key, target_kind, target_key (left untouched)
    pinned: pd.DataFrame  # cadre_key, target_kind, target_key, pin_ref (new pinned pairs)
    carried: pd.DataFrame  # cadre_key, target_kind, target_key, merged_from (a merged household's cadre)
    pins_holding: int  # valid pins already current
    pin_problems: pd.DataFrame  # pin_ref, reason
    targets: pd.DataFrame  # target_kind, target_key, town, preferred_unit, made_reason
    cadres: pd.DataFrame  # active cadres: cadre_key, rank, unit, town, household_load, case_load
    total_current: int


def _survivors(retired: np.ndarray, surviving: np.ndarray) -> dict[str, str]:
    """retired key -> the household it lives on in now (merges of merges followed to the end)."""
    step = dict(zip(retired, surviving, strict=True))
    out = {}
    for key in step:
        seen, target = {key}, step[key]
        while target in step and target not in seen:
            seen.add(target)
            target = step[target]
        out[key] = target
    return out


def _frame(df: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    return df


def plan_night(
    current: pd.DataFrame,
    households: pd.DataFrame,
    cases: pd.DataFrame,
    cadres: pd.DataFrame,
    pins: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    case_rank: str = "county",
    merges: pd.DataFrame | None = None,
) -> NightPlan:
    """Decide what ends, what stays and what must be solved, from statuses alone.

    ``current``: pairing_id, cadre_key, target_kind, target_key (pairs with valid_to IS NULL).
    ``households``: household_key, town, status; ``cases``: case_key, town, status;
    ``cadres``: cadre_key, rank, unit, town, status (departed ones too: their unit is remembered).
    ``pins``: pin_ref, cadre_key, target_kind, target_key, problem (None when resolved); one per target.
    ``history``: the latest ENDED pair per target: target_kind, target_key, cadre_key, end_reason.
    ``merges``: retired_key, surviving_key (``household_merge``): a pair of a retired household ends
    ``household_merged`` and its cadre carries on with the surviving household when that one has
    no pair of its own (friendships are not reshuffled by a deduplication).
    """
    cur = _frame(current, ["pairing_id", "cadre_key", "target_kind", "target_key"])
    cur = (
        cur[["pairing_id", "cadre_key", "target_kind", "target_key"]]
        .sort_values("pairing_id", kind="mergesort")
        .reset_index(drop=True)
    )
    hh = _frame(households, ["household_key", "town", "status"])
    cs = _frame(cases, ["case_key", "town", "status"])
    cad = _frame(cadres, ["cadre_key", "rank", "unit", "town", "status"])
    hh_status = pd.Series(
        object_array(hh["status"]), index=key_index(object_array(hh["household_key"])), dtype=object
    )
    case_status = pd.Series(
        object_array(cs["status"]), index=key_index(object_array(cs["case_key"])), dtype=object
    )
    cad_status = pd.Series(
        object_array(cad["status"]), index=key_index(object_array(cad["cadre_key"])), dtype=object
    )
    cad_rank = pd.Series(
        object_array(cad["rank"]), index=key_index(object_array(cad["cadre_key"])), dtype=object
    )
    cad_unit = pd.Series(
        object_array(cad["unit"]), index=key_index(object_array(cad["cadre_key"])), dtype=object
    )

    kind = object_array(cur["target_kind"])
    key = object_array(cur["target_key"])
    ck = object_array(cur["cadre_key"])
    is_h, is_c = kind == HOUSEHOLD, kind == CASE
    t_status = np.full(len(cur), None, dtype=object)
    t_status[is_h] = hh_status.reindex(key[is_h]).to_numpy(object)
    t_status[is_c] = case_status.reindex(key[is_c]).to_numpy(object)
    c_status = cad_status.reindex(ck).to_numpy(object)
    c_rank = cad_rank.reindex(ck).to_numpy(object)
    reason = np.full(len(cur), None, dtype=object)
    # the order mirrors the status stage: a departed cadre first, then the target
    mg = _frame(merges, ["retired_key", "surviving_key"])
    survivor_of = _survivors(object_array(mg["retired_key"]), object_array(mg["surviving_key"]))
    was_merged = is_h & pd.isna(t_status) & np.isin(key, np.array(list(survivor_of), dtype=object))
    conds = [
        (c_status != "active", CADRE_DEPARTED),
        (was_merged, HOUSEHOLD_MERGED),
        (pd.isna(t_status) & (is_h | is_c), TARGET_MISSING),
        (~(is_h | is_c), TARGET_MISSING),
        (is_h & (t_status != "active"), HOUSEHOLD_EXITED),
        (is_c & (t_status != "open"), CASE_CLOSED),
        (is_c & (c_rank != case_rank), LEADER_NOT_COUNTY),
    ]
    for cond, why in conds:
        reason = np.where((reason == None) & cond, why, reason)  # noqa: E711 - elementwise
    cur = cur.assign(end_reason=reason)
    alive = cur[cur["end_reason"].isna()]
    dup = alive.duplicated(["target_kind", "target_key"], keep="first")
    cur.loc[alive.index[dup.to_numpy()], "end_reason"] = SUPERSEDED
    survivors = cur[cur["end_reason"].isna()]

    # pins: applied while both sides are active; otherwise reported
    pin_cols = ["pin_ref", "cadre_key", "target_kind", "target_key", "problem"]
    pn = _frame(pins, pin_cols)[pin_cols].copy()
    problems = []
    new_pins = pd.DataFrame(columns=["cadre_key", "target_kind", "target_key", "pin_ref"])
    holding = 0
    if len(pn):
        p_kind, p_key, p_cad = (
            object_array(pn["target_kind"]),
            object_array(pn["target_key"]),
            object_array(pn["cadre_key"]),
        )
        prob = object_array(pn["problem"]).copy()
        p_ts = np.full(len(pn), None, dtype=object)
        ph, pc = p_kind == HOUSEHOLD, p_kind == CASE
        p_ts[ph] = hh_status.reindex(p_key[ph]).to_numpy(object)
        p_ts[pc] = case_status.reindex(p_key[pc]).to_numpy(object)
        p_cs = cad_status.reindex(p_cad).to_numpy(object)
        p_cr = cad_rank.reindex(p_cad).to_numpy(object)
        for cond, why in (
            (pd.isna(p_cs), "cadre_not_found"),
            (p_cs != "active", "cadre_inactive"),
            (pd.isna(p_ts), "target_not_found"),
            (ph & (p_ts != "active"), "target_inactive"),
            (pc & (p_ts != "open"), "target_inactive"),
            (pc & (p_cr != case_rank), "leader_not_county"),
        ):
            prob = np.where(pd.isna(prob) & cond, why, prob)
        pn["problem"] = prob
        for ref, why in zip(object_array(pn["pin_ref"])[~pd.isna(prob)], prob[~pd.isna(prob)], strict=True):
            problems.append({"pin_ref": ref, "reason": why})
        good = pn[pd.isna(prob)].drop_duplicates(["target_kind", "target_key"], keep="last")
        merged = good.merge(
            survivors[["pairing_id", "cadre_key", "target_kind", "target_key"]],
            on=["target_kind", "target_key"],
            how="left",
            suffixes=("", "_now"),
        )
        same = merged["cadre_key_now"].to_numpy(object) == merged["cadre_key"].to_numpy(object)
        holding = int(same.sum())
        changed = merged[~same & merged["pairing_id"].notna()]
        cur.loc[cur["pairing_id"].isin(changed["pairing_id"]), "end_reason"] = PIN_CHANGED
        new_pins = merged[~same][["cadre_key", "target_kind", "target_key", "pin_ref"]].reset_index(drop=True)
        survivors = cur[cur["end_reason"].isna()]

    ends = cur[cur["end_reason"].notna()].reset_index(drop=True)
    kept = survivors[["pairing_id", "cadre_key", "target_kind", "target_key"]].reset_index(drop=True)

    # a merged household's cadre carries on with the survivor, if it is active and has no pair yet
    carry = ends[ends["end_reason"] == HOUSEHOLD_MERGED]
    taken_h = set(object_array(kept.loc[kept["target_kind"] == HOUSEHOLD, "target_key"])) | set(
        object_array(new_pins.loc[new_pins["target_kind"] == HOUSEHOLD, "target_key"])
    )
    carried_rows = []
    for r in carry.itertuples(index=False):
        target = survivor_of[r.target_key]
        if (
            hh_status.get(target) == "active"
            and cad_status.get(r.cadre_key) == "active"
            and target not in taken_h
        ):
            taken_h.add(target)
            carried_rows.append(
                {
                    "cadre_key": r.cadre_key,
                    "target_kind": HOUSEHOLD,
                    "target_key": target,
                    "merged_from": r.target_key,
                }
            )
    carried = pd.DataFrame(
        carried_rows, columns=["cadre_key", "target_kind", "target_key", "merged_from"], dtype=object
    )

    # targets to solve: active and neither kept nor pinned (one kind at a time: plain key indexes)
    hist = _frame(history, ["target_kind", "target_key", "cadre_key", "end_reason"])
    # continuity: the latest ended pair (tonight's ends count as the latest) tells if its cadre left
    last = pd.concat(
        [
            hist[["target_kind", "target_key", "cadre_key", "end_reason"]],
            ends[["target_kind", "target_key", "cadre_key", "end_reason"]],
        ],
        ignore_index=True,
    )
    last = last.drop_duplicates(["target_kind", "target_key"], keep="last")
    last = last[last["end_reason"].isin(_CONTINUITY_ENDS)]
    parts = []
    for kind_name, frame_, key_col, active_status in (
        (CASE, cs, "case_key", "open"),
        (HOUSEHOLD, hh, "household_key", "active"),
    ):
        act_t = frame_[object_array(frame_["status"]) == active_status]
        keys = object_array(act_t[key_col])
        taken = np.concatenate(
            [
                object_array(kept.loc[kept["target_kind"] == kind_name, "target_key"]),
                object_array(new_pins.loc[new_pins["target_kind"] == kind_name, "target_key"]),
                object_array(carried.loc[carried["target_kind"] == kind_name, "target_key"]),
            ]
        )
        free = ~key_index(keys).isin(key_index(taken)) if len(taken) else np.ones(len(keys), dtype=bool)
        keys, towns = keys[free], object_array(act_t["town"])[free]
        lk = last[last["target_kind"] == kind_name]
        left_cadre = (
            pd.Series(
                object_array(lk["cadre_key"]), index=key_index(object_array(lk["target_key"])), dtype=object
            )
            .reindex(keys)
            .to_numpy(object)
        )
        left = ~pd.isna(left_cadre)
        pref = np.full(len(keys), None, dtype=object)
        pref[left] = cad_unit.reindex(left_cadre[left]).to_numpy(object)
        order = np.argsort(keys.astype(str), kind="stable") if len(keys) else np.zeros(0, dtype=np.int64)
        parts.append(
            pd.DataFrame(
                {
                    "target_kind": np.full(len(keys), kind_name, dtype=object),
                    "target_key": keys[order],
                    "town": towns[order],
                    "preferred_unit": pref[order],
                    "made_reason": np.where(left, CADRE_LEFT, NEW_TARGET).astype(object)[order],
                }
            )
        )
    todo = pd.concat(parts, ignore_index=True)

    # active cadres with the loads of what they keep
    act = cad[object_array(cad["status"]) == "active"]
    holds = pd.concat(
        [
            kept[["cadre_key", "target_kind"]],
            new_pins[["cadre_key", "target_kind"]],
            carried[["cadre_key", "target_kind"]],
        ]
    )
    counts = holds.groupby(["cadre_key", "target_kind"]).size().unstack(fill_value=0) if len(holds) else None
    ak = object_array(act["cadre_key"])

    def load(kind_name: str) -> np.ndarray:
        if counts is None or kind_name not in counts.columns:
            return np.zeros(len(act), dtype=np.int64)
        return counts[kind_name].reindex(ak).fillna(0).to_numpy(np.int64)

    cad_out = pd.DataFrame(
        {
            "cadre_key": ak,
            "rank": object_array(act["rank"]),
            "unit": object_array(act["unit"]),
            "town": object_array(act["town"]),
            "household_load": load(HOUSEHOLD),
            "case_load": load(CASE),
        }
    ).sort_values("cadre_key", kind="mergesort")
    return NightPlan(
        ends=ends[["pairing_id", "cadre_key", "target_kind", "target_key", "end_reason"]],
        kept=kept,
        pinned=new_pins,
        carried=carried,
        pins_holding=holding,
        pin_problems=pd.DataFrame(problems, columns=["pin_ref", "reason"]),
        targets=todo,
        cadres=cad_out.reset_index(drop=True),
        total_current=len(cur),
    )
