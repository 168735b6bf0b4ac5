"""Soak benchmark: many consecutive nights with churn on one warehouse, figures per night, a verdict.

    .venv/bin/python benchmarks/bench_soak.py   # 30 nights, 10 x the reference district
    .venv/bin/python benchmarks/bench_soak.py --nights 5 --scale 1 --json soak.json
    .venv/bin/python benchmarks/bench_soak.py --workdir /tmp/soak --keep   # keep intake, warehouse, exports

Night 1 is ``sample.generate(scale=S)``; every later night the departments drop new files written by
``rosterlink.synthetic.churn`` (about 3 % of the hardship households exit and 2 % are added through the
adjustment list, 2 % of the cadres leave and 1 % join, 10 % of the open cases close and as many new
ones are registered, each list with a few bad rows). After the last night come ``--quiet-nights``
nights with no new file at all.

Each night runs in a fresh child process (``--_night``), the way Airflow runs tasks: the stages are
the plain functions of ``rosterlink.tasks`` called in the DAG's order, each inside the night's lease
(``tasks.night``), on a SQLite warehouse; no scheduler, no ``dag.test`` (Airflow's own overhead is
not what is measured). Per night it prints wall time (whole child process, and the stages alone),
the child's peak RSS (``getrusage``), rows read / loaded / rejected, households active / exited,
pairs current / ended, pending reviews and the row count of every warehouse table; the JSON file
(``--json``) also has the time of every stage and the full table counts.

The verdict at the end checks that nothing grows without bound except history tables: the staging
table is empty after every night, every file balances (read = loaded + rejected), the warehouse
matches the generator's expected counts, a quiet night changes nothing but ``night_run``, the review
queue grows only with input, per-night time and memory do not trend upward. It prints figures and a
verdict; nothing here is a timed test assertion.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

STAGES = ("imports", "begin", "scan", "read", "validate", "load", "link", "status", "pairing", "exports")
HISTORY = {
    "intake_file",
    "intake_sheet",
    "source_record",
    "source_row",
    "rejected_row",
    "row_warning",
    "pairing",
    "night_run",
    "link_model",
    "household_merge",
    "household",
    "household_category",
    "cadre",
    "petition_case",
    "link_review",
}
"""Tables that keep history (or entities, exited ones included) and may grow with every night's input."""


# ------------------------------------------------------------------------------------ one night (child)


def run_night(workdir: Path, night: int, as_of: str) -> dict:
    """Run one night's stages in this process; return its figures (called in the child)."""
    import datetime as dt

    t_start = time.perf_counter()
    from rosterlink import tasks
    from rosterlink.core import settings as settings_mod

    settings = settings_mod.load(
        intake_dir=workdir / "intake",
        export_dir=workdir / "exports",
        warehouse_url=f"sqlite:///{workdir / 'warehouse.db'}",
    )
    day = dt.date.fromisoformat(as_of)
    run_id = f"soak-{night:03d}"
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    result: dict = {
        "night": night,
        "as_of": as_of,
        "run_id": run_id,
        "error": None,
        "load_average": round(os.getloadavg()[0], 2),
    }

    def stage(name: str, work, last: bool = False):
        t0, c0 = time.perf_counter(), time.process_time()
        with tasks.night(settings, run_id, last=last):
            out = work()
        seconds[name] = round(time.perf_counter() - t0, 3)
        cpu[name] = round(time.process_time() - c0, 3)
        return out

    t_imports, c_imports = time.perf_counter(), time.process_time()

    def imports() -> None:  # what every task process pays first (GX alone takes about 3 s)
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import importlib

        import great_expectations  # noqa: F401

        for module in (
            "status",
            "export",
            "link.night",
            "intake.normalise",
            "pairing.rebuild",
            "intake.read",
            "validate.run",
        ):
            importlib.import_module(f"rosterlink.{module}")

    try:
        stage("imports", imports)
        stage("begin", lambda: tasks.begin_night(settings, run_id, day))
        items = stage("scan", lambda: tasks.scan(settings, run_id))
        read = stage("read", lambda: [tasks.read_file(settings, item) for item in items])
        validated = stage("validate", lambda: [tasks.validate_file(settings, item) for item in read])
        loaded = stage("load", lambda: tasks.load(settings, validated, as_of))
        linked = stage("link", lambda: tasks.link(settings))
        statuses = stage("status", lambda: tasks.refresh_statuses(settings, day))
        pairs = stage("pairing", lambda: tasks.rebuild_pairings(settings, day, run_id))
        stage("follow-through", lambda: tasks.follow_through(settings, day, run_id))

        def exports() -> dict:
            files = tasks.night_file_ids(settings, run_id, items)
            written = tasks.write_exports(settings, day, files)
            tasks.clear_staging(settings)
            tasks.finish_night(settings, run_id, {"pairing": pairs, "exports": written})
            return written

        stage("exports", exports, last=True)
        result.update(
            files=len(items),
            loaded=loaded,
            link={k: v for k, v in linked.items() if isinstance(v, (int, float, str))},
            status={k: statuses.get(k) for k in ("pairs_current", "pairs_to_end", "changed")},
            pairing={k: v for k, v in pairs.items() if isinstance(v, (int, float, str))},
        )
    except Exception as exc:  # noqa: BLE001 - a failed night is a figure of the soak, not a crash of it
        from rosterlink import warehouse
        from rosterlink.ops import nightlock

        result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        nightlock.release(warehouse.connect(settings.warehouse_url), run_id)
    result["seconds"] = seconds
    result["cpu_seconds"] = cpu
    result["stages_seconds"] = round(time.perf_counter() - t_imports, 2)
    result["stages_cpu_seconds"] = round(time.process_time() - c_imports, 2)
    result["process_seconds_in_child"] = round(time.perf_counter() - t_start, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["state"] = warehouse_state(settings.warehouse_url, run_id)
    result["disk"] = disk_use(workdir)
    return result


def disk_use(workdir: Path) -> dict:
    """What the nights leave on disk: the exports folder, the feedback workbooks beside the intake."""
    exports = [p for p in (workdir / "exports").rglob("*") if p.is_file()]
    feedback = [p for p in (workdir / "intake").rglob("*") if p.is_file() and "feedback" in p.parts]
    return {
        "exports_files": len(exports),
        "exports_mb": round(sum(p.stat().st_size for p in exports) / 2**20, 1),
        "feedback_files": len(feedback),
        "feedback_mb": round(sum(p.stat().st_size for p in feedback) / 2**20, 1),
    }


def warehouse_state(url: str, run_id: str) -> dict:
    """Row counts of every table and the headline figures (not part of the night's time)."""
    from rosterlink import warehouse
    from rosterlink.warehouse import schema

    eng = warehouse.connect(url)
    with eng.connect() as conn:

        def one(sql: str) -> int:
            return int(conn.exec_driver_sql(sql).scalar() or 0)

        tables = {name: one(f"SELECT COUNT(*) FROM {name}") for name in sorted(schema.metadata.tables)}
        night_files = f"FROM intake_file WHERE run_id = '{run_id}'"
        return {
            "tables": tables,
            "night_rows": {
                "read": one(f"SELECT COALESCE(SUM(rows_read), 0) {night_files}"),
                "loaded": one(f"SELECT COALESCE(SUM(rows_loaded), 0) {night_files}"),
                "rejected": one(f"SELECT COALESCE(SUM(rows_rejected), 0) {night_files}"),
                "files_loaded": one(f"SELECT COUNT(*) {night_files} AND status = 'loaded'"),
                "files_other": one(f"SELECT COUNT(*) {night_files} AND status <> 'loaded'"),
            },
            "households_active": one("SELECT COUNT(*) FROM household WHERE status = 'active'"),
            "households_exited": one("SELECT COUNT(*) FROM household WHERE status = 'exited'"),
            "hardship_active": one(
                "SELECT COUNT(*) FROM household_category WHERE category = 'hardship' AND status = 'active'"
            ),
            "cadres_active": one("SELECT COUNT(*) FROM cadre WHERE status = 'active'"),
            "cadres_departed": one("SELECT COUNT(*) FROM cadre WHERE status <> 'active'"),
            "cases_open": one("SELECT COUNT(*) FROM petition_case WHERE status = 'open'"),
            "cases_closed": one("SELECT COUNT(*) FROM petition_case WHERE status = 'closed'"),
            "pairs_current": one("SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL"),
            "pairs_ended": one("SELECT COUNT(*) FROM pairing WHERE valid_to IS NOT NULL"),
            "reviews_pending": one("SELECT COUNT(*) FROM link_review WHERE status = 'pending'"),
            "unbalanced_files": one("SELECT COUNT(*) FROM file_reconciliation WHERE balanced = 0"),
            "unpaired_active_households": one(
                "SELECT COUNT(*) FROM household h WHERE h.status = 'active' AND NOT EXISTS (SELECT 1 FROM "
                "pairing p WHERE p.target_kind = 'household' AND p.target_key = h.household_key "
                "AND p.valid_to IS NULL)"
            ),
            "stale_current_pairs": one(
                "SELECT COUNT(*) FROM pairing p LEFT JOIN household h ON p.target_kind = 'household' "
                "AND h.household_key = p.target_key LEFT JOIN petition_case k ON p.target_kind = 'case' "
                "AND k.case_key = p.target_key JOIN cadre c ON c.cadre_key = p.cadre_key "
                "WHERE p.valid_to IS NULL "
                "AND (c.status <> 'active' OR h.status = 'exited' OR k.status = 'closed')"
            ),
            "warehouse_mb": round(Path(url.split("///", 1)[1]).stat().st_size / 2**20, 1),
        }


# ------------------------------------------------------------------------------------ the soak (parent)


def child_night(workdir: Path, night: int, as_of: str) -> dict:
    out = workdir / f"night-{night:03d}.json"
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "ROSTERLINK_SETTLE_SECONDS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--_night",
            str(night),
            "--_as-of",
            as_of,
            "--_out",
            str(out),
            "--workdir",
            str(workdir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wall = round(time.perf_counter() - t0, 2)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        return {
            "night": night,
            "as_of": as_of,
            "error": f"child exited {proc.returncode}: {tail}",
            "wall_seconds": wall,
        }
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_seconds"] = wall
    return result


HEAD = (
    f"{'night':>5} {'as_of':>10} {'files':>5} {'wall s':>7} {'stage s':>7} {'cpu s':>6} {'load':>4} "
    f"{'RSS MB':>7} "
    f"{'read':>7} {'loaded':>7} {'rej':>4} {'hh act':>7} {'hh exit':>7} {'cadres':>6} {'cases':>5} "
    f"{'pairs':>6} {'ended':>6} {'review':>6} {'src_rec':>8} {'stg':>3} {'db MB':>6} {'out MB':>6}"
)


def line(r: dict) -> str:
    if "state" not in r:
        return f"{r['night']:>5} {r['as_of']:>10}  FAILED: {r['error']}"
    s, n = r["state"], r["state"]["night_rows"]
    text = (
        f"{r['night']:>5} {r['as_of']:>10} {r.get('files', 0):>5} {r['wall_seconds']:>7.1f} "
        f"{r['stages_seconds']:>7.1f} {r['stages_cpu_seconds']:>6.1f} {r['load_average']:>4.1f} "
        f"{r['peak_rss_mb']:>7.0f} {n['read']:>7} {n['loaded']:>7} "
        f"{n['rejected']:>4} {s['households_active']:>7} {s['households_exited']:>7} "
        f"{s['cadres_active']:>6} {s['cases_open']:>5} {s['pairs_current']:>6} {s['pairs_ended']:>6} "
        f"{s['reviews_pending']:>6} {s['tables']['source_record']:>8} {s['tables']['staged_row']:>3} "
        f"{s['warehouse_mb']:>6.1f} {r['disk']['exports_mb'] + r['disk']['feedback_mb']:>6.1f}"
    )
    return text + (f"  ERROR {r['error']}" if r.get("error") else "")


def _half_ratio(values: list[float]) -> float | None:
    """Median of the last third over the median of the first third (None when too few values)."""
    if len(values) < 6:
        return None
    third = len(values) // 3
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return round(last / first, 2) if first else None


def _slope(values: list[float]) -> float | None:
    if len(values) < 3:
        return None
    xs = list(range(len(values)))
    return round(statistics.linear_regression(xs, values).slope, 4)


def verdict(results: list[dict], plans: dict[int, dict], quiet: list[int]) -> dict:
    """Checks over the whole run: each is (ok, what was seen)."""
    checks: dict[str, dict] = {}

    def check(name: str, ok: bool, seen: object) -> None:
        checks[name] = {"ok": bool(ok), "seen": seen}

    done = [r for r in results if "state" in r]
    failed = [r["night"] for r in results if r.get("error")]
    check("every night succeeded", not failed, {"failed_nights": failed})
    check(
        "staging table empty after every night",
        all(r["state"]["tables"]["staged_row"] == 0 for r in done),
        {"max_staged_rows": max((r["state"]["tables"]["staged_row"] for r in done), default=0)},
    )
    check(
        "every file balances (read = loaded + rejected)",
        all(r["state"]["unbalanced_files"] == 0 for r in done),
        {"max_unbalanced": max((r["state"]["unbalanced_files"] for r in done), default=0)},
    )
    check(
        "night lock released after every night",
        all(r["state"]["tables"]["night_lock"] == 0 for r in done),
        {"max_lock_rows": max((r["state"]["tables"]["night_lock"] for r in done), default=0)},
    )

    # the warehouse against the generator's counts, every night
    drift = []
    for r in done:
        plan = plans.get(r["night"])
        if not plan:
            continue
        exp, s = plan["expected"], r["state"]
        got = {
            "households": s["households_active"],
            "hardship": s["hardship_active"],
            "cadres": s["cadres_active"],
            "cases_open": s["cases_open"],
            "rows_read": s["night_rows"]["read"],
            "rows_rejected": s["night_rows"]["rejected"],
        }
        want = {
            "households": exp["households"]["total"],
            "hardship": exp["households"]["hardship"],
            "cadres": exp["cadres"]["total"],
            "cases_open": exp["cases"]["open"],
            "rows_read": plan["rows"],
            "rows_rejected": plan["bad_rows"],
        }
        off = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        if off:
            drift.append({"night": r["night"], "got_vs_expected": off})
    check(
        "warehouse matches the generator's expected counts every night",
        not drift,
        drift[:5] if drift else "all nights exact",
    )
    check(
        "every active household paired, no current pair on an ended side",
        all(
            r["state"]["unpaired_active_households"] == 0 and r["state"]["stale_current_pairs"] == 0
            for r in done
        ),
        {
            "max_unpaired": max((r["state"]["unpaired_active_households"] for r in done), default=0),
            "max_stale": max((r["state"]["stale_current_pairs"] for r in done), default=0),
        },
    )

    # quiet nights: no input, nothing may change but the night's own record
    by_night = {r["night"]: r for r in done}
    quiet_changes = {}
    for q in quiet:
        if q in by_night and q - 1 in by_night:
            before, after = by_night[q - 1]["state"]["tables"], by_night[q]["state"]["tables"]
            changed = {t: after[t] - before[t] for t in after if after[t] != before[t] and t != "night_run"}
            if changed:
                quiet_changes[q] = changed
    if quiet:
        check(
            "a night without input changes nothing (except night_run)",
            not quiet_changes,
            quiet_changes or "no table changed",
        )

    # growth: per-night increments of each table, nights 2..last churn night
    churn = [r for r in done if r["night"] > 1 and r["night"] not in quiet]
    churn_tables: dict[str, list[int]] = {}
    prev = {r["night"]: r for r in done}
    for r in churn:
        p = prev.get(r["night"] - 1)
        if not p:
            continue
        for t, count in r["state"]["tables"].items():
            churn_tables.setdefault(t, []).append(count - p["state"]["tables"][t])
    bounded = {t: v for t, v in churn_tables.items() if t not in HISTORY}
    check(
        "non-history tables do not grow",
        all(sum(v) <= 0 for v in bounded.values()),
        {t: sum(v) for t, v in bounded.items()},
    )
    accelerating = {}
    for t, increments in churn_tables.items():
        ratio = _half_ratio([float(x) for x in increments])
        if ratio is not None and ratio > 1.5 and statistics.median(increments[-len(increments) // 3 :]) > 5:
            accelerating[t] = {
                "first_third_median": statistics.median(increments[: len(increments) // 3]),
                "last_third_median": statistics.median(increments[-len(increments) // 3 :]),
            }
    check(
        "history tables grow by a steady amount per night (no acceleration)",
        not accelerating,
        accelerating or {t: statistics.mean(v) for t, v in churn_tables.items() if t in HISTORY},
    )
    reviews = [r["state"]["reviews_pending"] for r in churn]
    check(
        "review queue does not keep growing",
        not reviews or reviews[-1] <= max(reviews[: max(1, len(reviews) // 3)]) + 5,
        {"pending_first": reviews[:1], "pending_max": max(reviews, default=0), "pending_last": reviews[-1:]},
    )

    walls = [r["stages_seconds"] for r in churn]
    cpus = [r["stages_cpu_seconds"] for r in churn]
    rss = [r["peak_rss_mb"] for r in churn]
    ratio_t, ratio_m = _half_ratio(cpus), _half_ratio(rss)
    check(
        "per-night CPU time of the stages does not trend upward (last third / first third <= 1.5)",
        ratio_t is None or ratio_t <= 1.5,
        {
            "ratio": ratio_t,
            "slope_cpu_s_per_night": _slope(cpus),
            "first": cpus[:3],
            "last": cpus[-3:],
            "wall_ratio": _half_ratio(walls),
            "wall_slope_s_per_night": _slope(walls),
        },
    )
    check(
        "per-night peak memory does not trend upward (last third / first third <= 1.3)",
        ratio_m is None or ratio_m <= 1.3,
        {"ratio": ratio_m, "slope_mb_per_night": _slope(rss), "first": rss[:3], "last": rss[-3:]},
    )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=30, help="nights with input, night 1 included (30)")
    parser.add_argument("--scale", type=float, default=10.0, help="times the reference district (10)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--quiet-nights", type=int, default=1, help="nights without input at the end (1)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="intake, warehouse, exports (default: temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--_night", dest="child_night", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_as-of", dest="as_of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_out", dest="child_out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_night is not None:  # the child: one night
        result = run_night(args.workdir, args.child_night, args.as_of)
        args.child_out.write_text(json.dumps(result, ensure_ascii=False, default=str), encoding="utf-8")
        return 0

    from rosterlink.synthetic import churn

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rl-soak-"))
    if args.workdir and workdir.exists() and any(workdir.iterdir()):
        parser.error(f"--workdir {workdir} is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    total = args.nights + args.quiet_nights
    gen = churn.Churn(
        workdir / "intake", seed=args.seed, scale=args.scale, first_night=churn.first_night_for(total)
    )
    print(
        f"soak: {args.nights} nights with input + {args.quiet_nights} quiet, scale {args.scale:g}, "
        f"nights {gen.as_of(1)} .. {gen.as_of(total)}, work folder {workdir}",
        flush=True,
    )
    print(
        "each night in a fresh process; stages = rosterlink.tasks functions in DAG order, SQLite warehouse",
        flush=True,
    )
    print(HEAD, flush=True)
    results: list[dict] = []
    plans: dict[int, dict] = {}
    quiet: list[int] = []
    started = time.perf_counter()
    for night in range(1, total + 1):
        if night <= args.nights:
            files = gen.write_night(night)
            plans[night] = {
                "rows": files.rows,
                "bad_rows": files.bad_rows,
                "changes": files.changes,
                "expected": files.expected,
                "generate_seconds": files.seconds,
            }
        else:
            quiet.append(night)
        result = child_night(workdir, night, gen.as_of(night).isoformat())
        result["plan"] = plans.get(night)
        results.append(result)
        print(line(result), flush=True)
        if result.get("error") and "state" not in result:
            break
    elapsed = time.perf_counter() - started

    done = [r for r in results if "seconds" in r]
    if done:
        print(
            "\nper stage, nights 2..N with input "
            "(wall s; CPU s of the child; trend = CPU last third / first third):"
        )
        later = [r for r in done if r["night"] > 1 and r["night"] not in quiet]
        first = done[0]
        print(
            f"  {'stage':9} {'night 1':>8} {'mean':>7} {'max':>7} {'cpu mean':>8} {'trend':>6} "
            f"{'cpu s/night':>11}"
        )
        for name in STAGES:
            values = [r["seconds"].get(name, 0.0) for r in later]
            cpu = [r["cpu_seconds"].get(name, 0.0) for r in later]
            trend = _half_ratio(cpu)
            print(
                f"  {name:9} {first['seconds'].get(name, 0.0):8.2f} {statistics.mean(values or [0]):7.2f} "
                f"{max(values, default=0.0):7.2f} {statistics.mean(cpu or [0]):8.2f} "
                f"{trend if trend is not None else '-':>6} {_slope(cpu) if len(cpu) > 2 else '-':>11}"
            )
        last = done[-1]["state"]["tables"]
        print("\ntable rows after the last night (growth per churn night, mean):")
        growth: dict[str, list[int]] = {}
        for r0, r1 in itertools.pairwise(done):
            if r1["night"] in quiet or r1["night"] == 1:
                continue
            for t in last:
                growth.setdefault(t, []).append(r1["state"]["tables"][t] - r0["state"]["tables"][t])
        for t, count in last.items():
            g = statistics.mean(growth[t]) if growth.get(t) else 0.0
            print(f"  {t:20} {count:>9}   {g:+9.1f}/night   {'history' if t in HISTORY else 'bounded'}")
        first_d, last_d = done[0], done[-1]
        nights = max(1, len(done) - 1)
        out_first = first_d["disk"]["exports_mb"] + first_d["disk"]["feedback_mb"]
        out_last = last_d["disk"]["exports_mb"] + last_d["disk"]["feedback_mb"]
        print(
            f"\ndisk after the last night: warehouse {last_d['state']['warehouse_mb']} MB "
            f"(+{(last_d['state']['warehouse_mb'] - first_d['state']['warehouse_mb']) / nights:.2f} "
            "MB/night after "
            f"night 1); exports {last_d['disk']['exports_files']} files {last_d['disk']['exports_mb']} MB, "
            f"feedback {last_d['disk']['feedback_files']} files {last_d['disk']['feedback_mb']} MB "
            f"(+{(out_last - out_first) / nights:.2f} MB/night: dated workbooks, kept)"
        )

    checks = verdict(results, plans, quiet)
    print("\nverdict:")
    for name, c in checks.items():
        print(
            f"  [{'ok' if c['ok'] else 'FAIL'}] {name}: "
            f"{json.dumps(c['seen'], ensure_ascii=False, default=str)}"
        )
    ok = all(c["ok"] for c in checks.values())
    print(
        f"\nSOAK {'PASSED' if ok else 'FOUND PROBLEMS'}: {len(results)} nights in {elapsed / 60:.1f} min "
        f"(scale {args.scale:g})"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items() if not k.startswith("_")},
                    "nights": results,
                    "verdict": checks,
                    "ok": ok,
                    "elapsed_seconds": round(elapsed, 1),
                },
                ensure_ascii=False,
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )
        print(f"figures written to {args.json}")
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
