"""The chain side of a simulated federation: who is who, and the roles that run each round.

With `--chain auto|memory|URL` every training round is run by the roles of `fedledger.protocol.roles`
(task owner, trainers, aggregators, validators), each with its own account, exchanging messages over an
in-process transport and driven by the `TaskManager` contract's state:

1. the task owner opens the round; the seed from chain randomness draws the aggregator, the validator
   committee and (off chain, by everyone) the trainer cohort;
2. trainers fetch the global model by hash and send their updates to the aggregator (with member-level DP,
   the cohort's updates reach it only as the SecAgg+ sum);
3. the aggregator stores the new model and the round's evidence in the content-addressed blob store and
   posts one transaction (model hash, evidence Merkle root, survivor root, privacy spent, reward and
   reputation roots);
4. each committee member re-checks from the chain and the blobs and votes; the owner finalizes at quorum
   or reopens a rejected or stalled round.

`ChainRounds.run` drives the roles to quiescence, then moves the chain clock past the next deadline. Per round
the chain sees 3 + committee-size transactions whatever the number of trainers. Members and the task are
set up once and written to `DIR/chain/federation.json`, so a restarted run finds them, and a run killed
inside a round resumes that round from the chain and the blob store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import DataError, IntegrityError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.rng import Entropy
from fedledger.core.vectors import to_bytes
from fedledger.ledger import Ledger, Role, RoundStatus, TaskSpec, to_fixed
from fedledger.protocol import roles
from fedledger.protocol.claims import apply_latest_reputation, claim_rewards
from fedledger.protocol.roles import (
    Aggregation,
    Aggregator,
    Key,
    LocalWork,
    Network,
    RoundView,
    StageClock,
    TaskOwner,
    Trainer,
    Validator,
)
from fedledger.protocol.score_flow import next_scoring_deadline
from fedledger.protocol.secure import SecureRules
from fedledger.protocol.signing import Registry
from fedledger.protocol.terms import join_task
from fedledger.protocol.transport import InProcessTransport
from fedledger.secagg.keys import Identity
from fedledger.sim.attacks import AttackPlan, FramingAggregator, TamperingAggregator, UnderReportingAggregator
from fedledger.zk.update import UpdateProver

TOKEN = 10**18
AGGREGATORS = 3
MAX_ATTEMPTS = 5  # a round rejected this many times in a row stops the run
FEDERATION_FILE = "federation.json"
REWARD_PER_ROUND = 100 * TOKEN
VALIDATOR_SHARE_BPS = 1_000  # DeployParams.validator_share_bps: the validators' cut of each round's reward
CONTRIBUTOR_POOL = REWARD_PER_ROUND - REWARD_PER_ROUND * VALIDATOR_SHARE_BPS // 10_000
QUORUM_BPS = 6_666  # under the 2/3 stake rule, so that 2 of 3 equal validators finalize
DEADLINE_STEP = 3_601  # seconds the chain clock moves when every role waits: past TaskSpec's windows
STAKES = {Role.TRAINER: 10 * TOKEN, Role.AGGREGATOR: 200 * TOKEN, Role.VALIDATOR: 300 * TOKEN}
#: dev-account index ranges for each role (trainer i is account TRAINER_BASE + i)
OWNER_ACCOUNT, AGGREGATOR_BASE, VALIDATOR_BASE, TRAINER_BASE = 1, 10, 40, 100


class Federation:
    """The federation's accounts and task on a ledger; created once per output directory."""

    def __init__(self, ledger: Ledger, out: Path, members: int, committee: int, *, rounds: int,
                 privacy_budget: float | None, spec: dict[str, object], blobs: BlobStore,
                 trainer_keys: Sequence[bytes], role_keys: Mapping[int, bytes] | None = None,
                 data_commitments: Sequence[bytes] | None = None, privacy_per_round: int | None = None) -> None:
        self.ledger = ledger
        self.path = out / "chain" / FEDERATION_FILE
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                saved_members, self.task_id = int(saved["members"]), int(saved["task_id"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise DataError(f"{self.path} is damaged ({type(e).__name__}: it should hold the task id and the "
                                "member count); restore it, or choose another --out") from None
            if saved_members != members:
                raise IntegrityError(f"{self.path} describes {saved_members} members, this run has {members}")
            if ledger.task_count() < self.task_id:
                raise IntegrityError(
                    f"{self.path} names task {self.task_id}, but the chain has no such task (an in-memory chain "
                    "keeps no state between runs; use --chain auto or a new --out)"
                )
        else:
            spec_hash = blobs.put(json.dumps(spec, sort_keys=True).encode())  # auditors fetch the spec by its hash
            self.task_id = self._setup(members, committee, rounds, privacy_budget, spec_hash, trainer_keys,
                                       role_keys or {}, data_commitments, privacy_per_round)
            self._join_all(self.task_id, members, committee, blobs)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"task_id": self.task_id, "members": members}))
        self.owner = ledger.dev(OWNER_ACCOUNT)
        self.trainers = [ledger.dev(TRAINER_BASE + i) for i in range(members)]
        self.index_of = {t.address: i for i, t in enumerate(self.trainers)}
        self.aggregators = [ledger.dev(AGGREGATOR_BASE + i) for i in range(AGGREGATORS)]
        self.validators = [ledger.dev(VALIDATOR_BASE + i) for i in range(max(committee, 3))]
        self._accounts = {m.address: m for m in (*self.trainers, *self.aggregators, *self.validators)}

    def at(self, address: str) -> Ledger:
        return self._accounts[address]

    def _setup(self, members: int, committee: int, rounds: int, budget: float | None, spec_hash: bytes,
               trainer_keys: Sequence[bytes], role_keys: Mapping[int, bytes],
               data_commitments: Sequence[bytes] | None, per_round: int | None = None) -> int:
        def join(account: int, role: Role, key: bytes, metadata: bytes | None = None) -> None:
            m = self.ledger.dev(account)
            stake = STAKES.get(role, 0)
            if stake:
                self.ledger.transfer_utility(m.address, stake)
            m.register(role, key, metadata or domain_hash(Usage.TASK_SPEC, b"member", str(account).encode()))
            if stake:
                m.stake(stake)

        def key_of(account: int, label: bytes) -> bytes:  # each role's Ed25519 key signs its messages
            # without a given key: a valid Ed25519 key derived from a public label (such an account cannot sign)
            given = role_keys.get(account)
            return given or Identity(domain_hash(Usage.SEED, label, str(account).encode())).public_bytes

        for i in range(AGGREGATORS):
            join(AGGREGATOR_BASE + i, Role.AGGREGATOR, key_of(AGGREGATOR_BASE + i, b"aggregator"))
        for i in range(max(committee, 3)):
            join(VALIDATOR_BASE + i, Role.VALIDATOR, key_of(VALIDATOR_BASE + i, b"validator"))
        for i in range(members):
            join(TRAINER_BASE + i, Role.TRAINER, trainer_keys[i],
                 data_commitments[i] if data_commitments is not None else None)
        join(OWNER_ACCOUNT, Role.TASK_OWNER, key_of(OWNER_ACCOUNT, b"owner"))
        owner = self.ledger.dev(OWNER_ACCOUNT)  # bonds the deposit and escrows the whole reward budget
        self.ledger.transfer_utility(owner.address, REWARD_PER_ROUND * rounds + self.ledger.params()["task_deposit"])
        task = TaskSpec(
            spec_hash=spec_hash,
            reward_per_round=REWARD_PER_ROUND,
            rounds=rounds,
            privacy_budget=to_fixed(budget) if budget is not None else 1,
            committee_size=committee,
            quorum_bps=QUORUM_BPS,
            # the privacy plan is fixed with the spec: each round's bound derives from it on chain
            privacy_per_round=per_round if budget is not None else None,
        )
        return int(owner.create_task(task))

    def _join_all(self, task_id: int, members: int, committee: int, blobs: BlobStore) -> None:
        """Every member joins (only joined members are drawn), each after checking the terms the owner committed
        against the spec (`protocol.terms.join_task`), as a member's own node does."""
        for account in [*(AGGREGATOR_BASE + i for i in range(AGGREGATORS)),
                        *(VALIDATOR_BASE + i for i in range(max(committee, 3))),
                        *(TRAINER_BASE + i for i in range(members))]:
            join_task(self.ledger.dev(account), task_id, blobs.get)

    def registered_keys(self) -> dict[int, bytes]:
        """Each trainer's public key as registered on chain: the PKI of secure aggregation."""
        keys = {}
        for i, trainer in enumerate(self.trainers):
            member = self.ledger.member(trainer.address)
            if member is None:
                raise IntegrityError(f"trainer {i} ({trainer.address}) is not registered on chain")
            keys[i] = member.pubkey
        return keys



class ChainRounds:
    """The federation's roles on a ledger, and the driver that runs each round to finalization."""

    def __init__(self, federation: Federation, blobs: BlobStore,
                 evaluators: Sequence[Callable[[torch.Tensor], float]], held_out: Sequence[int | None] = (None,),
                 clock: StageClock | None = None) -> None:
        self.fed = federation
        self.blobs = blobs
        self.evaluators = evaluators  # validator v's accuracy on its own held-out data
        self.held_out = held_out  # examples behind each evaluator
        self.transport = InProcessTransport()
        self.clock = clock or StageClock()
        self.initial_model: bytes | None = None
        self.owner = TaskOwner(federation.owner, federation.task_id, self.transport, blobs, self.clock)
        self._cohorts: dict[Key, tuple[str, ...]] = {}
        self.aggregators: list[Aggregator] = []
        self.validators: list[Validator] = []
        self.trainers: list[Trainer] = []
        self.on_progress: Callable[[str, RoundView], None] = lambda stage, view: None
        self._attacks = AttackPlan()
        self._armed = False
        self.net: Network | None = None

    @classmethod
    def connect(cls, chain: str, out: Path, *, members: int, committee: int, rounds: int,
                privacy_budget: float | None, spec: dict[str, object], trainer_keys: Sequence[bytes],
                privacy_per_round: int | None = None,
                evaluators: Sequence[Callable[[torch.Tensor], float]], held_out: Sequence[int | None] = (None,),
                clock: StageClock | None = None, role_keys: Mapping[int, bytes] | None = None,
                data_commitments: Sequence[bytes] | None = None) -> ChainRounds:
        blobs = BlobStore(out / "blobs")
        ledger = Ledger.connect(chain, out)
        try:
            fed = Federation(ledger, out, members, committee, rounds=rounds, privacy_budget=privacy_budget, spec=spec,
                             blobs=blobs, trainer_keys=trainer_keys, role_keys=role_keys,
                             data_commitments=data_commitments, privacy_per_round=privacy_per_round)
        except BaseException:
            ledger.close()
            raise
        return cls(fed, blobs, evaluators, held_out, clock)

    @property
    def ledger(self) -> Ledger:
        return self.fed.ledger

    def close(self) -> None:
        self.ledger.close()

    def tx_count(self) -> int:
        return sum(len(gas) for gas in self.ledger.gas_log.values())

    def store(self, model: torch.Tensor) -> bytes:
        return self.blobs.put(to_bytes(model))

    # -- roles -------------------------------------------------------------------------------------
    def network(self) -> Network:
        """Chain id, task manager, the chain as PKI and the trainers' member numbers: what roles sign against."""
        ledger = self.ledger

        def lookup(address: str) -> tuple[bytes, bytes] | None:
            member = ledger.member(address)
            return None if member is None else (member.pubkey, member.metadata)

        return Network(ledger.backend.chain_id, ledger.deployment.addresses["task_manager"], Registry(lookup),
                       dict(self.fed.index_of))

    def build_roles(self, *, aggregation: Aggregation | None, work: LocalWork | None, attacks: AttackPlan,
                    drops: Callable[[int, Key], bool], identities: Mapping[str, Identity],
                    rules: SecureRules | None = None, prover: UpdateProver | None = None,
                    entropy: Entropy | None = None,
                    strategy: Callable[[], object] | None = None, private: bool = False,
                    wrap: Callable[[roles.Role], roles.Role] = lambda role: role) -> None:
        """One role per account, each signing with its own registered key. `rules`: member-level DP through
        SecAgg+, run by the roles themselves. `work` None: no trainer roles (the aggregation computes the
        cohort's updates itself: member-level DP without SecAgg+). `wrap` injects attacks (it may return a
        subclass instance)."""
        fed, t = self.fed, self.transport
        self._attacks = attacks
        net = self.network()
        self.net = net
        self.aggregators = [
            wrap(Aggregator(a, fed.task_id, t, self.blobs, aggregation=aggregation, reward_pool=CONTRIBUTOR_POOL,
                            index_of=fed.index_of, clock=self.clock, identity=identities[a.address], net=net,
                            rules=rules, deterministic=entropy is not None and entropy.deterministic,
                            strategy=strategy))
            for a in fed.aggregators
        ]
        behaviour = ["lazy"] * attacks.lazy_validators + ["silent"] * attacks.silent_validators
        self.validators = [
            Validator(v, fed.task_id, t, self.blobs, evaluate=self.evaluators[i % len(self.evaluators)],
                      reward_pool=CONTRIBUTOR_POOL, held_out=self.held_out[i % len(self.held_out)],
                      behaviour=behaviour[i] if i < len(behaviour) else "honest", clock=self.clock,
                      identity=identities[v.address], net=net, rules=rules, strategy=strategy, private=private)
            for i, v in enumerate(fed.validators)
        ]
        self.trainers = [] if work is None else [
            wrap(Trainer(m, fed.task_id, t, self.blobs, member=i, work=work, drops=partial(drops, i), clock=self.clock,
                         identity=identities[m.address], net=net, rules=rules, prover=prover,
                         entropy=entropy))
            for i, m in enumerate(fed.trainers)
        ]

    def _arm_aggregator_attacks(self, cohort_size: int) -> None:
        """The aggregator drawn for round 1's first attempt is the one that misbehaves, for the whole run."""
        attacks = self._attacks
        if not (attacks.malicious_aggregator or attacks.late_aggregator or attacks.framing_aggregator
                or attacks.privacy_underreport):
            return
        self.ledger.index.sync()
        first = self.ledger.expected_selection(self.fed.task_id, 1, attempt=0)[0]
        for i, agg in enumerate(self.aggregators):
            if agg.address == first:
                if attacks.malicious_aggregator:
                    self.aggregators[i] = agg = TamperingAggregator.wrapping(agg)
                if attacks.framing_aggregator:  # frames the lowest-numbered member of round 1's cohort
                    cohort = self.ledger.cohort(self.fed.task_id, 1, cohort_size)
                    victim = min(self.fed.index_of[a] for a in cohort)
                    self.aggregators[i] = agg = FramingAggregator.wrapping(agg, victim)
                if attacks.privacy_underreport:
                    self.aggregators[i] = agg = UnderReportingAggregator.wrapping(agg)
                if attacks.late_aggregator:
                    agg.faults.misses_deadline.add((1, 0))  # attempts count from 0

    # -- observing the chain -----------------------------------------------------------------------
    def observe(self, round_id: int, cohort_size: int) -> RoundView:
        record = self.ledger.round(self.fed.task_id, round_id)
        key = (round_id, record.attempt)
        if record.status not in (RoundStatus.NONE, RoundStatus.SEALING) and key not in self._cohorts:
            self._cohorts[key] = tuple(self.ledger.cohort(self.fed.task_id, round_id, cohort_size))
        previous = self.ledger.round(self.fed.task_id, round_id - 1) if round_id > 1 else None
        assert self.initial_model is not None
        return RoundView(
            record=record,
            cohort=self._cohorts.get(key, ()),
            global_model=previous.model_hash if previous is not None else self.initial_model,
            previous_evidence=previous.evidence_root if previous is not None else None,
            now=self.ledger.timestamp,
        )

    def cohort_members(self, view: RoundView) -> np.ndarray:
        return self.cohort_members_at(view.key)

    def cohort_members_at(self, key: Key) -> np.ndarray:
        """Member numbers of the cohort drawn for (round, attempt), sorted."""
        return np.sort(np.array([self.fed.index_of[a] for a in self._cohorts[key]], dtype=np.int64))

    # -- after the rounds --------------------------------------------------------------------------
    def claim_rewards(self) -> None:
        """Each trainer claims its reward for every finalized round and applies its latest reputation score,
        with Merkle proofs built from the rounds' evidence (one transaction each, off the rounds' path)."""
        claim_rewards(self.ledger, self.blobs, self.fed.task_id, signer=self.fed.at)
        apply_latest_reputation(self.ledger, self.blobs, self.fed.task_id, signer=self.fed.at)

    def balances(self) -> dict[str, dict[str, object]]:
        """Reward tokens, stake and reputation of every account, in whole tokens."""
        out = {}
        for label, accounts in (("trainer", self.fed.trainers), ("aggregator", self.fed.aggregators),
                                ("validator", self.fed.validators)):
            for i, a in enumerate(accounts):
                out[f"{label} {i}"] = {"address": a.address, "reward": self.ledger.reward_balance(a.address) / TOKEN,
                                       "stake": self.ledger.stake_of(a.address) / TOKEN,
                                       "reputation": self.ledger.reputation_of(a.address, self.fed.task_id)}
        return out

    # -- one round ---------------------------------------------------------------------------------
    def run(self, round_id: int, cohort_size: int, flush: Callable[[], bool] = lambda: False) -> RoundView:
        """Drive the roles until round `round_id` is finalized; returns the finalized view.

        Resumes a round a previous process left open, submitted or rejected. `flush` runs the trainers'
        pending local work (batched in a simulation) and says whether there was any.
        """
        task = self.ledger.task(self.fed.task_id)
        if task.current_round < round_id - 1:
            raise IntegrityError(
                f"the chain's task {self.fed.task_id} is at round {task.current_round}, this run at round "
                f"{round_id - 1}; the output directory's checkpoint and chain state disagree"
            )
        if task.current_round == round_id - 1:
            self.owner.open()  # the round's privacy bound is the contract's, from the task's plan
        if not self._armed:
            self._arm_aggregator_attacks(cohort_size)
            self._armed = True
        active: list[roles.Role] = [self.owner, *self.trainers, *self.aggregators, *self.validators]
        idle, stalls, last = False, 0, None
        while True:
            view = self.observe(round_id, cohort_size)
            if view.record.status is RoundStatus.FINALIZED:
                return view
            if view.record.attempt >= MAX_ATTEMPTS:
                raise IntegrityError(
                    f"round {round_id} was redone {MAX_ATTEMPTS} times without a result the committee accepts "
                    "(a tampered result, or an honest aggregate that lowers the validators' accuracy, e.g. under "
                    "poisoning: try a robust strategy)"
                )
            if (view.record.status, view.key) != last:
                last = (view.record.status, view.key)
                self.on_progress(view.record.status.name.lower(), view)
            progressed = any([role.step(view, idle) for role in active]) | flush()
            if progressed:
                idle, stalls = False, 0
            elif not idle:
                idle = True  # one more pass with the collection and vote deadlines reached
            else:
                stalls += 1
                if stalls > 2:
                    raise IntegrityError(f"round {round_id} is stuck in status {view.record.status.name}")
                # let the chain's next deadline pass: the score commit-reveal's first, within the submit window
                step = None
                if view.record.status is RoundStatus.OPEN:
                    step = next_scoring_deadline(self.ledger.scoring(self.fed.task_id, round_id, view.record.attempt),
                                                 view.now)
                self.ledger.advance_time(step or DEADLINE_STEP)
                idle = False

    def summary(self) -> dict[str, object]:
        task = self.ledger.task(self.fed.task_id)
        return {
            "backend": self.ledger.backend.describe(),
            "task_id": self.fed.task_id,
            "finalized_rounds": task.finalized_rounds,
            "privacy_spent": task.privacy_spent / TOKEN,
            "gas": self.ledger.gas_report(),
            "contracts": dict(self.ledger.deployment.addresses),
            "slashed": self._slashes(),
            "balances": self.balances(),
        }

    def _slashes(self) -> list[dict[str, object]]:
        """Every slash of this task's members, from the event index."""
        return [{"round": x.round_id, "attempt": x.attempt, "member": x.member, "amount": x.amount / TOKEN,
                 "reason": x.reason.name.lower()} for x in self.ledger.slashes(self.fed.task_id)]
