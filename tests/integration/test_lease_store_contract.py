"""The lease store contract over the database (tests/unit runs it over the in-memory store)."""

from __future__ import annotations

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore.lease_store import LEASE_INDEXES, MongoLeaseStore
from chatcore.leases import LeaseStore
from chatcore.mongo import Document, ensure_indexes
from tests.unit.lease_store_contract import LeaseStoreContract


class TestMongoLeaseStore(LeaseStoreContract):
    @pytest.fixture
    async def lease_store(self, scratch_db: AsyncDatabase[Document]) -> LeaseStore:
        """The MongoDB store on a scratch database."""
        await ensure_indexes(scratch_db, LEASE_INDEXES)
        return MongoLeaseStore(scratch_db)
