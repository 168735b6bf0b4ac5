"""Issue 14: a night that brings the status and pairing stages nothing new keeps their result.

A stage that ran and changed nothing keeps a digest of what it read (``stage_build``); the next night
with the same digest reports the same without computing. These tests run the stages as the DAG's
tasks do (``rosterlink.tasks``), count the real computations, and check that every kept result is
what a computation would have said, and that anything the stages read (a new file, an event dated
for tonight, an earlier night, new settings) makes them compute again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from rosterlink import status, tasks
from rosterlink.core.settings import Settings
from rosterlink.pairing import rebuild as pairing

from loaded_rows import Loader, cadre, hh

NIGHT = dt.date(2026, 11, 10)
VOLATILE = {"as_of", "run_id", "seconds", "settled_since"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


class Counted:
    """Counts the real computations of the status and pairing stages."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real_refresh, real_rebuild = status.refresh, pairing.rebuild

        def refresh(*args, **kwargs):
            self.calls.append("status")
            return real_refresh(*args, **kwargs)

        def rebuild(*args, **kwargs):
            self.calls.append("pairing")
            return real_rebuild(*args, **kwargs)

        monkeypatch.setattr(status, "refresh", refresh)
        monkeypatch.setattr(pairing, "rebuild", rebuild)

    def taken(self) -> list[str]:
        out, self.calls = self.calls, []
        return out


def _same(a: dict, b: dict) -> dict:
    """The parts of two summaries that must agree (the night's date, run and time aside)."""
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {
        k: v for k, v in b.items() if k not in VOLATILE
    }
    return a


def test_a_settled_night_is_kept_until_anything_the_stages_read_changes(url, tmp_path, monkeypatch):
    settings = Settings(intake_dir=tmp_path / "in", warehouse_url=url, export_dir=tmp_path / "out")
    db = Loader(url)
    counted = Counted(monkeypatch)
    db.file("civil_affairs", [hh("hardship", n, f"户主{n}", "hardship") for n in (1, 2, 3)])
    db.file("organization", [cadre(1, "干部1"), cadre(2, "干部2")])
    # an exit loaded tonight and dated five days on
    db.file(
        "civil_affairs",
        [hh("hardship_adjustment", 2, "户主2", "hardship", "exit", NIGHT + dt.timedelta(days=5))],
    )

    def night(day: dt.date, run_id: str) -> tuple[dict, dict, list[str]]:
        tasks.link(settings, run_id)
        statuses = tasks.refresh_statuses(settings, day, True, run_id)
        pairs = tasks.rebuild_pairings(settings, day, run_id)
        return dict(statuses), dict(pairs), counted.taken()

    def current() -> list[tuple]:
        return db.q("SELECT cadre_key, target_key FROM pairing WHERE valid_to IS NULL ORDER BY 2")

    _s1, p1, taken = night(NIGHT, "run-1")
    assert taken == ["status", "pairing"]
    assert p1["made_total"] == 3
    paired = current()

    # the first quiet night computes: the pairs made last night have not been planned against yet
    s2, p2, taken = night(NIGHT + dt.timedelta(days=1), "run-2")
    assert taken == ["status", "pairing"]
    assert (s2["changed"], s2["pairs_to_end"], p2["ended"], p2["made"], p2["kept"]) == ({}, 0, {}, {}, 3)
    assert [
        (stage, str(day))
        for stage, day in db.q(
            "SELECT stage, as_of FROM stage_build WHERE stage IN ('status', 'pairing') ORDER BY 1"
        )
    ] == [
        ("pairing", "2026-11-11"),
        ("status", "2026-11-11"),
    ]

    # the next quiet nights keep both results, and say what the computation said
    for days in (2, 3):
        s3, p3, taken = night(NIGHT + dt.timedelta(days=days), f"run-{days + 1}")
        assert taken == []
        _same(s3, s2)
        _same(p3, p2)
        assert s3["settled_since"] == p3["settled_since"] == "2026-11-11"
        assert (p3["as_of"], p3["run_id"]) == (
            (NIGHT + dt.timedelta(days=days)).isoformat(),
            f"run-{days + 1}",
        )
        assert current() == paired
    # ... and what computing them would have said
    with db.eng.begin() as conn:
        assert status.write(conn, NIGHT + dt.timedelta(days=3)) == {}
    _same(dict(pairing.rebuild(db.eng, NIGHT + dt.timedelta(days=3), "check", pairing.PairingConfig())), p2)
    counted.taken()

    # the night the exit is dated for: the event is now in force, so both stages compute
    s4, p4, taken = night(NIGHT + dt.timedelta(days=5), "run-6")
    assert taken == ["status", "pairing"]
    assert (s4["changed"], p4["ended"]) == ({"household_exited": 1}, {"household_exited": 1})
    assert [t for _, t in current()] == ["H000001", "H000003"]

    # a night run again for an earlier date is not kept from a later one
    assert night(NIGHT + dt.timedelta(days=6), "run-7")[2] == ["status", "pairing"]  # settles again
    assert night(NIGHT + dt.timedelta(days=7), "run-8")[2] == []
    assert night(NIGHT + dt.timedelta(days=5), "run-6b")[2] == ["status", "pairing"]

    # a new file: the link stage records the new household, both stages compute and pair it
    db.file("civil_affairs", [hh("hardship", 4, "户主4", "hardship")])
    _s5, p5, taken = night(NIGHT + dt.timedelta(days=9), "run-10")
    assert taken == ["status", "pairing"]
    assert p5["made"] == {"new_target": 1}
    assert "H000004" in [t for _, t in current()]

    # other pairing settings: the pairs are planned again (the statuses are still kept)
    night(NIGHT + dt.timedelta(days=10), "run-11")
    assert night(NIGHT + dt.timedelta(days=11), "run-12")[2] == []
    monkeypatch.setattr(
        pairing.PairingConfig,
        "from_mapping",
        classmethod(lambda cls, m: dataclasses.replace(cls(), town_penalty=41)),
    )
    assert night(NIGHT + dt.timedelta(days=12), "run-13")[2] == ["pairing"]
