"""What one member's node computes for the roles: its data, its local training, the aggregator's step and
the validator's held-out accuracy, all derived from the task spec published on chain.

`--data` (the node's command line):
- `shard` (the default): the task's own data set partitioned exactly as `fedledger run` partitions it (same
  `load_data`, same partition and seed from the spec), and this member's shard: trainer number i (its place
  in the registry's trainer registrations, `MemberRegistered.pool_index` - 1) gets member i's training
  split, as in the simulation where trainer i is the i-th trainer registered. A validator number v gets the
  held-out splits the simulation deals to validator v (`_validator_holdouts`);
- `shard:I`: shard I whatever the member's number;
- `file:PATH`: the member's own table (CSV, or Parquet with pyarrow), read with the spec's column settings
  (`[data] label`, ...) as a federation of one: its training split trains, its held-out split validates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError
from fedledger.core.rng import numpy_rng, torch_generator
from fedledger.core.vectors import from_bytes
from fedledger.data import FederatedData, Split, load_data
from fedledger.learning import Cohort, budget_steps, evaluate
from fedledger.models import build_model
from fedledger.protocol.messages import UpdateMessage
from fedledger.protocol.roles import Network, RoundOutput, RoundView, StageClock, signed_updates
from fedledger.protocol.rules import TaskRules, model_shape
from fedledger.protocol.signing import data_commitment
from fedledger.sim.federation import _validator_holdouts, recipe_of, trainer_of

#: a round's cohort as member number -> the example count it committed to (`commitment`), from the chain
CohortCounts = Callable[[RoundView], dict[int, int]]


def committed_counts(ledger: Any, net: Network) -> CohortCounts:
    """The cohort's member numbers and committed example counts (the first 8 bytes of a trainer's registered
    metadata, `signing.data_commitment`), read from the chain once per member."""
    seen: dict[str, int] = {}

    def counts(view: RoundView) -> dict[int, int]:
        out: dict[int, int] = {}
        for address in view.cohort:
            number = net.members.get(address)
            if number is None:
                continue
            if address not in seen:
                m = ledger.member(address)
                if m is None or len(m.metadata) < 8:
                    continue
                seen[address] = int.from_bytes(m.metadata[:8], "big")
            out[number] = seen[address]
        return out

    return counts


@dataclass(frozen=True)
class DataChoice:
    kind: str  # "shard" or "file"
    shard: int | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> DataChoice:
        kind, _, value = text.partition(":")
        if kind == "shard" and not value:
            return cls("shard")
        if kind == "shard" and value.isdigit():
            return cls("shard", shard=int(value))
        if kind == "file" and value:
            return cls("file", path=Path(value))
        raise ConfigError(f"--data {text!r}: use shard (this member's shard of the task's data set), shard:I or "
                          "file:PATH (the member's own table)")


def member_split(rules: TaskRules, spec: dict[str, Any], choice: DataChoice, number: int, *,
                 validators: int | None = None) -> tuple[Split, FederatedData]:
    """(the split this member trains on or validates with, the data it came from). `validators`: this is a
    validator; its split is the held-out data the simulation deals to validator `number`."""
    cfg = rules.cfg
    if choice.kind == "file":
        assert choice.path is not None
        if not choice.path.exists():
            raise ConfigError(f"--data file:{choice.path}: no such file")
        own = build_config({**cfg.model_dump(exclude={"out", "baseline"}), "clients": 1, "partition": "iid",
                            "fraction": 1.0, "data": {**cfg.data.model_dump(), "path": str(choice.path),
                                                      "factory": None, "key": None}})
        data = load_data(own)
        m = data.members[0]
        split = (m.holdout if len(m.holdout) else data.test) if validators else m.train
        shape, classes = model_shape(spec)
        if tuple(data.input_shape) != tuple(shape) or data.num_classes > classes:
            raise ConfigError(f"--data file:{choice.path}: {data.input_shape} features and {data.num_classes} "
                              f"classes, the task's model takes {tuple(shape)} and {classes}")
        return split, data
    data = load_data(cfg)
    index = number if choice.shard is None else choice.shard
    if validators:
        parts = _validator_holdouts(data, validators)
        X, y = parts[index % len(parts)]
        return Split(X.numpy(), y.numpy()), data
    if not 0 <= index < len(data.members):
        raise ConfigError(f"shard {index} does not exist: the task's data set has {len(data.members)} shards "
                          "(one per member of the spec's federation)")
    return data.members[index].train, data


def commitment(split: Split) -> bytes:
    """The trainer's registered metadata for its data (`signing.data_commitment`), as the simulation makes it."""
    X, y = torch.from_numpy(split.X), torch.from_numpy(split.y)
    return data_commitment(len(split.y), BlobStore.address(X.numpy().tobytes() + y.numpy().tobytes()))


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op parallelism off for the block (the process's thread count restored after it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NodeWork:
    """A trainer's local work on its own split (`roles.LocalWork` for one member): trained when asked."""

    def __init__(self, rules: TaskRules, spec: dict[str, Any], split: Split, member: int, task_id: int,
                 blobs: BlobStore, clock: StageClock, cohort_counts: CohortCounts | None = None) -> None:
        cfg = rules.cfg
        shape, classes = model_shape(spec)
        self.model = build_model(cfg.model, shape, classes, seed=cfg.seed)
        self.recipe = recipe_of(cfg)
        self.trainer = trainer_of(cfg, self.model, self.recipe)
        self.X, self.y = torch.from_numpy(split.X), torch.from_numpy(split.y)
        # the member's compute budget, drawn as the simulation draws it for member `member`
        budgets = 1.0 - cfg.heterogeneity * numpy_rng(cfg.seed, "budgets").random(max(cfg.clients, member + 1))
        self.steps = budget_steps(self.recipe.full_steps(np.array([len(self.y)])), budgets[member : member + 1])
        self.seed = cfg.seed
        self.task_id = task_id
        self.blobs = blobs
        self.clock = clock
        self.cohort_counts = cohort_counts or (lambda view: {member: len(self.y)})
        self.done: dict[tuple[int, tuple[int, int]], UpdateMessage] = {}
        self.deterministic = bool(cfg.deterministic)

    def sample_order(self, member: int, view: RoundView) -> tuple[torch.Generator, int]:
        """(the generator, positioned at this member's row, and the row width) of the round's sample-order draw.

        The draw is the one the simulation's batched trainer makes for the whole cohort at once: a
        [cohort, largest count] uniform draw from the generator of (seed, "round", round), one row per member
        in member-number order (`learning.local._positions`). A member reproduces its own row from public
        facts only (the cohort on chain and the example counts its members committed to when they joined), so
        the same role code gives the same bits as one process or as separate nodes (docs/testnet.md,
        "Equal to fedledger run")."""
        counts = self.cohort_counts(view)
        counts.setdefault(member, len(self.y))
        before = sorted(n for n in counts if n < member)
        width = max(max(counts.values()), len(self.y))
        gen = torch_generator(self.seed, "round", view.key[0])
        if before:
            torch.rand((len(before), width), generator=gen)  # the rows of the members before this one
        return gen, width

    def request(self, member: int, view: RoundView) -> None:
        key = view.key
        start = from_bytes(self.blobs.get(view.global_model))  # fetched by its hash (from peers if need be)
        cohort = Cohort(np.array([0]), np.array([len(self.y)]), self.steps)
        gen, width = self.sample_order(member, view)
        # a node trains a block of one member; with several intra-op threads torch computes such a block with
        # other kernels than the same member inside the simulation's larger block (2 threads, digits/logreg: 15-42
        # of 650 coordinates differ in the last bit), and with one thread it gets that row's bits: deterministic
        # mode, which promises `fedledger run`'s model, trains on one thread
        with self.clock.stage("training"), one_thread() if self.deterministic else nullcontext():
            local = self.trainer.train(start, self.X, self.y, cohort, gen, keys_width=width)
        if not (torch.isfinite(local.deltas).all() and torch.isfinite(local.losses).all()):
            raise ConfigError(f"member {member} produced a non-finite loss in round {key[0]}; lower the task's lr")
        self.done[(member, key)] = UpdateMessage(
            self.task_id, key[0], key[1], member, len(self.y), float(local.normalizers[0]), float(local.losses[0]),
            local.deltas[0].numpy())

    def result(self, member: int, key: tuple[int, int]) -> UpdateMessage | None:
        return self.done.get((member, key))


class NodeAggregation:
    """The aggregator's step over the signed visible updates, exactly as validators recompute it: the task
    strategy's step from the round's model (a stateful server optimizer is carried by `Aggregator`)."""

    def __init__(self, rules: TaskRules, blobs: BlobStore, net: Network) -> None:
        self.rules = rules
        self.blobs = blobs
        self.net = net

    def aggregate(self, view: RoundView, updates: Any) -> RoundOutput:
        previous = from_bytes(self.blobs.get(view.global_model))
        signed = signed_updates(list(updates))
        if signed is None:
            return RoundOutput(model=previous.clone(), contributors=())
        by_number = {m: a for a, m in self.net.members.items()}
        strategy = self.rules.strategy()
        model = strategy.step(previous, signed)
        weights = strategy.linear_weights(signed)
        return RoundOutput(
            model=model, contributors=tuple(by_number[u.member] for u in updates),
            deltas=np.stack([u.update for u in updates]) if weights is not None else None, weights=weights)


def evaluator(rules: TaskRules, spec: dict[str, Any], split: Split) -> Any:
    """The validator's accuracy on its own held-out split."""
    cfg = rules.cfg
    shape, classes = model_shape(spec)
    model = build_model(cfg.model, shape, classes, seed=cfg.seed)
    X, y = torch.from_numpy(split.X), torch.from_numpy(split.y)

    def accuracy(flat: torch.Tensor) -> float:
        return evaluate(model, flat, X, y)[0]

    return accuracy


def initial_model(rules: TaskRules, spec: dict[str, Any]) -> torch.Tensor:
    """The task's round-1 model, rebuilt from the spec by everyone alike (as `fedledger audit` does)."""
    from fedledger.models import get_flat

    shape, classes = model_shape(spec)
    return get_flat(build_model(rules.cfg.model, shape, classes, seed=rules.cfg.seed))


def unsupported(rules: TaskRules) -> str | None:
    """Why the node cannot run this task's roles yet (None: it can)."""
    cfg = rules.cfg
    if cfg.privacy.dp == "record":
        return "record-level DP (each trainer's DP-SGD) is not run by fedledger node yet"
    if cfg.proofs == "training":
        return "proof of training is not run by fedledger node yet"
    if cfg.privacy.dp == "member" and not cfg.privacy.secagg:
        return "member-level DP without SecAgg+ is computed by the simulation's aggregation, not by members"
    if cfg.proofs == "update":
        return "update proofs are not run by fedledger node yet"
    return None


__all__ = ["CohortCounts", "DataChoice", "NodeAggregation", "NodeWork", "commitment", "committed_counts", "evaluator",
           "initial_model", "member_split", "unsupported"]
