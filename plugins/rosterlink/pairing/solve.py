"""The pure assignment engine: cost model, min-cost flow, no database.

:func:`solve` assigns the night's targets (freed and new households and key cases) to cadres given
their current loads, with the weights of :class:`PairingConfig`, and returns an :class:`Assignment`.
The night's plan is :mod:`rosterlink.pairing.plan`; reading and writing the warehouse is
:mod:`rosterlink.pairing.rebuild`.

The nightly rebuild (:func:`rosterlink.pairing.rebuild.rebuild`) runs in ONE transaction:

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

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

HOUSEHOLD, CASE = "household", "case"
RANKS = ("county", "section", "ordinary")


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
        settings: dict[str, Any] = dict(values or {})  # JSON values: __post_init__ checks their types
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown pairing settings: {unknown}")
        return cls(**settings)

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


def object_array(series: pd.Series) -> np.ndarray:
    """Object array with None for missing (pandas 3 strings use NaN)."""
    arr = series.to_numpy(dtype=object, na_value=None)
    return arr


def key_index(values: np.ndarray) -> pd.Index:
    """An object-dtype index: pandas' arrow-string index does isin() in a Python loop."""
    return pd.Index(values, dtype=object)


def _clean_targets(targets: pd.DataFrame) -> pd.DataFrame:
    t = pd.DataFrame(
        {
            "target_kind": object_array(targets["target_kind"]),
            "target_key": object_array(targets["target_key"]),
            "town": object_array(targets["town"]) if "town" in targets else None,
            "preferred_unit": object_array(targets["preferred_unit"])
            if "preferred_unit" in targets
            else None,
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
            "cadre_key": object_array(cadres["cadre_key"]),
            "rank": object_array(cadres["rank"]) if "rank" in cadres else None,
            "unit": object_array(cadres["unit"]) if "unit" in cadres else None,
            "town": object_array(cadres["town"]) if "town" in cadres else None,
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

    tails: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    caps: list[np.ndarray] = []
    costs: list[np.ndarray] = []

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
