"""Shared fixtures for the zk tests: small circuits, keys cached across runs under .cache/."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from zk_support import SMALL

from fedledger.zk.backend import DevelopmentSetupWarning, Groth16Backend
from fedledger.zk.update import UpdateProver

ROOT = Path(__file__).resolve().parents[2]


def _cache_dir() -> Path:
    base = os.environ.get("FEDLEDGER_CACHE")
    return (Path(base) if base else ROOT / ".cache" / "fedledger") / "zk"


@pytest.fixture(scope="session")
def backend() -> Groth16Backend:
    return Groth16Backend(_cache_dir())


@pytest.fixture(scope="session")
def small_prover(backend: Groth16Backend) -> UpdateProver:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        prover = UpdateProver(SMALL, backend)
    yield prover
    prover.close()


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(20260601)
