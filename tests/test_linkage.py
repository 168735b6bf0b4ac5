"""Deduplication across departments: exact IDs first, the Splink model for rows without one,
the review queue for the doubtful, reviewers' decisions, stable keys and lineage.

The fixtures are small (a handful of rows), so the link stage uses the configured prior model
(``config/linkage.json``); the model trained by EM on the reference district is measured by
``benchmarks/bench_linkage.py``.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from rosterlink.link import model as linkage
from rosterlink.link import night as link
from rosterlink.link import review, review_book
from rosterlink.link.config import load_config

from loaded_rows import Loader, cadre, hh, id_number, rows_read

FULL_ID = re.compile(r"[0-9]{17}[0-9X]")
FULL_PHONE = re.compile(r"1[3-9][0-9]{9}")
P1, P2 = "13812345601", "13912345602"


@pytest.fixture
def db(sqlite_url):
    return Loader(sqlite_url)


def households(db: Loader) -> list[tuple]:
    return db.q("SELECT household_key, head_name, village FROM household ORDER BY household_key")


def categories(db: Loader, key: str) -> list[str]:
    return [
        c for (c,) in db.q(f"SELECT category FROM household_category WHERE household_key='{key}' ORDER BY 1")
    ]


def methods(db: Loader) -> list[tuple]:
    return db.q(
        "SELECT entity_key, link_method FROM source_row WHERE entity_kind='household' "
        "ORDER BY file_id, row_number"
    )


def reviews(db: Loader, status: str = "pending") -> list[tuple]:
    return db.q(f"SELECT review_id, reason FROM link_review WHERE status='{status}' ORDER BY review_id")


# --- the model finds what exact keys miss ----------------------------------------------------------
def test_guardian_without_id_and_homophone_surname_joins_the_hardship_household(db):
    db.file("civil_affairs", [hh("hardship", 1, "张秀英", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "章秀英", "orphan", phone=P1)])
    link.link(db.eng)
    assert households(db) == [("H000001", "张秀英", "东庄村")]
    assert categories(db, "H000001") == ["hardship", "orphan"]
    assert methods(db) == [("H000001", "id"), ("H000001", "model")]
    (p,) = db.q("SELECT match_probability FROM source_row WHERE link_method='model'")[0]
    assert p >= 0.9


def test_full_width_space_in_a_name_does_not_make_a_second_household(db):
    db.file("civil_affairs", [hh("hardship", 1, "王秀兰", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "王\u3000秀兰", "orphan", phone=P1)])
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]


def test_changed_phone_still_links_on_name_town_and_village(db):
    db.file("civil_affairs", [hh("hardship", 1, "李娜", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "李娜", "orphan", phone=P2)])
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]
    assert categories(db, "H000001") == ["hardship", "orphan"]


def test_same_name_in_another_village_stays_a_separate_household(db):
    db.file("civil_affairs", [hh("hardship", 1, "李娜", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "李娜", "orphan", village="西岭村", phone=P2)])
    link.link(db.eng)
    assert len(households(db)) == 2
    assert reviews(db) == []


def test_guardian_relation_gives_sex_and_keeps_a_grandmother_from_a_male_head_of_the_same_name(db):
    assert (
        linkage.feature_row(1, "李娜", None, "店子镇", None, None, {"relation": "祖母"}, load_config())["sex"]
        == "F"
    )
    db.file("civil_affairs", [hh("hardship", 1, "李娜", "hardship", phone=P1)])  # the ID says: a man
    db.file("womens_federation", [hh("orphan", None, "李娜", "orphan", phone=P2, attrs={"relation": "祖母"})])
    link.link(db.eng)
    assert len(households(db)) == 2  # with no relation given, these two are linked (test above)


def test_old_party_member_who_heads_a_hardship_household_is_one_household(db):
    db.file("civil_affairs", [hh("hardship", 7, "孙德明", "hardship")])
    db.file("organization", [hh("old_member", 7, "孙德明", "old_member", village="东庄")])
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]
    assert categories(db, "H000001") == ["hardship", "old_member"]


# --- the doubtful go to people ------------------------------------------------------------------
def test_uncertain_pair_is_queued_for_review_with_masked_records_and_evidence(db):
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    summary = link.link(db.eng)
    assert len(households(db)) == 2  # not linked on a guess
    ((review_id, reason),) = reviews(db)
    assert reason == "model_uncertain"
    (display_l, display_r, evidence, prob) = db.q(
        "SELECT display_l, display_r, evidence, match_probability FROM link_review "
        f"WHERE review_id={review_id}"
    )[0]
    a, b = json.loads(display_l), json.loads(display_r)
    assert a["name"] == b["name"] == "刘桂芳"
    assert a["id_number"].startswith("370406")
    assert "*" in a["id_number"]
    assert a["phone"] == "138****5601"
    assert not FULL_ID.search(display_l + display_r)
    assert not FULL_PHONE.search(display_l + display_r)
    levels = {field: item["level"] for field, item in json.loads(evidence).items() if isinstance(item, dict)}
    assert levels["name"] == "exact"
    assert levels["town"] == "exact"
    assert levels["village"] == "null"
    cfg = load_config().thresholds
    assert cfg.review <= prob < cfg.link
    assert summary["reviews_queued"] == 1


def test_one_id_under_two_names_is_linked_and_surfaced(db):
    db.file("civil_affairs", [hh("hardship", 3, "赵建国", "hardship")])
    db.file("organization", [hh("old_member", 3, "赵振华", "old_member")])
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]
    ((review_id, reason),) = reviews(db)
    assert reason == "id_name_conflict"
    (evidence,) = db.q(f"SELECT evidence FROM link_review WHERE review_id={review_id}")[0]
    assert set(json.loads(evidence)["names"]) == {"赵建国", "赵振华"}


def test_one_name_and_village_under_two_ids_stays_apart_and_is_surfaced(db):
    db.file("civil_affairs", [hh("hardship", 4, "王伟", "hardship")])
    db.file("organization", [hh("old_member", 5, "王伟", "old_member")])
    link.link(db.eng)
    assert len(households(db)) == 2
    assert [r for _, r in reviews(db)] == ["name_village_id_conflict"]


def test_conflicts_are_queued_once_not_every_night(db):
    db.file("civil_affairs", [hh("hardship", 3, "赵建国", "hardship")])
    db.file("organization", [hh("old_member", 3, "赵振华", "old_member")])
    link.link(db.eng)
    db.file("organization", [hh("old_member", 3, "赵振华", "old_member")])  # the same list sent again
    link.link(db.eng)
    assert [r for _, r in reviews(db)] == ["id_name_conflict"]


def test_namesakes_in_one_village_are_asked_once_per_id_and_decisions_hold_across_nights(db):
    """Three households named 王伟 in one village under three ID numbers: two questions (each ID
    against the first: as few as settle the group), never asked again when the roster comes back;
    a fourth ID adds one; a reviewer's "same" merges and "different" keeps apart on the next night."""
    roster = [hh("hardship", n, "王伟", "hardship") for n in (4, 5, 6)]
    db.file("civil_affairs", roster)
    summary = link.link(db.eng)
    assert len(households(db)) == 3
    asked = "SELECT review_id, reason, entity_key_l, entity_key_r FROM link_review ORDER BY review_id"
    conflict = "name_village_id_conflict"
    assert db.q(asked) == [(1, conflict, "H000001", "H000002"), (2, conflict, "H000001", "H000003")]
    assert summary["reviews_queued"] == summary["household"][f"review_{conflict}"] == 2
    with db.eng.begin() as conn:
        review.decide(conn, 1, "same", "民政局 李科长")
        review.decide(conn, 2, "different", "民政局 李科长")
    for night in (2, 3):  # the roster sent again, with a fourth 王伟; then again
        db.file("civil_affairs", [*roster, hh("hardship", 7, "王伟", "hardship")])
        summary = link.link(db.eng)
        if night == 2:
            assert summary["decisions_applied"] == [
                {"review_id": 1, "outcome": "merged H000002 into H000001"},
                {"review_id": 2, "outcome": "kept_apart"},
            ]
            assert summary["reviews_queued"] == summary["household"][f"review_{conflict}"] == 1
        else:
            assert summary["decisions_applied"] == []
            assert summary["reviews_queued"] == 0
            assert f"review_{conflict}" not in summary["household"]
        assert [k for k, *_ in households(db)] == ["H000001", "H000003", "H000004"]
        assert db.q(asked)[2:] == [(3, conflict, "H000001", "H000004")]
    pairs = db.q("SELECT entity_kind, reason, record_id_l, record_id_r FROM link_review")
    assert len(set(pairs)) == len(pairs) == 3


def test_a_large_review_queue_is_not_held_in_memory_by_the_link_stage(db):
    """A queue grows every night (262,500 items from one roster of namesakes): the link stage reads
    what tonight needs of it (decisions, pairs holding tonight's rows), not every item with its
    evidence. 20,000 waiting items hold 20 MB of evidence and records; a night adding one row
    allocates a fraction of that."""
    import tracemalloc

    from rosterlink.warehouse import dumps, insert_many, now, schema

    db.file("civil_affairs", [hh("hardship", 4, "王伟", "hardship")])
    db.file("organization", [hh("old_member", 5, "王伟", "old_member")])
    link.link(db.eng)
    evidence = dumps(
        {f: {"label": "姓名同音，村名相同", "level": "exact", "weight": 3.2} for f in "abcdefghijkl"}
    )
    shown = dumps({"name": "王伟", "file": "民政局/特困家庭花名册（2026年11月）.xlsx", "village": "东庄村"})
    with db.eng.begin() as conn:
        n = insert_many(
            conn,
            schema.link_review,
            (
                {
                    "entity_kind": "household",
                    "reason": "model_uncertain",
                    "record_id_l": 1,
                    "record_id_r": 1_000_000 + i,  # rows of earlier nights
                    "entity_key_l": "H000001",
                    "entity_key_r": None,
                    "display_l": shown,
                    "display_r": shown,
                    "match_weight": 0.1,
                    "match_probability": 0.5,
                    "evidence": evidence,
                    "status": "pending",
                    "created_at": now(),
                }
                for i in range(20_000)
            ),
        )
    queue_bytes = n * len((evidence + shown + shown).encode())
    assert queue_bytes > 20 * 2**20
    db.file("civil_affairs", [hh("hardship", 6, "王伟", "hardship")])
    tracemalloc.start()
    try:
        summary = link.link(db.eng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["reviews_queued"] == 1
    assert peak < queue_bytes / 10, f"the link stage peaked at {peak / 2**20:.1f} MB"


def _conflicts_queued_before_migration_0008_keep_their_signature(url: str) -> None:
    """Reviews queued before the ``signature`` column (only in their evidence) get, from migration
    0008, the signature the link stage gives: the same conflicts are still never queued again."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from rosterlink import warehouse
    from rosterlink.core.paths import SQL_DIR
    from rosterlink.link.state import load_night

    db = Loader(url)
    db.file("civil_affairs", [hh("hardship", n, "王伟", "hardship") for n in (4, 5)])
    db.file("organization", [hh("old_member", 4, "王卫", "old_member")])  # ID 4 under another name
    link.link(db.eng)
    queued = "SELECT review_id, reason, signature, evidence FROM link_review ORDER BY review_id"
    before = db.q(queued)
    assert [(r, bool(sig)) for _, r, sig, _ in before] == [
        ("id_name_conflict", True),
        ("name_village_id_conflict", True),
    ]
    cfg = Config()
    cfg.set_main_option("script_location", str(SQL_DIR / "migrations"))
    with db.eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    assert "signature" not in {c["name"] for c in sa.inspect(db.eng).get_columns("link_review")}
    warehouse.migrate(db.eng)
    assert db.q(queued) == before
    with db.eng.begin() as conn:
        night = load_night(conn, load_config())
        kind = night.kinds["household"]
        for _, reason, _, evidence in before:  # the same conflicts, about other rows
            assert night.reviews.add(kind, reason, 2, 3, signature=json.loads(evidence)["signature"])
        night.reviews.add(kind, "name_village_id_conflict", 1, 3, signature=["another pair of IDs"])
        night.reviews.settle(conn, night.kinds)
        assert [(x.left, x.right) for x in night.reviews.new] == [(1, 3)]
        assert dict(kind.stats) == {"review_name_village_id_conflict": 1}


def test_conflicts_queued_before_migration_0008_keep_their_signature_on_sqlite(sqlite_url):
    _conflicts_queued_before_migration_0008_keep_their_signature(sqlite_url)


@pytest.mark.postgres
def test_conflicts_queued_before_migration_0008_keep_their_signature_on_postgresql(pg_url):
    _conflicts_queued_before_migration_0008_keep_their_signature(pg_url)


def _keys_on_the_rows_move_to_their_lineage_in_migration_0013(url: str) -> None:
    """A warehouse from before 0013 kept each row's key on the row and in its lineage. Migrated, the
    lineage holds every key the rows held (a row with no lineage gets one, a lineage whose key
    disagreed takes the row's), the column is gone, and the next night links on the same keys."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from rosterlink import warehouse
    from rosterlink.core.paths import SQL_DIR

    db = Loader(url)
    db.file("civil_affairs", [hh("hardship", n, name, "hardship") for n, name in ((1, "王伟"), (2, "李娜"))])
    db.file("organization", [hh("old_member", 3, "赵六", "old_member")])
    link.link(db.eng)
    lineage = "SELECT file_id, sheet, row_number, entity_kind, entity_key FROM source_row ORDER BY 1, 2, 3"
    before = db.q(lineage)
    assert [k for *_, k in before] == ["H000001", "H000002", "H000003"]
    cfg = Config()
    cfg.set_main_option("script_location", str(SQL_DIR / "migrations"))
    with db.eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    assert db.q("SELECT entity_key FROM source_record ORDER BY record_id") == [(k,) for *_, k in before]
    with db.eng.begin() as conn:  # what an older warehouse may hold: a key the lineage lacks or disagrees on
        conn.execute(sa.text("DELETE FROM source_row WHERE entity_key = 'H000002'"))
        conn.execute(sa.text("UPDATE source_row SET entity_key = 'H000009' WHERE entity_key = 'H000003'"))
    warehouse.migrate(db.eng)
    assert "entity_key" not in {c["name"] for c in sa.inspect(db.eng).get_columns("source_record")}
    assert db.q(lineage) == before
    db.file("civil_affairs", [hh("hardship", 2, "李娜", "hardship"), hh("hardship", 4, "孙七", "hardship")])
    summary = link.link(db.eng)
    assert summary["rows_linked"] == 2
    assert [k for *_, k in db.q(lineage)] == ["H000001", "H000002", "H000003", "H000002", "H000004"]


def test_keys_on_the_rows_move_to_their_lineage_in_migration_0013_on_sqlite(sqlite_url):
    _keys_on_the_rows_move_to_their_lineage_in_migration_0013(sqlite_url)


@pytest.mark.postgres
def test_keys_on_the_rows_move_to_their_lineage_in_migration_0013_on_postgresql(pg_url):
    _keys_on_the_rows_move_to_their_lineage_in_migration_0013(pg_url)


# --- clustering that resists chaining --------------------------------------------------------------
def test_one_bridge_row_does_not_chain_two_households_together(db):
    # household A: a head with an ID and her ID-less guardian record; household B: the same name in
    # another village, listed twice. Plain connected components over tonight's links would make one
    # household of all five rows through the single ambiguous row X.
    db.file("civil_affairs", [hh("hardship", 1, "王秀兰", "hardship", phone=P1)])
    db.file(
        "womens_federation",
        [
            hh("orphan", None, "王秀兰", "orphan", phone=P1),
            hh("orphan", None, "王秀兰", "orphan", village="西岭村", phone=P2),
            hh("orphan", None, "王秀兰", "orphan", village="西岭村"),
        ],
    )
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001", "H000002"]
    db.file("womens_federation", [hh("orphan", None, "王秀兰", "orphan", village="东庄村", phone=P2)])  # X
    summary = link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001", "H000002"]
    assert [r for _, r in reviews(db)] == ["cluster_bridge"]
    assert summary["merges"] == []
    sizes = summary["clusters"]["size_histogram"]
    assert sum(int(n) * c for n, c in sizes.items()) == 5


def test_a_strong_link_between_two_single_row_households_merges_them_and_keeps_the_older_key(db):
    db.file(
        "womens_federation",
        [
            hh("orphan", None, "张兰", "orphan", phone=P1),
            hh("orphan", None, "张兰", "orphan", village="西庄村", phone=P2),
        ],
    )
    link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001", "H000002"]
    # the guardian moved and kept her new number: a row that is both of them
    db.file("womens_federation", [hh("orphan", None, "张兰", "orphan", village="东庄村", phone=P2)])
    summary = link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]
    assert summary["merges"] == [{"retired_key": "H000002", "surviving_key": "H000001", "reason": "model"}]
    assert db.q("SELECT retired_key, surviving_key, reason FROM household_merge") == [
        ("H000002", "H000001", "model")
    ]
    assert {k for k, _ in methods(db)} == {"H000001"}


# --- reviewers decide, and the model never overrides them -----------------------------------------------
def _uncertain_pair(db: Loader) -> int:
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    link.link(db.eng)
    ((review_id, _),) = reviews(db)
    return review_id


def test_reviewer_same_merges_on_the_next_night_and_records_the_retired_key(db):
    review_id = _uncertain_pair(db)
    with db.eng.begin() as conn:
        review.decide(conn, review_id, "same", "民政局 李科长")
    summary = link.link(db.eng)
    assert [k for k, *_ in households(db)] == ["H000001"]
    assert categories(db, "H000001") == ["hardship", "orphan"]
    assert db.q("SELECT retired_key, surviving_key, reason, review_id FROM household_merge") == [
        ("H000002", "H000001", "reviewer", review_id)
    ]
    assert summary["decisions_applied"] == [
        {"review_id": review_id, "outcome": "merged H000002 into H000001"}
    ]
    assert db.q(f"SELECT status, decision, outcome FROM link_review WHERE review_id={review_id}") == [
        ("decided", "same", "merged H000002 into H000001")
    ]


def _warehouse(db: Loader) -> dict[str, list[tuple]]:
    """What the link stage writes, as it stands."""
    return {
        table: db.q(f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("household", "household_category", "cadre", "source_row", "household_merge")
    } | {
        "source_record": db.q("SELECT record_id FROM source_record ORDER BY 1"),
        "link_review": db.q("SELECT review_id, status, decision, applied_at FROM link_review ORDER BY 1"),
    }


def test_a_quiet_night_links_nothing_without_reading_the_rows_and_keeps_the_review_workbook(
    db, tmp_path, caplog
):
    review_dir = tmp_path / "review"
    db.file(
        "civil_affairs",
        [
            hh("hardship", 1, "刘桂芳", "hardship", phone=P1),
            hh("hardship", 2, "王伟", "hardship"),
            hh("hardship", 2, "王伟", "hardship"),
        ],
    )
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])  # queued
    db.file("organization", [cadre(1, "干部1")])
    link.link(db.eng, review_dir=review_dir)
    before = _warehouse(db)
    with rows_read(db.eng) as read, caplog.at_level(logging.INFO, logger="rosterlink.link.night"):
        quiet = link.link(db.eng, review_dir=review_dir)
    # what a full pass over an unchanged warehouse reports: nothing linked, the households' sizes
    quiet.pop("seconds")
    assert quiet == {
        "rows_linked": 0,
        "rows_rejected_unknown_entity": 0,
        "created": {},
        "household": {"created": 0},
        "cadre": {"created": 0},
        "reviews_queued": 0,
        "decisions_applied": [],
        "merges": [],
        "model": {},
        "timings": {},
        "clusters": {
            "households": 3,
            "size_histogram": {"1": 2, "2": 1},
            "largest": 2,
            "model_shaped_3plus": 0,
            "density_min": None,
            "density_median": None,
            "density_below_half": 0,
        },
        "review_workbook": str(review_dir / review_book.REVIEW_WORKBOOK),
        "review_decisions_read": {"files": 1, "decisions": 0, "unreadable": 0, "not_understood": 0},
    }
    assert _warehouse(db) == before
    assert "link: nothing new tonight" in caplog.text
    # the loaded rows were not read back (only counted, in the database)
    assert read["record_id"] == 0
    # the pending review is still listed for the reviewers
    ws = load_workbook(review_dir / review_book.REVIEW_WORKBOOK)["待核实"]
    assert [r[2] for r in ws.iter_rows(min_row=2, values_only=True)] == [
        review.REVIEW_REASONS["model_uncertain"]
    ]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_second_quiet_night_counts_no_row_and_neither_reads_nor_rewrites_the_review_workbook(
    engine, request, tmp_path, monkeypatch
):
    """Issue 14: the households' sizes are kept with a digest of the rows, and the review workbook
    with a digest of the queue and of its own bytes. A quiet night after a quiet night reports the
    same sizes without grouping the rows again, does not open the workbook it wrote (no decision is
    in it) and does not write it again; a reviewer's saved workbook is read, a deleted one is
    written again, and a new row is counted."""
    from rosterlink import tasks
    from rosterlink.core.settings import Settings

    url = request.getfixturevalue("sqlite_url" if engine == "sqlite" else "pg_url")
    db = Loader(url)  # PostgreSQL does not give a deleted change's id again: SQLite may
    settings = Settings(intake_dir=tmp_path / "intake", warehouse_url=url, export_dir=tmp_path / "exports")
    review_dir = settings.review_dir
    nights = iter(range(1, 100))

    def night() -> dict:  # as the DAG's task runs the stage (its changes recorded)
        return dict(tasks.link(settings, f"run-{next(nights)}"))

    db.file(
        "civil_affairs",
        [hh("hardship", 1, "刘桂芳", "hardship", phone=P1), hh("hardship", 2, "王伟", "hardship")],
    )
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])  # queued
    night()
    first = night()  # the first quiet night counts the sizes
    path = review_dir / review_book.REVIEW_WORKBOOK
    written = (path.read_bytes(), path.stat().st_mtime_ns)
    counted, opened = [], []
    real_sizes, real_open = link.household_sizes, review_book._decisions_in  # noqa: SLF001
    monkeypatch.setattr(link, "household_sizes", lambda conn: counted.append(1) or real_sizes(conn))
    monkeypatch.setattr(review_book, "_decisions_in", lambda p: opened.append(p.name) or real_open(p))

    quiet = night()
    assert (counted, opened) == ([], [])
    assert quiet["clusters"] == first["clusters"]
    assert quiet["clusters"]["size_histogram"] == {"1": 3}
    assert quiet["review_decisions_read"] == first["review_decisions_read"]
    assert (path.read_bytes(), path.stat().st_mtime_ns) == written

    # a deleted workbook is written again, with the same queue
    path.unlink()
    night()
    ws = load_workbook(path)["待核实"]
    assert [r[2] for r in ws.iter_rows(min_row=2, values_only=True)] == [
        review.REVIEW_REASONS["model_uncertain"]
    ]

    # the reviewer fills it in and saves it: it is read, the decision applied, the queue written again
    wb = load_workbook(path)
    header = [c.value for c in wb["待核实"][1]]
    wb["待核实"].cell(2, header.index("核实结论") + 1).value = "同一"
    wb.save(path)
    decided = night()
    assert opened == [review_book.REVIEW_WORKBOOK]
    assert decided["review_decisions_read"]["decisions"] == 1
    assert load_workbook(path)["待核实"].max_row == 1  # nothing left to check
    assert decided["clusters"]["size_histogram"] == {"1": 1, "2": 1}
    # the merge moved the sizes: the next quiet night counts them again
    assert night()["clusters"] == decided["clusters"]
    assert counted == [1]

    # a new row: linked, and the sizes counted again from it
    counted.clear()
    db.file("civil_affairs", [hh("hardship", 3, "张三", "hardship")])
    assert night()["rows_linked"] == 1
    assert night()["clusters"]["size_histogram"] == {"1": 2, "2": 1}
    assert counted == [1]


def test_reviewer_different_survives_later_nights_and_rows_that_would_chain_them(db):
    # 1: the head, with her ID; 2: a guardian of the same name, no village, another phone: uncertain
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None, phone=P2)])
    link.link(db.eng)
    ((review_id, reason),) = reviews(db)
    assert reason == "model_uncertain"
    with db.eng.begin() as conn:
        review.decide(conn, review_id, "different", "妇联 王主任")
    link.link(db.eng)
    # later nights: a row that the model ties strongly to both (the village of 1, the phone of 2),
    # and the guardian's row sent again. Without the decision the first would chain 1 and 2.
    for village in ("东庄村", None):
        db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=village, phone=P2)])
        link.link(db.eng)
        assert [k for k, *_ in households(db)] == ["H000001", "H000002"]
        assert categories(db, "H000001") == ["hardship"]
        assert categories(db, "H000002") == ["orphan"]
    assert db.q("SELECT COUNT(*) FROM household_merge") == [(0,)]
    assert db.q("SELECT entity_key FROM source_row WHERE entity_kind='household' ORDER BY file_id") == [
        ("H000001",),
        ("H000002",),
        ("H000002",),
        ("H000002",),
    ]


def test_review_workbook_is_written_masked_and_its_filled_decisions_are_applied(db, tmp_path):
    review_dir = tmp_path / "review"
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    link.link(db.eng, review_dir=review_dir)
    path = review_dir / review_book.REVIEW_WORKBOOK
    wb = load_workbook(path)
    ws = wb["待核实"]
    header = [c.value for c in ws[1]]
    assert header[:4] == ["编号", "类别", "原因", "匹配概率"]
    assert "核实结论" in header
    cells = [str(c.value) for row in ws.iter_rows() for c in row if c.value is not None]
    assert not any(FULL_ID.search(v) or FULL_PHONE.search(v) for v in cells)
    assert not any(c.data_type == "f" for row in ws.iter_rows() for c in row)
    assert ws.cell(2, header.index("A 姓名") + 1).value == "刘桂芳"
    assert "核实结论" in " ".join(
        str(c.value) for c in wb["说明"]["A"]
    )  # how to fill it in, on its own sheet
    # the reviewer fills in the decision and saves the workbook
    ws.cell(2, header.index("核实结论") + 1).value = "同一"
    ws.cell(2, header.index("核实人") + 1).value = "李科长"
    wb.save(path)
    summary = link.link(db.eng, review_dir=review_dir)
    assert summary["review_decisions_read"]["decisions"] == 1
    assert [k for k, *_ in households(db)] == ["H000001"]
    (decided_by,) = db.q("SELECT decided_by FROM link_review")[0]
    assert decided_by.startswith("李科长")
    assert load_workbook(path)["待核实"].max_row == 1  # nothing left to check


@pytest.mark.slow
def test_review_cli_lists_masked_items_and_records_a_decision(db, sqlite_url):
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    link.link(db.eng)
    exe = str(Path(sys.executable).with_name("rosterlink"))
    listed = subprocess.run(
        [exe, "review", "--warehouse", sqlite_url, "list"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "刘桂芳" in listed.stdout
    assert "模型无法确定" in listed.stdout
    assert id_number(1) not in listed.stdout
    assert P1 not in listed.stdout
    ((review_id, _),) = reviews(db)
    done = subprocess.run(
        [
            exe,
            "review",
            "--warehouse",
            sqlite_url,
            "decide",
            str(review_id),
            "different",
            "--by",
            "妇联 王主任",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert db.q("SELECT status, decision, decided_by FROM link_review") == [
        ("decided", "different", "妇联 王主任")
    ]
    link.link(db.eng)
    again = subprocess.run(
        [exe, "review", "--warehouse", sqlite_url, "decide", str(review_id), "same", "--by", "someone"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2
    assert "--force" in again.stderr


# --- stable keys and lineage -------------------------------------------------------------------------
def test_model_linked_household_keeps_its_key_across_nights(db):
    db.file("civil_affairs", [hh("hardship", 1, "张秀英", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "章秀英", "orphan", phone=P1)])
    link.link(db.eng)
    db.file(
        "civil_affairs",
        [
            hh("hardship", 2, "马成", "hardship", village="北庄村"),
            hh("hardship", 1, "张秀英", "hardship", phone=P1),
        ],
    )
    db.file("womens_federation", [hh("orphan", None, "章秀英", "orphan", phone=P1)])
    link.link(db.eng)
    assert households(db) == [("H000001", "张秀英", "东庄村"), ("H000002", "马成", "北庄村")]
    assert {k for k, _ in methods(db)} == {"H000001", "H000002"}


def test_household_evidence_lists_every_row_and_department_behind_a_household(db):
    db.file("civil_affairs", [hh("hardship", 1, "张秀英", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "章秀英", "orphan", phone=P1)])
    db.file("organization", [hh("old_member", 1, "张秀英", "old_member")])
    link.link(db.eng)
    rows = db.q(
        "SELECT household_key, department, category, file_name, row_number, link_method "
        "FROM household_evidence ORDER BY file_id, row_number"
    )
    assert [(k, d, c, m) for k, d, c, _, _, m in rows] == [
        ("H000001", "civil_affairs", "hardship", "id"),
        ("H000001", "womens_federation", "orphan", "model"),
        ("H000001", "organization", "old_member", "id"),
    ]
    assert all(f.startswith(d) for (_, d, _, f, _, _) in rows)


# --- the review loop through the nightly DAG -----------------------------------------------------------
@pytest.mark.slow
def test_review_loop_through_the_nightly_dag(tmp_path, sqlite_url, run_night):
    intake = tmp_path / "intake"
    (intake / "civil_affairs").mkdir(parents=True)
    (intake / "womens_federation").mkdir(parents=True)
    head_id = id_number(2)  # a woman's ID number: the guardian is a grandmother (祖母)
    (intake / "civil_affairs" / "特困家庭.csv").write_text(
        f"户主姓名,户主身份证号,镇街,村(居),联系电话\n刘桂芳,{head_id},店子镇,东庄村,{P1}\n", encoding="utf-8"
    )
    (intake / "womens_federation" / "失亲儿童.csv").write_text(
        "儿童姓名,监护人姓名,与儿童关系,镇街,村(居),联系电话\n刘小明,刘桂芳,祖母,店子镇,,\n", encoding="utf-8"
    )
    exports = tmp_path / "exports"
    assert run_night(intake, sqlite_url, exports, as_of="2026-11-25") == "success"
    db = Loader(sqlite_url)
    assert len(households(db)) == 2
    workbook = intake / "review" / review_book.REVIEW_WORKBOOK
    wb = load_workbook(workbook)
    ws = wb["待核实"]
    header = [c.value for c in ws[1]]
    assert ws.max_row == 2
    assert ws.cell(2, header.index("原因") + 1).value == review.REVIEW_REASONS["model_uncertain"]
    ws.cell(2, header.index("核实结论") + 1).value = "同一"
    wb.save(workbook)
    # the review folder is not a department's: the workbook is never taken as a roster
    assert run_night(intake, sqlite_url, exports, as_of="2026-11-26") == "success"
    assert [k for k, *_ in households(db)] == ["H000001"]
    assert categories(db, "H000001") == ["hardship", "orphan"]
    assert db.q("SELECT COUNT(*) FROM intake_file WHERE file_name LIKE 'review/%'") == [(0,)]
    assert load_workbook(workbook)["待核实"].max_row == 1
    # the merged household is paired once, and the retired key's pair has ended
    assert db.q("SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL AND target_key='H000002'") == [(0,)]


def test_merged_household_keeps_the_cadre_of_the_household_it_absorbed(db):
    import datetime as dt

    from rosterlink import status
    from rosterlink.pairing import rebuild as pairing

    from loaded_rows import cadre

    def night(day: int) -> dict:
        as_of = dt.date(2026, 11, day)
        link.link(db.eng)
        status.refresh(db.eng, 0.10, True, as_of)
        return pairing.rebuild(db.eng, as_of, f"night-{day}")

    db.file("organization", [cadre(1, "干部甲"), cadre(2, "干部乙")])
    db.file("civil_affairs", [hh("hardship", 2, "刘桂芳", "hardship", phone=P1)])
    night(1)
    # she leaves hardship (脱困); the women's federation lists her as a guardian, without her ID
    db.file(
        "civil_affairs", [hh("hardship_adjustment", 2, "刘桂芳", "hardship", "exit", dt.date(2026, 11, 2))]
    )
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    night(2)
    ((review_id, reason),) = reviews(db)
    assert reason == "model_uncertain"
    ((guardian_cadre,),) = db.q(
        "SELECT cadre_key FROM pairing WHERE target_key='H000002' AND valid_to IS NULL"
    )
    with db.eng.begin() as conn:
        review.decide(conn, review_id, "same", "妇联 王主任")
    summary = night(3)
    assert db.q("SELECT household_key, status FROM household") == [("H000001", "active")]
    assert db.q("SELECT end_reason FROM pairing WHERE target_key='H000002'") == [("household_merged",)]
    assert db.q(
        "SELECT cadre_key, made_reason FROM pairing WHERE target_key='H000001' AND valid_to IS NULL"
    ) == [(guardian_cadre, "merged")]
    assert summary["carried_after_merge"] == 1
    assert summary["households_without_cadre"] == 0


def _truncate_sheet_xml(path: Path, keep: float = 0.6) -> None:
    """Cut the first worksheet's XML short inside a well-formed zip, as a copy interrupted while
    saving leaves it: the workbook opens, its rows break while being read."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    sheet = next(n for n in parts if n.startswith("xl/worksheets/sheet"))
    parts[sheet] = parts[sheet][: int(len(parts[sheet]) * keep)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)


def test_a_truncated_review_workbook_is_counted_unreadable_and_the_night_goes_on(db, tmp_path):
    review_dir = tmp_path / "review"
    db.file("civil_affairs", [hh("hardship", 1, "刘桂芳", "hardship", phone=P1)])
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", village=None)])
    link.link(db.eng, review_dir=review_dir)
    # a reviewer's copy, filled in, then cut short on its way back into review/
    wb = load_workbook(review_dir / review_book.REVIEW_WORKBOOK)
    ws = wb["待核实"]
    header = [c.value for c in ws[1]]
    ws.cell(2, header.index("核实结论") + 1).value = "同一"
    for r in range(3, 200):  # enough rows that the cut falls inside the rows
        ws.cell(r, 1).value = f"附注{r}"
    broken = review_dir / "待核实-李科长.xlsx"
    wb.save(broken)
    _truncate_sheet_xml(broken)
    db.file("civil_affairs", [hh("hardship", 2, "王秀兰", "hardship")])
    summary = link.link(db.eng, review_dir=review_dir)
    assert summary["review_decisions_read"]["unreadable"] == 1
    assert summary["review_decisions_read"]["decisions"] == 0  # nothing taken from a broken file
    assert [k for k, *_ in households(db)] == ["H000001", "H000002", "H000003"]
    assert [r for _, r in reviews(db)] == ["model_uncertain"]  # still waiting for a readable answer


# --- a queue bigger than people can take ------------------------------------------------------------
_NAMES = ["刘桂芳", "王秀兰", "张桂英", "李秀珍", "陈玉兰", "杨凤英", "赵淑珍", "黄秀云"]


def test_review_workbook_lists_the_most_doubtful_up_to_the_cap_and_summarises_the_rest(db, tmp_path):
    """Many same-name households: the workbook lists at most ``review_workbook_max`` items, the
    most doubtful (probability nearest 0.5; a rule's conflict before any) first, and says how many
    more wait in the warehouse; none of them is lost."""
    import dataclasses

    review_dir = tmp_path / "review"
    cfg = dataclasses.replace(load_config(), review_workbook_max=3)
    heads, guardians = [], []
    for i, name in enumerate(_NAMES):
        heads.append(hh("hardship", 10 + i, name, "hardship", phone=P1 if i % 2 else None))
        guardians.append(hh("orphan", None, name, "orphan", village=None, phone=P1 if i % 3 == 0 else None))
    db.file("civil_affairs", heads)
    db.file("womens_federation", guardians)
    db.file("organization", [hh("old_member", 40, "刘桂芳", "old_member")])  # same name and village, other ID
    link.link(db.eng, review_dir=review_dir, config=cfg)
    pending = db.q("SELECT review_id, reason, match_probability FROM link_review WHERE status='pending'")
    assert len(pending) > 3
    doubt = sorted(pending, key=lambda x: (0.0 if x[2] is None else abs(x[2] - 0.5), x[0]))
    wb = load_workbook(review_dir / review_book.REVIEW_WORKBOOK)
    ws = wb["待核实"]
    listed = [r for r in ws.iter_rows(min_row=2, values_only=True) if isinstance(r[0], int)]
    assert [r[0] for r in listed] == [x[0] for x in doubt[:3]]
    assert listed[0][2] == review.REVIEW_REASONS["name_village_id_conflict"]  # only a person can settle it
    closing = ws.cell(ws.max_row, 1).value
    assert f"共 {len(pending)} 条待核实" in closing
    assert f"另有 {len(pending) - 3} 条未列出" in closing
    assert f"其余 {len(pending) - 3} 条保留在数据库中" in " ".join(str(c.value) for c in wb["说明"]["A"])
    # decided in the workbook, the next night lists the next most doubtful ones
    header = [c.value for c in ws[1]]
    for r in range(2, 5):
        ws.cell(r, header.index("核实结论") + 1).value = "不同"
    wb.save(review_dir / review_book.REVIEW_WORKBOOK)
    summary = link.link(db.eng, review_dir=review_dir, config=cfg)
    assert summary["review_decisions_read"]["decisions"] == 3
    ws = load_workbook(review_dir / review_book.REVIEW_WORKBOOK)["待核实"]
    again = [r[0] for r in ws.iter_rows(min_row=2, values_only=True) if isinstance(r[0], int)]
    assert again == [x[0] for x in doubt[3:6]]


def test_review_list_shows_the_most_doubtful_items_up_to_its_limit_and_says_how_many_more(
    db, sqlite_url, capsys
):
    from rosterlink import cli

    names = ["刘桂芳", "王秀英", "张玉兰"]
    db.file("civil_affairs", [hh("hardship", n, name, "hardship") for n, name in enumerate(names, 1)])
    db.file("womens_federation", [hh("orphan", None, name, "orphan", village=None) for name in names])
    link.link(db.eng)
    assert len(reviews(db)) == 3
    with db.eng.connect() as conn:
        doubtful = [r.review_id for r in review.most_doubtful(conn, 2)]  # the workbook's first two

    assert cli.main(["review", "--warehouse", sqlite_url, "list", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert [int(i) for i in re.findall(r"^#(\d+) ", out, re.M)] == doubtful
    assert "2 of 3 item(s) shown" in out
    assert "1 more not shown" in out
    assert id_number(1) not in out

    assert cli.main(["review", "--warehouse", sqlite_url, "list", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^#\d+ ", out, re.M)) == 3
    assert "more not shown" not in out


# --- a later night scores what it brought, and links as scoring every row would -------------------
def _everything(eng) -> dict[str, list[tuple]]:
    """Every table the link stage writes, every column but the clock's."""
    from rosterlink.warehouse import schema

    out = {}
    for table in (
        schema.source_record,
        schema.source_row,
        schema.household,
        schema.household_category,
        schema.household_merge,
        schema.cadre,
        schema.link_review,
        schema.rejected_row,
        schema.intake_file,
    ):
        cols = [c for c in table.c if not isinstance(c.type, sa.DateTime)]
        with eng.connect() as conn:
            out[table.name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*cols[:4]))]
    return out


@pytest.mark.parametrize("seed", [5, 11, 20])
def test_a_night_links_as_the_full_pass_though_it_scores_and_clusters_only_what_it_reaches(
    tmp_path, monkeypatch, caplog, seed
):
    """Night 1 (every row new) and night 2 (a few new rows against the warehouse) of the labelled
    evaluation set, each linked twice from the same warehouse: as the stage does (scoring only the
    rows a blocking rule can pair with tonight's ID-less rows, clustering only the households
    tonight's rows and links reach), and as the full pass (every row scored, every household
    clustered). Keys, lineage, reviews (with their evidence), merges and summaries must be equal."""
    import dataclasses
    import sqlite3
    from contextlib import closing

    from rosterlink import warehouse
    from rosterlink.link import households, scoring
    from rosterlink.synthetic import linkage_eval

    evalset = linkage_eval.generate(seed=seed, scale=0.5, rates={"guardian_id_missing": 0.8})
    # term frequencies on (the entities' frame the stage builds without features); the prior model
    cfg = dataclasses.replace(load_config(), tf_min_entities=50)
    cut_db = tmp_path / "cut.db"
    cut = warehouse.connect(f"sqlite:///{cut_db}")
    scored_against = re.compile(r"scoring (\d+) rows without an ID number against (\d+) rows")
    every_row = lambda right, cfg: lambda rec: True  # noqa: E731 - the full pass: no row left out
    model_links = decisions = 0
    for night in evalset.nights():
        linkage_eval.load(cut, evalset, night)
        full_db = tmp_path / f"full-{night}.db"  # the same warehouse, copied (its WAL too)
        with closing(sqlite3.connect(cut_db)) as src, closing(sqlite3.connect(full_db)) as dst:
            src.backup(dst)
        full = warehouse.connect(f"sqlite:///{full_db}")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rosterlink.link.scoring"):
            cut_summary = link.link(cut, config=cfg)
            with monkeypatch.context() as m:
                m.setattr(scoring, "blockable", every_row)
                m.setattr(households, "reached", lambda kind, links: set(kind.members))
                full_summary = link.link(full, config=cfg)
        (right_cut, left_cut), (right_full, left_full) = [
            tuple(map(int, scored_against.search(r.getMessage()).groups()))
            for r in caplog.records
            if scored_against.search(r.getMessage())
        ]
        assert right_cut == right_full > 0
        assert left_cut < left_full  # rows were left out ...
        for summary in (cut_summary, full_summary):
            summary.pop("seconds")
            summary.pop("timings")
        assert cut_summary == full_summary  # ... and nothing the night did changed
        assert _everything(cut) == _everything(full)
        model_links += cut_summary["household"].get("rows_model", 0)
        decisions += len(cut_summary["decisions_applied"])
        full.dispose()
        # reviewers decide the first two items before the next night: one merge, one split
        with cut.begin() as conn:
            waiting = conn.exec_driver_sql(
                "SELECT review_id FROM link_review WHERE status = 'pending' ORDER BY review_id"
            ).scalars()
            for review_id, decision in zip(waiting, ("same", "different"), strict=False):
                review.decide(conn, review_id, decision, "tester")
    # the paths compared: ID-less rows linked by the model, reviewers' decisions, a review queue
    assert model_links > 20
    assert decisions == 2
    assert _everything(cut)["link_review"]


def _kept_and_paired(eng) -> tuple[set[int], set[int], int]:
    """(rows with an ID that :func:`scoring.blockable` keeps for tonight's ID-less rows, those
    Splink pairs with one of them when every pair is kept whatever its score, rows with an ID)."""
    import dataclasses

    from rosterlink.link import scoring
    from rosterlink.link.state import load_night

    cfg = load_config()
    cfg = dataclasses.replace(cfg, thresholds=dataclasses.replace(cfg.thresholds, review=0.0))
    with eng.connect() as conn:
        recs = list(load_night(conn, cfg).kinds["household"].recs.values())
    feats = {
        rec.record_id: linkage.feature_row(
            rec.record_id,
            rec.name,
            rec.id_number,
            rec.town,
            rec.village,
            rec.phone,
            {} if rec.id_number else json.loads(rec.attrs),
            cfg,
        )
        for rec in recs
    }
    right = [feats[rec.record_id] for rec in recs if not rec.id_number]
    left = [rec for rec in recs if rec.id_number]
    with linkage.Scorer(linkage.prior_parameters(cfg), cfg, None, tf=False) as scorer:
        pairs = scorer.between(linkage.frame([feats[rec.record_id] for rec in left]), linkage.frame(right))
    can_pair = scoring.blockable(right, cfg)
    kept = {rec.record_id for rec in left if can_pair(rec)}
    return kept, set(pairs["unique_id_l"].astype(int)), len(left)


@pytest.mark.parametrize("seed", [5, 11])
def test_a_row_is_left_out_of_scoring_only_when_splink_would_pair_it_with_none_of_tonights_rows(
    tmp_path, seed
):
    """Held against Splink's own blocking, on the labelled evaluation set: the rows with an ID that
    make a pair with an ID-less row (every pair kept, whatever its score) are exactly those
    :func:`scoring.blockable` keeps."""
    from rosterlink import warehouse
    from rosterlink.synthetic import linkage_eval

    evalset = linkage_eval.generate(seed=seed, scale=0.5, rates={"guardian_id_missing": 0.8})
    eng = warehouse.connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    linkage_eval.load(eng, evalset, 1)
    kept, paired, rows = _kept_and_paired(eng)
    assert kept == paired
    assert 0 < len(kept) < rows


def test_each_blocking_rule_keeps_the_rows_it_would_pair(db):
    """One row with an ID for each blocking rule, sharing only that rule's fields with the ID-less
    guardian (and one sharing none): each is kept exactly when Splink pairs it."""
    db.file("womens_federation", [hh("orphan", None, "刘桂芳", "orphan", phone=P1)])
    db.file(
        "civil_affairs",
        [
            hh("hardship", 1, "王伟", "hardship", village="西岭村", phone=P1, town="城关街道"),  # phone
            hh("hardship", 2, "柳桂芳", "hardship", village="西岭村"),  # pinyin and town
            hh("hardship", 3, "刘丽", "hardship"),  # surname, town and village
            hh("hardship", 4, "张桂芳", "hardship"),  # given name, town and village
            hh("hardship", 5, "赵六", "hardship", village="西岭村", phone=P2),  # nothing
            hh("hardship", 6, "刘桂芳", "hardship", village=None, town="城关街道"),  # nothing
        ],
    )
    kept, paired, _ = _kept_and_paired(db.eng)
    names = dict(db.q("SELECT record_id, person_name FROM source_record"))
    assert sorted(names[r] for r in paired) == sorted(["王伟", "柳桂芳", "刘丽", "张桂芳"])
    assert kept == paired


_VALUE = st.sampled_from([None, "", "甲", "乙", "丙"])


def _record(i: int, kind: str, **fields: object):
    """The ``i``-th loaded row of an entity, in load order: ``fields`` given, the rest empty."""
    from rosterlink.link.records import Record

    empty = dict.fromkeys(
        ("category", "event", "name", "id_number", "raw_id", "town", "village", "phone", "attrs", "key")
    )
    return Record(
        **{
            **empty,
            "record_id": i,
            "file_id": 10 + i,
            "sheet": "s",
            "row_number": i,
            "department": "d",
            "roster": "r",
            "kind": kind,
            "pending": False,
            **fields,
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_VALUE, st.sampled_from([None, "ID1", "ID2"]), _VALUE, _VALUE, _VALUE, _VALUE),
        min_size=1,
        max_size=6,
    )
)
def test_a_household_takes_each_column_from_its_latest_row_that_has_it(rows):
    """A household's columns (the entity table) are the most recent non-empty value of each over
    its rows in load order, and the head's name is first the one written next to an ID number:
    ``household_values`` in one pass gives what a pass per column gives."""
    from rosterlink.link.store import _latest, household_values

    recs = [
        _record(i, "household", name=name, id_number=id_, raw_id=raw, town=town, village=village, phone=phone)
        for i, (name, id_, raw, town, village, phone) in enumerate(rows, start=1)
    ]
    with_id = [x for x in recs if x.id_number]
    assert household_values(recs) == {
        "head_name": _latest([x.name for x in with_id]) or _latest([x.name for x in recs]),
        "head_id_number": _latest([x.id_number or x.raw_id for x in recs]),
        "town": _latest([x.town for x in recs]),
        "village": _latest([x.village for x in recs]),
        "phone": _latest([x.phone for x in recs]),
        "first_seen_file": recs[0].file_id,
    }


_ATTRS = st.dictionaries(
    st.sampled_from(["linked_town", "sex", "rank", "rank_title", "unit", "post", "other"]),
    _VALUE,
    max_size=4,
).map(lambda d: json.dumps(d, ensure_ascii=False))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_VALUE, st.sampled_from([None, "ID1", "ID2"]), _VALUE, _VALUE, st.none() | _ATTRS),
        min_size=1,
        max_size=6,
    )
)
def test_a_cadre_takes_each_column_from_its_latest_row_that_has_it(rows):
    """A cadre's columns (the entity table) are the most recent non-empty value of each over its
    rows in load order, those in ``attrs`` included: ``cadre_values`` in one pass, each attrs text
    parsed once, gives what a pass per column gives."""
    from rosterlink.link.store import _latest, cadre_values

    recs = [
        _record(i, "cadre", name=name, id_number=id_, raw_id=raw, phone=phone, attrs=attrs)
        for i, (name, id_, raw, phone, attrs) in enumerate(rows, start=1)
    ]
    attrs = [json.loads(x.attrs or "{}") for x in recs]
    expected = {
        "name": _latest([x.name for x in recs]),
        "id_number": _latest([x.id_number or x.raw_id for x in recs]),
        "phone": _latest([x.phone for x in recs]),
        "town": _latest([a.get("linked_town") for a in attrs]),
        "sex": _latest([a.get("sex") for a in attrs]),
        "rank": _latest([a.get("rank") for a in attrs]),
        "rank_title": _latest([a.get("rank_title") for a in attrs]),
        "unit": _latest([a.get("unit") for a in attrs]),
        "post": _latest([a.get("post") for a in attrs]),
    }
    parsed: dict[str, dict] = {}
    assert cadre_values(recs, parsed) == expected
    assert cadre_values(recs, parsed) == expected  # and again, from what the first call parsed


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_household_after_the_millionth_gets_a_key_of_its_own(backend, request):
    """Past the millionth household the keys are a digit longer (``H1000000``): the next new
    household gets the key after the highest, not one a household already holds (as text,
    ``H999999`` sorts above ``H1000000``)."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    db = Loader(url)
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 2, "李娜", "hardship")])
    link.link(db.eng)
    # the district has issued a million household keys: its two households hold the last two
    with db.eng.begin() as conn:
        for old, new in (("H000001", "H999999"), ("H000002", "H1000000")):
            conn.execute(sa.text("DELETE FROM household_category WHERE household_key = :o"), {"o": old})
            conn.execute(
                sa.text("UPDATE household SET household_key = :n WHERE household_key = :o"),
                {"o": old, "n": new},
            )
            conn.execute(
                sa.text("UPDATE source_row SET entity_key = :n WHERE entity_key = :o"), {"o": old, "n": new}
            )
    db.file("civil_affairs", [hh("hardship", 3, "赵六", "hardship")])
    link.link(db.eng)
    assert households(db) == [
        ("H1000000", "李娜", "东庄村"),
        ("H1000001", "赵六", "东庄村"),
        ("H999999", "王伟", "东庄村"),
    ]
    db.eng.dispose()
