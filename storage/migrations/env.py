"""Alembic environment: runs on the connection `storage.migrate` hands over."""

from __future__ import annotations

from typing import Any

from alembic import context

from storage.models import Base, UTCDateTime


def render_item(kind: str, item: Any, _context: Any) -> str | bool:
    # Migrations spell out plain SQL types, so a later change of the Python-side type
    # decorator never rewrites history.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
