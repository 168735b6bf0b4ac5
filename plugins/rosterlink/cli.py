"""The ``rosterlink`` command.

``rosterlink nightly`` runs the nightly DAG once through Airflow itself (``dag.test()``: the real
task code, mapped tasks, XComs and trigger rules, in-process) on a private Airflow home, then
prints the night's figures. It exits non-zero when the night fails. Before Airflow starts it checks
the date, the warehouse and the folders (:func:`preflight`) and says what is wrong, one line a
problem (exit code 2).
``rosterlink sample`` writes the bundled sample intake for the reference district.
``rosterlink review list|decide`` shows the link review queue and records reviewers' decisions.
``rosterlink purge`` blanks the raw values of rejected rows older than the retention age.
``rosterlink analytics-copy --to URL`` writes a pseudonymised copy of the warehouse for analysts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosterlink.core import plain
from rosterlink.core.paths import DATA_DIR, PROJECT_ROOT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rosterlink.core.settings import Settings
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


# ------------------------------------------------------------------------------------------------
# The checks a night must pass before Airflow starts: each problem is one line a person can act on.

AS_OF_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")
WAREHOUSE_TIMEOUT_SECONDS = 5


class NightNotStarted(Exception):
    """The night was refused before it started; the message is the line a person reads."""


def parse_as_of(text: str) -> dt.date:
    """The night's date from ``--as-of``: a real calendar date written YYYY-MM-DD.

    Raises :class:`NightNotStarted` saying what is wrong (``garbage``, ``2026-02-30``)."""
    if not AS_OF_FORMAT.fullmatch(text.strip()):
        raise NightNotStarted(f"--as-of {text!r} is not a date written YYYY-MM-DD (for example 2026-11-26)")
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise NightNotStarted(f"--as-of {text} is not a real date: {exc}") from None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _creatable_folder_problem(folder: Path, what: str) -> str | None:
    """Why ``folder`` cannot be used or created and written to, or None when it can."""
    if folder.exists():
        if not folder.is_dir():
            return f"the {what} {folder} is not a folder (it is a file)"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"the {what} {folder} is not writable"
        return None
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"the {what} {folder} cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the {what} {folder} cannot be created: {existing} is not writable"
    return None


def _first_line(exc: BaseException) -> str:
    from rosterlink.core.masking import mask_text

    cause = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    return mask_text(lines[0] if lines else type(cause).__name__)[:300]


def check_warehouse(url: str, timeout: int = WAREHOUSE_TIMEOUT_SECONDS) -> str | None:
    """Why the warehouse at ``url`` cannot be used tonight, or None when it answers ``SELECT 1``.

    A SQLite file that does not exist yet is fine when its folder can be created (the night creates
    it); nothing is created here. A server gets ``timeout`` seconds to answer."""
    import sqlalchemy as sa

    from rosterlink import warehouse
    from rosterlink.core.settings import normalise_url

    url = normalise_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:  # noqa: BLE001 - any unreadable URL is the one problem reported
        return f"the warehouse URL is not a database URL: {_first_line(exc)}"
    shown = warehouse.display_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        path = Path(parsed.database)
        if not path.exists():
            problem = _creatable_folder_problem(path.parent, "warehouse folder")
            return f"the warehouse {shown} cannot be created: {problem}" if problem else None
        connect_args: dict[str, object] = {"timeout": timeout}
    elif parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": timeout}
    else:
        connect_args = {}
    try:
        eng = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        try:
            with eng.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                if parsed.get_backend_name() == "sqlite":  # reads the header: is it a database?
                    conn.execute(sa.text("SELECT count(*) FROM sqlite_master"))
        finally:
            eng.dispose()
    except Exception as exc:  # noqa: BLE001 - whatever stops the connection is the line reported
        message = _first_line(exc)
        if parsed.password:
            message = message.replace(str(parsed.password), "***")
        return f"the warehouse {shown} does not answer: {message}"
    return None


def preflight(cfg: Settings, as_of: str | None = None, *, create_intake: bool = False) -> list[str]:
    """What stops tonight's night from running, checked in seconds before Airflow starts.

    The date (a real YYYY-MM-DD), the warehouse (answers ``SELECT 1``), the intake folder (exists
    and is a folder: a mistyped path must not become an empty intake; ``create_intake`` creates it
    with its department folders), the export folder (exists or can be created, and is writable).
    Returns one line per problem; an empty list means the night may start."""
    problems = []
    if as_of:
        try:
            parse_as_of(as_of)
        except NightNotStarted as exc:
            problems.append(str(exc))
    warehouse_problem = check_warehouse(cfg.warehouse_url)
    if warehouse_problem:
        problems.append(warehouse_problem)
    intake = cfg.intake_dir
    if not intake.exists() and create_intake:
        problem = _creatable_folder_problem(intake, "intake folder")
        if problem:
            problems.append(problem)
        else:
            from rosterlink.intake.scan import ensure_folders

            ensure_folders(intake)
    elif not intake.exists():
        problems.append(
            f"the intake folder {intake} does not exist (a mistyped path?); "
            "give --create-intake to create it with its department folders"
        )
    elif not intake.is_dir():
        problems.append(f"the intake folder {intake} is not a folder (it is a file)")
    elif not os.access(intake, os.R_OK | os.W_OK | os.X_OK):
        problems.append(f"the intake folder {intake} is not readable and writable")
    export_problem = _creatable_folder_problem(cfg.export_dir, "export folder")
    if export_problem:
        problems.append(export_problem)
    return problems


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
    handler.addFilter(_progress_line)
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


def _progress_line(record: logging.LogRecord) -> bool:
    """A progress line on the terminal: not the per-task resource lines (those show with ``-v``), and
    masked (a file name may hold an ID number or a phone)."""
    if record.name == "rosterlink.resources":
        return False
    from rosterlink.core.masking import mask_text

    record.msg, record.args = mask_text(record.getMessage()), None
    return True


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


@dataclasses.dataclass
class NightOutcome:
    """What ``rosterlink nightly`` reports: the run's state, the figures of all nights (None when the
    warehouse cannot be read after a failed night), tonight's figures, the files written tonight,
    where the outputs are, and the Airflow log."""

    state: str
    figures: NightFigures | None
    tonight: dict | None
    written: list
    where: dict
    log_path: Path


def run_nightly(conf: dict, verbose: bool = False) -> NightOutcome:
    """Run ``rosterlink_nightly`` once via ``dag.test`` and collect what the summary shows."""
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
    from rosterlink.figures import night_figures

    result = _night_result(run)
    if result and result.get("where"):
        return NightOutcome(
            state,
            result["figures"],
            result.get("tonight"),
            [(str(w[0]), str(w[1])) for w in result.get("written") or []],
            result["where"],
            log_path,
        )
    # the night did not get to its end: read the warehouse the CLI's own settings point at
    cfg = night_settings(conf)
    try:
        figures = night_figures(warehouse.connect(cfg.warehouse_url))
        tonight = tasks.tonight_figures(cfg, run.run_id)
    except Exception as exc:  # noqa: BLE001 - an unreachable warehouse is what the failed night reports
        print(f"  (the warehouse could not be read: {type(exc).__name__})")
        figures, tonight = None, None
    return NightOutcome(state, figures, tonight, [], tasks.where(cfg), log_path)


def _rows(rows: Mapping[str, Any]) -> str:
    already = f"already recorded {rows['already']:,}, " if rows.get("already") else ""
    return f"read {rows['read']:,}, loaded {rows['loaded']:,}, {already}rejected {rows['rejected']:,}"


def print_summary(outcome: NightOutcome) -> None:
    """The night in plain lines: tonight's files and rows, then the warehouse over all nights, then
    the files written tonight. File names and paths are masked (an ID or phone in a file name)."""
    from rosterlink.core.masking import mask_text

    figures, where = outcome.figures, outcome.where
    print(f"\nrosterlink night: {outcome.state}")
    if outcome.tonight is not None:
        print("\ntonight:")
        print(f"  files:                  {plain.counts(outcome.tonight['files'])}")
        print(f"  rows:                   {_rows(outcome.tonight['rows'])}")
        linked = outcome.tonight.get("linked") or {}
        if linked:
            words = {
                "id": "by ID number",
                "model": "by the model",
                "new": "new",
                "review_split": "kept apart",
            }
            parts = ", ".join(
                f"{words.get(k, k)} {linked[k]:,}"
                for k in (*words, *sorted(set(linked) - set(words)))
                if k in linked
            )
            print(f"  rows linked:            {parts}")
        followed = outcome.tonight.get("followup") or {}
        if followed:
            print(
                f"  follow-through:         {followed['rows_matched']:,} visit rows matched, "
                f"{sum(followed['rows_rejected'].values()):,} rejected; figures changed for "
                f"{followed['figures_changed']:,} of {followed['households']:,} households"
            )
    if figures is not None:
        print("\nall nights (the warehouse as it stands):")
        print(f"  files:                  {plain.counts(figures['files'])}")
        print(f"  rows:                   {_rows(figures['rows'])}")
        print(f"  households:             {plain.counts(figures['households'])}")
        print(f"  active by category:     {plain.counts(figures['categories_active'])}")
        print(f"  cadres (rank:status):   {plain.counts(figures['cadres'])}")
        print(f"  key cases:              {plain.counts(figures['cases'])}")
        print(f"  current pairs:          {plain.counts(figures['pairs_current'])}")
        pending = sum((figures.get("link_review") or {}).values())
        print(f"  link review pending:    {plain.counts(figures.get('link_review'))}")
        if pending:
            print(f"                          decide in {mask_text(where['review'])}/待核实.xlsx")
        fu = figures.get("followup") or {}
        if fu.get("households"):
            print(
                f"  follow-through:         {fu['households']} paired households: "
                f"{fu['visited_in_person']} visited in "
                f"person, {fu['not_visited_in_person']} not yet ({fu['phone_only']} by phone only, "
                f"{fu['never_contacted']} never contacted), {fu['overdue']} overdue"
            )
            print(
                f"  visits logged:          {fu['in_person_visits']} in person, {fu['phone_contacts']} by "
                f"phone; problems found/solved {fu['problems_found']} / {fu['problems_solved']}; "
                f"visit history carried over to a new cadre for {fu['carried_over']} households"
            )
            print(
                f"  help given:             {fu['help_value']:.0f} yuan; households above / below the "
                f"band {fu['help_above_band']} / {fu['help_below_band']}; entries from public funds "
                f"{fu['public_fund_entries']}; opinions heard {fu['opinions']}"
            )
    if outcome.written:
        print("\nwritten tonight:")
        for label, path in outcome.written:
            print(f"  {label + ':':<24}{mask_text(path)}")
    print()
    print(f"  warehouse:              {where['warehouse']}")
    print(f"  exports:                {mask_text(where['exports'])}")
    print(
        f"  clerk feedback:         {mask_text(where['intake'])}/<department>/feedback/"
        f" (files outside the department folders: {mask_text(where['intake'])}/feedback/)"
    )


def night_settings(conf: dict) -> Settings:
    """The settings the night will run with, as far as the CLI can know them: its flags, the
    environment, and the warehouse connection when it is given in the environment
    (``AIRFLOW_CONN_ROSTERLINK_WAREHOUSE``, URI or JSON, read by ``settings.airflow_connection``;
    one in Airflow's database is not seen here)."""
    from rosterlink.core import settings

    cfg = settings.load(**{k: conf.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})
    if conf.get("warehouse_url"):
        return cfg
    conn = settings.airflow_connection(settings.WAREHOUSE_CONN_ID, environment=True)
    if conn is None:
        return cfg
    return dataclasses.replace(cfg, warehouse_url=settings.connection_url(conn))


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
    problems = preflight(night_settings(conf), args.as_of, create_intake=args.create_intake)
    if problems:
        for problem in problems:
            print(f"rosterlink nightly not started: {problem}", file=sys.stderr)
        return 2
    outcome = run_nightly(conf, verbose=args.verbose)
    if outcome.state != "success":
        print(f"\nthe night did not succeed; the reason is in the Airflow log: {outcome.log_path}")
        _print_failure(outcome.log_path)
    print_summary(outcome)
    return 0 if outcome.state == "success" else 1


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
        if args.supplement and args.night == 1:
            from rosterlink.synthetic import supplement

            extra = supplement.write(out, seed=args.seed, scale=args.scale)
            print(
                f"{extra.rel}\txlsx\trows={extra.rows}\tguardians without ID: {extra.exact_families} "
                f"as listed, {extra.doubtful_families} doubtful (not in the truth)"
            )
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
        limit = None if args.limit <= 0 else args.limit
        with eng.connect() as conn:
            rows, total = review.listed_reviews(conn, include_decided=args.all, limit=limit)
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
        if total > len(rows):
            more = total - len(rows)
            print(
                f"\n{len(rows)} of {total:,} item(s) shown, the most doubtful first; {more:,} more not shown "
                "(--limit N to show more, --limit 0 for all)"
            )
        else:
            print(f"\n{len(rows)} item(s)")
        print("decide with: rosterlink review decide ID same|different --by NAME")
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default shown after its help (an option
    whose default depends on the settings says so in its own words instead)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and not any(default is unset for unset in (None, False, True, argparse.SUPPRESS))
        ):
            text += " (default: %(default)s)"
        return text


WAREHOUSE_HELP = "SQLAlchemy URL of the warehouse (default: $ROSTERLINK_WAREHOUSE_URL or data/warehouse.db)"


def _command(sub, name: str, purpose: str, examples: str, description: str = "") -> argparse.ArgumentParser:
    """A subcommand with its purpose line (the help in the command list and the first line of its
    own ``--help``), an optional longer description, and examples after the options."""
    return sub.add_parser(
        name,
        help=purpose,
        description=purpose[0].upper() + purpose[1:] + "." + (f"\n\n{description}" if description else ""),
        epilog="examples:\n" + examples,
        formatter_class=HelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``rosterlink`` command line: every command with a purpose line and examples, every
    option with help text and its default."""
    from rosterlink import __version__

    parser = argparse.ArgumentParser(
        prog="rosterlink",
        description="Department rosters -> one hardship register and one set of cadre pairings, nightly.\n"
        "Run `rosterlink COMMAND --help` for what a command does, its options and examples.",
        epilog="examples:\n  rosterlink sample --out data/intake\n  rosterlink nightly\n"
        "  rosterlink nightly --help",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        sub,
        "nightly",
        "run the nightly DAG once through Airflow and print a summary",
        "  rosterlink nightly\n"
        "  rosterlink nightly --as-of 2026-11-26\n"
        "  rosterlink nightly --intake /srv/intake --warehouse postgresql+psycopg://etl@db/rosters "
        "--exports /srv/exports\n"
        "  rosterlink nightly --intake /srv/new-intake --create-intake",
        "Before Airflow starts it checks, in seconds, that the date is a real YYYY-MM-DD, that the\n"
        "warehouse answers, that the intake folder exists and that the export folder can be written;\n"
        "a problem is one line on stderr and exit code 2. A failed night exits 1.",
    )
    p.add_argument("--intake", help="intake root (default: $ROSTERLINK_INTAKE_DIR or data/intake)")
    p.add_argument("--warehouse", help=WAREHOUSE_HELP)
    p.add_argument("--exports", help="export folder (default: $ROSTERLINK_EXPORT_DIR or data/exports)")
    p.add_argument("--as-of", help="the night's date, YYYY-MM-DD (default: today in Asia/Shanghai)")
    p.add_argument(
        "--create-intake",
        action="store_true",
        help="create the intake folder and its department folders if it does not exist "
        "(default: a missing intake folder is refused)",
    )
    p.add_argument(
        "--allow-mass-end",
        action="store_true",
        help="accept a night that ends more pairs than the configured share (default: such a night stops)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Airflow's own log on the terminal (default: only progress lines; the log goes to a file)",
    )
    p.set_defaults(func=cmd_nightly)

    p = _command(
        sub,
        "sample",
        "write the sample intake for the reference district",
        "  rosterlink sample --out data/intake\n"
        "  rosterlink sample --out data/intake --night 2 --truth data/truth/night2.json\n"
        "  rosterlink sample --visits --out data/intake --as-of 2026-11-26",
        "Synthetic department rosters (no real person), night 1 or the changes of night 2; with\n"
        "--visits, the units' visit logs for the pairs already in the warehouse.",
    )
    p.add_argument("--out", default=str(DATA_DIR / "intake"), help="the intake root to write into")
    p.add_argument("--night", type=int, default=1, help="which night's files: 1 (first) or 2 (changes)")
    p.add_argument("--seed", type=int, default=20261125, help="random seed (same seed, same files)")
    p.add_argument("--scale", type=float, default=1.0, help="size relative to the reference district")
    p.add_argument(
        "--truth", help="also write the generator's ground truth (JSON) here (default: not written)"
    )
    p.add_argument(
        "--visits",
        action="store_true",
        help="write the units' visit logs (visits/) for the pairs in the warehouse instead "
        "(default: write the rosters)",
    )
    p.add_argument(
        "--warehouse", help="with --visits: the warehouse holding the pairs (default: the settings)"
    )
    p.add_argument("--as-of", help="with --visits: log visits up to this date, YYYY-MM-DD (default: today)")
    p.add_argument(
        "--supplement",
        action="store_true",
        help="with night 1: also the town federations' supplementary list, guardians without ID numbers, "
        "a few of them doubtful as make demo writes it (default: not written)",
    )
    p.set_defaults(func=cmd_sample)

    p = _command(
        sub,
        "figures",
        "print the warehouse's headline figures as JSON",
        "  rosterlink figures\n  rosterlink figures --warehouse sqlite:///data/warehouse.db",
    )
    p.add_argument("--warehouse", help=WAREHOUSE_HELP)
    p.set_defaults(func=cmd_figures)

    p = _command(
        sub,
        "review",
        "the link review queue: list it, or decide an item",
        "  rosterlink review list\n  rosterlink review decide 12 same --by 王科长 --note 同一户主",
    )
    p.add_argument("--warehouse", help=WAREHOUSE_HELP)
    review = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = _command(
        review,
        "list",
        "list the pending items (ID numbers and phones masked)",
        "  rosterlink review list\n  rosterlink review list --limit 200\n  rosterlink review list --all",
    )
    q.add_argument("--all", action="store_true", help="decided items too (default: pending items only)")
    q.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="show at most N items, the most doubtful first as in the review workbook; 0 shows all "
        "(default: %(default)s)",
    )
    q = _command(
        review,
        "decide",
        "record a decision; the next night applies it and the model never overrides it",
        "  rosterlink review decide 12 same --by 王科长\n"
        "  rosterlink review decide 12 different --by 王科长 --note 不同户 --force",
    )
    q.add_argument("review_id", type=int, help="the item's number (#N in `rosterlink review list`)")
    q.add_argument("decision", choices=["same", "different"], help="same person or household, or different")
    q.add_argument("--by", required=True, help="who decided (recorded with the decision; required)")
    q.add_argument("--note", help="a note recorded with the decision (default: none)")
    q.add_argument(
        "--force", action="store_true", help="change a decision already applied (default: refused)"
    )
    p.set_defaults(func=cmd_review)

    p = _command(
        sub,
        "purge",
        "blank the raw values of rejected rows older than the retention age",
        "  rosterlink purge --dry-run\n"
        "  rosterlink purge --older-than-days 180\n"
        "  rosterlink purge --ended-pairs-older-than-days 1100 --dry-run",
    )
    p.add_argument("--warehouse", help=WAREHOUSE_HELP)
    p.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        help="age in days (default: $ROSTERLINK_PURGE_REJECTED_DAYS or 365)",
    )
    p.add_argument(
        "--ended-pairs-older-than-days",
        type=int,
        default=None,
        help="also delete pairs that ended more than this many days ago, at least 1096: three years "
        "(default: ended pairs are kept)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the counts only, change nothing (default: purge)"
    )
    p.set_defaults(func=cmd_purge)

    p = _command(
        sub,
        "analytics-copy",
        "write a pseudonymised copy of the warehouse to another database",
        "  ROSTERLINK_PSEUDONYM_KEY=... rosterlink analytics-copy --to sqlite:///data/analytics.db",
    )
    p.add_argument(
        "--to",
        required=True,
        help="SQLAlchemy URL of the copy (an empty database or an earlier copy; required)",
    )
    p.add_argument(
        "--warehouse",
        help="SQLAlchemy URL of the warehouse to copy "
        "(default: $ROSTERLINK_WAREHOUSE_URL or data/warehouse.db)",
    )
    p.set_defaults(func=cmd_analytics_copy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
