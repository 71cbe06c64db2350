"""Fixtures of the red-team tests: the ledger tests' anvil federation (`tests/ledger/ledger_fed.py`), rebuilt here
(a conftest's fixtures are only visible below its directory)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ledger"))

from ledger_fed import TEST_PARAMS, Fed, build_fed

from fedledger.ledger import Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import AnvilBackend, Backend


@pytest.fixture(scope="module")
def anvil_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (make node)")
    backend = AnvilBackend(tmp_path_factory.mktemp("anvil-redteam"))
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
