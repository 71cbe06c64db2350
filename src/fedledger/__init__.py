"""fedledger: federated learning coordinated, audited and paid for on an Ethereum-compatible chain."""

__version__ = "0.1.0"
