"""indexes for the night's lookups at province scale

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the warehouse-at-scale work (issue 7)


def downgrade() -> None:
    pass
