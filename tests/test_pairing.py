"""Pairing: the programme's rules, checked on small warehouses and on the pure optimiser."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy.optimize import linear_sum_assignment

from rosterlink import warehouse
from rosterlink.core.idnumber import make
from rosterlink.pairing import rebuild as pairing
from rosterlink.pairing.plan import plan_night
from rosterlink.pairing.rebuild import plan_ends, rebuild
from rosterlink.pairing.solve import PairingConfig, solve
from rosterlink.warehouse import schema

from loaded_rows import rows_read

NIGHT1 = dt.date(2026, 11, 20)
NIGHT2 = dt.date(2026, 11, 21)
NIGHT3 = dt.date(2026, 11, 22)
RECEIVED = dt.datetime(2026, 11, 19, 16, 30)


# --- building warehouses -----------------------------------------------------------------------------
def _hid(seq: int) -> str:
    return make("370406", dt.date(1950, 1, 1) + dt.timedelta(days=seq % 3000), seq % 999 + 1)


def _cid(seq: int) -> str:
    return make("370406", dt.date(1975, 1, 1) + dt.timedelta(days=seq % 3000), seq % 999 + 1)


def H(key: str, town: str = "山城街道", status: str = "active", seq: int | None = None) -> dict:
    n = seq if seq is not None else int("".join(ch for ch in key if ch.isdigit()) or 0)
    return {
        "household_key": key,
        "head_name": f"户主{key}",
        "head_id_number": _hid(n),
        "town": town,
        "village": "一村",
        "status": status,
    }


def C(
    key: str,
    rank: str = "section",
    unit: str = "县委办",
    town: str = "山城街道",
    status: str = "active",
    seq: int | None = None,
) -> dict:
    n = seq if seq is not None else int("".join(ch for ch in key if ch.isdigit()) or 0)
    return {
        "cadre_key": key,
        "name": f"干部{key}",
        "id_number": _cid(n),
        "rank": rank,
        "unit": unit,
        "town": town,
        "status": status,
    }


def K(key: str, town: str = "山城街道", status: str = "open") -> dict:
    return {"case_key": key, "case_number": f"XF-{key}", "town": town, "status": status}


def P(cadre: str, kind: str, target: str, since: dt.date = NIGHT1, made: str = "new_target") -> dict:
    return {
        "cadre_key": cadre,
        "target_kind": kind,
        "target_key": target,
        "valid_from": since,
        "valid_to": None,
        "end_reason": None,
        "made_reason": made,
        "cost": 0,
        "cost_detail": "{}",
        "run_id": "seed",
    }


def connect(tmp_path, name: str = "w.db") -> sa.Engine:
    return warehouse.connect(f"sqlite:///{tmp_path}/{name}")


def add(eng: sa.Engine, households=(), cadres=(), cases=(), pairs=()) -> None:
    with eng.begin() as conn:
        for table, rows in (
            (schema.household, households),
            (schema.cadre, cadres),
            (schema.petition_case, cases),
            (schema.pairing, pairs),
        ):
            if rows:
                conn.execute(table.insert(), list(rows))


def set_status(eng: sa.Engine, kind: str, key: str, status: str) -> None:
    table, col = {
        "household": (schema.household, "household_key"),
        "cadre": (schema.cadre, "cadre_key"),
        "case": (schema.petition_case, "case_key"),
    }[kind]
    with eng.begin() as conn:
        conn.execute(table.update().where(table.c[col] == key).values(status=status))


def add_pins(eng: sa.Engine, pins: list[dict], file_id: int | None = None) -> int:
    """A pin sheet as the load stage leaves it: id_number = cadre's ID, targets in attrs."""
    with eng.begin() as conn:
        fid = conn.execute(
            schema.intake_file.insert().values(
                department="organization",
                file_name=f"结对固定名单{len(pins)}-{random.random()}.xlsx",
                sha256="0" * 64,
                size_bytes=1,
                status="loaded",
                received_at=RECEIVED,
            )
        ).inserted_primary_key[0]
        for i, pin in enumerate(pins, 3):
            attrs = {k: v for k, v in pin.items() if k in ("target_id_number", "target_case_number") and v}
            conn.execute(
                schema.source_record.insert().values(
                    file_id=fid,
                    sheet="Sheet1",
                    row_number=i,
                    department="organization",
                    roster="pin",
                    entity_kind="pin",
                    person_name="某干部",
                    id_number=pin.get("cadre_id_number"),
                    attrs=json.dumps(attrs, ensure_ascii=False),
                    loaded_at=RECEIVED,
                )
            )
    return fid


def table(eng: sa.Engine) -> pd.DataFrame:
    with eng.connect() as conn:
        rows = conn.execute(sa.select(schema.pairing).order_by(schema.pairing.c.pairing_id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in schema.pairing.columns])


def current(eng: sa.Engine) -> pd.DataFrame:
    t = table(eng)
    return t[t["valid_to"].isna()].reset_index(drop=True)


def cadres_of(eng: sa.Engine) -> pd.DataFrame:
    with eng.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(schema.cadre)).mappings().all())


def household_loads(eng: sa.Engine) -> dict[str, int]:
    cur = current(eng)
    cad = cadres_of(eng)
    active = cad.loc[cad["status"] == "active", "cadre_key"]
    counts = cur[cur["target_kind"] == "household"].groupby("cadre_key").size()
    return {k: int(counts.get(k, 0)) for k in active}


def assert_rules(eng: sa.Engine) -> None:
    """Every active household once, every open case once with a county leader, nothing on inactive."""
    cur = current(eng)
    with eng.connect() as conn:
        hh = pd.DataFrame(conn.execute(sa.select(schema.household)).mappings().all())
        cs = (
            pd.DataFrame(conn.execute(sa.select(schema.petition_case)).mappings().all())
            if conn.execute(sa.select(sa.func.count()).select_from(schema.petition_case)).scalar()
            else None
        )
    cad = cadres_of(eng).set_index("cadre_key")
    per_h = cur[cur["target_kind"] == "household"].groupby("target_key").size()
    for key, status in zip(hh["household_key"], hh["status"], strict=True):
        assert per_h.get(key, 0) == (1 if status == "active" else 0), key
    if cs is not None:
        per_c = cur[cur["target_kind"] == "case"].groupby("target_key").size()
        for key, status in zip(cs["case_key"], cs["status"], strict=True):
            assert per_c.get(key, 0) == (1 if status == "open" else 0), key
        leaders = cur.loc[cur["target_kind"] == "case", "cadre_key"]
        assert (cad.loc[leaders, "rank"] == "county").all()
    assert (cad.loc[cur["cadre_key"], "status"] == "active").all()


# --- first night ---------------------------------------------------------------------------------------
def test_first_night_pairs_every_household_once_and_every_case_with_one_county_leader(tmp_path):
    eng = connect(tmp_path)
    towns = ["山城街道", "店子镇", "西集镇"]
    add(
        eng,
        households=[H(f"H{i:03d}", towns[i % 3]) for i in range(1, 25)],
        cadres=[
            C(
                f"C{i:03d}",
                "county" if i <= 3 else "section" if i <= 18 else "ordinary",
                unit=f"单位{i % 4}",
                town=towns[(i + 1) % 3],
            )
            for i in range(1, 25)
        ],
        cases=[K(f"K{i:03d}", towns[i % 3]) for i in range(1, 6)],
    )
    summary = rebuild(eng, NIGHT1, "run-1")
    assert_rules(eng)
    assert summary["made"] == {"new_target": 29}
    assert summary["households_without_cadre"] == 0
    assert summary["cases_without_leader"] == 0
    assert summary["pairs_on_inactive"] == 0
    assert summary["targets_with_several_pairs"] == 0
    assert set(household_loads(eng).values()) == {1}  # 24 households, 24 cadres: one each
    cur = current(eng)
    case_loads = cur[cur["target_kind"] == "case"].groupby("cadre_key").size()
    assert len(case_loads) == 3
    assert set(case_loads) <= {1, 2}
    # every pair says why it was made and what it cost, part by part
    for row in cur.itertuples():
        detail = json.loads(row.cost_detail)
        assert set(detail) == {"town", "rank", "unit", "load"}
        assert row.cost == sum(detail.values())
        assert row.made_reason == "new_target"
        assert row.valid_from == NIGHT1
        assert row.run_id == "run-1"
    json.dumps(summary)  # JSON-able


def test_reference_district_every_cadre_one_household_county_cadres_lead_one_or_two_cases(tmp_path):
    eng = connect(tmp_path)
    towns = [
        "山城街道",
        "店子镇",
        "西集镇",
        "桑村镇",
        "北庄镇",
        "城头镇",
        "徐庄镇",
        "水泉镇",
        "冯卯镇",
        "凫城镇",
    ]
    rng = random.Random(5)
    w_h = [rng.uniform(0.5, 1.5) for _ in towns]
    w_c = [w * rng.uniform(0.7, 1.3) for w in w_h]
    ranks = ["county"] * 38 + ["section"] * 1088 + ["ordinary"] * 331
    rng.shuffle(ranks)
    add(
        eng,
        households=[H(f"H{i:06d}", rng.choices(towns, w_h)[0]) for i in range(1, 1458)],
        cadres=[
            C(f"C{i:06d}", ranks[i - 1], unit=f"单位{rng.randrange(60)}", town=rng.choices(towns, w_c)[0])
            for i in range(1, 1458)
        ],
        cases=[K(f"K{i:06d}", rng.choice(towns)) for i in range(1, 50)],
    )
    summary = rebuild(eng, NIGHT1, "run-1")
    assert_rules(eng)
    loads = household_loads(eng)
    assert len(loads) == 1457
    assert set(loads.values()) == {1}
    cur = current(eng)
    case_loads = cur[cur["target_kind"] == "case"].groupby("cadre_key").size()
    assert len(case_loads) == 38
    assert set(case_loads) == {1, 2}
    assert case_loads.sum() == 49
    assert all(v["spread"] == 0 for v in summary["household_load_spread"].values())
    assert 0.5 < summary["same_town_share"] < 1.0  # towns differ in size: some households cross
    assert summary["cost"]["optimal"]
    assert summary["cost"]["lower_bound"] <= summary["cost"]["total"]


def test_loads_balance_within_one_and_county_cadres_carrying_cases_carry_fewer(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 21)],
        cadres=[C("C001", "county")] + [C(f"C{i:03d}", "section") for i in range(2, 8)],
        cases=[K("K001")],
    )
    cfg = PairingConfig(max_households={"county": 10, "section": 10, "ordinary": 10})
    summary = rebuild(eng, NIGHT1, "run-1", cfg)
    assert_rules(eng)
    loads = household_loads(eng)
    sections = [v for k, v in loads.items() if k != "C001"]
    assert max(sections) - min(sections) <= 1
    assert loads["C001"] == 2
    assert set(sections) == {3}
    assert summary["household_load_spread"]["section"]["spread"] == 0


def test_per_rank_limits_are_configuration(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 9)],
        cadres=[C("C001", "county"), C("C002", "section"), C("C003", "ordinary")],
    )
    rebuild(eng, NIGHT1, "run-1", PairingConfig(max_households={"county": 1, "section": 4, "ordinary": 3}))
    assert household_loads(eng) == {"C001": 1, "C002": 4, "C003": 3}


def test_same_town_is_preferred_and_its_share_reported(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}", "店子镇" if i < 6 else "西集镇") for i in range(1, 9)],
        cadres=[C(f"C{i:03d}", town="店子镇" if i < 4 else "西集镇") for i in range(1, 9)],
    )
    summary = rebuild(eng, NIGHT1, "run-1")
    assert_rules(eng)
    assert set(household_loads(eng).values()) == {1}
    cur = current(eng).merge(
        pd.DataFrame([H(f"H{i:03d}", "店子镇" if i < 6 else "西集镇") for i in range(1, 9)]),
        left_on="target_key",
        right_on="household_key",
    )
    cad_town = cadres_of(eng).set_index("cadre_key")["town"]
    same = (cur["town"] == cad_town.loc[cur["cadre_key"]].to_numpy()).sum()
    assert same == 6  # 3 in 店子镇 (only 3 cadres there) + all 3 of 西集镇
    assert summary["same_town_share"] == pytest.approx(6 / 8)
    cross = cur[cur["town"] != cad_town.loc[cur["cadre_key"]].to_numpy()]
    assert all(json.loads(d)["town"] == PairingConfig().town_penalty for d in cross["cost_detail"])


# --- later nights: dynamic management and stability --------------------------------------------------------
def _two_unit_world(eng: sa.Engine) -> None:
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 7)],
        cadres=[
            C("C001", unit="县委办"),
            C("C002", unit="县委办"),
            C("C003", unit="财政局"),
            C("C004", unit="财政局"),
            C("C005", unit="教育局"),
            C("C006", unit="教育局"),
        ],
    )


def test_second_night_ends_what_must_end_keeps_the_rest_and_pairs_freed_and_new_targets(tmp_path):
    eng = connect(tmp_path)
    _two_unit_world(eng)
    rebuild(eng, NIGHT1, "run-1")
    night1 = current(eng).set_index("cadre_key")
    hh_of = night1["target_key"].to_dict()

    set_status(eng, "cadre", "C001", "departed")
    set_status(eng, "household", hh_of["C002"], "exited")
    set_status(eng, "household", hh_of["C005"], "exited")
    add(eng, households=[H("H007")])
    summary = rebuild(eng, NIGHT2, "run-2")
    assert_rules(eng)
    assert summary["ended"] == {"cadre_departed": 1, "household_exited": 2}
    assert summary["made"] == {"cadre_left": 1, "new_target": 1}
    assert summary["kept"] == 3

    everything = table(eng).set_index("pairing_id")
    for cadre in ("C003", "C004", "C006"):  # both sides still active: the very same row, untouched
        row = everything.loc[night1.loc[cadre, "pairing_id"]]
        assert row["valid_to"] is None
        assert row["cadre_key"] == cadre
        assert row["valid_from"] == NIGHT1
        assert row["run_id"] == "run-1"
    ended = (("C001", "cadre_departed"), ("C002", "household_exited"), ("C005", "household_exited"))
    for cadre, why in ended:
        row = everything.loc[night1.loc[cadre, "pairing_id"]]
        assert row["valid_to"] == NIGHT2
        assert row["end_reason"] == why
    now = current(eng).set_index("target_key")
    freed = now.loc[hh_of["C001"]]
    assert freed["cadre_key"] == "C002"  # the departed cadre's unit, since C002's household exited
    assert freed["made_reason"] == "cadre_left"
    assert json.loads(freed["cost_detail"])["unit"] < 0
    assert now.loc["H007", "cadre_key"] == "C005"
    assert now.loc["H007", "made_reason"] == "new_target"
    assert len(table(eng)) == 8  # history kept: 6 first-night rows + 2 new


def test_a_case_whose_leader_departs_goes_to_a_county_cadre_of_the_same_unit(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 5)],
        cadres=[
            C("C001", "county", "县委办"),
            C("C002", "county", "县委办"),
            C("C003", "county", "财政局"),
            C("C004", "county", "教育局"),
            C("C005", "section", "县委办"),
        ],
        cases=[K("K001"), K("K002")],
        pairs=[
            P("C001", "case", "K001"),
            P("C003", "case", "K002"),
            P("C001", "household", "H001"),
            P("C002", "household", "H002"),
            P("C003", "household", "H003"),
            P("C004", "household", "H004"),
        ],
    )
    set_status(eng, "cadre", "C001", "departed")
    summary = rebuild(eng, NIGHT2, "run-2")
    assert_rules(eng)
    now = current(eng).set_index(["target_kind", "target_key"])
    assert now.loc[("case", "K001"), "cadre_key"] == "C002"
    assert now.loc[("case", "K001"), "made_reason"] == "cadre_left"
    assert now.loc[("case", "K002"), "cadre_key"] == "C003"  # untouched
    assert now.loc[("household", "H001"), "cadre_key"] == "C005"  # the only cadre left without one
    assert summary["ended"] == {"cadre_departed": 2}
    assert summary["cases_without_leader"] == 0


def test_a_pair_is_kept_when_the_cadre_changes_rank_but_a_demoted_case_leader_is_replaced(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H("H001"), H("H002")],
        cadres=[C("C001", "county"), C("C002", "county")],
        cases=[K("K001")],
        pairs=[P("C001", "household", "H001"), P("C002", "household", "H002"), P("C001", "case", "K001")],
    )
    with eng.begin() as conn:
        conn.execute(schema.cadre.update().where(schema.cadre.c.cadre_key == "C001").values(rank="section"))
    summary = rebuild(eng, NIGHT2, "run-2")
    assert_rules(eng)
    now = current(eng).set_index("target_key")
    assert now.loc["H001", "cadre_key"] == "C001"
    assert now.loc["H001", "valid_from"] == NIGHT1
    assert now.loc["K001", "cadre_key"] == "C002"
    assert summary["ended"] == {"leader_not_county": 1}
    assert summary["kept"] == 2


def test_stability_beats_the_optimum(tmp_path):
    """A cross-town pair whose sides are active stays even when a same-town cadre is now free."""
    eng = connect(tmp_path)
    add(
        eng,
        households=[H("H001", "店子镇")],
        cadres=[C("C001", town="西集镇")],
        pairs=[P("C001", "household", "H001")],
    )
    add(eng, cadres=[C("C002", town="店子镇")])
    summary = rebuild(eng, NIGHT2, "run-2")
    now = current(eng)
    assert len(now) == 1
    assert now.loc[0, "cadre_key"] == "C001"
    assert now.loc[0, "run_id"] == "seed"
    assert summary["made"] == {}
    assert summary["kept"] == 1


def test_running_the_same_night_twice_changes_nothing(tmp_path):
    eng = connect(tmp_path)
    _two_unit_world(eng)
    rebuild(eng, NIGHT1, "run-1")
    before = table(eng)
    again = rebuild(eng, NIGHT1, "run-1-retry")
    assert again["made"] == {}
    assert again["ended"] == {}
    assert again["kept"] == 6
    pd.testing.assert_frame_equal(before, table(eng))


def test_plan_ends_counts_what_would_end_without_writing(tmp_path):
    eng = connect(tmp_path)
    _two_unit_world(eng)
    add(eng, cadres=[C("C007", "county")], cases=[K("K001")])
    rebuild(eng, NIGHT1, "run-1")
    hh_of = current(eng).set_index("cadre_key")["target_key"]
    set_status(eng, "cadre", "C001", "departed")
    set_status(eng, "household", hh_of["C003"], "exited")
    set_status(eng, "case", "K001", "closed")
    before = table(eng)
    with eng.connect() as conn:
        plan = plan_ends(conn, NIGHT2)
    assert plan["total_current"] == 7  # 6 households + 1 case
    assert plan["by_reason"] == {"cadre_departed": 1, "case_closed": 1, "household_exited": 1}
    assert plan["ending"] == 3
    assert plan["share"] == pytest.approx(3 / 7)
    pd.testing.assert_frame_equal(before, table(eng))
    assert rebuild(eng, NIGHT2, "run-2")["ended"] == plan["by_reason"]


def test_plan_ends_counts_every_reason_in_the_database_as_the_rebuild_then_ends_them(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 9)],
        cadres=[C("C001", "county"), C("C002", "county"), *(C(f"C{i:03d}") for i in range(3, 7))],
        cases=[K("K001"), K("K002")],
    )
    rebuild(eng, NIGHT1, "run-1")
    cur = current(eng)
    hh_of = cur[cur["target_kind"] == "household"].groupby("cadre_key")["target_key"].apply(sorted)
    leader = cur[cur["target_kind"] == "case"].set_index("target_key")["cadre_key"]
    set_status(eng, "cadre", "C003", "departed")  # cadre_departed
    set_status(eng, "household", hh_of["C004"][0], "exited")  # household_exited
    set_status(eng, "case", "K001", "closed")  # case_closed
    with eng.begin() as conn:
        demoted = leader["K002"]  # leader_not_county: the case's leader is no longer county-level
        conn.execute(schema.cadre.update().where(schema.cadre.c.cadre_key == demoted).values(rank="section"))
        gone = hh_of["C005"][0]  # target_missing: the household's row is gone
        conn.execute(schema.household.delete().where(schema.household.c.household_key == gone))
    # superseded: a second pair for a household whose own pair holds
    exited, mine = hh_of["C004"][0], cur[cur["target_kind"] == "household"]
    held = mine[~mine["cadre_key"].isin(["C003", "C006"]) & ~mine["target_key"].isin([exited, gone])]
    add(eng, pairs=[P("C006", "household", held["target_key"].iloc[0], NIGHT2)])
    with rows_read(eng) as read, eng.connect() as conn:
        plan = plan_ends(conn, NIGHT2)
    assert set(plan["by_reason"]) == {
        "cadre_departed",
        "case_closed",
        "household_exited",
        "leader_not_county",
        "superseded",
        "target_missing",
    }
    assert plan["total_current"] == len(cur) + 1
    assert plan["ending"] == sum(plan["by_reason"].values())
    # counted in the database: no pair was read into memory
    assert (read["pairing_id"], read["household_key"]) == (0, 0)
    # the full plan of the rebuild ends exactly these
    assert rebuild(eng, NIGHT2, "run-2")["ended"] == plan["by_reason"]


def test_a_target_left_unplaced_when_its_cadre_departed_still_prefers_that_unit_later(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H("H001"), H("H002")],
        cadres=[C("C001", unit="县委办"), C("C002", unit="财政局")],
        pairs=[P("C001", "household", "H001"), P("C002", "household", "H002")],
    )
    cfg = PairingConfig(max_households={"section": 1})
    set_status(eng, "cadre", "C001", "departed")
    second = rebuild(eng, NIGHT2, "run-2", cfg)
    assert second["unplaced"]["household"] == ["H001"]  # C002 is full
    add(eng, cadres=[C("C003", unit="教育局"), C("C004", unit="县委办")])
    third = rebuild(eng, NIGHT3, "run-3", cfg)
    now = current(eng).set_index("target_key")
    assert now.loc["H001", "cadre_key"] == "C004"
    assert now.loc["H001", "made_reason"] == "cadre_left"
    assert third["made"] == {"cadre_left": 1}


def test_a_target_with_two_current_pairs_keeps_the_older_one(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H("H001")],
        cadres=[C("C001"), C("C002")],
        pairs=[P("C001", "household", "H001"), P("C002", "household", "H001")],
    )
    summary = rebuild(eng, NIGHT2, "run-2")
    assert summary["ended"] == {"superseded": 1}
    assert summary["kept"] == 1
    assert current(eng)["cadre_key"].tolist() == ["C001"]
    assert_rules(eng)


# --- a settled night -------------------------------------------------------------------------------------
def test_a_settled_night_keeps_every_pair_without_reading_them_and_says_what_a_full_rebuild_says(
    tmp_path, caplog
):
    eng = connect(tmp_path)
    add(eng, **_world_rows(5))
    add(eng, households=[H("H0200", "凫城镇")])  # a town no cadre is linked to
    first = rebuild(eng, NIGHT1, "run-1")
    assert first["unplaced_total"] == 0
    add(eng, cadres=[C("C0100", "county", town="凫城镇")])  # a new cadre: nothing ends, nothing waits
    before = table(eng)
    with rows_read(eng) as read, caplog.at_level(logging.INFO, logger="rosterlink.pairing.rebuild"):
        with eng.connect() as conn:
            ends = plan_ends(conn, NIGHT2)  # the status stage's question
        quiet = rebuild(eng, NIGHT2, "run-2")
    pd.testing.assert_frame_equal(before, table(eng))  # every pair kept, nothing written
    assert ends == {"as_of": "2026-11-21", "total_current": 68, "ending": 0, "by_reason": {}, "share": 0.0}
    assert "pairing: nothing ends and nothing waits for a cadre" in caplog.text
    # neither a pair nor a household was read into memory (only counted in the database)
    assert (read["pairing_id"], read["household_key"]) == (0, 0)
    # what the full rebuild says of the same night, on the same warehouse (rolled back)
    with eng.connect() as conn, conn.begin() as tx:
        full, ended, made = pairing.full_rebuild(conn, NIGHT2, "run-2", PairingConfig())
        tx.rollback()
    assert (ended, made) == (0, 0)
    assert {k: v for k, v in quiet.items() if k not in ("seconds", "ended_total", "made_total")} == full
    assert (quiet["ended_total"], quiet["made_total"], quiet["kept"]) == (0, 0, 68)
    assert quiet["household_load_spread"] != first["household_load_spread"]  # the new cadre counts


def _churn(eng: sa.Engine, rng: random.Random, night: int) -> None:
    """A night's changes: cadres leave or are demoted, households exit or arrive, cases close or
    open, a cadre joins; now and then a second pair for a target, or a target's row gone."""
    cur = current(eng)
    cadres = sorted(cadres_of(eng)["cadre_key"])
    for key in rng.sample(cadres, 3):
        set_status(eng, "cadre", key, "departed")
    households = sorted(cur.loc[cur["target_kind"] == "household", "target_key"])
    for key in rng.sample(households, 4):
        set_status(eng, "household", key, "exited")
    cases = sorted(cur.loc[cur["target_kind"] == "case", "target_key"])
    set_status(eng, "case", rng.choice(cases), "closed")
    leader = cur.loc[cur["target_kind"] == "case", "cadre_key"].iloc[0]
    with eng.begin() as conn:
        conn.execute(schema.cadre.update().where(schema.cadre.c.cadre_key == leader).values(rank="section"))
        if night == 2:
            gone = households[-1]
            conn.execute(schema.household.delete().where(schema.household.c.household_key == gone))
    add(
        eng,
        households=[
            H(f"H{900 + 10 * night + i}", rng.choice(["山城街道", "店子镇", "新城"])) for i in range(5)
        ],
        cadres=[C(f"C{900 + night}", rng.choice(["county", "section"]), unit=f"单位{rng.randrange(5)}")],
        cases=[K(f"K{900 + night}", "店子镇")],
        pairs=[P(rng.choice(cadres), "household", households[0], NIGHT1)] if night == 2 else [],
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_night_planned_in_the_database_writes_and_says_what_the_whole_plan_does(tmp_path, seed):
    """The same nights on two warehouses: one rebuilt as the nightly task does (the plan asked of
    the database), one by the whole plan over the whole state; the same pairs, the same summaries."""
    rng_rows = _world_rows(seed)
    cfg = PairingConfig(max_households={"county": 2, "section": 2, "ordinary": 2}) if seed % 2 else None
    fast, whole = connect(tmp_path, "fast.db"), connect(tmp_path, "whole.db")
    for eng in (fast, whole):
        add(eng, **rng_rows)
    for night, day in ((1, NIGHT1), (2, NIGHT2), (3, NIGHT3), (4, NIGHT3 + dt.timedelta(days=1))):
        if night in (2, 3):
            for eng in (fast, whole):
                _churn(eng, random.Random(seed * 10 + night), night)
        with rows_read(fast) as read:
            got = rebuild(fast, day, f"run-{night}", cfg)
        # only the pairs that ended were read, and only the households that waited for a cadre
        written = table(fast)
        made_h = written[(written["run_id"] == f"run-{night}") & (written["target_kind"] == "household")]
        assert read["pairing_id"] == got["ended_total"]
        assert read["household_key"] == len(made_h) + len(got["unplaced"]["household"])
        with whole.begin() as conn:
            want, ended, made = pairing.full_rebuild(conn, day, f"run-{night}", cfg or PairingConfig())
        assert {k: v for k, v in got.items() if k not in ("seconds", "ended_total", "made_total")} == want
        assert (got["ended_total"], got["made_total"]) == (ended, made)
        pd.testing.assert_frame_equal(written, table(whole))


# --- pins --------------------------------------------------------------------------------------------------
def test_pins_are_applied_kept_worked_around_and_bad_pins_are_reported(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H(f"H{i:03d}") for i in range(1, 5)] + [H("H009", status="exited")],
        cadres=[C("C001", "county"), C("C002"), C("C003"), C("C004")],
        cases=[K("K001")],
    )
    add_pins(
        eng,
        [
            {"cadre_id_number": _cid(2), "target_id_number": _hid(3)},  # C002 -> H003
            {"cadre_id_number": _cid(1), "target_case_number": "XF-K001"},  # C001 -> K001
            {"cadre_id_number": _cid(77), "target_id_number": _hid(1)},  # no such cadre
            {"cadre_id_number": _cid(3), "target_id_number": _hid(88)},  # no such household
            {"cadre_id_number": _cid(4), "target_id_number": _hid(9)},  # household exited
            {"cadre_id_number": _cid(4)},  # no target at all
        ],
    )
    summary = rebuild(eng, NIGHT1, "run-1")
    assert_rules(eng)
    now = current(eng).set_index("target_key")
    assert now.loc["H003", "cadre_key"] == "C002"
    assert now.loc["H003", "made_reason"] == "pinned"
    assert now.loc["K001", "cadre_key"] == "C001"
    assert now.loc["K001", "made_reason"] == "pinned"
    assert json.loads(now.loc["H003", "cost_detail"])["pin"]["sheet"] == "Sheet1"
    assert set(household_loads(eng).values()) == {1}  # the optimiser worked around the pin
    assert summary["pins"]["applied"] == 2
    assert summary["pins"]["problems"] == {
        "cadre_not_found": 1,
        "no_target": 1,
        "target_inactive": 1,
        "target_not_found": 1,
    }

    second = rebuild(eng, NIGHT2, "run-2")  # nothing changed: the pins hold, same rows
    assert second["made"] == {}
    assert second["pins"]["holding"] == 2
    assert current(eng).set_index("target_key").loc["H003", "pairing_id"] == now.loc["H003", "pairing_id"]

    # a later pin sheet moves H003 to C004: the old pair ends, the pin is made, nothing else moves
    others = current(eng).set_index("target_key")
    add_pins(eng, [{"cadre_id_number": _cid(4), "target_id_number": _hid(3)}])
    third = rebuild(eng, NIGHT3, "run-3")
    assert third["ended"] == {"pin_changed": 1}
    assert third["made"] == {"pinned": 1}
    after = current(eng).set_index("target_key")
    assert after.loc["H003", "cadre_key"] == "C004"
    for key in ("H001", "H002", "H004", "K001"):
        assert after.loc[key, "pairing_id"] == others.loc[key, "pairing_id"]

    # the pinned cadre departs: the pin ends like any pair and is reported, not fatal
    set_status(eng, "cadre", "C004", "departed")
    fourth = rebuild(eng, dt.date(2026, 11, 23), "run-4")
    assert_rules(eng)
    assert fourth["ended"] == {"cadre_departed": 2}
    assert fourth["pins"]["problems"]["cadre_inactive"] >= 1


def test_a_case_pinned_to_a_cadre_who_is_not_county_level_is_reported_not_applied(tmp_path):
    eng = connect(tmp_path)
    add(eng, households=[H("H001")], cadres=[C("C001", "county"), C("C002", "section")], cases=[K("K001")])
    add_pins(eng, [{"cadre_id_number": _cid(2), "target_case_number": "XF-K001"}])
    summary = rebuild(eng, NIGHT1, "run-1")
    assert summary["pins"]["problems"] == {"leader_not_county": 1}
    assert current(eng).set_index("target_key").loc["K001", "cadre_key"] == "C001"


# --- determinism, unplaceable targets, atomicity ----------------------------------------------------------
def _world_rows(seed: int) -> dict:
    rng = random.Random(seed)
    towns = ["山城街道", "店子镇", "西集镇", "桑村镇"]
    return {
        "households": [H(f"H{i:04d}", rng.choice(towns)) for i in range(1, 61)],
        "cadres": [
            C(
                f"C{i:04d}",
                rng.choice(["county", "section", "section", "ordinary"]),
                unit=f"单位{rng.randrange(5)}",
                town=rng.choice(towns),
            )
            for i in range(1, 31)
        ],
        "cases": [K(f"K{i:04d}", rng.choice(towns)) for i in range(1, 8)],
    }


def test_same_inputs_give_byte_identical_pairing_tables(tmp_path):
    rows = _world_rows(3)
    tables = []
    for name, order in (("a.db", 1), ("b.db", -1)):  # rows inserted in opposite orders
        eng = connect(tmp_path, name)
        add(eng, **{k: v[::order] for k, v in rows.items()})
        rebuild(eng, NIGHT1, "run-1")
        for key in ("C0003", "C0017"):
            set_status(eng, "cadre", key, "departed")
        for key in ("H0005", "H0040"):
            set_status(eng, "household", key, "exited")
        add(eng, households=[H("H0100", "店子镇"), H("H0101", "西集镇")][::order])
        rebuild(eng, NIGHT2, "run-2")
        tables.append(table(eng))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0].to_csv(index=False) == tables[1].to_csv(index=False)


def test_unplaceable_targets_are_listed_not_a_crash_and_paired_once_possible(tmp_path):
    eng = connect(tmp_path)
    add(
        eng,
        households=[H("H001"), H("H002"), H("H003"), H("H004", "凫城镇")],
        cadres=[C("C001"), C("C002")],
        cases=[K("K001")],
    )
    cfg = PairingConfig(max_households={"section": 1}, allow_other_town=False)
    summary = rebuild(eng, NIGHT1, "run-1", cfg)
    assert summary["unplaced"]["case"] == ["K001"]  # no county-level cadre at all
    assert summary["cases_without_leader"] == 1
    assert len(summary["unplaced"]["household"]) == 2
    assert "H004" in summary["unplaced"]["household"]
    assert summary["unplaced_reasons"] == {"no_cadre_in_reach": 2, "no_capacity": 1}
    assert summary["households_without_cadre"] == 2
    add(eng, cadres=[C("C003", "county"), C("C004", town="凫城镇")])
    second = rebuild(eng, NIGHT2, "run-2", cfg)
    assert second["unplaced_total"] == 0
    assert second["made"] == {"new_target": 3}
    assert_rules(eng)


def test_the_rebuild_is_one_transaction(tmp_path, monkeypatch):
    eng = connect(tmp_path)
    _two_unit_world(eng)
    rebuild(eng, NIGHT1, "run-1")
    set_status(eng, "cadre", "C001", "departed")
    add(eng, households=[H("H007")])
    before = table(eng)
    seen = {}
    real_insert = pairing.insert_pairs

    def insert_then_fail(conn, rows):
        real_insert(conn, rows)
        # a reader outside the transaction still sees last night's pairs, not half of tonight's
        reader = sa.create_engine(f"sqlite:///{tmp_path}/w.db")
        with reader.connect() as other:
            seen["rows"] = other.execute(sa.select(sa.func.count()).select_from(schema.pairing)).scalar()
            seen["ended"] = other.execute(
                sa.select(sa.func.count())
                .select_from(schema.pairing)
                .where(schema.pairing.c.valid_to.is_not(None))
            ).scalar()
        reader.dispose()
        raise RuntimeError("crash after the writes")

    monkeypatch.setattr(pairing, "insert_pairs", insert_then_fail)
    with pytest.raises(RuntimeError):
        rebuild(eng, NIGHT2, "run-2")
    assert seen == {"rows": 6, "ended": 0}
    pd.testing.assert_frame_equal(before, table(eng))
    monkeypatch.undo()
    rebuild(eng, NIGHT2, "run-2")
    assert_rules(eng)


@pytest.mark.postgres
def test_on_postgresql_the_nights_behave_the_same_and_atomically(pg_url, tmp_path, monkeypatch):
    pg = warehouse.connect(pg_url)
    lite = connect(tmp_path)
    for eng in (pg, lite):
        _two_unit_world(eng)
        add(eng, cadres=[C("C007", "county")], cases=[K("K001")])
        rebuild(eng, NIGHT1, "run-1")
        set_status(eng, "cadre", "C001", "departed")
        add(eng, households=[H("H007")])
    before = table(pg)

    def fail(conn, rows):
        raise RuntimeError("crash")

    monkeypatch.setattr(pairing, "insert_pairs", fail)
    with pytest.raises(RuntimeError):
        rebuild(pg, NIGHT2, "run-2")
    pd.testing.assert_frame_equal(before, table(pg))
    monkeypatch.undo()
    for eng in (pg, lite):
        rebuild(eng, NIGHT2, "run-2")
        assert_rules(eng)
    pd.testing.assert_frame_equal(table(pg), table(lite))


# --- the optimiser alone -----------------------------------------------------------------------------------
def _dense_optimum(targets: pd.DataFrame, cadres: pd.DataFrame, cfg: PairingConfig, kind: str) -> int | None:
    """Brute force through the Hungarian method: one column per free unit of each eligible cadre."""
    big = 10**9
    slots = []
    for c in cadres.itertuples():
        if kind == "case":
            if c.rank != cfg.case_rank:
                continue
            cap, load, step, pen = cfg.max_cases, c.case_load, cfg.case_load_step, 0
        else:
            cap, load, step = cfg.household_cap(c.rank), c.household_load, cfg.load_step
            pen = cfg.rank_household_penalty.get(c.rank, 0) + cfg.case_household_penalty * c.case_load
        slots += [(c, step * (k - 1) + pen) for k in range(load + 1, cap + 1)]
    rows = targets[targets["target_kind"] == kind]
    if len(rows) == 0:
        return 0
    if len(slots) < len(rows):
        return None
    m = np.zeros((len(rows), len(slots)), dtype=np.int64)
    for i, t in enumerate(rows.itertuples()):
        for j, (c, unit_cost) in enumerate(slots):
            same = t.town is not None and t.town == c.town
            if not same and not cfg.allow_other_town:
                m[i, j] = big
                continue
            unit = -cfg.unit_bonus if t.preferred_unit is not None and t.preferred_unit == c.unit else 0
            m[i, j] = (0 if same else cfg.town_penalty) + unit + unit_cost
    r, c = linear_sum_assignment(m)
    total = int(m[r, c].sum())
    return None if total >= big else total


@pytest.mark.parametrize("seed", range(40))
def test_solve_finds_the_optimum_of_the_dense_problem(seed):
    rng = np.random.default_rng(seed)
    n_t, n_c = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    towns, units = ["A", "B", "C", None], ["u1", "u2", None]
    targets = pd.DataFrame(
        {
            "target_kind": ["household"] * n_t,
            "target_key": [f"H{i:02d}" for i in range(n_t)],
            "town": [towns[x] for x in rng.integers(0, 4, n_t)],
            "preferred_unit": [units[x] for x in rng.integers(0, 3, n_t)],
        }
    )
    cadres = pd.DataFrame(
        {
            "cadre_key": [f"C{j:02d}" for j in range(n_c)],
            "rank": [["county", "section", "ordinary"][x] for x in rng.integers(0, 3, n_c)],
            "unit": [units[x] for x in rng.integers(0, 3, n_c)],
            "town": [towns[x] for x in rng.integers(0, 4, n_c)],
            "household_load": rng.integers(0, 3, n_c),
            "case_load": rng.integers(0, 3, n_c),
        }
    )
    cfg = PairingConfig(
        town_penalty=int(rng.integers(0, 150)),
        unit_bonus=int(rng.integers(0, 60)),
        load_step=int(rng.integers(1, 120)),
        allow_other_town=bool(seed % 4),
        max_households={"county": 2, "section": 4, "ordinary": 3},
    )
    result = solve(targets, cadres, cfg)
    f = result.figures
    assert f["optimal"]
    assert f["cost_consistent"]
    assert f["lower_bound"] <= f["total_cost"] == int(result.pairs["cost"].sum())
    assert len(result.pairs) + len(result.unplaced) == n_t
    best = _dense_optimum(targets, cadres, cfg, "household")
    if best is not None:  # everyone placeable: the flow must match the Hungarian optimum exactly
        assert result.unplaced.empty
        assert f["total_cost"] == best
    comps = result.pairs[["cost_town", "cost_rank", "cost_unit", "cost_load"]].sum(axis=1)
    assert (comps == result.pairs["cost"]).all()


def test_solve_assigns_cases_to_county_cadres_optimally_before_households():
    targets = pd.DataFrame(
        {
            "target_kind": ["case"] * 5 + ["household"] * 4,
            "target_key": [f"K{i}" for i in range(5)] + [f"H{i}" for i in range(4)],
            "town": ["A", "A", "B", "C", "C", "A", "B", "B", "C"],
            "preferred_unit": [None, "u1", None, None, "u2", None, None, None, None],
        }
    )
    cadres = pd.DataFrame(
        {
            "cadre_key": ["C1", "C2", "C3", "C4"],
            "rank": ["county", "county", "county", "section"],
            "unit": ["u1", "u2", "u3", "u1"],
            "town": ["A", "B", "C", "A"],
            "household_load": [0, 0, 0, 0],
            "case_load": [0, 1, 0, 0],
        }
    )
    cfg = PairingConfig()
    result = solve(targets, cadres, cfg)
    cases = result.pairs[result.pairs["target_kind"] == "case"]
    assert set(cases["cadre_key"]) <= {"C1", "C2", "C3"}
    assert cases["cost"].sum() == _dense_optimum(targets, cadres, cfg, "case")
    loads = result.loads.set_index("cadre_key")
    assert loads["case_load"].max() <= cfg.max_cases
    hh = result.pairs[result.pairs["target_kind"] == "household"]
    cad_after = cadres.assign(case_load=loads.loc[cadres["cadre_key"], "case_load"].to_numpy())
    assert hh["cost"].sum() == _dense_optimum(targets, cad_after, cfg, "household")


def test_solve_is_deterministic_and_ignores_input_order():
    rng = np.random.default_rng(9)
    targets = pd.DataFrame(
        {
            "target_kind": "household",
            "target_key": [f"H{i:03d}" for i in range(200)],
            "town": rng.choice(["A", "B", "C"], 200),
            "preferred_unit": None,
        }
    )
    cadres = pd.DataFrame(
        {
            "cadre_key": [f"C{i:03d}" for i in range(60)],
            "rank": "section",
            "unit": rng.choice(["u1", "u2"], 60),
            "town": rng.choice(["A", "B", "C"], 60),
            "household_load": 0,
            "case_load": 0,
        }
    )
    a = solve(targets, cadres).pairs
    b = solve(targets.sample(frac=1, random_state=1), cadres.sample(frac=1, random_state=2)).pairs
    pd.testing.assert_frame_equal(a, b)


def test_plan_night_on_dataframes_keeps_every_surviving_pair():
    current = pd.DataFrame(
        {
            "pairing_id": [1, 2, 3, 4],
            "cadre_key": ["C1", "C2", "C3", "C1"],
            "target_kind": ["household", "household", "household", "case"],
            "target_key": ["H1", "H2", "H3", "K1"],
        }
    )
    households = pd.DataFrame(
        {
            "household_key": ["H1", "H2", "H3", "H4"],
            "town": "A",
            "status": ["active", "exited", "active", "active"],
        }
    )
    cases = pd.DataFrame({"case_key": ["K1"], "town": ["A"], "status": ["open"]})
    cadres = pd.DataFrame(
        {
            "cadre_key": ["C1", "C2", "C3"],
            "rank": ["county", "section", "section"],
            "unit": ["u1", "u2", "u1"],
            "town": "A",
            "status": ["active", "active", "departed"],
        }
    )
    plan = plan_night(current, households, cases, cadres)
    assert plan.kept["pairing_id"].tolist() == [1, 4]
    assert dict(zip(plan.ends["pairing_id"], plan.ends["end_reason"], strict=True)) == {
        2: "household_exited",
        3: "cadre_departed",
    }
    todo = plan.targets.set_index("target_key")
    assert todo.loc["H3", "made_reason"] == "cadre_left"
    assert todo.loc["H3", "preferred_unit"] == "u1"
    assert todo.loc["H4", "made_reason"] == "new_target"
    assert pd.isna(todo.loc["H4", "preferred_unit"])
    loads = plan.cadres.set_index("cadre_key")
    assert loads.loc["C1", "household_load"] == 1
    assert loads.loc["C1", "case_load"] == 1
    assert "C3" not in loads.index


def test_config_rejects_unknown_and_negative_settings():
    assert PairingConfig.from_mapping({"town_penalty": 10}).town_penalty == 10
    with pytest.raises(ValueError, match="unknown pairing settings"):
        PairingConfig.from_mapping({"town_penalti": 10})
    with pytest.raises(ValueError, match="load_step must be a non-negative integer"):
        PairingConfig(load_step=-1)
