"""Exact-key linking and statuses from explicit change rows only."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from rosterlink import status
from rosterlink.link import night as link
from rosterlink.pairing import rebuild as pairing
from rosterlink.warehouse import schema

from loaded_rows import Loader, cadre, hh


@pytest.fixture
def db(sqlite_url):
    return Loader(sqlite_url)


def test_same_id_in_two_departments_is_one_household_with_two_categories(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 2, "李娜", "hardship")])
    db.file("organization", [hh("old_member", 1, "王伟", "old_member")])
    link.link(db.eng)
    assert db.q("SELECT COUNT(*) FROM household") == [(2,)]
    assert db.q("SELECT household_key, category FROM household_category ORDER BY 1, 2") == [
        ("H000001", "hardship"),
        ("H000001", "old_member"),
        ("H000002", "hardship"),
    ]
    # lineage: every loaded row says which household it became
    assert db.q("SELECT entity_key, COUNT(*) FROM source_row GROUP BY entity_key ORDER BY 1") == [
        ("H000001", 2),
        ("H000002", 1),
    ]


def test_household_listed_twice_in_one_file_merges(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 1, "王伟", "hardship")])
    link.link(db.eng)
    assert db.q("SELECT COUNT(*) FROM household") == [(1,)]
    assert db.q("SELECT COUNT(*) FROM source_row") == [(2,)]


def test_keys_are_stable_across_nights(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    link.link(db.eng)
    db.file("civil_affairs", [hh("hardship", 2, "李娜", "hardship"), hh("hardship", 1, "王伟", "hardship")])
    link.link(db.eng)
    assert db.q("SELECT head_name, household_key FROM household ORDER BY 2") == [
        ("王伟", "H000001"),
        ("李娜", "H000002"),
    ]


def test_guardian_without_id_matches_by_name_and_village_only_among_id_less_rows(db):
    db.file(
        "womens_federation",
        [
            hh("orphan", None, "张兰", "orphan"),
            hh("orphan", None, "张兰", "orphan"),
            hh("orphan", None, "张兰", "orphan", village="西岭村"),
        ],
    )
    link.link(db.eng)
    assert db.q("SELECT COUNT(*) FROM household") == [(2,)]


def test_exit_of_a_household_nobody_listed_is_rejected_and_counts_corrected(db):
    file_id = db.file(
        "civil_affairs", [hh("hardship_adjustment", 9, "赵六", "hardship", "exit", dt.date(2026, 11, 1))]
    )
    link.link(db.eng)
    assert db.q("SELECT COUNT(*) FROM household") == [(0,)]
    assert db.q(f"SELECT rows_read, rows_loaded, rows_rejected FROM intake_file WHERE file_id={file_id}") == [
        (1, 0, 1)
    ]
    ((code, msg),) = db.q("SELECT reason_code, message FROM rejected_row")
    assert code == "household_unknown"
    assert "退出" in msg


def test_status_comes_only_from_explicit_rows_and_a_missing_row_exits_nothing(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 2, "李娜", "hardship")])
    link.link(db.eng)
    status.refresh(db.eng)
    # the next roster omits 李娜: she stays active
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    link.link(db.eng)
    status.refresh(db.eng)
    assert db.q("SELECT head_name, status FROM household ORDER BY household_key") == [
        ("王伟", "active"),
        ("李娜", "active"),
    ]
    db.file(
        "civil_affairs", [hh("hardship_adjustment", 2, "李娜", "hardship", "exit", dt.date(2026, 11, 20))]
    )
    link.link(db.eng)
    status.refresh(db.eng)
    assert db.q("SELECT head_name, status, status_since FROM household ORDER BY household_key") == [
        ("王伟", "active", None),
        ("李娜", "exited", "2026-11-20"),
    ]


def test_household_with_several_categories_stays_active_while_any_is(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    db.file("organization", [hh("old_member", 1, "王伟", "old_member")])
    db.file("civil_affairs", [hh("hardship_adjustment", 1, "王伟", "hardship", "exit", dt.date(2026, 11, 2))])
    link.link(db.eng)
    status.refresh(db.eng)
    assert db.q("SELECT category, status FROM household_category ORDER BY 1") == [
        ("hardship", "exited"),
        ("old_member", "active"),
    ]
    assert db.q("SELECT status FROM household") == [("active",)]


def test_latest_adjustment_by_date_wins_whatever_the_file_order(db):
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    db.file("civil_affairs", [hh("hardship_adjustment", 1, "王伟", "hardship", "add", dt.date(2026, 11, 10))])
    db.file("civil_affairs", [hh("hardship_adjustment", 1, "王伟", "hardship", "exit", dt.date(2026, 10, 1))])
    link.link(db.eng)
    status.refresh(db.eng)
    assert db.q("SELECT status FROM household") == [("active",)]


def test_cadre_leaves_and_case_closes_by_their_change_rows(db):
    db.file("organization", [cadre(1, "刘强"), cadre(2, "陈静")])
    db.file(
        "petition",
        [
            {
                "roster": "case",
                "entity_kind": "case",
                "case_number": "XF2026-0001",
                "person_name": "孙丽",
                "town": "店子镇",
                "event": "open",
            }
        ],
    )
    db.file("organization", [cadre(1, "刘强", "leave", dt.date(2026, 11, 3))])
    db.file(
        "petition",
        [
            {
                "roster": "case_closure",
                "entity_kind": "case",
                "case_number": "XF2026-0001",
                "event": "closed",
                "event_date": dt.date(2026, 11, 4),
            }
        ],
    )
    link.link(db.eng)
    status.refresh(db.eng)
    assert db.q("SELECT name, status FROM cadre ORDER BY cadre_key") == [
        ("刘强", "departed"),
        ("陈静", "active"),
    ]
    assert db.q("SELECT case_number, status, status_since FROM petition_case") == [
        ("XF2026-0001", "closed", "2026-11-04")
    ]


def test_night_that_would_end_too_many_pairs_is_refused_and_changes_nothing(db):
    db.file("civil_affairs", [hh("hardship", n, f"户主{n}", "hardship") for n in range(1, 5)])
    db.file("organization", [cadre(n, f"干部{n}") for n in range(1, 5)])
    link.link(db.eng)
    status.refresh(db.eng)
    with db.eng.begin() as conn:
        for n in range(1, 5):
            conn.execute(
                schema.pairing.insert().values(
                    cadre_key=f"C{n:06d}",
                    target_kind="household",
                    target_key=f"H{n:06d}",
                    valid_from=dt.date(2026, 11, 1),
                    made_reason="new_target",
                )
            )
    # a mistaken adjustment list exits half the households
    db.file(
        "civil_affairs",
        [hh("hardship_adjustment", n, f"户主{n}", "hardship", "exit", dt.date(2026, 11, 5)) for n in (1, 2)],
    )
    link.link(db.eng)
    with pytest.raises(status.NightRefused, match="2 of 4"):
        status.refresh(db.eng, max_end_share=0.10)
    assert db.q("SELECT COUNT(*) FROM household WHERE status='active'") == [(4,)]
    summary = status.refresh(db.eng, max_end_share=0.10, allow_mass_end=True)
    assert summary["pairs_to_end"] == 2
    assert db.q("SELECT COUNT(*) FROM household WHERE status='active'") == [(2,)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_exit_dated_after_the_night_is_not_applied_until_its_date(backend, request):
    # a re-run of an earlier night after a later night loaded an exit dated ten days on
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    db = Loader(url)
    night = dt.date(2026, 11, 10)
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 2, "李娜", "hardship")])
    db.file(
        "civil_affairs",
        [hh("hardship_adjustment", 2, "李娜", "hardship", "exit", night + dt.timedelta(days=10))],
    )
    link.link(db.eng)
    status.refresh(db.eng, 0.10, True, as_of=night)
    assert db.q("SELECT head_name, status, status_since FROM household ORDER BY household_key") == [
        ("王伟", "active", None),
        ("李娜", "active", None),
    ]
    status.refresh(db.eng, 0.10, True, as_of=night + dt.timedelta(days=10))
    got = [
        (n, s, str(d)) for n, s, d in db.q("SELECT head_name, status, status_since FROM household ORDER BY 2")
    ]
    assert got == [("王伟", "active", "None"), ("李娜", "exited", "2026-11-20")]


def test_a_quiet_night_links_nothing_yet_the_exit_dated_for_it_ends_the_pair(db, caplog):
    # an exit loaded early (dated ten days on), then nights without any new file
    night = dt.date(2026, 11, 10)
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship"), hh("hardship", 2, "李娜", "hardship")])
    db.file("organization", [cadre(1, "干部1"), cadre(2, "干部2")])
    db.file(
        "civil_affairs",
        [hh("hardship_adjustment", 2, "李娜", "hardship", "exit", night + dt.timedelta(days=10))],
    )
    link.link(db.eng)
    status.refresh(db.eng, 0.10, True, as_of=night)
    pairing.rebuild(db.eng, night, "run-1")
    assert db.q("SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL") == [(2,)]
    # a quiet night before the exit's date: nothing to link, nothing changes
    with caplog.at_level(logging.INFO, logger="rosterlink"):
        assert link.link(db.eng)["rows_linked"] == 0
        assert status.refresh(db.eng, 0.10, True, as_of=night + dt.timedelta(days=9))["changed"] == {}
        kept = pairing.rebuild(db.eng, night + dt.timedelta(days=9), "run-2")
    assert (kept["ended"], kept["made"], kept["kept"]) == ({}, {}, 2)
    assert "link: nothing new tonight" in caplog.text
    assert "pairing: nothing ends and nothing waits for a cadre" in caplog.text
    # the quiet night the exit is dated for: the household exits and its pair ends
    day = night + dt.timedelta(days=10)
    assert link.link(db.eng)["rows_linked"] == 0
    refreshed = status.refresh(db.eng, 0.10, True, as_of=day)
    assert refreshed["changed"] == {"household_exited": 1}
    assert (refreshed["pairs_to_end"], refreshed["to_end_by_reason"]) == (1, {"household_exited": 1})
    ended = pairing.rebuild(db.eng, day, "run-3")
    assert (ended["ended"], ended["made"], ended["kept"]) == ({"household_exited": 1}, {}, 1)
    assert [
        (k, str(d), why)
        for k, d, why in db.q(
            "SELECT target_key, valid_to, end_reason FROM pairing WHERE valid_to IS NOT NULL"
        )
    ] == [("H000002", "2026-11-20", "household_exited")]


def test_a_household_leaving_one_of_its_two_categories_on_a_quiet_night_is_a_recorded_change(
    db, sqlite_url, tmp_path
):
    """A household in hardship and with an old party member: its hardship exit, dated for a night
    with no new file, ends one category and no household status. The status stage still records a
    change, so the town workbooks (which list the categories) are checked again that night."""
    from rosterlink import tasks, warehouse
    from rosterlink.core.settings import Settings

    settings = Settings(intake_dir=tmp_path / "in", warehouse_url=sqlite_url, export_dir=tmp_path / "out")
    night = dt.date(2026, 11, 10)
    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    db.file("organization", [hh("old_member", 1, "王伟", "old_member")])
    db.file(
        "civil_affairs",
        [hh("hardship_adjustment", 1, "王伟", "hardship", "exit", night + dt.timedelta(days=3))],
    )
    tasks.link(settings, "run-1")
    tasks.refresh_statuses(settings, night, True, "run-1")

    def generation() -> int:
        with db.eng.connect() as conn:
            return warehouse.generation(conn)

    before = generation()
    quiet = tasks.refresh_statuses(settings, night + dt.timedelta(days=1), True, "run-2")
    assert (quiet["changed"], quiet["categories_changed"], generation()) == ({}, 0, before)
    dated = tasks.refresh_statuses(settings, night + dt.timedelta(days=3), True, "run-3")
    assert (dated["changed"], dated["categories_changed"]) == ({}, 1)  # still active: an old member's
    assert generation() > before
    assert db.q("SELECT stage, changes, run_id FROM content_change ORDER BY change_id DESC LIMIT 1") == [
        ("status", 1, "run-3")
    ]
    assert db.q("SELECT category, status FROM household_category ORDER BY 1") == [
        ("hardship", "exited"),
        ("old_member", "active"),
    ]


def test_a_link_task_that_dies_after_writing_still_counts_as_a_change_when_its_retry_finds_nothing(
    db, sqlite_url, tmp_path, monkeypatch
):
    """The link stage commits tonight's entities, then its process dies before it can say so; the
    retry finds nothing left to link. The warehouse's generation has still moved, so the town
    workbooks are checked against tonight's entities, not kept as they were."""
    from rosterlink import tasks, warehouse
    from rosterlink.core.settings import Settings

    settings = Settings(intake_dir=tmp_path / "in", warehouse_url=sqlite_url, export_dir=tmp_path / "out")

    def generation() -> int:
        with db.eng.connect() as conn:
            return warehouse.generation(conn)

    db.file("civil_affairs", [hh("hardship", 1, "王伟", "hardship")])
    before = generation()
    real = link.link

    def dies_after_writing(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit("worker killed")

    monkeypatch.setattr(link, "link", dies_after_writing)
    with pytest.raises(SystemExit):
        tasks.link(settings, "run-1")
    monkeypatch.setattr(link, "link", real)
    assert tasks.link(settings, "run-1")["rows_linked"] == 0  # the retry: nothing left
    assert generation() > before
    assert db.q("SELECT stage, changes FROM content_change") == [("link", -1)]  # unfinished: a change
    # a stage that changes nothing leaves no trace
    tasks.refresh_statuses(settings, dt.date(2026, 11, 10), True, "run-1")
    assert db.q("SELECT stage, changes FROM content_change") == [("link", -1)]
