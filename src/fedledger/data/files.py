"""A user's own table (CSV, or Parquet when pyarrow is installed) as `RawData`.

One row per example, one column holding the label. Every other column is a feature unless left out:
numeric columns (and booleans) are standardized, other columns (text, categories) are one-hot encoded over
their sorted set of values (the column's schema, public like the column names), missing values are
imputed (numeric: the training median) or left all-zero (categorical). An optional key column (a
hospital site, a bank branch, a state) gives the natural partition: one member per key value.

The table is read with pandas. Parquet needs pyarrow (or fastparquet), which fedledger does not depend on;
without it a Parquet file is refused in one line that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.core.errors import DataError
from fedledger.data.sources import RawData

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".csv.gz")


def read_frame(path: Path | str) -> Any:
    """The table at `path` as a pandas DataFrame; DataError (one line) if it is missing or unreadable."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            try:
                return pd.read_parquet(path)
            except ImportError:
                raise DataError(
                    f"reading Parquet ({path}) needs pyarrow, which fedledger does not install: "
                    "pip install pyarrow, or save the table as CSV"
                ) from None
        return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:  # pandas' parser errors are ValueErrors
        raise DataError(f"cannot read data file {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def table_to_raw(
    frame: Any,
    *,
    label: str,
    key: str | None = None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
    source: str = "table",
) -> RawData:
    """A DataFrame -> RawData: `label` names the label column, `key` the natural-partition column.

    `features` lists the feature columns (default: every column but label, key and `drop`); `categorical`
    forces columns to be one-hot encoded even when they hold numbers (codes, zip codes).
    """
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)

    def need(col: str, what: str) -> None:
        if col not in columns:
            shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
            raise DataError(f"{source} has no {what} column {col!r}; its columns: {shown}")

    need(label, "label")
    if key is not None:
        need(key, "key")
    for col in [*(features or ()), *categorical, *drop]:
        need(col, "feature" if col not in drop else "dropped")
    if len(frame) < 2:
        raise DataError(f"{source} has {len(frame)} row(s); need at least 2")

    labels = frame[label]
    if labels.isna().any():
        rows = np.flatnonzero(labels.isna().to_numpy())[:5].tolist()
        raise DataError(f"{source}: {int(labels.isna().sum())} row(s) have no label in column {label!r} "
                        f"(rows {rows}); remove them or fill the label")
    class_values = np.unique(labels.astype(str).to_numpy())
    if len(class_values) < 2:
        raise DataError(f"{source}: label column {label!r} has a single value; a classifier needs at least 2")
    y = np.searchsorted(class_values, labels.astype(str).to_numpy()).astype(np.int64)
    class_names = tuple(map(str, class_values))
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        # numeric labels keep their numeric order (2 < 10), not the text order
        values = np.unique(labels.to_numpy())
        y = np.searchsorted(values, labels.to_numpy()).astype(np.int64)
        class_names = tuple(_label_name(v) for v in values)

    chosen = list(features) if features is not None else [c for c in columns if c not in {label, key, *drop}]
    if not chosen:
        raise DataError(f"{source}: no feature columns left besides the label{' and key' if key else ''}")
    forced = set(categorical)
    numeric = [c for c in chosen if c not in forced and (pd.api.types.is_numeric_dtype(frame[c])
                                                          or pd.api.types.is_bool_dtype(frame[c]))]
    cats = [c for c in chosen if c not in numeric]

    codes = np.zeros((len(frame), len(cats)), dtype=np.int32)
    levels: list[tuple[str, ...]] = []
    for j, col in enumerate(cats):
        values = frame[col]
        present = values.notna().to_numpy()
        strings = values.astype(object).where(values.notna(), "").astype(str).to_numpy(dtype=object)
        lv = np.unique(strings[present])
        codes[:, j] = np.where(present, np.searchsorted(lv, strings), -1)
        levels.append(tuple(map(str, lv)))
    key_values = None
    if key is not None:
        if frame[key].isna().any():
            raise DataError(f"{source}: {int(frame[key].isna().sum())} row(s) have no value in key column {key!r}")
        key_values = frame[key].astype(str).to_numpy()
    return RawData(
        kind="tabular",
        features=frame[numeric].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan),
        feature_names=tuple(numeric),
        categorical=codes,
        categorical_names=tuple(cats),
        categorical_levels=tuple(levels),
        y=y,
        class_names=class_names,
        key=key_values,
    )


def _label_name(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def read_table(
    path: Path | str,
    *,
    label: str,
    key: str | None = None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> RawData:
    """`read_frame` then `table_to_raw`: a CSV or Parquet file as RawData."""
    return table_to_raw(read_frame(path), label=label, key=key, features=features, categorical=categorical,
                        drop=drop, source=f"data file {path}")
