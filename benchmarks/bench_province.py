"""Province benchmark: a province-sized night on PostgreSQL under the CeleryExecutor.

    .venv/bin/python benchmarks/bench_province.py   # 1,000,000 households, 100,000 cadres,
                                                    # 40 files; nights with 1 and 2 workers
    .venv/bin/python benchmarks/bench_province.py --households 50000 --cadres 5000 --workers 2
    .venv/bin/python benchmarks/bench_province.py --workdir /tmp/province --keep --json province.json
    .venv/bin/python benchmarks/bench_province.py --workers 2 --quiet-night   # and a night with no file
    .venv/bin/python benchmarks/bench_province.py --workers 2 --quiet-nights 2  # and two, a day apart
    .venv/bin/python benchmarks/bench_province.py --workers 2 --churn-night --quiet-nights 1

The intake is what a province's offices would drop for the first night, written by the sample
generator's own writers (``rosterlink.synthetic.sample``) for a province configuration (a copy of the
reference district's ``config/`` with its reference counts raised, and pairing capacities raised
so a hundred thousand cadres can take a million households): the hardship rosters as .xlsx (one per
two towns, two sheets each), the orphan families as legacy .xls (one per town), the cadre rosters
as .xlsx (one per linked town), the old party members as GBK .csv (one per town) and the key cases
as .csv; 40 files in all, with the generator's bad rows in the first of each.

For every worker count asked for, a fresh deployment on a temporary ``AIRFLOW_HOME``: PostgreSQL as
Airflow's metadata database and as the warehouse (fresh databases each), Redis as the Celery
broker, api-server + scheduler + dag-processor + N Celery workers (concurrency 1 each), one night
triggered through the REST API (with ``--quiet-night``, then a second night with no new file, the
next day, on the same deployment; with ``--quiet-nights N``, N such nights a day apart: the first
settles what night 1 changed, the next are a quiet night's steady state; with ``--churn-night``,
first the generator's churn night, as bench_night.py's night 2: households leaving and added,
cadres leaving and joining, cases closed and registered). Printed per night:

* total time of the night (run start to end) and, per stage, its wall time (first start to last
  end of its task instances), the task-seconds spent (several mapped tasks run at once) and the
  rows per second through it;
* peak memory per process: every task process's own peak RSS and CPU time (the ``task resources``
  line ``rosterlink.tasks.night`` logs), and the peak RSS of each Airflow component, sampled every
  second over the whole process tree;
* the warehouse after the night against the generator's truth (households, cadres, cases, pairs,
  rows read = loaded + rejected).

It prints figures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "tests"))

from rosterlink.tasks import NIGHT_TASKS  # noqa: E402 (after the path is set)

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/12"
AS_OF = "2026-11-25"
QUIET_AS_OF = "2026-11-26"  # the quiet night: the next day, no file dropped
REFERENCE = {
    "hardship": 936,
    "orphan": 468,
    "old_member": 53,
    "cadre_county": 38,
    "cadre_section": 1088,
    "cadre_ordinary": 331,
    "case": 49,
}
STAGES = NIGHT_TASKS  # the nightly DAG's tasks in the order they run


# ------------------------------------------------------------------------------------------ the intake
def province_counts(households: int, cadres: int) -> dict[str, int]:
    """Reference counts for a province: households and cadres split as in the reference district;
    key cases follow the county-level cadres (each leads at most ``max_cases``)."""
    h_total = REFERENCE["hardship"] + REFERENCE["orphan"] + REFERENCE["old_member"]
    c_total = REFERENCE["cadre_county"] + REFERENCE["cadre_section"] + REFERENCE["cadre_ordinary"]
    counts = {k: round(households * REFERENCE[k] / h_total) for k in ("hardship", "orphan")}
    counts["old_member"] = households - counts["hardship"] - counts["orphan"]
    counts.update({k: round(cadres * REFERENCE[k] / c_total) for k in ("cadre_county", "cadre_section")})
    counts["cadre_ordinary"] = cadres - counts["cadre_county"] - counts["cadre_section"]
    counts["case"] = round(cadres * REFERENCE["case"] / c_total)
    return counts


def province_config(target: Path, households: int, cadres: int) -> Path:
    """A copy of the package's config folder with province reference counts, and pairing capacities
    that let ``cadres`` cadres take ``households`` households (the programme's rule of one household
    per cadre becomes a handful per cadre at province scale)."""
    from rosterlink.core.paths import PACKAGE_CONFIG

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE_CONFIG, target)
    counts = province_counts(households, cadres)
    district = json.loads((target / "district.json").read_text(encoding="utf-8"))
    district["reference_counts"] = {**counts, "pairs": households}
    (target / "district.json").write_text(
        json.dumps(district, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    pairing = json.loads((target / "pairing.json").read_text(encoding="utf-8"))
    per_cadre = -(-households * 3 // (cadres * 2))  # capacity 1.5x the average load
    pairing["max_households"] = {
        "county": max(3, per_cadre // 2),
        "section": per_cadre,
        "ordinary": per_cadre,
    }
    pairing["default_max_households"] = per_cadre
    (target / "pairing.json").write_text(json.dumps(pairing, ensure_ascii=False, indent=2), encoding="utf-8")
    return target


def _groups(items: list, n: int) -> list[list]:
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]


def generate_intake(intake: Path, seed: int = 20261201) -> dict:
    """Write the province's night-1 files (40 for ten towns) with the sample generator's writers;
    ROSTERLINK_CONFIG_DIR must point at the province config. Returns counts and per-file truth."""
    import random

    from rosterlink.core import spec
    from rosterlink.synthetic import population, writers

    pop, _ = population.build_population(seed, 1.0)  # scale 1 of the province config
    fill = population.fill_date(1)
    towns = list(pop.towns)
    empty_bad = population.no_bad_rows()
    files: dict[str, dict] = {}

    def part(i: int) -> dict:
        return {"bad": pop.bad if i == 0 else empty_bad}

    def write(writer, rel: str, sub, *extra) -> None:
        (intake / rel).parent.mkdir(parents=True, exist_ok=True)
        truth = writer(intake, rel, sub, random.Random(f"{seed}:{rel}"), *extra)
        files[rel] = dataclasses.asdict(truth)

    for i, pair in enumerate(_groups(towns, 5)):
        sub = dataclasses.replace(
            pop, towns=tuple(pair), hardship=[h for h in pop.hardship if h.town in pair], **part(i)
        )
        write(writers.write_hardship, f"civil_affairs/特困家庭花名册_{'、'.join(pair)}.xlsx", sub, fill)
    for i, town in enumerate(towns):
        sub = dataclasses.replace(
            pop, towns=(town,), orphan=[f for f in pop.orphan if f.town == town], **part(i)
        )
        write(writers.write_orphan, f"womens_federation/失亲儿童家庭名单_{town}.xls", sub, fill)
        sub = dataclasses.replace(pop, cadres=[c for c in pop.cadres if c.linked_town == town], **part(i))
        write(writers.write_cadres, f"organization/干部花名册_{town}.xlsx", sub, fill)
        sub = dataclasses.replace(
            pop, towns=(town,), old_member=[m for m in pop.old_member if m.town == town], **part(i)
        )
        write(writers.write_old_members, f"organization/建国前入党老党员名册_{town}.csv", sub)
    for i, pair in enumerate(_groups(towns, 5)):
        sub = dataclasses.replace(pop, cases=[c for c in pop.cases if c.town in pair], **part(i))
        write(writers.write_cases, f"petition/重点信访案件台账_{'、'.join(pair)}.csv", sub)
    counts, _ = population.state(pop)
    return {"district": spec.district().name, "counts": counts, "files": files}


def generate_churn(target: Path, seed: int = 20261201) -> dict:
    """The generator's churn night for the province (``rosterlink.synthetic.churn``, one round of
    changes to the population :func:`generate_intake` wrote: about 3 % of the households exit and
    2 % are added, 2 % of the cadres leave and 1 % join, a tenth of the open cases are closed and as
    many registered, each list with its bad rows), dated the day after night 1. ROSTERLINK_CONFIG_DIR
    must point at the province config. Returns the night's files, changes and expected counts."""
    from rosterlink.synthetic.churn import Churn

    churn = Churn(
        target, seed=seed, scale=1.0, first_night=dt.date.fromisoformat(AS_OF), night_1_written=True
    )
    night = churn.write_night(2)
    return {
        "as_of": night.as_of.isoformat(),
        "files": {rel: dataclasses.asdict(f) for rel, f in night.files.items()},
        "changes": night.changes,
        "counts": night.expected,
    }


def written(folder: Path, truth_file: Path, generate: Callable[[Path], dict], *, reuse: bool) -> dict:
    """The generator's files in ``folder`` and what it says of them, kept in ``truth_file``: those an
    earlier run left (``reuse``, when both are there), else written anew by ``generate``."""
    if reuse and truth_file.is_file() and folder.is_dir():
        print(f"reusing the files in {folder}")
        return json.loads(truth_file.read_text(encoding="utf-8"))
    if folder.exists():
        shutil.rmtree(folder)
    truth = generate(folder)
    truth_file.write_text(json.dumps(truth, ensure_ascii=False, default=str), encoding="utf-8")
    return truth


# ------------------------------------------------------------------------------------ memory sampling
class Sampler(threading.Thread):
    """Peak RSS per process of the cluster (every process carrying its marker), sampled every second;
    processes are named by their command line."""

    def __init__(self, cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.peaks: dict[int, tuple[float, str]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopping.wait(1.0):
            for pid in self.cluster.marked_pids():
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss / 2**20
                    name = " ".join(proc.cmdline()[1:6]) or proc.name()
                except (psutil.Error, OSError):
                    continue
                if rss > self.peaks.get(pid, (0.0, ""))[0]:
                    self.peaks[pid] = (rss, name)

    def by_role(self) -> dict[str, float]:
        roles: dict[str, float] = defaultdict(float)
        for rss, name in self.peaks.values():
            role = _role(name)
            roles[role] = max(roles[role], rss)
        return dict(sorted(roles.items()))


def _role(cmdline: str) -> str:
    for needle, role in (
        ("api-server", "api-server"),
        ("dag-processor", "dag-processor"),
        ("scheduler", "scheduler"),
        ("celery worker", "celery worker"),
        ("worker", "celery worker (task process)"),
    ):
        if needle in cmdline:
            return role
    return cmdline[:40] or "other"


# ---------------------------------------------------------------------------------------- one night
def _database(name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{PG_SERVER}/{name}"


def _drop(url: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.dispose()


RESOURCES = re.compile(r"task resources: peak_rss_mb=(\d+) cpu_s=([\d.]+) wall_s=([\d.]+)")


def run_nights(
    workdir: Path,
    intake_src: Path,
    config: Path,
    workers: int,
    timeout: float,
    *,
    quiet: int,
    churn: Path | None = None,
    keep_warehouse: bool = False,
) -> list[dict]:
    """Night 1 on a fresh deployment, then (``churn``: the churn night's files, dropped into the
    intake before it) the churn night the next day, and then ``quiet`` nights, a day apart, with no
    new file (what a province pays for a night when nothing was sent: the first after a night of
    changes still settles what that night changed; the next ones are the steady state). One result
    per night."""
    import sqlalchemy as sa

    from airflow_cluster import AirflowCluster, celery_env, ensure_redis
    from conftest import ensure_postgres

    ensure_postgres()
    why = ensure_redis()
    if why:
        raise SystemExit(f"Redis: {why}")
    tag = uuid.uuid4().hex[:8]
    run_dir = workdir / f"workers-{workers}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    intake, exports = run_dir / "intake", run_dir / "exports"
    shutil.copytree(intake_src, intake, copy_function=os.link)
    warehouse_url = _database(f"rl_province_wh_{tag}")
    airflow_url = _database(f"rl_province_af_{tag}")
    queue = f"rl-province-{tag}"
    nights: list[tuple[str, str, Path | None]] = [("night 1", AS_OF, None)]
    if churn is not None:
        nights.append(("churn night", QUIET_AS_OF, churn))
    first_quiet = dt.date.fromisoformat(QUIET_AS_OF) + dt.timedelta(days=len(nights) - 1)
    for i in range(quiet):
        day = first_quiet + dt.timedelta(days=i)
        nights.append(("quiet night" + (f" {i + 1}" if quiet > 1 else ""), day.isoformat(), None))
    names = [f"rl-province-w{i + 1}-{tag}" for i in range(workers)]
    cluster = AirflowCluster(
        run_dir / "airflow",
        executor="CeleryExecutor",
        sql_alchemy_conn=airflow_url,
        parallelism=4,
        env={
            **celery_env(REDIS_URL, airflow_url, queue),
            "ROSTERLINK_CONFIG_DIR": str(config),
            "ROSTERLINK_TASK_RETRIES": "0",
        },
    )
    sampler = Sampler(cluster)
    try:
        with cluster:
            cluster.migrate()
            cluster.start_core()
            for name in names:
                cluster.start_celery_worker(name, queue=queue, concurrency=1)
            cluster.wait_api(timeout=180)
            cluster.wait_dag(timeout=180)
            cluster.unpause()
            sampler.start()
            runs = []
            for night, as_of, drop in nights:
                if drop is not None:  # the night's files, as the offices would drop them
                    shutil.copytree(drop, intake, dirs_exist_ok=True, copy_function=os.link)
                started = time.monotonic()
                run_id = cluster.trigger(
                    {
                        "intake_dir": str(intake),
                        "warehouse_url": warehouse_url,
                        "export_dir": str(exports),
                        "as_of": as_of,
                    }
                )
                state = cluster.wait_run(run_id, timeout=timeout)
                wall = time.monotonic() - started
                tis = cluster.task_instances(run_id)
                if state != "success":
                    print(cluster.explain_run(run_id, state, tis), file=sys.stderr)
                logs = cluster.home / "logs" / "dag_id=rosterlink_nightly" / f"run_id={run_id}"
                task_logs = {path: path.read_text(errors="replace") for path in logs.glob("**/*.log")}
                runs.append((night, run_id, state, wall, task_logs, _warehouse(warehouse_url)))
            sampler.stopping.set()
        results = []
        af = sa.create_engine(airflow_url)
        with af.connect() as conn:
            for night, run_id, state, wall, task_logs, warehouse in runs:
                rows = conn.execute(
                    sa.text(
                        "SELECT task_id, map_index, hostname, start_date, end_date FROM task_instance "
                        "WHERE dag_id = 'rosterlink_nightly' AND run_id = :r"
                    ),
                    {"r": run_id},
                ).all()
                run_span = conn.execute(
                    sa.text(
                        "SELECT start_date, end_date FROM dag_run "
                        "WHERE dag_id = 'rosterlink_nightly' AND run_id = :r"
                    ),
                    {"r": run_id},
                ).one()
                results.append(
                    {
                        "workers": workers,
                        "night": night,
                        "state": state,
                        "wall_s": wall,
                        "run_s": (run_span.end_date - run_span.start_date).total_seconds()
                        if run_span.end_date and run_span.start_date
                        else None,
                        "stages": _stages(rows),
                        "hosts": _hosts(rows),
                        "task_resources": _resources(task_logs),
                        # the components' peaks are over the whole deployment, every night of it
                        "components_peak_mb": sampler.by_role(),
                        "warehouse": warehouse,
                    }
                )
        af.dispose()
    finally:
        sampler.stopping.set()
        if keep_warehouse:  # to look into, or to run a stage against: its URL
            print(f"warehouse kept: {warehouse_url} (exports in {exports})", flush=True)
        else:
            _drop(warehouse_url)
        _drop(airflow_url)
    return results


def _stages(rows) -> dict[str, dict]:
    out = {}
    for stage in STAGES:
        mine = [r for r in rows if r.task_id == stage and r.start_date and r.end_date]
        if not mine:
            continue
        out[stage] = {
            "tasks": len(mine),
            "wall_s": (max(r.end_date for r in mine) - min(r.start_date for r in mine)).total_seconds(),
            "task_s": sum((r.end_date - r.start_date).total_seconds() for r in mine),
        }
    return out


def _hosts(rows) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r.task_id == "read_and_validate_file":  # the mapped task per file
            out[r.task_id][r.hostname or "?"] += 1
    return {k: dict(v) for k, v in out.items()}


def _resources(logs: dict[Path, str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path, text in logs.items():
        stage = next((p.split("=", 1)[1] for p in path.parts if p.startswith("task_id=")), "?")
        for m in RESOURCES.finditer(text):
            rss, cpu = float(m.group(1)), float(m.group(2))
            have = out.setdefault(stage, {"peak_rss_mb": 0.0, "cpu_s": 0.0, "processes": 0})
            have["peak_rss_mb"] = max(have["peak_rss_mb"], rss)
            have["cpu_s"] += cpu
            have["processes"] += 1
    return out


def _warehouse(url: str) -> dict:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    queries = {
        "rows_read": "SELECT COALESCE(SUM(rows_read), 0) FROM intake_file",
        "rows_loaded": "SELECT COALESCE(SUM(rows_loaded), 0) FROM intake_file",
        "rows_rejected": "SELECT COALESCE(SUM(rows_rejected), 0) FROM intake_file",
        "files_loaded": "SELECT COUNT(*) FROM intake_file WHERE status = 'loaded'",
        "files": "SELECT COUNT(*) FROM intake_file",
        "households_active": "SELECT COUNT(*) FROM household WHERE status = 'active'",
        "cadres_active": "SELECT COUNT(*) FROM cadre WHERE status = 'active'",
        "cases_open": "SELECT COUNT(*) FROM petition_case WHERE status = 'open'",
        "pairs_current": "SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL",
    }
    try:
        with eng.connect() as conn:
            return {k: int(conn.exec_driver_sql(q).scalar() or 0) for k, q in queries.items()}
    except Exception as exc:  # noqa: BLE001 - a failed night may leave no tables
        return {"error": str(exc).splitlines()[0]}
    finally:
        eng.dispose()


# ------------------------------------------------------------------------------------------- report
def report(result: dict, rows_read: int) -> None:
    print(
        f"\n== {result['workers']} Celery worker(s), {result['night']}: {result['state']}, "
        f"{result['run_s'] or result['wall_s']:.0f} s ({(result['run_s'] or result['wall_s']) / 60:.1f} min)"
    )
    print(f"{'stage':<22}{'tasks':>6}{'wall s':>9}{'task s':>9}{'rows/s':>10}{'peak MB':>9}{'cpu s':>8}")
    for stage, s in result["stages"].items():
        res = result["task_resources"].get(stage, {})
        counted = rows_read and s["wall_s"] and stage not in ("begin_night", "scan_intake")
        rate = rows_read / s["wall_s"] if counted else 0
        print(
            f"{stage:<22}{s['tasks']:>6}{s['wall_s']:>9.1f}{s['task_s']:>9.1f}"
            f"{rate:>10,.0f}{res.get('peak_rss_mb', 0):>9,.0f}{res.get('cpu_s', 0):>8.0f}"
        )
    print("mapped tasks per worker:", json.dumps(result["hosts"]))
    print(
        "component peak RSS (MB):",
        ", ".join(f"{k} {v:,.0f}" for k, v in result["components_peak_mb"].items()),
    )
    print("warehouse:", json.dumps(result["warehouse"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--cadres", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, one night each")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a night may take")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument(
        "--reuse-intake",
        action="store_true",
        help="use the intake and truth.json an earlier run left in --workdir",
    )
    parser.add_argument(
        "--quiet-night",
        action="store_true",
        help="after night 1, run a second night with no new file on the same deployment",
    )
    parser.add_argument(
        "--quiet-nights",
        type=int,
        default=0,
        help="after night 1, run this many nights with no new file, a day apart (--quiet-night: 1)",
    )
    parser.add_argument(
        "--churn-night",
        action="store_true",
        help="after night 1, run the generator's churn night (as bench_night.py's night 2) the next day, "
        "before any quiet night",
    )
    parser.add_argument(
        "--keep-warehouse",
        action="store_true",
        help="keep each deployment's warehouse database (its URL is printed) instead of dropping it",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    # a benchmark stopped with SIGTERM still stops its cluster and drops its databases
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rl-province-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = province_config(workdir / "config", args.households, args.cadres)
    os.environ["ROSTERLINK_CONFIG_DIR"] = str(config)
    intake, truth_file = workdir / "intake", workdir / "truth.json"
    t0 = time.perf_counter()
    truth = written(intake, truth_file, generate_intake, reuse=args.reuse_intake)
    rows_read = sum(f["rows"] for f in truth["files"].values())
    size = sum(p.stat().st_size for p in intake.rglob("*") if p.is_file())
    print(
        f"province intake: {len(truth['files'])} files, {rows_read:,} data rows, {size / 2**20:,.0f} MB, "
        f"written in {time.perf_counter() - t0:.0f} s"
    )
    c = truth["counts"]
    print(
        f"truth: households {c['households']['total']:,} ({c['households']}), "
        f"cadres {c['cadres']['total']:,}, open cases {c['cases']['open']:,}"
    )
    churn_dir, churn_truth, churn_rows = workdir / "churn", None, 0
    if args.churn_night:
        churn_file = workdir / "churn.json"
        t0 = time.perf_counter()
        churn_truth = written(churn_dir, churn_file, generate_churn, reuse=args.reuse_intake)
        churn_rows = sum(f["rows"] for f in churn_truth["files"].values())
        print(
            f"churn night ({churn_truth['as_of']}): {len(churn_truth['files'])} files, "
            f"{churn_rows:,} data rows "
            f"({churn_truth['changes']}), written in {time.perf_counter() - t0:.0f} s"
        )
    results = []
    if not args.generate_only:
        for workers in (int(w) for w in args.workers.split(",")):
            nights = run_nights(
                workdir,
                intake,
                config,
                workers,
                args.timeout,
                quiet=max(args.quiet_nights, int(args.quiet_night)),
                churn=churn_dir if churn_truth is not None else None,
                keep_warehouse=args.keep_warehouse,
            )
            results.extend(nights)
            night_rows = {"night 1": rows_read, "churn night": churn_rows}
            for result in nights:
                # a quiet night reads no row: its rate is not counted
                report(result, night_rows.get(result["night"], 0))
            # what the generator wrote over every night, and what a correct pipeline ends with
            sent = [truth] + ([churn_truth] if churn_truth is not None else [])
            rows_sent = sum(f["rows"] for t in sent for f in t["files"].values())
            good = sum(f["good_rows"] for t in sent for f in t["files"].values())
            end = sent[-1]["counts"]
            wh = nights[-1]["warehouse"]
            if "error" not in wh:
                print(
                    f"check: rows read {wh['rows_read']:,} = loaded {wh['rows_loaded']:,} + rejected "
                    f"{wh['rows_rejected']:,}; generator: {rows_sent:,} rows, {good:,} good; "
                    f"households active {wh['households_active']:,} of {end['households']['total']:,}; "
                    f"cadres active {wh['cadres_active']:,} of {end['cadres']['total']:,}; "
                    f"open cases {wh['cases_open']:,} of {end['cases']['open']:,}; "
                    f"pairs {wh['pairs_current']:,}"
                )
    if results:
        from targets import print_verdicts, province_verdicts

        print_verdicts("issue 14's targets at province size (this run):", province_verdicts(results))
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows_read, "truth_counts": c, "runs": results}, indent=1, default=str),
            encoding="utf-8",
        )
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
