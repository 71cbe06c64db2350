"""Preprocessing fitted on training rows only.

The statistics (pixel mean and standard deviation; per-column median for imputation, mean and
standard deviation for scaling) are computed on the pooled training splits of all members and
applied unchanged to holdouts and to the global test set, so nothing about held-out or test data
reaches the model through preprocessing.

In a real deployment no party sees the pooled training data. There the members would agree on
public normalization statistics (published reference values, or aggregated with secure
aggregation); the simulation computes the same numbers directly, which is what such a protocol
would produce, and is honest that it does.
"""

from __future__ import annotations

import warnings

import numpy as np

from fedledger.data.sources import RawData
from fedledger.data.types import Standardization


def fit_transform(raw: RawData, rows: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, Standardization]:
    """Features of `raw` at `rows` as float32, preprocessed with statistics of rows[train] only."""
    if raw.kind == "image":
        return _images(raw, rows, train)
    return _tabular(raw, rows, train)


def _images(raw: RawData, rows: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, Standardization]:
    pixels = raw.features[rows]
    # Exact mean and standard deviation of the training pixels (scaled to [0, 1]) from integer
    # sums: per-image moments cached with the source when available, else one chunked pass
    # (float64 dot products are exact here: every partial sum stays below 2**53).
    count = int(train.sum()) * int(np.prod(pixels.shape[1:]))
    if raw.pixel_moments is not None:
        s1, s2 = (float(v) for v in raw.pixel_moments[rows[train]].sum(axis=0, dtype=np.uint64))
    else:
        flat = pixels[train].reshape(-1)
        s1 = s2 = 0.0
        for lo in range(0, flat.shape[0], 1 << 22):
            chunk = flat[lo : lo + (1 << 22)].astype(np.float64)
            s1 += float(chunk.sum())
            s2 += float(chunk @ chunk)
    mean = s1 / count / 255.0
    var = max(s2 / count / 255.0**2 - mean * mean, 0.0)
    std = float(np.sqrt(var)) or 1.0
    # x = pixel / (255 std) - mean / std, written once as float32 (no float64 or index temporaries:
    # a 256-entry lookup table would make numpy build an intp copy of every pixel first).
    x = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, np.float32(1.0 / (255.0 * std)), out=x, dtype=np.float32)
    x -= np.float32(mean / std)
    return x, Standardization(
        mean=np.array([mean]), scale=np.array([std]), impute=np.zeros(0),
        feature_names=("pixel",), fitted_on=int(train.sum()), kind="image",
    )  # fmt: skip


def _tabular(raw: RawData, rows: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, Standardization]:
    numeric = raw.features[rows]
    fit = numeric[train]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN training column: imputed with 0
        median = np.nanmedian(fit, axis=0) if fit.shape[1] else np.zeros(0)
    median = np.where(np.isfinite(median), median, 0.0)
    missing = np.isnan(numeric)
    if missing.any():
        numeric = np.where(missing, median, numeric)
        fit = numeric[train]
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    std = np.where((std > 0) & np.isfinite(std), std, 1.0)  # a constant column stays constant (0)

    n = rows.shape[0]
    onehot_width = sum(len(levels) for levels in raw.categorical_levels)
    x = np.empty((n, numeric.shape[1] + onehot_width), dtype=np.float32)
    x[:, : numeric.shape[1]] = (numeric - mean) / std
    names = list(raw.feature_names)
    offset = numeric.shape[1]
    codes = raw.categorical[rows]
    for j, levels in enumerate(raw.categorical_levels):
        block = np.zeros((n, len(levels)), dtype=np.float32)
        present = codes[:, j] >= 0  # a missing category is all zeros
        block[np.flatnonzero(present), codes[present, j]] = 1.0
        x[:, offset : offset + len(levels)] = block
        names += [f"{raw.categorical_names[j]}={level}" for level in levels]
        offset += len(levels)
    return x, Standardization(
        mean=np.concatenate([mean, np.zeros(onehot_width)]),
        scale=np.concatenate([std, np.ones(onehot_width)]),
        impute=median,
        feature_names=tuple(names),
        fitted_on=int(train.sum()),
        kind="tabular",
        numeric_names=tuple(raw.feature_names),
        categorical=tuple(zip(raw.categorical_names, raw.categorical_levels, strict=True)),
    )
