"""Typed errors of the ledger client.

Every contract revert carries a reason string prefixed by its module ("votes: not a committee
member"). `revert_error` looks the exact string up in `REVERTS`, generated from the sources at
import: every reason an `assert` or `raise` of a contract carries, with its module's error
(`MODULE_ERRORS`) unless `REVERT_OVERRIDES` names another, and raises that `LedgerRevert`
subclass, so callers catch what they mean (`except NotCommitteeMember`) instead of parsing
strings; the full reason stays on `.reason` and the operation on `.op`. All derive from
`fedledger.core.errors.LedgerError` (exit code 6), so the command line ends them with one line.
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


#: The error a module's revert reasons raise, by the module prefix of the reason (`"votes: ..."`):
#: a new `assert` in a module maps to its module's error without an edit here. Deployables whose
#: reasons carry the contract's name use it ("tasks" for `task_manager.vy`, "dispute" for the
#: zk `update_dispute.vy`).
MODULE_ERRORS: dict[str, type[LedgerRevert]] = {
    "dispute": InvalidArgument,
    "dispute_hook": WrongState,
    "erc20": InsufficientStake,
    "governance": InvalidArgument,
    "merkle": InvalidArgument,
    "pools": WrongState,
    "registry": WrongState,
    "reputation": InvalidArgument,
    "reward_token": NotAuthorized,
    "rewards": WrongState,
    "round_machine": WrongState,
    "scores": WrongState,
    "settlement": WrongState,
    "staking": InvalidArgument,
    "task_book": InvalidArgument,
    "task_params": InvalidArgument,
    "tasks": InvalidArgument,
    "votes": WrongState,
}

#: The reasons whose error is not their module's (`MODULE_ERRORS`), exactly as the sources spell them.
REVERT_OVERRIDES: dict[str, type[LedgerRevert]] = {
    "dispute: already disputed": AlreadySlashed,
    "dispute: malformed signature": NotAnOffence,
    "dispute: no proofs root for round": WrongState,
    "dispute: not in the proofs root": InvalidProof,
    "dispute: not signed by the offender": NotAnOffence,
    "dispute: not the round's current attempt": WrongState,
    "dispute: proof answers another challenge": NotAnOffence,
    "dispute: proof verifies": NotAnOffence,
    "dispute_hook: offender did not join the task": InvalidArgument,
    "dispute_hook: offender is not a trainer": InvalidArgument,
    "dispute_hook: only a registered dispute contract slashes for proofs": NotAuthorized,
    "dispute_hook: update already slashed this round": AlreadySlashed,
    "erc20: mint to the zero address": InvalidArgument,
    "scores: not a committee member": NotCommitteeMember,
    "scores: only the round's aggregator publishes": NotAuthorized,
    "scores: commit deadline passed": DeadlineError,
    "scores: reveal deadline passed": DeadlineError,
    "scores: submission deadline passed": DeadlineError,
    "scores: reveal does not match the commitment": InvalidProof,
    "scores: empty evidence root": InvalidArgument,
    "scores: empty commitment": InvalidArgument,
    "scores: empty scores hash": InvalidArgument,
    "erc20: transfer to the zero address": InvalidArgument,
    "governance: already executed": WrongState,
    "governance: already queued": WrongState,
    "governance: already voted": AlreadyVoted,
    "governance: no voting power at the snapshot": InsufficientStake,
    "governance: not queued": WrongState,
    "governance: proposal defeated": WrongState,
    "governance: proposal expired": DeadlineError,
    "governance: quorum not reached": QuorumNotReached,
    "governance: stake below the proposal threshold": InsufficientStake,
    "governance: timelock not over": DeadlineError,
    "governance: voting closed": DeadlineError,
    "governance: voting still open": DeadlineError,
    "registry: empty key-agreement key": InvalidArgument,
    "registry: only staking": NotAuthorized,
    "registry: only the task manager": NotAuthorized,
    "registry: only the deployer wires": NotAuthorized,
    "registry: only trainers, aggregators and validators join tasks": NotAuthorized,
    "registry: stake at least the role's minimum before joining a task": InsufficientStake,
    "registry: unknown or closed task": InvalidArgument,
    "registry: unknown role": InvalidArgument,
    "registry: zero address": InvalidArgument,
    "reputation: already wired": WrongState,
    "reputation: invalid Merkle proof": InvalidProof,
    "reputation: only the deployer wires": NotAuthorized,
    "reputation: only the task manager adjusts scores": NotAuthorized,
    "reputation: only the task manager posts roots": NotAuthorized,
    "reputation: stale epoch": WrongState,
    "reward_token: minter already set": WrongState,
    "reward_token: minter is the zero address": InvalidArgument,
    "rewards: already claimed": AlreadyClaimed,
    "rewards: empty root": InvalidArgument,
    "rewards: invalid Merkle proof": InvalidProof,
    "rewards: only the deployer wires": NotAuthorized,
    "rewards: only the task manager posts roots": NotAuthorized,
    "rewards: round pool exhausted": PoolExhausted,
    "rewards: transfer failed": InvalidArgument,
    "rewards: zero address": InvalidArgument,
    "round_machine: faulty member is not a trainer": InvalidArgument,
    "round_machine: faulty trainer did not join the task": InvalidArgument,
    "round_machine: only the round's aggregator submits": NotAuthorized,
    "round_machine: only the task owner opens rounds": NotAuthorized,
    "round_machine: only the task owner reopens before the grace period": NotAuthorized,
    "round_machine: privacy spent above the round's bound": BudgetExceeded,
    "round_machine: privacy spent below the task's": InvalidArgument,
    "round_machine: round would exceed the privacy budget": BudgetExceeded,
    "round_machine: seal block not mined yet": DeadlineError,
    "round_machine: submission deadline not passed": DeadlineError,
    "round_machine: submission deadline passed": DeadlineError,
    "round_machine: unknown task": InvalidArgument,
    "round_machine: voting deadline not passed": DeadlineError,
    "settlement: basis points above 10000": InvalidArgument,
    "settlement: quorum not reached": QuorumNotReached,
    "staking: already wired": WrongState,
    "staking: amount exceeds the active stake": InsufficientStake,
    "staking: below the role's minimum stake": InsufficientStake,
    "staking: not a registered member": WrongState,
    "staking: nothing to withdraw": InsufficientStake,
    "staking: only governance": NotAuthorized,
    "staking: only the deployer wires": NotAuthorized,
    "staking: only the task manager slashes": NotAuthorized,
    "staking: remaining stake below the role's minimum": InsufficientStake,
    "staking: snapshot block not yet final": WrongState,
    "staking: unbonding delay not over": UnbondingNotOver,
    "task_book: dispute contract already serves a task": WrongState,
    "task_book: privacy budget is fixed once a round has opened": WrongState,
    "task_params: only governance": NotAuthorized,
    "tasks: a result is pending": WrongState,
    "tasks: already wired": WrongState,
    "tasks: only a registered task owner creates tasks": NotAuthorized,
    "tasks: only the deployer wires": NotAuthorized,
    "tasks: only the task owner closes the task": NotAuthorized,
    "tasks: task is closed": WrongState,
    "votes: already voted": AlreadyVoted,
    "votes: not a committee member": NotCommitteeMember,
    "votes: voting deadline passed": DeadlineError,
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


def reason_module(reason: str) -> str:
    """The module prefix of a revert reason (`"votes"` for `"votes: already voted"`)."""
    return reason.split(":", 1)[0].strip()


def unmapped_reasons(reasons: dict[str, str] | None = None) -> list[str]:
    """The reasons in the sources whose module has no entry in `MODULE_ERRORS` and no override
    (a new module must choose its error; tests/ledger/test_units.py fails on any)."""
    reasons = reasons if reasons is not None else contract_reasons()
    return sorted(r for r in reasons if r not in REVERT_OVERRIDES and reason_module(r) not in MODULE_ERRORS)


def build_reverts(reasons: dict[str, str] | None = None) -> dict[str, type[LedgerRevert]]:
    """{reason: error class} for every reason in the sources: its override if it has one, else its
    module's error (an unmapped reason is left out: it raises the base `LedgerRevert`)."""
    out: dict[str, type[LedgerRevert]] = {}
    for reason in reasons if reasons is not None else contract_reasons():
        cls = REVERT_OVERRIDES.get(reason) or MODULE_ERRORS.get(reason_module(reason))
        if cls is not None:
            out[reason] = cls
    return out


#: Every revert reason of the contracts (ledger/contracts and zk/contracts), verbatim, and the error
#: it raises, generated from the sources at import.
REVERTS: dict[str, type[LedgerRevert]] = build_reverts()


def revert_class(reason: str) -> type[LedgerRevert]:
    """The error class of an exact revert reason (the base `LedgerRevert` for one not in the table)."""
    return REVERTS.get(reason.strip(), LedgerRevert)


def revert_error(reason: str, op: str = "") -> LedgerRevert:
    """The typed error for a contract's revert reason."""
    return revert_class(reason)(reason, op)
