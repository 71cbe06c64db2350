"""Fixtures for the node tests: a real anvil with the contracts, and a `Net` of member nodes on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_net import Net

from fedledger.ledger import DeployParams, Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import AnvilBackend


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (make node)")
    backend = AnvilBackend(tmp_path_factory.mktemp("anvil-node"))
    ledger = Ledger.attach(backend, params=DeployParams())
    yield ledger
    ledger.close()
    backend.close()


@pytest.fixture
def net(chain: Ledger, tmp_path: Path) -> Iterator[Net]:
    n = Net(chain, tmp_path)
    yield n
    for t in n.nodes:
        t.stop(0)
