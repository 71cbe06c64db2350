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
from typing import Any

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

    It is the preprocessing a trained model expects: a run saves it (`DIR/model.json`), an export carries
    it, and `transform` / `transform_frame` apply it to new raw examples exactly as training did.
    """

    mean: np.ndarray
    scale: np.ndarray
    impute: np.ndarray
    feature_names: tuple[str, ...]
    fitted_on: int  # number of training rows the statistics came from
    kind: str = "tabular"  # "image": uint8 pixels scaled to [0, 1] first; "tabular": numeric + one-hot columns
    numeric_names: tuple[str, ...] = ()  # raw numeric columns, in model input order (tabular)
    categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, levels): one-hot after the numeric ones

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Raw features -> float32 model input, as in training.

        Images: pixels (uint8 0..255, any shape [n, C, H, W]). Tabular: the raw numeric columns
        [n, len(numeric_names)] (NaN = missing), only when there are no categorical columns (else use
        `transform_frame`).
        """
        if self.kind == "image":
            mean, std = float(self.mean[0]), float(self.scale[0])
            x = np.empty(np.shape(features), dtype=np.float32)
            np.multiply(features, np.float32(1.0 / (255.0 * std)), out=x, dtype=np.float32)
            x -= np.float32(mean / std)
            return x
        if self.categorical:
            raise DataError("this preprocessing one-hot encodes categorical columns: use transform_frame(table)")
        return self._numeric(np.asarray(features, dtype=np.float64), np.zeros((len(features), 0), dtype=np.int32))

    def transform_frame(self, frame: Any) -> np.ndarray:
        """A table (pandas DataFrame, or a mapping of column name to values) with the raw columns ->
        float32 model input. Unknown categories become all-zero one-hot blocks, like missing ones."""
        names = [*self.numeric_names, *(c for c, _ in self.categorical)]
        missing = [c for c in names if c not in frame]
        if missing:
            raise DataError(f"the table lacks column(s) the model was trained on: {', '.join(missing)}")
        n = len(frame[names[0]]) if names else 0
        numeric = np.empty((n, len(self.numeric_names)), dtype=np.float64)
        for j, c in enumerate(self.numeric_names):
            numeric[:, j] = np.asarray(_to_float(frame[c]), dtype=np.float64)
        codes = np.full((n, len(self.categorical)), -1, dtype=np.int32)
        for j, (c, levels) in enumerate(self.categorical):
            lookup: dict[str | None, int] = {level: i for i, level in enumerate(levels)}
            codes[:, j] = [lookup.get(_level(v), -1) for v in frame[c]]
        return self._numeric(numeric, codes)

    def _numeric(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        k = len(self.impute)
        if numeric.ndim != 2 or numeric.shape[1] != k:
            raise DataError(f"expected {k} raw numeric column(s) {list(self.numeric_names)}, got shape {numeric.shape}")
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.impute, numeric)
        n = numeric.shape[0]
        x = np.empty((n, len(self.mean)), dtype=np.float32)
        x[:, :k] = (numeric - self.mean[:k]) / self.scale[:k]
        offset = k
        for j, (_, levels) in enumerate(self.categorical):
            block = np.zeros((n, len(levels)), dtype=np.float32)
            present = codes[:, j] >= 0
            block[np.flatnonzero(present), codes[present, j]] = 1.0
            x[:, offset : offset + len(levels)] = block
            offset += len(levels)
        return x

    def to_json(self) -> dict[str, Any]:
        """A JSON object that `from_json` turns back into the same statistics (floats round-trip exactly)."""
        return {
            "kind": self.kind,
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "impute": [float(v) for v in self.impute],
            "feature_names": list(self.feature_names),
            "numeric_names": list(self.numeric_names),
            "categorical": [[c, list(levels)] for c, levels in self.categorical],
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Standardization:
        try:
            return cls(
                mean=np.array(obj["mean"], dtype=np.float64),
                scale=np.array(obj["scale"], dtype=np.float64),
                impute=np.array(obj["impute"], dtype=np.float64),
                feature_names=tuple(obj["feature_names"]),
                fitted_on=int(obj["fitted_on"]),
                kind=str(obj.get("kind", "tabular")),
                numeric_names=tuple(obj.get("numeric_names", ())),
                categorical=tuple((str(c), tuple(map(str, levels))) for c, levels in obj.get("categorical", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"preprocessing record is malformed: {type(e).__name__}: {e}") from None


def _to_float(values: Any) -> Any:
    return [np.nan if v is None else v for v in values] if isinstance(values, list) else values


def _level(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


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
    class_names: tuple[str, ...] = ()  # label names, index = class (empty: the labels are their own names)

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
