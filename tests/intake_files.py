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
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from openpyxl import Workbook

from rosterlink import tasks, warehouse
from rosterlink.core import settings as settings_mod
from rosterlink.core.settings import Settings
from rosterlink.core.spec import catalogue
from rosterlink.warehouse import schema


def write_xlsx(
    path: Path,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    fixed_times: bool = False,
) -> Path:
    """A one-sheet .xlsx: a title row, the header row, the rows (ID numbers as text cells).
    ``fixed_times``: the same rows give the same bytes whenever written (:func:`_fix_times`)."""
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
    if fixed_times:
        _fix_times(path)
    return path


def _fix_times(path: Path) -> None:
    """openpyxl stamps the time of saving into ``docProps/core.xml`` and into every zip entry, so
    two copies of one roster written a second apart now and then differ in size (the stamp
    compresses differently): one fixed time instead."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                stamp = rb"\g<1>2026-01-01T00:00:00Z"
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", stamp, data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            z.writestr(fixed, data)


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
