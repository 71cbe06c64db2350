"""One root error for the whole package.

Every error a user can cause derives from `FedLedgerError` and carries the process exit code
the CLI uses, so the command line can end with one clear line instead of a traceback.
Subclasses also inherit the matching built-in type so callers can catch them idiomatically.
"""

from __future__ import annotations


class FedLedgerError(Exception):
    """Root of every fedledger error."""

    exit_code: int = 1


class ConfigError(FedLedgerError, ValueError):
    """A configuration value, flag or name that is not valid."""

    exit_code = 2


class DataError(FedLedgerError, ValueError):
    """Data that cannot be used as asked (missing, empty, too small to partition)."""

    exit_code = 3


class TrainingError(FedLedgerError, RuntimeError):
    """Training diverged or cannot proceed (a NaN loss, for instance)."""

    exit_code = 4


class IntegrityError(FedLedgerError, ValueError):
    """Content does not match its hash, a proof, a signature or a Merkle root."""

    exit_code = 5


class LedgerError(FedLedgerError, RuntimeError):
    """A chain node cannot be reached or a transaction failed."""

    exit_code = 6


class PrivacyBudgetExceeded(FedLedgerError, RuntimeError):
    """Spending more privacy would exceed the task's budget."""

    exit_code = 7
