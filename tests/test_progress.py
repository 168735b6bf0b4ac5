"""``rosterlink nightly`` shows progress on long work: while a large workbook is read, and through
the stages of the link stage. Progress lines carry counts, never a row value."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from rosterlink.core import idnumber
from rosterlink.core.spec import district
from rosterlink.intake import read
from rosterlink.synthetic import sample

CLI = str(Path(sys.executable).with_name("rosterlink"))
FULL_ID = re.compile(
    r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx](?![0-9])"
)
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
BIG_ROWS = read.PROGRESS_ROWS + 5_000  # more than one progress step
ID_LESS = 120  # enough ID-less rows for the link stage to train its model tonight

pytestmark = pytest.mark.slow

SURNAMES, GIVEN = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗",
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华",
)


def _head(i: int) -> tuple[str, str, str, str, str]:
    """Name, ID number, town, village, phone of the big roster's i-th household."""
    towns = district().towns
    name = SURNAMES[i % 20] + GIVEN[(i // 20) % 25] + GIVEN[(i // 500) % 25]
    born = dt.date(1950, 1, 1) + dt.timedelta(days=i // 1000)
    return (
        name,
        idnumber.make("370406", born, i % 1000),
        towns[i % len(towns)],
        f"测试村{i % 300}",
        f"138{i:08d}",
    )


def _big_roster(path: Path, rows: int) -> None:
    """A hardship roster the way a clerk sends it: title row, header, one row per household."""
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("特困家庭")
    ws.append(["山亭区特困家庭花名册（全量）"])
    ws.append(
        [
            "序号",
            "户主姓名",
            "户主身份证号",
            "镇街",
            "村(居)",
            "家庭人口",
            "致困原因",
            "人均年收入(元)",
            "联系电话",
        ]
    )
    for i in range(rows):
        name, id_number, town, village, phone = _head(i)
        ws.append([i + 1, name, id_number, town, village, 1 + i % 6, "因病", 1500.5, phone])
    wb.save(path)


def _orphans_without_guardian_ids(path: Path, rows: int) -> None:
    """Orphan families whose guardian is a household head of the big roster, written without the
    guardian's ID number: the link stage must score them with its model."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["儿童姓名", "监护人姓名", "监护人身份证号", "与儿童关系", "镇街", "村(居)", "联系电话"])
        for k in range(rows):
            name, _, town, village, phone = _head(k * 97)
            w.writerow([name[0] + "小" + GIVEN[k % 25], name, "", "祖父", town, village, phone])


def test_nightly_shows_progress_reading_a_large_file_and_through_the_link_stage(tmp_path, airflow_db):
    intake = tmp_path / "intake"
    sample.generate(intake, night=1, scale=0.05)
    big = intake / "civil_affairs" / "特困家庭全量.xlsx"
    _big_roster(big, BIG_ROWS)
    _orphans_without_guardian_ids(intake / "womens_federation" / "失亲儿童补报.csv", ID_LESS)

    done = subprocess.run(
        [
            CLI,
            "nightly",
            "--intake",
            str(intake),
            "--warehouse",
            f"sqlite:///{tmp_path / 'w.db'}",
            "--exports",
            str(tmp_path / "exports"),
            "--as-of",
            "2026-11-25",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    lines = out.splitlines()

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no progress line matching {pattern!r} in:\n{out[-4000:]}"
        return found[0]

    total = BIG_ROWS + 2  # the title and header rows are rows of the sheet too
    name = re.escape(big.name)
    # reading the large workbook: announced, then counted while it goes, then done
    loaded_sheet = first(rf"read: {name}: sheet 特困家庭: {total} rows x 9 columns loaded in [0-9.]+ s")
    counted = first(rf"read: {name}: sheet 特困家庭: {read.PROGRESS_ROWS} of {total} rows read, \d+ records")
    read_all = first(rf"read: {name}: sheet 特困家庭: all {total} rows read, {BIG_ROWS} records \(hardship\)")
    assert loaded_sheet < counted < read_all
    # a small file reports only its result
    assert not [ln for ln in lines if re.search(r"read: 山亭区特困家庭花名册\.xlsx: sheet", ln)]

    # the link stage, stage by stage, with the counts
    loaded = first(r"link: rows loaded: household (\d+) \(\1 new\), cadre \d+ \(\d+ new\)")
    households = first(rf"link: households: \d+ new rows, \d+ with an ID number, {ID_LESS} without")
    training = first(r"link: households: training the model on \d+ rows \(\d+ without an ID number\)")
    scoring = first(rf"link: households: scoring {ID_LESS} rows without an ID number against \d+ rows")
    scored = first(r"link: households: \d+ candidate pairs scored in [0-9.]+ s \(model: em_trained_tonight\)")
    clustering = first(
        r"link: households: clustering: \d+ rows placed by a link, \d+ pairs queued for review"
    )
    assigned = first(r"link: households: \d+ rows assigned, \d+ new households, \d+ merges")
    cadres = first(r"link: cadres: \d+ new rows, \d+ assigned, \d+ new cadres, 0 without a cadre")
    written = first(r"link: written: entities and lineage in [0-9.]+ s")
    assert (
        read_all
        < loaded
        < households
        < training
        < scoring
        < scored
        < clustering
        < assigned
        < cadres
        < written
    )
    placed = int(re.search(r"clustering: (\d+) rows", lines[clustering]).group(1))
    assert placed >= ID_LESS // 2  # most guardians were found among the roster's heads

    # never a row value: no ID number or phone, and none of the big roster's names
    assert not FULL_ID.search(out)
    assert not FULL_PHONE.search(out)
    progress = [ln for ln in lines if re.search(r"\b(read|link): ", ln)]
    for i in (0, 1, 97, BIG_ROWS - 1):
        assert not any(_head(i)[0] in ln for ln in progress), i


def test_a_large_csv_logs_its_size_and_records_parsed_counts_only(tmp_path, caplog):
    path = tmp_path / "特困家庭全量.csv"
    rows = 2 * read.PROGRESS_ROWS + 10
    with path.open("w", encoding="gb18030", newline="") as f:
        w = csv.writer(f)
        w.writerow(["户主姓名", "户主身份证号", "镇街", "村(居)", "致困原因", "联系电话"])
        for i in range(rows):
            name, id_number, town, village, phone = _head(i)
            w.writerow([name, id_number, town, village, "因病致困，长期慢性病需要照料" * 2, phone])
    assert path.stat().st_size > read.PROGRESS_BYTES
    with caplog.at_level("INFO", logger="rosterlink.intake.read"):
        (table,) = read.read_file(path, "civil_affairs").tables
    assert len(table.frame) == rows
    messages = [r.getMessage() for r in caplog.records if r.name == "rosterlink.intake.read"]
    assert re.fullmatch(
        rf"read: {re.escape(path.name)}: [0-9.]+ MB, checking the file before parsing it", messages[0]
    ), messages
    assert f"read: {path.name}: {read.PROGRESS_ROWS} records parsed" in messages
    assert re.search(
        rf"sheet {re.escape(path.stem)}: all {rows + 1} rows read, {rows} records \(hardship\)", messages[-1]
    ), messages
    text = "\n".join(messages)
    assert not FULL_ID.search(text)
    assert not FULL_PHONE.search(text)
    assert _head(0)[0] not in text
