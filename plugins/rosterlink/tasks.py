"""The nightly DAG's task callables: each is a plain function of settings and small dicts.

DAG files only wire these together. Rows travel through the warehouse (``staged_row``) from a
file's read to its validation and on to the load, never through XCom; each callable returns a small
JSON-able summary. Every callable is idempotent: a retried task redoes its own work from the start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink import figures, warehouse
from rosterlink.core import pseudonym
from rosterlink.core.payloads import (
    ChangeLogWritten,
    FeedbackWritten,
    FileItem,
    LoadSummary,
    NightStarted,
    PairingWorkbookWritten,
    ScannedFile,
    TownBatch,
    TownBatchWritten,
)
from rosterlink.core.settings import Settings
from rosterlink.intake import scan as intake
from rosterlink.ops import faults, logmask, nightlock
from rosterlink.warehouse import dumps, now, schema, staging
from rosterlink.warehouse import load as load_stage

if TYPE_CHECKING:
    from rosterlink.export import NightExports
    from rosterlink.followup.match import MatchSummary
    from rosterlink.link.night import LinkSummary
    from rosterlink.pairing.rebuild import PairingSummary
    from rosterlink.status import StatusSummary

log = logging.getLogger(__name__)
resources_log = logging.getLogger("rosterlink.resources")  # the CLI shows these lines only with -v

# The nightly DAG's tasks in the order they run (the benchmarks report per task in this order;
# tests/test_dag.py checks the DAG against its own list).
NIGHT_TASKS = (
    "begin_night",
    "scan_intake",
    "read_and_validate_file",
    "document_validation",
    "load_files",
    "link_entities",
    "refresh_statuses",
    "rebuild_pairings",
    "follow_through",
    "write_feedback",
    "plan_town_workbooks",
    "write_town_workbooks",
    "write_pairing_summary",
    "write_change_log",
    "finish_night",
)


def _engine(settings: Settings) -> sa.Engine:
    return warehouse.connect(settings.warehouse_url)


# --- night bookkeeping ---------------------------------------------------------------------------
@contextlib.contextmanager
def night(settings: Settings, run_id: str, last: bool = False) -> Iterator[None]:
    """Every task of a night runs inside this: it holds the night's lease on the warehouse.

    The night's last task (``last=True``) releases the lease when it succeeds. On the way out it
    logs the task process's peak memory and CPU time (``task resources: ...``), the figures an
    operator sizes workers by (``benchmarks/bench_province.py`` collects them from the task logs).
    """
    started = time.perf_counter()
    logmask.install()  # file names may hold an ID number or a phone
    try:
        with nightlock.held(_engine(settings), run_id, release_after=last):
            yield
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        resources_log.info(
            "task resources: peak_rss_mb=%.0f cpu_s=%.1f wall_s=%.1f",
            usage.ru_maxrss / 1024,
            usage.ru_utime + usage.ru_stime,
            time.perf_counter() - started,
        )


def begin_night(settings: Settings, run_id: str, as_of: dt.date) -> NightStarted:
    """Check the warehouse is reachable and migrated, and record the night as running."""
    eng = _engine(settings)
    n = schema.night_run
    with eng.begin() as conn:
        conn.execute(n.delete().where(n.c.run_id == run_id))
        conn.execute(n.insert().values(run_id=run_id, as_of=as_of, started_at=now(), status="running"))
    return NightStarted(run_id=run_id, as_of=as_of.isoformat())


def finish_night(
    settings: Settings, run_id: str, summary: dict, status: str = "success"
) -> figures.NightFigures:
    eng = _engine(settings)
    counts = night_figures(eng)
    summary = {**summary, "figures": counts}
    n = schema.night_run
    with eng.begin() as conn:
        conn.execute(
            n.update()
            .where(n.c.run_id == run_id)
            .values(finished_at=now(), status=status, summary=dumps(summary))
        )
    return counts


def where(settings: Settings) -> dict[str, str]:
    """Where tonight's outputs are, as a person may read it (the warehouse URL without password)."""
    return {
        "warehouse": warehouse.display_url(settings.warehouse_url),
        "exports": str(settings.export_dir),
        "intake": str(settings.intake_dir),
        "review": str(settings.review_dir),
    }


def tonight_figures(settings: Settings, run_id: str) -> dict:
    """What this night did, apart from the warehouse as it stands: the files it recorded, by status,
    their rows read / loaded / already recorded (a re-sent file's rows) / rejected, and how the
    loaded rows found their household, cadre or case
    (``linked``: link method -> rows; ``id`` an ID number or case number, ``model`` the linkage
    model, ``new`` a new entity, ``review_split`` kept apart by a reviewer), and what the
    follow-through stage did (``followup``: its :class:`~rosterlink.followup.match.MatchSummary` as
    the night recorded it; absent when the night did not record one)."""
    f = schema.intake_file
    with _engine(settings).connect() as conn:
        n = schema.night_run
        recorded = conn.execute(sa.select(n.c.summary).where(n.c.run_id == run_id)).scalar_one_or_none()
        by_status = {
            str(status): int(n)
            for status, n in conn.execute(
                sa.select(f.c.status, sa.func.count()).where(f.c.run_id == run_id).group_by(f.c.status)
            )
        }
        rows = figures.row_totals(conn, run_id)
        r = schema.source_row
        linked = {
            str(method or "id"): int(n)
            for method, n in conn.execute(
                sa.select(r.c.link_method, sa.func.count())
                .select_from(r.join(f, f.c.file_id == r.c.file_id))
                .where(f.c.run_id == run_id)
                .group_by(r.c.link_method)
            )
        }
    followup = (warehouse.loads(recorded) if recorded else {}).get("followup")
    return {
        "files": by_status,
        "rows": rows,
        "linked": linked,
        **({"followup": followup} if followup else {}),
    }


WRITTEN_LISTED = 10  # files of one kind listed by name in the night's result (the rest are counted)


def written_tonight(settings: Settings, exports: dict, documented: dict | None) -> list[list[str]]:
    """The files this night wrote, as [what, path] (lists: they travel through XCom): the pairing
    summary, the town workbooks' folder (how many were rewritten tonight), the change log, the
    departments' opinions, the clerks' feedback, the night's Data Docs and the link review queue."""
    written: list[list[str]] = []
    if exports.get("pairing"):
        written.append(["pairing summary", str(exports["pairing"])])
    if exports.get("town_folder"):
        written.append(
            [
                "town workbooks",
                f"{exports['town_folder']}/ ({exports.get('towns_written', 0):,} of "
                f"{exports.get('towns_total', 0):,} rewritten tonight)",
            ]
        )
    if exports.get("change_log"):
        written.append(["change log", str(exports["change_log"])])
    for label, key in (("opinions", "opinions"), ("clerk feedback", "feedback")):
        paths = [str(path) for path in exports.get(key) or []]
        written += [[label, path] for path in paths[:WRITTEN_LISTED]]
        if len(paths) > WRITTEN_LISTED:  # a province night's 40 files: the XCom stays small
            written.append([label, f"... and {len(paths) - WRITTEN_LISTED:,} more in the same folders"])
    if documented and documented.get("data_docs") and not documented.get("skipped"):
        written.append(["Data Docs", str(Path(documented["data_docs"]) / "index.html")])
    review = settings.review_dir / "待核实.xlsx"
    if review.is_file():
        written.append(["link review queue", str(review)])
    return written


def night_result(
    settings: Settings, run_id: str, night: figures.NightFigures, exports: dict, documented: dict | None
) -> dict:
    """What the night's last task returns (the ``rosterlink nightly`` summary reads it): the
    figures of all nights, tonight's, the files written tonight and where everything is."""
    return {
        "figures": night,
        "tonight": tonight_figures(settings, run_id),
        "written": written_tonight(settings, exports, documented),
        "where": where(settings),
    }


def night_figures(eng: sa.Engine) -> figures.NightFigures:
    """The headline numbers of the warehouse as it stands (what the CLI prints): :mod:`rosterlink.figures`."""
    return figures.night_figures(eng)


# the tables each stage writes in bulk: on PostgreSQL their statistics are refreshed when the stage
# has written (:func:`rosterlink.warehouse.analyze`), so the stages after it plan on what is there
WRITTEN_BY: dict[str, tuple[str, ...]] = {
    "load": ("source_record", "recorded_row", "intake_sheet", "intake_file"),
    "link": (
        "source_record",
        "source_row",
        "household",
        "household_category",
        "cadre",
        "petition_case",
        "link_review",
        "household_merge",
    ),
    "status": ("household", "household_category", "cadre", "petition_case"),
    "pairing": ("pairing",),
    "follow_through": ("visit", "followup_figures"),
}


# --- intake, validation, load --------------------------------------------------------------------
def scan(settings: Settings, run_id: str) -> list[ScannedFile]:
    """Record new files in the ledger; the files to read tonight (:func:`rosterlink.intake.scan.scan`)."""
    return intake.scan(_engine(settings), settings, run_id)


def read_file(settings: Settings, item: ScannedFile, as_of: dt.date | None = None) -> FileItem:
    """Read and normalise one file into ``staged_row`` (:func:`rosterlink.intake.stage.read_file`);
    no date may be later than the night's ``as_of``."""
    from rosterlink.intake import stage

    return stage.read_file(_engine(settings), settings, item, as_of)


def validate_file(settings: Settings, item: FileItem, as_of: dt.date | None = None) -> FileItem:
    """Validate one file's staged rows (:func:`rosterlink.validate.stage.validate_file`) as of the
    night, keeping the GX results for the night's Data Docs (:mod:`rosterlink.validate.datadocs`)."""
    from rosterlink.validate import datadocs, stage

    return stage.validate_file(_engine(settings), item, as_of, datadocs.results_dir(settings.export_dir))


def read_and_validate_file(settings: Settings, item: ScannedFile, as_of: dt.date | None = None) -> FileItem:
    """One file read (:func:`read_file`) then validated (:func:`validate_file`): the nightly DAG's
    one mapped task per file. A file rejected whole by the read is passed on as it is.

    One task, not two, because each start of an Airflow task costs a process and seconds of imports,
    twice per file on a 40-file night; the two steps stay apart here (and tested apart) because
    the rows go from one to the other through ``staged_row`` either way. A retry redoes both: the
    read clears what an earlier attempt left of the file, the validation its findings."""
    return validate_file(settings, read_file(settings, item, as_of), as_of)


def load(settings: Settings, items: list[FileItem], day: str | None = None) -> LoadSummary:
    """Load the validated files into ``source_record`` (:func:`rosterlink.warehouse.load.load_files`);
    with ``settings.archive``, each file is moved to the archive as soon as it is loaded."""
    validated = {i["file_id"]: i for i in items if i and i.get("status") == "validated"}
    summary = LoadSummary(files_loaded=0, rows_loaded=0)
    loaded = load_stage.load_files(
        _engine(settings),
        list(validated),
        pseudonym.secret(required=False),
        midway=lambda: faults.point("load.mid"),
    )
    for done in loaded:
        summary["files_loaded"] += 1
        summary["rows_loaded"] += done.rows_loaded
        if settings.archive:
            intake.archive(settings, done.file_name, day or dt.date.today().isoformat())
    log.info("load: %d files, %d rows", summary["files_loaded"], summary["rows_loaded"])
    if summary["rows_loaded"]:
        warehouse.analyze(_engine(settings), WRITTEN_BY["load"])
    return summary


# --- later stages ----------------------------------------------------------------------------------
def link(settings: Settings, run_id: str | None = None) -> LinkSummary:
    from rosterlink.link import night as link_stage

    eng = _engine(settings)
    with warehouse.changes_of(eng, run_id, "link") as changed:
        done = link_stage.link(eng, review_dir=settings.review_dir)
        changed.append(
            done["rows_linked"]
            + done["rows_rejected_unknown_entity"]
            + len(done["decisions_applied"])
            + len(done["merges"])
        )
    if sum(changed):
        warehouse.analyze(eng, WRITTEN_BY["link"])
    return done


def refresh_statuses(
    settings: Settings, as_of: dt.date, allow_mass_end: bool = False, run_id: str | None = None
) -> StatusSummary:
    from rosterlink import status

    eng = _engine(settings)
    kept = status.kept(eng, as_of)
    if kept is not None:
        return kept
    with warehouse.changes_of(eng, run_id, "status") as changed:
        done = status.refresh(eng, settings.max_end_share, allow_mass_end, as_of)
        changed.append(sum(done["changed"].values()) + done["categories_changed"])
    if sum(changed):
        warehouse.analyze(eng, WRITTEN_BY["status"])
    status.settle(eng, as_of, run_id, done)
    return done


def rebuild_pairings(settings: Settings, as_of: dt.date, run_id: str) -> PairingSummary:
    from rosterlink.core.spec import load_json
    from rosterlink.pairing import rebuild as pairing

    config = pairing.PairingConfig.from_mapping(load_json("pairing.json"))
    eng = _engine(settings)
    kept = pairing.kept(eng, as_of, run_id, config)
    if kept is not None:
        return kept
    with warehouse.changes_of(eng, run_id, "pairing") as changed:
        done = pairing.rebuild(eng, as_of, run_id, config)
        changed.append(sum(done["ended"].values()) + sum(done["made"].values()))
    if sum(changed):
        warehouse.analyze(eng, WRITTEN_BY["pairing"])
    pairing.settle(eng, as_of, run_id, config, done)
    return done


def follow_through(settings: Settings, as_of: dt.date, run_id: str) -> MatchSummary:
    """Tie tonight's visit logs to the pairs (or reject them) and rebuild the follow-through figures."""
    from rosterlink.followup import match

    eng = _engine(settings)
    with warehouse.changes_of(eng, run_id, "follow_through") as changed:
        done = match.match(eng, as_of, run_id)
        # a change is a visit matched tonight, or a household's figures changed (the night's date
        # and the days since contact are the view's: no row moves with the date alone)
        changed.append(done["rows_matched"] + done["figures_changed"])
    if sum(changed):  # a night that wrote no row leaves the planner's statistics as they are
        warehouse.analyze(eng, WRITTEN_BY["follow_through"])
    return done


def night_file_ids(settings: Settings, run_id: str, items: list[ScannedFile]) -> list[int]:
    """Files this night touched: the ones it processed plus the ones its scan marked on sight."""
    eng = _engine(settings)
    f = schema.intake_file
    with eng.connect() as conn:
        marked = conn.execute(sa.select(f.c.file_id).where(f.c.run_id == run_id)).scalars().all()
    return sorted({*(i["file_id"] for i in items if i), *marked})


def write_exports(settings: Settings, as_of: dt.date, file_ids: list[int]) -> NightExports:
    """All of the night's workbooks in one call (the CLI's and the benchmarks' way; the DAG writes
    them in parallel tasks: :func:`write_feedback`, :func:`plan_town_workbooks` then
    :func:`write_town_workbooks` (mapped over the batches) then :func:`write_pairing_summary`, and
    :func:`write_change_log`)."""
    from rosterlink import export

    return export.write_all(_engine(settings), settings, as_of, file_ids)


def write_feedback(settings: Settings, as_of: dt.date, file_ids: list[int]) -> FeedbackWritten:
    """The clerks' feedback workbooks and the departments' opinions workbooks."""
    from rosterlink import export
    from rosterlink.core.masking import mask_text

    eng = _engine(settings)
    feedback = export.write_feedback(eng, settings, file_ids)
    opinions = export.write_opinion_workbooks(eng, settings, as_of)
    # a feedback workbook is named after the clerk's file: the XCom carries the path masked
    return FeedbackWritten(
        feedback=[mask_text(str(p)) for p in feedback], opinions=[str(p) for p in opinions]
    )


def plan_town_workbooks(settings: Settings, as_of: dt.date, run_id: str) -> list[TownBatch]:
    """Tonight's towns in at most ``settings.town_batches`` batches of about equal size; the
    workbooks of towns gone are removed (:func:`rosterlink.export.town_books.plan`)."""
    from rosterlink.export import town_books

    batches = town_books.plan(_engine(settings), settings, as_of, run_id)
    return [TownBatch(batch=b["batch"], towns=b["towns"], rows=b["rows"]) for b in batches]


def write_town_workbooks(
    settings: Settings, as_of: dt.date, run_id: str, batch: TownBatch
) -> TownBatchWritten:
    """One batch of towns: the workbooks of those whose content changed
    (:func:`rosterlink.export.town_books.write_batch`)."""
    from rosterlink.export import town_books

    written = town_books.write_batch(_engine(settings), settings, as_of, run_id, batch["batch"])
    return TownBatchWritten(batch=batch["batch"], written=len(written))


def write_pairing_summary(
    settings: Settings, as_of: dt.date, batches: list[TownBatchWritten], run_id: str | None = None
) -> PairingWorkbookWritten:
    """The district's summary workbook, once the town workbooks are written (it gives each one's
    as-of date). Every batch of the night's plan has succeeded (this task runs only then): the town
    workbooks are noted as checked against tonight's inputs (:func:`rosterlink.export.town_books.checked`)."""
    from rosterlink import export
    from rosterlink.export import town_books

    token = None
    if run_id is not None:
        town_books.checked(settings, run_id)
        token = town_books.checked_token(settings, run_id)
    books = town_books.books(settings)
    summary = export.write_pairing_workbook(_engine(settings), settings, as_of, books, token)
    return PairingWorkbookWritten(
        pairing=str(summary),
        town_folder=str(town_books.folder(settings)),
        towns_written=sum(b["written"] for b in batches if b),
        towns_total=len(books),
    )


def write_change_log(settings: Settings, as_of: dt.date) -> ChangeLogWritten:
    from rosterlink import export

    return ChangeLogWritten(change_log=str(export.write_change_log(_engine(settings), settings, as_of)))


def clear_staging(settings: Settings) -> int:
    """Remove the staged rows of every file that is no longer pending (loaded, rejected, duplicate).

    Loading leaves a file's staged rows in place; the night's last task clears them. (The night's
    Data Docs do not read them: they are built from the results the validate tasks kept.) A file still pending
    (a night killed before loading it) keeps its rows: the next night reads it again anyway."""
    with _engine(settings).begin() as conn:
        cleared = staging.clear_finished(conn)
    log.info("staging: %d rows of finished files cleared", cleared)
    return cleared
