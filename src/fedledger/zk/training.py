"""Proof of training for logistic and softmax regression (fixed point, full-batch gradient descent).

The trainer proves that its update x = w_E - w0 is exactly E epochs of full-batch gradient
descent from the public global model w0, with the task's learning rate, on the data set it
committed to when joining (the data-quality root, `data_quality.dataset_root`). The proof's
output is the update proof's chunk-0 commitment, so the update proof and the random linear
check then bind this very update to the masked input.

Fixed point (documented in docs/zk.md): features, weights and the learning rate carry
`frac_bits` fractional bits (default 8). Per epoch and row:
    zq  = floor((sum_j w_j x_j + b 2^f) / 2^(f+2))           # z/4
    p   = clip(2^(f-1) + zq, 0, 2^f)                         # sigmoid(z) ~ clip(1/2 + z/4, 0, 1)
    err = p - y 2^f
then g_j = sum err x_j, g_b = sum err 2^f, and w_j -= floor(lr g_j / (n 2^(2f))).
`train_fixed_point` is the exact integer reference; `train_float` the float baseline.
Softmax regression (`model="softmax"`) uses exp(z - max) ~ (1 + (z - max)/8)^8, clipped at 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.core.errors import ConfigError, DataError
from fedledger.zk.backend import Circuit, Groth16Backend, KeySet
from fedledger.zk.data_quality import TAG_ROW, DataPolicy, DataSpec, dataset_root
from fedledger.zk.errors import InvalidProof
from fedledger.zk.field import P
from fedledger.zk.update import TAG_COMMIT, UpdateCommitment, UpdateSecret, UpdateSpec


@dataclass(frozen=True)
class TrainSpec:
    """Circuit shape for proof of training. `update` is the task's update-proof spec."""

    capacity: int
    features: int
    epochs: int
    update: UpdateSpec
    model: str = "logistic"  # "logistic" (binary) or "softmax" (classes >= 2)
    classes: int = 2
    feature_bits: int = 16
    frac_bits: int = 8
    weight_bits: int = 24
    z_bits: int = 32

    def __post_init__(self) -> None:
        DataSpec(self.capacity, self.features, self.classes, self.feature_bits)  # validates the data shape
        if self.model not in ("logistic", "softmax") or (self.model == "logistic" and self.classes != 2):
            raise ConfigError("model must be 'logistic' (2 classes) or 'softmax'")
        if self.params > self.update.chunk_size:
            raise ConfigError("proof of training needs the whole model in one update chunk")
        if not 1 <= self.epochs <= 64 or not 2 <= self.frac_bits <= 16:
            raise ConfigError("epochs must be in 1..64 and frac_bits in 2..16")

    @property
    def params(self) -> int:
        """Number of model parameters (weights and biases, row by row for softmax)."""
        return self.features + 1 if self.model == "logistic" else self.classes * (self.features + 1)

    @property
    def data(self) -> DataSpec:
        return DataSpec(self.capacity, self.features, self.classes, self.feature_bits)

    @property
    def rem_bits(self) -> int:
        return 2 * self.frac_bits + self.data.depth + 2

    @property
    def circuit(self) -> Circuit:
        u = self.update
        common = (self.feature_bits, self.frac_bits, self.epochs, self.weight_bits, self.z_bits, self.rem_bits)
        tail = (u.chunk_size, u.entry_bits, u.noise_bits, TAG_ROW, TAG_COMMIT)
        public = ("root", "lo", "nActive", "lr", "w0", "ctx", "commit")
        shape = f"r{self.capacity}_f{self.features}_e{self.epochs}_q{self.frac_bits}_n{u.chunk_size}"
        if self.model == "logistic":
            return Circuit(
                name=f"train_logreg_{shape}",
                source="train_logreg.circom",
                template="TrainLogReg",
                args=(self.capacity, self.data.depth, self.features, *common, *tail),
                public=public,
            )
        return Circuit(
            name=f"train_softmax_c{self.classes}_{shape}",
            source="train_softmax.circom",
            template="TrainSoftmax",
            args=(self.capacity, self.data.depth, self.features, self.classes, *common, *tail),
            public=public,
        )


def train_fixed_point(
    spec: TrainSpec, w0: Sequence[int] | np.ndarray, feats: np.ndarray, labels: np.ndarray, lr: int
) -> np.ndarray:
    """The exact integer computation the circuit checks; returns w_E (weights, bias last)."""
    f = spec.frac_bits
    x = np.asarray(feats, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    w = np.asarray(w0, dtype=np.int64).copy()
    half, one = 1 << (f - 1), 1 << f
    lim = 1 << (spec.weight_bits - 1)
    for _ in range(spec.epochs):
        acc = x @ w[:-1] + w[-1] * one
        zq = acc >> (f + 2)
        p = np.where(zq < -half, 0, np.where(zq > half, one, half + zq))
        err = p - y * one
        grad = np.append(err @ x, err.sum() * one)
        w = w - (lr * grad) // (n << (2 * f))
        if np.abs(w).max() >= lim:
            raise DataError("weights left the fixed-point range; lower the learning rate or epochs")
    return w


def train_fixed_point_softmax(
    spec: TrainSpec, w0: Sequence[int] | np.ndarray, feats: np.ndarray, labels: np.ndarray, lr: int
) -> np.ndarray:
    """The exact integer softmax-regression computation the circuit checks; W_E flattened row by row.

    exp(z - m) is approximated by (1 + (z - m)/8)^8 clipped at 0 (three floored squarings at
    scale 2^(f+3)), then normalised with a floored division.
    """
    f, c_n = spec.frac_bits, spec.classes
    s3 = f + 3
    x = np.asarray(feats, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    w = np.asarray(w0, dtype=np.int64).reshape(c_n, spec.features + 1).copy()
    onehot = np.eye(c_n, dtype=np.int64)[y]
    lim = 1 << (spec.weight_bits - 1)
    for _ in range(spec.epochs):
        z = (x @ w[:, :-1].T + w[:, -1] * (1 << f)) >> f
        d = z.max(axis=1, keepdims=True) - z
        a = np.where(d > (1 << s3), 0, (1 << s3) - d)
        e = a
        for _ in range(3):
            e = (e * e) >> s3
        p = (e << f) // e.sum(axis=1, keepdims=True)
        err = p - onehot * (1 << f)
        grad = np.concatenate([err.T @ x, err.sum(axis=0)[:, None] * (1 << f)], axis=1)
        w = w - (lr * grad) // (n << (2 * f))
        if np.abs(w).max() >= lim:
            raise DataError("weights left the fixed-point range; lower the learning rate or epochs")
    return w.reshape(-1)


def train(
    spec: TrainSpec, w0: Sequence[int] | np.ndarray, feats: np.ndarray, labels: np.ndarray, lr: int
) -> np.ndarray:
    """`train_fixed_point` or `train_fixed_point_softmax`, by the spec's model."""
    fn = train_fixed_point if spec.model == "logistic" else train_fixed_point_softmax
    return fn(spec, w0, feats, labels, lr)


def train_float_softmax(
    w0: np.ndarray, feats: np.ndarray, labels: np.ndarray, lr: float, epochs: int, classes: int
) -> np.ndarray:
    """Float baseline for softmax regression: full-batch GD with the exact softmax."""
    x = np.asarray(feats, dtype=np.float64)
    w = np.asarray(w0, dtype=np.float64).reshape(classes, x.shape[1] + 1).copy()
    onehot = np.eye(classes)[np.asarray(labels)]
    for _ in range(epochs):
        z = x @ w[:, :-1].T + w[:, -1]
        ez = np.exp(z - z.max(axis=1, keepdims=True))
        err = ez / ez.sum(axis=1, keepdims=True) - onehot
        w -= lr * np.concatenate([err.T @ x, err.sum(axis=0)[:, None]], axis=1) / len(x)
    return w.reshape(-1)


def train_float(w0: np.ndarray, feats: np.ndarray, labels: np.ndarray, lr: float, epochs: int) -> np.ndarray:
    """The float baseline: the same full-batch gradient descent with the exact sigmoid."""
    w = np.asarray(w0, dtype=np.float64).copy()
    x = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    for _ in range(epochs):
        z = x @ w[:-1] + w[-1]
        err = 1.0 / (1.0 + np.exp(-z)) - y
        w -= lr * np.append(err @ x, err.sum()) / len(y)
    return w


@dataclass(frozen=True)
class TrainingProof:
    proof: bytes
    prove_seconds: float = 0.0


def _public(
    spec: TrainSpec,
    root: int,
    lo: Sequence[int],
    n: int,
    lr: int,
    w0: Sequence[int] | np.ndarray,
    posted: UpdateCommitment,
) -> list[int]:
    return [int(v) % P for v in (root, *lo, n, lr, *w0, posted.ctx, posted.chunk_commits[0])]


def training_inputs(
    spec: TrainSpec,
    policy: DataPolicy,
    w0: Sequence[int] | np.ndarray,
    feats: np.ndarray,
    labels: np.ndarray,
    lr: int,
    secret: UpdateSecret,
    posted: UpdateCommitment,
) -> dict[str, object]:
    """The full circuit input assignment (public and private) of a training proof."""
    feats = np.asarray(feats, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if feats.shape != (n, spec.features) or n > spec.capacity or n == 0:
        raise DataError(f"expected 1..{spec.capacity} rows of {spec.features} features")
    root = dataset_root(spec.data, policy, feats, labels)
    if np.any(np.asarray(secret.e[: spec.update.chunk_size]) != 0):
        raise DataError("proof of training commits to the trained update with a zero noise share (DP-free tasks)")
    pad = spec.capacity - n
    inputs: dict[str, object] = dict(
        zip(
            ("root", "lo", "nActive", "lr", "w0", "ctx", "commit"),
            (
                root,
                [v % P for v in policy.lo],
                n,
                int(lr) % P,
                [int(v) % P for v in w0],
                posted.ctx,
                posted.chunk_commits[0],
            ),
            strict=True,
        )
    )
    inputs.update(
        feat=[[int(v) % P for v in row] for row in feats.tolist()] + [[v % P for v in policy.lo]] * pad,
        label=[int(v) for v in labels.tolist()] + [0] * pad,
        active=[1] * n + [0] * pad,
        rho=secret.rhos[0],
    )
    return inputs


def prove_training(
    backend: Groth16Backend,
    keys: KeySet,
    spec: TrainSpec,
    policy: DataPolicy,
    w0: Sequence[int] | np.ndarray,
    feats: np.ndarray,
    labels: np.ndarray,
    lr: int,
    secret: UpdateSecret,
    posted: UpdateCommitment,
) -> TrainingProof:
    """Prove that `secret.x` is the trained update and `posted` commits to it (ProvingError if not)."""
    t0 = time.perf_counter()
    inputs = training_inputs(spec, policy, w0, feats, labels, lr, secret, posted)
    proof = backend.prove(keys, inputs)
    return TrainingProof(proof, time.perf_counter() - t0)


def verify_training(
    keys: KeySet,
    spec: TrainSpec,
    root: int,
    lo: Sequence[int],
    n_rows: int,
    lr: int,
    w0: Sequence[int] | np.ndarray,
    posted: UpdateCommitment,
    proof: TrainingProof,
) -> None:
    """Raise InvalidProof unless `posted` commits to E epochs of training on data `root` from w0 at lr."""
    if keys.circuit != spec.circuit:
        raise InvalidProof("keys are for another circuit than the training spec")
    if posted.dim != spec.params:
        raise InvalidProof(f"update has {posted.dim} entries, the model has {spec.params}")
    if not 0 < n_rows <= spec.capacity:
        raise InvalidProof("row count outside the circuit's capacity")
    Groth16Backend.verify(keys, proof.proof, _public(spec, root, lo, n_rows, lr, w0, posted))
