"""Typed errors of the ledger client.

Every contract revert carries a reason string prefixed by its contract ("tasks: not a committee
member"). `revert_error` looks the exact string up in `REVERTS` (every reason of every contract,
checked against the sources by a test) and raises the matching `LedgerRevert` subclass, so callers catch
what they mean (`except NotCommitteeMember`) instead of parsing strings; the full reason stays
on `.reason` and the operation on `.op`. All derive from `fedledger.core.errors.LedgerError`
(exit code 6), so the command line ends them with one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedledger.core.errors import LedgerError, PrivacyBudgetExceeded


class ChainUnavailable(LedgerError):
    """The chain node cannot be started or reached (anvil missing, RPC down, readiness timeout)."""


class DeploymentError(LedgerError):
    """Contracts cannot be compiled, deployed or found where the deployment file says."""


class KeyLoadError(LedgerError):
    """No usable signing key for an external RPC chain."""


class TransactionFailed(LedgerError):
    """A transaction was not mined in time, or failed without a revert reason."""


class LedgerRevert(LedgerError):
    """A contract refused the operation; `reason` is the contract's revert string."""

    def __init__(self, reason: str, op: str = "") -> None:
        self.reason = reason
        self.op = op
        super().__init__(f"{op}: {reason}" if op else reason)


class NotAuthorized(LedgerRevert):
    """The sender may not do this (only the task manager mints or slashes, only governance sets...)."""


class NotCommitteeMember(LedgerRevert):
    """A vote from an address outside the round's committee."""


class AlreadyVoted(LedgerRevert):
    """A second vote from the same committee member or governance voter."""


class QuorumNotReached(LedgerRevert):
    """Finalization or queueing before enough weight has voted."""


class InvalidProof(LedgerRevert):
    """A Merkle proof that does not lead to the posted root."""


class AlreadyClaimed(LedgerRevert):
    """A second reward claim for the same account and round."""


class PoolExhausted(LedgerRevert):
    """Claims would pay out more than the round's reward pool."""


class InsufficientStake(LedgerRevert):
    """Not enough stake, balance or allowance for the operation."""


class UnbondingNotOver(LedgerRevert):
    """A withdrawal before the unbonding delay has passed."""


class DeadlineError(LedgerRevert):
    """Too early or too late: a round deadline, a voting period or a timelock."""


class WrongState(LedgerRevert):
    """The round, task, proposal or wiring is not in a state that allows the operation."""


class AlreadySlashed(WrongState):
    """The offence was already disputed or slashed (a trainer's update is slashed once per round)."""


class NotAnOffence(LedgerRevert):
    """A dispute of an update proof that verifies for the round's statement, or that its trainer did not sign."""


class InvalidArgument(LedgerRevert):
    """An argument out of range, empty or unknown."""


class BudgetExceeded(LedgerRevert, PrivacyBudgetExceeded):
    """A round that would spend more privacy than the task's budget."""

    exit_code = PrivacyBudgetExceeded.exit_code


#: Every revert reason of the contracts (ledger/contracts and zk/contracts), verbatim, and the error
#: it raises. `contract_reasons()` reads the reasons from the sources; tests/ledger/test_units.py
#: fails when a reason in a contract has no entry here or an entry no contract has.
REVERTS: dict[str, type[LedgerRevert]] = {
    'dispute: already disputed': AlreadySlashed,
    'dispute: bad challenge': InvalidArgument,
    'dispute: empty task manager': InvalidArgument,
    'dispute: empty update': InvalidArgument,
    'dispute: malformed signature': NotAnOffence,
    'dispute: no proofs root for round': WrongState,
    'dispute: not in the proofs root': InvalidProof,
    'dispute: not signed by the offender': NotAnOffence,
    "dispute: not the round's current attempt": WrongState,
    'dispute: proof answers another challenge': NotAnOffence,
    'dispute: proof verifies': NotAnOffence,
    'dispute: zero task id': InvalidArgument,
    'erc20: insufficient allowance': InsufficientStake,
    'erc20: insufficient balance': InsufficientStake,
    'erc20: mint to the zero address': InvalidArgument,
    'erc20: transfer to the zero address': InvalidArgument,
    'governance: action not whitelisted': InvalidArgument,
    'governance: already executed': WrongState,
    'governance: already queued': WrongState,
    'governance: already voted': AlreadyVoted,
    'governance: grant to the zero address': InvalidArgument,
    'governance: no voting power at the snapshot': InsufficientStake,
    'governance: not queued': WrongState,
    'governance: proposal defeated': WrongState,
    'governance: proposal expired': DeadlineError,
    'governance: quorum not reached': QuorumNotReached,
    'governance: quorum out of range': InvalidArgument,
    'governance: stake below the proposal threshold': InsufficientStake,
    'governance: timelock not over': DeadlineError,
    'governance: transfer failed': InvalidArgument,
    'governance: unknown proposal': InvalidArgument,
    'governance: voting closed': DeadlineError,
    'governance: voting still open': DeadlineError,
    'merkle: leaf data must be 128 bytes': InvalidArgument,
    'pools: not in the pool': WrongState,
    'pools: pool is full': WrongState,
    'registry: already joined': WrongState,
    'registry: already registered': WrongState,
    'registry: already wired': WrongState,
    'registry: cannot leave during a round': WrongState,
    'registry: empty key-agreement key': InvalidArgument,
    'registry: no eligible aggregator joined': WrongState,
    'registry: not a registered member': WrongState,
    'registry: not joined': WrongState,
    'registry: only staking': NotAuthorized,
    'registry: only the deployer wires': NotAuthorized,
    'registry: only trainers, aggregators and validators join tasks': NotAuthorized,
    'registry: too few validators joined for a full committee': WrongState,
    'registry: too many joined tasks': WrongState,
    'registry: unknown or closed task': InvalidArgument,
    'registry: unknown role': InvalidArgument,
    'registry: zero address': InvalidArgument,
    'reputation: already wired': WrongState,
    'reputation: invalid Merkle proof': InvalidProof,
    'reputation: only the deployer wires': NotAuthorized,
    'reputation: only the task manager adjusts scores': NotAuthorized,
    'reputation: only the task manager posts roots': NotAuthorized,
    'reputation: roots score trainers only': InvalidArgument,
    'reputation: score out of range': InvalidArgument,
    'reputation: stale epoch': WrongState,
    'reputation: unknown epoch': InvalidArgument,
    'reputation: zero address': InvalidArgument,
    'reward_token: minter already set': WrongState,
    'reward_token: minter is the zero address': InvalidArgument,
    'reward_token: only the deployer wires the minter': NotAuthorized,
    'reward_token: only the task manager mints': NotAuthorized,
    'rewards: already claimed': AlreadyClaimed,
    'rewards: already wired': WrongState,
    'rewards: empty root': InvalidArgument,
    'rewards: invalid Merkle proof': InvalidProof,
    'rewards: no reward root for this round': WrongState,
    'rewards: only the deployer wires': NotAuthorized,
    'rewards: only the task manager posts roots': NotAuthorized,
    'rewards: root already posted': WrongState,
    'rewards: round pool exhausted': PoolExhausted,
    'rewards: transfer failed': InvalidArgument,
    'rewards: zero address': InvalidArgument,
    'staking: a slash needs a reason code': InvalidArgument,
    'staking: already wired': WrongState,
    'staking: amount exceeds the active stake': InsufficientStake,
    'staking: amount out of range': InvalidArgument,
    "staking: below the role's minimum stake": InsufficientStake,
    'staking: not a registered member': WrongState,
    'staking: nothing to withdraw': InsufficientStake,
    'staking: only governance': NotAuthorized,
    'staking: only the deployer wires': NotAuthorized,
    'staking: only the task manager slashes': NotAuthorized,
    "staking: remaining stake below the role's minimum": InsufficientStake,
    'staking: snapshot block not yet final': WrongState,
    'staking: transfer failed': InvalidArgument,
    'staking: unbonding delay not over': UnbondingNotOver,
    'staking: unknown role': InvalidArgument,
    'staking: zero address': InvalidArgument,
    'staking: zero amount': InvalidArgument,
    'task_book: committee size out of range': InvalidArgument,
    'task_book: dispute contract already serves a task': WrongState,
    'task_book: privacy budget is fixed once a round has opened': WrongState,
    'task_book: quorum out of range': InvalidArgument,
    'task_book: reward above the funded budget': InvalidArgument,
    'task_book: reward per round above the maximum': InvalidArgument,
    'task_book: unknown task': InvalidArgument,
    'task_params: basis points above 10000': InvalidArgument,
    'task_params: committee bounds out of range': InvalidArgument,
    'task_params: committee size out of range': InvalidArgument,
    'task_params: only governance': NotAuthorized,
    'task_params: reward per round above the maximum': InvalidArgument,
    'task_params: unknown parameter': InvalidArgument,
    'task_params: window above the maximum': InvalidArgument,
    'task_params: window below the minimum': InvalidArgument,
    'task_params: window bounds out of range': InvalidArgument,
    'task_params: windows must stay below the unbonding delay': InvalidArgument,
    'tasks: a result is pending': WrongState,
    'tasks: all rounds are finalized': WrongState,
    'tasks: already voted': AlreadyVoted,
    'tasks: already wired': WrongState,
    'tasks: basis points above 10000': InvalidArgument,
    'tasks: current round not finalized': WrongState,
    'tasks: empty model hash': InvalidArgument,
    'tasks: empty spec hash': InvalidArgument,
    'tasks: faulty member is not a trainer': InvalidArgument,
    'tasks: faulty trainer did not join the task': InvalidArgument,
    'tasks: no eligible aggregator joined': WrongState,
    'tasks: no proofs root posted': WrongState,
    'tasks: not a committee member': NotCommitteeMember,
    "tasks: not the round's final attempt": WrongState,
    'tasks: offender did not join the task': InvalidArgument,
    'tasks: offender is not a trainer': InvalidArgument,
    'tasks: only a registered dispute contract slashes for proofs': NotAuthorized,
    'tasks: only a registered task owner creates tasks': NotAuthorized,
    'tasks: only the deployer wires': NotAuthorized,
    "tasks: only the round's aggregator submits": NotAuthorized,
    'tasks: only the task owner closes the task': NotAuthorized,
    'tasks: only the task owner opens rounds': NotAuthorized,
    'tasks: only the task owner reopens before the grace period': NotAuthorized,
    'tasks: privacy bound below what is already spent': InvalidArgument,
    "tasks: privacy spent above the round's bound": BudgetExceeded,
    "tasks: privacy spent below the task's": InvalidArgument,
    'tasks: quorum not reached': QuorumNotReached,
    'tasks: quorum out of range': InvalidArgument,
    'tasks: round can be finalized': WrongState,
    'tasks: round cannot be reopened': WrongState,
    'tasks: round is not awaiting votes': WrongState,
    'tasks: round is not open': WrongState,
    'tasks: round is not sealing': WrongState,
    'tasks: round not finalized': WrongState,
    'tasks: round would exceed the privacy budget': BudgetExceeded,
    'tasks: seal block not mined yet': DeadlineError,
    'tasks: submission deadline not passed': DeadlineError,
    'tasks: submission deadline passed': DeadlineError,
    'tasks: task is closed': WrongState,
    'tasks: too few validators joined for a full committee': WrongState,
    'tasks: transfer failed': InvalidArgument,
    'tasks: unknown task': InvalidArgument,
    'tasks: update already slashed this round': AlreadySlashed,
    'tasks: voting deadline not passed': DeadlineError,
    'tasks: voting deadline passed': DeadlineError,
    'tasks: zero address': InvalidArgument,
    'tasks: zero rounds': InvalidArgument,
}

_REASON = re.compile(r'(?:assert\s[^\n]*?,\s*|raise\s+)"([a-z_0-9]+: [^"]+)"')


def contract_sources() -> list[Path]:
    """The Vyper sources whose revert reasons `REVERTS` covers."""
    root = Path(__file__).resolve().parent.parent
    return sorted([*(root / "ledger" / "contracts").glob("*.vy"), *(root / "zk" / "contracts").glob("*.vy")])


def contract_reasons(paths: list[Path] | None = None) -> dict[str, str]:
    """{reason: file name} for every `assert ..., "module: reason"` and `raise "module: reason"` in the sources."""
    out: dict[str, str] = {}
    for path in paths if paths is not None else contract_sources():
        for m in _REASON.finditer(path.read_text()):
            out.setdefault(m.group(1), path.name)
    return out


def revert_class(reason: str) -> type[LedgerRevert]:
    """The error class of an exact revert reason (the base `LedgerRevert` for one not in the table)."""
    return REVERTS.get(reason.strip(), LedgerRevert)


def revert_error(reason: str, op: str = "") -> LedgerRevert:
    """The typed error for a contract's revert reason."""
    return revert_class(reason)(reason, op)
