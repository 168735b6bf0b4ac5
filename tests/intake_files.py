"""Real intake files, written as an office writes them, and the night's stages run over them.

For tests that need a file to go through the real read -> validate -> load path (the functions the
nightly DAG calls) without a whole night: :func:`write_xlsx` writes a roster with a title row,
:func:`intake` makes the folders, :func:`run_stages` scans nothing but puts one file through the
stages as the DAG's mapped tasks do, leaving the staged rows where a night leaves them until its
last task.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from openpyxl import Workbook

from rosterlink import tasks, warehouse
from rosterlink.core import settings as settings_mod
from rosterlink.core.settings import Settings
from rosterlink.core.spec import catalogue
from rosterlink.warehouse import schema


def write_xlsx(path: Path, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """A one-sheet .xlsx: a title row, the header row, the rows (ID numbers as text cells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append([title])
    ws.append(list(headers))
    for row in rows:
        ws.append(list(row))
    for row in ws.iter_rows(min_row=3):
        for cell in row:
            if isinstance(cell.value, str):
                cell.number_format = "@"
    wb.save(path)
    return path


def intake(root: Path, url: str) -> Settings:
    cfg = settings_mod.load(intake_dir=root / "intake", export_dir=root / "exports", warehouse_url=url)
    for department in catalogue().departments:
        (cfg.intake_dir / department).mkdir(parents=True, exist_ok=True)
    return cfg


def run_stages(cfg: Settings, department: str, path: Path, as_of: dt.date | None = None) -> int:
    """read -> validate -> load for one file with the night's ``as_of`` (no closing clear of the
    staging table: what a night that stops after loading leaves). Returns the file id."""
    rel = path.relative_to(cfg.intake_dir).as_posix()
    eng = warehouse.connect(cfg.warehouse_url)
    with eng.begin() as conn:
        file_id = conn.execute(
            schema.intake_file.insert().values(
                department=department,
                file_name=rel,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),  # as the scan records it
                size_bytes=path.stat().st_size,
                status="pending",
                received_at=warehouse.now(),
                run_id="stages",
            )
        ).inserted_primary_key[0]
    item = {"file_id": file_id, "department": department, "file_name": rel}
    tasks.load(cfg, [tasks.read_and_validate_file(cfg, item, as_of)])  # the DAG's task per file
    return int(file_id)


def ledger(cfg: Settings, file_id: int) -> dict:
    with warehouse.connect(cfg.warehouse_url).connect() as conn:
        f = schema.intake_file
        return conn.execute(sa.select(f).where(f.c.file_id == file_id)).one()._asdict()


def rows(cfg: Settings, table: sa.Table, file_id: int) -> list[dict]:
    with warehouse.connect(cfg.warehouse_url).connect() as conn:
        return [r._asdict() for r in conn.execute(sa.select(table).where(table.c.file_id == file_id))]
