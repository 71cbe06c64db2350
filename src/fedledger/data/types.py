"""The values the data layer hands to the rest of fedledger.

A `FederatedData` is everything one federation needs: per member a training split and a held-out
split (validators evaluate candidate models on held-out data), plus a global test set that was set
apart before partitioning and is used for reporting only.

Arrays follow one convention everywhere: features are float32 with shape [n, *input_shape], labels
are int64 with shape [n]. Each split also carries `index`, the rows of the source data set it came
from, so a partition can be audited (disjoint, covering) and later committed to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from fedledger.core.errors import DataError
from fedledger.core.hashing import Usage, domain_hash


@dataclass(frozen=True, eq=False)
class Split:
    """One set of examples: features `X` (float32, [n, *input_shape]) and labels `y` (int64, [n])."""

    X: np.ndarray
    y: np.ndarray
    index: np.ndarray | None = None  # rows of the source data set (int64, [n]); None if built by hand

    def __post_init__(self) -> None:
        if self.X.ndim < 1 or self.y.ndim != 1 or self.X.shape[0] != self.y.shape[0]:
            raise DataError(f"split shapes do not match: X {self.X.shape}, y {self.y.shape}")
        if self.X.dtype != np.float32:
            raise DataError(f"split features must be float32, got {self.X.dtype}")
        if self.y.dtype != np.int64:
            raise DataError(f"split labels must be int64, got {self.y.dtype}")
        if self.index is not None and self.index.shape != self.y.shape:
            raise DataError(f"split index shape {self.index.shape} does not match labels {self.y.shape}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def digest(self) -> bytes:
        """A 32-byte commitment to the examples (features, labels, shapes; not `index`).

        Domain-separated (`Usage.DATASET`); the shape and dtype header makes a reshaped or
        retyped array hash differently. A member can publish it to bind itself to its data.
        """
        header = json.dumps(
            {"X": [str(self.X.dtype), list(self.X.shape)], "y": [str(self.y.dtype), list(self.y.shape)]}
        )
        return domain_hash(
            Usage.DATASET,
            header.encode(),
            np.ascontiguousarray(self.X).astype("<f4", copy=False).tobytes(),
            np.ascontiguousarray(self.y).astype("<i8", copy=False).tobytes(),
        )

    @staticmethod
    def concat(splits: list[Split] | tuple[Split, ...]) -> Split:
        """All examples of `splits` in order (one copy)."""
        if not splits:
            raise DataError("cannot concatenate zero splits")
        has_index = all(s.index is not None for s in splits)
        return Split(
            X=np.concatenate([s.X for s in splits]),
            y=np.concatenate([s.y for s in splits]),
            index=np.concatenate([s.index for s in splits]) if has_index else None,  # type: ignore[misc]
        )


@dataclass(frozen=True, eq=False)
class Member:
    """One federation member: its training data and its own held-out split."""

    index: int
    name: str  # "member-3", or the natural key value(s): "site-2", "CA", "AK+WY"
    train: Split
    holdout: Split

    def __len__(self) -> int:
        return len(self.train) + len(self.holdout)


@dataclass(frozen=True, eq=False)
class Standardization:
    """Statistics fitted on the pooled member training splits (and nothing else).

    `mean`/`scale` have one entry per model input feature (images: one entry, the pixel statistics
    after scaling to [0, 1]); one-hot columns have mean 0, scale 1. `impute` holds the value that
    replaced NaNs in each raw numeric column (the training median).
    """

    mean: np.ndarray
    scale: np.ndarray
    impute: np.ndarray
    feature_names: tuple[str, ...]
    fitted_on: int  # number of training rows the statistics came from


@dataclass(frozen=True, eq=False)
class FederatedData:
    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    members: tuple[Member, ...]
    test: Split  # global test set, kept apart before partitioning; for reporting only
    partition: str = ""
    seed: int = 0
    standardization: Standardization | None = field(default=None, repr=False)

    def pooled_train(self) -> Split:
        """Every member's training split, concatenated in member order (the centralized baseline)."""
        return Split.concat([m.train for m in self.members])

    def label_counts(self, which: str = "train") -> np.ndarray:
        """Label histogram per member, int64 [members, num_classes]; `which` is train|holdout|all."""
        if which not in ("train", "holdout", "all"):
            raise DataError(f"which must be train, holdout or all, got {which!r}")
        out = np.zeros((len(self.members), self.num_classes), dtype=np.int64)
        for i, m in enumerate(self.members):
            if which in ("train", "all"):
                out[i] += np.bincount(m.train.y, minlength=self.num_classes)
            if which in ("holdout", "all"):
                out[i] += np.bincount(m.holdout.y, minlength=self.num_classes)
        return out

    def __repr__(self) -> str:
        sizes = [len(m.train) for m in self.members]
        return (
            f"FederatedData({self.dataset!r}, partition={self.partition!r}, members={len(self.members)}, "
            f"train={sum(sizes)} (min {min(sizes)}, max {max(sizes)}), test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )
