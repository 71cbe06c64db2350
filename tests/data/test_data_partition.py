"""Partitioners on synthetic labels: exact properties, error paths, and hypothesis properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fedledger.core.errors import ConfigError, DataError
from fedledger.data import (
    IID,
    Dirichlet,
    Natural,
    Shards,
    label_skew,
    parse_partition,
    stratified_pick,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def synthetic_labels(n: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n).astype(np.int64)


def assert_disjoint_cover(owner: np.ndarray, parts: list[np.ndarray], n: int, clients: int) -> None:
    assert owner.shape == (n,)
    assert owner.min() >= 0 and owner.max() < clients
    assert len(parts) == clients
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    for m, idx in enumerate(parts):
        assert (owner[idx] == m).all()


# -- parse_partition ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("iid", IID()),
        ("IID ", IID()),
        ("dirichlet:0.5", Dirichlet(0.5)),
        ("dirichlet:1e-2", Dirichlet(0.01)),
        ("shards:2", Shards(2)),
        ("natural", Natural()),
    ],
)
def test_parse_partition_accepts_valid_forms(spec: str, expected: object) -> None:
    assert parse_partition(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "iid:3", "dirichlet", "dirichlet:", "dirichlet:abc", "dirichlet:0", "dirichlet:-1",
     "dirichlet:nan", "dirichlet:inf", "shards", "shards:0", "shards:1.5", "shards:-2", "natural:site",
     "random", "label"],
)  # fmt: skip
def test_parse_partition_rejects_bad_specs_naming_valid_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_partition(spec)
    message = str(exc.value)
    assert "\n" not in message
    assert repr(spec) in message
    assert "iid, dirichlet:ALPHA (ALPHA > 0), shards:K (integer K >= 1), natural" in message


def test_spec_round_trips() -> None:
    for spec in ("iid", "dirichlet:0.3", "shards:2", "natural"):
        assert parse_partition(spec).spec == spec


# -- iid, shards, dirichlet, natural: exact behaviour ---------------------------------------


def test_iid_sizes_are_balanced_and_labels_mixed() -> None:
    labels = synthetic_labels(10_007, 10)
    part = IID().partition(labels, 10, rng())
    sizes = part.sizes()
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 10_007
    assert_disjoint_cover(part.owner, part.parts(), 10_007, 10)
    assert label_skew(np.stack([np.bincount(labels[p], minlength=10) for p in part.parts()])) < 0.05


def test_shards_give_each_member_k_label_runs() -> None:
    labels = np.repeat(np.arange(10), 600)  # 6000 examples, 10 classes
    part = Shards(2).partition(labels, 100, rng(1))
    assert_disjoint_cover(part.owner, part.parts(), 6000, 100)
    assert (part.sizes() == 60).all()
    # Each shard (30 examples) lies within one class, so a member holds at most 2 classes.
    classes_per_member = [np.unique(labels[p]).size for p in part.parts()]
    assert max(classes_per_member) <= 2


def test_shards_more_shards_than_examples_is_an_error() -> None:
    with pytest.raises(DataError, match="more members than samples"):
        Shards(3).partition(synthetic_labels(20, 2), 10, rng())


def test_dirichlet_skew_increases_as_alpha_decreases() -> None:
    labels = synthetic_labels(20_000, 10)
    skews = []
    for alpha in (100.0, 10.0, 1.0, 0.3, 0.1, 0.03):
        per_seed = []
        for seed in range(5):
            part = Dirichlet(alpha).partition(labels, 20, rng(seed))
            counts = np.zeros((20, 10), dtype=np.int64)
            np.add.at(counts, (part.owner, labels), 1)
            per_seed.append(label_skew(counts))
        skews.append(float(np.mean(per_seed)))
    assert all(a < b for a, b in itertools.pairwise(skews)), skews
    assert skews[0] < 0.1 and skews[-1] > 0.6, skews


def test_dirichlet_repair_fills_every_member_from_the_largest() -> None:
    labels = synthetic_labels(60_000, 10)
    part = Dirichlet(0.05).partition(labels, 1000, rng(3), min_size=20)
    assert part.sizes().min() >= 20
    assert_disjoint_cover(part.owner, part.parts(), 60_000, 1000)


@pytest.mark.parametrize(
    ("sizes", "min_size", "after"),
    [
        ([100, 50, 0, 3, 20], 10, [83, 50, 10, 10, 20]),  # only the largest gives
        ([30, 30, 0], 10, [25, 25, 10]),  # equal donors share the load
        ([5, 5, 5], 5, [5, 5, 5]),  # nothing to do
        ([12, 0, 0, 0], 3, [3, 3, 3, 3]),  # exact fit
    ],
)
def test_repair_moves_the_fewest_examples_from_the_largest(sizes: list, min_size: int, after: list) -> None:
    from fedledger.data.partition import _repair_min_size

    owner = np.repeat(np.arange(len(sizes)), sizes)
    repaired = _repair_min_size(owner, len(sizes), min_size, rng())
    assert np.bincount(repaired, minlength=len(sizes)).tolist() == after
    # Moved examples are exactly the deficit, and only ever leave members that had a surplus.
    moved = repaired != owner
    assert int(moved.sum()) == int(np.maximum(min_size - np.array(sizes), 0).sum())
    assert (np.array(sizes)[owner[moved]] > min_size).all()


def test_dirichlet_exact_fit_min_size() -> None:
    # n == clients * min_size: the only feasible partition is all members at exactly min_size.
    part = Dirichlet(0.01).partition(synthetic_labels(300, 3), 100, rng(), min_size=3)
    assert (part.sizes() == 3).all()


def test_more_members_than_samples() -> None:
    labels = synthetic_labels(50, 3)
    for partitioner in (IID(), Dirichlet(1.0), Shards(1)):
        with pytest.raises(DataError, match="more members than samples"):
            partitioner.partition(labels, 51, rng())
        with pytest.raises(DataError, match="more members than samples"):
            partitioner.partition(labels, 26, rng(), min_size=2)


def test_clients_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        IID().partition(synthetic_labels(10, 2), 0, rng())


def test_natural_one_member_per_key() -> None:
    keys = np.array(["b", "a", "c", "a", "b", "b", "c", "a", "a"])
    labels = np.zeros(keys.size, dtype=np.int64)
    part = Natural().partition(labels, 3, rng(), keys=keys)
    assert part.names == ("a", "b", "c")
    for name, idx in zip(part.names, part.parts(), strict=True):
        assert set(keys[idx]) == {name}


def test_natural_merges_groups_deterministically_and_balances() -> None:
    sizes = {"g0": 50, "g1": 40, "g2": 30, "g3": 20, "g4": 10, "g5": 5}
    keys = np.array([k for k, s in sizes.items() for _ in range(s)])
    labels = np.zeros(keys.size, dtype=np.int64)
    a = Natural().partition(labels, 3, rng(0), keys=keys)
    b = Natural().partition(labels, 3, rng(99), keys=keys)  # the seed does not matter
    np.testing.assert_array_equal(a.owner, b.owner)
    assert a.names == b.names
    # LPT: 50 | 40 | 30, then 20 -> 30-member, 10 -> 40-member, 5 -> 50-member.
    assert sorted(a.sizes().tolist()) == [50, 50, 55]
    for name, idx in zip(a.names, a.parts(), strict=True):
        assert set(keys[idx]) == set(name.split("+"))


def test_natural_more_members_than_groups_names_the_count() -> None:
    keys = np.array(["x", "y", "z"] * 4)
    with pytest.raises(DataError, match="has 3 groups; --clients must be at most 3, got 4"):
        Natural().partition(np.zeros(12, dtype=np.int64), 4, rng(), keys=keys)


def test_natural_small_group_is_an_empty_partition() -> None:
    keys = np.array(["x"] * 10 + ["y"])
    with pytest.raises(DataError, match="empty partition: natural left member 'y' with 1 example"):
        Natural().partition(np.zeros(11, dtype=np.int64), 2, rng(), keys=keys, min_size=2)


def test_natural_needs_keys() -> None:
    with pytest.raises(ConfigError, match="needs a key"):
        Natural().partition(np.zeros(4, dtype=np.int64), 2, rng())


def test_labels_must_be_integer_classes() -> None:
    with pytest.raises(DataError):
        IID().partition(np.array([0.5, 1.0]), 1, rng())
    with pytest.raises(DataError):
        IID().partition(np.array([-1, 0]), 1, rng())


def test_partitions_are_deterministic_under_the_generator_seed() -> None:
    labels = synthetic_labels(5000, 10)
    for p in (IID(), Dirichlet(0.3), Shards(2)):
        a = p.partition(labels, 50, rng(7)).owner
        b = p.partition(labels, 50, rng(7)).owner
        c = p.partition(labels, 50, rng(8)).owner
        np.testing.assert_array_equal(a, b)
        assert (a != c).any()


def test_label_skew_extremes() -> None:
    assert label_skew(np.array([[5, 5], [3, 3]])) == 0.0
    assert label_skew(np.array([[10, 0], [0, 10]])) == pytest.approx(0.5)
    assert label_skew(np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]])) == pytest.approx(2 / 3)
    assert label_skew(np.array([[0, 0], [4, 4]])) == 0.0  # empty members ignored


# -- hypothesis properties ------------------------------------------------------------------


@st.composite
def partition_case(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 400))
    classes = draw(st.integers(1, 8))
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), dtype=np.int64)
    clients = draw(st.integers(1, max(1, n)))
    min_size = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["iid", "dirichlet", "shards", "natural"]))
    if kind == "iid":
        p = IID()
    elif kind == "dirichlet":
        p = Dirichlet(draw(st.floats(0.001, 1000.0)))
    elif kind == "shards":
        p = Shards(draw(st.integers(1, 4)))
    else:
        p = Natural()
    keys = np.array([f"k{v}" for v in draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))])
    return labels, clients, min_size, p, keys, draw(st.integers(0, 2**32))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partition_case())
def test_partitioners_cover_disjointly_with_no_small_member(case: tuple) -> None:
    labels, clients, min_size, p, keys, seed = case
    n = labels.shape[0]
    try:
        part = p.partition(labels, clients, rng(seed), keys=keys, min_size=min_size)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message
        # Errors only where the request is impossible for this scheme.
        if n < clients * min_size:
            assert "more members than samples" in message
        elif isinstance(p, Shards):
            assert n < clients * p.k or "empty partition" in message
        else:
            assert isinstance(p, Natural), message  # iid and Dirichlet never fail when feasible
            groups = np.unique(keys).size
            if clients > groups:
                assert f"has {groups} groups" in message
            else:
                assert "empty partition" in message
        return
    assert part.clients == clients and len(set(part.names)) == clients
    assert_disjoint_cover(part.owner, part.parts(), n, clients)
    sizes = part.sizes()
    assert sizes.min() >= min_size
    if isinstance(p, IID):
        assert sizes.max() - sizes.min() <= 1
    if isinstance(p, Shards):
        lo, hi = n // (clients * p.k), -(-n // (clients * p.k))
        assert (sizes >= p.k * lo).all() and (sizes <= p.k * hi).all()
    if isinstance(p, Natural):
        for name, idx in zip(part.names, part.parts(), strict=True):
            assert set(keys[idx]) == set(name.split("+"))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 6),
    st.integers(1, 5),
    st.integers(0, 2**32),
    st.floats(0.0, 1.0),
)
def test_dirichlet_never_fails_when_feasible(n: int, classes: int, per: int, seed: int, frac: float) -> None:
    labels = synthetic_labels(n, classes, seed)
    clients = max(1, int(frac * n // per))
    assume(n >= clients * per)
    part = Dirichlet(0.01).partition(labels, clients, rng(seed), min_size=per)
    assert part.sizes().min() >= per and part.sizes().sum() == n


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_stratified_pick_exact_counts_and_label_balance(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300))
    groups_count = data.draw(st.integers(1, min(n, 10)))
    groups = np.array(data.draw(st.lists(st.integers(0, groups_count - 1), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    sizes = np.bincount(groups, minlength=groups_count)
    take = np.array([data.draw(st.integers(0, int(s))) for s in sizes])
    mask = stratified_pick(labels, groups, take, rng(data.draw(st.integers(0, 99))))
    np.testing.assert_array_equal(np.bincount(groups[mask], minlength=groups_count), take)
    for g in range(groups_count):
        if take[g] == 0:
            continue
        in_g = groups == g
        for label in np.unique(labels[in_g]):
            have = int((mask & in_g & (labels == label)).sum())
            expected = (labels[in_g] == label).sum() * take[g] / sizes[g]
            assert abs(have - expected) <= 1.0 + 1e-9


def test_stratified_pick_rejects_overdraw() -> None:
    with pytest.raises(DataError):
        stratified_pick(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64), np.array([4]), rng())
