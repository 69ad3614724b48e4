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

The same event trigger gives the tables of ``chatcore.fencing.GUARDED_COLLECTIONS`` a row trigger
that makes FerretDB's read-then-write update a compare-and-set: a write whose ``rev`` is not the
stored one plus one was computed from a stale read, and a write whose ``fence`` goes backwards
comes from a lease holder that was fenced off; both are refused (docs/decisions.md, "Leases").

MongoDB needs none of this: production uses the index specs as they are, and applies a filtered
update atomically.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from chatcore import schema as s
from chatcore.fencing import GUARD_MARK, GUARDED_COLLECTIONS
from chatcore.lease_store import LEASE_INDEXES
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
    *LEASE_INDEXES,
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
CREATE TABLE IF NOT EXISTS {SCHEMA}.guarded (collection text PRIMARY KEY);

-- A guarded document's update must be the stored revision plus one (else it was computed from a
-- stale read) and must not lower its fence (else it comes from a fenced-off lease holder).
CREATE OR REPLACE FUNCTION {SCHEMA}.guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF (OLD._jsonb ? 'rev') AND (NEW._jsonb -> 'rev') IS DISTINCT FROM
            to_jsonb((OLD._jsonb ->> 'rev')::bigint + 1) THEN
        RAISE EXCEPTION '{GUARD_MARK}: stale write' USING ERRCODE = 'serialization_failure';
    END IF;
    IF (OLD._jsonb ? 'fence') AND ((NEW._jsonb ->> 'fence') IS NULL
            OR (NEW._jsonb ->> 'fence')::numeric < (OLD._jsonb ->> 'fence')::numeric) THEN
        RAISE EXCEPTION '{GUARD_MARK}: fenced write' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END
$fn$;

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
    IF EXISTS (SELECT 1 FROM {SCHEMA}.guarded WHERE collection = coll) THEN
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER chatstack_guard BEFORE UPDATE ON %I.%I '
            'FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.guard()',
            schema_name, table_name);
    END IF;
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


# Every collection is read or written by `_id` somewhere (a team, a channel's head, a read
# state, a membership, a lease...), and each such update is a read of the whole table first:
# a DM's two read states cost a sequential scan of `reads` each without this.
ID_LOOKUPS: tuple[str, ...] = (
    s.TEAMS,
    s.MESSAGES,
    s.ATTACHMENTS,
    s.USERS,
    s.CHANNELS,
    s.MEMBERSHIPS,
    s.REFRESH_TOKENS,
    s.ENDED_SESSIONS,
    s.LEASES,
    s.CHANGES,
    s.READS,
    s.PRESENCE,
)


def gin_fields(
    specs: Iterable[IndexSpec] = ALL_INDEXES, by_id: Iterable[str] = ID_LOOKUPS
) -> list[tuple[str, str]]:
    """Every (collection, field) an index spec names, and ``_id`` of ``by_id``, in a stable
    order."""
    fields = {(spec.collection, field) for spec in specs for field, _ in spec.keys}
    return sorted(fields | {(collection, "_id") for collection in by_id})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def setup_sql(fields: Sequence[tuple[str, str]]) -> str:
    """The whole script: schema, trigger, the field list (replaced), then the backfill."""
    rows = ", ".join(f"({_literal(c)}, {_literal(f)})" for c, f in fields)
    refill = f"DELETE FROM {SCHEMA}.gin_fields;\nDELETE FROM {SCHEMA}.guarded;\n"
    if rows:
        refill += f"INSERT INTO {SCHEMA}.gin_fields (collection, field) VALUES {rows};\n"
    guarded = ", ".join(f"({_literal(c)})" for c in GUARDED_COLLECTIONS)
    refill += f"INSERT INTO {SCHEMA}.guarded (collection) VALUES {guarded};\n"
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
