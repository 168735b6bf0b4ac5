"""A pseudonymised copy of the warehouse for analysts (``rosterlink analytics-copy --to URL``).

What the copy holds: the public tables (``intake_file``, ``source_row``, ``rejected_row``,
``household``, ``household_category``, ``cadre``, ``petition_case``, ``pairing``) and the report
views that need nothing else (``current_pairing``, ``file_reconciliation``, ``dashboard_*``). It
holds no ``source_record`` (the per-row copies of the clerks' sheets), so the lineage view
``household_evidence`` is not in it; ``source_row`` still ties every entity to its file and row.

How each personal column is treated (:data:`RULES`):

- every ID number (household head, cadre, petitioner) becomes ``token(key, id)``: the HMAC-SHA256
  (hex, 64 characters) of the normalised 18-character ID under the secret key. The same ID gives the
  same token in every copy made with the same key, so analysts can join copies and count people,
  but nobody without the key can turn a token back into an ID (a plain hash could be reversed by
  trying every possible ID);
- phones are dropped (null);
- names of household heads, cadres and petitioners are masked to surname + 某 (张某): enough to
  read a table, not enough to find a person; the stable keys (``household_key`` ...) identify them;
- free text that may describe people (petition summary, work team, resolution plan, stabilisation
  measures), the masked cell value of rejected rows and the feedback file path are dropped; a
  rejected row's message is rewritten without the values it quoted (as :mod:`rosterlink.privacy.retention`
  does when it purges);
- everything else (keys, towns, villages, statuses, dates, ranks, units, ledger counts) is copied
  as it is, so ``file_reconciliation`` balances in the copy exactly as in the warehouse.

The key comes from the Airflow connection ``rosterlink_pseudonym`` (its password) when running
inside an Airflow task, else from the environment variable ``ROSTERLINK_PSEUDONYM_KEY``; without
one nothing is written (:class:`NoSecret`). The copy replaces the previous copy in the target (the
tables and views above and a ``pseudonym_copy`` marker table) in one transaction, and refuses a
target that holds a warehouse or tables it did not write.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

import sqlalchemy as sa

from rosterlink.core.masking import mask_text
from rosterlink.core.paths import SQL_DIR
from rosterlink.core.pseudonym import (
    KEY_CONN_ID,
    KEY_ENV,
    NoSecret,
    canonical_id,
    key_id,
    secret,
    token,
)
from rosterlink.core.settings import normalise_url
from rosterlink.warehouse import insert_many, now, schema

MARKER_TABLE = "pseudonym_copy"

TABLES = (
    "intake_file",
    "source_row",
    "rejected_row",
    "household",
    "household_category",
    "cadre",
    "petition_case",
    "pairing",
)

# table -> column -> rule; columns not listed are copied as they are
RULES: dict[str, dict[str, str]] = {
    "intake_file": {"message": "mask_text", "feedback_path": "drop"},
    "rejected_row": {"value": "drop", "message": "blank_message"},
    "household": {"head_id_number": "token", "head_name": "mask_name", "phone": "drop"},
    "cadre": {"id_number": "token", "name": "mask_name", "phone": "drop"},
    "petition_case": {
        "petitioner_id_number": "token",
        "petitioner_name": "mask_name",
        "summary": "drop",
        "work_team": "drop",
        "resolution_plan": "drop",
        "stabilisation_measures": "drop",
    },
}

# tables of a warehouse that an analytics copy never contains: a target holding one is refused
_WAREHOUSE_ONLY = ("alembic_version", "source_record", "staged_row", "night_run", "night_lock")


class CopyRefused(Exception):
    """The target is not a place an analytics copy may be written to."""


def mask_name(name: object) -> str | None:
    """``张三丰`` -> ``张某``."""
    if name is None:
        return None
    s = str(name).strip()
    return (s[0] + "某") if s else s


def _transforms(key: bytes) -> dict[str, Callable[[dict, str], object]]:
    from rosterlink.privacy.retention import blank_message

    return {
        "token": lambda row, col: token(key, row[col]),
        "drop": lambda row, col: None,
        "mask_name": lambda row, col: mask_name(row[col]),
        "mask_text": lambda row, col: mask_text(row[col]) if row[col] is not None else None,
        "blank_message": lambda row, col: blank_message(row.get("reason_code"), row.get("header")),
    }


def _target_metadata() -> sa.MetaData:
    md = sa.MetaData()
    for name in TABLES:
        table = schema.metadata.tables[name].to_metadata(md)
        for col, rule in RULES.get(name, {}).items():
            if rule == "token":
                table.c[col].type = sa.String(64)
    sa.Table(
        MARKER_TABLE,
        md,
        sa.Column("made_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("tables", sa.Text, nullable=False),  # JSON: table -> rows copied
        sa.Column("rules", sa.Text, nullable=False),  # JSON of RULES
    )
    return md


_REFERENCE = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)


def copy_views() -> list[tuple[str, str]]:
    """The report views (name, SQL) whose tables are all in the copy, in an order they can be created."""
    views = {
        p.stem: p.read_text(encoding="utf-8").strip().rstrip(";")
        for p in sorted((SQL_DIR / "views").glob("*.sql"))
    }
    known = set(schema.metadata.tables) | set(schema.views.tables) | set(views)
    available = set(TABLES)
    chosen: list[tuple[str, str]] = []
    progress = True
    while progress:
        progress = False
        for name, sql in views.items():
            if name in available:
                continue
            needs = {r.lower() for r in _REFERENCE.findall(sql)} & known
            if needs <= available:
                chosen.append((name, sql))
                available.add(name)
                progress = True
    return chosen


def _same_database(a: str, b: str) -> bool:
    ua, ub = sa.engine.make_url(normalise_url(a)), sa.engine.make_url(normalise_url(b))
    if ua.get_backend_name() == "sqlite" and ub.get_backend_name() == "sqlite":
        da, db = ua.database or "", ub.database or ""
        if da in ("", ":memory:") or db in ("", ":memory:"):
            return False
        return os.path.realpath(da) == os.path.realpath(db)
    return (ua.get_backend_name(), ua.host, ua.port, ua.database) == (
        ub.get_backend_name(),
        ub.host,
        ub.port,
        ub.database,
    )


def _check_target(target: sa.Engine) -> None:
    existing = set(sa.inspect(target).get_table_names())
    found = sorted(existing & set(_WAREHOUSE_ONLY))
    if found:
        raise CopyRefused(
            f"the target holds a rosterlink warehouse (tables {', '.join(found)}); "
            "an analytics copy never overwrites one"
        )
    ours = sorted(existing & set(TABLES))
    if ours and MARKER_TABLE not in existing:
        raise CopyRefused(
            f"the target already has tables {', '.join(ours)} that no analytics copy wrote; "
            "use an empty database"
        )


def copy(source_url: str, target_url: str, key: bytes, batch: int = 5000) -> dict[str, int]:
    """Write the pseudonymised copy of the warehouse at ``source_url`` into ``target_url``.

    Returns rows copied per table. Raises :class:`CopyRefused` for a target that is the warehouse
    itself, holds a warehouse, or holds tables no copy wrote."""
    from rosterlink import warehouse

    if _same_database(source_url, target_url):
        raise CopyRefused("the target is the warehouse itself")
    src = warehouse.connect(source_url)
    target = sa.create_engine(normalise_url(target_url))
    try:
        _check_target(target)
        md = _target_metadata()
        transforms = _transforms(key)
        views = copy_views()
        counts: dict[str, int] = {}
        with target.begin() as out, src.connect() as conn:
            chosen = [name for name, _ in views]
            for name in [
                *reversed(chosen),
                *sorted({p.stem for p in (SQL_DIR / "views").glob("*.sql")} - set(chosen)),
            ]:
                out.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            md.drop_all(out, checkfirst=True)
            md.create_all(out)
            for table in md.sorted_tables:
                if table.name == MARKER_TABLE:
                    continue
                source_table = schema.metadata.tables[table.name]
                rules = RULES.get(table.name, {})
                pk = list(source_table.primary_key.columns)
                result = conn.execution_options(yield_per=batch).execute(
                    sa.select(source_table).order_by(*pk)
                )

                def rows(result=result, rules=rules):
                    for record in result.mappings():
                        row = dict(record)
                        for col, rule in rules.items():
                            row[col] = transforms[rule](row, col)
                        yield row

                counts[table.name] = insert_many(out, table, rows(), batch=batch)
            for name, sql in views:
                out.exec_driver_sql(f"CREATE VIEW {name} AS\n{sql}")
            out.execute(
                md.tables[MARKER_TABLE]
                .insert()
                .values(
                    made_at=now(),
                    key_id=key_id(key),
                    tables=json.dumps(counts, sort_keys=True),
                    rules=json.dumps(RULES, sort_keys=True),
                )
            )
    finally:
        target.dispose()
    return counts


__all__ = [
    "KEY_CONN_ID",
    "KEY_ENV",
    "RULES",
    "TABLES",
    "CopyRefused",
    "NoSecret",
    "canonical_id",
    "copy",
    "copy_views",
    "key_id",
    "mask_name",
    "secret",
    "token",
]
