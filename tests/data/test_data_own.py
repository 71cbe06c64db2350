"""A user's own data: tables (CSV, Parquet) with a label and a key column, and Python member factories."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from fedledger.core.config import build_config, load_config
from fedledger.core.errors import ConfigError, DataError
from fedledger.data import Standardization, federate, from_members, load_data, read_table
from fedledger.data.members import call_factory


def _table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = rng.choice(["north", "south", "east", "west"], size=n)
    age = rng.normal(50, 12, size=n)
    age[::17] = np.nan  # missing values are imputed with the training median
    smoker = rng.choice(["yes", "no"], size=n).astype(object)
    smoker[::23] = None  # a missing category is all zeros
    ward = rng.integers(1, 4, size=n)  # numeric codes, forced categorical below
    outcome = np.where(np.nan_to_num(age, nan=50) + 10 * (smoker == "yes") + rng.normal(0, 5, n) > 55, "sick", "well")
    return pd.DataFrame({"site": site, "age": age, "smoker": smoker, "ward": ward, "outcome": outcome})


def test_csv_with_label_key_and_categoricals_partitioned_by_site(tmp_path) -> None:
    path = tmp_path / "patients.csv"
    _table().to_csv(path, index=False)
    cfg = load_config(None, {"partition": "natural", "clients": 4, "data.path": str(path), "data.label": "outcome",
                             "data.key": "site", "data.categorical": ["ward"]})
    assert cfg.dataset == "patients"  # own data is named after its file
    data = load_data(cfg)
    assert sorted(m.name for m in data.members) == ["east", "north", "south", "west"]
    assert data.class_names == ("sick", "well") and data.num_classes == 2
    std = data.standardization
    assert std is not None and std.numeric_names == ("age",)
    assert dict(std.categorical) == {"smoker": ("no", "yes"), "ward": ("1", "2", "3")}
    assert data.input_shape == (1 + 2 + 3,)
    # every row is in exactly one place, and each member holds only its own site's rows
    frame = pd.read_csv(path)
    rows = np.concatenate([*(np.concatenate([m.train.index, m.holdout.index]) for m in data.members), data.test.index])
    assert np.array_equal(np.sort(rows), np.arange(len(frame)))
    for m in data.members:
        assert set(frame["site"].iloc[m.train.index]) == {m.name}
    # the saved preprocessing turns the raw rows into exactly what the model trained on
    test_rows = frame.iloc[data.test.index]
    again = Standardization.from_json(std.to_json())
    assert np.array_equal(again.transform_frame(test_rows), data.test.X)
    assert np.array_equal(again.transform_frame({c: list(test_rows[c]) for c in test_rows}), data.test.X)


def test_csv_partitioned_by_the_usual_partitioners(tmp_path) -> None:
    path = tmp_path / "t.csv"
    _table().to_csv(path, index=False)
    for partition in ("iid", "dirichlet:0.5"):
        data = load_data(build_config({"partition": partition, "clients": 5,
                                       "data": {"path": str(path), "label": "outcome", "drop": ["site"]}}))
        assert len(data.members) == 5 and data.input_shape == (1 + 2 + 3 * 0 + 1,)  # age, smoker=2, ward numeric


def test_numeric_labels_keep_numeric_order(tmp_path) -> None:
    frame = pd.DataFrame({"x": np.arange(30.0), "y": [2, 10, 1] * 10})
    raw = federate(read_table_frame(tmp_path, frame), "t", "iid", 2, seed=0)
    assert raw.class_names == ("1", "2", "10")


def read_table_frame(tmp_path, frame):
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    return read_table(path, label="y")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"data.path": "missing.csv"}, "data file not found"),
        ({"data.label": "diagnosis"}, "has no label column 'diagnosis'; its columns: site, age, smoker, ward, outcome"),
        ({"data.key": "hospital", "partition": "natural"}, "has no key column 'hospital'"),
        ({"partition": "natural"}, "needs [data] key"),
        ({"data.features": ["age", "weight"]}, "has no feature column 'weight'"),
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, setup, message) -> None:
    path = tmp_path / "patients.csv"
    _table().to_csv(path, index=False)
    values = {"clients": 3, "data.path": str(path), "data.label": "outcome", **setup}
    if values["data.path"] == "missing.csv":
        values["data.path"] = str(tmp_path / "missing.csv")
    with pytest.raises((DataError, ConfigError)) as exc:
        load_data(load_config(None, values))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_unreadable_and_unlabelled_tables(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2,3,4\n\xff\xfe,\x00\n")
    with pytest.raises(DataError, match="cannot read data file"):
        read_table(bad, label="a")
    holes = tmp_path / "holes.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", None, "b"]}).to_csv(holes, index=False)
    with pytest.raises(DataError, match="1 row\\(s\\) have no label"):
        read_table(holes, label="y")
    single = tmp_path / "single.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]}).to_csv(single, index=False)
    with pytest.raises(DataError, match="single value"):
        read_table(single, label="y")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow is installed: Parquet is read")
def test_parquet_without_pyarrow_says_so(tmp_path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="needs pyarrow"):
        read_table(path, label="y")


def test_path_and_factory_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="either path"):
        build_config({"data": {"path": "a.csv", "factory": "b.py:f"}})


def test_relative_paths_in_a_config_file_are_relative_to_it(tmp_path) -> None:
    (tmp_path / "proj").mkdir()
    cfg_path = tmp_path / "proj" / "fed.toml"
    cfg_path.write_text('model = "model.py:build"\n[data]\npath = "t.csv"\nlabel = "outcome"\n')
    cfg = load_config(cfg_path)
    assert cfg.data.path == str((tmp_path / "proj" / "t.csv").resolve())
    assert cfg.model == f"{(tmp_path / 'proj' / 'model.py').resolve()}:build"
    assert load_config(cfg_path, {"model": "logreg"}).model == "logreg"


# -- members from Python ------------------------------------------------------------------------


def _members(k: int = 3, n: int = 40, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, 5)), rng.integers(0, 3, size=n)) for _ in range(k)]


def test_members_as_arrays_tensors_and_datasets() -> None:
    arrays = _members()
    as_tensors = [(torch.tensor(X), torch.tensor(y)) for X, y in arrays]
    as_datasets = [TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y)) for X, y in arrays]
    results = [from_members(m, seed=1) for m in (arrays, as_tensors, as_datasets)]
    for data in results:
        assert data.input_shape == (5,) and data.num_classes == 3 and len(data.members) == 3
        assert data.standardization is None  # used as given
        total = sum(len(m.train) + len(m.holdout) for m in data.members) + len(data.test)
        assert total == 120 and len(data.test) == 3 * round(40 * 0.2)
    assert all(np.array_equal(results[0].test.X, r.test.X) for r in results[1:])


def test_members_by_name_with_their_own_test_set() -> None:
    arrays = _members(2)
    data = from_members({"clinic-a": arrays[0], "clinic-b": arrays[1]}, test=arrays[0], class_names=["a", "b", "c"])
    assert [m.name for m in data.members] == ["clinic-a", "clinic-b"]
    assert len(data.test) == 40 and sum(len(m) for m in data.members) == 80
    assert data.class_names == ("a", "b", "c")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(np.zeros((4, 2)), np.zeros(3))], "do not match"),
        ([(np.zeros((4, 2)), np.array([0, 1, -1, 0]))], ">= 0"),
        ([(np.zeros((4, 2)), np.array([0.5, 1, 1, 0]))], "integer class indices"),
        ([(np.full((4, 2), np.nan), np.array([0, 1, 1, 0]))], "NaN"),
        ([(np.zeros((4, 2)), np.zeros(4)), (np.zeros((4, 3)), np.zeros(4))], "different shapes"),
        (["not a member"], "give (X, y)"),
        ([], "no members"),
    ],
)
def test_bad_members_are_one_line_errors(members, message) -> None:
    with pytest.raises(DataError) as exc:
        from_members(members)
    assert message in str(exc.value)


def test_a_factory_that_raises_or_miscounts_is_one_line() -> None:
    def broken(clients: int, seed: int):
        raise FileNotFoundError("/data/site-a.csv")

    with pytest.raises(DataError, match=r"factory 'loader\.py:broken' failed: FileNotFoundError: /data/site-a\.csv"):
        call_factory(broken, "loader.py:broken", 3, 0, dataset="own", holdout_fraction=0.2, test_fraction=0.2)
    with pytest.raises(DataError, match="returned 3 members; the config asks for clients = 4"):
        call_factory(lambda c, s: _members(3), "x.py:f", 4, 0, dataset="own", holdout_fraction=0.2,
                     test_fraction=0.2)


def test_factory_named_in_a_config_file(tmp_path) -> None:
    (tmp_path / "loader.py").write_text(
        "import numpy as np\n"
        "def load(clients, seed):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    return {'members': [(rng.normal(size=(30, 4)), rng.integers(0, 2, 30)) for _ in range(clients)],\n"
        "            'test': (rng.normal(size=(20, 4)), rng.integers(0, 2, 20)), 'class_names': ['no', 'yes']}\n"
    )
    cfg_path = tmp_path / "fed.toml"
    cfg_path.write_text('clients = 4\n[data]\nfactory = "loader.py:load"\n')
    cfg = load_config(cfg_path)
    assert cfg.dataset == "loader"
    data = load_data(cfg)
    assert len(data.members) == 4 and len(data.test) == 20 and data.class_names == ("no", "yes")


def test_saved_image_preprocessing_reproduces_the_training_inputs() -> None:
    from fedledger.data import RawData

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(60, 1, 28, 28), dtype=np.uint8)
    raw = RawData(kind="image", features=pixels, feature_names=("pixel",), categorical=np.zeros((60, 0), np.int32),
                  categorical_names=(), categorical_levels=(), y=rng.integers(0, 3, 60).astype(np.int64),
                  class_names=("a", "b", "c"))
    data = federate(raw, "imgs", "iid", 2, seed=0)
    std = Standardization.from_json(data.standardization.to_json())
    assert std.kind == "image" and np.array_equal(std.transform(pixels[data.test.index]), data.test.X)


def test_parquet_with_pyarrow(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    frame = _table()
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    values = {"partition": "natural", "clients": 4, "data": {"label": "outcome", "key": "site"}}
    from_parquet = load_data(build_config({**values, "data": {**values["data"], "path": str(tmp_path / "t.parquet")}}))
    from_csv = load_data(build_config({**values, "data": {**values["data"], "path": str(tmp_path / "t.csv")}}))
    assert np.array_equal(from_parquet.test.X, from_csv.test.X)
    assert [m.name for m in from_parquet.members] == [m.name for m in from_csv.members]
