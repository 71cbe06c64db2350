"""Data-quality proof: honest data sets prove; each broken requirement fails to prove or verify."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from fedledger.zk.backend import DevelopmentSetupWarning
from fedledger.zk.data_quality import (
    DataPolicy,
    DataQualityProof,
    DataSpec,
    PoseidonTree,
    SpotSpec,
    dataset_root,
    fixed_point,
    prove_data_quality,
    prove_spot_check,
    row_leaves,
    spot_check_detection,
    spot_check_indices,
    verify_data_quality,
    verify_spot_check,
)
from fedledger.zk.errors import InvalidProof, ProvingError
from fedledger.zk.poseidon import poseidon

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

SPEC = DataSpec(capacity=16, features=3, classes=3, feature_bits=12)
POLICY = DataPolicy(
    lo=(-100, -100, 0), hi=(100, 100, 50), allowed=(1, 1, 0), min_rows=8, min_count=(2, 2, 0), max_count=(9, 10, 0)
)


@pytest.fixture(scope="module")
def keys(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        return backend.keys(SPEC.circuit)


def _data(n: int = 12, class0: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    feats = np.column_stack([rng.integers(-100, 101, n), rng.integers(-100, 101, n), rng.integers(0, 51, n)])
    labels = np.array([0] * class0 + [1] * (n - class0))
    return feats, labels


def test_honest_data_set_proves_and_verifies(backend, keys) -> None:
    feats, labels = _data()
    proof = prove_data_quality(backend, keys, SPEC, POLICY, feats, labels)
    assert proof.root == dataset_root(SPEC, POLICY, feats, labels)
    verify_data_quality(keys, SPEC, POLICY, proof)


@pytest.mark.parametrize(
    "breakage",
    [
        "label-outside-set",
        "feature-over-range",
        "feature-under-range",
        "too-few-rows",
        "histogram-over-bound",
        "histogram-under-bound",
    ],
)
def test_each_broken_requirement_fails_to_prove(backend, keys, breakage) -> None:
    feats, labels = _data()
    if breakage == "label-outside-set":
        labels[3] = 2
    elif breakage == "feature-over-range":
        feats[5, 1] = 101
    elif breakage == "feature-under-range":
        feats[0, 2] = -1
    elif breakage == "too-few-rows":
        feats, labels = _data(n=7, class0=4)
    elif breakage == "histogram-over-bound":
        feats, labels = _data(n=12, class0=10)
    else:
        feats, labels = _data(n=12, class0=11)  # class 1 has 1 < 2 rows
    with pytest.raises(ProvingError):
        prove_data_quality(backend, keys, SPEC, POLICY, feats, labels)


def test_proof_is_bound_to_root_and_policy(backend, keys) -> None:
    feats, labels = _data()
    proof = prove_data_quality(backend, keys, SPEC, POLICY, feats, labels)
    other_root = dataset_root(SPEC, POLICY, feats[::-1].copy(), labels[::-1].copy())
    with pytest.raises(InvalidProof):
        verify_data_quality(keys, SPEC, POLICY, DataQualityProof(other_root, proof.proof))
    stricter = dataclasses.replace(POLICY, min_rows=13)
    with pytest.raises(InvalidProof):
        verify_data_quality(keys, SPEC, stricter, proof)


def test_spot_check_is_deterministic_and_detection_probability() -> None:
    a = spot_check_indices(b"seed", 123, 10_000, 50)
    assert a == spot_check_indices(b"seed", 123, 10_000, 50)
    assert a != spot_check_indices(b"seed", 124, 10_000, 50)
    assert len(set(a)) == 50 and all(0 <= i < 10_000 for i in a)
    assert spot_check_detection(0.05, 90) > 0.99
    assert abs(spot_check_detection(0.01, 1) - 0.01) < 1e-12


def test_fixed_point_rounds_to_nearest() -> None:
    assert fixed_point(np.array([0.5, -0.25, 1.0 / 3]), 8).tolist() == [128, -64, 85]


SPOT = SpotSpec(k=4, depth=7, features=3, classes=3, feature_bits=12)


def _big(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    feats = np.column_stack([rng.integers(-100, 101, n), rng.integers(-100, 101, n), rng.integers(0, 51, n)])
    return feats, rng.integers(0, 2, n)


def test_poseidon_tree_matches_padded_root_and_paths() -> None:
    feats, labels = _data()
    leaves = row_leaves(SPEC, POLICY, feats, labels)
    tree = PoseidonTree(leaves, SPEC.depth)
    assert tree.root == dataset_root(SPEC, POLICY, feats, labels)
    for i in (0, 5, 11):
        node = leaves[i]
        for d, sib in enumerate(tree.path(i)):
            node = poseidon([node, sib]) if not (i >> d) & 1 else poseidon([sib, node])
        assert node == tree.root


@pytest.mark.slow
def test_spot_check_opens_seeded_rows_and_catches_a_bad_one(backend) -> None:
    keys = backend.keys(SPOT.circuit)
    feats, labels = _big()
    proof = prove_spot_check(backend, keys, SPOT, POLICY, feats, labels, b"seed-1")
    verify_spot_check(keys, SPOT, POLICY, b"seed-1", proof)
    with pytest.raises(InvalidProof):  # rows chosen by another seed were not opened
        verify_spot_check(keys, SPOT, POLICY, b"seed-2", proof)
    with pytest.raises(InvalidProof):
        verify_spot_check(keys, SPOT, POLICY, b"seed-1", dataclasses.replace(proof, n_rows=90))

    bad_feats, bad_labels = feats.copy(), labels.copy()
    bad_labels[37] = 2  # a label outside the set
    root = PoseidonTree(row_leaves(SPOT.data, POLICY, bad_feats, bad_labels), SPOT.depth).root
    seed = next(s for s in (f"s{i}".encode() for i in range(10_000)) if 37 in spot_check_indices(s, root, 100, 4))
    with pytest.raises(ProvingError):
        prove_spot_check(backend, keys, SPOT, POLICY, bad_feats, bad_labels, seed)
