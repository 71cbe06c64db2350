"""Layer 0: config models, errors, vectors, hashing, Merkle trees, the blob store, randomness."""

from fedledger.core.errors import (
    ConfigError,
    DataError,
    FedLedgerError,
    IntegrityError,
    LedgerError,
    PrivacyBudgetExceeded,
    TrainingError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "FedLedgerError",
    "IntegrityError",
    "LedgerError",
    "PrivacyBudgetExceeded",
    "TrainingError",
]
