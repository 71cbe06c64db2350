"""Flower adapter (layer 6): Flower users keep their ClientApp and strategy and get fedledger's ledger, audit
and report. Needs `flwr` (`pip install 'fedledger[flower]'`).

- `LedgerStrategy(strategy, out, model=..., input_shape=..., num_classes=...)`: wraps a Flower
  `serverapp.strategy` and finalizes every round on the chain with its evidence;
- `LocalGrid`, `run_local(server_app, client_app, nodes)`: run the apps in one process without Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LedgerStrategy", "LocalGrid", "run_local"]


def __getattr__(name: str) -> Any:
    if name == "LedgerStrategy":
        from fedledger.flower.strategy import LedgerStrategy

        return LedgerStrategy
    if name in ("LocalGrid", "run_local"):
        from fedledger.flower import grid

        return getattr(grid, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
