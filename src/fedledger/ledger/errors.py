"""Typed errors of the ledger client.

Every contract revert carries a reason string prefixed by its contract ("tasks: not a committee
member"). `revert_error` turns it into the matching `LedgerRevert` subclass so callers catch
what they mean (`except NotCommitteeMember`) instead of parsing strings; the full reason stays
on `.reason` and the operation on `.op`. All derive from `fedledger.core.errors.LedgerError`
(exit code 6), so the command line ends them with one line.
"""

from __future__ import annotations

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


# Ordered: the first fragment found in the reason picks the class.
_RULES: tuple[tuple[str, type[LedgerRevert]], ...] = (
    ("not a committee member", NotCommitteeMember),
    ("already slashed", AlreadySlashed),
    ("already disputed", AlreadySlashed),
    ("proof verifies", NotAnOffence),
    ("not signed by the offender", NotAnOffence),
    ("malformed signature", NotAnOffence),
    ("another challenge", NotAnOffence),
    ("not in the proofs root", InvalidProof),
    ("no proofs root", WrongState),
    ("current attempt", WrongState),
    ("final attempt", WrongState),
    ("bad challenge", InvalidArgument),
    ("not a trainer", InvalidArgument),
    ("already voted", AlreadyVoted),
    ("quorum not reached", QuorumNotReached),
    ("invalid merkle proof", InvalidProof),
    ("already claimed", AlreadyClaimed),
    ("pool exhausted", PoolExhausted),
    ("unbonding delay not over", UnbondingNotOver),
    ("exceed the privacy budget", BudgetExceeded),
    ("privacy spent above", BudgetExceeded),
    ("only ", NotAuthorized),
    ("below what is already spent", InvalidArgument),
    ("deadline", DeadlineError),
    ("voting closed", DeadlineError),
    ("voting still open", DeadlineError),
    ("timelock not over", DeadlineError),
    ("proposal expired", DeadlineError),
    ("minimum", InsufficientStake),
    ("stake below", InsufficientStake),
    ("voting power", InsufficientStake),
    ("insufficient", InsufficientStake),
    ("exceeds the active stake", InsufficientStake),
    ("nothing to withdraw", InsufficientStake),
    ("already", WrongState),
    ("not open", WrongState),
    ("not awaiting", WrongState),
    ("not finalized", WrongState),
    ("are finalized", WrongState),
    ("can be finalized", WrongState),
    ("cannot be reopened", WrongState),
    ("not queued", WrongState),
    ("defeated", WrongState),
    ("stale epoch", WrongState),
    ("no eligible", WrongState),
    ("no reward root", WrongState),
    ("pool is full", WrongState),
    ("not yet final", WrongState),
    ("not a registered member", WrongState),
    ("unknown", InvalidArgument),
    ("out of range", InvalidArgument),
    ("zero", InvalidArgument),
    ("empty", InvalidArgument),
    ("above", InvalidArgument),
    ("below", InvalidArgument),
    ("not whitelisted", InvalidArgument),
    ("needs a reason", InvalidArgument),
    ("must be", InvalidArgument),
    ("transfer failed", InvalidArgument),
)


def revert_class(reason: str) -> type[LedgerRevert]:
    low = reason.lower()
    for fragment, cls in _RULES:
        if fragment in low:
            return cls
    return LedgerRevert


def revert_error(reason: str, op: str = "") -> LedgerRevert:
    """The typed error for a contract's revert reason."""
    return revert_class(reason)(reason, op)
