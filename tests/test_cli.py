"""``rosterlink`` on the command line: a night that cannot work is refused before Airflow starts, in
one line saying what is wrong (exit code 2), and every command explains itself with ``--help``.

The command runs as a person runs it (a subprocess, ``python -m rosterlink.cli``) with its data
folder and Airflow home in the test's own folder; a refused night must leave no Airflow home (no
metadata database) behind, which is what answering in seconds means here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rosterlink
from rosterlink import cli
from rosterlink.core import settings
from rosterlink.core.spec import DEPARTMENTS

UNREACHABLE = "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/x"


def run_cli(tmp_path: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("ROSTERLINK_") or k.startswith("AIRFLOW_CONN_") or k == "AIRFLOW_HOME")
    }
    env.update(
        {
            "ROSTERLINK_DATA_DIR": str(tmp_path / "data"),
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            **(extra or {}),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "rosterlink.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )


def night(tmp_path: Path, *extra: str, intake: Path | None = None) -> list[str]:
    """``nightly`` with every folder in ``tmp_path`` and a usable SQLite warehouse, unless overridden."""
    if intake is None:
        intake = tmp_path / "intake"
        intake.mkdir(exist_ok=True)
    return [
        "nightly",
        "--intake",
        str(intake),
        "--warehouse",
        f"sqlite:///{tmp_path / 'w.db'}",
        "--exports",
        str(tmp_path / "exports"),
        *extra,
    ]


def assert_refused_before_airflow(done: subprocess.CompletedProcess, tmp_path: Path) -> str:
    """Exit code 2, one line on stderr, nothing run: no Airflow home, no warehouse, no exports."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rosterlink nightly not started: ")
    assert "Traceback" not in done.stderr
    assert "running rosterlink_nightly" not in done.stdout
    assert not (tmp_path / "airflow").exists()
    assert not (tmp_path / "w.db").exists()
    assert not (tmp_path / "exports").exists()
    return lines[0]


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("garbage", "--as-of 'garbage' is not a date written YYYY-MM-DD"),
        ("2026-02-30", "--as-of 2026-02-30 is not a real date: day is out of range for month"),
    ],
)
def test_a_bad_night_date_is_refused_in_one_line_before_airflow_starts(tmp_path, as_of, says):
    line = assert_refused_before_airflow(run_cli(tmp_path, *night(tmp_path, "--as-of", as_of)), tmp_path)
    assert says in line


def test_a_warehouse_nobody_listens_on_is_named_without_its_password(tmp_path):
    args = night(tmp_path)
    args[args.index("--warehouse") + 1] = UNREACHABLE
    line = assert_refused_before_airflow(run_cli(tmp_path, *args), tmp_path)
    assert "the warehouse postgresql+psycopg://nobody:***@127.0.0.1:1/x does not answer" in line
    assert "s3cret" not in line


def test_a_missing_intake_folder_is_refused_and_not_created(tmp_path):
    typo = tmp_path / "intkae"
    line = assert_refused_before_airflow(run_cli(tmp_path, *night(tmp_path, intake=typo)), tmp_path)
    assert f"the intake folder {typo} does not exist" in line
    assert "--create-intake" in line
    assert not typo.exists()


def test_create_intake_creates_the_intake_with_its_department_folders(tmp_path):
    # the night is stopped by a second problem, so the test need not run Airflow
    (tmp_path / "not-a-folder").write_text("x")
    new = tmp_path / "new-intake"
    args = night(tmp_path, "--create-intake", intake=new)
    args[args.index("--exports") + 1] = str(tmp_path / "not-a-folder" / "exports")
    line = assert_refused_before_airflow(run_cli(tmp_path, *args), tmp_path)
    assert "intake folder" not in line
    assert sorted(p.name for p in new.iterdir()) == sorted(DEPARTMENTS)


def test_an_export_folder_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "report.xlsx").write_text("x")
    args = night(tmp_path)
    args[args.index("--exports") + 1] = str(tmp_path / "report.xlsx" / "exports")
    line = assert_refused_before_airflow(run_cli(tmp_path, *args), tmp_path)
    assert f"cannot be created: {tmp_path / 'report.xlsx'} is a file, not a folder" in line


def _settings(tmp_path: Path, **values: object) -> settings.Settings:
    base: dict[str, object] = {
        "intake_dir": tmp_path / "intake",
        "warehouse_url": f"sqlite:///{tmp_path / 'w.db'}",
        "export_dir": tmp_path / "exports",
    }
    return settings.load(**{**base, **values})


def test_preflight_passes_a_usable_night_and_creates_nothing(tmp_path):
    (tmp_path / "intake").mkdir()
    assert cli.preflight(_settings(tmp_path), "2026-11-26") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intake"]
    assert list((tmp_path / "intake").iterdir()) == []


def test_preflight_lists_every_problem_of_the_night(tmp_path):
    (tmp_path / "intake").write_text("a file where the intake folder should be")
    problems = cli.preflight(_settings(tmp_path, warehouse_url=UNREACHABLE), "2026-13-01")
    assert len(problems) == 3
    assert problems[0].startswith("--as-of 2026-13-01 is not a real date")
    assert "does not answer" in problems[1]
    assert problems[2] == f"the intake folder {tmp_path / 'intake'} is not a folder (it is a file)"


def test_preflight_creates_the_intake_only_when_asked(tmp_path):
    cfg = _settings(tmp_path)
    assert len(cli.preflight(cfg, None)) == 1
    assert not cfg.intake_dir.exists()
    assert cli.preflight(cfg, None, create_intake=True) == []
    assert sorted(p.name for p in cfg.intake_dir.iterdir()) == sorted(DEPARTMENTS)


@pytest.mark.parametrize("text", ["20261126", "2026-11-26T00:00", "26-11-2026", "", "2026-11-3"])
def test_a_night_date_must_be_written_yyyy_mm_dd(text):
    with pytest.raises(cli.NightNotStarted, match="is not a date written YYYY-MM-DD"):
        cli.parse_as_of(text)


def test_a_real_yyyy_mm_dd_date_is_the_night_date():
    assert str(cli.parse_as_of("2028-02-29")) == "2028-02-29"
    with pytest.raises(cli.NightNotStarted, match="not a real date"):
        cli.parse_as_of("2026-02-29")


def test_a_sqlite_warehouse_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "w.db").write_text("these are not the bytes of a SQLite database " * 100)
    problem = cli.check_warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    assert problem is not None
    assert "does not answer: file is not a database" in problem


def test_a_sqlite_warehouse_not_created_yet_is_fine_and_stays_uncreated(tmp_path):
    assert cli.check_warehouse(f"sqlite:///{tmp_path / 'later' / 'w.db'}") is None
    assert not (tmp_path / "later").exists()


COMMANDS = [
    ["nightly"],
    ["sample"],
    ["figures"],
    ["review"],
    ["review", "list"],
    ["review", "decide"],
    ["purge"],
    ["analytics-copy"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_says_what_it_is_for_with_an_example(tmp_path, command):
    done = run_cli(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    usage, purpose = done.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: rosterlink {' '.join(command)} ")
    assert purpose.strip().endswith(".")
    assert len(purpose.split()) >= 4
    examples = done.stdout.split("examples:\n", 1)[1]
    assert f"rosterlink {' '.join(command)}" in examples


def help_entries(help_text: str, section: str) -> list[tuple[str, str]]:
    """(how it is written, its help text) for each entry of a section of ``--help`` output."""
    if f"\n{section}:\n" not in help_text:
        return []
    body = help_text.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0]
    entries = []
    for entry in re.split(r"\n(?=  \S)", body):
        first, *rest = entry.strip().splitlines()
        invocation, _, text = first.partition("  ")
        entries.append((invocation.strip(), " ".join(" ".join([text, *rest]).split())))
    return entries


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_option_has_help_text_and_shows_its_default(tmp_path, command):
    shown = run_cli(tmp_path, *command, "--help").stdout
    options = help_entries(shown, "options")
    assert options
    for invocation, text in options + help_entries(shown, "positional arguments"):
        assert text, f"rosterlink {' '.join(command)}: {invocation} has no help text"
    for invocation, text in options:
        if invocation != "-h, --help" and "required" not in text:
            assert "(default: " in text, f"{invocation} does not show its default"


def test_version_prints_the_package_version(tmp_path):
    done = run_cli(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rosterlink {rosterlink.__version__}"


def test_a_warehouse_connection_given_as_json_in_the_environment_is_the_one_checked(tmp_path):
    args = night(tmp_path)
    del args[args.index("--warehouse") : args.index("--warehouse") + 2]
    conn = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "nobody", "password": "s3cret"}
        | {"schema": "x"}
    )
    done = run_cli(tmp_path, *args, extra={"AIRFLOW_CONN_ROSTERLINK_WAREHOUSE": conn})
    line = assert_refused_before_airflow(done, tmp_path)
    assert "the warehouse postgresql+psycopg://nobody:***@127.0.0.1:1/x does not answer" in line
    assert "s3cret" not in line


def intake_files(intake: Path) -> set[Path]:
    return {
        p
        for p in intake.rglob("*")
        if p.is_file() and not {"feedback", "review"} & set(p.relative_to(intake).parts)
    }


def section(out: str, title: str) -> dict[str, str]:
    """``label: value`` lines of one section of the night's summary."""
    body = out.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in body.splitlines()) if v}


@pytest.mark.slow
def test_the_summary_tells_tonight_from_all_nights_and_lists_what_was_written(tmp_path):
    from rosterlink.core import idnumber
    from rosterlink.synthetic import sample

    intake = tmp_path / "intake"
    sample.generate(intake, scale=0.05, night=1)
    first = run_cli(tmp_path, *night(tmp_path, "--as-of", "2026-11-25"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = intake_files(intake)

    # night 2: the departments' changes, and a clerk's file named after a person (ID and phone)
    sample.generate(intake, scale=0.05, night=2)
    person_id, phone = idnumber.make("370406", dt.date(1960, 5, 4), 1), "13812345678"
    (intake / "civil_affairs" / f"补报_{person_id}_{phone}.csv").write_text(
        "姓名,身份证号\n", encoding="utf-8"
    )
    tonight_files = len(intake_files(intake) - before)
    second = run_cli(tmp_path, *night(tmp_path, "--as-of", "2026-11-26"))
    out = second.stdout
    assert second.returncode == 0, out[-3000:] + second.stderr[-3000:]

    tonight, all_nights = section(out, "tonight:"), section(out, "all nights (the warehouse as it stands):")
    assert tonight["files"].startswith(f"{tonight_files} (")
    assert all_nights["files"].startswith(f"{len(intake_files(intake))} (")
    assert re.fullmatch(r"read [\d,]+, loaded [\d,]+, rejected [\d,]+", tonight["rows"])
    assert not re.search(r"\{'|'\}|\{\}|\[\]", out), "a Python dict or list on the terminal"
    assert re.match(r"by ID number [\d,]+", tonight["rows linked"])  # how tonight's rows were linked
    # no visit logs yet, but the pairs changed: the follow-through says how many households' figures did
    followed = re.fullmatch(
        r"0 visit rows matched, 0 rejected; figures changed for ([\d,]+) of ([\d,]+) households",
        tonight["follow-through"],
    )
    assert followed, tonight["follow-through"]
    assert 0 < int(followed[1].replace(",", "")) < int(followed[2].replace(",", ""))
    assert "task resources" not in out  # only with -v

    written = section(out, "written tonight:")
    labels = (
        "pairing summary",
        "town workbooks",
        "change log",
        "clerk feedback",
        "Data Docs",
        "link review queue",
    )
    for label in labels:
        assert label in written, f"{label} not listed:\n{out}"
    assert Path(written["pairing summary"]).is_file()
    folder, _, count = written["town workbooks"].partition(" (")
    assert Path(folder).is_dir()
    assert re.fullmatch(r"[\d,]+ of [\d,]+ rewritten tonight\)", count), count
    assert Path(written["Data Docs"]).is_file()

    # the file name is shown masked on the terminal and in the Airflow logs
    logs = [p.read_text(errors="replace") for p in (tmp_path / "airflow").rglob("*.log")]
    for text in [out, second.stderr, *logs]:
        assert person_id not in text
        assert phone not in text
    assert "补报_" in out  # shown, masked
    # and in what the tasks passed each other (the UI's XCom tab): the ledger has the real path
    import sqlite3

    (airflow_db,) = (tmp_path / "airflow").rglob("airflow.db")
    with sqlite3.connect(airflow_db) as db:
        xcoms = [
            json.dumps(json.loads(v), ensure_ascii=False) if isinstance(v, str | bytes) else str(v)
            for (v,) in db.execute("SELECT value FROM xcom")
        ]
    assert any("补报_" in v for v in xcoms)
    assert not [v for v in xcoms if person_id in v or phone in v]


def test_the_summary_says_where_the_feedback_of_files_outside_the_department_folders_is(tmp_path, capsys):
    intake = tmp_path / "intake"
    where = {"warehouse": "sqlite:///w.db", "exports": str(tmp_path / "exports"), "intake": str(intake)}
    cli.print_summary(cli.NightOutcome("success", None, None, [], where, tmp_path / "night.log"))
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "clerk feedback:" in ln]
    assert f"{intake}/<department>/feedback/" in line
    assert f"{intake}/feedback/" in line.replace(f"{intake}/<department>/feedback/", "")
