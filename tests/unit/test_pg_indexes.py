"""The local stack's GIN index setup for FerretDB: which fields it covers and the script it runs."""

from __future__ import annotations

import importlib
import pkgutil

import chatcore
import services
from chatcore import schema
from chatcore.fencing import GUARDED_COLLECTIONS
from chatcore.mongo import IndexSpec
from deploy.local.pg_indexes import ALL_INDEXES, ID_LOOKUPS, SCHEMA, gin_fields, setup_sql


def _declared_specs() -> set[IndexSpec]:
    # Every module-level tuple of IndexSpec in the shared package and the services.
    found: set[IndexSpec] = set()
    for package in (chatcore, services):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".proto" in info.name or info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, tuple) and value and isinstance(value[0], IndexSpec):
                    found.update(value)
    return found


def test_every_declared_index_spec_is_covered() -> None:
    """A new index spec anywhere in the code gets its GIN indexes without touching the stack."""
    declared = _declared_specs()
    assert declared, "no index specs found: the scan is broken"
    assert declared <= set(ALL_INDEXES)


def test_fields_are_each_key_of_each_spec_once() -> None:
    """Compound keys give one field each; array fields (multikey) are included."""
    specs = [
        IndexSpec("messages", (("bucket", 1), ("seq", 1))),
        IndexSpec("messages", (("seq", 1),)),
        IndexSpec("teams", (("members", 1),), multikey=True),
    ]
    assert gin_fields(specs, ()) == [
        ("messages", "bucket"),
        ("messages", "seq"),
        ("teams", "members"),
    ]
    assert ("teams", "members") in gin_fields()


def test_every_collection_is_looked_up_by_id_through_an_index() -> None:
    """Every collection with an index spec, and those read only by ``_id`` (channel heads,
    read states, last seen), gets a GIN index on ``_id``: updates read their document by it."""
    indexed = {spec.collection for spec in ALL_INDEXES}
    assert indexed | {schema.CHANNELS, schema.READS, schema.PRESENCE} <= set(ID_LOOKUPS)
    assert {(c, "_id") for c in ID_LOOKUPS} <= set(gin_fields())


def test_script_replaces_the_field_list_and_quotes_values() -> None:
    """The list is replaced on every start, values are SQL literals, and a backfill follows."""
    script = setup_sql([("odd'name", "f")])
    assert f"DELETE FROM {SCHEMA}.gin_fields;" in script
    assert "('odd''name', 'f')" in script
    assert (
        script.index("DELETE FROM") < script.index("INSERT INTO") < script.index("add_gin(c.oid)")
    )
    assert f"INSERT INTO {SCHEMA}.gin_fields" not in setup_sql([])


def test_script_guards_exactly_the_fenced_collections() -> None:
    """Every guarded collection is listed for the stale-write trigger, and nothing else."""
    script = setup_sql([])
    listed = ", ".join(f"('{c}')" for c in GUARDED_COLLECTIONS)
    assert f"INSERT INTO {SCHEMA}.guarded (collection) VALUES {listed};" in script
    assert f"DELETE FROM {SCHEMA}.guarded;" in script
    assert "BEFORE UPDATE" in script
