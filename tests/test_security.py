"""Data protection (issue 6): retention purge, pseudonymised analytics copy, minors, secrets from
Airflow connections.

One night of the real DAG (``dag.test``) on the sample intake (scale 0.1, plus a small extra
women's federation file with wrong and unusual child ID numbers) serves the tests of this module
that need a warehouse made by the pipeline. Its warehouse URL reaches the night only through the
Airflow connection ``rosterlink_warehouse`` (``AIRFLOW_CONN_ROSTERLINK_WAREHOUSE`` with a
``postgres://`` URI), never through the run conf, Variables or ``ROSTERLINK_*``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import idnumber, paths, settings
from rosterlink.intake import normalise, read
from rosterlink.ops import nightlock
from rosterlink.privacy import pseudonymise, retention
from rosterlink.synthetic import sample
from rosterlink.warehouse import now, schema

from conftest import fresh_pg_database

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("rosterlink"))
KEY = "test-pseudonym-key-0123456789abcdef"
ANY_ID = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")


def cli(args: list[str], env: dict | None = None, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env or {})
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, env=full)


def q(url_or_eng, sql: str) -> list[tuple]:
    eng = url_or_eng if isinstance(url_or_eng, sa.Engine) else warehouse.connect(url_or_eng)
    with eng.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def squeeze(text: str) -> str:
    """Text as an ID could hide in it: NFKC (full-width digits), no whitespace, upper-case X."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).upper()


# --- the night ------------------------------------------------------------------------------------
def _extra_orphan_file(intake: Path) -> dict[str, str]:
    """A second women's federation file: a child ID with a wrong check digit, one of 17 digits, one
    from an unusual region (loads with a warning) and a good one. Returns label -> child ID as written."""
    town = "店子镇"

    def guardian(n: int) -> str:
        return idnumber.make("370406", dt.date(1979, 3, 14), 700 + n)

    good = idnumber.make("370406", dt.date(2015, 6, 1), 811)
    unusual = idnumber.make("110101", dt.date(2016, 2, 9), 812)
    wrong_check = idnumber.make("370406", dt.date(2014, 9, 30), 813)
    wrong_check = wrong_check[:17] + ("1" if wrong_check[17] != "1" else "2")
    short = idnumber.make("370406", dt.date(2013, 12, 24), 814)[:17]
    children = {"wrong_check": wrong_check, "short": short, "unusual": unusual, "good": good}
    path = intake / "womens_federation" / "补报失亲儿童家庭名单.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "儿童姓名",
                "儿童身份证号",
                "失亲情况",
                "监护人姓名",
                "监护人身份证号",
                "与儿童关系",
                "镇街",
                "村居",
                "联系电话",
            ]
        )
        for n, child in enumerate(children.values()):
            w.writerow(
                [
                    f"韩{'雨晨思悦'[n]}彤",
                    child,
                    "父母双亡",
                    f"韩{'建国军民'[n]}强",
                    guardian(n),
                    "祖父",
                    town,
                    "东庄村",
                    "",
                ]
            )
    return children


def _child_ids_in(intake: Path) -> set[str]:
    """Every child ID number in the women's federation files, as the warehouse would normalise it
    (or, for one that cannot be normalised, its characters without spaces)."""
    found: set[str] = set()
    for path in sorted((intake / "womens_federation").glob("*.*")):
        for table in read.read_file(path, "womens_federation").tables:
            for raw in table.frame["child_id_number"]:
                if raw is None or str(raw).strip() == "":
                    continue
                value = normalise.normalise_id(raw).value
                found.add(value or squeeze(str(raw)))
    return found


@pytest.fixture(scope="module")
def night(tmp_path_factory, nightly_dag):
    base = tmp_path_factory.mktemp("security-night")
    intake, exports = base / "intake", base / "exports"
    sample.generate(intake, scale=0.1)
    extra = _extra_orphan_file(intake)
    children = _child_ids_in(intake)
    with fresh_pg_database() as (name, url):
        mp = pytest.MonkeyPatch()
        # the connection as Airflow's own URI form gives it: postgres://, which SQLAlchemy 2 rejects
        mp.setenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE", f"postgres://postgres@127.0.0.1:5432/{name}")
        mp.setenv("ROSTERLINK_PSEUDONYM_KEY", KEY)
        try:
            run = nightly_dag.test(
                run_conf={
                    "intake_dir": str(intake),
                    "warehouse_url": None,
                    "export_dir": str(exports),
                    "as_of": "2026-11-25",
                }
            )
        finally:
            mp.undo()
        state = str(getattr(run.state, "value", run.state))
        yield {
            "url": url,
            "intake": intake,
            "exports": exports,
            "children": children,
            "extra": extra,
            "state": state,
            "run_id": run.run_id,
            "base": base,
        }


def _warehouse_text(url: str) -> dict[str, str]:
    """Every value of every table of the warehouse, as text, one blob per table."""
    return _warehouse_text_engine(warehouse.connect(url))


def _written_files(night: dict) -> list[Path]:
    """Everything the night wrote: exports, clerks' feedback, the review queue (not the clerks' files)."""
    intake = night["intake"]
    files = [p for p in night["exports"].rglob("*") if p.is_file()]
    files += [
        p
        for p in intake.rglob("*")
        if p.is_file() and {"feedback", "review"} & set(p.relative_to(intake).parts)
    ]
    return files


def _file_text(path: Path) -> str:
    if path.suffix == ".xlsx":
        book = openpyxl.load_workbook(path, read_only=True)
        return "\n".join(
            "\t".join("" if v is None else str(v) for v in row)
            for ws in book.worksheets
            for row in ws.iter_rows(values_only=True)
        )
    return path.read_bytes().decode("utf-8", errors="replace")


# --- secrets from connections ----------------------------------------------------------------------
@pytest.mark.slow
def test_the_night_takes_its_warehouse_from_the_airflow_connection(night):
    assert night["state"] == "success"
    files = dict(q(night["url"], "SELECT file_name, status FROM intake_file"))
    assert len(files) == 6
    assert set(files.values()) == {"loaded"}
    assert q(night["url"], f"SELECT status FROM night_run WHERE run_id = '{night['run_id']}'") == [
        ("success",)
    ]
    # the default warehouse (what env/defaults would have given) was not used for this night
    default = paths.DATA_DIR / "warehouse.db"
    if default.exists():
        assert not q(f"sqlite:///{default}", f"SELECT 1 FROM night_run WHERE run_id = '{night['run_id']}'")


@pytest.mark.slow
def test_the_cli_summary_reports_the_warehouse_the_connection_gave(tmp_path, airflow_db):
    # the CLI cannot see Airflow connections itself: the night's last task tells it what it used
    intake = tmp_path / "intake"
    sample.generate(intake, scale=0.05)
    with fresh_pg_database() as (name, url):
        done = cli(
            [
                "nightly",
                "--intake",
                str(intake),
                "--exports",
                str(tmp_path / "exports"),
                "--as-of",
                "2026-11-25",
            ],
            env={
                "AIRFLOW_CONN_ROSTERLINK_WAREHOUSE": f"postgres://postgres@127.0.0.1:5432/{name}",
                "ROSTERLINK_DATA_DIR": str(tmp_path / "data"),
            },
            drop=("ROSTERLINK_WAREHOUSE_URL",),
        )
        assert done.returncode == 0, done.stdout[-3000:]
        assert f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}" in done.stdout
        loaded = q(url, "SELECT COALESCE(SUM(rows_loaded), 0) FROM intake_file")[0][0]
        assert loaded > 0
        assert f"loaded {loaded:,}," in done.stdout  # the summary counts what this warehouse holds
        assert not (tmp_path / "data" / "warehouse.db").exists()


PROBE_DAG = """
import json, os
from pathlib import Path

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="rl_settings_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def rl_settings_probe():
    @task
    def look():
        from rosterlink.privacy import pseudonymise
        from rosterlink.core import settings

        out = {}
        for name, case in json.loads(os.environ["RL_PROBE_CASES"]).items():
            for key, value in case.get("env", {}).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if case.get("key"):
                out[name] = pseudonymise.key_id(pseudonymise.secret())
            else:
                out[name] = settings.load(**case.get("conf", {})).warehouse_url
        Path(os.environ["RL_PROBE_OUT"]).write_text(json.dumps(out))

    look()


rl_settings_probe()
"""


def test_warehouse_url_precedence_inside_an_airflow_task(tmp_path, airflow_db, monkeypatch):
    """run conf > connection rosterlink_warehouse > Variable rosterlink_warehouse_url >
    ROSTERLINK_WAREHOUSE_URL,
    and the pseudonym key from the connection rosterlink_pseudonym beats the environment."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    conn, var, env = (
        "AIRFLOW_CONN_ROSTERLINK_WAREHOUSE",
        "AIRFLOW_VAR_ROSTERLINK_WAREHOUSE_URL",
        "ROSTERLINK_WAREHOUSE_URL",
    )
    pg_json = json.dumps(
        {
            "conn_type": "postgres",
            "login": "rl",
            "password": "s3cr/t@x:y",
            "host": "pg.example",
            "port": 5433,
            "schema": "wh",
        }
    )
    cases = {
        "connection_wins": {
            "env": {
                conn: "postgres://rl:pw@db.example:5432/wh",
                var: "sqlite:////var.db",
                env: "sqlite:////env.db",
            }
        },
        "conf_beats_connection": {"conf": {"warehouse_url": "sqlite:////conf.db"}},
        "json_connection": {"env": {conn: pg_json}},
        "sqlite_connection": {"env": {conn: "sqlite:////srv/rl/warehouse.db"}},
        "variable_without_connection": {"env": {conn: None}},
        "environment_alone": {"env": {var: None}},
        "key_from_connection": {
            "key": True,
            "env": {
                "AIRFLOW_CONN_ROSTERLINK_PSEUDONYM": json.dumps(
                    {"conn_type": "generic", "password": "key-from-the-connection"}
                ),
                "ROSTERLINK_PSEUDONYM_KEY": "key-from-the-environment",
            },
        },
    }
    dag_file = tmp_path / "rl_settings_probe.py"
    dag_file.write_text(PROBE_DAG)
    out = tmp_path / "probe.json"
    monkeypatch.setenv("RL_PROBE_CASES", json.dumps(cases))
    monkeypatch.setenv("RL_PROBE_OUT", str(out))
    for name in (conn, var, env, "AIRFLOW_CONN_ROSTERLINK_PSEUDONYM", "ROSTERLINK_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    try:
        bag = DagBag(dag_folder=str(dag_file))
        assert not bag.import_errors, bag.import_errors
        # dag.test() only runs a serialized DAG, and it serializes the dags folder, not this file
        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, "dags-folder", None)
        run = bag.get_dag("rl_settings_probe").test()
        assert str(getattr(run.state, "value", run.state)) == "success"
        got = json.loads(out.read_text())
    finally:
        for name in (conn, var, env, "AIRFLOW_CONN_ROSTERLINK_PSEUDONYM", "ROSTERLINK_PSEUDONYM_KEY"):
            os.environ.pop(name, None)
    assert got["connection_wins"] == "postgresql+psycopg://rl:pw@db.example:5432/wh"
    assert got["conf_beats_connection"] == "sqlite:////conf.db"
    parsed = sa.engine.make_url(got["json_connection"])
    assert (
        parsed.drivername,
        parsed.username,
        parsed.password,
        parsed.host,
        parsed.port,
        parsed.database,
    ) == ("postgresql+psycopg", "rl", "s3cr/t@x:y", "pg.example", 5433, "wh")
    assert got["sqlite_connection"] == "sqlite:////srv/rl/warehouse.db"
    assert got["variable_without_connection"] == "sqlite:////var.db"
    assert got["environment_alone"] == "sqlite:////env.db"
    assert got["key_from_connection"] == pseudonymise.key_id(b"key-from-the-connection")


def test_outside_airflow_the_connection_is_not_consulted(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE", "postgres://rl:pw@db.example:5432/wh")
    monkeypatch.setenv("ROSTERLINK_WAREHOUSE_URL", "sqlite:////env.db")
    assert settings.load().warehouse_url == "sqlite:////env.db"


# --- minors -----------------------------------------------------------------------------------------
def test_no_child_id_number_anywhere_in_the_warehouse_or_in_what_the_night_wrote(night):
    children = night["children"]
    assert len(children) >= 40  # the sample's children and the extra file's four
    assert set(night["extra"].values()) <= children
    prefixes = {c[:17] for c in children}  # a wrong check digit or a lower-case x is still the child's ID

    def leaks(text: str) -> list[str]:
        flat = squeeze(text)
        return sorted(p for p in prefixes if p in text or p in flat)

    tables = _warehouse_text(night["url"])
    assert "source_record" in tables
    assert "rejected_row" in tables
    assert "staged_row" in tables
    for table, text in tables.items():  # counts only: a failing test must not print the IDs either
        assert len(leaks(text)) == 0, f"{table}: {len(leaks(text))} child ID numbers"
    assert q(night["url"], "SELECT COUNT(*) FROM staged_row") == [(0,)]
    written = _written_files(night)
    assert any(p.name.endswith(".结果.xlsx") and "补报" in p.name for p in written)
    assert any(p.suffix == ".xlsx" and p.parent == night["exports"] for p in written)
    for path in written:
        assert len(leaks(_file_text(path))) == 0, path
    logs = list(Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    for path in logs:
        assert len(leaks(path.read_text(errors="replace"))) == 0, path


def test_loaded_children_keep_birth_month_and_a_keyed_token_only(night):
    rows = q(night["url"], "SELECT attrs FROM source_record WHERE roster = 'orphan'")
    attrs = [json.loads(a) for (a,) in rows]
    with_child = [a for a in attrs if "child_birth_ym" in a]
    assert len(with_child) >= 40
    assert not [a for a in attrs if "child_id_number" in a]
    unusual = night["extra"]["unusual"]
    expected = hmac.new(KEY.encode(), unusual.encode(), hashlib.sha256).hexdigest()
    [row] = [a for a in with_child if a.get("child_id_token") == expected]
    assert row["child_birth_ym"] == "2016-02"


def test_a_rejected_or_flagged_childs_id_is_not_quoted_even_masked(night):
    listed = q(
        night["url"],
        """
        SELECT r.reason_code, r.value, r.message, 'rejected'
        FROM rejected_row r JOIN intake_file f USING (file_id)
        WHERE r.field = 'child_id_number'
        UNION ALL
        SELECT w.reason_code, w.value, w.message, 'warning'
        FROM row_warning w JOIN intake_file f USING (file_id)
        WHERE w.field = 'child_id_number'""",
    )
    kinds = {(code, kind) for code, _, _, kind in listed}
    assert {
        ("id_bad_checksum", "rejected"),
        ("id_bad_length", "rejected"),
        ("id_region_unknown", "warning"),
    } <= kinds
    for code, value, message, _ in listed:
        assert value is None, code
        assert not re.search(r"[0-9]{4}", message.replace("18位", "").replace("15位", "")), message
        assert "儿童身份证号" in message
    path = next(p for p in _written_files(night) if p.name.endswith(".结果.xlsx") and "补报" in p.name)
    sheet = openpyxl.load_workbook(path)["错误明细"]
    cells = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    child_rows = [r for r in cells if r[2] == "儿童身份证号"]
    assert len(child_rows) == 2
    assert all(r[3] in (None, "（未成年人信息，不显示）") for r in child_rows)


# --- pseudonymised analytics copy --------------------------------------------------------------------
def _token(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


@pytest.mark.slow
def test_analytics_copy_replaces_ids_drops_phones_masks_names_and_keeps_tokens_stable(night, tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a1.db'}", f"sqlite:///{tmp_path / 'a2.db'}"
    done = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", first], env={"ROSTERLINK_PSEUDONYM_KEY": KEY}
    )
    assert done.returncode == 0, done.stderr
    assert "household" in done.stdout
    assert pseudonymise.key_id(KEY.encode()) in done.stdout
    copy = sa.create_engine(first)
    real = {
        k: (name, idn, phone)
        for k, name, idn, phone in q(
            night["url"], "SELECT household_key, head_name, head_id_number, phone FROM household"
        )
    }
    copied = {
        k: (name, idn, phone)
        for k, name, idn, phone in q(
            copy, "SELECT household_key, head_name, head_id_number, phone FROM household"
        )
    }
    assert copied.keys() == real.keys()
    assert len(real) > 100
    assert any(phone for _, _, phone in real.values())
    for key, (name, idn, _) in real.items():
        c_name, c_id, c_phone = copied[key]
        assert c_phone is None
        assert c_name == name[0] + "某"
        assert c_id == (_token(idn) if idn else None)
    cadres = q(night["url"], "SELECT cadre_key, id_number FROM cadre")
    assert dict(q(copy, "SELECT cadre_key, id_number FROM cadre")) == {k: _token(i) for k, i in cadres}
    assert q(copy, "SELECT COUNT(*) FROM cadre WHERE phone IS NOT NULL") == [(0,)]
    assert q(
        copy, "SELECT COUNT(*) FROM petition_case WHERE summary IS NOT NULL OR work_team IS NOT NULL"
    ) == [(0,)]
    # nothing ID-shaped or phone-shaped left in any text of the copy
    text = "\n".join(_warehouse_text_engine(copy).values())
    assert not ANY_ID.findall(text)
    assert not re.findall(r"(?<![0-9a-f])1[3-9][0-9]{9}(?![0-9a-f])", text)
    # the ledger reconciles in the copy as in the warehouse; pairs are the same pairs
    assert q(copy, "SELECT file_id, balanced FROM file_reconciliation ORDER BY file_id") == q(
        night["url"], "SELECT file_id, balanced FROM file_reconciliation ORDER BY file_id"
    )
    assert q(copy, "SELECT COUNT(*) FROM current_pairing") == q(
        night["url"], "SELECT COUNT(*) FROM current_pairing"
    )
    # a second run (another day, another target) gives the same tokens: analysts can join copies
    again = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", second], env={"ROSTERLINK_PSEUDONYM_KEY": KEY}
    )
    assert again.returncode == 0, again.stderr
    assert q(sa.create_engine(second), "SELECT household_key, head_id_number FROM household ORDER BY 1") == q(
        copy, "SELECT household_key, head_id_number FROM household ORDER BY 1"
    )
    # and writing over an earlier copy is allowed
    assert (
        cli(
            ["analytics-copy", "--warehouse", night["url"], "--to", first],
            env={"ROSTERLINK_PSEUDONYM_KEY": KEY},
        ).returncode
        == 0
    )


def _warehouse_text_engine(eng: sa.Engine) -> dict[str, str]:
    """Every value of every table behind ``eng``, as text, one blob per table."""
    out = {}
    with eng.connect() as conn:
        for table in sa.inspect(eng).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            out[table] = "\n".join("\t".join("" if v is None else str(v) for v in row) for row in rows)
    return out


@pytest.mark.slow
def test_analytics_copy_refuses_without_a_key_and_never_overwrites_a_warehouse(night, tmp_path):
    target = tmp_path / "a.db"
    done = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", f"sqlite:///{target}"],
        drop=("ROSTERLINK_PSEUDONYM_KEY",),
    )
    assert done.returncode != 0
    assert "ROSTERLINK_PSEUDONYM_KEY" in done.stderr
    assert not target.exists()
    weak = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", f"sqlite:///{target}"],
        env={"ROSTERLINK_PSEUDONYM_KEY": "short"},
    )
    assert weak.returncode != 0
    assert "16" in weak.stderr
    other = f"sqlite:///{tmp_path / 'other-warehouse.db'}"
    warehouse.connect(other)
    refused = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", other], env={"ROSTERLINK_PSEUDONYM_KEY": KEY}
    )
    assert refused.returncode != 0
    assert "warehouse" in refused.stderr
    assert q(other, "SELECT COUNT(*) FROM intake_file") == [(0,)]
    itself = cli(
        ["analytics-copy", "--warehouse", night["url"], "--to", night["url"]],
        env={"ROSTERLINK_PSEUDONYM_KEY": KEY},
    )
    assert itself.returncode != 0
    assert q(night["url"], "SELECT COUNT(*) FROM household WHERE phone IS NOT NULL") != [(0,)]


def test_tokens_are_hmac_of_the_normalised_id():
    key = b"0123456789abcdef0123"
    id18 = idnumber.make("370406", dt.date(1960, 5, 4), 17)
    expected = hmac.new(key, id18.encode(), hashlib.sha256).hexdigest()
    assert pseudonymise.token(key, id18) == expected
    assert pseudonymise.token(key, f" {id18[:6]} {id18[6:]}".lower()) == expected
    legacy = idnumber.make("370406", dt.date(1960, 5, 4), 18)
    assert pseudonymise.token(key, legacy[:6] + legacy[8:17]) == pseudonymise.token(key, legacy)
    assert pseudonymise.token(b"another-key-0123456789", id18) != expected


# --- retention purge -----------------------------------------------------------------------------------
def _finding(
    file_id: int,
    row: int,
    field: str,
    header: str,
    value: str | None,
    code: str,
    message: str,
    created: dt.datetime,
) -> dict:
    return {
        "file_id": file_id,
        "sheet": "Sheet1",
        "row_number": row,
        "field": field,
        "header": header,
        "value": value,
        "reason_code": code,
        "message": message,
        "created_at": created,
    }


@pytest.fixture
def aged(sqlite_url):
    """A warehouse with an old file (rejected rows 400 days old), a recent one (10 days), a leftover
    staged row, and pairs: current, ended a year ago, ended four years ago."""
    eng = warehouse.connect(sqlite_url)
    old, recent = now() - dt.timedelta(days=400), now() - dt.timedelta(days=10)
    f, p = schema.intake_file, schema.pairing
    with eng.begin() as conn:
        for file_id, received in ((1, old), (2, recent)):
            conn.execute(
                f.insert().values(
                    file_id=file_id,
                    department="civil_affairs",
                    file_name=f"civil_affairs/{file_id}.xlsx",
                    sha256=str(file_id) * 64,
                    size_bytes=1,
                    status="loaded",
                    rows_read=4,
                    rows_loaded=2,
                    rows_rejected=2,
                    received_at=received,
                    processed_at=received,
                )
            )
        conn.execute(
            schema.rejected_row.insert(),
            [
                _finding(
                    1,
                    5,
                    "head_name",
                    "户主姓名",
                    "张三1",
                    "name_invalid",
                    "“户主姓名”的值“张三1”不是有效的姓名（不能为空，不能以=、+、-、@开头，不能含数字或符号），请填写真实姓名。",
                    old,
                ),
                _finding(
                    1,
                    5,
                    "head_id_number",
                    "身份证号",
                    "370406********1234",
                    "id_bad_checksum",
                    "“身份证号”最后一位校验码不正确（370406********1234），号码可能有录错的数字，请与户口本或身份证核对后重新填写。",
                    old,
                ),
                _finding(
                    1,
                    7,
                    "town",
                    "镇街",
                    "火星镇",
                    "town_unknown",
                    "“镇街”的值“火星镇”不在本区镇街名单内。",
                    old,
                ),
                _finding(
                    2,
                    5,
                    "head_name",
                    "户主姓名",
                    "李四2",
                    "name_invalid",
                    "“户主姓名”的值“李四2”不是有效的姓名。",
                    recent,
                ),
                _finding(
                    2,
                    6,
                    "town",
                    "镇街",
                    "月亮镇",
                    "town_unknown",
                    "“镇街”的值“月亮镇”不在本区镇街名单内。",
                    recent,
                ),
            ],
        )
        conn.execute(
            schema.row_warning.insert(),
            [
                _finding(
                    1,
                    4,
                    "phone",
                    "联系电话",
                    "138****5678",
                    "phone_invalid",
                    "“联系电话”的值“138****5678”不是有效的号码。",
                    old,
                )
            ],
        )
        conn.execute(
            schema.staged_row.insert().values(
                file_id=1,
                sheet="Sheet1",
                row_number=9,
                roster="hardship",
                payload=json.dumps({"head_name": "王五"}),
                state="rejected",
            )
        )
        conn.execute(
            p.insert(),
            [
                {
                    "cadre_key": "C1",
                    "target_kind": "household",
                    "target_key": "H1",
                    "valid_from": dt.date(2020, 1, 1),
                    "valid_to": None,
                    "made_reason": "new_target",
                },
                {
                    "cadre_key": "C2",
                    "target_kind": "household",
                    "target_key": "H2",
                    "valid_from": dt.date(2020, 1, 1),
                    "valid_to": (now() - dt.timedelta(days=365)).date(),
                    "end_reason": "cadre_left",
                    "made_reason": "new_target",
                },
                {
                    "cadre_key": "C3",
                    "target_kind": "household",
                    "target_key": "H3",
                    "valid_from": dt.date(2018, 1, 1),
                    "valid_to": (now() - dt.timedelta(days=4 * 365)).date(),
                    "end_reason": "target_exited",
                    "made_reason": "new_target",
                },
            ],
        )
    return sqlite_url


LEDGER = "SELECT file_id, status, rows_read, rows_loaded, rows_rejected FROM intake_file ORDER BY file_id"
LISTED = "SELECT file_id, sheet, row_number, field, header, reason_code FROM rejected_row ORDER BY id"


@pytest.mark.slow
def test_purge_blanks_old_rejected_values_and_keeps_the_ledger_reconciled(aged):
    ledger, listed = q(aged, LEDGER), q(aged, LISTED)
    pairs = q(aged, "SELECT * FROM pairing ORDER BY pairing_id")
    reconciled = q(aged, "SELECT file_id, rejected_rows_listed FROM file_reconciliation ORDER BY file_id")
    done = cli(["purge", "--warehouse", aged, "--older-than-days", "365"])
    assert done.returncode == 0, done.stderr
    assert "rejected_row lines blanked:  3" in done.stdout
    assert "row_warning lines blanked:   1" in done.stdout
    assert "staged rows deleted:         1" in done.stdout
    old = q(aged, "SELECT value, message, purged_at FROM rejected_row WHERE file_id = 1 ORDER BY id")
    assert all(value is None and purged for value, _, purged in old)
    messages = [m for _, m, _ in old]
    assert not [m for m in messages if "张三" in m or "1234" in m or "火星" in m]
    assert "“身份证号”最后一位校验码不正确" in messages[1]
    assert q(aged, "SELECT value FROM rejected_row WHERE file_id = 2 ORDER BY id") == [
        ("李四2",),
        ("月亮镇",),
    ]
    assert q(aged, "SELECT value FROM row_warning") == [(None,)]
    assert q(aged, "SELECT COUNT(*) FROM staged_row") == [(0,)]
    # what must stay, stays: ledger, listed rows (file, sheet, row, field, header, reason), pairs,
    # reconciliation
    assert q(aged, LEDGER) == ledger
    assert q(aged, LISTED) == listed
    assert q(aged, "SELECT * FROM pairing ORDER BY pairing_id") == pairs
    assert (
        q(aged, "SELECT file_id, rejected_rows_listed FROM file_reconciliation ORDER BY file_id")
        == reconciled
    )
    # again: nothing left to purge
    assert (
        "rejected_row lines blanked:  0"
        in cli(["purge", "--warehouse", aged, "--older-than-days", "365"]).stdout
    )


@pytest.mark.slow
def test_purge_dry_run_and_the_configured_age(aged):
    before = q(aged, "SELECT value, message FROM rejected_row ORDER BY id")
    dry = cli(["purge", "--warehouse", aged, "--dry-run"], env={"ROSTERLINK_PURGE_REJECTED_DAYS": "5"})
    assert dry.returncode == 0
    assert "dry run" in dry.stdout
    assert "rejected_row lines blanked:  5" in dry.stdout  # both files are older than 5 days
    assert q(aged, "SELECT value, message FROM rejected_row ORDER BY id") == before
    assert q(aged, "SELECT COUNT(*) FROM staged_row") == [(1,)]
    # default age (365 days) from the environment variable being absent
    default = cli(["purge", "--warehouse", aged, "--dry-run"], drop=("ROSTERLINK_PURGE_REJECTED_DAYS",))
    assert "older than 365 days" in default.stdout
    assert "rejected_row lines blanked:  3" in default.stdout
    # the flag beats the environment
    flag = cli(
        ["purge", "--warehouse", aged, "--dry-run", "--older-than-days", "1000"],
        env={"ROSTERLINK_PURGE_REJECTED_DAYS": "5"},
    )
    assert "rejected_row lines blanked:  0" in flag.stdout
    bad = cli(["purge", "--warehouse", aged], env={"ROSTERLINK_PURGE_REJECTED_DAYS": "a year"})
    assert bad.returncode != 0
    assert "whole number" in bad.stderr


@pytest.mark.slow
def test_purge_refuses_to_cut_pairing_history_under_three_years(aged):
    pairs = q(aged, "SELECT * FROM pairing ORDER BY pairing_id")
    for days in ("0", "365", "1095"):
        done = cli(
            ["purge", "--warehouse", aged, "--older-than-days", "0", "--ended-pairs-older-than-days", days]
        )
        assert done.returncode == 2, done.stdout
        assert "three years" in done.stderr
    assert q(aged, "SELECT * FROM pairing ORDER BY pairing_id") == pairs
    assert q(aged, "SELECT COUNT(*) FROM rejected_row WHERE value IS NULL") == [
        (0,)
    ]  # refused before anything
    with pytest.raises(retention.RetentionRefused):
        retention.purge(warehouse.connect(aged), 0, ended_pairs_older_than_days=1000)
    # three years and more: only pairs that ended before then go; the current pair and last year's stay
    done = cli(["purge", "--warehouse", aged, "--ended-pairs-older-than-days", "1096"])
    assert done.returncode == 0, done.stderr
    assert q(aged, "SELECT cadre_key FROM pairing ORDER BY pairing_id") == [("C1",), ("C2",)]
    assert q(aged, LEDGER)[0][1:] == ("loaded", 4, 2, 2)


@pytest.mark.slow
def test_purge_waits_for_no_night(aged):
    eng = warehouse.connect(aged)
    nightlock.acquire(eng, "manual__a-night")
    try:
        done = cli(["purge", "--warehouse", aged, "--older-than-days", "0"])
        assert done.returncode != 0
        assert "another night is running" in done.stderr
        assert q(aged, "SELECT COUNT(*) FROM rejected_row WHERE purged_at IS NOT NULL") == [(0,)]
    finally:
        nightlock.release(eng, "manual__a-night")
    # and after a purge the lock is free again for the next night
    assert cli(["purge", "--warehouse", aged, "--older-than-days", "0"]).returncode == 0
    nightlock.acquire(eng, "manual__next-night")
    nightlock.release(eng, "manual__next-night")


def test_purge_on_a_real_night_keeps_reconciliation_balanced(night):
    url = night["url"]
    ledger = q(url, LEDGER)
    pairs = q(url, "SELECT * FROM pairing ORDER BY pairing_id")
    assert q(url, "SELECT COUNT(*) FROM rejected_row WHERE value IS NOT NULL") != [(0,)]
    done = cli(["purge", "--warehouse", url, "--older-than-days", "0"])
    assert done.returncode == 0, done.stderr
    assert q(url, "SELECT COUNT(*) FROM rejected_row WHERE value IS NOT NULL OR purged_at IS NULL") == [(0,)]
    assert q(url, "SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0") == [(0,)]
    assert q(url, LEDGER) == ledger
    assert q(url, "SELECT * FROM pairing ORDER BY pairing_id") == pairs
