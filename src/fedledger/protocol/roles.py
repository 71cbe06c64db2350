"""The round's four roles as state machines: task owner, trainer, aggregator, validator.

Roles never call each other. Each one observes the chain (a `RoundView`: the round's on-chain record, the
cohort everyone derives from its seed, the model the round starts from), reads its own inbox on the
`Transport`, and acts: a transaction from its own account, a message to another address, a blob. `step`
returns whether it did anything, so a driver can run all roles to quiescence, then let time pass (on a
local chain, by moving the clock past the next deadline) and run them again. The same code runs as
threads in one process or as one process per member: a role keeps no state that it cannot rebuild from the
chain, the blob store and its inbox, which is what lets a restarted run resume a round where it stopped.

Lifecycle (DESIGN.md): the owner opens the round; trainers in the cohort fetch the global model by hash,
train and send an `UpdateMessage` to the drawn aggregator; at the collection deadline the aggregator
aggregates, stores the model and evidence (with the round's settlement: rewards and reputation) and
posts one transaction; committee members re-check from the chain and the blobs and vote; the owner
finalizes at quorum, or reopens a round that was rejected or whose deadline passed (the contract slashes
an aggregator that missed its deadline).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.core.merkle import MerkleTree
from fedledger.core.vectors import from_bytes, to_bytes
from fedledger.ledger import Ledger, RoundResult, RoundStatus
from fedledger.ledger.claims import reputation_tree, reward_tree
from fedledger.ledger.types import ZERO32, RoundRecord
from fedledger.protocol.evidence import CheckedRound, Evidence, RoundManifest, Settlement, check_round
from fedledger.protocol.incentives import next_reputation, reward_shares
from fedledger.protocol.messages import UPDATE_TOPIC, MessageError, UpdateMessage
from fedledger.protocol.transport import Envelope, Transport

Key = tuple[int, int]  # (round, attempt)


class StageClock:
    """Wall seconds spent per stage (training, privacy, proofs, secagg, chain, validation)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """The seconds so far, and start again from zero."""
        out = {k: round(v, 6) for k, v in self.seconds.items()}
        self.seconds.clear()
        return out


@dataclass(frozen=True)
class RoundView:
    """What every role observes of the round in play."""

    record: RoundRecord
    cohort: tuple[str, ...]  # trainer addresses drawn from this attempt's seed
    global_model: bytes  # blob address of the model the round starts from
    previous_evidence: bytes | None  # evidence root of the last finalized round (None before round 1)
    now: int  # chain time

    @property
    def key(self) -> Key:
        return (self.record.round_id, self.record.attempt)


@dataclass(frozen=True)
class RoundOutput:
    """What the aggregator's computation produced for one attempt."""

    model: torch.Tensor
    contributors: tuple[str, ...]  # addresses whose update is in the aggregate
    deltas: np.ndarray | None = None  # visible updates, where the model is linear in them
    weights: np.ndarray | None = None
    privacy_spent: int = 0  # the task's cumulative privacy spent with this round (18 decimals)
    faulty: tuple[str, ...] = ()  # members the round's checks named (failed proof, blame)


class Aggregation(Protocol):
    """The aggregator's computation, from the trainers' messages (empty when the cohort's updates reach it
    only as a secure-aggregation sum) to the new model."""

    def aggregate(self, view: RoundView, updates: Sequence[UpdateMessage]) -> RoundOutput: ...


class LocalWork(Protocol):
    """How a trainer computes its update. A simulation batches a whole cohort's requests (`flush`)."""

    def request(self, member: int, view: RoundView) -> None: ...

    def result(self, member: int, key: Key) -> UpdateMessage | None: ...


class Role:
    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore,
                 clock: StageClock | None = None) -> None:
        self.ledger = ledger
        self.task_id = task_id
        self.transport = transport
        self.blobs = blobs
        self.clock = clock or StageClock()
        self.address = ledger.address
        transport.register(self.address)

    def step(self, view: RoundView, idle: bool) -> bool:
        raise NotImplementedError


class TaskOwner(Role):
    """Finalizes a round at quorum; reopens one that was rejected or whose deadline passed."""

    def open(self, privacy_bound: int | None) -> None:
        """Open the task's next round."""
        with self.clock.stage("chain"):
            self.ledger.open_round(self.task_id, privacy_bound)
            self.ledger.persist()  # a durability point: a crash after this finds the round open

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        with self.clock.stage("chain"):
            if r.status is RoundStatus.SUBMITTED:
                if self.ledger.finalize_outcome(self.task_id, r.round_id) is not None:  # the contract's own rule
                    self.ledger.finalize(self.task_id, r.round_id)
                    return True
                if idle and view.now > r.vote_deadline:
                    self.ledger.reopen(self.task_id, r.round_id)  # too few votes: redo with a new committee
                    return True
            elif r.status is RoundStatus.REJECTED:
                self.ledger.reopen(self.task_id, r.round_id)
                return True
            elif r.status is RoundStatus.SEALING:  # committed (a crash before the seal): draw the roles now
                self.ledger.seal_round(self.task_id, r.round_id)
                return True
            elif r.status is RoundStatus.OPEN and idle and view.now > r.submit_deadline:
                self.ledger.reopen(self.task_id, r.round_id)  # the contract slashes the late aggregator
                return True
        return False


class Trainer(Role):
    """A cohort member: fetch the global model by hash, train, send the update to the round's aggregator."""

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *, member: int,
                 work: LocalWork, drops: Callable[[Key], bool] = lambda key: False,
                 clock: StageClock | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock)
        self.member = member
        self.work = work
        self.drops = drops  # fault injection: this member goes silent in that round
        self._requested: set[Key] = set()
        self._sent: set[Key] = set()

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        key = view.key
        if r.status is not RoundStatus.OPEN or key in self._sent or self.address not in view.cohort:
            return False
        if self.drops(key):
            self._sent.add(key)
            return False
        update = self.work.result(self.member, key)
        if update is None:
            if key in self._requested:
                return False
            self._requested.add(key)
            self.work.request(self.member, view)
            return True
        self.transport.send(Envelope(self.address, r.aggregator, UPDATE_TOPIC, update.to_bytes()))
        self._sent.add(key)
        return True


@dataclass
class AggregatorFaults:
    """Fault and attack injection for an aggregator (the simulation's `--attack`)."""

    misses_deadline: set[Key] = field(default_factory=set)  # attempts it never submits (crashed, late)
    tampers: bool = False  # posts a model other than the aggregate


class Aggregator(Role):
    """Collects the cohort's updates until the collection deadline, aggregates, stores, posts one tx."""

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *,
                 aggregation: Aggregation, reward_pool: int, index_of: Mapping[str, int],
                 faults: AggregatorFaults | None = None, clock: StageClock | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock)
        self.aggregation = aggregation
        self.reward_pool = reward_pool  # the contributors' share of a round's reward
        self.index_of = index_of  # trainer address -> member number (whose messages to expect)
        self.faults = faults or AggregatorFaults()
        self._inbox: dict[Key, dict[int, UpdateMessage]] = defaultdict(dict)
        self._done: set[Key] = set()

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        key = view.key
        self._collect()
        if r.status is not RoundStatus.OPEN or r.aggregator != self.address or key in self._done:
            return False
        received = self._inbox[key]
        expected = {self.index_of[a] for a in view.cohort}
        if not idle and not expected <= set(received):
            return False  # wait for the rest until the collection deadline
        self._done.add(key)
        if key in self.faults.misses_deadline:
            return False  # silent: the submission deadline will pass
        updates = [received[m] for m in sorted(received) if m in expected]
        output = self.aggregation.aggregate(view, updates)
        model = output.model
        if self.faults.tampers:
            model = model + 0.05 * torch.randn(model.shape, generator=torch.Generator().manual_seed(r.attempt))
        self._submit(view, output, model)
        self._inbox.pop(key, None)
        return True

    def _collect(self) -> None:
        for env in _drain(self.transport, self.address):
            if env.topic != UPDATE_TOPIC:
                continue
            try:
                msg = UpdateMessage.from_bytes(env.payload)
            except MessageError:
                continue  # a malformed message counts as no message
            if msg.task_id == self.task_id and self.index_of.get(env.sender) == msg.member:
                self._inbox[(msg.round_id, msg.attempt)].setdefault(msg.member, msg)

    def _submit(self, view: RoundView, output: RoundOutput, model: torch.Tensor) -> None:
        r = view.record
        settlement = settle(view, output.contributors, output.faulty, self.reward_pool, self.blobs)
        evidence = Evidence(view.global_model, output.deltas, output.weights, settlement)
        manifest = RoundManifest(self.blobs.put(to_bytes(model)), self.blobs.put(evidence.to_bytes()))
        result = RoundResult(
            model_hash=manifest.model,
            evidence_root=manifest.store(self.blobs),
            survivor_root=survivor_root(output.contributors),
            survivor_count=len(output.contributors),
            privacy_spent=output.privacy_spent,
            reputation_root=reputation_tree(self.task_id, r.round_id, settlement.reputation).root
            if settlement.reputation else ZERO32,
            reward_root=reward_tree(self.task_id, r.round_id, settlement.rewards).root
            if settlement.rewards else ZERO32,
            faulty=settlement.faulty,  # slashed by the contract if the committee accepts the round
        )
        with self.clock.stage("chain"):
            self.ledger.submit_result(self.task_id, r.round_id, result)
            self.ledger.persist()  # a durability point: a crash after this finds the result posted


def survivor_root(contributors: Sequence[str]) -> bytes:
    return MerkleTree([a.encode() for a in contributors] or [b""]).root


def previous_reputation(view: RoundView, blobs: BlobStore) -> dict[str, int]:
    """Scores as the last finalized round left them (its evidence carries everyone ever scored)."""
    if view.previous_evidence is None:
        return {}
    manifest = RoundManifest.find(blobs, view.previous_evidence)
    return dict(Evidence.from_bytes(blobs.get(manifest.evidence)).settlement.reputation)


def settle(view: RoundView, contributors: Sequence[str], faulty: Sequence[str], pool: int,
           blobs: BlobStore) -> Settlement:
    """The round's rewards and reputation, as every validator recomputes them."""
    return Settlement(
        contributors=tuple(contributors),
        faulty=tuple(faulty),
        rewards=reward_shares(pool, contributors, faulty),
        reputation=next_reputation(previous_reputation(view, blobs), view.cohort, contributors, faulty),
    )


class Validator(Role):
    """A committee member: re-check the posted result from the chain and the blobs, then vote.

    `behaviour`: "honest"; "lazy" (accepts without checking: an attack); "silent" (never votes: a fault).
    """

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *,
                 evaluate: Callable[[torch.Tensor], float], reward_pool: int, tolerance: float = 0.05,
                 held_out: int | None = None, behaviour: str = "honest", clock: StageClock | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock)
        self.evaluate = evaluate  # accuracy on this validator's own held-out data
        self.reward_pool = reward_pool
        self.tolerance = tolerance
        self.held_out = held_out  # examples behind `evaluate`: widens the tolerance by their sampling error
        self.behaviour = behaviour
        self._voted: set[Key] = set()
        self.last_accuracy: float | None = None
        self._accuracy_of: dict[bytes, float] = {}
        self.last_reason: str = ""

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        key = view.key
        if r.status is not RoundStatus.SUBMITTED or key in self._voted or self.address not in r.committee:
            return False
        self._voted.add(key)
        if self.behaviour == "silent":
            return False
        accept = True
        if self.behaviour != "lazy":
            with self.clock.stage("validation"):
                accept = self.check(view)
        with self.clock.stage("chain"):
            self.ledger.vote(self.task_id, r.round_id, accept)
        return True

    def check(self, view: RoundView) -> bool:
        """Accept only if every item checks; `last_reason` says which did not."""
        r = view.record
        try:
            checked = check_round(self.blobs, r.model_hash, r.evidence_root)
            self._check_settlement(view, checked)
        except IntegrityError as e:
            self.last_reason = str(e)
            return False
        if checked.previous_model != view.global_model:
            self.last_reason = "the round does not start from the last finalized model"
            return False
        if view.global_model not in self._accuracy_of:  # the previous model: evaluated once, not every attempt
            self._accuracy_of = {view.global_model: self.evaluate(from_bytes(self.blobs.get(view.global_model)))}
        before = self._accuracy_of[view.global_model]
        self.last_accuracy = self.evaluate(checked.model)
        if self.last_accuracy < before - self.allowed_drop(before):
            self.last_reason = f"accuracy fell from {before:.3f} to {self.last_accuracy:.3f} on held-out data"
            return False
        self.last_reason = ""
        return True

    def allowed_drop(self, accuracy: float) -> float:
        """The accuracy drop that still passes: `tolerance`, plus two standard errors of the difference of two
        accuracies on `held_out` examples. A rejection slashes the aggregator, so sampling noise on a small
        held-out set (and the noise of member-level DP) must not look like a fault."""
        if not self.held_out:
            return self.tolerance
        return self.tolerance + 2 * math.sqrt(2 * accuracy * (1 - accuracy) / self.held_out)

    def _check_settlement(self, view: RoundView, checked: CheckedRound) -> None:
        r = view.record
        s = checked.settlement
        if not set(s.contributors) <= set(view.cohort):
            raise IntegrityError("the survivor list names members outside the cohort")
        if tuple(s.faulty) != tuple(r.faulty) or not set(s.faulty) <= set(view.cohort) - set(s.contributors):
            raise IntegrityError("the members named as faulty are not the evidence's, or were counted as contributors")
        if survivor_root(s.contributors) != r.survivor_root or len(s.contributors) != r.survivor_count:
            raise IntegrityError("the survivor root does not match the evidence")
        expected = settle(view, s.contributors, s.faulty, self.reward_pool, self.blobs)
        if expected.rewards != s.rewards or expected.reputation != s.reputation:
            raise IntegrityError("the rewards or reputation differ from the protocol's rule")
        if s.rewards and reward_tree(self.task_id, r.round_id, s.rewards).root != r.reward_root:
            raise IntegrityError("the reward root does not match the evidence")
        if s.reputation and reputation_tree(self.task_id, r.round_id, s.reputation).root != r.reputation_root:
            raise IntegrityError("the reputation root does not match the evidence")


def _drain(transport: Transport, address: str) -> list[Envelope]:
    out = []
    while (env := transport.receive(address)) is not None:
        out.append(env)
    return out
