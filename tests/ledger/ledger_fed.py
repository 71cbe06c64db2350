"""Helpers of the ledger tests: deployment parameters, a task, a small federation (`Fed`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from fedledger.ledger import DeployParams, Ledger, Role, RoundInfo, RoundResult, TaskSpec, to_fixed
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.claims import ClaimTree, reward_tree
from fedledger.secagg.keys import Identity

E = 10**18

TEST_PARAMS = DeployParams(
    token_supply=10**9 * E,
    unbonding_delay=5_000,
    min_stakes=(10 * E, 100 * E, 100 * E, 0),
    max_reward_per_round=1_000 * E,
    slash_bps=1_000,
    validator_share_bps=1_000,
    voting_period=600,
    timelock=300,
    gov_quorum_bps=2_000,
    proposal_threshold=100 * E,
    task_deposit=100 * E,
    min_window=60,
    max_window=2_000,
    min_committee=3,
    max_committee=32,
)
TASK = TaskSpec(
    spec_hash=hashlib.sha256(b"task spec").digest(),
    reward_per_round=100 * E,
    rounds=3,
    privacy_budget=to_fixed(3.0),
    committee_size=3,
    quorum_bps=6667,
    submit_window=1_000,
    vote_window=1_000,
    privacy_per_round=to_fixed(1.0),
)

needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")


def h(label: str | bytes) -> bytes:
    return hashlib.sha256(label if isinstance(label, bytes) else label.encode()).digest()


def key(label: str | bytes) -> bytes:
    """A valid Ed25519 identity key (registration refuses malformed and small-order keys), public for tests."""
    return Identity(h(label)).public_bytes


@dataclass
class Fed:
    """A small federation: 1 owner, 2 aggregators, 5 validators, 4 trainers, one task."""

    ledger: Ledger
    owner: Ledger
    aggregators: list[Ledger]
    validators: list[Ledger]
    trainers: list[Ledger]
    task_id: int
    by_address: dict[str, Ledger] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in [self.owner, *self.aggregators, *self.validators, *self.trainers]:
            self.by_address[m.address] = m

    def rebind(self, ledger: Ledger) -> Fed:
        """The same members and task on another session (after a restart)."""

        def on(m: Ledger) -> Ledger:
            return ledger.as_account(m.account)

        return Fed(
            ledger,
            on(self.owner),
            [on(m) for m in self.aggregators],
            [on(m) for m in self.validators],
            [on(m) for m in self.trainers],
            self.task_id,
        )

    def at(self, address: str) -> Ledger:
        return self.by_address[address]

    def outsider(self, info: RoundInfo) -> Ledger:
        return next(v for v in self.validators if v.address not in info.committee)

    def open(self) -> RoundInfo:
        """Open the next round; its privacy bound is the contract's (spent + TASK's 1.0 per round, within 3.0)."""
        return self.owner.open_round(self.task_id)

    def rewards(self, info: RoundInfo, amount: int = 20 * E) -> ClaimTree:
        return reward_tree(self.task_id, info.round_id, {t.address: amount for t in self.trainers})

    def submit(
        self,
        info: RoundInfo,
        *,
        tree: ClaimTree | None = None,
        spent: float = 1.0,
        rep: bytes = b"",
        faulty: tuple[str, ...] = (),
    ) -> None:
        tree = tree or self.rewards(info)
        self.at(info.aggregator).submit_result(
            self.task_id,
            info.round_id,
            RoundResult(
                model_hash=h(f"model {info.round_id}/{info.attempt}"),
                evidence_root=h("evidence"),
                survivor_root=h("survivors"),
                survivor_count=len(self.trainers),
                privacy_spent=to_fixed(spent),
                reputation_root=rep or b"\x00" * 32,
                reward_root=tree.root,
                faulty=faulty,
            ),
        )

    def vote_all(self, info: RoundInfo, accept: bool = True) -> None:
        for v in info.committee:
            self.at(v).vote(self.task_id, info.round_id, accept)

    def full_round(self, privacy: float = 1.0) -> tuple[RoundInfo, ClaimTree]:
        info = self.open()
        tree = self.rewards(info)
        self.submit(info, tree=tree, spent=privacy)
        self.vote_all(info)
        self.owner.finalize(self.task_id, info.round_id)
        return info, tree


def build_fed(ledger: Ledger, *, validator_stakes: tuple[int, ...] = (100, 150, 200, 250, 300)) -> Fed:
    def member(i: int, role: Role, stake: int) -> Ledger:
        m = ledger.dev(i)
        ledger.transfer_utility(m.address, 10_000 * E)
        m.register(role, key(f"x25519 {i}"), h(f"meta {i}"))
        if stake:
            m.stake(stake * E)
        return m

    owner = member(1, Role.TASK_OWNER, 0)
    aggregators = [member(10 + i, Role.AGGREGATOR, 200) for i in range(2)]
    validators = [member(20 + i, Role.VALIDATOR, s) for i, s in enumerate(validator_stakes)]
    trainers = [member(40 + i, Role.TRAINER, 10) for i in range(4)]
    task_id = owner.create_task(TASK)
    for m in [*aggregators, *validators, *trainers]:
        m.join_task(task_id)
    return Fed(ledger, owner, aggregators, validators, trainers, task_id)


def pass_proposal(fed: Fed, pid: int) -> None:
    """Every validator votes for proposal `pid`; wait out the voting period and timelock; execute."""
    fed.ledger.advance_time(1)
    for v in fed.validators:
        v.vote_proposal(pid, True)
    fed.ledger.advance_time(TEST_PARAMS.voting_period + 1)
    fed.owner.queue(pid)
    fed.ledger.advance_time(TEST_PARAMS.timelock)
    fed.trainers[0].execute(pid)
