"""Alembic environment: migrations run against the connection the pipeline hands over."""

from __future__ import annotations

from alembic import context

from rosterlink.warehouse.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # command line use: `alembic -x url=sqlite:///... upgrade head`
    import sqlalchemy as sa

    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    connection = sa.create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
