"""GIN indexes that let PostgreSQL answer FerretDB's equality filters (local stack only).

FerretDB 1.24 pushes an equality filter down to PostgreSQL as ``_jsonb -> 'field' @> value``
(containment, so that an array field matches one of its elements, as MongoDB's equality does).
PostgreSQL cannot answer ``@>`` from the btree indexes FerretDB creates for our index specs, so
every lookup, by ``_id`` included, is a sequential scan of the whole collection: 90 ms for one
message by ``_id`` at 110,000 messages, growing with the collection (docs/decisions.md).

A GIN index (``jsonb_path_ops``) on the same expression answers ``@>``. The stack keeps, in
PostgreSQL, the list of (collection, field) pairs that our index specs name and an event trigger
that gives every table FerretDB creates for such a collection a GIN index per field, at creation
(still empty, so it costs nothing); tables that already exist get theirs at start-up. Array fields
(``teams.members``), whose btree FerretDB cannot build (``IndexSpec.multikey``), get one too, so
membership lookups stop scanning ``teams``. PostgreSQL runs with ``plan_cache_mode =
force_custom_plan``: FerretDB passes the field name as a bind parameter, and only a custom plan
sees the constant the index expression needs.

MongoDB needs none of this: production uses the index specs as they are.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from chatcore.mongo import INDEXES, IndexSpec
from services.auth.store import AUTH_INDEXES
from services.management.attachment_store import ATTACHMENT_INDEXES
from services.management.membership_index import MEMBERSHIP_INDEXES
from services.management.store import MANAGEMENT_INDEXES

# Every index spec any service creates.
ALL_INDEXES: tuple[IndexSpec, ...] = (
    *INDEXES,
    *AUTH_INDEXES,
    *MANAGEMENT_INDEXES,
    *ATTACHMENT_INDEXES,
    *MEMBERSHIP_INDEXES,
)

# Our objects live in their own schema; FerretDB only treats schemas holding its metadata table
# as databases.
SCHEMA = "chatstack_pg"

_SETUP = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.gin_fields (
    collection text NOT NULL,
    field text NOT NULL,
    PRIMARY KEY (collection, field)
);

-- FerretDB names a collection's table <collection>_<8 hex of a hash>.
CREATE OR REPLACE FUNCTION {SCHEMA}.add_gin(table_oid oid) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    schema_name text;
    table_name text;
    coll text;
    f record;
BEGIN
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid AND c.relkind = 'r';
    IF table_name IS NULL OR to_regclass(
        format('%I._ferretdb_database_metadata', schema_name)) IS NULL THEN
        RETURN;
    END IF;
    coll := substring(table_name FROM '^(.+)_[0-9a-f]{{8}}$');
    IF coll IS NULL THEN
        RETURN;
    END IF;
    FOR f IN SELECT field FROM {SCHEMA}.gin_fields WHERE collection = coll LOOP
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((_jsonb -> %L) jsonb_path_ops)',
            left(table_name, 40) || '_' || left(md5(f.field), 8) || '_gin',
            schema_name, table_name, f.field);
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION {SCHEMA}.on_create_table() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands()
              WHERE command_tag = 'CREATE TABLE' LOOP
        PERFORM {SCHEMA}.add_gin(r.objid);
    END LOOP;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS chatstack_gin_twins;
CREATE EVENT TRIGGER chatstack_gin_twins ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION {SCHEMA}.on_create_table();
"""

_BACKFILL = f"""
SELECT {SCHEMA}.add_gin(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relname <> '_ferretdb_database_metadata'
   AND to_regclass(format('%I._ferretdb_database_metadata', n.nspname)) IS NOT NULL;
"""


def gin_fields(specs: Iterable[IndexSpec] = ALL_INDEXES) -> list[tuple[str, str]]:
    """Every (collection, field) an index spec names, in a stable order."""
    return sorted({(spec.collection, field) for spec in specs for field, _ in spec.keys})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def setup_sql(fields: Sequence[tuple[str, str]]) -> str:
    """The whole script: schema, trigger, the field list (replaced), then the backfill."""
    rows = ", ".join(f"({_literal(c)}, {_literal(f)})" for c, f in fields)
    refill = f"DELETE FROM {SCHEMA}.gin_fields;\n"
    if rows:
        refill += f"INSERT INTO {SCHEMA}.gin_fields (collection, field) VALUES {rows};\n"
    return _SETUP + refill + _BACKFILL


def install(psql: Path, port: int, fields: Sequence[tuple[str, str]] | None = None) -> None:
    """Run the script against the stack's PostgreSQL; ``RuntimeError`` names what failed."""
    script = setup_sql(gin_fields() if fields is None else fields)
    result = subprocess.run(
        [
            *(str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1"),
            *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-f", "-"),
        ],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"GIN index setup failed: {result.stderr.strip()[-2000:]}")
