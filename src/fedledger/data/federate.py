"""`load_federated`: from a data set name to members with train and held-out splits.

Order of operations (each step has its own random stream derived from the seed, so changing the
partition or the number of members never changes the global test set):
1. optional stratified subsample (`max_samples`);
2. the global test set is set apart: the source's official test split if it has one, else a
   stratified `test_fraction` of the pool;
3. the rest is partitioned among members;
4. each member's share is split into train and holdout, stratified by label (`holdout_fraction`,
   at least one example on each side);
5. preprocessing is fitted on the pooled member training splits and applied to everything.

For data sets with a sampling unit (RAND HIE: a person observed over several years), every step
works on units, so one person's rows never straddle train, holdout and test.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from fedledger.core.config import FederationConfig
from fedledger.core.errors import ConfigError, DataError
from fedledger.core.rng import numpy_rng
from fedledger.data.partition import Natural, Partitioner, parse_partition, stratified_pick
from fedledger.data.preprocess import fit_transform
from fedledger.data.registry import get_dataset, load_raw
from fedledger.data.sources import RawData
from fedledger.data.types import FederatedData, Member, Split


def _check_args(clients: int, holdout_fraction: float, test_fraction: float, max_samples: int | None) -> None:
    if isinstance(clients, bool) or not isinstance(clients, int | np.integer) or clients < 1:
        raise ConfigError(f"the number of members (--clients) must be an integer >= 1, got {clients!r}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 2):
        raise ConfigError(f"max_samples must be at least 2, got {max_samples}")


class _Units:
    """Rows grouped into sampling units (identity when the data set has none)."""

    def __init__(self, unit: np.ndarray | None, n_rows: int) -> None:
        self.identity = unit is None
        if unit is None:
            self.count = n_rows
            self.size = np.ones(n_rows, dtype=np.int64)
            self.first_row = np.arange(n_rows, dtype=np.int64)
            return
        self.count = int(unit.max()) + 1
        self.row_order = np.argsort(unit, kind="stable")
        self.size = np.bincount(unit, minlength=self.count)
        self.start = np.cumsum(self.size) - self.size
        self.first_row = self.row_order[self.start]

    def rows(self, units: np.ndarray) -> np.ndarray:
        if self.identity:
            return units
        counts = self.size[units]
        within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.row_order[np.repeat(self.start[units], counts) + within]


def _pick(labels: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
    return stratified_pick(labels, np.zeros(labels.shape[0], dtype=np.int64), np.array([take]), rng)


def load_federated(
    dataset: str,
    partition: str | Partitioner,
    clients: int,
    *,
    seed: int,
    holdout_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_samples: int | None = None,
    cache_dir: Path | None = None,
) -> FederatedData:
    """Load `dataset`, set a global test set apart, and partition the rest among `clients` members.

    `partition` is a spec (`iid`, `dirichlet:ALPHA`, `shards:K`, `natural`) or a Partitioner.
    `test_fraction` is ignored for data sets with an official test split. `max_samples` caps the
    examples drawn from the source (stratified) before anything else; with an official test split
    it caps the training pool and the test set keeps the official ratio. For data sets sampled by
    unit (randhie) the cap is converted to units at the average rows per unit.
    Raises ConfigError for bad names or arguments, DataError when the data cannot be split so.
    """
    info = get_dataset(dataset)
    partitioner = parse_partition(partition) if isinstance(partition, str) else partition
    _check_args(clients, holdout_fraction, test_fraction, max_samples)
    if isinstance(partitioner, Natural) and info.natural_key is None:
        keyed = ", ".join(f"{d.name} ({d.natural_key})" for d in _keyed())
        raise ConfigError(f"data set {dataset!r} has no natural key; the natural partition works for: {keyed}")
    raw = load_raw(dataset, cache_dir=cache_dir)
    data = federate(raw, dataset, partitioner, clients, seed=seed, holdout_fraction=holdout_fraction,
                    test_fraction=test_fraction, max_samples=max_samples)
    if data.input_shape != info.input_shape:
        raise DataError(f"{dataset}: loaded features have shape {data.input_shape}, registry says {info.input_shape}")
    return replace(data, num_classes=info.num_classes)


def federate(
    raw: RawData,
    dataset: str,
    partition: str | Partitioner,
    clients: int,
    *,
    seed: int,
    holdout_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_samples: int | None = None,
) -> FederatedData:
    """The steps of `load_federated` on data already parsed (`raw`, named `dataset` in the random streams):
    a bundled data set, or a user's own table (`fedledger.data.files`)."""
    partitioner = parse_partition(partition) if isinstance(partition, str) else partition
    _check_args(clients, holdout_fraction, test_fraction, max_samples)
    if isinstance(partitioner, Natural) and raw.key is None:
        raise ConfigError(f"data set {dataset!r} has no natural key; the natural partition needs one")
    clients = int(clients)
    units = _Units(raw.unit, len(raw))
    label = raw.y[units.first_row]
    key = raw.key[units.first_row] if raw.key is not None else None

    # 1-2. pool and global test set, in units
    if raw.official_test is not None:
        is_test = raw.official_test[units.first_row]
        pool, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    else:
        pool, test = np.arange(units.count, dtype=np.int64), None
    if max_samples is not None:
        cap = max_samples if units.identity else max(2, round(max_samples * units.count / len(raw)))
        rng = numpy_rng(seed, "data", dataset, "subsample")
        if test is not None and cap < pool.shape[0]:
            test_cap = max(1, round(cap * test.shape[0] / pool.shape[0]))
            test = test[_pick(label[test], test_cap, rng)]
        if cap < pool.shape[0]:
            pool = pool[_pick(label[pool], cap, rng)]
    if test is None:
        if pool.shape[0] < 2:
            raise DataError(f"data set {dataset!r} has {pool.shape[0]} examples; need at least 2")
        take = min(max(round(pool.shape[0] * test_fraction), 1), pool.shape[0] - 1)
        in_test = _pick(label[pool], take, numpy_rng(seed, "data", dataset, "test"))
        pool, test = pool[~in_test], pool[in_test]

    # 3. partition
    min_size = 2 if holdout_fraction > 0 else 1  # every member needs a train and a holdout example
    part = partitioner.partition(
        label[pool],
        clients,
        numpy_rng(seed, "data", dataset, "partition", partitioner.spec, clients),
        keys=key[pool] if key is not None else None,
        min_size=min_size,
    )

    # 4. per-member holdout, stratified by label
    sizes = part.sizes()
    if holdout_fraction > 0:
        hold = np.clip(np.rint(sizes * holdout_fraction).astype(np.int64), 1, sizes - 1)
    else:
        hold = np.zeros_like(sizes)
    in_holdout = stratified_pick(
        label[pool], part.owner, hold, numpy_rng(seed, "data", dataset, "holdout", partitioner.spec, clients)
    )

    # 5. lay rows out as [member0 train | member0 holdout | member1 train | ... | test], gather once
    segment = part.owner * 2 + in_holdout
    order = np.argsort(segment, kind="stable")
    member_rows = units.rows(pool[order])
    test_rows = units.rows(test)
    seg_rows = np.bincount(segment, weights=units.size[pool], minlength=2 * clients).astype(np.int64)
    rows = np.concatenate([member_rows, test_rows])
    bounds = np.concatenate([[0], np.cumsum(seg_rows)])
    is_train = np.concatenate(
        [np.repeat(np.tile([True, False], clients), seg_rows), np.zeros(test_rows.shape[0], dtype=bool)]
    )
    x, standardization = fit_transform(raw, rows, is_train)
    y = raw.y[rows].astype(np.int64)

    def split(lo: int, hi: int) -> Split:
        return Split(X=x[lo:hi], y=y[lo:hi], index=rows[lo:hi])

    members = tuple(
        Member(
            index=m,
            name=part.names[m],
            train=split(int(bounds[2 * m]), int(bounds[2 * m + 1])),
            holdout=split(int(bounds[2 * m + 1]), int(bounds[2 * m + 2])),
        )
        for m in range(clients)
    )
    return FederatedData(
        dataset=dataset,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=max(len(raw.class_names), int(raw.y.max()) + 1 if len(raw) else 0),
        members=members,
        test=split(int(bounds[-1]), rows.shape[0]),
        partition=partitioner.spec,
        seed=seed,
        standardization=standardization,
        class_names=tuple(raw.class_names),
    )


def _keyed() -> list:
    from fedledger.data.registry import DATASETS

    return [d for d in DATASETS.values() if d.natural_key]


def load_data(cfg: FederationConfig, *, cache_dir: Path | None = None) -> FederatedData:
    """The federation's data as `cfg` describes it: a bundled data set (`dataset`), the user's own table
    (`[data] path`, partitioned by `partition`; `natural` splits by `[data] key`), or the user's data
    factory (`[data] factory`, called as factory(clients, seed))."""
    src = cfg.data
    if src.factory is not None:
        from fedledger.core.plugins import load_object
        from fedledger.data.members import call_factory

        factory = load_object(src.factory, "data factory")
        return call_factory(factory, src.factory, cfg.clients, cfg.seed, dataset=cfg.dataset,
                            holdout_fraction=cfg.holdout_fraction, test_fraction=cfg.test_fraction)
    if src.path is not None:
        from fedledger.data.files import read_table

        partitioner = parse_partition(cfg.partition)
        if isinstance(partitioner, Natural) and src.key is None:
            raise ConfigError("the natural partition of your own table needs [data] key = COLUMN (e.g. a site)")
        raw = read_table(src.path, label=src.label, key=src.key, features=src.features,
                         categorical=src.categorical, drop=src.drop)
        return federate(raw, cfg.dataset, partitioner, cfg.clients, seed=cfg.seed,
                        holdout_fraction=cfg.holdout_fraction, test_fraction=cfg.test_fraction,
                        max_samples=cfg.max_samples)
    return load_federated(cfg.dataset, cfg.partition, cfg.clients, seed=cfg.seed,
                          holdout_fraction=cfg.holdout_fraction, test_fraction=cfg.test_fraction,
                          max_samples=cfg.max_samples, cache_dir=cache_dir)
