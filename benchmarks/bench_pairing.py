"""Pairing benchmark: the reference district and (``--province``) a province-sized instance.

Builds the instance in memory, runs night 1 (everything new) through the same pure code the nightly
rebuild uses (``plan_night`` + ``solve``), then night 2 with churn (households exit and arrive,
cadres depart and join, cases close and open) and prints: time to pair, peak memory, same-town
share, load spread per rank, total cost against the solver-independent lower bound, and the share
of surviving pairs left unchanged (must be 100 %). Prints figures only; it asserts nothing about time.

    .venv/bin/python benchmarks/bench_pairing.py                 # district (1,457 x 1,457, 49 cases)
    .venv/bin/python benchmarks/bench_pairing.py --province      # 1,000,000 households x 100,000 cadres
    .venv/bin/python benchmarks/bench_pairing.py --size 200000 20000 --towns 300
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from rosterlink.pairing.plan import plan_night
from rosterlink.pairing.solve import CASE, HOUSEHOLD, PairingConfig, solve

RANK_SHARE = {"county": 38 / 1457, "section": 1088 / 1457, "ordinary": 331 / 1457}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def district_towns() -> list[str]:
    try:
        from rosterlink.core.spec import district

        return list(district().towns)
    except Exception:  # noqa: BLE001 - the benchmark must run without the config
        return [f"镇{i:02d}" for i in range(10)]


def keys(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)


def build(
    n_households: int,
    n_cadres: int,
    n_cases: int,
    towns: list[str],
    seed: int = 7,
    rank_counts: dict[str, int] | None = None,
) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_towns = len(towns)
    # towns differ in size, and households and cadres are not spread alike: some crossing is needed
    w_h = rng.uniform(0.5, 1.5, n_towns)
    w_c = w_h * rng.uniform(0.8, 1.2, n_towns)
    town_arr = np.array(towns, dtype=object)
    households = pd.DataFrame(
        {
            "household_key": keys("H", n_households),
            "town": town_arr[rng.choice(n_towns, n_households, p=w_h / w_h.sum())],
            "status": "active",
        }
    )
    if rank_counts is None:
        n_county = max(1, round(n_cadres * RANK_SHARE["county"]))
        n_ordinary = round(n_cadres * RANK_SHARE["ordinary"])
        rank_counts = {
            "county": n_county,
            "section": n_cadres - n_county - n_ordinary,
            "ordinary": n_ordinary,
        }
    ranks = np.concatenate([np.full(n, r, dtype=object) for r, n in rank_counts.items()])
    rng.shuffle(ranks)
    n_units = max(5, n_cadres // 25)
    cadres = pd.DataFrame(
        {
            "cadre_key": keys("C", n_cadres),
            "rank": ranks,
            "unit": np.char.add("单位", rng.integers(0, n_units, n_cadres).astype(str)).astype(object),
            "town": town_arr[rng.choice(n_towns, n_cadres, p=w_c / w_c.sum())],
            "status": "active",
        }
    )
    cases = pd.DataFrame(
        {
            "case_key": keys("K", n_cases),
            "town": town_arr[rng.integers(0, n_towns, n_cases)],
            "status": "open",
        }
    )
    return {"households": households, "cadres": cadres, "cases": cases}


def night(world: dict, current: pd.DataFrame, config: PairingConfig) -> tuple[object, object, float]:
    t0 = time.perf_counter()
    plan = plan_night(
        current, world["households"], world["cases"], world["cadres"], case_rank=config.case_rank
    )
    t1 = time.perf_counter()
    result = solve(plan.targets[["target_kind", "target_key", "town", "preferred_unit"]], plan.cadres, config)
    return plan, result, t1 - t0


def as_current(previous: pd.DataFrame | None, plan, result, start_id: int) -> pd.DataFrame:
    """The pairing table's current rows after a night: kept rows + the new ones with fresh ids."""
    new = result.pairs[["cadre_key", "target_kind", "target_key"]].copy()
    new.insert(0, "pairing_id", np.arange(start_id, start_id + len(new)))
    return pd.concat([plan.kept, new], ignore_index=True)


def churn(world: dict, share: float, seed: int = 11) -> dict:
    """Households exit and new ones arrive, cadres depart and join, cases close and open."""
    rng = np.random.default_rng(seed)
    w = {k: v.copy() for k, v in world.items()}
    hh, cd, cs = w["households"], w["cadres"], w["cases"]
    towns = hh["town"].unique()
    n_exit = int(len(hh) * share)
    hh.loc[rng.choice(len(hh), n_exit, replace=False), "status"] = "exited"
    new_h = pd.DataFrame(
        {
            "household_key": [f"N{i:07d}" for i in range(n_exit)],
            "town": towns[rng.integers(0, len(towns), n_exit)],
            "status": "active",
        }
    )
    n_dep = int(len(cd) * share)
    cd.loc[rng.choice(len(cd), n_dep, replace=False), "status"] = "departed"
    joiners = cd.sample(n=n_dep, random_state=seed)  # same rank/unit/town mix, new people
    new_c = pd.DataFrame(
        {
            "cadre_key": [f"D{i:07d}" for i in range(n_dep)],
            "rank": joiners["rank"].to_numpy(),
            "unit": joiners["unit"].to_numpy(),
            "town": joiners["town"].to_numpy(),
            "status": "active",
        }
    )
    n_cs = max(1, int(len(cs) * share))
    cs.loc[rng.choice(len(cs), n_cs, replace=False), "status"] = "closed"
    new_k = pd.DataFrame(
        {
            "case_key": [f"M{i:07d}" for i in range(n_cs)],
            "town": towns[rng.integers(0, len(towns), n_cs)],
            "status": "open",
        }
    )
    return {
        "households": pd.concat([hh, new_h], ignore_index=True),
        "cadres": pd.concat([cd, new_c], ignore_index=True),
        "cases": pd.concat([cs, new_k], ignore_index=True),
    }


def report(name: str, plan, result, plan_s: float) -> dict:
    f = result.figures
    spread = {r: v["spread"] for r, v in f["household_load_spread"].items()}
    loads = {r: f"{v['min']}-{v['max']}" for r, v in f["household_load_spread"].items()}
    cases = {r: f"{v['min']}-{v['max']}" for r, v in f["case_load_spread"].items()}
    out = {
        "night": name,
        "targets_solved": f["targets"],
        "placed": f["placed"],
        "unplaced": f["unplaced"],
        "kept": len(plan.kept),
        "ended": plan.ends["end_reason"].value_counts().sort_index().to_dict(),
        "seconds_plan": round(plan_s, 3),
        "seconds_solve": f["seconds_total"],
        "solver_seconds": {k: f[k]["seconds"] for k in ("cases", "households")},
        "arcs": f["households"]["arcs"] + f["cases"]["arcs"],
        "same_town_share": (
            None if f["same_town_share_households"] is None else round(f["same_town_share_households"], 4)
        ),
        "household_loads_by_rank": loads,
        "household_load_spread": spread,
        "case_loads_county": cases,
        "total_cost": f["total_cost"],
        "lower_bound": f["lower_bound"],
        "gap": None if f["gap"] is None else round(f["gap"], 6),
        "optimal": f["optimal"],
        "cost_consistent": f["cost_consistent"],
        "peak_rss_mb": round(peak_mb(), 1),
    }
    print(json.dumps(out, ensure_ascii=False))
    return out


def dense_check(plan, result, config: PairingConfig) -> dict:
    """Independent check on a small instance: the Hungarian method on the DENSE cost matrix (every
    target x every free load unit of every eligible cadre) must find the same total as the flow."""
    from scipy.optimize import linear_sum_assignment

    t0 = time.perf_counter()
    targets = plan.targets
    after = result.loads[["cadre_key", "case_load"]].rename(columns={"case_load": "cases_after"})
    cad = plan.cadres.merge(after, on="cadre_key")
    totals = {}
    for kind in (CASE, HOUSEHOLD):
        rows = targets[targets["target_kind"] == kind]
        if kind == CASE:
            c = cad[cad["rank"] == config.case_rank]
            cap = np.full(len(c), config.max_cases)
            load, step = c["case_load"].to_numpy(), config.case_load_step
            pen = np.zeros(len(c), dtype=np.int64)
        else:
            c = cad
            cap = np.array([config.household_cap(r) for r in c["rank"]])
            load, step = c["household_load"].to_numpy(), config.load_step
            pen = (
                np.array([config.rank_household_penalty.get(r, 0) for r in c["rank"]])
                + config.case_household_penalty * c["cases_after"].to_numpy()
            )
        free = np.clip(cap - load, 0, None)
        slot_cadre = np.repeat(np.arange(len(c)), free)
        level = load[slot_cadre] + (np.arange(len(slot_cadre)) - np.repeat(np.cumsum(free) - free, free)) + 1
        slot_cost = step * (level - 1) + pen[slot_cadre]
        t_town = rows["town"].to_numpy(object)[:, None]
        t_unit = rows["preferred_unit"].to_numpy(object)[:, None]
        c_town = c["town"].to_numpy(object)[slot_cadre][None, :]
        c_unit = c["unit"].to_numpy(object)[slot_cadre][None, :]
        m = (
            np.where(t_town == c_town, 0, config.town_penalty)
            + np.where((t_unit == c_unit) & pd.notna(t_unit), -config.unit_bonus, 0)
            + slot_cost[None, :]
        )
        r, k = linear_sum_assignment(m)
        totals[kind] = int(m[r, k].sum())
    flow_total = int(result.pairs["cost"].sum())
    out = {
        "dense_optimum": sum(totals.values()),
        "flow_total": flow_total,
        "equal": sum(totals.values()) == flow_total,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(json.dumps({"dense_hungarian_check": out}))
    return out


def stability(current1: pd.DataFrame, world2: dict, plan2, result2) -> dict:
    """Of the night-1 pairs whose two sides are still active, how many are left exactly as they were."""
    active_h = set(world2["households"].loc[world2["households"]["status"] == "active", "household_key"])
    open_c = set(world2["cases"].loc[world2["cases"]["status"] == "open", "case_key"])
    active_cad = set(world2["cadres"].loc[world2["cadres"]["status"] == "active", "cadre_key"])
    tgt_ok = np.where(
        current1["target_kind"] == HOUSEHOLD,
        current1["target_key"].isin(active_h),
        current1["target_key"].isin(open_c),
    )
    surviving = current1[tgt_ok & current1["cadre_key"].isin(active_cad)]
    kept = plan2.kept.merge(surviving, on=["pairing_id", "cadre_key", "target_kind", "target_key"])
    retouched = result2.pairs.merge(surviving, on=["target_kind", "target_key"])
    freed = int((plan2.targets["made_reason"] == "cadre_left").sum())
    same_unit = result2.pairs.merge(
        plan2.targets[["target_kind", "target_key", "made_reason"]], on=["target_kind", "target_key"]
    )
    same_unit = same_unit[same_unit["made_reason"] == "cadre_left"]
    out = {
        "surviving_pairs": len(surviving),
        "unchanged": len(kept),
        "unchanged_share": (len(kept) / len(surviving)) if len(surviving) else 1.0,
        "surviving_targets_reassigned": len(retouched),
        "freed_by_departure": freed,
        "freed_given_same_unit": int((same_unit["cost_unit"] < 0).sum()),
    }
    print(json.dumps({"stability": out}, ensure_ascii=False))
    return out


def run(
    n_households: int,
    n_cadres: int,
    n_cases: int,
    towns: list[str],
    config: PairingConfig,
    churn_share: float,
    rank_counts: dict[str, int] | None = None,
    check: bool = False,
) -> None:
    base = peak_mb()
    t0 = time.perf_counter()
    world = build(n_households, n_cadres, n_cases, towns, rank_counts=rank_counts)
    print(
        json.dumps(
            {
                "instance": {
                    "households": n_households,
                    "cadres": n_cadres,
                    "cases": n_cases,
                    "towns": len(towns),
                    "built_seconds": round(time.perf_counter() - t0, 2),
                    "rss_before_mb": round(base, 1),
                }
            },
            ensure_ascii=False,
        )
    )
    empty = pd.DataFrame(
        {
            "pairing_id": pd.Series([], dtype=np.int64),
            **{c: pd.Series([], dtype=object) for c in ("cadre_key", "target_kind", "target_key")},
        }
    )
    t = time.perf_counter()
    plan1, res1, plan_s = night(world, empty, config)
    wall1 = time.perf_counter() - t
    report("night 1 (all new)", plan1, res1, plan_s)
    print(json.dumps({"night_1_time_to_pair_seconds": round(wall1, 3)}))
    if check:
        dense_check(plan1, res1, config)
    current1 = as_current(None, plan1, res1, 1)
    del res1
    gc.collect()
    world2 = churn(world, churn_share)
    t = time.perf_counter()
    plan2, res2, plan_s2 = night(world2, current1, config)
    wall2 = time.perf_counter() - t
    report(f"night 2 ({churn_share:.0%} churn)", plan2, res2, plan_s2)
    print(json.dumps({"night_2_time_to_pair_seconds": round(wall2, 3)}))
    if check:
        dense_check(plan2, res2, config)
    stability(current1, world2, plan2, res2)
    print(json.dumps({"peak_rss_mb": round(peak_mb(), 1)}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--province", action="store_true", help="1,000,000 households x 100,000 cadres")
    ap.add_argument("--size", nargs=2, type=int, metavar=("HOUSEHOLDS", "CADRES"))
    ap.add_argument("--towns", type=int, help="number of towns (default: the district's 10; province 1,000)")
    ap.add_argument("--churn", type=float, default=0.05)
    ap.add_argument("--no-check", action="store_true", help="skip the dense Hungarian check (district only)")
    args = ap.parse_args(argv)
    if args.province or args.size:
        n_h, n_c = args.size or (1_000_000, 100_000)
        n_towns = args.towns or 1000
        towns = [f"T{i:04d}" for i in range(n_towns)]
        n_county = max(1, round(n_c * RANK_SHARE["county"]))
        n_cases = round(n_county * 49 / 38)
        per = -(-n_h // n_c)  # households per cadre on average, rounded up
        config = PairingConfig(max_households={"county": per + 2, "section": 2 * per, "ordinary": 2 * per})
        print(json.dumps({"config": config.as_dict()}, ensure_ascii=False))
        run(n_h, n_c, n_cases, towns, config, args.churn)
    else:
        towns = district_towns()[: args.towns] if args.towns else district_towns()
        config = PairingConfig()
        print(json.dumps({"config": config.as_dict()}, ensure_ascii=False))
        run(
            1457,
            1457,
            49,
            towns,
            config,
            args.churn,
            rank_counts={"county": 38, "section": 1088, "ordinary": 331},
            check=not args.no_check,
        )


if __name__ == "__main__":
    main()
