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
aggregates, stores the model and the bare evidence and publishes it for the committee's scores; committee
members recompute it, score the cohort, commit and reveal (`score_flow`); the aggregator posts one
transaction with the settlement the reveals give (rewards and reputation); committee members re-check
everything from the chain and the blobs and vote; the owner
finalizes at quorum, or reopens a round that was rejected or whose deadline passed (the contract slashes
an aggregator that missed its deadline).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import ConfigError, FedLedgerError, IntegrityError
from fedledger.core.merkle import MerkleTree
from fedledger.core.rng import Entropy, Purpose, SystemEntropy
from fedledger.core.vectors import from_bytes, to_bytes
from fedledger.learning import RoundUpdates
from fedledger.ledger import Ledger, RoundResult, RoundStatus, to_fixed
from fedledger.ledger.claims import reputation_tree, reward_tree
from fedledger.ledger.types import ZERO32, RoundRecord
from fedledger.protocol.evidence import (
    STRATEGY_IN,
    STRATEGY_OUT,
    CheckedRound,
    Evidence,
    RoundManifest,
    Settlement,
    check_round,
    decode_strategy_state,
    encode_strategy_state,
)
from fedledger.protocol.incentives import next_reputation, reward_shares
from fedledger.protocol.messages import UPDATE_TOPIC, MessageError, UpdateMessage
from fedledger.protocol.score_flow import (
    BallotBox,
    CommitteeScoring,
    History,
    check_scored,
    scored_settlement,
    scoring_root,
    settle_ready,
    validator_scores,
)
from fedledger.protocol.secure import (
    BLAME,
    CHALLENGE,
    DISPUTE,
    PROOF,
    REVEAL,
    SECAGG,
    SESSION,
    SHARED,
    AggregatorSession,
    NextSessionEvidence,
    Replayed,
    SecureRules,
    SecureState,
    TrainerSession,
    parse_topic,
    privacy_spent,
    recompute,
    replay,
    replay_abort,
    topic,
)
from fedledger.protocol.signing import Context, Registry, ReplayGuard, Signed, check
from fedledger.protocol.transport import Envelope, Transport
from fedledger.secagg.errors import ProtocolViolation, SecAggAbort
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import Kind, decode
from fedledger.zk import InvalidProof, ProvingError
from fedledger.zk.update import UpdateProver

Key = tuple[int, int]  # (round, attempt)


class StageClock:
    """Wall seconds spent per stage (training, privacy, proofs, secagg, chain, validation)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.on_stage: Callable[[str], None] | None = None  # told each stage's name as it starts (progress)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage(name)
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
    state: dict[str, object] | None = None  # what the round carries to the next (secure aggregation)
    replayed: Replayed | None = None  # the round as recomputed from the transcript (secure aggregation)
    deterministic: bool = False  # secrets derived from the public seed (simulation and tests): the evidence says so


class Aggregation(Protocol):
    """The aggregator's computation, from the trainers' messages (empty when the cohort's updates reach it
    only as a secure-aggregation sum) to the new model."""

    def aggregate(self, view: RoundView, updates: Sequence[UpdateMessage]) -> RoundOutput: ...


class LocalWork(Protocol):
    """How a trainer computes its update. A simulation batches a whole cohort's requests (`flush`)."""

    def request(self, member: int, view: RoundView) -> None: ...

    def result(self, member: int, key: Key) -> UpdateMessage | None: ...


@dataclass(frozen=True)
class Network:
    """What every role knows of the deployment to sign and check messages: the chain id and task manager
    (bound into every signed statement), the chain as PKI, and which member number each trainer is."""

    chain_id: int
    contract: str
    registry: Registry
    members: Mapping[str, int]  # trainer address -> member number (its SecAgg+ id)

    def context(self, task_id: int, key: Key, topic: str = "") -> Context:
        return Context(self.chain_id, self.contract, task_id, key[0], key[1], topic)

    def cohort_members(self, view: RoundView) -> dict[str, int]:
        return {a: self.members[a] for a in view.cohort}

    def pki(self, view: RoundView) -> dict[int, PublicIdentity]:
        return {m: self.registry.key(a) for a, m in self.cohort_members(view).items()}


class Role:
    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore,
                 clock: StageClock | None = None, *, identity: Identity | None = None,
                 net: Network | None = None) -> None:
        self.ledger = ledger
        self.task_id = task_id
        self.transport = transport
        self.blobs = blobs
        self.clock = clock or StageClock()
        self.address = ledger.address
        self.identity = identity  # the Ed25519 key this account registered on chain: signs its messages
        self.net = net
        self._replays = ReplayGuard()
        transport.register(self.address)

    def step(self, view: RoundView, idle: bool) -> bool:
        raise NotImplementedError

    def send(self, recipient: str, key: Key, topic: str, payload: bytes) -> None:
        """Sign `payload` for (chain, task manager, task, round, attempt, topic) and send it."""
        if self.identity is None or self.net is None:
            raise ConfigError(f"{self.address} has no registered identity to sign with")
        msg = Signed.make(self.identity, self.net.context(self.task_id, key, topic), self.address, payload)
        self.transport.send(Envelope(self.address, recipient, topic, msg.to_bytes()))

    def open(self, env: Envelope, key: Key, senders: Iterable[str]) -> Signed:
        """Verify an inbound envelope for attempt `key` from one of `senders` (raises `MessageError`)."""
        if self.net is None:
            raise MessageError("this role checks no signed messages")
        msg = Signed.from_bytes(env.payload)
        check(msg, self.net.registry, self.net.context(self.task_id, key, env.topic), envelope_sender=env.sender,
              senders=frozenset(a.lower() for a in senders))
        self._replays.admit(msg)
        return msg


class TaskOwner(Role):
    """Finalizes a round at quorum; reopens one that was rejected or whose deadline passed."""

    def open(self) -> None:  # type: ignore[override]
        """Open the task's next round. Its privacy bound is the contract's, derived from the privacy plan the task
        fixed at creation: the owner declares none (a bound below an honest round's spend would make every honest
        result unpostable and get the drawn aggregators slashed for missing their deadline)."""
        with self.clock.stage("chain"):
            self.ledger.open_round(self.task_id)
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
    """A cohort member: fetch the global model by hash, train, and send its update to the round's aggregator.

    Without secure aggregation the update goes out as a signed `UpdateMessage`. With it (`rules`), the trainer
    runs its own privacy pipeline, commitment, SecAgg+ client, proof and blame reveal (`TrainerSession`);
    only signed protocol messages leave it.
    """

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *, member: int,
                 work: LocalWork, drops: Callable[[Key], bool] = lambda key: False,
                 clock: StageClock | None = None, identity: Identity | None = None, net: Network | None = None,
                 rules: SecureRules | None = None, prover: UpdateProver | None = None,
                 entropy: Entropy | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock, identity=identity, net=net)
        self.member = member
        self.work = work
        self.drops = drops  # fault injection: this member goes silent in that round (before its masked input)
        self.rules = rules
        self.prover = prover
        # every secret of the trainer (noise share, SecAgg+ randomness, commitment hiding) comes from here: the
        # OS CSPRNG unless a deterministic simulation passes its `DeterministicEntropy`
        self.entropy: Entropy = SystemEntropy() if entropy is None else entropy
        self._requested: set[Key] = set()
        self._sent: set[Key] = set()
        self._sessions: dict[Key, TrainerSession] = {}
        self._stopped: set[Key] = set()
        self._challenges: dict[tuple[Key, int], int] = {}
        self._proving: list[tuple[str, Key, int, Callable[[], bytes]]] = []

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        key = view.key
        progressed = self._send_proofs()
        progressed |= self._read(view) if self.rules is not None else False
        if r.status is not RoundStatus.OPEN or key in self._sent or self.address not in view.cohort:
            return progressed
        dropping = self.drops(key)
        if dropping and self.rules is None:
            self._sent.add(key)
            return progressed
        update = None if dropping else self.work.result(self.member, key)
        if update is None and not dropping:
            if key in self._requested:
                return progressed
            self._requested.add(key)
            self.work.request(self.member, view)
            return True
        self._sent.add(key)
        if self.rules is None:
            assert update is not None
            self.send(r.aggregator, key, UPDATE_TOPIC, self.prepare_update(update).to_bytes())
            return True
        self._begin(view, None if update is None else update.update)
        return True

    def prepare_update(self, update: UpdateMessage) -> UpdateMessage:
        """The update this trainer sends (attack wrappers override it)."""
        return update

    def prepare_input(self, session: TrainerSession) -> TrainerSession:
        """The secure-aggregation session before masking (attack wrappers override it)."""
        return session

    # -- secure aggregation ------------------------------------------------------------------------------
    def _begin(self, view: RoundView, delta: np.ndarray | None) -> None:
        assert self.rules is not None and self.net is not None and self.identity is not None
        rules, key = self.rules, view.key
        ctx = self.net.context(self.task_id, key)
        members = self.net.cohort_members(view)
        before = state_before(view, self.blobs, rules)
        vector = torch.zeros(rules.plan.d) if delta is None else torch.from_numpy(np.asarray(delta, np.float32))
        with self.clock.stage("privacy"):
            session = TrainerSession.begin(
                ctx=ctx, member=self.member, identity=self.identity, pki=self.net.pki(view), rules=rules,
                cohort=list(members.values()), delta=vector, clip_norm=before.clip_norm,
                rng=self.entropy.stream(Purpose.DP_NOISE, member=self.member, round=key[0], attempt=key[1]),
                commit_rng=self.entropy.numpy(Purpose.COMMITMENT, member=self.member, round=key[0], attempt=key[1]),
                round_seed=view.record.seed)
        session = self.prepare_input(session)
        self._sessions[key] = session
        with self.clock.stage("secagg"):
            out = session.start(0, sorted(members.values()))
        for m in out:
            self.send(view.record.aggregator, key, topic(SECAGG, 0), m.to_bytes())

    def _read(self, view: RoundView) -> bool:
        key = view.key
        progressed = False
        for env in _drain(self.transport, self.address):
            session = self._sessions.get(key)
            if session is None or key in self._stopped:
                continue
            try:
                msg = self.open(env, key, [view.record.aggregator])
                kind, s = parse_topic(env.topic)
                progressed |= self._handle(view, session, kind, s, msg.payload)
            except (MessageError, ProtocolViolation, SecAggAbort, InvalidProof, KeyError, TypeError, ValueError):
                continue  # a message that does not check (or does not parse) counts as no message
        return progressed

    def _send_proofs(self) -> bool:
        """Send the proofs started on the previous step. The prover worked on them in the meantime, so a simulation
        whose members share one prover proves every member's update at once on all its cores."""
        pending, self._proving = self._proving, []
        for agg, key, s, finish in pending:
            try:
                with self.clock.stage("proofs"):
                    proof = finish()
            except ProvingError:
                continue  # as before: a proof that cannot be made is no message
            self.send(agg, key, topic(PROOF, s), proof)
        return bool(pending)

    def _handle(self, view: RoundView, session: TrainerSession, kind: str, s: int, payload: bytes) -> bool:
        key, agg = view.key, view.record.aggregator
        if kind == SECAGG:
            if s != session.session:
                return False
            with self.clock.stage("secagg"):
                try:
                    replies = session.handle(decode(payload))
                except SecAggAbort:
                    self._stopped.add(key)
                    return True
            if self.drops(key) and any(k == SECAGG and decode(p).KIND == Kind.MASKED_INPUT for k, p in replies):
                self._stopped.add(key)  # drops out before its masked input
                return True
            for k, p in replies:
                self.send(agg, key, topic(k, s), p)
            return True
        if kind == CHALLENGE:
            if self.prover is None:
                return False
            body = json.loads(payload)
            with self.clock.stage("proofs"):
                finish = session.prove(s, body, view.record.seed, self.prover)
            self._challenges[(key, s)] = int(body["r"], 16)
            self._proving.append((agg, key, s, finish))  # sent on the next step (`_send_proofs`)
            return True
        if kind == BLAME:
            r = self._challenges.get((key, s))
            if r is None or int(json.loads(payload)["r"], 16) != r:
                return False
            self.send(agg, key, topic(REVEAL, s), session.reveal(s, r))
            return True
        if kind == DISPUTE:
            r = self._challenges.get((key, s))
            body = json.loads(payload)
            if r is None or int(body["r"], 16) != r:
                return False
            assert self.net is not None
            cohort = self.net.cohort_members(view)
            reports: dict[int, Any] = {}
            for raw in body["reveals"]:
                # the other end's own signed reveal of this attempt and session: what contradicts ours
                signed = Signed.from_bytes(bytes.fromhex(raw))
                check(signed, self.net.registry, self.net.context(self.task_id, key, topic(REVEAL, s)),
                      senders=frozenset(a.lower() for a in cohort))
                reports[cohort[next(a for a in cohort if a.lower() == signed.sender.lower())]] = json.loads(
                    signed.payload)
            self.send(agg, key, topic(SHARED, s), session.settle(s, r, reports))
            return True
        if kind == SESSION:
            body = json.loads(payload)
            members = [int(m) for m in body["members"]]
            if self.member not in members or s <= session.session:
                return False
            assert self.net is not None and self.rules is not None
            evidence = NextSessionEvidence(tuple(bytes.fromhex(x) for x in body.get("transcript", [])), self.rules,
                                           self.net.registry, self.net.context(self.task_id, key),
                                           self.net.cohort_members(view), view.record.seed)
            with self.clock.stage("secagg"):
                out = session.start(s, members, evidence)
            for m in out:
                self.send(agg, key, topic(SECAGG, s), m.to_bytes())
            return True
        return False


@dataclass
class AggregatorFaults:
    """Fault injection for an aggregator (the simulation's `late_aggregator`)."""

    misses_deadline: set[Key] = field(default_factory=set)  # attempts it never submits (crashed, late)


class Aggregator(Role):
    """Collects the cohort's messages until the collection deadline, aggregates, stores, posts one tx.

    Without secure aggregation: signed `UpdateMessage`s, combined by `aggregation`. With it (`rules`): the
    SecAgg+ server, the proof screen, the linear check and blame (`AggregatorSession`); the new model is
    recomputed from its own transcript exactly as validators will (`secure.replay`, `secure.recompute`).
    """

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *,
                 aggregation: Aggregation | None, reward_pool: int, index_of: Mapping[str, int],
                 faults: AggregatorFaults | None = None, clock: StageClock | None = None,
                 identity: Identity | None = None, net: Network | None = None,
                 rules: SecureRules | None = None, deterministic: bool = False,
                 strategy: Callable[[], Any] | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock, identity=identity, net=net)
        self.aggregation = aggregation
        # visible updates: the task's strategy, to carry a server optimizer's state from round to round
        self.strategy = strategy
        self.deterministic = deterministic  # the run's secrets are derived from its seed: the evidence says so
        self.reward_pool = reward_pool  # the contributors' share of a round's reward
        self.index_of = index_of  # trainer address -> member number (whose messages to expect)
        self.faults = faults or AggregatorFaults()
        self.rules = rules
        self._inbox: dict[Key, dict[int, tuple[UpdateMessage, bytes]]] = defaultdict(dict)
        self._done: set[Key] = set()
        self._sessions: dict[Key, AggregatorSession] = {}
        self.last_output: RoundOutput | None = None
        self.last_session: AggregatorSession | None = None
        self.refused: list[str] = []  # why inbound messages were dropped (forged, replayed, inflated, ...)
        # attempts whose bare evidence is published for the committee's scores: (output, evidence, model, root)
        self._scoring: dict[Key, tuple[RoundOutput, Evidence, bytes, bytes]] = {}

    def step(self, view: RoundView, idle: bool) -> bool:
        if view.key in self._scoring:
            return self._settle_scored(view)
        if self.rules is not None:
            return self._step_secure(view, idle)
        r = view.record
        key = view.key
        self._collect(view)
        if r.status is not RoundStatus.OPEN or r.aggregator != self.address or key in self._done:
            return False
        received = self._inbox[key]
        expected = {self.index_of[a] for a in view.cohort}
        if not idle and not expected <= set(received):
            return False  # wait for the rest until the collection deadline
        self._done.add(key)
        if key in self.faults.misses_deadline:
            return False  # silent: the submission deadline will pass
        kept = [received[m] for m in sorted(received) if m in expected]
        assert self.aggregation is not None
        output = self.aggregation.aggregate(view, [u for u, _ in kept])
        output = self._carry_state(view, output, [u for u, _ in kept])
        self._submit(view, self.publish(view, output), tuple(raw for _, raw in kept))
        self._inbox.pop(key, None)
        return True

    def publish(self, view: RoundView, output: RoundOutput) -> RoundOutput:
        """What this aggregator posts, given what it computed (attack wrappers override it)."""
        return output

    def _carry_state(self, view: RoundView, output: RoundOutput, updates: Sequence[UpdateMessage]) -> RoundOutput:
        """Under a stateful strategy (an adaptive server optimizer): the step from the server state the last
        finalized round left (on chain, through its evidence root) over the updates, exactly as validators
        recompute it (`visible_step`); the evidence names both states' blobs."""
        if self.strategy is None or not getattr(self.strategy(), "stateful", False):
            return output
        state_in, before = strategy_state_before(view, self.blobs, self.strategy)
        self.blobs.put(before)  # round 1: the initial state
        previous = from_bytes(self.blobs.get(view.global_model))
        model, after = visible_step(self.strategy, previous, before, signed_updates(updates))
        state: dict[str, object] = {STRATEGY_IN: state_in.hex(), STRATEGY_OUT: self.blobs.put(after).hex()}
        return replace(output, model=model, state=state)

    def admit(self, member: int, kind: str, session: int) -> bool:
        """Whether to take a trainer's message at all (attack wrappers override it, e.g. to drop a member)."""
        return True

    def _collect(self, view: RoundView) -> None:
        key = view.key
        for env in _drain(self.transport, self.address):
            if env.topic != UPDATE_TOPIC or view.record.aggregator != self.address:
                continue
            try:
                signed = self.open(env, key, view.cohort)
                msg = UpdateMessage.from_bytes(signed.payload)
                check_update(msg, self.task_id, key, self.index_of[signed.sender], self.net, signed.sender)
            except (MessageError, KeyError) as e:
                self.refused.append(f"{env.sender}: {e}")
                continue  # a message that does not check counts as no message
            if self.admit(msg.member, UPDATE_TOPIC, 0):
                self._inbox[key].setdefault(msg.member, (msg, env.payload))

    # -- secure aggregation --------------------------------------------------------------------------------
    def _step_secure(self, view: RoundView, idle: bool) -> bool:
        assert self.rules is not None and self.net is not None
        r, key = view.record, view.key
        envs = _drain(self.transport, self.address)
        if r.status is not RoundStatus.OPEN or r.aggregator != self.address or key in self._done:
            return False
        session = self._sessions.get(key)
        if session is None:
            members = self.net.cohort_members(view)
            session = self._sessions[key] = AggregatorSession(
                self.net.context(self.task_id, key), self.rules, self.net.pki(view), tuple(sorted(members.values())),
                r.seed)
        progressed = False
        for env in envs:
            try:
                signed = self.open(env, key, view.cohort)
                kind, s = parse_topic(env.topic)
            except MessageError as e:
                self.refused.append(f"{env.sender}: {e}")
                continue
            member = self.net.members.get(signed.sender)
            if member is None or not self.admit(member, kind, s):
                continue
            with self.clock.stage("proofs" if kind in (PROOF, REVEAL) else "secagg"):
                progressed |= session.accept(member, kind, s, env.payload, signed.payload)
        with self.clock.stage("proofs" if session.stage == "prove" else "secagg"):
            out = session.advance(idle)
        for member, t, payload in out:
            self.send(_address_of(self.net, member), key, t, payload)
        progressed |= bool(out)
        if session.stage == "failed":
            self._done.add(key)
            if session.aborted and key not in self.faults.misses_deadline:
                self._report_abort(view, session)
            # otherwise no valid sum: the submission deadline will pass
            return True
        if session.stage != "done":
            return progressed
        self._done.add(key)
        self.last_session = session
        if key in self.faults.misses_deadline:
            return True
        output = self._secure_output(view, session)
        self._submit(view, self.publish(view, output), tuple(session.transcript), output.state)
        return True

    def _report_abort(self, view: RoundView, session: AggregatorSession) -> None:
        """Too few members answered: post the abort with every signed message received as its evidence. The
        committee replays it (`secure.replay_abort`); accepted, the round is redrawn without a slash and this
        aggregator is not paid."""
        evidence = Evidence(view.global_model, None, None, Settlement(), tuple(session.transcript), None,
                            deterministic=self.deterministic)
        root = RoundManifest(view.global_model, self.blobs.put(evidence.to_bytes())).store(self.blobs)
        with self.clock.stage("chain"):
            self.ledger.report_abort(self.task_id, view.record.round_id, root)
            self.ledger.persist()

    def _secure_output(self, view: RoundView, session: AggregatorSession) -> RoundOutput:
        """The round as validators will recompute it from the transcript (the same functions, on the same
        messages: `secure.replay` of the transcript gives the same outcome)."""
        assert self.rules is not None and self.net is not None
        members = self.net.cohort_members(view)
        replayed = session.replayed
        before = state_before(view, self.blobs, self.rules)
        previous = from_bytes(self.blobs.get(view.global_model))
        rec = recompute(self.rules, previous, before, replayed.final, view.record.round_id, view.key[1],
                        unmasked=replayed.unmasked, round_seed=view.record.seed)
        address = {m: a for a, m in members.items()}
        contributors = tuple(address[m] for m in replayed.final.survivors) if rec.released else ()
        return RoundOutput(model=rec.model, contributors=contributors,
                           privacy_spent=to_fixed(privacy_spent(self.rules, rec.state.released)),
                           faulty=tuple(address[m] for m in replayed.faulty), state=rec.state.to_json(),
                           replayed=replayed, deterministic=self.deterministic)

    def _submit(self, view: RoundView, output: RoundOutput, transcript: tuple[bytes, ...] = (),
                state: dict[str, object] | None = None) -> None:
        """Store the model and the bare evidence (no rewards yet) and publish its root for the committee's scores
        (`score_flow`); the result is submitted once the committee revealed (`_settle_scored`)."""
        self.last_output = output
        evidence = Evidence(view.global_model, output.deltas, output.weights,
                            Settlement(tuple(output.contributors), tuple(output.faulty)), transcript,
                            output.state if state is None else state, deterministic=output.deterministic)
        model = self.blobs.put(to_bytes(output.model))
        root = scoring_root(model, evidence, self.blobs)
        with self.clock.stage("chain"):
            self.ledger.publish_scoring(self.task_id, view.record.round_id, root)
            self.ledger.persist()
        self._scoring[view.key] = (output, evidence, model, root)

    def settle_scores(self, view: RoundView, settlement: Settlement) -> Settlement:
        """The settlement this aggregator posts, given the one the reveals give (attack wrappers override it)."""
        return settlement

    def _settle_scored(self, view: RoundView) -> bool:
        r = view.record
        if r.status is not RoundStatus.OPEN or r.aggregator != self.address:
            self._scoring.pop(view.key, None)
            return False
        with self.clock.stage("chain"):
            if not settle_ready(self.ledger.scoring(self.task_id, r.round_id, r.attempt), view.now):
                return False
        output, evidence, model, root = self._scoring.pop(view.key)
        settlement = self.settle_scores(view, scored_settlement(
            self.ledger, self.blobs, self.task_id, r.round_id, r.attempt, view.cohort, r.committee, self.address,
            root, output.contributors, output.faulty, self.reward_pool, previous_reputation(view, self.blobs)))
        evidence = replace(evidence, settlement=settlement)
        manifest = RoundManifest(model, self.blobs.put(evidence.to_bytes()))
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
            reward_unpaid=settlement.unpaid(self.reward_pool),
            faulty=settlement.faulty,  # slashed by the contract if the committee accepts the round
        )
        with self.clock.stage("chain"):
            self.ledger.submit_result(self.task_id, r.round_id, result)
            self.ledger.persist()  # a durability point: a crash after this finds the result posted
        return True


def _address_of(net: Network, member: int) -> str:
    for a, m in net.members.items():
        if m == member:
            return a
    raise MessageError(f"no trainer has member number {member}")


def check_update(msg: UpdateMessage, task_id: int, key: Key, member: int, net: Network | None, sender: str) -> None:
    """An update is for this task and attempt, from the member that signed it, and weighs at most its
    committed data-set size."""
    if (msg.task_id, msg.round_id, msg.attempt) != (task_id, *key):
        raise MessageError("update message: for another task, round or attempt")
    if msg.member != member:
        raise MessageError("update message: names another member than its signer")
    if net is not None and not 0 < msg.num_examples <= net.registry.committed_examples(sender):
        raise MessageError(f"update message: {msg.num_examples} examples, more than member {member} committed to")
    if not np.isfinite(msg.update).all() or not math.isfinite(msg.normalizer) or msg.normalizer <= 0:
        raise MessageError("update message: non-finite values")


def state_before(view: RoundView, blobs: BlobStore, rules: SecureRules) -> SecureState:
    """The clip norm, rounds released and strategy state the round starts from: the last finalized round's."""
    if view.previous_evidence is None:
        return SecureState.initial(rules)
    manifest = RoundManifest.find(blobs, view.previous_evidence)
    state = Evidence.from_bytes(blobs.get(manifest.evidence)).state
    if state is None:
        raise IntegrityError("the previous round's evidence carries no secure-aggregation state")
    return SecureState.from_json(state)


def signed_updates(updates: Sequence[UpdateMessage]) -> RoundUpdates | None:
    """The round's updates as the strategy takes them, in transcript order (None: no update)."""
    if not updates:
        return None
    return RoundUpdates(torch.from_numpy(np.stack([u.update for u in updates])),
                        np.array([u.num_examples for u in updates]),
                        np.array([u.normalizer for u in updates], dtype=np.float64))


def strategy_state_before(view: RoundView, blobs: BlobStore, strategy: Callable[[], Any]) -> tuple[bytes, bytes]:
    """(blob address, bytes) of the server strategy state a visible round starts from: the `strategy_out` of the
    last finalized round, whose evidence is reached from its root on chain (`view.previous_evidence`); round 1:
    the strategy's initial state. A validator drawn in round t saw none of the rounds before it, and needs none:
    each finalized round's committee checked the state it left, and its evidence root is on chain."""
    if view.previous_evidence is None:
        initial = encode_strategy_state(strategy().state_dict())
        return BlobStore.address(initial), initial
    manifest = RoundManifest.find(blobs, view.previous_evidence)
    state = Evidence.from_bytes(blobs.get(manifest.evidence)).state or {}
    try:
        address = bytes.fromhex(str(state[STRATEGY_OUT]))
    except (KeyError, ValueError) as e:
        raise IntegrityError(f"the last finalized round's evidence carries no server strategy state ({e})") from None
    return address, blobs.get(address)


def visible_step(strategy: Callable[[], Any], previous: torch.Tensor, state: bytes,
                 updates: RoundUpdates | None) -> tuple[torch.Tensor, bytes]:
    """A stateful strategy's round: the new model and the encoded state it leaves, from the encoded state it
    starts from. A round without updates keeps the model and the state."""
    s = strategy()
    s.load_state_dict(decode_strategy_state(state))
    if updates is None:
        return previous.clone(), state
    model = s.step(previous, updates)
    return model, encode_strategy_state(s.state_dict())


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
    """A committee member: recompute the posted result from the chain and the blobs, then vote.

    It trusts only the chain and the evidence: it verifies every signed message in the transcript against
    the keys registered on chain, recomputes the sum and the new model from them (secure aggregation:
    `secure.replay` and `secure.recompute`; visible updates: the signed updates and the strategy's
    weights, the robust aggregator's step, or the adaptive server optimizer's step from the state the last
    finalized round left), verifies every proof and the linear check, re-derives the faulty list, the privacy
    spent and the settlement. A model it could not recompute (a validator built without the task's strategy)
    must also not lose accuracy on the validator's own held-out data.

    `behaviour`: "honest"; "lazy" (accepts without checking: an attack); "silent" (never votes: a fault).
    """

    def __init__(self, ledger: Ledger, task_id: int, transport: Transport, blobs: BlobStore, *,
                 evaluate: Callable[[torch.Tensor], float], reward_pool: int, tolerance: float = 0.05,
                 held_out: int | None = None, behaviour: str = "honest", clock: StageClock | None = None,
                 identity: Identity | None = None, net: Network | None = None, rules: SecureRules | None = None,
                 strategy: Callable[[], Any] | None = None, private: bool = False,
                 ballots: BallotBox | None = None) -> None:
        super().__init__(ledger, task_id, transport, blobs, clock, identity=identity, net=net)
        self.evaluate = evaluate  # accuracy on this validator's own held-out data
        self.reward_pool = reward_pool
        self.tolerance = tolerance
        self.held_out = held_out  # examples behind `evaluate`: widens the tolerance by their sampling error
        self.behaviour = behaviour
        self.checker = RoundChecker(task_id, blobs, reward_pool, net, rules, strategy, private, ledger)
        # its score commit-reveal (salts: OS CSPRNG; kept in `ballots` across a restart)
        self.scoring = CommitteeScoring(ledger, task_id, blobs, box=ballots)
        self.history = History()
        self._voted: set[Key] = set()
        self.last_accuracy: float | None = None
        self._accuracy_of: dict[bytes, float] = {}
        self.last_reason: str = ""

    def step(self, view: RoundView, idle: bool) -> bool:
        r = view.record
        key = view.key
        if r.status is RoundStatus.OPEN and self.address in r.committee and self.behaviour != "silent":
            with self.clock.stage("validation"):
                return self.scoring.step(key, view.now, lambda root: self.score(view, root), view.cohort)
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

    def score(self, view: RoundView, root: bytes) -> np.ndarray | None:
        """This member's scores of the cohort for the bare evidence `root` the aggregator published, from the
        round it recomputes itself (`score_flow.validator_scores`); None if that evidence does not check. A lazy
        member does no work: it scores everybody 1."""
        if self.behaviour == "lazy":
            return self.prepare_scores(view, np.ones(len(view.cohort)))
        try:
            manifest = RoundManifest.find(self.blobs, root)
            pre = replace(view, record=replace(view.record, model_hash=manifest.model, evidence_root=root))
            checked = self.checker.verify(pre, posted=False)
        except (IntegrityError, KeyError, OSError, ValueError) as e:
            self.last_reason = str(e)
            return None
        committed = {a: self.net.registry.committed_examples(a) for a in view.cohort} if self.net else {}
        r = view.record
        return self.prepare_scores(view, validator_scores(
            self.ledger, self.blobs, self.task_id, r.round_id, r.seed, view.cohort, view.global_model, checked,
            self.checker.rules is not None, committed, self.evaluate, self.history))

    def prepare_scores(self, view: RoundView, scores: np.ndarray) -> np.ndarray:
        """The vector this member commits to, given the one it computed (attack wrappers override it)."""
        return scores

    def check(self, view: RoundView) -> bool:
        """Accept only if every item checks; `last_reason` says which did not."""
        try:
            self.verify(view)
        except IntegrityError as e:
            self.last_reason = str(e)
            return False
        self.last_reason = ""
        return True

    def verify(self, view: RoundView) -> None:
        """Raise `IntegrityError` naming the first item that does not check."""
        if view.record.model_hash == ZERO32:
            self.checker.verify_abort(view)  # an abort report: no model to evaluate
            return
        checked = self.checker.verify(view)
        if view.global_model not in self._accuracy_of:  # the previous model: evaluated once, not every attempt
            self._accuracy_of = {view.global_model: self.evaluate(from_bytes(self.blobs.get(view.global_model)))}
        before = self._accuracy_of[view.global_model]
        self.last_accuracy = self.evaluate(checked.model)
        # A model recomputed from the members' signed messages is exactly what they sent: a drop is their doing
        # or the DP noise's, never the aggregator's, and a rejection would slash it and spend a privacy release.
        # Only a model the committee could not recompute is held to the accuracy rule.
        if not checked.recomputed and self.last_accuracy < before - self.allowed_drop(before):
            raise IntegrityError(f"accuracy fell from {before:.3f} to {self.last_accuracy:.3f} on held-out data")

    def allowed_drop(self, accuracy: float) -> float:
        """The accuracy drop that still passes: `tolerance`, plus two standard errors of the difference of two
        accuracies on `held_out` examples. A rejection slashes the aggregator, so sampling noise on a small
        held-out set (and the noise of member-level DP) must not look like a fault."""
        if not self.held_out:
            return self.tolerance
        return self.tolerance + 2 * math.sqrt(2 * accuracy * (1 - accuracy) / self.held_out)

@dataclass
class RoundChecker:
    """Everything a validator (or an auditor) recomputes about a posted round, from the chain and the
    evidence alone; `verify` raises `IntegrityError` naming the first item that does not check."""

    task_id: int
    blobs: BlobStore
    reward_pool: int
    net: Network | None = None
    rules: SecureRules | None = None  # secure aggregation: the task's rules, to replay the round
    strategy: Callable[[], Any] | None = None  # visible updates: the task's strategy, to recompute the weights
    private: bool = False  # privacy is accounted: a non-zero privacy spent may be posted
    ledger: Ledger | None = None  # the chain's score reveals: the settlement is the committee's (`score_flow`)

    def verify(self, view: RoundView, posted: bool = True) -> CheckedRound:
        """Raise `IntegrityError` naming the first item that does not check.

        Everything here reads blobs the aggregator chose: whatever they hold, the answer is a verdict, never an
        exception out of the checker (a validator that cannot vote is slashed for the missed vote, the aggregator
        that posted unparseable evidence is not).

        `posted=False`: the bare evidence published for the committee's scores (`view.record` naming its model and
        root): everything but what only the posted result holds (privacy spent, survivor root, settlement)."""
        try:
            return self._verify(view, posted)
        except FedLedgerError:
            raise  # IntegrityError is the verdict; a ledger or configuration error is not the evidence's
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError, OverflowError, EOFError,
                pickle.UnpicklingError) as e:
            raise IntegrityError(f"the evidence does not parse: {type(e).__name__}: {e}") from None

    def verify_abort(self, view: RoundView) -> str:
        """An aborted attempt (an empty model hash): its evidence must hold the previous model and the signed
        messages the aggregator received, and they must replay to SecAgg+ aborting for too few answers
        (`secure.replay_abort`); it names nobody faulty and pays nobody. Returns why it aborted; raises
        `IntegrityError` otherwise (the aggregator is then slashed as for a rejected result)."""
        try:
            r = view.record
            if self.rules is None or self.net is None:
                raise IntegrityError("an abort report in a round without secure aggregation")
            if r.survivor_count or r.faulty or r.reward_root != ZERO32 or r.reputation_root != ZERO32:
                raise IntegrityError("an abort report names survivors, faulty members or a settlement")
            manifest = RoundManifest.find(self.blobs, r.evidence_root)
            ev = Evidence.from_bytes(self.blobs.get(manifest.evidence))
            if manifest.model != view.global_model or ev.previous_model != view.global_model:
                raise IntegrityError("the abort's evidence does not start from the last finalized model")
            return replay_abort(ev.transcript, rules=self.rules, registry=self.net.registry,
                                base=self.net.context(self.task_id, view.key), members=self.net.cohort_members(view),
                                round_seed=r.seed)
        except FedLedgerError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError, OverflowError,
                EOFError) as e:
            raise IntegrityError(f"the abort's evidence does not parse: {type(e).__name__}: {e}") from None

    def _verify(self, view: RoundView, posted: bool = True) -> CheckedRound:
        r = view.record
        checked = check_round(self.blobs, r.model_hash, r.evidence_root)
        if checked.previous_model != view.global_model:
            raise IntegrityError("the round does not start from the last finalized model")
        if checked.model.shape != from_bytes(self.blobs.get(view.global_model)).shape:
            raise IntegrityError("the model does not have the shape of the model the round starts from")
        expected_faulty: tuple[str, ...] | None = None
        if self.rules is not None:
            expected_faulty = self._recompute_secure(view, checked, posted)
        elif checked.evidence is not None and self.net is not None:
            expected_faulty, recomputed = self._recompute_visible(view, checked, posted)
            checked = replace(checked, recomputed=checked.recomputed or recomputed)
        if posted:
            self._check_settlement(view, checked, expected_faulty)
        elif expected_faulty is not None and tuple(sorted(checked.settlement.faulty)) != tuple(sorted(expected_faulty)):
            raise IntegrityError(f"the members named as faulty ({list(checked.settlement.faulty)}) are not those whose "
                                 f"own signed message fails a check ({list(expected_faulty)})")
        return replace(checked, recomputed=checked.recomputed or self.rules is not None)

    def _recompute_secure(self, view: RoundView, checked: CheckedRound, posted: bool = True) -> tuple[str, ...]:
        assert self.rules is not None and self.net is not None and checked.evidence is not None
        r, ev = view.record, checked.evidence
        members = self.net.cohort_members(view)
        replayed = replay(ev.transcript, rules=self.rules, registry=self.net.registry,
                          base=self.net.context(self.task_id, view.key), members=members, round_seed=r.seed)
        before = state_before(view, self.blobs, self.rules)
        previous = from_bytes(self.blobs.get(view.global_model))
        rec = recompute(self.rules, previous, before, replayed.final, r.round_id, view.key[1],
                        unmasked=replayed.unmasked, round_seed=r.seed)
        if rec.model.shape != checked.model.shape or not torch.allclose(rec.model, checked.model, atol=1e-6, rtol=0):
            gap = float((rec.model - checked.model).abs().max()) if rec.model.shape == checked.model.shape else -1
            raise IntegrityError(f"the model is not the one the transcript's sum gives (max difference {gap:.3g})")
        if ev.state is None or not same_state(SecureState.from_json(ev.state), rec.state):
            raise IntegrityError("the state carried to the next round (clip norm, rounds released, strategy) "
                                 "is not the recomputed one")
        address = {m: a for a, m in members.items()}
        contributors = tuple(address[m] for m in replayed.final.survivors) if rec.released else ()
        if tuple(checked.settlement.contributors) != contributors:
            raise IntegrityError("the survivor list is not the transcript's")
        spent = to_fixed(privacy_spent(self.rules, rec.state.released))
        if posted and r.privacy_spent != spent:
            raise IntegrityError(f"privacy spent {r.privacy_spent} is not the recomputed {spent} "
                                 f"({rec.state.released} rounds released)")
        return tuple(address[m] for m in replayed.faulty)

    def _recompute_visible(self, view: RoundView, checked: CheckedRound,
                           posted: bool = True) -> tuple[tuple[str, ...], bool]:
        """The contributors' signed updates are the evidence's rows, weighted as the strategy weighs them; the
        model is recomputed from them (and, under an adaptive server optimizer, from the server state the last
        finalized round left). Returns the faulty list (empty: nothing in a visible round names a member faulty)
        and whether the model was recomputed here."""
        assert self.net is not None and checked.evidence is not None
        r, ev = view.record, checked.evidence
        updates = []
        for raw in ev.transcript:
            try:
                msg = Signed.from_bytes(raw)
                check(msg, self.net.registry, self.net.context(self.task_id, view.key, UPDATE_TOPIC),
                      senders=frozenset(a.lower() for a in view.cohort))
                update = UpdateMessage.from_bytes(msg.payload)
                check_update(update, self.task_id, view.key, self.net.members[msg.sender], self.net, msg.sender)
            except (MessageError, KeyError) as e:
                raise IntegrityError(f"transcript: {e}") from None
            updates.append((msg.sender, update))
        if tuple(a for a, _ in updates) != tuple(checked.settlement.contributors):
            raise IntegrityError("the contributors are not the senders of the evidence's signed updates")
        if len({a.lower() for a, _ in updates}) != len(updates):
            # one update per member: a row counted twice weighs its member twice in the aggregate
            raise IntegrityError("a member's signed update appears more than once in the evidence")
        rows = np.stack([u.update for _, u in updates]) if updates else None
        if ev.deltas is not None:
            expected = rows if rows is not None else np.zeros((0, ev.deltas.shape[1]))
            if ev.deltas.shape != expected.shape or not np.array_equal(ev.deltas.astype(np.float32), expected):
                raise IntegrityError("the evidence's updates are not the signed updates")
        if posted and not self.private and r.privacy_spent != 0:
            raise IntegrityError("privacy spent is posted for a round without privacy accounting")
        signed = signed_updates([u for _, u in updates])
        previous = from_bytes(self.blobs.get(view.global_model))
        recomputed = False
        if self.strategy is not None and getattr(self.strategy(), "stateful", False):
            self._recompute_stateful(view, checked, previous, signed)
            recomputed = True
        elif signed is None:
            # no signed update: nothing to aggregate, the round keeps the model (any other model came from nowhere)
            if not torch.equal(checked.model, previous):
                raise IntegrityError("a round without any signed update posts another model than the one it starts "
                                     "from")
            recomputed = True
        elif self.strategy is not None:
            strategy = self.strategy()
            weights = strategy.linear_weights(signed)
            if weights is not None:
                # the model is linear in the signed updates: the evidence's rows and weights recompute it
                # (`check_round`); without them only the accuracy check would stand between a tampered model
                # and finality
                if ev.deltas is None or ev.weights is None:
                    raise IntegrityError("the evidence leaves out the update rows the strategy's model is linear in")
                if not np.allclose(weights, ev.weights, rtol=1e-9, atol=0):
                    raise IntegrityError("the weights are not the strategy's for the signed example counts")
            elif strategy.needs_individual_updates:
                # a robust aggregator (no server state): its step over the signed updates is the model
                model = strategy.step(previous, signed)
                if not torch.allclose(model, checked.model, atol=1e-5, rtol=1e-4):
                    gap = float((model - checked.model).abs().max())
                    raise IntegrityError(f"the model is not the strategy's step over the signed updates "
                                         f"(max difference {gap:.3g})")
                recomputed = True
            else:
                raise IntegrityError(f"strategy {strategy.name} is neither linear, robust nor stateful: its model "
                                     "cannot be recomputed")
        return (), recomputed

    def _recompute_stateful(self, view: RoundView, checked: CheckedRound, previous: torch.Tensor,
                            signed: RoundUpdates | None) -> None:
        """An adaptive server optimizer (FedAdam, FedYogi, FedAdagrad): the evidence names the server state the
        round starts from and the one it leaves, as blobs. The first must be the one the last finalized round
        left (reached from its evidence root on chain: `strategy_state_before`); the model and the second are
        recomputed from it and the signed updates (`visible_step`, the aggregator's own function)."""
        assert self.strategy is not None and checked.evidence is not None
        ev = checked.evidence
        if ev.deltas is not None or ev.weights is not None:
            raise IntegrityError("the evidence carries update rows and weights, but the strategy's model is not "
                                 "linear in them")
        try:
            posted_in = bytes.fromhex(str((ev.state or {})[STRATEGY_IN]))
            posted_out = bytes.fromhex(str((ev.state or {})[STRATEGY_OUT]))
        except (KeyError, ValueError) as e:
            raise IntegrityError(f"the evidence does not name the server optimizer state in and out ({e})") from None
        expected_in, before = strategy_state_before(view, self.blobs, self.strategy)
        if posted_in != expected_in:
            raise IntegrityError("the server optimizer state the round starts from is not the one the last finalized "
                                 "round left")
        model, after = visible_step(self.strategy, previous, before, signed)
        if BlobStore.address(after) != posted_out:
            raise IntegrityError("the server optimizer state carried to the next round is not the recomputed one")
        if model.shape != checked.model.shape or not torch.allclose(model, checked.model, atol=1e-6, rtol=0):
            gap = float((model - checked.model).abs().max()) if model.shape == checked.model.shape else -1
            raise IntegrityError(f"the model is not the server optimizer's step over the signed updates from the "
                                 f"chained state (max difference {gap:.3g})")
        if posted_out not in self.blobs:
            raise IntegrityError("the server optimizer state the round leaves is not in the blob store")

    def _check_settlement(self, view: RoundView, checked: CheckedRound,
                          expected_faulty: tuple[str, ...] | None = None) -> None:
        r = view.record
        s = checked.settlement
        if not set(s.contributors) <= set(view.cohort):
            raise IntegrityError("the survivor list names members outside the cohort")
        if tuple(s.faulty) != tuple(r.faulty) or not set(s.faulty) <= set(view.cohort) - set(s.contributors):
            raise IntegrityError("the members named as faulty are not the evidence's, or were counted as contributors")
        if expected_faulty is not None and tuple(sorted(s.faulty)) != tuple(sorted(expected_faulty)):
            raise IntegrityError(f"the members named as faulty ({list(s.faulty)}) are not those whose own signed "
                                 f"message fails a check ({list(expected_faulty)})")
        if survivor_root(s.contributors) != r.survivor_root or len(s.contributors) != r.survivor_count:
            raise IntegrityError("the survivor root does not match the evidence")
        if self.ledger is not None:  # the committee's scores: the settlement is the split of the chain's reveals
            assert checked.evidence is not None
            check_scored(self.ledger, self.blobs, self.task_id, r.round_id, r.attempt, view.cohort, r.committee,
                         r.aggregator, r.model_hash, checked.evidence, self.reward_pool,
                         previous_reputation(view, self.blobs))
            if self.ledger.reward_unpaid(self.task_id, r.round_id) != s.unpaid(self.reward_pool):
                raise IntegrityError("the part of the pool posted as unpaid is not what the settlement leaves unpaid")
        else:
            expected = settle(view, s.contributors, s.faulty, self.reward_pool, self.blobs)
            if expected.rewards != s.rewards or expected.reputation != s.reputation:
                raise IntegrityError("the rewards or reputation differ from the protocol's rule")
        if s.rewards and reward_tree(self.task_id, r.round_id, s.rewards).root != r.reward_root:
            raise IntegrityError("the reward root does not match the evidence")
        if s.reputation and reputation_tree(self.task_id, r.round_id, s.reputation).root != r.reputation_root:
            raise IntegrityError("the reputation root does not match the evidence")



def same_state(a: SecureState, b: SecureState) -> bool:
    if a.clip_norm != b.clip_norm or a.released != b.released:
        return False
    sa = torch.load(io.BytesIO(a.strategy_state), weights_only=True)
    sb = torch.load(io.BytesIO(b.strategy_state), weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])) for k in sa)


def _drain(transport: Transport, address: str) -> list[Envelope]:
    out = []
    while (env := transport.receive(address)) is not None:
        out.append(env)
    return out
