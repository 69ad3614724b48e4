"""The lease store contract over the in-memory store (the same tests run against the database in
tests/integration/test_lease_store_contract.py)."""

from __future__ import annotations

import pytest

from chatcore.leases import LeaseStore, MemoryLeaseStore
from tests.unit.lease_store_contract import LeaseStoreContract


class TestMemoryLeaseStore(LeaseStoreContract):
    @pytest.fixture
    def lease_store(self) -> LeaseStore:
        """A fresh in-memory store per test."""
        return MemoryLeaseStore()
