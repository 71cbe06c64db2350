"""What the report reads from a run's ledger: rounds, members, balances, reputation, slashing.

The chain is the source of truth, so the report reopens it (`DIR/chain/`, the managed anvil node
started from its state file) rather than trusting results.json. Members are listed from their
`MemberRegistered` events and labelled by role and pool index (a chain fact), not by the
simulation's dev-account layout, so the same code reads a run whose members joined any other way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import DataError
from fedledger.ledger import Ledger, Role, RoundStatus, from_fixed
from fedledger.ledger.types import ReopenReason, SlashReason
from fedledger.report.scores import RoundScores, read_scores

TOKEN = 10**18
FEDERATION_FILE = "federation.json"


@dataclass(frozen=True, slots=True)
class ChainRound:
    """One round as the chain recorded it (its last attempt)."""

    round: int
    status: str
    attempts: int
    aggregator: str  # label
    model_hash: str
    accept_weight: float  # tokens of stake
    reject_weight: float
    committee_weight: float
    votes_accept: int
    votes_reject: int
    survivor_count: int
    privacy_spent: float
    contributor_pool: float  # reward tokens minted for contributors (claims behind a Merkle root)
    claimed: float
    validator_reward: float  # reward tokens per accepting validator


@dataclass(frozen=True, slots=True)
class MemberRow:
    label: str
    role: str
    address: str
    stake: float
    utility: float
    reward: float
    reputation: int


@dataclass(frozen=True, slots=True)
class SlashRow:
    block: int
    event: str
    round: int | None
    member: str  # label; "" when the event names no member
    amount: float | None  # utility tokens taken; None when nothing was slashed
    reason: str


@dataclass(frozen=True, slots=True)
class ReputationHistory:
    """Scores posted per reputation epoch; `scores[label][i]` is the score after `epochs[i]` (None: unchanged)."""

    epochs: tuple[int, ...]
    epoch_round: dict[int, int]
    scores: dict[str, tuple[int | None, ...]]


@dataclass(frozen=True, slots=True)
class ChainView:
    backend: str
    task_id: int
    finalized_rounds: int
    current_round: int
    privacy_budget: float
    privacy_spent: float
    reward_per_round: float
    committee_size: int
    quorum_bps: int
    rounds: tuple[ChainRound, ...]
    members: tuple[MemberRow, ...]
    slashing: tuple[SlashRow, ...]
    reputation: ReputationHistory
    contracts: dict[str, str]
    default_reputation: int
    scores: tuple[RoundScores, ...] = ()  # each finalized round's committee scores and who was paid why


def _task_id(run_dir: Path) -> int:
    path = run_dir / "chain" / FEDERATION_FILE
    try:
        return int(json.loads(path.read_text())["task_id"])
    except FileNotFoundError:
        raise DataError(f"{path} is missing: the run directory has no federation on its chain") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a federation file ({e})") from None


def _tokens(wei: Any) -> float:
    return int(wei) / TOKEN


def _role_name(value: Any) -> str:
    try:
        return Role(int(value)).name.lower().replace("_", " ")
    except ValueError:
        return f"role {int(value)}"


def read_chain(run_dir: Path, chain: str = "auto") -> ChainView:
    """Open the run's ledger read-only in spirit (no transactions) and collect what the report shows.

    Raises `FedLedgerError` (a `LedgerError` when the node cannot start, a `DataError` when the
    directory holds no federation); the caller decides whether that ends the report.
    """
    task_id = _task_id(run_dir)
    blobs = BlobStore(run_dir / "blobs") if (run_dir / "blobs").is_dir() else None
    with Ledger.connect(chain, run_dir, deploy_if_missing=False) as ledger:
        return _collect(ledger, task_id, blobs)


def _collect(ledger: Ledger, task_id: int, blobs: BlobStore | None = None) -> ChainView:
    if not 1 <= task_id <= ledger.task_count():
        raise DataError(f"the run's chain has no task {task_id}")
    task = ledger.task(task_id)

    labels: dict[str, str] = {}
    roles: dict[str, str] = {}
    pool_index: dict[str, int] = {}
    for ev in ledger.events("MemberRegistered"):
        address = str(ev.args["member"])
        role = _role_name(ev.args["role"])
        roles[address] = role
        pool_index[address] = int(ev.args["pool_index"])  # type: ignore[call-overload]
        labels[address] = f"{role} #{pool_index[address]}"

    def label(address: Any) -> str:
        a = str(address)
        return labels.get(a, a)

    opened: dict[int, int] = defaultdict(int)
    aggregator: dict[int, str] = {}
    for ev in ledger.events("RoundOpened", task_id=task_id):
        r = int(ev.args["round_id"])  # type: ignore[call-overload]
        opened[r] += 1
        aggregator[r] = label(ev.args["aggregator"])
    finalized = {int(ev.args["round_id"]): ev.args for ev in ledger.events("RoundFinalized", task_id=task_id)}  # type: ignore[call-overload]

    votes_of: dict[int, list[Any]] = defaultdict(list)  # one query, not one per round
    for ev in ledger.events("Voted", task_id=task_id):
        votes_of[int(ev.args["round_id"])].append(ev.args)  # type: ignore[call-overload]

    rounds = []
    for r in sorted(opened):
        rec = ledger.round(task_id, r)
        votes = [v for v in votes_of[r] if v["attempt"] == rec.attempt]
        fin = finalized.get(r)
        _, pool, claimed = ledger.reward_pool(task_id, r)
        rounds.append(
            ChainRound(
                round=r,
                status=RoundStatus(rec.status).name.lower(),
                attempts=opened[r],
                aggregator=aggregator.get(r, label(rec.aggregator)),
                model_hash="0x" + rec.model_hash.hex(),
                accept_weight=_tokens(rec.accept_weight),
                reject_weight=_tokens(rec.reject_weight),
                committee_weight=_tokens(rec.committee_weight),
                votes_accept=sum(1 for v in votes if v["accept"]),
                votes_reject=sum(1 for v in votes if not v["accept"]),
                survivor_count=int(rec.survivor_count),
                privacy_spent=from_fixed(rec.privacy_spent),
                contributor_pool=_tokens(pool),
                claimed=_tokens(claimed),
                validator_reward=_tokens(fin["validator_reward"]) if fin is not None else 0.0,
            )
        )

    default_score = ledger.reputation_of("0x" + "00" * 20)
    members = []
    for address in labels:
        members.append(
            MemberRow(
                label=labels[address],
                role=roles[address],
                address=address,
                stake=_tokens(ledger.stake_of(address)),
                utility=_tokens(ledger.utility_balance(address)),
                reward=_tokens(ledger.reward_balance(address)),
                reputation=ledger.reputation_of(address),
            )
        )
    order = {"task owner": 0, "aggregator": 1, "validator": 2, "trainer": 3}
    members.sort(key=lambda m: (order.get(m.role, 9), m.role, pool_index[m.address]))

    slashing = []
    for ev in ledger.events("Slashed"):
        reason = int(ev.args["reason"])  # type: ignore[call-overload]
        slashing.append(SlashRow(ev.block_number, "Slashed", int(ev.args["round_id"]),  # type: ignore[call-overload]
                                 label(ev.args["member"]), _tokens(ev.args["amount"]),
                                 _enum_name(SlashReason, reason)))
    for ev in ledger.events("RoundReopened", task_id=task_id):
        slashed = str(ev.args["slashed"])
        who = "" if int(slashed, 16) == 0 else label(slashed)
        amount = _tokens(ev.args["slashed_amount"]) if who else None
        slashing.append(SlashRow(ev.block_number, "RoundReopened", int(ev.args["round_id"]), who,  # type: ignore[call-overload]
                                 amount, _enum_name(ReopenReason, int(ev.args["reason"]))))  # type: ignore[call-overload]
    for ev in ledger.events("RoundRejected", task_id=task_id):
        slashing.append(SlashRow(ev.block_number, "RoundRejected", int(ev.args["round_id"]), "", None,  # type: ignore[call-overload]
                                 f"reject weight {_tokens(ev.args['reject_weight']):g} of "
                                 f"{_tokens(ev.args['committee_weight']):g}"))
    slashing.sort(key=lambda s: s.block)

    return ChainView(
        backend=_describe(ledger),
        task_id=task_id,
        finalized_rounds=task.finalized_rounds,
        current_round=task.current_round,
        privacy_budget=from_fixed(task.privacy_budget),
        privacy_spent=from_fixed(task.privacy_spent),
        reward_per_round=_tokens(task.reward_per_round),
        committee_size=task.committee_size,
        quorum_bps=task.quorum_bps,
        rounds=tuple(rounds),
        members=tuple(members),
        slashing=tuple(slashing),
        reputation=_reputation(ledger, task_id, label),
        contracts={k: str(v) for k, v in ledger.deployment.addresses.items()},
        default_reputation=default_score,
        scores=read_scores(ledger, blobs, task_id, label) if blobs is not None else (),
    )


def _describe(ledger: Ledger) -> str:
    """The backend without the managed node's throw-away port."""
    backend = ledger.backend
    if backend.kind == "anvil" and backend.chain_dir is not None:
        return f"managed anvil, state in {backend.chain_dir}"
    return str(backend.describe())


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name.lower().replace("_", " "))
    except ValueError:
        return f"code {value}"


def _reputation(ledger: Ledger, task_id: int, label: Any) -> ReputationHistory:
    epoch_round = {
        int(ev.args["epoch"]): int(ev.args["round_id"])  # type: ignore[call-overload]
        for ev in ledger.events("ReputationRootPosted", task_id=task_id)
    }
    updates: dict[str, dict[int, int]] = defaultdict(dict)
    for ev in ledger.events("ScoreUpdated"):
        epoch = int(ev.args["epoch"])  # type: ignore[call-overload]
        if epoch in epoch_round:
            updates[label(ev.args["member"])][epoch] = int(ev.args["score"])  # type: ignore[call-overload]
    epochs = tuple(sorted({e for per in updates.values() for e in per}))
    scores = {m: tuple(per.get(e) for e in epochs) for m, per in sorted(updates.items())}
    return ReputationHistory(epochs=epochs, epoch_round=epoch_round, scores=scores)


__all__ = ["ChainRound", "ChainView", "MemberRow", "ReputationHistory", "SlashRow", "read_chain"]
