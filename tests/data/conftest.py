from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private parse cache, so tests never depend on (or disturb) ~/.cache/fedledger."""
    return tmp_path_factory.mktemp("fedledger-data-cache")
