"""FerretDB's equality lookups are answered from the stack's GIN indexes, not by scans."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase

from chatcore.mongo import INDEXES, Document, ensure_indexes


def _psql(port: int, sql: str) -> str:
    psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    return subprocess.run(
        [str(psql), "-X", "-tA", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def test_a_new_collection_gets_gin_indexes_and_lookups_use_them(
    scratch_db: AsyncDatabase[Document], stack_env: dict[str, str]
) -> None:
    """A database created after start-up has a GIN index per indexed field, and PostgreSQL
    answers FerretDB's pushed-down equality on ``bucket`` from it instead of a scan."""
    port = int(stack_env.get("CHATSTACK_POSTGRES_PORT", "5433"))
    name = scratch_db.name
    await ensure_indexes(scratch_db, INDEXES)
    await scratch_db["messages"].insert_many(
        [{"id": str(i), "bucket": f"c/{i % 50}", "seq": i} for i in range(2000)]
    )
    table = _psql(
        port,
        f"select tablename from pg_tables where schemaname = '{name}'"
        " and tablename like 'messages_%'",
    ).strip()
    indexes = _psql(port, f"select indexdef from pg_indexes where tablename = '{table}'")
    for field in ("id", "bucket", "seq", "channel_id"):
        assert f"USING gin (((_jsonb -> '{field}'::text)) jsonb_path_ops)" in indexes
    _psql(port, f'analyze "{name}"."{table}"')
    plan = _psql(
        port,
        f'explain select _jsonb from "{name}"."{table}" where _jsonb -> \'bucket\' @> \'"c/7"\'',
    )
    assert "Index Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert _psql(port, "show plan_cache_mode").strip() == "force_custom_plan"
