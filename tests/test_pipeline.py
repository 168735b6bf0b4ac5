"""End to end: the nightly DAG through Airflow (dag.test) on the sample intake, checked against
the generator's ground truth, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rosterlink import warehouse
from rosterlink.synthetic import sample


def q(url: str, sql: str) -> list[tuple]:
    with warehouse.connect(url).connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def as_dict(rows: list[tuple]) -> dict:
    return dict(rows)


def check_night_against_truth(url: str, truth: sample.Truth | dict) -> None:
    truth = truth if isinstance(truth, dict) else truth.to_dict()
    ledger = {
        r[0]: r[1:]
        for r in q(url, "SELECT file_name, status, rows_read, rows_loaded, rows_rejected FROM intake_file")
    }
    for rel, f in truth["files"].items():
        status, read, loaded, rejected = ledger[rel]
        assert status == "loaded", rel
        assert read == f["rows"], rel
        assert rejected == len(f["bad_rows"]), rel
        assert loaded == f["good_rows"], rel
        listed = q(
            url,
            "SELECT r.sheet, r.row_number, r.field, r.reason_code FROM rejected_row r "
            f"JOIN intake_file f ON f.file_id = r.file_id WHERE f.file_name = '{rel}'",
        )
        for bad in f["bad_rows"]:
            hits = [x for x in listed if x[0] == bad["sheet"] and x[1] == bad["row"]]
            assert hits, (rel, bad)
            assert any(h[2] == bad["field"] and h[3] in bad["codes"] for h in hits), (rel, bad, hits)
    # every data row is loaded or rejected with a reason: the counts add up for every file
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    counts = truth["counts"]
    active = as_dict(
        q(url, "SELECT category, COUNT(*) FROM household_category WHERE status='active' GROUP BY category")
    )
    assert active == {k: counts["households"][k] for k in ("hardship", "orphan", "old_member")}
    assert q(url, "SELECT COUNT(*) FROM household WHERE status='active'") == [
        (counts["households"]["total"],)
    ]
    ranks = as_dict(q(url, "SELECT rank, COUNT(*) FROM cadre WHERE status='active' GROUP BY rank"))
    assert ranks == {k: counts["cadres"][k] for k in ("county", "section", "ordinary")}
    cases = as_dict(q(url, "SELECT status, COUNT(*) FROM petition_case GROUP BY status"))
    assert cases.get("open", 0) == counts["cases"]["open"]
    check_pairing_rules(url)


def check_pairing_rules(url: str) -> None:
    # every active household paired exactly once, with an active cadre
    assert q(
        url,
        """
        SELECT COUNT(*) FROM household h
        WHERE h.status = 'active' AND (SELECT COUNT(*) FROM pairing p WHERE p.target_kind='household'
              AND p.target_key = h.household_key AND p.valid_to IS NULL) <> 1""",
    ) == [(0,)]
    # every open case led by exactly one county-level cadre
    assert q(
        url,
        """
        SELECT COUNT(*) FROM petition_case k
        WHERE k.status = 'open' AND (SELECT COUNT(*) FROM pairing p JOIN cadre c ON c.cadre_key = p.cadre_key
              WHERE p.target_kind='case' AND p.target_key = k.case_key AND p.valid_to IS NULL
              AND c.rank = 'county') <> 1""",
    ) == [(0,)]
    # no current pair points at an exited household, a closed case or a departed cadre
    assert q(
        url,
        """
        SELECT COUNT(*) FROM pairing p
        LEFT JOIN household h ON p.target_kind='household' AND h.household_key = p.target_key
        LEFT JOIN petition_case k ON p.target_kind='case' AND k.case_key = p.target_key
        JOIN cadre c ON c.cadre_key = p.cadre_key
        WHERE p.valid_to IS NULL AND (c.status <> 'active' OR h.status = 'exited' OR k.status = 'closed')""",
    ) == [(0,)]


@pytest.fixture
def district(tmp_path: Path) -> dict:
    return {"intake": tmp_path / "intake", "exports": tmp_path / "exports", "tmp": tmp_path}


def test_reference_district_night_one_on_sqlite_matches_the_reference_figures(
    district, sqlite_url, run_night
):
    truth = sample.generate(district["intake"], night=1)
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    check_night_against_truth(sqlite_url, truth)
    # the reference district: 1,457 households and 1,457 cadres, one household each
    assert q(
        sqlite_url, "SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL AND target_kind='household'"
    ) == [(1457,)]
    assert q(
        sqlite_url,
        "SELECT MAX(n) - MIN(n) FROM (SELECT c.cadre_key, COUNT(p.pairing_id) AS n FROM cadre c "
        "LEFT JOIN pairing p ON p.cadre_key = c.cadre_key AND p.target_kind='household' "
        "AND p.valid_to IS NULL GROUP BY c.cadre_key) AS loads",
    ) == [(0,)]
    # the outputs people read exist
    assert (district["exports"] / "结对汇总_20261125.xlsx").is_file()
    for rel in truth.to_dict()["files"]:
        department = rel.split("/")[0]
        assert list((district["intake"] / department / "feedback").glob("*.结果.xlsx")), rel
    # lineage: every loaded household/cadre/case row says which entity it became
    assert q(
        sqlite_url,
        "SELECT COUNT(*) FROM source_record r LEFT JOIN source_row s ON s.file_id = r.file_id "
        "AND s.sheet = r.sheet AND s.row_number = r.row_number "
        "WHERE r.entity_kind <> 'pin' AND s.entity_key IS NULL",
    ) == [(0,)]


@pytest.mark.slow
def test_second_night_exits_adds_and_leaves_other_pairs_untouched(district, sqlite_url, run_night):
    sample.generate(district["intake"], night=1, scale=0.2)
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    before = set(
        q(sqlite_url, "SELECT pairing_id, cadre_key, target_key FROM pairing WHERE valid_to IS NULL")
    )
    truth2 = sample.generate(district["intake"], night=2, scale=0.2).to_dict()
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-26") == "success"
    check_night_against_truth(sqlite_url, truth2)
    changes = truth2["changes"]
    exited = set(changes["exited_household_ids"])
    departed = set(changes["departed_cadre_ids"])
    assert exited
    assert departed
    ended = q(
        sqlite_url,
        """SELECT p.pairing_id, p.end_reason, p.valid_to, h.head_id_number, c.id_number
                             FROM pairing p JOIN cadre c ON c.cadre_key = p.cadre_key
                             LEFT JOIN household h ON p.target_kind='household'
                                  AND h.household_key = p.target_key
                             WHERE p.valid_to IS NOT NULL""",
    )
    for _, reason, valid_to, head_id, cadre_id in ended:
        assert str(valid_to) == "2026-11-26"
        assert (
            (reason == "household_exited" and head_id in exited)
            or (reason == "cadre_departed" and cadre_id in departed)
            or reason == "case_closed"
        )
    ended_ids = {e[0] for e in ended}
    # every pair whose two sides stayed active is still there, unchanged
    survivors = {p for p in before if p[0] not in ended_ids}
    now_current = set(
        q(sqlite_url, "SELECT pairing_id, cadre_key, target_key FROM pairing WHERE valid_to IS NULL")
    )
    assert survivors <= now_current
    # new households are paired tonight
    new_ids = set(changes["new_household_ids"])
    made = {
        r[0]
        for r in q(
            sqlite_url,
            "SELECT h.head_id_number FROM pairing p JOIN household h "
            "ON h.household_key = p.target_key WHERE p.valid_from = '2026-11-26' "
            "AND p.target_kind = 'household'",
        )
    }
    assert new_ids <= made


@pytest.mark.slow
def test_same_night_run_twice_changes_nothing(district, sqlite_url, run_night):
    sample.generate(district["intake"], night=1, scale=0.1)
    tables = ["household", "household_category", "cadre", "petition_case", "source_row", "rejected_row"]
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    first = {t: sorted(q(sqlite_url, f"SELECT * FROM {t}"), key=repr) for t in tables}
    pairs = q(
        sqlite_url, "SELECT pairing_id, cadre_key, target_key, valid_from, valid_to FROM pairing ORDER BY 1"
    )
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    second = {t: sorted(q(sqlite_url, f"SELECT * FROM {t}"), key=repr) for t in tables}
    assert first == second
    assert pairs == q(
        sqlite_url, "SELECT pairing_id, cadre_key, target_key, valid_from, valid_to FROM pairing ORDER BY 1"
    )


@pytest.mark.slow
def test_resent_file_and_broken_file_do_not_stop_the_night(district, sqlite_url, run_night):
    truth = sample.generate(district["intake"], night=1, scale=0.1).to_dict()
    broken = district["intake"] / "civil_affairs" / "损坏的名单.xlsx"
    broken.write_bytes(b"PK\x03\x04 this is not really a workbook")
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    statuses = as_dict(q(sqlite_url, "SELECT file_name, status FROM intake_file"))
    assert statuses.pop("civil_affairs/损坏的名单.xlsx") == "rejected"
    assert set(statuses.values()) == {"loaded"}
    assert len(statuses) == len(truth["files"])
    ((message,),) = q(
        sqlite_url, "SELECT message FROM intake_file WHERE file_name = 'civil_affairs/损坏的名单.xlsx'"
    )
    assert "损坏" in message
    assert (district["intake"] / "civil_affairs" / "feedback" / "损坏的名单.结果.xlsx").is_file()
    check_night_against_truth(sqlite_url, truth)
    households = q(sqlite_url, "SELECT COUNT(*) FROM source_record")
    # the next day a clerk sends the same workbook again under another name
    first = Path(next(iter(truth["files"])))
    resent = first.with_name("再次报送" + first.name)
    shutil.copy(district["intake"] / first, district["intake"] / resent)
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-26") == "success"
    ((status, message, original),) = q(
        sqlite_url,
        f"SELECT f.status, f.message, o.file_name FROM intake_file f JOIN intake_file o "
        f"ON o.file_id = f.duplicate_of WHERE f.file_name = '{resent.as_posix()}'",
    )
    assert status == "duplicate"
    assert original == first.as_posix()
    assert first.name in message
    assert q(sqlite_url, "SELECT COUNT(*) FROM source_record") == households
    assert q(sqlite_url, "SELECT COUNT(*) FROM intake_file") == [(len(truth["files"]) + 2,)]


@pytest.mark.slow
@pytest.mark.postgres
def test_night_on_postgres_matches_truth(district, pg_url, run_night):
    truth = sample.generate(district["intake"], night=1, scale=0.2)
    assert run_night(district["intake"], pg_url, district["exports"], as_of="2026-11-25") == "success"
    check_night_against_truth(pg_url, truth)


@pytest.mark.slow
@pytest.mark.postgres
def test_second_night_on_postgres(district, pg_url, run_night):
    sample.generate(district["intake"], night=1, scale=0.1)
    assert run_night(district["intake"], pg_url, district["exports"], as_of="2026-11-25") == "success"
    check_planner_knows_the_sizes(pg_url)
    truth2 = sample.generate(district["intake"], night=2, scale=0.1)
    assert run_night(district["intake"], pg_url, district["exports"], as_of="2026-11-26") == "success"
    check_night_against_truth(pg_url, truth2)
    check_planner_knows_the_sizes(pg_url)


def check_planner_knows_the_sizes(pg_url: str) -> None:
    """PostgreSQL plans the next stage's queries on the tables as the night left them, not as empty
    tables: a night's pairing query planned for one household ran as a nested loop over every pair
    for every household (quadratic; 10.9 s instead of 25 ms at ten times the reference district)."""
    for table in ("source_record", "household", "cadre", "petition_case", "pairing"):
        [(rows,)] = q(pg_url, f"SELECT COUNT(*) FROM {table}")
        [(planned,)] = q(pg_url, f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'")
        assert rows > 0, table
        assert planned == rows, (table, rows, planned)


@pytest.mark.slow
def test_unreachable_warehouse_fails_the_night_and_marks_nothing(district, run_night, monkeypatch):
    import http.server
    import json
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ROSTERLINK_ALERT_DIR", str(district["tmp"] / "alerts"))
    monkeypatch.setenv("ROSTERLINK_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    sample.generate(district["intake"], night=1, scale=0.05)
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    try:
        assert run_night(district["intake"], url, district["exports"], as_of="2026-11-25") == "failed"
    finally:
        server.shutdown()
    assert not (district["intake"] / "civil_affairs" / "feedback").exists()
    # the data team is told: which night, which task, what kind of error (never a row value)
    lines = (district["tmp"] / "alerts" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    alert = json.loads(lines[0])
    assert (alert["task_id"], alert["error_type"]) == ("begin_night", "OperationalError")
    assert alert["run_id"]
    assert received == [alert]


@pytest.mark.slow
def test_pin_spreadsheet_from_the_organization_department_is_honoured(district, sqlite_url, run_night):
    import openpyxl

    sample.generate(district["intake"], night=1, scale=0.1)
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-25") == "success"
    # pin a cadre to a household currently paired with someone else, and a county cadre to a case
    ((cadre_id, cadre_name, head_id),) = q(
        sqlite_url,
        """
        SELECT c.id_number, c.name, h.head_id_number FROM cadre c, household h
        WHERE c.status = 'active' AND h.status = 'active' AND h.head_id_number IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM pairing p
                          WHERE p.cadre_key = c.cadre_key AND p.target_key = h.household_key)
        ORDER BY c.cadre_key, h.household_key LIMIT 1""",
    )
    ((county_id, county_name, case_number),) = q(
        sqlite_url,
        """
        SELECT c.id_number, c.name, k.case_number FROM cadre c, petition_case k
        WHERE c.rank = 'county' AND k.status = 'open' AND NOT EXISTS (SELECT 1 FROM pairing p
              WHERE p.cadre_key = c.cadre_key AND p.target_key = k.case_key AND p.valid_to IS NULL)
        ORDER BY c.cadre_key DESC, k.case_key LIMIT 1""",
    )
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "固定结对"
    ws.append(["山亭区结对帮扶固定名单"])
    ws.append(["干部姓名", "干部身份证号", "户主身份证号", "案件编号"])
    ws.append([cadre_name, cadre_id, head_id, None])
    ws.append([county_name, county_id, None, case_number])
    for row in ws.iter_rows(min_row=3):
        for cell in row:
            cell.data_type = "s" if cell.value is not None else cell.data_type
    wb.save(district["intake"] / "organization" / "结对固定名单.xlsx")
    assert run_night(district["intake"], sqlite_url, district["exports"], as_of="2026-11-26") == "success"
    assert q(
        sqlite_url,
        "SELECT status, rows_loaded, rows_rejected FROM intake_file "
        "WHERE file_name = 'organization/结对固定名单.xlsx'",
    ) == [("loaded", 2, 0)]
    pinned = q(
        sqlite_url,
        """SELECT c.id_number, p.target_kind, COALESCE(h.head_id_number, k.case_number)
                              FROM pairing p JOIN cadre c ON c.cadre_key = p.cadre_key
                              LEFT JOIN household h ON p.target_kind = 'household'
                                   AND h.household_key = p.target_key
                              LEFT JOIN petition_case k ON p.target_kind = 'case'
                                   AND k.case_key = p.target_key
                              WHERE p.valid_to IS NULL AND p.made_reason = 'pinned' ORDER BY 2, 1""",
    )
    assert pinned == sorted(
        [(county_id, "case", case_number), (cadre_id, "household", head_id)], key=lambda r: (r[1], r[0])
    )
    check_pairing_rules(sqlite_url)
