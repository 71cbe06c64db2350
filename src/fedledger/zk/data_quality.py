"""Data-quality proof: a member's committed data set meets the task's declared requirements.

On joining a task a member commits to its data set as the Poseidon Merkle root of its rows in
fixed point (features shifted by the task's declared lower bounds and packed, then the label),
and proves in zero knowledge: at least `min_rows` rows, every label in the task's label set,
every feature within its declared range, and a class histogram within the declared bounds.
The same root is what the proof of training opens (`training.py`).

A circuit proves up to `capacity` rows (a power of two); a smaller data set is padded with
inactive rows whose leaves are 0. A data set larger than the capacity is not proved whole:
`prove_spot_check` opens k rows drawn by `spot_check_indices` from a public seed (drawn after
the commitment) with Merkle paths inside the proof; a fraction q of bad rows is detected with
probability 1 - (1 - q)^k (`spot_check_detection`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.core.errors import ConfigError, DataError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.zk.backend import Circuit, Groth16Backend, KeySet
from fedledger.zk.errors import InvalidProof
from fedledger.zk.field import P, hash_to_field
from fedledger.zk.poseidon import poseidon

TAG_ROW = hash_to_field("data/row-leaf")


@dataclass(frozen=True)
class DataSpec:
    """Circuit shape: row capacity (power of two), features, classes, bits per shifted feature."""

    capacity: int
    features: int
    classes: int
    feature_bits: int = 16

    def __post_init__(self) -> None:
        if self.capacity < 2 or self.capacity & (self.capacity - 1):
            raise ConfigError(f"capacity must be a power of two >= 2, got {self.capacity}")
        if not 1 <= self.features <= 14 * (253 // self.feature_bits):
            raise ConfigError(f"unsupported number of features: {self.features}")
        if not 2 <= self.classes <= 64:
            raise ConfigError(f"classes must be in 2..64, got {self.classes}")
        if not 2 <= self.feature_bits <= 32:
            raise ConfigError(f"feature_bits must be in 2..32, got {self.feature_bits}")

    @property
    def depth(self) -> int:
        return self.capacity.bit_length() - 1

    @property
    def circuit(self) -> Circuit:
        f, c = self.features, self.classes
        return Circuit(
            name=f"data_r{self.capacity}_f{f}_c{c}_b{self.feature_bits}",
            source="data_quality.circom",
            template="DataQuality",
            args=(self.capacity, self.depth, f, c, self.feature_bits, TAG_ROW),
            public=("root", "lo", "hi", "allowed", "minRows", "minCount", "maxCount"),
        )


@dataclass(frozen=True)
class DataPolicy:
    """The task's declared requirements, in the same fixed point as the rows."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    allowed: tuple[int, ...]  # 1 if class c is in the label set
    min_rows: int
    min_count: tuple[int, ...]
    max_count: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "allowed", "min_count", "max_count"):  # plain ints, also from numpy
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "min_rows", int(self.min_rows))

    def check_against(self, spec: DataSpec) -> None:
        if len(self.lo) != spec.features or len(self.hi) != spec.features:
            raise ConfigError("declared ranges must have one entry per feature")
        per_class = (self.allowed, self.min_count, self.max_count)
        if any(len(v) != spec.classes for v in per_class):
            raise ConfigError("label set and histogram bounds must have one entry per class")
        if any(h < lo or h - lo >= 2**spec.feature_bits for lo, h in zip(self.lo, self.hi, strict=True)):
            raise ConfigError(f"every declared range must be non-empty and narrower than 2^{spec.feature_bits}")
        if any(a not in (0, 1) for a in self.allowed):
            raise ConfigError("allowed must be 0/1 flags")
        if any(not 0 <= v < 2**20 for v in (self.min_rows, *self.min_count, *self.max_count)):
            raise ConfigError("row and class counts must be below 2^20")

    def public_inputs(self, root: int) -> list[int]:
        vals = [root, *self.lo, *self.hi, *self.allowed, self.min_rows, *self.min_count, *self.max_count]
        return [int(v) % P for v in vals]


def fixed_point(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Round-to-nearest fixed point with `frac_bits` fractional bits, as int64."""
    return np.rint(np.asarray(x, dtype=np.float64) * (1 << frac_bits)).astype(np.int64)


def _pack(shifted: list[int], bits: int) -> list[int]:
    per = 253 // bits
    out = []
    for q in range(0, len(shifted), per):
        acc = 0
        for i, v in enumerate(shifted[q : q + per]):
            acc |= v << (bits * i)
        out.append(acc)
    return out


def row_leaf(spec: DataSpec, policy: DataPolicy, row: np.ndarray, label: int) -> int:
    shifted = [int(v) - lo for v, lo in zip(row.tolist(), policy.lo, strict=True)]
    return poseidon([TAG_ROW, *_pack(shifted, spec.feature_bits), int(label)])


class PoseidonTree:
    """Binary Poseidon Merkle tree of fixed depth; absent leaves are 0 (zero subtrees precomputed)."""

    def __init__(self, leaves: Sequence[int], depth: int) -> None:
        if len(leaves) > 1 << depth:
            raise DataError(f"{len(leaves)} leaves do not fit a tree of depth {depth}")
        self.depth = depth
        zeros = [0]
        for _ in range(depth):
            zeros.append(poseidon([zeros[-1], zeros[-1]]))
        self._zeros = zeros
        level = list(leaves)
        self._levels = [level]
        for d in range(depth):
            if len(level) % 2:
                level = [*level, zeros[d]]
            level = [poseidon([level[i], level[i + 1]]) for i in range(0, len(level), 2)]
            self._levels.append(level)

    @property
    def root(self) -> int:
        return self._levels[-1][0] if self._levels[-1] else self._zeros[-1]

    def path(self, index: int) -> list[int]:
        out = []
        for d in range(self.depth):
            sib = index ^ 1
            level = self._levels[d]
            out.append(level[sib] if sib < len(level) else self._zeros[d])
            index //= 2
        return out


def row_leaves(spec: DataSpec, policy: DataPolicy, feats: np.ndarray, labels: np.ndarray) -> list[int]:
    return [row_leaf(spec, policy, feats[i], int(labels[i])) for i in range(len(labels))]


def dataset_root(spec: DataSpec, policy: DataPolicy, feats: np.ndarray, labels: np.ndarray) -> int:
    """The data commitment: Poseidon Merkle root over row leaves, padding leaves 0."""
    n = len(labels)
    if n > spec.capacity:
        raise DataError(f"{n} rows exceed the circuit capacity {spec.capacity}")
    return PoseidonTree(row_leaves(spec, policy, feats, labels), spec.depth).root


@dataclass(frozen=True)
class DataQualityProof:
    root: int
    proof: bytes
    prove_seconds: float = 0.0


def _witness(spec: DataSpec, policy: DataPolicy, feats: np.ndarray, labels: np.ndarray, root: int) -> dict[str, object]:
    n = len(labels)
    feat_rows = [[int(v) % P for v in feats[i].tolist()] for i in range(n)]
    feat_rows += [[lo % P for lo in policy.lo] for _ in range(spec.capacity - n)]
    inputs: dict[str, object] = {
        "root": root,
        "lo": [v % P for v in policy.lo],
        "hi": [v % P for v in policy.hi],
        "allowed": list(policy.allowed),
        "minRows": policy.min_rows,
        "minCount": list(policy.min_count),
        "maxCount": list(policy.max_count),
        "feat": feat_rows,
        "label": [int(v) % P for v in labels.tolist()] + [0] * (spec.capacity - n),
        "active": [1] * n + [0] * (spec.capacity - n),
    }
    return inputs


def prove_data_quality(
    backend: Groth16Backend, keys: KeySet, spec: DataSpec, policy: DataPolicy, feats: np.ndarray, labels: np.ndarray
) -> DataQualityProof:
    """Commit to (feats, labels) and prove they meet `policy`. ProvingError if they do not."""
    policy.check_against(spec)
    feats = np.asarray(feats, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if feats.ndim != 2 or feats.shape[1] != spec.features or len(labels) != len(feats):
        raise DataError(f"expected {spec.features} features per row and one label per row")
    t0 = time.perf_counter()
    root = dataset_root(spec, policy, feats, labels)
    proof = backend.prove(keys, _witness(spec, policy, feats, labels, root))
    return DataQualityProof(root, proof, time.perf_counter() - t0)


def verify_data_quality(keys: KeySet, spec: DataSpec, policy: DataPolicy, proof: DataQualityProof) -> None:
    """Raise InvalidProof unless the data set committed by `proof.root` meets `policy`."""
    if keys.circuit != spec.circuit:
        raise InvalidProof("keys are for another circuit than the data spec")
    policy.check_against(spec)
    Groth16Backend.verify(keys, proof.proof, policy.public_inputs(proof.root))


def spot_check_indices(seed: bytes, root: int, n_rows: int, k: int) -> list[int]:
    """k distinct row indices drawn from a public seed and the data commitment (for large data sets)."""
    if not 0 < k <= n_rows:
        raise ConfigError(f"cannot open {k} of {n_rows} rows")
    out: list[int] = []
    counter = 0
    while len(out) < k:
        h = domain_hash(Usage.SEED, b"zk/spot-check", seed, root.to_bytes(32, "big"), counter.to_bytes(4, "big"))
        idx = int.from_bytes(h, "big") % n_rows  # bias < n_rows / 2^256
        if idx not in out:
            out.append(idx)
        counter += 1
    return out


def spot_check_detection(bad_fraction: float, k: int) -> float:
    """Probability that k opened rows hit at least one bad row when a fraction q is bad.

    Rows are opened without replacement, so the true probability is at least this value.
    """
    return 1.0 - (1.0 - bad_fraction) ** k


# -- spot checks for data sets too large to prove whole -----------------------------------------


@dataclass(frozen=True)
class SpotSpec:
    """Open `k` rows of a data set of up to 2^depth rows."""

    k: int
    depth: int
    features: int
    classes: int
    feature_bits: int = 16

    @property
    def data(self) -> DataSpec:
        return DataSpec(1 << self.depth, self.features, self.classes, self.feature_bits)

    @property
    def circuit(self) -> Circuit:
        return Circuit(
            name=f"spot_k{self.k}_d{self.depth}_f{self.features}_c{self.classes}_b{self.feature_bits}",
            source="spot_check.circom",
            template="SpotCheck",
            args=(self.k, self.depth, self.features, self.classes, self.feature_bits, TAG_ROW),
            public=("root", "lo", "hi", "allowed", "nRows", "idx"),
        )


@dataclass(frozen=True)
class SpotCheckProof:
    root: int
    n_rows: int
    proof: bytes
    prove_seconds: float = 0.0


def _spot_public(policy: DataPolicy, root: int, n_rows: int, idx: Sequence[int]) -> list[int]:
    return [int(v) % P for v in (root, *policy.lo, *policy.hi, *policy.allowed, n_rows, *idx)]


def prove_spot_check(
    backend: Groth16Backend,
    keys: KeySet,
    spec: SpotSpec,
    policy: DataPolicy,
    feats: np.ndarray,
    labels: np.ndarray,
    seed: bytes,
) -> SpotCheckProof:
    """Open the rows that `seed` selects and prove them well formed (ProvingError if one is not)."""
    policy.check_against(spec.data)
    feats = np.asarray(feats, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    t0 = time.perf_counter()
    tree = PoseidonTree(row_leaves(spec.data, policy, feats, labels), spec.depth)
    n = len(labels)
    idx = spot_check_indices(seed, tree.root, n, spec.k)
    inputs: dict[str, object] = dict(
        zip(
            ("root", "lo", "hi", "allowed", "nRows", "idx"),
            (tree.root, [v % P for v in policy.lo], [v % P for v in policy.hi], list(policy.allowed), n, idx),
            strict=True,
        )
    )
    inputs.update(
        feat=[[int(v) % P for v in feats[i].tolist()] for i in idx],
        label=[int(labels[i]) % P for i in idx],
        siblings=[tree.path(i) for i in idx],
    )
    proof = backend.prove(keys, inputs)
    return SpotCheckProof(tree.root, n, proof, time.perf_counter() - t0)


def verify_spot_check(keys: KeySet, spec: SpotSpec, policy: DataPolicy, seed: bytes, proof: SpotCheckProof) -> None:
    """Raise InvalidProof unless the rows that `seed` selects from `proof.root` are well formed."""
    if keys.circuit != spec.circuit:
        raise InvalidProof("keys are for another circuit than the spot-check spec")
    if not spec.k <= proof.n_rows <= 1 << spec.depth:
        raise InvalidProof("row count outside the tree")
    idx = spot_check_indices(seed, proof.root, proof.n_rows, spec.k)
    Groth16Backend.verify(keys, proof.proof, _spot_public(policy, proof.root, proof.n_rows, idx))
