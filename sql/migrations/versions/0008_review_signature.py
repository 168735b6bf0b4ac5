"""the review queue's conflicts carry their signature in a column, indexed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00

- ``link_review.signature``: for a rule's conflict (one ID number under two names, one name and
  village under two ID numbers), a digest of what makes it the same conflict on another night
  (until now only inside the ``evidence`` JSON, so the link stage read every review ever queued,
  evidence and all, to queue none twice). Indexed: a night looks up tonight's signatures only.
  Filled here for the reviews already queued, from their evidence, the way the link stage makes it
  (``rosterlink.link.review.signature_digest``: SHA-256 of the signature's compact JSON, 32 hex
  characters), 5,000 reviews at a time.
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BATCH = 5000


def _digest(signature: list) -> str:
    """As ``rosterlink.link.review.signature_digest`` (kept here: a migration does not change with
    the code)."""
    text = json.dumps(list(signature), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def upgrade() -> None:
    with op.batch_alter_table("link_review", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_link_review_signature"), ["signature"], unique=False)
    conn = op.get_bind()
    lr = sa.table(
        "link_review",
        sa.column("review_id", sa.Integer),
        sa.column("evidence", sa.Text),
        sa.column("signature", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(lr.c.review_id, lr.c.evidence)
            .where(lr.c.review_id > last, lr.c.evidence.like('%"signature"%'))
            .order_by(lr.c.review_id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].review_id
        filled = []
        for review_id, evidence in rows:
            try:
                signature = json.loads(evidence).get("signature")
            except (ValueError, AttributeError):
                continue
            if isinstance(signature, list) and signature:
                filled.append({"_id": review_id, "_sig": _digest(signature)})
        if filled:
            conn.execute(
                lr.update()
                .where(lr.c.review_id == sa.bindparam("_id"))
                .values(signature=sa.bindparam("_sig")),
                filled,
            )


def downgrade() -> None:
    with op.batch_alter_table("link_review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_review_signature"))
        batch_op.drop_column("signature")
