"""Proof of training (logistic regression): honest training proves; other lr, data or start fail."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zk_support import SMALL

from fedledger.core.errors import DataError
from fedledger.zk.data_quality import DataPolicy, dataset_root, fixed_point
from fedledger.zk.errors import InvalidProof, ProvingError
from fedledger.zk.training import (
    TrainSpec,
    prove_training,
    train,
    train_fixed_point,
    train_float,
    train_float_softmax,
    verify_training,
)
from fedledger.zk.update import ProofContext, commit_update

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

SPEC = TrainSpec(capacity=8, features=3, epochs=2, update=SMALL, feature_bits=12)
POLICY = DataPolicy(
    lo=(-512, -512, -512), hi=(511, 511, 511), allowed=(1, 1), min_rows=1, min_count=(0, 0), max_count=(8, 8)
)
LR = 128  # 0.5 in fixed point with 8 fractional bits
W0 = (10, -20, 5, 3)
CTX = ProofContext("task", 4, "member-7")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.6, (6, 3))
    y = (x @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64)
    return np.clip(fixed_point(x, 8), -512, 511), y


@pytest.fixture(scope="module")
def keys(backend):
    return backend.keys(SPEC.circuit)


def _commit(x: np.ndarray, seed: int = 1, noise: bool = False):
    """Proof of training binds the trained update with a zero noise share (the update circuit
    commits to y = x + e only)."""
    rng = np.random.default_rng(seed)
    e = rng.integers(-5, 5, len(x)) if noise else np.zeros(len(x), dtype=np.int64)
    return commit_update(SMALL, CTX, x, e, rng)


@pytest.mark.slow
def test_training_proof_and_its_failures(backend, keys) -> None:
    feats, labels = _data()
    w_e = train_fixed_point(SPEC, W0, feats, labels, LR)
    secret, posted = _commit(w_e - np.array(W0))
    root = dataset_root(SPEC.data, POLICY, feats, labels)
    proof = prove_training(backend, keys, SPEC, POLICY, W0, feats, labels, LR, secret, posted)
    verify_training(keys, SPEC, root, POLICY.lo, 6, LR, W0, posted, proof)
    noisy_secret, noisy_posted = _commit(w_e - np.array(W0), noise=True)
    with pytest.raises(DataError, match="zero noise share"):
        prove_training(backend, keys, SPEC, POLICY, W0, feats, labels, LR, noisy_secret, noisy_posted)

    # verifying the statement with another learning rate, data set, start model or row count
    with pytest.raises(InvalidProof):
        verify_training(keys, SPEC, root, POLICY.lo, 6, LR + 1, W0, posted, proof)
    other_feats, other_labels = _data(seed=5)
    other_root = dataset_root(SPEC.data, POLICY, other_feats, other_labels)
    with pytest.raises(InvalidProof):
        verify_training(keys, SPEC, other_root, POLICY.lo, 6, LR, W0, posted, proof)
    with pytest.raises(InvalidProof):
        verify_training(keys, SPEC, root, POLICY.lo, 6, LR, (0, 0, 0, 0), posted, proof)
    with pytest.raises(InvalidProof):
        verify_training(keys, SPEC, root, POLICY.lo, 5, LR, W0, posted, proof)

    # proving an update trained with another learning rate, or on other data, as if it were this one
    w_lr = train_fixed_point(SPEC, W0, feats, labels, 64)
    s2, p2 = _commit(w_lr - np.array(W0))
    with pytest.raises(ProvingError):
        prove_training(backend, keys, SPEC, POLICY, W0, feats, labels, LR, s2, p2)
    w_data = train_fixed_point(SPEC, W0, other_feats, other_labels, LR)
    s3, p3 = _commit(w_data - np.array(W0))
    with pytest.raises(ProvingError):
        prove_training(backend, keys, SPEC, POLICY, W0, feats, labels, LR, s3, p3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), lr=st.integers(16, 256))
def test_fixed_point_training_tracks_float(seed, lr) -> None:
    """The fixed-point reference stays close to float GD (hard-sigmoid approximation included)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (32, 3))
    y = (x @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64)
    spec = TrainSpec(capacity=32, features=3, epochs=3, update=SMALL, feature_bits=12)
    w_fp = train_fixed_point(spec, (0, 0, 0, 0), fixed_point(x, 8), y, lr) / 256.0
    w_fl = train_float(np.zeros(4), fixed_point(x, 8) / 256.0, y, lr / 256.0, 3)
    assert np.abs(w_fp - w_fl).max() < 0.05 + 0.02 * np.abs(w_fl).max()


SOFT = TrainSpec(capacity=8, features=2, epochs=2, update=SMALL, model="softmax", classes=3, feature_bits=12)
SOFT_POLICY = DataPolicy(
    lo=(-512, -512), hi=(511, 511), allowed=(1, 1, 1), min_rows=1, min_count=(0, 0, 0), max_count=(8, 8, 8)
)
SOFT_W0 = (5, -3, 1, 0, 4, -2, -5, 2, 1)


def _soft_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.7, (7, 2))
    y = np.argmax(x @ np.array([[1.0, -1.0, 0.2], [0.3, 0.8, -1.0]]), axis=1)
    return np.clip(fixed_point(x, 8), -512, 511), y.astype(np.int64)


@pytest.mark.slow
def test_softmax_training_proof_and_its_failures(backend) -> None:
    keys = backend.keys(SOFT.circuit)
    feats, labels = _soft_data()
    w_e = train(SOFT, SOFT_W0, feats, labels, LR)
    secret, posted = _commit(w_e - np.array(SOFT_W0))
    root = dataset_root(SOFT.data, SOFT_POLICY, feats, labels)
    proof = prove_training(backend, keys, SOFT, SOFT_POLICY, SOFT_W0, feats, labels, LR, secret, posted)
    verify_training(keys, SOFT, root, SOFT_POLICY.lo, 7, LR, SOFT_W0, posted, proof)
    with pytest.raises(InvalidProof):
        verify_training(keys, SOFT, root, SOFT_POLICY.lo, 7, LR - 1, SOFT_W0, posted, proof)
    w_other = train(SOFT, SOFT_W0, feats, labels, 200)
    s2, p2 = _commit(w_other - np.array(SOFT_W0))
    with pytest.raises(ProvingError):
        prove_training(backend, keys, SOFT, SOFT_POLICY, SOFT_W0, feats, labels, LR, s2, p2)
    other_labels = labels.copy()
    other_labels[0] = (other_labels[0] + 1) % 3  # the same rows with one label changed
    with pytest.raises(ProvingError):
        prove_training(backend, keys, SOFT, SOFT_POLICY, SOFT_W0, feats, other_labels, LR, secret, posted)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lr=st.integers(16, 256))
def test_fixed_point_softmax_tracks_float(seed, lr) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (32, 2))
    y = np.argmax(x @ np.array([[1.0, -1.0, 0.2], [0.3, 0.8, -1.0]]), axis=1)
    spec = TrainSpec(capacity=32, features=2, epochs=3, update=SMALL, model="softmax", classes=3, feature_bits=12)
    w_fp = train(spec, (0,) * 9, fixed_point(x, 8), y, lr) / 256.0
    w_fl = train_float_softmax(np.zeros(9), fixed_point(x, 8) / 256.0, y, lr / 256.0, 3, 3)
    assert np.abs(w_fp - w_fl).max() < 0.05 + 0.05 * np.abs(w_fl).max()
