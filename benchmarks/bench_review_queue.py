"""Review-queue benchmark (issue 15): a hardship roster where many households share a few names in a
few villages, through the real nightly DAG on SQLite, over two nights.

    .venv/bin/python benchmarks/bench_review_queue.py                      # 300,000 rows, groups of 8
    .venv/bin/python benchmarks/bench_review_queue.py --rows 30000 --json q.json

The intake is made here (seeded, the same bytes every time): one civil-affairs roster
(``特困家庭花名册.csv``) of ``--rows`` households, each with its own valid ID number of the reference
district's region code (``rosterlink.core.idnumber.make``, the generator's own helper), spread over
the district's towns, ``--villages`` villages per town and 150 common names so that every
(name, town, village) holds ``--per-group`` households: the rule "one name and village under two
ID numbers" (``name_village_id_conflict``) queues ``per-group - 1`` items per group, 262,500 at the
defaults, as in the issue. Night 2 adds ``--night2-rows`` more households with new ID numbers to
the same groups (a file of their own), so the link stage runs with the whole first queue already
in the warehouse.

Each night runs in a fresh child process through ``dag.test()`` on the nightly DAG (as
``rosterlink nightly`` runs it; the timing wrapper is ``bench_night``'s). Printed per night: review
items queued tonight and pending in all, items listed in ``待核实.xlsx``, the night's wall and CPU
time, the link stage's wall time and peak RSS (``VmHWM`` reset before the task), and the time the
link stage spent writing ``待核实.xlsx``. Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "benchmarks"))

_SURNAMES = "王李张刘陈杨赵黄周吴"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛")
_VILLAGE_STEMS = (
    "东庄", "西庄", "南庄", "北庄", "前寨", "后寨", "王庄", "李楼", "张庄", "刘村", "孙庄", "赵庄", "周楼",
    "吴庄", "郑庄", "马庄", "高庄", "林村", "何庄", "罗庄", "梁庄", "宋庄", "唐庄", "许庄", "韩庄", "冯庄",
    "邓庄", "曹庄", "彭庄", "曾庄",
)  # fmt: skip
_CAUSES = ("因病", "因残", "缺劳力", "因学", "年老")
_HEADERS = ("户主姓名", "户主身份证号", "镇街", "村(居)", "家庭人口", "致困原因", "联系电话")
NIGHT1 = dt.date(2026, 11, 20)


# ------------------------------------------------------------------------------------- the intake
def names() -> list[str]:
    return [s + g for s in _SURNAMES for g in _GIVEN]  # 150 common names


def groups(villages: int) -> list[tuple[str, str, str]]:
    """Every (name, town, village), towns and villages interleaved so a prefix spreads widely."""
    from rosterlink.core import spec

    towns = spec.district().towns
    places = [(t, _VILLAGE_STEMS[v % len(_VILLAGE_STEMS)] + "村") for v in range(villages) for t in towns]
    return [(n, t, v) for t, v in places for n in names()]


def households(
    rng: random.Random, taken: set[str], n_rows: int, per_group: int, villages: int
) -> list[tuple[str, ...]]:
    """``n_rows`` households, ``per_group`` to a (name, town, village), each a new valid ID number."""
    from rosterlink.core import idnumber, spec

    region = spec.district().region_code
    every = groups(villages)
    n_groups = -(-n_rows // per_group)
    if n_groups > len(every):
        raise SystemExit(
            f"{n_rows} rows in groups of {per_group} need {n_groups} (name, village) groups; "
            f"{len(every)} with --villages {villages}: raise --villages"
        )
    out = []
    lo, span = dt.date(1940, 1, 1), (dt.date(1995, 12, 31) - dt.date(1940, 1, 1)).days
    for i in range(n_rows):
        name, town, village = every[i % n_groups]
        while True:
            seq = rng.randrange(1000)
            id18 = idnumber.make(region, lo + dt.timedelta(days=rng.randrange(span + 1)), seq)
            if id18 not in taken:
                taken.add(id18)
                break
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        out.append((name, id18, town, village, str(rng.randint(1, 6)), rng.choice(_CAUSES), phone))
    return out


def write_roster(path: Path, rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(_HEADERS)
        w.writerows(rows)


# ------------------------------------------------------------------------------------- one night (child)
def run_night(workdir: Path, as_of: str) -> dict:
    """One night through ``dag.test`` in this process, with the link stage's figures."""
    from bench_night import Recorder, dag_test, prepare, rows_read

    from rosterlink.link import night as link_night

    prepare(workdir)
    recorder = Recorder(set())
    recorder.install()
    book: dict[str, float] = {}
    export = link_night.export_review_workbook

    def timed_export(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return export(*args, **kwargs)
        finally:
            book["wall_s"] = round(time.perf_counter() - t0, 2)
            book["cpu_s"] = round(time.process_time() - c0, 2)

    link_night.export_review_workbook = timed_export  # the name the link stage calls it by
    run, url, wall, cpu = dag_test(workdir, as_of)

    import sqlalchemy as sa

    from rosterlink import warehouse

    with warehouse.connect(url).connect() as conn:
        pending = int(
            conn.execute(sa.text("SELECT COUNT(*) FROM link_review WHERE status = 'pending'")).scalar()
        )
        read = rows_read(conn, run.run_id)
    link = recorder.results.get("link") or {}
    stage = recorder.stages.get("link_entities", {})
    return {
        "as_of": as_of,
        "state": str(getattr(run.state, "value", run.state)),
        "rows_read": read,
        "reviews_queued": link.get("reviews_queued"),
        "reviews_pending": pending,
        "listed_in_workbook": listed(workdir / "intake" / "review" / "待核实.xlsx"),
        "night_wall_s": round(wall, 1),
        "night_cpu_s": round(cpu, 1),
        "link_wall_s": round(stage.get("wall_s", 0.0), 1),
        "link_cpu_s": round(stage.get("cpu_s", 0.0), 1),
        "link_peak_rss_mb": stage.get("peak_rss_mb"),
        "review_workbook_wall_s": book.get("wall_s"),
        "review_workbook_cpu_s": book.get("cpu_s"),
        "load_average": round(os.getloadavg()[0], 2),
    }


def listed(path: Path) -> int | None:
    """Items listed in the review workbook (rows of 待核实 with a review number)."""
    if not path.is_file():
        return None
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        ws = wb["待核实"]
        return sum(1 for (v,) in ws.iter_rows(min_row=2, max_col=1, values_only=True) if isinstance(v, int))
    finally:
        wb.close()


def child(workdir: Path, night: int, as_of: str) -> dict:
    from bench_night import in_child

    out = workdir / f"night-{night}.json"
    return in_child(__file__, night, ["--_as-of", as_of, "--_out", str(out), "--workdir", str(workdir)], out)


def report(night: int, r: dict) -> None:
    print(
        f"night {night} ({r['as_of']}): {r['state']}, {r['rows_read']:,} rows read; "
        f"review items queued {r['reviews_queued']:,}, pending {r['reviews_pending']:,}, "
        f"listed in 待核实.xlsx {r['listed_in_workbook']}\n"
        f"  night {r['night_wall_s']} s wall, {r['night_cpu_s']} s CPU; "
        f"link stage {r['link_wall_s']} s wall, {r['link_cpu_s']} s CPU, "
        f"peak RSS {r['link_peak_rss_mb']:.0f} MB; "
        f"待核实.xlsx written in {r['review_workbook_wall_s']} s ({r['review_workbook_cpu_s']} s CPU); "
        f"load average {r['load_average']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=300_000, help="households on night 1")
    p.add_argument("--per-group", type=int, default=8, help="households per (name, town, village)")
    p.add_argument("--villages", type=int, default=25, help="villages per town")
    p.add_argument(
        "--night2-rows", type=int, default=3_000, help="households added on night 2 (0: one night)"
    )
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--_as-of", dest="as_of", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="child_out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_out:
        args.child_out.write_text(json.dumps(run_night(args.workdir, args.as_of), ensure_ascii=False))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rl-bench-review-"))
    if workdir.exists() and any(workdir.iterdir()):
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng, taken = random.Random(args.seed), set()
    folder = workdir / "intake" / "civil_affairs"
    results = []
    try:
        nights = [(1, args.rows, "特困家庭花名册.csv")]
        if args.night2_rows:
            nights.append((2, args.night2_rows, "特困家庭花名册_新增.csv"))
        for night, n_rows, name in nights:
            started = time.perf_counter()
            write_roster(folder / name, households(rng, taken, n_rows, args.per_group, args.villages))
            print(
                f"night {night}: {name}, {n_rows:,} rows ({time.perf_counter() - started:.1f} s)", flush=True
            )
            result = child(workdir, night, (NIGHT1 + dt.timedelta(days=night - 1)).isoformat())
            report(night, result)
            results.append(result)
    finally:
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "args": vars(args) | {"workdir": str(workdir), "json": str(args.json)},
                        "nights": results,
                    },
                    ensure_ascii=False,
                    indent=1,
                    default=str,
                )
            )
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
