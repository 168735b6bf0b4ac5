"""The warehouse: schema (:mod:`.schema`), connection and migrations (:mod:`.db`), bulk I/O
(:mod:`.bulk`), the staging table (:mod:`.staging`) and the load stage (:mod:`.load`).

The names below are the warehouse's public surface, used by every stage as ``warehouse.connect``,
``warehouse.insert_many`` and so on.
"""

from rosterlink.warehouse.bulk import (
    IN_LIST,
    batched,
    insert_many,
    insert_rows,
    run_sql,
    sql_statements,
    update_many,
)
from rosterlink.warehouse.db import (
    analyze,
    changes_of,
    connect,
    create_views,
    display_url,
    dumps,
    engine,
    generation,
    loads,
    migrate,
    now,
    record_change,
)

__all__ = [
    "IN_LIST",
    "analyze",
    "batched",
    "changes_of",
    "connect",
    "create_views",
    "display_url",
    "dumps",
    "engine",
    "generation",
    "insert_many",
    "insert_rows",
    "loads",
    "migrate",
    "now",
    "record_change",
    "run_sql",
    "sql_statements",
    "update_many",
]
