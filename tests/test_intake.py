"""The intake ledger: every file recorded once, by path and SHA-256; unsafe files never read."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import settings
from rosterlink.intake import scan as intake
from rosterlink.warehouse import schema


def _cfg(tmp_path: Path, url: str) -> settings.Settings:
    return settings.load(intake_dir=tmp_path / "intake", warehouse_url=url, export_dir=tmp_path / "exports")


def _ledger(url: str) -> list[sa.Row]:
    t = schema.intake_file
    with warehouse.connect(url).connect() as conn:
        return conn.execute(sa.select(t).order_by(t.c.file_id)).all()


def _drop(cfg: settings.Settings, rel: str, data: bytes) -> Path:
    path = cfg.intake_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_same_bytes_under_another_name_is_marked_duplicate_and_not_queued(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _drop(cfg, "civil_affairs/特困花名册.csv", "户主姓名,身份证号\n".encode())
    _drop(cfg, "civil_affairs/特困花名册(1).csv", "户主姓名,身份证号\n".encode())
    todo = intake.scan(warehouse.connect(sqlite_url), cfg, "night-1")
    rows = _ledger(sqlite_url)
    assert [r.status for r in rows] == ["duplicate", "pending"] or [r.status for r in rows] == [
        "pending",
        "duplicate",
    ]
    original = next(r for r in rows if r.status == "pending")
    duplicate = next(r for r in rows if r.status == "duplicate")
    assert duplicate.duplicate_of == original.file_id
    assert original.file_name in duplicate.message
    assert [t["file_id"] for t in todo] == [original.file_id]


def test_file_already_taken_is_not_recorded_again_on_the_next_night(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _drop(cfg, "petition/cases.csv", b"a,b\n")
    eng = warehouse.connect(sqlite_url)
    first = intake.scan(eng, cfg, "night-1")
    with eng.begin() as conn:
        conn.execute(schema.intake_file.update().values(status="loaded"))
    second = intake.scan(eng, cfg, "night-2")
    assert len(first) == 1
    assert second == []
    assert len(_ledger(sqlite_url)) == 1


def test_pending_file_from_a_night_that_died_is_taken_again_with_same_id(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _drop(cfg, "petition/cases.csv", b"a,b\n")
    eng = warehouse.connect(sqlite_url)
    first = intake.scan(eng, cfg, "night-1")
    again = intake.scan(eng, cfg, "night-1-retry")
    assert [f["file_id"] for f in again] == [f["file_id"] for f in first]
    assert len(_ledger(sqlite_url)) == 1


def test_corrected_file_under_the_same_name_is_new(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    path = _drop(cfg, "organization/干部名册.csv", b"v1\n")
    eng = warehouse.connect(sqlite_url)
    intake.scan(eng, cfg, "n1")
    path.write_bytes(b"v2 corrected\n")
    todo = intake.scan(eng, cfg, "n2")
    old, new = _ledger(sqlite_url)
    assert [t["file_id"] for t in todo] == [new.file_id]
    assert new.status == "pending"
    assert old.sha256 != new.sha256
    # the first version was never read (its night died) and is gone: it is closed, not left pending
    assert old.status == "rejected"
    assert old.reason_code == "file_replaced"


def test_symlink_pointing_outside_the_intake_is_rejected_without_reading(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("should never be read")
    intake.ensure_folders(cfg.intake_dir)
    os.symlink(secret, cfg.intake_dir / "civil_affairs" / "link.csv")
    todo = intake.scan(warehouse.connect(sqlite_url), cfg, "n1")
    (row,) = _ledger(sqlite_url)
    assert todo == []
    assert row.status == "rejected"
    assert row.reason_code == "file_outside_intake"
    assert row.message  # a Chinese message for the clerk


def test_file_held_open_by_excel_is_left_for_the_next_scan(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _drop(cfg, "civil_affairs/名单.xlsx", b"PK partial")
    _drop(cfg, "civil_affairs/~$名单.xlsx", b"lock")
    assert intake.scan(warehouse.connect(sqlite_url), cfg, "n1") == []
    (cfg.intake_dir / "civil_affairs" / "~$名单.xlsx").unlink()
    assert len(intake.scan(warehouse.connect(sqlite_url), cfg, "n2")) == 1


def test_file_growing_during_the_scan_is_left_for_the_next_scan(tmp_path, sqlite_url):
    import threading
    import time

    cfg = _cfg(tmp_path, sqlite_url)
    cfg = cfg.with_overrides(limits=settings.Limits(settle_seconds=0.6))
    path = _drop(cfg, "civil_affairs/big.csv", b"x" * 100)

    def keep_writing() -> None:
        for _ in range(10):
            time.sleep(0.1)
            with path.open("ab") as f:
                f.write(b"more")

    writer = threading.Thread(target=keep_writing)
    writer.start()
    todo = intake.scan(warehouse.connect(sqlite_url), cfg, "n1")
    writer.join()
    assert todo == []
    assert _ledger(sqlite_url) == []


def test_files_still_for_longer_than_the_settle_time_are_taken_without_waiting(
    tmp_path, sqlite_url, monkeypatch
):
    """A night with nothing new does not wait to watch the files earlier nights left in the folders;
    a file changed within the settle time is still watched."""
    import time

    from rosterlink.intake import scan as scan_module

    cfg = _cfg(tmp_path, sqlite_url).with_overrides(limits=settings.Limits(settle_seconds=0.3))
    _drop(cfg, "civil_affairs/old.csv", b"x" * 100)
    time.sleep(0.4)  # still for longer than the settle time
    waited: list[float] = []
    monkeypatch.setattr(scan_module.time, "sleep", waited.append)
    eng = warehouse.connect(sqlite_url)
    assert [f["file_name"] for f in intake.scan(eng, cfg, "n1")] == ["civil_affairs/old.csv"]
    assert waited == []
    _drop(cfg, "civil_affairs/new.csv", b"y" * 100)
    # (the first file is still pending: nothing loaded it)
    names = sorted(f["file_name"] for f in intake.scan(eng, cfg, "n2"))
    assert names == ["civil_affairs/new.csv", "civil_affairs/old.csv"]
    assert waited == [0.3]


def test_feedback_folder_and_hidden_files_are_not_taken_as_intake(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    _drop(cfg, "civil_affairs/feedback/old.结果.xlsx", b"x")
    _drop(cfg, "civil_affairs/.DS_Store", b"x")
    assert intake.scan(warehouse.connect(sqlite_url), cfg, "n1") == []


def test_department_folders_are_created_for_the_clerks(tmp_path, sqlite_url):
    cfg = _cfg(tmp_path, sqlite_url)
    intake.scan(warehouse.connect(sqlite_url), cfg, "n1")
    assert sorted(p.name for p in cfg.intake_dir.iterdir()) == sorted(
        [
            "civil_affairs",
            "womens_federation",
            "organization",
            "petition",
            "visits",
        ]  # visits: the units' logs
    )
