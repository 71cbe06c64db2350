"""fedledger: federated learning coordinated, audited and paid for on an Ethereum-compatible chain.

From Python (docs/api.md):

    import fedledger
    fed = fedledger.Federation({"dataset": "digits", "rounds": 5}, model="path/to/model.py:build")
    result = fed.run("runs/mine")
    fed.export("models/mine", format="onnx")
    model, preprocessing = fedledger.load_model("models/mine")

The names below are imported on first use, so `import fedledger` (and the command line) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Federation": "fedledger.sim.api",
    "export_run": "fedledger.sim.export",
    "load_model": "fedledger.sim.export",
    "RunResult": "fedledger.sim.federation",
    "FederationConfig": "fedledger.core.config",
    "FedLedgerError": "fedledger.core.errors",
}

__all__ = [
    "FedLedgerError",
    "Federation",
    "FederationConfig",
    "RunResult",
    "__version__",
    "export_run",
    "load_model",
]

if TYPE_CHECKING:
    from fedledger.core.config import FederationConfig
    from fedledger.core.errors import FedLedgerError
    from fedledger.sim.api import Federation
    from fedledger.sim.export import export_run, load_model
    from fedledger.sim.federation import RunResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedledger' has no attribute {name!r}")
