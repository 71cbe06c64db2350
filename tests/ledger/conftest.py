"""Fixtures for the ledger tests: a real anvil per test module, a small federation on it.

`fed` is built once per module (deploy, register, stake, create a task) and every test runs
between an `evm_snapshot` and an `evm_revert`, so tests stay independent and fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger_fed import TEST_PARAMS, Fed, build_fed

from fedledger.ledger import Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import AnvilBackend, Backend, MemoryBackend


@pytest.fixture(scope="module")
def anvil_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (make node)")
    backend = AnvilBackend(tmp_path_factory.mktemp("anvil-run"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def module_fed(anvil_backend: Backend) -> Iterator[Fed]:
    ledger = Ledger.attach(anvil_backend, params=TEST_PARAMS)
    yield build_fed(ledger)
    ledger.close()


@pytest.fixture
def fed(module_fed: Fed) -> Iterator[Fed]:
    snap = module_fed.ledger.snapshot()
    yield module_fed
    module_fed.ledger.revert(snap)


@pytest.fixture(scope="module")
def memory_ledger() -> Iterator[Ledger]:
    ledger = Ledger.attach(MemoryBackend(), params=TEST_PARAMS, owns_backend=True)
    yield ledger
    ledger.close()
