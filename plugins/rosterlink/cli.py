"""The ``rosterlink`` command.

``rosterlink nightly`` runs the nightly DAG once through Airflow itself (``dag.test()``: the real
task code, mapped tasks, XComs and trigger rules, in-process) on a private Airflow home, then
prints the night's figures. It exits non-zero when the night fails.
``rosterlink sample`` writes the bundled sample intake for the reference district.
``rosterlink review list|decide`` shows the link review queue and records reviewers' decisions.
``rosterlink purge`` blanks the raw values of rejected rows older than the retention age.
``rosterlink analytics-copy --to URL`` writes a pseudonymised copy of the warehouse for analysts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rosterlink.core.paths import DATA_DIR, PROJECT_ROOT

if TYPE_CHECKING:
    from rosterlink.figures import NightFigures


def prepare_airflow(home: Path | None = None) -> Path:
    """Point Airflow at a private home and this project's DAGs; create its metadata DB once.

    Must run before anything imports airflow (its configuration is read at import time).
    """
    home = Path(os.environ.get("AIRFLOW_HOME") or home or DATA_DIR / "airflow")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    marker = home / ".rosterlink-migrated"
    airflow_version = _airflow_version()
    if not marker.exists() or marker.read_text() != airflow_version:
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
        marker.write_text(airflow_version)
    return home


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


@contextlib.contextmanager
def airflow_output_to(log_path: Path, verbose: bool):
    """Send Airflow's own (verbose) output to a log file; show rosterlink's progress lines.

    Works at the file-descriptor level, because Airflow's loggers hold on to the streams they
    found at start-up. Progress lines are rosterlink's own log records (never row values).
    """
    if verbose:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    progress = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8")
    handler = logging.StreamHandler(progress)
    handler.setFormatter(logging.Formatter("  %(asctime)s  %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    package_log = logging.getLogger("rosterlink")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    with log_path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            package_log.removeHandler(handler)
            progress.close()


def _night_result(run) -> dict | None:
    """What the night's last task returned (figures and where the outputs are), from its XCom: the
    task resolved the settings inside Airflow (Variables, connections) as the CLI cannot."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=run.run_id, dag_ids=run.dag_id, task_ids="finish_night", key="return_value"
            ).limit(1)
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


def run_nightly(conf: dict, verbose: bool = False) -> tuple[str, NightFigures | None, dict, Path]:
    """Run ``rosterlink_nightly`` once via ``dag.test``; return (state, figures, where, Airflow log path).

    ``figures`` is None when the warehouse cannot be read after a failed night."""
    home = prepare_airflow()
    from airflow.dag_processing.dagbag import DagBag

    log_path = home / "logs" / "rosterlink-cli" / f"nightly-{dt.datetime.now():%Y%m%dT%H%M%S}.log"
    print(f"running rosterlink_nightly through Airflow (full log: {log_path})", flush=True)
    with airflow_output_to(log_path, verbose):
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "rosterlink_nightly.py"))
        if bag.import_errors:
            raise SystemExit(f"DAG import errors: {bag.import_errors}")
        run = bag.get_dag("rosterlink_nightly").test(run_conf=conf)
    state = str(getattr(run.state, "value", run.state))
    from rosterlink import tasks, warehouse
    from rosterlink.core import settings
    from rosterlink.figures import night_figures

    result = _night_result(run)
    if result and result.get("where"):
        return state, result["figures"], result["where"], log_path
    # the night did not get to its end: read the warehouse the CLI's own settings point at
    cfg = settings.load(**{k: conf.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})
    try:
        figures = night_figures(warehouse.connect(cfg.warehouse_url))
    except Exception as exc:  # noqa: BLE001 - an unreachable warehouse is what the failed night reports
        print(f"  (the warehouse could not be read: {type(exc).__name__})")
        figures = None
    return state, figures, tasks.where(cfg), log_path


def _print_summary(state: str, figures: NightFigures | None, where: dict) -> None:
    print(f"\nrosterlink night: {state}")
    if figures is None:
        print(f"  warehouse:              {where['warehouse']}")
        return
    print(f"  files by status:        {figures['files']}")
    rows = figures["rows"]
    print(f"  rows read/loaded/rejected: {rows['read']} / {rows['loaded']} / {rows['rejected']}")
    print(f"  households by status:   {figures['households']}")
    print(f"  active by category:     {figures['categories_active']}")
    print(f"  cadres (rank:status):   {figures['cadres']}")
    print(f"  key cases:              {figures['cases']}")
    print(f"  current pairs:          {figures['pairs_current']}")
    print(
        f"  link review pending:    {figures['link_review'] or 0}"
        + (f"  -> {where['review']}/待核实.xlsx" if figures["link_review"] else "")
    )
    fu = figures.get("followup") or {}
    if fu.get("households"):
        print(
            f"  follow-through:         {fu['households']} paired households: "
            f"{fu['visited_in_person']} visited in "
            f"person, {fu['not_visited_in_person']} not yet ({fu['phone_only']} by phone only, "
            f"{fu['never_contacted']} never contacted), {fu['overdue']} overdue"
        )
        print(
            f"  visits logged:          {fu['in_person_visits']} in person, {fu['phone_contacts']} by phone; "
            f"problems found/solved {fu['problems_found']} / {fu['problems_solved']}; "
            f"visit history carried over to a new cadre for {fu['carried_over']} households"
        )
        print(
            f"  help given:             {fu['help_value']:.0f} yuan; households above / below the band "
            f"{fu['help_above_band']} / {fu['help_below_band']}; entries from public funds "
            f"{fu['public_fund_entries']}; opinions heard {fu['opinions']}"
        )
    print(f"  warehouse:              {where['warehouse']}")
    print(f"  exports:                {where['exports']}")
    print(f"  clerk feedback:         {where['intake']}/<department>/feedback/")


def cmd_nightly(args: argparse.Namespace) -> int:
    conf = {
        "intake_dir": str(Path(args.intake).resolve()) if args.intake else None,
        "warehouse_url": args.warehouse,
        "export_dir": str(Path(args.exports).resolve()) if args.exports else None,
        "as_of": args.as_of,
        "allow_mass_end": bool(args.allow_mass_end),
    }
    for key in ("intake_dir", "warehouse_url", "export_dir"):
        if conf[key]:
            os.environ[f"ROSTERLINK_{key.upper()}"] = conf[key]
    state, figures, where, log_path = run_nightly(conf, verbose=args.verbose)
    if state != "success":
        print(f"\nthe night did not succeed; the reason is in the Airflow log: {log_path}")
        _print_failure(log_path)
    _print_summary(state, figures, where)
    return 0 if state == "success" else 1


def _print_failure(log_path: Path) -> None:
    """The lines of the log that say why (errors only: rosterlink never logs row values)."""
    from rosterlink.core.masking import mask_text

    if not log_path.exists():
        return
    wanted = ("another night is running", "NightRefused", "would end", "Error", "error")
    lines = [
        ln
        for ln in log_path.read_text(errors="replace").splitlines()
        if any(w in ln for w in wanted) and "Traceback" not in ln
    ][-8:]
    for line in lines:
        print("  " + mask_text(line.strip())[:400])


def cmd_sample(args: argparse.Namespace) -> int:
    from rosterlink.synthetic import sample

    out = Path(args.out).resolve()
    truth = Path(args.truth).resolve() if args.truth else None
    if args.visits:
        from rosterlink.core import settings
        from rosterlink.synthetic import visits as sample_visits

        url = args.warehouse or settings.load().warehouse_url
        day = dt.date.fromisoformat(args.as_of) if args.as_of else dt.date.today()
        written = sample_visits.generate(out, url, day, seed=args.seed, truth_path=truth)
        for rel, f in written.files.items():
            print(f"{rel}\t{f.format}\trows={f.rows}\tgood={f.good_rows}\tbad={len(f.bad_rows)}")
        print(f"visit logs up to {day} written to {out}/visits")
        return 0
    try:
        sample.generate(out, seed=args.seed, scale=args.scale, night=args.night, truth_path=truth)
    except ModuleNotFoundError as exc:
        if exc.name != "xlwt":
            raise
        print(exc, file=sys.stderr)  # the one line saying which extra to install
        return 1
    print(f"sample intake (night {args.night}, scale {args.scale}) written to {out}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from rosterlink import warehouse
    from rosterlink.core import settings
    from rosterlink.figures import night_figures

    cfg = settings.load(warehouse_url=args.warehouse)
    print(json.dumps(night_figures(warehouse.connect(cfg.warehouse_url)), ensure_ascii=False, indent=2))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """The link review queue: list it (masked), or record a reviewer's decision for the next night."""
    from rosterlink import warehouse
    from rosterlink.core import settings
    from rosterlink.link import review

    cfg = settings.load(warehouse_url=args.warehouse)
    eng = warehouse.connect(cfg.warehouse_url)
    if args.action == "list":
        with eng.connect() as conn:
            rows = review.pending_reviews(conn, include_decided=args.all)
        if not rows:
            print("the review queue is empty")
            return 0
        for row in rows:
            a, b = json.loads(row.display_l), json.loads(row.display_r)
            state = row.status if row.decision is None else f"{row.status}:{row.decision}"
            prob = "" if row.match_probability is None else f" p={row.match_probability:.3f}"
            reason = review.REVIEW_REASONS.get(row.reason, row.reason)
            print(f"#{row.review_id} {row.entity_kind} {reason} [{state}]{prob}")
            for tag, side in (("A", a), ("B", b)):
                print(
                    f"   {tag}: {side.get('name')} {side.get('id_number') or '-'} {side.get('town') or ''}"
                    f"{side.get('village') or ''} {side.get('phone') or ''}  "
                    f"({side.get('file')} 第{side.get('row')}行)"
                )
            print(f"   依据: {review.evidence_text(row)}")
        print(f"\n{len(rows)} item(s); decide with: rosterlink review decide ID same|different --by NAME")
        return 0
    try:
        with eng.begin() as conn:
            row = review.decide(conn, args.review_id, args.decision, args.by, args.note, force=args.force)
    except review.ReviewError as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2
    print(
        f"review #{row.review_id}: {row.decision} (by {row.decided_by}); "
        "applied by the next night's link stage"
    )
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Blank rejected rows' raw values older than the retention age; the ledger and pairings stay."""
    from rosterlink import warehouse
    from rosterlink.core import settings
    from rosterlink.ops import nightlock
    from rosterlink.privacy import retention

    try:
        days = retention.configured_days(args.older_than_days)
        retention.check_history_request(args.ended_pairs_older_than_days)
    except retention.RetentionRefused as exc:
        print(f"purge refused: {exc}", file=sys.stderr)
        return 2
    cfg = settings.load(warehouse_url=args.warehouse)
    eng = warehouse.connect(cfg.warehouse_url)
    try:
        report = retention.purge(
            eng, days, ended_pairs_older_than_days=args.ended_pairs_older_than_days, dry_run=args.dry_run
        )
    except nightlock.NightLocked as exc:
        print(f"purge not run: {exc}", file=sys.stderr)
        return 1
    verb = "would be" if report.dry_run else "were"
    print(
        f"purge{' (dry run, nothing changed)' if report.dry_run else ''}: "
        f"warehouse {warehouse.display_url(cfg.warehouse_url)}"
    )
    print(f"  raw values older than {report.older_than_days} days (validated before {report.cutoff} UTC):")
    print(f"    rejected_row lines blanked:  {report.rejected_values}")
    print(f"    row_warning lines blanked:   {report.warning_values}")
    print(f"    staged rows deleted:         {report.staged_rows}")
    if report.ended_pairs is not None:
        print(f"  pairs that ended before {report.ended_pairs_before} {verb} deleted: {report.ended_pairs}")
    print(
        "  kept: the intake ledger (intake_file) and pairing history; rejected rows keep file, sheet, row, "
        "field, header and reason, so the ledger still reconciles"
    )
    return 0


def cmd_analytics_copy(args: argparse.Namespace) -> int:
    """A pseudonymised copy of the public tables for analysts (IDs as HMAC tokens, no phones)."""
    from rosterlink import warehouse
    from rosterlink.core import settings
    from rosterlink.privacy import pseudonymise

    try:
        key = pseudonymise.secret(required=True)
    except pseudonymise.NoSecret as exc:
        print(f"analytics-copy refused: {exc}", file=sys.stderr)
        return 2
    cfg = settings.load(warehouse_url=args.warehouse)
    try:
        counts = pseudonymise.copy(cfg.warehouse_url, args.to, key)
    except pseudonymise.CopyRefused as exc:
        print(f"analytics-copy refused: {exc}", file=sys.stderr)
        return 2
    source, target = warehouse.display_url(cfg.warehouse_url), warehouse.display_url(args.to)
    print(f"pseudonymised copy of {source} written to {target} (key id {pseudonymise.key_id(key)})")
    for table, n in counts.items():
        print(f"  {table:<20} {n} rows")
    print("  ID numbers are HMAC-SHA256 tokens, phones dropped, names masked (张某), free text dropped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rosterlink", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("nightly", help="run the nightly DAG once through Airflow and print a summary")
    p.add_argument("--intake", help="intake root (default $ROSTERLINK_INTAKE_DIR or data/intake)")
    p.add_argument(
        "--warehouse", help="SQLAlchemy URL (default $ROSTERLINK_WAREHOUSE_URL or data/warehouse.db)"
    )
    p.add_argument("--exports", help="export folder (default $ROSTERLINK_EXPORT_DIR or data/exports)")
    p.add_argument("--as-of", help="the night's date YYYY-MM-DD (default: today in Asia/Shanghai)")
    p.add_argument(
        "--allow-mass-end",
        action="store_true",
        help="accept a night that ends more pairs than the configured share",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show Airflow's own log on the terminal")
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("sample", help="write the sample intake for the reference district")
    p.add_argument("--out", default=str(DATA_DIR / "intake"))
    p.add_argument("--night", type=int, default=1)
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--truth", help="also write the generator's ground truth (JSON) here")
    p.add_argument(
        "--visits",
        action="store_true",
        help="write the units' visit logs (visits/) for the pairs in the warehouse instead",
    )
    p.add_argument("--warehouse", help="with --visits: the warehouse holding the pairs (default: settings)")
    p.add_argument("--as-of", help="with --visits: log visits up to this date (default: today)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("figures", help="print the warehouse's headline figures as JSON")
    p.add_argument("--warehouse")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("review", help="the link review queue: list it, or decide an item")
    p.add_argument("--warehouse")
    review = p.add_subparsers(dest="action", required=True)
    q = review.add_parser("list", help="pending items (ID numbers and phones masked)")
    q.add_argument("--all", action="store_true", help="decided items too")
    q = review.add_parser(
        "decide", help="record a decision; the next night applies it and the model never overrides it"
    )
    q.add_argument("review_id", type=int)
    q.add_argument("decision", choices=["same", "different"])
    q.add_argument("--by", required=True, help="who decided (recorded with the decision)")
    q.add_argument("--note")
    q.add_argument("--force", action="store_true", help="change a decision already applied")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("purge", help="blank the raw values of rejected rows older than the retention age")
    p.add_argument("--warehouse")
    p.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        help="age in days (default $ROSTERLINK_PURGE_REJECTED_DAYS or 365)",
    )
    p.add_argument(
        "--ended-pairs-older-than-days",
        type=int,
        default=None,
        help="also delete pairs that ended more than this many days ago (at least 1096: three years)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the counts only, change nothing")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser(
        "analytics-copy", help="write a pseudonymised copy of the warehouse to another database"
    )
    p.add_argument(
        "--to", required=True, help="SQLAlchemy URL of the copy (an empty database or an earlier copy)"
    )
    p.add_argument(
        "--warehouse", help="the warehouse to copy (default $ROSTERLINK_WAREHOUSE_URL or data/warehouse.db)"
    )
    p.set_defaults(func=cmd_analytics_copy)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
