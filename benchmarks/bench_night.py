"""Night benchmark: nights 1, 2 and 3 of a scaled district through the real DAG, per stage, against
the bare tools on the same rows.

    .venv/bin/python benchmarks/bench_night.py --scale 10
    .venv/bin/python benchmarks/bench_night.py --scale 100 --profile load_files link_entities
    .venv/bin/python benchmarks/bench_night.py --scale 1 --workdir /tmp/night --keep --json night.json

The intake is the sample generator's (``rosterlink.synthetic.churn.Churn`` at ``--scale`` times the
reference district, on a SQLite warehouse, as a new user runs ``rosterlink nightly``):

* night 1: the five rosters (``scale`` x 2,875 rows, with the generator's bad rows);
* night 2: the generator's churn night (exits, additions, cadres leaving and joining, cases closed
  and opened: a few per cent of the rows change);
* night 3: a quiet night, no new file at all (with ``--nights 4`` and more, more of them, a day
  apart: night 3 still settles what night 2 changed; the ones after are a quiet night's steady state).

Each night runs in a fresh child process through Airflow itself: ``dag.test()`` on the nightly DAG
(``DagBag`` over ``dags/rosterlink_nightly.py``, a private ``AIRFLOW_HOME``), so every task runs
in that process, one after the other. Per stage (task; the mapped file and town tasks summed)
it prints wall time, CPU time (``time.process_time``: user + system of the whole process while
the task ran), peak RSS during the task (Linux: ``/proc/self/clear_refs`` reset before it,
``VmHWM`` after) and rows per second (the night's rows read, through that stage's wall time). The
file tasks (``read_and_validate_file``, one per file) are also split into their two halves, the
read (``tasks.read_file``) and the validation (``tasks.validate_file``), each summed over the files.

For reading, load, link, pairing and the workbooks it also times, in the same process and on the
same rows, the bare tool the stage should be held against (issue 14), and prints the stage's ratio
to it:

* reading (``read_and_validate_file``: read, normalise, validate): tonight's files merely read into
  DataFrames, every sheet, by python-calamine (.xlsx, .xls) and pandas' C reader (.csv), the least
  CPU of :data:`BARE_READ_RUNS` reads; the whole night's CPU is also printed against it;

* load: tonight's ``source_record`` rows inserted by plain ``sqlite3`` ``executemany`` into an
  empty table of the same shape (one transaction);
* link: the same rows grouped by their exact key (ID number or case number) and joined back to
  each row in DuckDB, plus the Splink time the link stage itself reports for the rows without a
  usable ID (``timings.household_model``);
* pairing: the very min-cost-flow instances the night solved (recorded as the night built them),
  solved again by a bare OR-Tools ``SimpleMinCostFlow``;
* the town workbooks, the pairing summary and the change log: the very cells the stage wrote
  (recorded by running its export again, untimed, with ``Sheet.append`` keeping the rows: for the
  town workbooks, those of the towns the night rewrote), written by bare XlsxWriter in
  constant-memory mode, one file per workbook (same sheets, column widths and formats; masking,
  defusing and the queries are the stage's own cost). The three stages of the pairing workbooks
  (the plan, the mapped town batches, the summary) are also summed on one line against the bare
  writing of all they wrote: reading and digesting the towns that need no rewrite is part of the
  stage's cost, and on a quiet night most of it.

``--profile TASK ...`` runs those tasks under cProfile and prints their top entries (cumulative
and own time). ``--snapshot-link DIR`` copies the warehouse as the link stage finds it (after the
load, before the link) to ``DIR/night-N.db`` each night, for ``benchmarks/bench_link_alone.py``.
On a shared machine wall time is noisy: read CPU time first. Figures only; nothing here asserts a
time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from rosterlink.tasks import NIGHT_TASKS  # noqa: E402 (after the path is set)

STAGES = NIGHT_TASKS  # the nightly DAG's tasks in the order they run
BARE_FLOW: list = []  # OR-Tools' own SimpleMinCostFlow, kept before the recording one replaces it
BARE = {"load_files": "load", "link_entities": "link", "rebuild_pairings": "pairing"}
BOOKS = ("write_town_workbooks", "write_pairing_summary", "write_change_log")
# the pairing workbooks' stages, held together against the bare writing of what they wrote
PAIRING_BOOKS = ("plan_town_workbooks", "write_town_workbooks", "write_pairing_summary")
FILE_TASK = "read_and_validate_file"  # one mapped task per file: its halves are timed apart
PARTS = {"read_file": "read + normalise", "validate_file": "validate (GX)"}


# ------------------------------------------------------------------------------------- measuring (child)
def _peak_reset() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Recorder:
    """Wraps ``rosterlink.tasks.night`` (every task of the DAG runs inside it) to time each task,
    and the OR-Tools solver the pairing stage uses, to keep the instances it solved."""

    def __init__(self, profile: set[str], snapshot: Path | None = None) -> None:
        self.snapshot = snapshot  # where the warehouse is copied before the link stage runs
        self.stages: dict[str, dict] = defaultdict(
            lambda: {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "runs": 0}
        )
        self.profile = profile
        self.profiles: dict[str, pstats.Stats] = {}
        self.results: dict[str, object] = {}
        self.flows: list[dict] = []
        self.parts: dict[str, dict] = defaultdict(lambda: {"wall_s": 0.0, "cpu_s": 0.0, "runs": 0})

    def install(self) -> None:
        from airflow.sdk import get_current_context

        from rosterlink import tasks

        original = tasks.night
        recorder = self

        @contextlib.contextmanager
        def measured(settings, run_id, last=False):
            task_id = get_current_context()["ti"].task_id
            if task_id == "link_entities" and recorder.snapshot is not None:
                _copy_warehouse(settings.warehouse_url, recorder.snapshot)
            profiler = cProfile.Profile() if task_id in recorder.profile else None
            _peak_reset()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                with original(settings, run_id, last=last):
                    if profiler is not None:
                        profiler.enable()
                    try:
                        yield
                    finally:
                        if profiler is not None:
                            profiler.disable()
            finally:
                stage = recorder.stages[task_id]
                stage["wall_s"] += time.perf_counter() - t0
                stage["cpu_s"] += time.process_time() - c0
                stage["peak_rss_mb"] = max(stage["peak_rss_mb"], _peak_mb())
                stage["runs"] += 1
                if profiler is not None:
                    stats = pstats.Stats(profiler)
                    if task_id in recorder.profiles:
                        recorder.profiles[task_id].add(stats)
                    else:
                        recorder.profiles[task_id] = stats

        tasks.night = measured

        for name in PARTS:  # the halves of the file task, timed apart (it calls them by these names)
            fn = getattr(tasks, name)

            def part(*args, _fn=fn, _name=name, **kwargs):
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    done = recorder.parts[_name]
                    done["wall_s"] += time.perf_counter() - t0
                    done["cpu_s"] += time.process_time() - c0
                    done["runs"] += 1

            setattr(tasks, name, part)

        for name in ("link", "load", "rebuild_pairings"):
            fn = getattr(tasks, name)

            def keep(*args, _fn=fn, _name=name, **kwargs):
                out = _fn(*args, **kwargs)
                recorder.results[_name] = out
                return out

            setattr(tasks, name, keep)

        from ortools.graph.python import min_cost_flow

        BARE_FLOW.append(min_cost_flow.SimpleMinCostFlow)

        class RecordingFlow(BARE_FLOW[0]):
            def add_arcs_with_capacity_and_unit_cost(self, tails, heads, caps, costs):
                recorder.flows.append({"arcs": (tails.copy(), heads.copy(), caps.copy(), costs.copy())})
                return super().add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)

            def add_arc_with_capacity_and_unit_cost(self, tail, head, cap, cost):
                if not recorder.flows or "arcs" not in recorder.flows[-1] or "arc" in recorder.flows[-1]:
                    recorder.flows.append({})
                recorder.flows[-1]["arc"] = (tail, head, cap, cost)
                return super().add_arc_with_capacity_and_unit_cost(tail, head, cap, cost)

            def set_nodes_supplies(self, nodes, supplies):
                recorder.flows[-1]["supplies"] = (nodes.copy(), supplies.copy())
                return super().set_nodes_supplies(nodes, supplies)

        # the pairing stage imports the class from the module when it solves: replace it there
        min_cost_flow.SimpleMinCostFlow = RecordingFlow  # type: ignore[misc]


def _copy_warehouse(url: str, target: Path) -> None:
    """The SQLite warehouse at ``url`` copied to ``target`` (SQLite's online backup)."""
    import sqlite3

    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def _timed(work) -> tuple[object, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = work()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bare_read(workdir: Path, url: str, file_ids: list[int]) -> dict:
    """Tonight's files merely read into DataFrames, every sheet, as the issue's yardstick does:
    python-calamine for .xlsx and .xls (``pandas.read_excel(engine="calamine")``), pandas' C reader
    for .csv (UTF-8, else GBK); no header found, nothing normalised or checked."""
    import pandas as pd
    import sqlalchemy as sa

    from rosterlink import warehouse

    with warehouse.connect(url).connect() as conn:
        names = (
            conn.execute(
                sa.text("SELECT file_name FROM intake_file WHERE file_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": list(file_ids) or [-1]},
            )
            .scalars()
            .all()
        )
    paths = [workdir / "intake" / n for n in names if (workdir / "intake" / n).is_file()]
    best: dict = {}
    for _ in range(BARE_READ_RUNS):  # the best of a few: the yardstick is the tool, not the noise
        rows = 0
        started, cpu = time.perf_counter(), time.process_time()
        for path in paths:
            if path.suffix.lower() == ".csv":
                try:
                    frames = [pd.read_csv(path, header=None, dtype=str, encoding="utf-8")]
                except UnicodeDecodeError:
                    frames = [pd.read_csv(path, header=None, dtype=str, encoding="gbk")]
            else:
                frames = list(pd.read_excel(path, sheet_name=None, header=None, engine="calamine").values())
            rows += sum(len(f) for f in frames)
        run = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - started}
        if not best or run["cpu_s"] < best["cpu_s"]:
            best = run
    return {**best, "files": len(paths), "rows": rows, "runs": BARE_READ_RUNS}


BARE_READ_RUNS = 3
"""Times the bare read is made (its least CPU is the figure): one read moved by a tenth from run
to run, and every ratio to it with it."""


def bare_load(url: str, file_ids: list[int]) -> dict:
    """Tonight's ``source_record`` rows by plain sqlite3 executemany into an empty copy of the table."""
    import sqlite3

    from rosterlink.warehouse import schema

    r = schema.source_record
    cols = [c.name for c in r.columns if c.name != "record_id"]
    src = sqlite3.connect(url.split("///", 1)[1])
    marks = ",".join("?" * len(file_ids)) or "NULL"
    rows = src.execute(
        f"SELECT {', '.join(cols)} FROM source_record WHERE file_id IN ({marks})", file_ids
    ).fetchall()
    # the table's own DDL and indexes, as the warehouse has them
    ddl = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'source_record' AND sql IS NOT NULL "
            "ORDER BY type DESC"
        )
    ]
    src.close()
    if not rows:
        return {"rows": 0}
    with tempfile.TemporaryDirectory(prefix="rl-bare-load-") as tmp:
        path = f"{tmp}/bare.db"
        conn = sqlite3.connect(path)
        for sql in ddl:
            conn.execute(sql)
        conn.commit()
        sql = f"INSERT INTO source_record ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        def work() -> None:
            with conn:
                conn.executemany(sql, rows)

        _, wall, cpu = _timed(work)
        conn.close()
    return {"rows": len(rows), "wall_s": wall, "cpu_s": cpu}


def bare_link(url: str, file_ids: list[int], linked: dict | None) -> dict:
    """Tonight's rows grouped by exact key and joined back in DuckDB (+ the night's own Splink time)."""
    import sqlite3

    import duckdb
    import pandas as pd

    src = sqlite3.connect(url.split("///", 1)[1])
    marks = ",".join("?" * len(file_ids)) or "NULL"
    frame = pd.read_sql_query(
        "SELECT record_id, entity_kind, id_number, case_number FROM source_record "
        f"WHERE file_id IN ({marks})",
        src,
        params=file_ids,
    )
    src.close()
    splink = float(((linked or {}).get("timings") or {}).get("household_model", 0.0))
    if frame.empty:
        return {"rows": 0, "splink_s": splink}
    con = duckdb.connect()

    def work() -> int:
        con.register("rows_in", frame)
        out = con.execute(
            """
            WITH keyed AS (
                SELECT record_id, entity_kind,
                       CASE WHEN entity_kind = 'case' THEN case_number ELSE id_number END AS k
                FROM rows_in),
            entities AS (
                SELECT entity_kind, k, min(record_id) AS first_row, count(*) AS n
                FROM keyed WHERE k IS NOT NULL GROUP BY entity_kind, k)
            SELECT keyed.record_id, entities.first_row
            FROM keyed JOIN entities USING (entity_kind, k)
            """
        ).fetchnumpy()
        return len(out["record_id"])

    joined, wall, cpu = _timed(work)
    con.close()
    return {"rows": len(frame), "rows_with_key": joined, "wall_s": wall, "cpu_s": cpu, "splink_s": splink}


def bare_pairing(flows: list[dict]) -> dict:
    """The instances the night solved, solved again by a bare SimpleMinCostFlow."""
    wall = cpu = 0.0
    arcs = 0
    for inst in flows:
        if "supplies" not in inst:
            continue

        def work(inst=inst) -> int:
            smcf = BARE_FLOW[0]()
            if "arcs" in inst:
                smcf.add_arcs_with_capacity_and_unit_cost(*inst["arcs"])
            if "arc" in inst:
                smcf.add_arc_with_capacity_and_unit_cost(*inst["arc"])
            smcf.set_nodes_supplies(*inst["supplies"])
            return smcf.solve_max_flow_with_min_cost()

        _, w, c = _timed(work)
        wall, cpu = wall + w, cpu + c
        arcs += len(inst["arcs"][0]) if "arcs" in inst else 0
    return {"instances": sum(1 for i in flows if "supplies" in i), "arcs": arcs, "wall_s": wall, "cpu_s": cpu}


def _book_work(task: str, url: str, as_of: str, workdir: Path):
    """What a workbook stage wrote tonight, as a function of an export folder to write it again in:
    the town workbooks the night rewrote (their records in the night's town folder carry tonight's
    date), the summary, the change log."""
    import datetime as dt

    from rosterlink import export, warehouse
    from rosterlink.export import town_books

    day = dt.date.fromisoformat(as_of)
    eng = warehouse.connect(url)
    night_towns = workdir / "exports" / town_books.FOLDER

    def towns(settings) -> None:
        rewritten = [t for t, r in town_books.read_records(night_towns).items() if r.as_of == day]
        with eng.connect() as conn:
            found = town_books.read_towns(conn, day, rewritten)
        for i, t in enumerate(found.values()):
            town_books.town_book(t, day).save(Path(settings.export_dir) / f"{i}.xlsx")

    def summary(settings) -> None:
        books = {t: (r.file, r.as_of) for t, r in town_books.read_records(night_towns).items()}
        export.write_pairing_workbook(eng, settings, day, books)

    def change_log(settings) -> None:
        export.write_change_log(eng, settings, day)

    return {"write_town_workbooks": towns, "write_pairing_summary": summary, "write_change_log": change_log}[
        task
    ]


def _book_cells(task: str, url: str, as_of: str, workdir: Path) -> list[tuple[list, dict]]:
    """The cells a workbook stage writes, recorded: the stage's export run again (untimed) with
    ``Sheet.append`` keeping each row instead of writing it. Returns each workbook: its sheets in
    order (name, column widths, rows of ``(value, format)`` or None) and each format's properties."""
    from rosterlink.core import workbook
    from rosterlink.core.settings import Settings

    books: dict[int, tuple[list, dict]] = {}
    rows_of: dict[tuple[int, str], list] = {}
    cls_sheet, cls_book = workbook.Sheet, workbook.Book
    orig_append, orig_worksheet, orig_save = cls_sheet.append, cls_book.worksheet, cls_book.save

    def append(self, cells):  # as Sheet.append, kept instead of written
        if self.rows >= self.max_rows:
            self._continue()
        rows_of[(id(self.book), self.ws.name)].append(list(cells))
        self.rows += 1

    def worksheet(self, title, widths=()):
        ws = orig_worksheet(self, title, widths)
        rows_of[(id(self), ws.name)] = []
        books.setdefault(id(self), ([], {}))[0].append((ws.name, tuple(widths), rows_of[(id(self), ws.name)]))
        return ws

    def save(self, target):
        books.setdefault(id(self), ([], {}))[1].update(
            {id(f): workbook.format_props(s) for s, f in self._formats.items()}
        )
        return orig_save(self, target)

    cls_sheet.append, cls_book.worksheet, cls_book.save = append, worksheet, save  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="rl-bare-books-") as tmp:
            settings = Settings(intake_dir=workdir / "intake", warehouse_url=url, export_dir=Path(tmp))
            _book_work(task, url, as_of, workdir)(settings)
    finally:
        cls_sheet.append, cls_book.worksheet, cls_book.save = orig_append, orig_worksheet, orig_save  # type: ignore[method-assign]
    return list(books.values())


def bare_book(task: str, url: str, as_of: str, workdir: Path) -> dict:
    """The very cells the stage wrote (masked, defused, formatted as it wrote them), written again
    by bare XlsxWriter in constant-memory mode, one file per workbook: the floor the workbook stages
    are held against."""
    import datetime as dt

    import xlsxwriter

    books = _book_cells(task, url, as_of, workdir)
    with tempfile.TemporaryDirectory(prefix="rl-bare-book-") as tmp:

        def work() -> int:
            cells = 0
            for n, (sheets, props) in enumerate(books):
                wb = xlsxwriter.Workbook(
                    f"{tmp}/bare{n}.xlsx",
                    {
                        "constant_memory": True,
                        "strings_to_numbers": False,
                        "strings_to_formulas": False,
                        "strings_to_urls": False,
                    },
                )
                formats: dict[int, object] = {}
                for name, widths, rows in sheets:
                    ws = wb.add_worksheet(name)
                    for i, width in enumerate(widths):
                        ws.set_column(i, i, width)
                    for r, row in enumerate(rows):
                        for c, cell in enumerate(row):
                            if cell is None:
                                continue
                            value, old = cell
                            fmt = None
                            if old is not None:
                                fmt = formats.get(id(old))
                                if fmt is None:
                                    fmt = formats[id(old)] = wb.add_format(props[id(old)])
                            if value is None:
                                ws.write_blank(r, c, None, fmt)
                            elif isinstance(value, str):
                                ws.write_string(r, c, value, fmt)
                            elif isinstance(value, dt.date):
                                ws.write_datetime(r, c, value, fmt)
                            else:
                                ws.write_number(r, c, value, fmt)
                            cells += 1
                wb.close()
            return cells

        cells, wall, cpu = _timed(work)
    return {
        "cells": cells,
        "books": len(books),
        "sheets": sum(len(sheets) for sheets, _ in books),
        "wall_s": wall,
        "cpu_s": cpu,
    }


def prepare(workdir: Path) -> None:
    """A private ``AIRFLOW_HOME`` under ``workdir``, set up as ``rosterlink nightly`` does."""
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    from rosterlink.cli import prepare_airflow

    prepare_airflow()


def dag_test(workdir: Path, as_of: str) -> tuple[Any, str, float, float]:
    """The nightly DAG through ``dag.test`` in this process, on ``workdir``'s intake, exports and
    SQLite warehouse: the run, the warehouse URL, wall and CPU seconds (after :func:`prepare`)."""
    import logging

    from airflow.dag_processing.dagbag import DagBag

    url = f"sqlite:///{workdir / 'warehouse.db'}"
    conf = {
        "intake_dir": str(workdir / "intake"),
        "export_dir": str(workdir / "exports"),
        "warehouse_url": url,
        "as_of": as_of,
    }
    logging.getLogger("airflow").setLevel(logging.WARNING)
    t0, c0 = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=str(ROOT / "dags" / "rosterlink_nightly.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.get_dag("rosterlink_nightly").test(run_conf=conf)
    return run, url, time.perf_counter() - t0, time.process_time() - c0


def rows_read(conn: Any, run_id: str) -> int:
    """The rows the night's files held (the ledger's ``rows_read``)."""
    import sqlalchemy as sa

    query = sa.text("SELECT COALESCE(SUM(rows_read), 0) FROM intake_file WHERE run_id = :r")
    return int(conn.execute(query, {"r": run_id}).scalar() or 0)


def run_night(
    workdir: Path, night: int, as_of: str, profile: set[str], top: int, snapshot: Path | None = None
) -> dict:
    """One night through ``dag.test`` in this process; its figures (called in the child)."""
    prepare(workdir)
    recorder = Recorder(profile, snapshot / f"night-{night}.db" if snapshot else None)
    recorder.install()
    run, url, total_wall, total_cpu = dag_test(workdir, as_of)
    state = str(getattr(run.state, "value", run.state))

    import sqlalchemy as sa

    from rosterlink import warehouse

    eng = warehouse.connect(url)
    with eng.connect() as conn:
        files = (
            conn.execute(sa.text("SELECT file_id FROM intake_file WHERE run_id = :r"), {"r": run.run_id})
            .scalars()
            .all()
        )
        read = rows_read(conn, run.run_id)
        pairs = int(
            conn.execute(sa.text("SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL")).scalar() or 0
        )
    bare = {
        FILE_TASK: bare_read(workdir, url, list(files)),
        "load_files": bare_load(url, list(files)),
        "link_entities": bare_link(url, list(files), recorder.results.get("link")),  # type: ignore[arg-type]
        "rebuild_pairings": bare_pairing(recorder.flows),
        **{task: bare_book(task, url, as_of, workdir) for task in BOOKS},
    }
    profiles = {}
    for task_id, stats in recorder.profiles.items():
        text = {}
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats(key).print_stats(top)
            text[key] = out.getvalue()
        profiles[task_id] = text
    return {
        "night": night,
        "as_of": as_of,
        "state": state,
        "rows_read": read,
        "files": len(files),
        "pairs_current": pairs,
        "total_wall_s": round(total_wall, 2),
        "total_cpu_s": round(total_cpu, 2),
        "stages": {
            k: {**v, "wall_s": round(v["wall_s"], 3), "cpu_s": round(v["cpu_s"], 3)}
            for k, v in recorder.stages.items()
        },
        "parts": {
            k: {**v, "wall_s": round(v["wall_s"], 3), "cpu_s": round(v["cpu_s"], 3)}
            for k, v in recorder.parts.items()
        },
        "bare": bare,
        "profiles": profiles,
        "load_average": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------------------------- the nights (parent)
def in_child(script: str, night: int, args: list[str], out: Path) -> dict:
    """Run ``script`` with ``args`` in a fresh Python process (one night each: Airflow's state and
    the peak RSS start anew) and return the figures it wrote to ``out``."""
    env = {
        **os.environ,
        "GX_ANALYTICS_ENABLED": "False",
        "ROSTERLINK_SETTLE_SECONDS": "0",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    command = [sys.executable, script, *args]
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise SystemExit(f"night {night} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


def child(
    workdir: Path, night: int, as_of: str, profile: list[str], top: int, snapshot: Path | None = None
) -> dict:
    out = workdir / f"night-{night}.json"
    args = ["--_night", str(night), "--_as-of", as_of, "--_out", str(out)]
    args += ["--workdir", str(workdir), "--top", str(top)]
    if snapshot is not None:
        args += ["--snapshot-link", str(snapshot.resolve())]
    if profile:
        args += ["--profile", *profile]
    return in_child(__file__, night, args, out)


def _ratio(stage: float, bare: float) -> str:
    return f"{stage / bare:8.1f}x" if bare > 0 else "       -"


def report(result: dict) -> None:
    rows = result["rows_read"]
    print(
        f"\nnight {result['night']} ({result['as_of']}): {result['state']}, {result['files']} files, "
        f"{rows} rows read, {result['pairs_current']} current pairs; "
        f"dag.test {result['total_wall_s']} s wall, {result['total_cpu_s']} s CPU "
        f"(load average {result['load_average']})"
    )
    print(f"  {'stage':<24}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'rows/s':>10}   bare tool (same rows)")
    for name in STAGES:
        st = result["stages"].get(name)
        if st is None:
            continue
        rate = f"{rows / st['wall_s']:10.0f}" if rows and st["wall_s"] > 0 else f"{'-':>10}"
        line = f"  {name:<24}{st['wall_s']:9.2f}{st['cpu_s']:9.2f}{st['peak_rss_mb']:9.0f}{rate}"
        bare = result["bare"].get(name)
        if bare and bare.get("cpu_s") is not None:
            if name == "link_entities":
                base_cpu = bare["cpu_s"] + bare.get("splink_s", 0.0)
                what = (
                    f"DuckDB group-by+join {bare['cpu_s']:.2f} s CPU + Splink {bare.get('splink_s', 0):.2f} s"
                )
            elif name in BOOKS:
                base_cpu = bare["cpu_s"]
                what = (
                    f"bare XlsxWriter constant_memory, same {bare['cells']} cells"
                    f" ({bare['books']} workbooks, {bare['sheets']} sheets) {bare['cpu_s']:.2f} s CPU"
                )
            elif name == "load_files":
                base_cpu = bare["cpu_s"]
                what = f"sqlite3 executemany of {bare['rows']} rows {bare['cpu_s']:.2f} s CPU"
            elif name == FILE_TASK:
                base_cpu = bare["cpu_s"]
                what = (
                    f"calamine / pandas read of the {bare['files']} files ({bare['rows']} sheet rows)"
                    f" {bare['cpu_s']:.2f} s CPU (best of {bare.get('runs', 1)})"
                )
            else:
                base_cpu = bare["cpu_s"]
                what = (
                    f"SimpleMinCostFlow x{bare['instances']} ({bare['arcs']} arcs) {bare['cpu_s']:.2f} s CPU"
                )
            line += f"   {what}; stage/bare CPU {_ratio(st['cpu_s'], base_cpu).strip()}"
            if name in result.get("profiles", {}):
                line += " (the stage ran under cProfile: its time is inflated)"
        if st["runs"] > 1 and name != FILE_TASK:
            line += f" [{st['runs']} mapped tasks]"
        print(line)
        if name == FILE_TASK:
            for part, what in PARTS.items():
                done = result.get("parts", {}).get(part)
                if done:
                    print(f"    {'- ' + what:<22}{done['wall_s']:9.2f}{done['cpu_s']:9.2f}")
    stages = [result["stages"][n] for n in PAIRING_BOOKS if n in result["stages"]]
    bares = [result["bare"][n] for n in PAIRING_BOOKS if n in result["bare"]]
    if stages:
        cpu, base = sum(st["cpu_s"] for st in stages), sum(b["cpu_s"] for b in bares)
        print(
            f"  {'pairing workbooks':<24}{sum(st['wall_s'] for st in stages):9.2f}{cpu:9.2f}"
            f"{max(st['peak_rss_mb'] for st in stages):9.0f}{'':>10}   plan + towns + summary against bare"
            f" XlsxWriter of the same {sum(b['cells'] for b in bares)} cells"
            f" ({sum(b['books'] for b in bares)} workbooks) {base:.2f} s CPU;"
            f" stage/bare CPU {_ratio(cpu, base).strip()}"
        )
    read = result["bare"].get(FILE_TASK)
    if read and read.get("files"):
        print(
            f"  the whole night (dag.test) {result['total_cpu_s']:.2f} s CPU against the bare read of its"
            f" files {read['cpu_s']:.2f} s: {_ratio(result['total_cpu_s'], read['cpu_s']).strip()}"
        )
    for task_id, text in result.get("profiles", {}).items():
        print(f"\n  cProfile of {task_id}, night {result['night']} (top by cumulative time):")
        print("\n".join("    " + ln for ln in text["cumulative"].splitlines() if ln.strip()))
        print(f"\n  cProfile of {task_id}, night {result['night']} (top by own time):")
        print("\n".join("    " + ln for ln in text["tottime"].splitlines() if ln.strip()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=10.0, help="times the reference district (1, 10, 100)")
    p.add_argument(
        "--nights", type=int, default=3, help="nights to run: 1 (full), 2 (churn), 3 and on (quiet)"
    )
    p.add_argument("--profile", nargs="*", default=[], help="task ids to run under cProfile")
    p.add_argument("--top", type=int, default=25, help="profile entries to print")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--snapshot-link", type=Path, help="copy the warehouse before each link stage to DIR/night-N.db"
    )
    p.add_argument("--_night", dest="child_night", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_as-of", dest="as_of", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="child_out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_night:
        result = run_night(
            args.workdir, args.child_night, args.as_of, set(args.profile), args.top, args.snapshot_link
        )
        args.child_out.write_text(json.dumps(result, ensure_ascii=False))
        return 0

    from rosterlink.synthetic.churn import Churn

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rl-bench-night-"))
    if workdir.exists() and any(workdir.iterdir()):
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    churn = Churn(workdir / "intake", scale=args.scale)
    results = []
    try:
        for night in range(1, args.nights + 1):
            if night <= 2:
                files = churn.write_night(night)
                as_of = files.as_of.isoformat()
                print(
                    f"night {night}: {len(files.files)} files, {files.rows} rows written ({files.seconds} s)",
                    flush=True,
                )
            else:
                as_of = churn.as_of(night).isoformat()
                print(f"night {night}: quiet, no new file", flush=True)
            result = child(workdir, night, as_of, args.profile, args.top, args.snapshot_link)
            report(result)
            results.append(result)
    finally:
        if args.json:
            args.json.write_text(
                json.dumps({"scale": args.scale, "nights": results}, ensure_ascii=False, indent=1)
            )
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    from targets import night_verdicts, print_verdicts

    print_verdicts(f"issue 14's targets at {args.scale:g}x (CPU time, this run):", night_verdicts(results))
    print("\nCPU time is the figure to compare on a shared machine; wall time includes waiting for the CPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
