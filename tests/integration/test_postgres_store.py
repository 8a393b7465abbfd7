"""The store contract, run against the built-in Postgres store."""

import pytest

from jobkit.testing.store_contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, jobkit_runtime):
        return jobkit_runtime.store
