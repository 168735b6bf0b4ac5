"""The review workbook: ``<intake>/review/待核实.xlsx`` written with the pending queue (masked), and
decisions filled into any workbook in that folder read back (the rules are :mod:`rosterlink.link.review`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from rosterlink.core import jsonfile
from rosterlink.core.workbook import TOP, WRAP, Book
from rosterlink.link.model import norm_name
from rosterlink.link.review import (
    REVIEW_REASONS,
    evidence_text,
    most_doubtful,
    parse_decision,
    pending_by_reason,
)
from rosterlink.warehouse import builds, now, schema
from rosterlink.warehouse.db import stage_changes

log = logging.getLogger(__name__)

REVIEW_WORKBOOK = "待核实.xlsx"
_REVIEW_COLUMNS = (
    "编号",
    "类别",
    "原因",
    "匹配概率",
    "A 名单",
    "A 行号",
    "A 姓名",
    "A 身份证号",
    "A 镇街",
    "A 村(居)",
    "A 电话",
    "B 名单",
    "B 行号",
    "B 姓名",
    "B 身份证号",
    "B 镇街",
    "B 村(居)",
    "B 电话",
    "依据",
    "核实结论",
    "核实人",
    "备注",
)
_REVIEW_WIDTHS = (8, 8, 26, 10, 24, 8, 10, 22, 12, 14, 15, 24, 8, 10, 22, 12, 14, 15, 50, 14, 10, 20)
_KIND_LABEL = {"household": "家庭", "cadre": "干部"}
_MAX_REVIEW_FILE_BYTES = 20 * 1024 * 1024


def _review_cells(row: sa.Row) -> list[object]:
    a, b = json.loads(row.display_l), json.loads(row.display_r)

    def side(d: dict) -> list[object]:
        where = f"{d.get('roster_label', '')} {d.get('file', '')}".strip()
        return [
            where,
            d.get("row"),
            d.get("name"),
            d.get("id_number"),
            d.get("town"),
            d.get("village"),
            d.get("phone"),
        ]

    prob = None if row.match_probability is None else round(float(row.match_probability), 4)
    return [
        row.review_id,
        _KIND_LABEL.get(row.entity_kind, row.entity_kind),
        REVIEW_REASONS.get(row.reason, row.reason),
        prob,
        *side(a),
        *side(b),
        evidence_text(row),
        None,
        None,
        None,
    ]


def export_review_workbook(eng: sa.Engine, review_dir: Path, max_items: int = 2000) -> Path | None:
    """``<review_dir>/待核实.xlsx``: the pending queue (masked), with a 核实结论 column to fill in
    (a list of 同一 / 不同 to choose from).

    At most ``max_items`` (``review_workbook_max`` of ``linkage.json``), the most doubtful first
    (:func:`~rosterlink.link.review.doubt_order`): what a person is asked stays bounded, and so does
    the memory it takes. The rest stay pending in the warehouse, counted by reason in a closing
    line and on the 说明 sheet; they come up on later nights as the listed ones are decided.

    Written through the project's one workbook writer (strings masked, defused, written as text),
    atomically; left alone while Excel holds it open (a ``~$`` lock file beside it)."""
    review_dir = Path(review_dir)
    review_dir.mkdir(parents=True, exist_ok=True)
    target = review_dir / REVIEW_WORKBOOK
    if (review_dir / ("~$" + REVIEW_WORKBOOK)).exists():
        log.info("link: %s is open in Excel; not rewritten tonight", REVIEW_WORKBOOK)
        return None
    with eng.connect() as conn:
        token = queue_token(conn, max_items)
        written = _written(review_dir)
        if written.get("token") == token and written.get("sha256") == _digest(target):
            log.info("link: the review queue is as %s shows it; the workbook is kept", REVIEW_WORKBOOK)
            return target
        rows = most_doubtful(conn, max(max_items, 0))
        by_reason = pending_by_reason(conn)
    total = sum(by_reason.values())
    rest = total - len(rows)
    book = Book(stamp=now())
    sheet = book.sheet("待核实", _REVIEW_WIDTHS, columns=_REVIEW_COLUMNS, freeze=False, autofilter=False)
    sheet.ws.freeze_panes(1, 1)  # the header row and the review number stay in view
    evidence = _REVIEW_COLUMNS.index("依据")
    for row in rows:
        sheet.row(_review_cells(row), TOP, styles={evidence: WRAP})
    if rest > 0:
        listed = Counter(row.reason for row in rows)
        left = "、".join(
            f"{REVIEW_REASONS.get(reason, reason)} {n - listed[reason]} 条"
            for reason, n in sorted(by_reason.items())
            if n > listed[reason]
        )
        summary = (
            f"共 {total} 条待核实，本表列出最难确定的 {len(rows)} 条；另有 {rest} 条未列出（{left}），"
            "保留在数据库中，本表核实后，下一晚会列出下一批。"
        )
        sheet.row([summary])
    decision = _REVIEW_COLUMNS.index("核实结论")
    last = max(len(rows) + 1, 2) + 200
    sheet.ws.data_validation(
        1,
        decision,
        last - 1,
        decision,
        {"validate": "list", "source": ["同一", "不同"], "ignore_blank": True},
    )
    info = book.sheet("说明", (100,), freeze=False)
    for text in (
        "待核实记录：模型或规则无法确定两条记录是否为同一户（同一人），请核实。",
        "在“核实结论”一列填写：同一（是同一户/同一人）或 不同（不是同一户/同一人）；“核实人”填写您的姓名。",
        "填好后保存本文件（或另存为任意名称放在本文件夹），当晚处理时生效，模型不会推翻人工结论。",
        "身份证号、电话已脱敏；“依据”一列为各字段的比对结果和权重（正数支持同一，负数支持不同）。",
        f"共 {total} 条待核实。"
        + (
            f"本表列出最难确定的 {len(rows)} 条（模型最拿不准的在前），其余 {rest} 条保留在数据库中，"
            "本表核实后，下一晚会列出下一批；也可用 rosterlink review list --limit 0 查看全部。"
            if rest > 0
            else ""
        ),
    ):
        info.row([text])
    saved = book.save(target)
    jsonfile.write_atomic(review_dir / _WRITTEN, {"token": token, "sha256": _digest(saved)})
    return saved


_WRITTEN = Path(".rosterlink") / "review.json"
"""Beside the review workbook: what it was written from (:func:`queue_token`) and its bytes' digest.
A workbook with those bytes holds no decision (none was filled in since): it is not read, and a
night whose queue has the same token keeps it instead of writing it again."""


def queue_token(conn: sa.Connection, max_items: int) -> str:
    """A digest of what the review workbook shows, counted in the warehouse: the reviews (how
    many, the last id, how many pending, the last decided and applied), the link stage's recorded
    changes, the cap and the code that writes it."""
    lr = schema.link_review
    figures = (
        tuple(
            conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.max(lr.c.review_id),
                    sa.func.sum(sa.case((lr.c.status == "pending", 1), else_=0)),
                    sa.func.max(lr.c.decided_at),
                    sa.func.max(lr.c.applied_at),
                )
            ).one()
        ),
        stage_changes(conn, "link"),
        max_items,
    )
    here = Path(__file__).parent
    code = builds.code_digest([here / "review_book.py", here / "review.py"])
    return hashlib.sha256(repr((figures, code)).encode("utf-8")).hexdigest()


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _written(review_dir: Path) -> dict:
    return jsonfile.read_dict(review_dir / _WRITTEN)


def read_review_workbooks(conn: sa.Connection, review_dir: Path | None) -> dict:
    """Decisions filled into workbooks in ``review_dir``: recorded for pending reviews (a review
    already decided keeps its decision: change it with the CLI). Returns counts."""
    out = {"files": 0, "decisions": 0, "unreadable": 0, "not_understood": 0}
    if review_dir is None or not Path(review_dir).is_dir():
        return out
    lr = schema.link_review
    pending = {x.review_id for x in conn.execute(sa.select(lr.c.review_id).where(lr.c.status == "pending"))}
    as_written = _written(Path(review_dir)).get("sha256")
    for path in sorted(Path(review_dir).glob("*.xlsx")):
        if (
            path.name.startswith(("~$", "."))
            or path.is_symlink()
            or path.stat().st_size > _MAX_REVIEW_FILE_BYTES
        ):
            continue
        if (path.parent / ("~$" + path.name)).exists():
            continue  # still open in Excel
        if as_written is not None and path.name == REVIEW_WORKBOOK and _digest(path) == as_written:
            out["files"] += 1  # the workbook as the night wrote it: no decision was filled in
            continue
        try:
            found = _decisions_in(path)
        except Exception:  # noqa: BLE001 - a broken workbook must not stop the night
            # opening, or reading its rows (a file cut short breaks only then): nothing is taken
            # from a file that could not be read to its end
            log.warning("link: review workbook %s unreadable; its decisions are not applied", path.name)
            out["unreadable"] += 1
            continue
        out["files"] += 1
        for review_id, raw_decision, by, note in found:
            decision = parse_decision(raw_decision)
            if decision is None:
                out["not_understood"] += 1
                continue
            if review_id not in pending:
                continue
            conn.execute(
                lr.update()
                .where(lr.c.review_id == review_id, lr.c.status == "pending")
                .values(
                    status="decided",
                    decision=decision,
                    decided_at=now(),
                    decided_by=(f"{by}（{path.name}）" if by else f"workbook:{path.name}")[:128],
                    note=str(note)[:500] if note else None,
                )
            )
            pending.discard(review_id)
            out["decisions"] += 1
    return out


def _decisions_in(path: Path) -> list[tuple[int, object, object, object]]:
    """``(review_id, 核实结论, 核实人, 备注)`` of every filled-in row, the whole file read before any
    is used; raises whatever a broken file raises (opening it or reading its rows)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    found: list[tuple[int, object, object, object]] = []
    try:
        ws = wb["待核实"] if "待核实" in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None) or ()
        names = [norm_name(h) for h in header]
        try:
            i_id, i_dec = names.index("编号"), names.index("核实结论")
        except ValueError:
            return []
        i_by = names.index("核实人") if "核实人" in names else None
        i_note = names.index("备注") if "备注" in names else None
        for values in rows:
            if values is None or len(values) <= max(i_id, i_dec):
                continue
            try:
                review_id = int(str(values[i_id]).strip())
            except (TypeError, ValueError):
                continue
            if values[i_dec] in (None, ""):
                continue
            by = values[i_by] if i_by is not None and i_by < len(values) and values[i_by] else None
            note = values[i_note] if i_note is not None and i_note < len(values) else None
            found.append((review_id, values[i_dec], by, note))
    finally:
        wb.close()
    return found
