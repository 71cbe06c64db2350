"""Typed values the ledger client takes and returns.

Amounts are integers in the token's smallest unit (18 decimals). Privacy budgets and spends
are fixed point with 18 decimals too (`to_fixed(3.0)` is epsilon 3); hashes are 32-byte `bytes`;
addresses are checksummed strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from typing import NewType

TaskId = NewType("TaskId", int)
RoundId = NewType("RoundId", int)
Address = NewType("Address", str)

FIXED_ONE = 10**18
ZERO32 = b"\x00" * 32


def to_fixed(value: float | str | Decimal) -> int:
    """A privacy amount (epsilon) as an 18-decimal fixed-point integer, rounded up (conservative)."""
    d = Decimal(str(value)) * FIXED_ONE
    n = int(d)
    return n + 1 if d > n else n


def from_fixed(value: int) -> float:
    return value / FIXED_ONE


class Role(IntEnum):
    TRAINER = 1
    AGGREGATOR = 2
    VALIDATOR = 3
    TASK_OWNER = 4


class RoundStatus(IntEnum):
    NONE = 0
    OPEN = 1
    SUBMITTED = 2
    FINALIZED = 3
    REJECTED = 4
    SEALING = 5  # committed to a future block; `seal` draws the roles once it exists


class ReopenReason(IntEnum):
    MISSED_DEADLINE = 1
    VOTE_TIMEOUT = 2
    REJECTED = 3


class SlashReason(IntEnum):
    """`Staking.Slashed.reason`: why stake was taken (the first three line up with `ReopenReason`)."""

    MISSED_DEADLINE = 1  # the aggregator did not submit before the deadline (at reopen)
    MISSED_VOTE = 2  # a committee member did not vote before the deadline, no quorum (at reopen)
    REJECTED_RESULT = 3  # the committee's quorum rejected the aggregator's result (at finalize)
    FAULTY_UPDATE = 4  # a trainer the finalized result named as faulty (at finalize)
    BAD_PROOF = 5  # a trainer's signed update proof disputed on chain (the task's dispute contract)


class GovAction(IntEnum):
    """The whitelist of governance actions; `key` is the task id or the role where one is needed."""

    MAX_REWARD_PER_ROUND = 1
    TASK_REWARD = 2
    MIN_STAKE = 3
    SLASH_BPS = 4
    TASK_QUORUM = 5
    TASK_COMMITTEE_SIZE = 6
    TASK_PRIVACY_BUDGET = 7
    TREASURY_GRANT = 8
    TASK_DISPUTE = 9  # key: task id, account: the task's dispute contract (zero address removes it)
    TASK_BOUNDS = 10  # key: a `TaskParam`, value: its new value


class TaskParam(IntEnum):
    """The bounds every new task must respect (`GovAction.TASK_BOUNDS` key)."""

    DEPOSIT = 10  # utility tokens an owner bonds per task
    MIN_WINDOW = 11  # seconds
    MAX_WINDOW = 12  # seconds; twice it stays below the staking unbonding delay
    MIN_COMMITTEE = 13
    MAX_COMMITTEE = 14


@dataclass(frozen=True, slots=True)
class Member:
    address: str
    role: Role
    pubkey: bytes
    metadata: bytes
    pool_index: int
    stake: int
    weight: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a member's node listens ("host:port") and the SHA-256 of its DER TLS certificate."""

    address: str
    url: str
    tls_fingerprint: bytes


@dataclass(frozen=True, slots=True)
class TaskInfo:
    task_id: TaskId
    owner: str
    spec_hash: bytes
    reward_per_round: int
    rounds: int
    privacy_budget: int
    privacy_spent: int
    committee_size: int
    quorum_bps: int
    submit_window: int
    vote_window: int
    finalized_rounds: int
    current_round: int
    #: reward budget still escrowed (utility tokens)
    escrow: int = 0
    #: the owner's deposit
    deposit: int = 0
    closed: bool = False
    #: the privacy plan's most spent by one round (18 decimals): a round's bound is the spent so far plus it,
    #: within the budget
    privacy_per_round: int = 0

    @property
    def completed(self) -> bool:
        return self.finalized_rounds >= self.rounds


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What `Ledger.create_task` takes. Windows are in seconds.

    The privacy plan is fixed with the task: `privacy_budget` (cumulative, 18 decimals) and `privacy_per_round`,
    the most one round may add to the spent value (None: the whole budget, i.e. no per-round limit). Each round's
    bound is min(spent so far + privacy_per_round, budget), derived on chain; the owner does not pass one."""

    spec_hash: bytes
    reward_per_round: int
    rounds: int
    privacy_budget: int
    committee_size: int = 5
    quorum_bps: int = 6667
    submit_window: int = 3600
    vote_window: int = 3600
    privacy_per_round: int | None = None


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """What a round coordinator needs right after `open_round` or `reopen`."""

    task_id: TaskId
    round_id: RoundId
    attempt: int
    seed: bytes
    aggregator: str
    committee: tuple[str, ...]
    committee_weight: int
    submit_deadline: int
    privacy_bound: int
    block_number: int


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What the aggregator posts: one transaction, whatever the number of trainers."""

    model_hash: bytes
    evidence_root: bytes
    survivor_root: bytes
    survivor_count: int
    privacy_spent: int
    reputation_root: bytes = ZERO32
    reward_root: bytes = ZERO32
    #: the part of the contributors' pool the reward root pays nobody: back to the escrow if finalized
    reward_unpaid: int = 0
    #: trainers named as faulty (secure-aggregation blame, a failed update proof in the evidence):
    #: checked by the committee with the rest of the result, each slashed once if it is finalized
    faulty: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScoringRecord:
    """One attempt's score commit-reveal (`Scores.attempt_of`)."""

    evidence_root: bytes  # the evidence the committee scores (zero: nothing published)
    commit_deadline: int
    reveal_deadline: int
    commits: int
    reveals: int
    committee_size: int

    @property
    def published(self) -> bool:
        return self.evidence_root != ZERO32

    def reveals_open(self, now: int) -> bool:
        return self.published and (self.commits == self.committee_size or now > self.commit_deadline)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    task_id: TaskId
    round_id: RoundId
    status: RoundStatus
    attempt: int
    seed: bytes
    opened_block: int
    aggregator: str
    submit_deadline: int
    vote_deadline: int
    privacy_bound: int
    model_hash: bytes
    evidence_root: bytes
    survivor_root: bytes
    survivor_count: int
    privacy_spent: int
    reputation_root: bytes
    reward_root: bytes
    committee_weight: int
    accept_weight: int
    reject_weight: int
    committee: tuple[str, ...] = field(default=())
    faulty: tuple[str, ...] = field(default=())
    #: the block whose randomness seals the current attempt's draw
    commit_block: int = 0
    #: the aggregator not drawn first in this attempt (after a missed deadline or a rejection)
    excluded: str = ""


@dataclass(frozen=True, slots=True)
class ProofBinding:
    """What a round's current attempt posted for disputes (`TaskManager.round_binding`): the Merkle
    root of the trainers' signed update proof submissions and the linear-check challenge."""

    proofs_root: bytes
    challenge: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Slash:
    """One slash, from `Staking.Slashed` in the event index."""

    member: str
    amount: int
    reason: SlashReason
    evidence: bytes
    task_id: int
    round_id: int
    attempt: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: int
    proposer: str
    action: GovAction
    key: int
    value: int
    account: str
    snapshot_block: int
    vote_end: int
    for_votes: int
    against_votes: int
    eta: int
    executed: bool


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded contract event from the local index."""

    contract: str
    name: str
    block_number: int
    log_index: int
    tx_hash: str
    args: dict[str, object]
