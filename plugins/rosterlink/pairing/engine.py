"""Pairing: every active household gets one cadre, every open key case one county-level leader.

The nightly rebuild (:func:`rebuild`) runs in ONE transaction:

1. **Ends** (dynamic management): a current pair whose cadre departed, whose household exited or
   whose case closed ends with ``valid_to = as_of`` and an ``end_reason``. A case whose leader is no
   longer county-level also ends (``leader_not_county``); a household pair survives a rank change.
2. **Keeps** (stability): every other current pair is left exactly as it is (same ``pairing_id``,
   no update); the optimiser never reshuffles a working pair to improve the optimum.
3. **Pins**: a pairing fixed by the organization department (``source_record`` roster ``pin``) is
   applied while both sides are active (``made_reason='pinned'``); a pin that cannot be applied is
   reported, never fatal.
4. **Solve** (:func:`solve`, pure, no database): only the freed targets (``cadre_left``: their cadre
   departed; the departed cadre's unit is preferred) and the new ones (``new_target``) are assigned,
   as a min-cost flow (OR-Tools ``SimpleMinCostFlow``), cases first (county cadres only), then
   households.
5. **Writes** the new pairs with their cost and cost components; history is never deleted.

Cost model (integers, :class:`PairingConfig`)::

    cost(target -> cadre) = town  : 0 if the cadre's linked town is the target's town, else town_penalty
                          + unit  : -unit_bonus if the cadre is in the departed cadre's unit (continuity)
                          + rank  : rank_household_penalty[rank] + case_household_penalty * cases led
                          + load  : load_step * (k - 1) for the cadre's k-th household (convex)

The load term sits on the cadre -> sink arcs, one arc per extra unit, so the k-th unit costs more
than the (k-1)-th: loads balance. With ``load_step`` larger than ``town_penalty + unit_bonus`` plus the
widest rank-penalty difference (the defaults: 100 > 40 + 20 + 30), loads end within one of each other
whenever capacities allow; locality, continuity and rank only decide among equally loaded cadres.

The flow graph is sparse but exact: target nodes (supply 1 each) reach their town's node (cost 0),
which feeds the town's cadres; a town node also feeds one "other towns" node (cost town_penalty) that
feeds every cadre, and freed targets additionally reach a (unit, town) node (cost -unit_bonus) and a
unit node (cost town_penalty - unit_bonus). A target thus reaches every eligible cadre at exactly its
cost with O(targets + cadres) arcs instead of targets x cadres, so the optimum over ALL cadres is found
(no K-candidate cut-off that could lose it), and 1,000,000 households x 100,000 cadres stays a few
million arcs. Flows through the shared nodes are split back into pairs deterministically (targets
in key order meet cadres in key order); within a shared node every split costs the same.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import sqlalchemy as sa

from rosterlink.ops import faults
from rosterlink.warehouse import dumps, insert_many, schema

log = logging.getLogger(__name__)

HOUSEHOLD, CASE = "household", "case"
RANKS = ("county", "section", "ordinary")

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


# --- configuration ---------------------------------------------------------------------------------
def _default_max_households() -> dict[str, int]:
    return {"county": 3, "section": 5, "ordinary": 5}


@dataclass(frozen=True)
class PairingConfig:
    """Weights and limits of the nightly assignment (all integers; costs are in the same unit)."""

    town_penalty: int = 40  # the cadre's linked town is not the target's town
    unit_bonus: int = 20  # subtracted when a freed target gets a cadre of its departed cadre's unit
    load_step: int = 100  # the k-th household on a cadre costs load_step * (k - 1)
    case_household_penalty: int = 15  # per household, per case the cadre leads
    rank_household_penalty: Mapping[str, int] = field(default_factory=dict, hash=False)
    max_households: Mapping[str, int] = field(default_factory=_default_max_households, hash=False)
    default_max_households: int = 5  # rank missing or not in max_households
    case_rank: str = "county"  # who may lead a key petition case
    max_cases: int = 2  # cases per county-level cadre
    case_load_step: int = 100  # the k-th case on a cadre costs case_load_step * (k - 1)
    allow_other_town: bool = True  # False: only cadres of the target's own town

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or f.name == "case_rank":
                continue
            if isinstance(value, Mapping):
                if any(not isinstance(v, int) or v < 0 for v in value.values()):
                    raise ValueError(f"PairingConfig.{f.name}: values must be non-negative integers")
            elif not isinstance(value, int) or value < 0:
                raise ValueError(f"PairingConfig.{f.name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> PairingConfig:
        """From JSON-like settings; unknown keys are an error (a typo must not be ignored)."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pairing settings: {unknown}")
        return cls(**values)

    def household_cap(self, rank: object) -> int:
        return (
            int(self.max_households.get(rank, self.default_max_households))
            if isinstance(rank, str)
            else int(self.default_max_households)
        )

    def as_dict(self) -> dict:
        return {
            f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)
        }


# --- the optimiser ---------------------------------------------------------------------------------
@dataclass
class Assignment:
    """What :func:`solve` found.

    ``pairs``: cadre_key, target_kind, target_key, cost, cost_town, cost_rank, cost_unit, cost_load,
    same_town, load_level (the cadre's k-th household or case), sorted by target_kind, target_key.
    ``unplaced``: target_kind, target_key, reason (``no_cadre_in_reach`` | ``no_capacity``).
    ``loads``: cadre_key, rank, household_load, case_load after the assignment (kept + new).
    ``figures``: total_cost, lower_bound, optimal, same_town_share, load spreads, sizes, seconds.
    ``optimal`` is the solver's status over the COMPLETE candidate set (every eligible cadre at its
    exact cost), so total_cost is the optimum of the dense problem; ``lower_bound`` is a
    solver-independent check (each target's cheapest arc plus the cheapest load units, summed
    separately), loose when towns are staffed unevenly.
    """

    pairs: pd.DataFrame
    unplaced: pd.DataFrame
    loads: pd.DataFrame
    figures: dict


PAIR_COLUMNS = [
    "cadre_key",
    "target_kind",
    "target_key",
    "cost",
    "cost_town",
    "cost_rank",
    "cost_unit",
    "cost_load",
    "same_town",
    "load_level",
]


def _obj(series: pd.Series) -> np.ndarray:
    """Object array with None for missing (pandas 3 strings use NaN)."""
    arr = series.to_numpy(dtype=object, na_value=None)
    return arr


def _idx(values: np.ndarray) -> pd.Index:
    """An object-dtype index: pandas' arrow-string index does isin() in a Python loop."""
    return pd.Index(values, dtype=object)


def _clean_targets(targets: pd.DataFrame) -> pd.DataFrame:
    t = pd.DataFrame(
        {
            "target_kind": _obj(targets["target_kind"]),
            "target_key": _obj(targets["target_key"]),
            "town": _obj(targets["town"]) if "town" in targets else None,
            "preferred_unit": _obj(targets["preferred_unit"]) if "preferred_unit" in targets else None,
        }
    )
    bad = ~t["target_kind"].isin([HOUSEHOLD, CASE])
    if bad.any():
        raise ValueError(f"target_kind must be household or case ({int(bad.sum())} rows are not)")
    if t.duplicated(["target_kind", "target_key"]).any():
        raise ValueError("duplicate targets")
    return t.sort_values(["target_kind", "target_key"], kind="mergesort").reset_index(drop=True)


def _clean_cadres(cadres: pd.DataFrame) -> pd.DataFrame:
    n = len(cadres)
    c = pd.DataFrame(
        {
            "cadre_key": _obj(cadres["cadre_key"]),
            "rank": _obj(cadres["rank"]) if "rank" in cadres else None,
            "unit": _obj(cadres["unit"]) if "unit" in cadres else None,
            "town": _obj(cadres["town"]) if "town" in cadres else None,
            "household_load": (
                cadres["household_load"].fillna(0).to_numpy(dtype=np.int64)
                if "household_load" in cadres
                else np.zeros(n, dtype=np.int64)
            ),
            "case_load": (
                cadres["case_load"].fillna(0).to_numpy(dtype=np.int64)
                if "case_load" in cadres
                else np.zeros(n, dtype=np.int64)
            ),
        }
    )
    if c["cadre_key"].duplicated().any():
        raise ValueError("duplicate cadres")
    return c.sort_values("cadre_key", kind="mergesort").reset_index(drop=True)


def _codes(*arrays: np.ndarray) -> list[np.ndarray]:
    """Factorize several object arrays over one shared vocabulary; None -> -1."""
    sizes = [len(a) for a in arrays]
    codes, _ = pd.factorize(np.concatenate(arrays) if arrays else np.array([], dtype=object))
    out, start = [], 0
    for size in sizes:
        out.append(codes[start : start + size].astype(np.int64))
        start += size
    return out


def _water_level(load: np.ndarray, cap: np.ndarray, demand: int) -> int:
    """Smallest level L with sum(max(0, min(cap, L) - load)) >= demand (the max of cap if never)."""
    hi = int(cap.max()) if len(cap) else 0
    if np.clip(np.minimum(cap, hi) - load, 0, None).sum() < demand:
        return hi
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if np.clip(np.minimum(cap, mid) - load, 0, None).sum() >= demand:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class _Flow:
    cadre: np.ndarray  # per target: cadre index or -1
    level: np.ndarray  # per target: the cadre's k-th unit (1-based, kept load counted), 0 if unplaced
    cost_town: np.ndarray
    cost_unit: np.ndarray
    cost_rank: np.ndarray
    cost_load: np.ndarray
    reach: np.ndarray  # per target: some cadre with room can be reached
    figures: dict


def _group_rank(keys: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal keys (keys already sorted)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    run = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n, dtype=np.int64) - run


def _lookup(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which values are among the sorted keys, and where (positions are 0 where not found)."""
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    found = sorted_keys[pos] == values
    return found, np.where(found, pos, 0)


def _flow(
    t_town: np.ndarray,
    t_unit: np.ndarray,
    c_town: np.ndarray,
    c_unit: np.ndarray,
    c_load: np.ndarray,
    c_cap: np.ndarray,
    c_pen: np.ndarray,
    *,
    step: int,
    town_penalty: int,
    unit_bonus: int,
    allow_other: bool,
) -> _Flow:
    """Min-cost flow of targets (supply 1 each) onto cadres with convex load costs. Pure numpy."""
    from ortools.graph.python import min_cost_flow

    t0 = time.perf_counter()
    n_t, n_c = len(t_town), len(c_town)
    P, B = int(town_penalty), int(unit_bonus)
    room = np.clip(c_cap - c_load, 0, None)
    # units of capacity offered per cadre: balance makes levels above the water level useless
    if allow_other and step > 0 and n_c:
        level = _water_level(c_load, c_cap, n_t)
        spread = P + B + int(c_pen.max() - c_pen.min())
        units = np.clip(np.minimum(c_cap, level + spread // step + 1) - c_load, 0, None)
    else:
        units = room.copy()
    units = np.minimum(units, n_t)
    has = units > 0

    n_town = int(max(t_town.max(initial=-1), c_town.max(initial=-1))) + 1
    tt = np.where(t_town >= 0, t_town, n_town)  # targets without a town get their own (cadre-less) node
    sink = n_t + n_c
    base_town = sink + 1
    hub = base_town + n_town + 1
    next_node = hub + 1

    # (unit, town) and unit nodes, only for units some freed target prefers and some cadre with room has
    cad_ut = c_unit * (n_town + 1) + np.where(c_town >= 0, c_town, n_town)
    ut_with_room = np.unique(cad_ut[has & (c_unit >= 0) & (c_town >= 0)])
    u_with_room = np.unique(c_unit[has & (c_unit >= 0)])
    t_ut = np.where((t_unit >= 0) & (t_town >= 0), t_unit * (n_town + 1) + tt, -1)
    ut_keys = np.intersect1d(np.unique(t_ut[t_ut >= 0]), ut_with_room)
    ut_node = next_node + np.arange(len(ut_keys))
    next_node += len(ut_keys)
    ua_keys = (
        np.intersect1d(np.unique(t_unit[t_unit >= 0]), u_with_room) if allow_other else np.zeros(0, np.int64)
    )
    ua_node = next_node + np.arange(len(ua_keys))
    next_node += len(ua_keys)

    tails, heads, caps, costs = [], [], [], []

    def arcs(tail, head, cap, cost) -> tuple[int, int]:
        start = sum(len(x) for x in tails)
        tail = np.asarray(tail, dtype=np.int64)
        tails.append(tail)
        heads.append(np.broadcast_to(np.asarray(head, dtype=np.int64), tail.shape))
        caps.append(np.broadcast_to(np.asarray(cap, dtype=np.int64), tail.shape))
        costs.append(np.broadcast_to(np.asarray(cost, dtype=np.int64), tail.shape))
        return start, start + len(tail)

    t_idx = np.arange(n_t, dtype=np.int64)
    c_idx = np.arange(n_c, dtype=np.int64)
    first = []  # arc ranges leaving target nodes
    first.append(arcs(t_idx, base_town + tt, 1, 0))
    in_ut, ut_pos = _lookup(ut_keys, t_ut)
    first.append(arcs(t_idx[in_ut], ut_node[ut_pos[in_ut]], 1, -B))
    in_ua, ua_pos = _lookup(ua_keys, t_unit)
    first.append(arcs(t_idx[in_ua], ua_node[ua_pos[in_ua]], 1, P - B))

    middle = []  # arc ranges leaving shared nodes towards cadres or the hub
    own = has & (c_town >= 0)
    middle.append(arcs(base_town + c_town[own], n_t + c_idx[own], units[own], 0))
    town_count = np.bincount(tt, minlength=n_town + 1)
    if allow_other:
        towns_used = np.flatnonzero(town_count)
        middle.append(arcs(base_town + towns_used, hub, town_count[towns_used], P))
    if len(ut_keys):
        sel = has & np.isin(cad_ut, ut_keys)
        middle.append(arcs(ut_node[np.searchsorted(ut_keys, cad_ut[sel])], n_t + c_idx[sel], units[sel], 0))
    if len(ua_keys):
        sel = has & np.isin(c_unit, ua_keys)
        middle.append(arcs(ua_node[np.searchsorted(ua_keys, c_unit[sel])], n_t + c_idx[sel], units[sel], 0))
    hub_arcs = arcs(
        hub + np.zeros(int(has.sum()) if allow_other else 0, dtype=np.int64),
        n_t + c_idx[has] if allow_other else [],
        units[has] if allow_other else [],
        0,
    )
    # convex load costs: one arc per unit, the k-th unit of a cadre costs step*(k-1) + its rank penalty
    rep = np.repeat(c_idx, units)
    k = c_load[rep] + _group_rank(rep) + 1
    arcs(n_t + rep, sink, 1, step * (k - 1) + c_pen[rep])

    all_tails = np.concatenate(tails).astype(np.int32) if tails else np.zeros(0, np.int32)
    all_heads = np.concatenate(heads).astype(np.int32)
    all_caps = np.concatenate(caps).astype(np.int64)
    all_costs = np.concatenate(costs).astype(np.int64)
    t_built = time.perf_counter()

    smcf = min_cost_flow.SimpleMinCostFlow()
    n_arcs = len(all_tails)
    if n_arcs:
        smcf.add_arcs_with_capacity_and_unit_cost(all_tails, all_heads, all_caps, all_costs)
    supply_nodes = np.r_[t_idx, sink].astype(np.int32)
    supplies = np.r_[np.ones(n_t, dtype=np.int64), -n_t].astype(np.int64)
    smcf.add_arc_with_capacity_and_unit_cost(sink, sink, 0, 0)  # the sink exists even without arcs
    smcf.set_nodes_supplies(supply_nodes, supplies)
    status = smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow failed: {status}")
    flows = smcf.flows(np.arange(n_arcs, dtype=np.int32)) if n_arcs else np.zeros(0, np.int64)
    optimal_cost = int(smcf.optimal_cost())
    t_solved = time.perf_counter()

    # split the flow back into (target, cadre) pairs: units reach a node sorted (node, target) and
    # leave it along its arcs sorted (tail, head), one unit per unit of flow
    def take(ranges: list[tuple[int, int]]) -> np.ndarray:
        idx = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
        return idx[flows[idx] > 0]

    used = take(first)
    u_target = all_tails[used].astype(np.int64)
    u_node = all_heads[used].astype(np.int64)
    order = np.lexsort((u_target, u_node))
    u_target, u_node = u_target[order], u_node[order]
    for ranges in (middle, [hub_arcs]):
        at_shared = u_node > sink  # units still in a shared node
        if not at_shared.any():
            break
        mid = take(ranges)
        o = np.lexsort((all_heads[mid], all_tails[mid]))
        mid = mid[o]
        out_tail = np.repeat(all_tails[mid].astype(np.int64), flows[mid])
        out_head = np.repeat(all_heads[mid].astype(np.int64), flows[mid])
        if not np.array_equal(out_tail, u_node[at_shared]):
            raise RuntimeError("flow decomposition out of step")  # conservation broken: a bug
        u_node = u_node.copy()
        u_node[at_shared] = out_head
    if (u_node >= n_t + n_c).any():
        raise RuntimeError("flow decomposition did not reach the cadres")
    cadre = np.full(n_t, -1, dtype=np.int64)
    cadre[u_target] = u_node - n_t

    # cost components per pair; the k-th unit of a cadre goes to its targets in key order
    placed = np.flatnonzero(cadre >= 0)
    ci = cadre[placed]
    o = np.lexsort((placed, ci))
    lvl = np.zeros(n_t, dtype=np.int64)
    lvl[placed[o]] = c_load[ci[o]] + _group_rank(ci[o]) + 1
    same = np.zeros(n_t, dtype=bool)
    same[placed] = (t_town[placed] >= 0) & (t_town[placed] == c_town[ci])
    cost_town = np.where(same, 0, P) * (cadre >= 0)
    cost_unit = np.zeros(n_t, dtype=np.int64)
    cost_unit[placed] = np.where((t_unit[placed] >= 0) & (t_unit[placed] == c_unit[ci]), -B, 0)
    cost_rank = np.zeros(n_t, dtype=np.int64)
    cost_rank[placed] = c_pen[ci]
    cost_load = np.where(cadre >= 0, step * (lvl - 1), 0)
    total = int(cost_town.sum() + cost_unit.sum() + cost_rank.sum() + cost_load.sum())

    # an independent lower bound: each target's cheapest arc + the cheapest units, separately
    own_room = np.zeros(n_town + 1, dtype=bool)
    own_room[c_town[own]] = True
    options = np.full(n_t, np.iinfo(np.int64).max, dtype=np.int64)
    options[own_room[tt]] = 0
    if allow_other and has.any():
        options = np.minimum(options, P)
    options[in_ua] = np.minimum(options[in_ua], P - B)
    options[in_ut] = np.minimum(options[in_ut], -B)
    reach = options < np.iinfo(np.int64).max
    n_placed = len(placed)
    full = np.minimum(room, n_t)
    rep_full = np.repeat(c_idx, full)
    unit_costs = step * (c_load[rep_full] + _group_rank(rep_full)) + c_pen[rep_full]
    cheapest_units = np.sort(unit_costs)[:n_placed].sum() if n_placed else 0
    cheapest_arcs = np.sort(options[reach])[:n_placed].sum() if n_placed else 0
    lower = int(cheapest_units + cheapest_arcs)
    t_done = time.perf_counter()
    return _Flow(
        cadre=cadre,
        level=lvl,
        cost_town=cost_town.astype(np.int64),
        cost_unit=cost_unit,
        cost_rank=cost_rank,
        cost_load=cost_load.astype(np.int64),
        reach=reach,
        figures={
            "targets": n_t,
            "placed": n_placed,
            "cadres": n_c,
            "nodes": int(next_node),
            "arcs": int(n_arcs),
            "total_cost": total,
            "solver_cost": optimal_cost,
            "cost_consistent": total == optimal_cost,
            "lower_bound": lower,
            "optimal": True,
            "seconds": {
                "build": round(t_built - t0, 3),
                "solve": round(t_solved - t_built, 3),
                "split": round(t_done - t_solved, 3),
            },
        },
    )


def _spread(values: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, int]]:
    out = {}
    frame = pd.DataFrame({"g": pd.Series(groups, dtype=object).fillna("unknown"), "v": values})
    for g, vals in frame.groupby("g", sort=True)["v"]:
        out[str(g)] = {
            "cadres": len(vals),
            "min": int(vals.min()),
            "max": int(vals.max()),
            "spread": int(vals.max() - vals.min()),
        }
    return out


def solve(targets: pd.DataFrame, cadres: pd.DataFrame, config: PairingConfig | None = None) -> Assignment:
    """Assign targets to cadres. Pure: no database, same inputs -> same output.

    ``targets``: target_kind (household | case), target_key, town, preferred_unit (or None).
    ``cadres``: cadre_key, rank, unit, town, household_load, case_load (loads of the kept pairs).
    Cases go to cadres of ``config.case_rank`` only (a first, small flow); households to any cadre
    (a second flow) with county cadres penalised per case they now lead. Unplaceable targets are
    listed in ``unplaced``, never raised.
    """
    cfg = config or PairingConfig()
    t0 = time.perf_counter()
    tg = _clean_targets(targets)
    cd = _clean_cadres(cadres)
    t_town, c_town = _codes(tg["town"].to_numpy(object), cd["town"].to_numpy(object))
    t_unit, c_unit = _codes(tg["preferred_unit"].to_numpy(object), cd["unit"].to_numpy(object))
    rank = cd["rank"].to_numpy(object)
    kind = tg["target_kind"].to_numpy(object)
    hh_load = cd["household_load"].to_numpy(np.int64).copy()
    case_load = cd["case_load"].to_numpy(np.int64).copy()
    cadre_pick = np.full(len(tg), -1, dtype=np.int64)
    comp = {name: np.zeros(len(tg), dtype=np.int64) for name in ("town", "unit", "rank", "load", "level")}
    reach = np.zeros(len(tg), dtype=bool)
    figures: dict = {}

    def run(name: str, t_sel: np.ndarray, c_sel: np.ndarray, load, cap, pen, step) -> None:
        ti, ci = np.flatnonzero(t_sel), np.flatnonzero(c_sel)
        res = _flow(
            t_town[ti],
            t_unit[ti],
            c_town[ci],
            c_unit[ci],
            load[ci],
            cap[ci],
            pen[ci],
            step=step,
            town_penalty=cfg.town_penalty,
            unit_bonus=cfg.unit_bonus,
            allow_other=cfg.allow_other_town,
        )
        got = res.cadre >= 0
        cadre_pick[ti[got]] = ci[res.cadre[got]]
        for key, arr in (
            ("town", res.cost_town),
            ("unit", res.cost_unit),
            ("rank", res.cost_rank),
            ("load", res.cost_load),
            ("level", res.level),
        ):
            comp[key][ti] = arr
        reach[ti] = res.reach
        figures[name] = res.figures

    is_case = kind == CASE
    county = rank == cfg.case_rank
    n_c = len(cd)
    run(
        "cases",
        is_case,
        county,
        case_load,
        np.full(n_c, cfg.max_cases, dtype=np.int64),
        np.zeros(n_c, dtype=np.int64),
        cfg.case_load_step,
    )
    case_after = case_load + np.bincount(cadre_pick[is_case & (cadre_pick >= 0)], minlength=n_c)
    caps = np.array([cfg.household_cap(r) for r in rank], dtype=np.int64)
    rank_pen = np.array(
        [int(cfg.rank_household_penalty.get(r, 0)) if isinstance(r, str) else 0 for r in rank], dtype=np.int64
    )
    pen = rank_pen + cfg.case_household_penalty * case_after
    run("households", ~is_case, np.ones(n_c, dtype=bool), hh_load, caps, pen, cfg.load_step)
    hh_after = hh_load + np.bincount(cadre_pick[~is_case & (cadre_pick >= 0)], minlength=n_c)

    got = np.flatnonzero(cadre_pick >= 0)
    cost = comp["town"] + comp["unit"] + comp["rank"] + comp["load"]
    pairs = pd.DataFrame(
        {
            "cadre_key": cd["cadre_key"].to_numpy(object)[cadre_pick[got]],
            "target_kind": kind[got],
            "target_key": tg["target_key"].to_numpy(object)[got],
            "cost": cost[got],
            "cost_town": comp["town"][got],
            "cost_rank": comp["rank"][got],
            "cost_unit": comp["unit"][got],
            "cost_load": comp["load"][got],
            "same_town": comp["town"][got] == 0,
            "load_level": comp["level"][got],
        },
        columns=PAIR_COLUMNS,
    )
    # same_town is about towns, not about the penalty being zero
    same = (t_town[got] >= 0) & (t_town[got] == c_town[cadre_pick[got]])
    pairs["same_town"] = same
    miss = np.flatnonzero(cadre_pick < 0)
    unplaced = pd.DataFrame(
        {
            "target_kind": kind[miss],
            "target_key": tg["target_key"].to_numpy(object)[miss],
            "reason": np.where(reach[miss], "no_capacity", "no_cadre_in_reach").astype(object),
        },
        columns=["target_kind", "target_key", "reason"],
    )
    loads = pd.DataFrame(
        {
            "cadre_key": cd["cadre_key"].to_numpy(object),
            "rank": rank,
            "household_load": hh_after,
            "case_load": case_after,
        }
    )
    total = int(cost[got].sum())
    lower = int(figures["cases"]["lower_bound"] + figures["households"]["lower_bound"])
    hh_pairs = pairs[pairs["target_kind"] == HOUSEHOLD]
    figures.update(
        {
            "targets": len(tg),
            "placed": len(pairs),
            "unplaced": len(unplaced),
            "cadres": n_c,
            "total_cost": total,
            "lower_bound": lower,
            "gap": (total - lower) / abs(lower) if lower else (0.0 if total == 0 else None),
            "optimal": bool(figures["cases"]["optimal"] and figures["households"]["optimal"]),
            "cost_consistent": bool(
                figures["cases"]["cost_consistent"] and figures["households"]["cost_consistent"]
            ),
            "same_town_share": float(pairs["same_town"].mean()) if len(pairs) else None,
            "same_town_share_households": float(hh_pairs["same_town"].mean()) if len(hh_pairs) else None,
            "household_load_spread": _spread(hh_after, rank),
            "case_load_spread": _spread(case_after[county], rank[county]) if county.any() else {},
            "seconds_total": round(time.perf_counter() - t0, 3),
        }
    )
    return Assignment(pairs=pairs, unplaced=unplaced, loads=loads, figures=figures)


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
    hh_status = pd.Series(_obj(hh["status"]), index=_idx(_obj(hh["household_key"])), dtype=object)
    case_status = pd.Series(_obj(cs["status"]), index=_idx(_obj(cs["case_key"])), dtype=object)
    cad_status = pd.Series(_obj(cad["status"]), index=_idx(_obj(cad["cadre_key"])), dtype=object)
    cad_rank = pd.Series(_obj(cad["rank"]), index=_idx(_obj(cad["cadre_key"])), dtype=object)
    cad_unit = pd.Series(_obj(cad["unit"]), index=_idx(_obj(cad["cadre_key"])), dtype=object)

    kind = _obj(cur["target_kind"])
    key = _obj(cur["target_key"])
    ck = _obj(cur["cadre_key"])
    is_h, is_c = kind == HOUSEHOLD, kind == CASE
    t_status = np.full(len(cur), None, dtype=object)
    t_status[is_h] = hh_status.reindex(key[is_h]).to_numpy(object)
    t_status[is_c] = case_status.reindex(key[is_c]).to_numpy(object)
    c_status = cad_status.reindex(ck).to_numpy(object)
    c_rank = cad_rank.reindex(ck).to_numpy(object)
    reason = np.full(len(cur), None, dtype=object)
    # the order mirrors the status stage: a departed cadre first, then the target
    mg = _frame(merges, ["retired_key", "surviving_key"])
    survivor_of = _survivors(_obj(mg["retired_key"]), _obj(mg["surviving_key"]))
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
        p_kind, p_key, p_cad = _obj(pn["target_kind"]), _obj(pn["target_key"]), _obj(pn["cadre_key"])
        prob = _obj(pn["problem"]).copy()
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
        for ref, why in zip(_obj(pn["pin_ref"])[~pd.isna(prob)], prob[~pd.isna(prob)], strict=True):
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
    taken_h = set(_obj(kept.loc[kept["target_kind"] == HOUSEHOLD, "target_key"])) | set(
        _obj(new_pins.loc[new_pins["target_kind"] == HOUSEHOLD, "target_key"])
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
        act_t = frame_[_obj(frame_["status"]) == active_status]
        keys = _obj(act_t[key_col])
        taken = np.concatenate(
            [
                _obj(kept.loc[kept["target_kind"] == kind_name, "target_key"]),
                _obj(new_pins.loc[new_pins["target_kind"] == kind_name, "target_key"]),
                _obj(carried.loc[carried["target_kind"] == kind_name, "target_key"]),
            ]
        )
        free = ~_idx(keys).isin(_idx(taken)) if len(taken) else np.ones(len(keys), dtype=bool)
        keys, towns = keys[free], _obj(act_t["town"])[free]
        lk = last[last["target_kind"] == kind_name]
        left_cadre = (
            pd.Series(_obj(lk["cadre_key"]), index=_idx(_obj(lk["target_key"])), dtype=object)
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
    act = cad[_obj(cad["status"]) == "active"]
    holds = pd.concat(
        [
            kept[["cadre_key", "target_kind"]],
            new_pins[["cadre_key", "target_kind"]],
            carried[["cadre_key", "target_kind"]],
        ]
    )
    counts = holds.groupby(["cadre_key", "target_kind"]).size().unstack(fill_value=0) if len(holds) else None
    ak = _obj(act["cadre_key"])

    def load(kind_name: str) -> np.ndarray:
        if counts is None or kind_name not in counts.columns:
            return np.zeros(len(act), dtype=np.int64)
        return counts[kind_name].reindex(ak).fillna(0).to_numpy(np.int64)

    cad_out = pd.DataFrame(
        {
            "cadre_key": ak,
            "rank": _obj(act["rank"]),
            "unit": _obj(act["unit"]),
            "town": _obj(act["town"]),
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
    for key, i, status in conn.execute(
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
    ended = _rows(
        conn,
        sa.select(p.c.target_kind, p.c.target_key, p.c.cadre_key, p.c.end_reason)
        .where(p.c.valid_to.is_not(None))
        .order_by(p.c.valid_to, p.c.pairing_id),
        ["target_kind", "target_key", "cadre_key", "end_reason"],
    )
    history = ended.drop_duplicates(["target_kind", "target_key"], keep="last")
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
    state = _read_state(conn)
    plan = plan_night(**state, case_rank=(config or PairingConfig()).case_rank)
    by_reason = _count(plan.ends["end_reason"])
    total = plan.total_current
    # a merged household's pair that carries on with the survivor is not a pair the programme loses
    ending = int(sum(by_reason.values())) - len(plan.carried)
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


def _insert_pairs(conn: sa.Connection, rows: list[dict]) -> int:
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
            zip(_obj(state["households"]["household_key"]), _obj(state["households"]["town"]), strict=True)
        ),
        **{
            ("case", k): t
            for k, t in zip(_obj(state["cases"]["case_key"]), _obj(state["cases"]["town"]), strict=True)
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
    towns = dict(zip(_obj(hh["household_key"]), _obj(hh["town"]), strict=True))
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


def rebuild(eng: sa.Engine, as_of: dt.date, run_id: str, config: PairingConfig | None = None) -> dict:
    """Tonight's pairs, in ONE transaction: end, keep, pin, solve for freed and new targets, write.

    That transaction is the swap: readers (dashboard, exports, ``current_pairing``) see last night's
    complete pairs until it commits and tonight's after, never a half-written set, and are not
    blocked (the lock taken is SHARE ROW EXCLUSIVE on PostgreSQL, which plain reads do not wait
    for); a rebuild that fails or is killed mid-write leaves last night's pairs. New pairs go in by
    COPY on PostgreSQL (:func:`warehouse.insert_many`).

    Returns a JSON-able summary: ended/made by reason, kept, unplaced keys, same-town share, load
    spread per rank, cases without a leader and households without a cadre (both should be 0).
    """
    cfg = config or PairingConfig()
    t0 = time.perf_counter()
    with eng.begin() as conn:
        _lock(conn)
        state = _read_state(conn)
        plan = plan_night(**state, case_rank=cfg.case_rank)
        result = solve(
            plan.targets[["target_kind", "target_key", "town", "preferred_unit"]], plan.cadres, cfg
        )

        # the rows to write, in a stable order
        made = result.pairs.merge(
            plan.targets[["target_kind", "target_key", "made_reason"]],
            on=["target_kind", "target_key"],
            how="left",
        )
        rows = []
        for r in made.itertuples(index=False):
            detail = {
                "town": int(r.cost_town),
                "rank": int(r.cost_rank),
                "unit": int(r.cost_unit),
                "load": int(r.cost_load),
            }
            rows.append(
                {
                    "cadre_key": r.cadre_key,
                    "target_kind": r.target_kind,
                    "target_key": r.target_key,
                    "made_reason": r.made_reason,
                    "cost": int(r.cost),
                    "cost_detail": dumps(detail),
                }
            )
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
        rows.sort(key=lambda x: (x["target_kind"], x["target_key"]))
        for row in rows:
            row.update(valid_from=as_of, valid_to=None, end_reason=None, run_id=run_id)

        ended = _end_pairs(conn, plan.ends, as_of)
        written = _insert_pairs(conn, rows)
        faults.point("pairing.mid")
        checks = _checks(conn)
        broken = {
            k: v for k, v in checks.items() if k in ("pairs_on_inactive", "targets_with_several_pairs") and v
        }
        if broken:  # never commit a state that breaks the programme's rules: roll the night back
            raise RuntimeError(f"pairing rebuild would leave {broken}; rolled back")
        summary = _summary(plan, result, rows, state, as_of, run_id, checks)
    summary["ended_total"], summary["made_total"] = ended, written
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    log.info(
        "pairing: ended %s, made %s, kept %d, unplaced %d, cases without leader %d",
        summary["ended"],
        summary["made"],
        summary["kept"],
        summary["unplaced_total"],
        summary["cases_without_leader"],
    )
    return summary


def _checks(conn: sa.Connection) -> dict[str, int]:
    """The programme's rules, counted on what is now written (same transaction)."""
    h, k, c, p = schema.household, schema.petition_case, schema.cadre, schema.pairing
    cur = sa.select(p.c.target_key).where(p.c.valid_to.is_(None))

    def n(q) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar() or 0)

    return {
        "households_without_cadre": n(
            sa.select(h.c.household_key).where(
                h.c.status == "active", h.c.household_key.not_in(cur.where(p.c.target_kind == HOUSEHOLD))
            )
        ),
        "cases_without_leader": n(
            sa.select(k.c.case_key).where(
                k.c.status == "open", k.c.case_key.not_in(cur.where(p.c.target_kind == CASE))
            )
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


def _summary(
    plan: NightPlan,
    result: Assignment,
    rows: list[dict],
    state: dict,
    as_of: dt.date,
    run_id: str,
    checks: dict,
) -> dict:
    made = pd.Series([r["made_reason"] for r in rows], dtype=object)
    # same-town share over all current household pairs after tonight
    hh_town = dict(
        zip(_obj(state["households"]["household_key"]), _obj(state["households"]["town"]), strict=True)
    )
    cad_town = dict(zip(_obj(state["cadres"]["cadre_key"]), _obj(state["cadres"]["town"]), strict=True))
    current = [
        (r.cadre_key, r.target_key) for r in plan.kept.itertuples(index=False) if r.target_kind == HOUSEHOLD
    ]
    current += [(r["cadre_key"], r["target_key"]) for r in rows if r["target_kind"] == HOUSEHOLD]
    same = [hh_town.get(t) is not None and hh_town.get(t) == cad_town.get(c) for c, t in current]
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
        "kept": len(plan.kept),
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
        "same_town_share": (sum(same) / len(same)) if same else None,
        "same_town_share_made": f["same_town_share_households"],
        "household_load_spread": f["household_load_spread"],
        "case_load_spread": f["case_load_spread"],
        "cost": {"total": f["total_cost"], "lower_bound": f["lower_bound"], "optimal": f["optimal"]},
        **checks,
    }
