"""Errors of the zero-knowledge layer; all derive from the package's root error."""

from __future__ import annotations

from fedledger.core.errors import ConfigError, FedLedgerError, IntegrityError


class InvalidProof(IntegrityError):
    """A proof, a commitment chain or a public input does not verify."""


class LinearCheckFailed(IntegrityError):
    """The survivors' linear-check values do not add up to the projected aggregate."""


class ProvingError(FedLedgerError, ValueError):
    """The prover was given a witness that does not satisfy the circuit (or the circuit failed)."""

    exit_code = 5


class SetupRequired(ConfigError):
    """No keys exist for this circuit and creating them was not allowed."""


class KeyMismatch(ConfigError):
    """The verifying key at hand is not the one the task committed to (its hash in the task spec): verifying
    with it would accept proofs made for another setup (whoever ran that setup can forge them) and refuse
    honest ones. Not a trainer's fault: whoever holds these keys must stop, not blame the prover."""
