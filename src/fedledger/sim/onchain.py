"""The chain side of a simulated federation: who is who, and one settled round per training round.

With `--chain auto|memory|URL` the simulation runs every round through the `TaskManager` contract:

1. the task owner opens the round; the seed from chain randomness draws the aggregator, the validator
   committee and (off chain, by everyone) the trainer cohort;
2. the aggregator stores the new model and the round's evidence in the content-addressed blob store and
   posts one transaction (model hash, evidence Merkle root, survivor root, privacy spent, reward root);
3. each committee member fetches the blobs by hash, checks them against the chain, recomputes the update
   where updates are visible, evaluates the model on its own held-out data and votes;
4. anyone finalizes at quorum: rewards are minted behind the posted Merkle root, privacy spent is recorded.

Per round the chain sees 3 + committee-size transactions whatever the number of trainers. Members and the
task are set up once and written to `DIR/chain/federation.json`, so a restarted run finds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.merkle import MerkleTree
from fedledger.core.vectors import to_bytes
from fedledger.ledger import Ledger, Role, RoundInfo, RoundResult, RoundStatus, TaskSpec, to_fixed
from fedledger.ledger.claims import reward_tree
from fedledger.ledger.types import ZERO32
from fedledger.protocol.evidence import Evidence, RoundManifest, check_round
from fedledger.sim.attacks import AttackPlan

TOKEN = 10**18
AGGREGATORS = 3
MAX_ATTEMPTS = 5  # a round rejected this many times in a row stops the run
FEDERATION_FILE = "federation.json"
REWARD_PER_ROUND = 100 * TOKEN
VALIDATOR_SHARE_BPS = 1_000  # DeployParams.validator_share_bps: the validators' cut of each round's reward
STAKES = {Role.TRAINER: 10 * TOKEN, Role.AGGREGATOR: 200 * TOKEN, Role.VALIDATOR: 300 * TOKEN}
#: dev-account index ranges for each role (trainer i is account TRAINER_BASE + i)
OWNER_ACCOUNT, AGGREGATOR_BASE, VALIDATOR_BASE, TRAINER_BASE = 1, 10, 40, 100


class Federation:
    """The federation's accounts and task on a ledger; created once per output directory."""

    def __init__(self, ledger: Ledger, out: Path, members: int, committee: int, *, rounds: int,
                 privacy_budget: float | None, spec: dict[str, object], blobs: BlobStore,
                 trainer_keys: Sequence[bytes]) -> None:
        self.ledger = ledger
        self.path = out / "chain" / FEDERATION_FILE
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved["members"] != members:
                raise IntegrityError(f"{self.path} describes {saved['members']} members, this run has {members}")
            self.task_id = int(saved["task_id"])
            if ledger.task_count() < self.task_id:
                raise IntegrityError(
                    f"{self.path} names task {self.task_id}, but the chain has no such task (an in-memory chain "
                    "keeps no state between runs; use --chain auto or a new --out)"
                )
        else:
            spec_hash = blobs.put(json.dumps(spec, sort_keys=True).encode())  # auditors fetch the spec by its hash
            self.task_id = self._setup(members, committee, rounds, privacy_budget, spec_hash, trainer_keys)
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
               trainer_keys: Sequence[bytes]) -> int:
        def join(account: int, role: Role, key: bytes) -> None:
            m = self.ledger.dev(account)
            stake = STAKES.get(role, 0)
            if stake:
                self.ledger.transfer_utility(m.address, stake)
            m.register(role, key, domain_hash(Usage.TASK_SPEC, b"member", str(account).encode()))
            if stake:
                m.stake(stake)

        for i in range(AGGREGATORS):
            join(AGGREGATOR_BASE + i, Role.AGGREGATOR, domain_hash(Usage.SEED, b"aggregator", bytes([i])))
        for i in range(max(committee, 3)):
            join(VALIDATOR_BASE + i, Role.VALIDATOR, domain_hash(Usage.SEED, b"validator", bytes([i])))
        for i in range(members):
            join(TRAINER_BASE + i, Role.TRAINER, trainer_keys[i])
        join(OWNER_ACCOUNT, Role.TASK_OWNER, domain_hash(Usage.SEED, b"owner"))
        task = TaskSpec(
            spec_hash=spec_hash,
            reward_per_round=REWARD_PER_ROUND,
            rounds=rounds,
            privacy_budget=to_fixed(budget) if budget is not None else 1,
            committee_size=committee,
        )
        return int(self.ledger.dev(OWNER_ACCOUNT).create_task(task))

    def registered_keys(self) -> dict[int, bytes]:
        """Each trainer's public key as registered on chain: the PKI of secure aggregation."""
        keys = {}
        for i, trainer in enumerate(self.trainers):
            member = self.ledger.member(trainer.address)
            if member is None:
                raise IntegrityError(f"trainer {i} ({trainer.address}) is not registered on chain")
            keys[i] = member.pubkey
        return keys

    def cohort(self, info: RoundInfo, size: int) -> np.ndarray:
        """Member numbers of the round's trainer cohort, drawn off chain from the round seed."""
        addresses = self.ledger.cohort(self.task_id, info.round_id, size)
        return np.sort(np.array([self.index_of[a] for a in addresses], dtype=np.int64))


class ChainRounds:
    """Opens, submits, validates and finalizes each round of a simulation on the ledger."""

    def __init__(self, federation: Federation, blobs: BlobStore, evaluate: Callable[[int, torch.Tensor], float],
                 *, accuracy_tolerance: float = 0.05) -> None:
        self.fed = federation
        self.blobs = blobs
        self.evaluate = evaluate  # (validator number, model) -> accuracy on that validator's own held-out data
        self.tolerance = accuracy_tolerance
        self.accepted_accuracy: float | None = None
        self.malicious: str | None = None  # address of the aggregator that tampers, under that attack

    @classmethod
    def connect(cls, chain: str, out: Path, *, members: int, committee: int, rounds: int,
                privacy_budget: float | None, spec: dict[str, object], trainer_keys: Sequence[bytes],
                evaluate: Callable[[int, torch.Tensor], float]) -> ChainRounds:
        blobs = BlobStore(out / "blobs")
        ledger = Ledger.connect(chain, out)
        try:
            fed = Federation(ledger, out, members, committee, rounds=rounds, privacy_budget=privacy_budget, spec=spec,
                             blobs=blobs, trainer_keys=trainer_keys)
        except BaseException:
            ledger.close()
            raise
        return cls(fed, blobs, evaluate)

    @property
    def ledger(self) -> Ledger:
        return self.fed.ledger

    def close(self) -> None:
        self.ledger.close()

    def tx_count(self) -> int:
        return sum(len(gas) for gas in self.ledger.gas_log.values())

    def store(self, model: torch.Tensor) -> bytes:
        return self.blobs.put(to_bytes(model))

    def open(self, round_id: int, privacy_bound: float | None) -> RoundInfo:
        task = self.ledger.task(self.fed.task_id)
        if task.current_round != round_id - 1:
            raise IntegrityError(
                f"the chain's task {self.fed.task_id} is at round {task.current_round}, this run at round "
                f"{round_id - 1}; the output directory's checkpoint and chain state disagree"
            )
        bound = to_fixed(privacy_bound) if privacy_bound is not None else None
        info = self.fed.owner.open_round(self.fed.task_id, bound)
        self.ledger.verify_selection(self.fed.task_id, info.round_id)
        return info

    def cohort(self, info: RoundInfo, size: int) -> np.ndarray:
        return self.fed.cohort(info, size)

    def settle(self, info: RoundInfo, model: torch.Tensor, evidence: Evidence, contributors: np.ndarray | None,
               privacy_spent: float | None, attacks: AttackPlan | None = None) -> tuple[torch.Tensor, int]:
        """Submit, let the committee validate and vote, finalize; reopen a rejected round with a new
        aggregator and committee. Returns (the model the chain finalized, attempts it took)."""
        attacks = attacks or AttackPlan()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            posted = model
            if attacks.malicious_aggregator and self.malicious is None:
                self.malicious = info.aggregator  # the first aggregator drawn turns malicious for the whole run
            if info.aggregator == self.malicious:
                posted = model + 0.05 * torch.randn(model.shape, generator=torch.Generator().manual_seed(attempt))
            self._submit(info, posted, evidence, contributors, privacy_spent)
            accuracies = []
            lazy = {v.address for v in self.fed.validators[: attacks.lazy_validators]}
            for v, member in enumerate(info.committee):
                ok, accuracy = (True, float("nan")) if member in lazy else self._validate(v, info)
                self.fed.at(member).vote(self.fed.task_id, info.round_id, ok)
                accuracies.append(accuracy)
            if self.fed.owner.finalize(self.fed.task_id, info.round_id) is RoundStatus.FINALIZED:
                self.accepted_accuracy = float(np.nanmedian(accuracies)) if not np.isnan(accuracies).all() else None
                return posted, attempt
            info = self.fed.owner.reopen(self.fed.task_id, info.round_id)
        raise IntegrityError(
            f"round {info.round_id} was rejected by the committee {MAX_ATTEMPTS} times in a row (a tampered result, "
            "or an honest aggregate that lowers the validators' accuracy, e.g. under poisoning: try a robust strategy)"
        )

    def _submit(self, info: RoundInfo, model: torch.Tensor, evidence: Evidence, contributors: np.ndarray | None,
                privacy_spent: float | None) -> None:
        """The aggregator's one transaction: model hash, evidence root, survivors, privacy, rewards."""
        manifest = RoundManifest(self.store(model), self.blobs.put(evidence.to_bytes()))
        survivors = [] if contributors is None else [self.fed.trainers[int(i)].address for i in contributors]
        pool = REWARD_PER_ROUND - REWARD_PER_ROUND * VALIDATOR_SHARE_BPS // 10_000
        reward_root = ZERO32
        if survivors:
            shares = dict.fromkeys(survivors, pool // len(survivors))
            reward_root = reward_tree(self.fed.task_id, info.round_id, shares).root
        self.fed.at(info.aggregator).submit_result(
            self.fed.task_id,
            info.round_id,
            RoundResult(
                model_hash=manifest.model,
                evidence_root=manifest.store(self.blobs),
                survivor_root=MerkleTree([a.encode() for a in survivors] or [b""]).root,
                survivor_count=len(survivors),
                privacy_spent=to_fixed(privacy_spent) if privacy_spent is not None else 0,
                reward_root=reward_root,
            ),
        )

    def _validate(self, validator: int, info: RoundInfo) -> tuple[bool, float]:
        """One committee member's check, from the chain record and the blobs alone."""
        record = self.ledger.round(self.fed.task_id, info.round_id)
        try:
            checked = check_round(self.blobs, record.model_hash, record.evidence_root)
        except IntegrityError:
            return False, float("nan")
        accuracy = self.evaluate(validator, checked.model)
        baseline = self.accepted_accuracy
        return baseline is None or accuracy >= baseline - self.tolerance, accuracy

    def summary(self) -> dict[str, object]:
        task = self.ledger.task(self.fed.task_id)
        return {
            "backend": self.ledger.backend.describe(),
            "task_id": self.fed.task_id,
            "finalized_rounds": task.finalized_rounds,
            "privacy_spent": task.privacy_spent / TOKEN,
            "gas": self.ledger.gas_report(),
            "contracts": dict(self.ledger.deployment.addresses),
        }
