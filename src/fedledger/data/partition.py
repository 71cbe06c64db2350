"""Partitioners: who holds which training example.

Every partitioner maps labels (and, for `natural`, a key per example) to an owner per example, as
one int64 array. Working with the owner array instead of per-member index lists keeps every step a
handful of numpy calls: 60,000 examples into 1,000 members takes milliseconds, and no partitioner
loops over members or examples in Python (Dirichlet loops over nothing; natural loops over groups).

All randomness comes from the `np.random.Generator` passed in, so a partition is a pure function of
(labels, keys, clients, seed).

Schemes and sources:
- `iid`: a uniform random permutation cut into `clients` nearly equal parts (sizes differ by <= 1).
- `dirichlet:ALPHA`: per class c, proportions p_c ~ Dir(ALPHA * 1_clients) and that class's examples
  are dealt out as Multinomial(n_c, p_c) (Yurochkin et al., ICML 2019; Hsu, Qi and Brown,
  arXiv:1909.06335, 2019; Wang et al., FedMA, ICLR 2020). Small ALPHA gives members few classes;
  large ALPHA tends to iid. Members left below the minimum size are repaired by moving the fewest
  examples needed from the largest members (water-filling), which perturbs the draw least.
- `shards:K`: sort by label, cut into clients*K contiguous shards, give each member K random shards
  (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
  AISTATS 2017, the pathological non-iid MNIST split with K=2).
- `natural`: one member per value of the data set's key column (site, state). With fewer members
  than groups, groups are merged deterministically by greedy longest-processing-time balancing:
  groups in decreasing size (ties by key) each go to the currently smallest member.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from fedledger.core.errors import ConfigError, DataError

PARTITION_FORMS = "iid, dirichlet:ALPHA (ALPHA > 0), shards:K (integer K >= 1), natural"


@dataclass(frozen=True, eq=False)
class Partition:
    """The owner (member index) of every example, and a name per member."""

    owner: np.ndarray  # int64 [n], values in [0, clients)
    names: tuple[str, ...]

    @property
    def clients(self) -> int:
        return len(self.names)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.clients)

    def parts(self) -> list[np.ndarray]:
        """Indices held by each member, ascending (derived with one stable sort)."""
        order = np.argsort(self.owner, kind="stable")
        return np.split(order, np.cumsum(self.sizes())[:-1])


@runtime_checkable
class Partitioner(Protocol):
    @property
    def spec(self) -> str: ...

    def partition(
        self,
        labels: np.ndarray,
        clients: int,
        rng: np.random.Generator,
        *,
        keys: np.ndarray | None = None,
        min_size: int = 1,
    ) -> Partition: ...


def _default_names(clients: int) -> tuple[str, ...]:
    return tuple(f"member-{i}" for i in range(clients))


def _check_feasible(n: int, clients: int, min_size: int) -> None:
    if clients < 1:
        raise ConfigError(f"the number of members must be at least 1, got {clients}")
    if min_size < 1:
        raise ConfigError(f"min_size must be at least 1, got {min_size}")
    if n < clients * min_size:
        each = "1 example" if min_size == 1 else f"{min_size} examples"
        raise DataError(f"more members than samples: {n} examples cannot give {clients} members {each} each")


def _check_sizes(part: Partition, min_size: int, scheme: str) -> Partition:
    sizes = part.sizes()
    small = np.flatnonzero(sizes < min_size)
    if small.size:
        i = int(small[0])
        have = int(sizes[i])
        raise DataError(
            f"empty partition: {scheme} left member {part.names[i]!r} with {have} "
            f"example{'' if have == 1 else 's'} (needs at least {min_size}); use fewer members"
        )
    return part


def _label_sorted_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of the examples, then stably sorted by label (random within each class)."""
    order = rng.permutation(labels.shape[0])
    return order[np.argsort(labels[order], kind="stable")]


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise DataError("labels must be non-negative class indices")
    return labels.astype(np.int64, copy=False)


@dataclass(frozen=True)
class IID:
    @property
    def spec(self) -> str:
        return "iid"

    def partition(
        self,
        labels: np.ndarray,
        clients: int,
        rng: np.random.Generator,
        *,
        keys: np.ndarray | None = None,
        min_size: int = 1,
    ) -> Partition:
        labels = _as_labels(labels)
        n = labels.shape[0]
        _check_feasible(n, clients, min_size)
        owner = np.empty(n, dtype=np.int64)
        owner[rng.permutation(n)] = (np.arange(n, dtype=np.int64) * clients) // n
        return _check_sizes(Partition(owner, _default_names(clients)), min_size, self.spec)


@dataclass(frozen=True)
class Dirichlet:
    alpha: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"Dirichlet alpha must be a positive finite number, got {self.alpha}")

    @property
    def spec(self) -> str:
        return f"dirichlet:{self.alpha:g}"

    def partition(
        self,
        labels: np.ndarray,
        clients: int,
        rng: np.random.Generator,
        *,
        keys: np.ndarray | None = None,
        min_size: int = 1,
    ) -> Partition:
        labels = _as_labels(labels)
        n = labels.shape[0]
        _check_feasible(n, clients, min_size)
        num_classes = int(labels.max()) + 1
        class_counts = np.bincount(labels, minlength=num_classes)
        proportions = rng.dirichlet(np.full(clients, self.alpha), size=num_classes)  # [C, clients]
        # Dirichlet draws with tiny alpha can underflow to all zeros in a row; fall back to one
        # member taking the whole class, which is the alpha -> 0 limit anyway.
        bad = ~np.isfinite(proportions).all(axis=1) | (proportions.sum(axis=1) <= 0)
        if bad.any():
            proportions[bad] = 0.0
            proportions[bad, rng.integers(0, clients, size=int(bad.sum()))] = 1.0
        proportions /= proportions.sum(axis=1, keepdims=True)
        counts = rng.multinomial(class_counts, proportions)  # [C, clients], rows sum to n_c
        owner = np.empty(n, dtype=np.int64)
        owner[_label_sorted_order(labels, rng)] = np.repeat(
            np.tile(np.arange(clients, dtype=np.int64), num_classes), counts.ravel()
        )
        owner = _repair_min_size(owner, clients, min_size, rng)
        return _check_sizes(Partition(owner, _default_names(clients)), min_size, self.spec)


def _repair_min_size(owner: np.ndarray, clients: int, min_size: int, rng: np.random.Generator) -> np.ndarray:
    """Top up members below `min_size` with examples moved from the largest members.

    Water-filling: find the level L such that cutting every member down to L (and a few to L+1)
    frees exactly the examples needed; the moved examples are random within each donor and are
    dealt to the needy members in random order. Feasibility (n >= clients*min_size) is checked by
    the caller, which guarantees L >= min_size, so no donor ever drops below the minimum.
    """
    counts = np.bincount(owner, minlength=clients)
    need = np.maximum(min_size - counts, 0)
    deficit = int(need.sum())
    if deficit == 0:
        return owner

    def freed(level: int) -> int:
        return int(np.maximum(counts - level, 0).sum())

    lo, hi = min_size, int(counts.max())  # freed(lo) >= deficit, freed(hi) == 0
    while lo < hi:  # largest level with freed(level) >= deficit
        mid = (lo + hi + 1) // 2
        if freed(mid) >= deficit:
            lo = mid
        else:
            hi = mid - 1
    level = lo
    take = np.maximum(counts - (level + 1), 0)
    rest = deficit - int(take.sum())
    if rest:
        at_level = np.flatnonzero(counts >= level + 1)  # each can give one more (down to `level`)
        pick = at_level[np.lexsort((at_level, -counts[at_level]))][:rest]
        take[pick] += 1
    # Within each member, rank its examples in random order; take the first take[m] of them.
    order = np.lexsort((np.asarray(rng.random(owner.shape[0])), owner))
    starts = np.cumsum(counts) - counts
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0]) - np.repeat(starts, counts)
    moved = np.flatnonzero(rank < take[owner])
    moved = moved[rng.permutation(moved.shape[0])]
    owner = owner.copy()
    owner[moved] = np.repeat(np.arange(clients, dtype=np.int64), need)
    return owner


@dataclass(frozen=True)
class Shards:
    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"shards per member must be an integer >= 1, got {self.k!r}")

    @property
    def spec(self) -> str:
        return f"shards:{self.k}"

    def partition(
        self,
        labels: np.ndarray,
        clients: int,
        rng: np.random.Generator,
        *,
        keys: np.ndarray | None = None,
        min_size: int = 1,
    ) -> Partition:
        labels = _as_labels(labels)
        n = labels.shape[0]
        _check_feasible(n, clients, min_size)
        shards = clients * self.k
        if n < shards:
            raise DataError(
                f"more members than samples: {n} examples cannot be cut into {shards} shards "
                f"({clients} members x {self.k})"
            )
        shard_of_position = (np.arange(n, dtype=np.int64) * shards) // n  # sizes differ by <= 1
        member_of_shard = rng.permutation(shards) // self.k  # each member gets exactly k shards
        owner = np.empty(n, dtype=np.int64)
        owner[_label_sorted_order(labels, rng)] = member_of_shard[shard_of_position]
        return _check_sizes(Partition(owner, _default_names(clients)), min_size, self.spec)


@dataclass(frozen=True)
class Natural:
    @property
    def spec(self) -> str:
        return "natural"

    def partition(
        self,
        labels: np.ndarray,
        clients: int,
        rng: np.random.Generator,
        *,
        keys: np.ndarray | None = None,
        min_size: int = 1,
    ) -> Partition:
        """One member per key value; with fewer members than groups, merge groups (rng unused)."""
        if keys is None:
            raise ConfigError("the natural partition needs a key per example (this data set has none)")
        keys = np.asarray(keys)
        n = keys.shape[0]
        _check_feasible(n, clients, min_size)
        values, group = np.unique(keys, return_inverse=True)
        group = group.astype(np.int64).ravel()
        groups = values.shape[0]
        if clients > groups:
            raise DataError(
                f"the natural partition has {groups} groups; --clients must be at most {groups}, got {clients}"
            )
        gsize = np.bincount(group, minlength=groups)
        if clients == groups:
            return _check_sizes(Partition(group, tuple(map(str, values))), min_size, self.spec)
        # Longest-processing-time merge: biggest groups first, each to the lightest member.
        heap = [(0, m) for m in range(clients)]
        member_of_group = np.empty(groups, dtype=np.int64)
        members: list[list[int]] = [[] for _ in range(clients)]
        for g in sorted(range(groups), key=lambda g: (-int(gsize[g]), g)):
            load, m = heapq.heappop(heap)
            member_of_group[g] = m
            members[m].append(g)
            heapq.heappush(heap, (load + int(gsize[g]), m))
        names = tuple("+".join(str(values[g]) for g in sorted(gs)) for gs in members)
        return _check_sizes(Partition(member_of_group[group], names), min_size, self.spec)


def parse_partition(spec: str) -> Partitioner:
    """`iid` | `dirichlet:ALPHA` | `shards:K` | `natural` -> a partitioner; ConfigError otherwise."""
    text = str(spec).strip().lower()
    kind, sep, arg = text.partition(":")
    detail = ""
    try:
        if kind == "iid" and not sep:
            return IID()
        if kind == "natural" and not sep:
            return Natural()
        if kind == "dirichlet" and sep:
            return Dirichlet(float(arg))
        if kind == "shards" and sep and arg.isdigit():
            return Shards(int(arg))
    except ConfigError as exc:  # a well-formed spec with a value out of range
        detail = f" ({exc})"
    except ValueError:  # float("abc")
        pass
    raise ConfigError(f"bad partition spec {spec!r}{detail}; valid forms: {PARTITION_FORMS}")


def label_skew(counts: np.ndarray) -> float:
    """Mean total-variation distance between each member's label distribution and the pooled one.

    `counts` is [members, classes]. 0 means every member has the global label mix; values near 1
    mean members hold classes the others do not. Empty members are ignored.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1)
    keep = totals > 0
    if not keep.any():
        return 0.0
    local = counts[keep] / totals[keep, None]
    pooled = counts.sum(axis=0) / counts.sum()
    return float(0.5 * np.abs(local - pooled).sum(axis=1).mean())


def stratified_pick(labels: np.ndarray, groups: np.ndarray, take: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask choosing exactly take[g] examples in each group g, stratified by label.

    Within each group the examples are ordered by label (random order inside a label) and picked by
    systematic sampling at evenly spaced positions, so every class gets its proportional share up
    to rounding. Vectorized over all groups at once.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups, dtype=np.int64)
    take = np.asarray(take, dtype=np.int64)
    n = labels.shape[0]
    sizes = np.bincount(groups, minlength=take.shape[0])
    if (take < 0).any() or (take > sizes).any():
        raise DataError("cannot pick more examples than a group holds")
    order = np.lexsort((np.asarray(rng.random(n)), labels, groups))
    starts = np.cumsum(sizes) - sizes
    total = int(take.sum())
    gid = np.repeat(np.arange(take.shape[0]), take)
    j = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(take) - take, take)
    position = starts[gid] + ((2 * j + 1) * sizes[gid]) // (2 * take[gid])
    mask = np.zeros(n, dtype=bool)
    mask[order[position]] = True
    return mask
