"""Reading, normalising and validating large files: time and peak memory per stage.

    .venv/bin/python benchmarks/bench_read.py [--rows 100000]

Writes a hardship roster of N rows as .xlsx (title row, header) and as a GBK .csv, then times
read.read_file, normalise.normalise_table and validate.validate_table on each, and prints the
figures with the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

import openpyxl

from rosterlink.core import idnumber
from rosterlink.core.spec import district
from rosterlink.intake import normalise, read
from rosterlink.validate import run as validate


def _rows(n: int) -> list[list]:
    import datetime as dt

    towns = district().towns
    surnames, given = (
        "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗",
        "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华",
    )
    return [
        [
            i + 1,
            surnames[i % 20] + given[(i // 20) % 25] + given[(i // 500) % 25],
            idnumber.make("370406", dt.date(1950 + i % 50, 1 + i % 12, 1 + i % 28), i % 1000),
            towns[i % len(towns)],
            f"测试村{i % 300}",
            1 + i % 6,
            "因病",
            1500.5,
            f"138{i:08d}",
        ]
        for i in range(n)
    ]


HEADER = [
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


def write_xlsx(path: Path, rows: list[list]) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("特困家庭")
    ws.append(["山亭区特困家庭花名册"])
    ws.append(HEADER)
    for row in rows:
        ws.append(row)
    wb.save(path)


def write_csv(path: Path, rows: list[list]) -> None:
    with path.open("w", encoding="gbk", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    n = parser.parse_args().rows
    rows = _rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, writer in ((".xlsx", write_xlsx), (".csv", write_csv)):
            path = Path(tmp) / f"big{suffix}"
            writer(path, rows)
            t0 = time.perf_counter()
            (table,) = read.read_file(path, "civil_affairs").tables
            t1 = time.perf_counter()
            frame, findings = normalise.normalise_table(table)
            t2 = time.perf_counter()
            outcome = validate.validate_table(table, frame, findings)
            t3 = time.perf_counter()
            print(
                f"{suffix:5} {n:>8} rows  read {t1 - t0:6.2f} s  normalise {t2 - t1:6.2f} s  "
                f"validate {t3 - t2:6.2f} s  ({n / (t3 - t0):,.0f} rows/s)  valid {len(outcome.valid)}  "
                f"peak RSS {peak_mb():,.0f} MB"
            )


if __name__ == "__main__":
    main()
