"""A Flower 1.42 ServerApp whose FedAvg is wrapped in fedledger's `LedgerStrategy`: the only change to a plain
Flower ServerApp is the wrapper (two lines), and starting from `strategy.initial_arrays()`."""

from __future__ import annotations

from pathlib import Path

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedledger.flower import LedgerStrategy

HERE = Path(__file__).resolve().parent
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    strategy = LedgerStrategy(
        FedAvg(fraction_train=float(cfg.get("fraction-train", 1.0)), min_available_nodes=2),
        out=str(cfg.get("out", "runs/flower")),
        model=f"{HERE / 'task.py'}:build", input_shape=(64,), num_classes=10,
        chain=str(cfg.get("chain", "auto")), committee=3,
    )
    strategy.start(grid=grid, initial_arrays=strategy.initial_arrays(), num_rounds=int(cfg.get("num-rounds", 3)),
                   train_config=ConfigRecord({"lr": float(cfg.get("lr", 0.1))}))
